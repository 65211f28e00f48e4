//! First come, first run: requests start their ONNX Runtime work in the order their bytes reached the
//! server, whatever order the runtime happens to poll their connections in. When one core ends a long
//! inline run, every request that arrived meanwhile becomes ready at once, and tokio runs the most recently
//! woken task first (its LIFO slot): measured on ranking traffic at half load, 13% of requests were overtaken
//! by a later one, and those made the p99. A request takes a ticket keyed by its arrival, yields once so that
//! every other ready request can decode and take its own, then starts when its ticket is the oldest. Waiting
//! for one's turn is queueing: a request whose deadline passes, or whose client leaves, while it waits is
//! counted in `ensemble_serve_dropped_total` like a job dropped from a graph's queue.
//!
//! The line is also work the router must see: on one core, requests that run inline wait here, not in a
//! graph's queue, so each ticket carries its run's estimated µs and [`Sequencer::ahead_us`] sums them.
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::IntCounter;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Sequencer {
    /// (arrival, ticket number) of every request waiting to start or starting.
    waiting: Mutex<BTreeSet<(Instant, u64)>>,
    next: AtomicU64,
    turn_passed: Notify,
    /// Estimated run µs of every ticket in the line.
    line_us: AtomicU64,
}

/// What counts a request that leaves the line without starting: its deadline passed, or it was cancelled
/// (its client disconnected and the handler was dropped).
pub struct Abandoned {
    pub deadline: IntCounter,
    pub disconnected: IntCounter,
}

/// A place in the line; dropping it (started, failed or cancelled) lets the next one go.
pub struct Ticket {
    key: (Instant, u64),
    /// Estimated run µs, counted in the line until the ticket goes.
    cost_us: u64,
    sequencer: Arc<Sequencer>,
    /// Taken when the request starts; still here on drop = abandoned while waiting.
    abandoned: Option<Abandoned>,
}

impl Ticket {
    /// The request's run has started (or it is queued): it leaves the line.
    pub fn start(mut self) {
        self.abandoned = None;
    }

    /// Whether other requests are in line beside this one (they could share its batch).
    pub fn others_in_line(&self) -> bool {
        self.sequencer.lock().len() > 1
    }
}

/// The deadline passed while the request waited for its turn.
#[derive(Debug)]
pub struct Expired;

impl Sequencer {
    /// Run time (µs) the requests in line will take before a newcomer starts, per core that runs them: on
    /// one core they run one after another, inline.
    pub fn ahead_us(&self) -> f64 {
        static CORES: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
        self.line_us.load(Ordering::Relaxed) as f64 / cores
    }

    /// Waits until every request that arrived before `arrival` and is ready to run has started, or until
    /// `deadline`. `cost_us` (its estimated run time) counts in [`Sequencer::ahead_us`] while it waits.
    pub async fn turn(
        self: &Arc<Self>,
        arrival: Instant,
        deadline: Instant,
        cost_us: f64,
        abandoned: Abandoned,
    ) -> Result<Ticket, Expired> {
        let key = (arrival, self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(key);
        let cost_us = cost_us.max(0.0) as u64;
        self.line_us.fetch_add(cost_us, Ordering::Relaxed);
        let mut ticket = Ticket { key, cost_us, sequencer: self.clone(), abandoned: Some(abandoned) };
        tokio::task::yield_now().await;
        if self.lock().first() == Some(&key) {
            return Ok(ticket);
        }
        // Only a request that has to wait sets a timer: most find the line empty.
        let expiry = super::deadline::at(deadline);
        tokio::pin!(expiry);
        loop {
            let passed = self.turn_passed.notified();
            if self.lock().first() == Some(&key) {
                return Ok(ticket);
            }
            tokio::select! {
                _ = passed => {}
                _ = &mut expiry => {
                    if let Some(a) = ticket.abandoned.take() {
                        a.deadline.inc();
                    }
                    return Err(Expired);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(Instant, u64)>> {
        // The set stays consistent even if a holder panicked: each critical section is one insert or remove.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(a) = self.abandoned.take() {
            a.disconnected.inc();
        }
        self.sequencer.lock().remove(&self.key);
        self.sequencer.line_us.fetch_sub(self.cost_us, Ordering::Relaxed);
        self.sequencer.turn_passed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counters() -> Abandoned {
        let c = || IntCounter::new("c", "c").unwrap();
        Abandoned { deadline: c(), disconnected: c() }
    }
    const NEVER: Duration = Duration::from_secs(3600);

    /// Tickets taken in any order start in arrival order.
    #[tokio::test(flavor = "current_thread")]
    async fn the_oldest_arrival_starts_first() {
        let seq = Arc::new(Sequencer::default());
        let t0 = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in [3u64, 1, 4, 0, 2] {
            let (seq, order) = (seq.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let ticket = seq.turn(t0 + Duration::from_millis(i), t0 + NEVER, 0.0, counters()).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                ticket.start();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    /// A waiter that is cancelled (its client left) gives up its place and is counted as disconnected.
    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_ticket_lets_the_next_go_and_counts() {
        let seq = Arc::new(Sequencer::default());
        let t0 = Instant::now();
        let abandoned = counters();
        let disconnected = abandoned.disconnected.clone();
        let first = seq.turn(t0, t0 + NEVER, 0.0, abandoned).await.unwrap();
        let second = tokio::spawn({
            let seq = seq.clone();
            async move { seq.turn(t0 + Duration::from_millis(1), t0 + NEVER, 0.0, counters()).await.unwrap().key.1 }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        assert_eq!(disconnected.get(), 1);
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), second).await.unwrap().unwrap(), 1);
    }

    /// A waiter whose deadline passes leaves the line, counted as a deadline drop, not a disconnect.
    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_past_its_deadline_expires() {
        let seq = Arc::new(Sequencer::default());
        let t0 = Instant::now();
        let _first = seq.turn(t0, t0 + NEVER, 0.0, counters()).await.unwrap();
        let abandoned = counters();
        let (deadline, disconnected) = (abandoned.deadline.clone(), abandoned.disconnected.clone());
        let late = seq.turn(t0 + Duration::from_millis(1), Instant::now() + Duration::from_millis(5), 0.0, abandoned);
        assert!(late.await.is_err());
        assert_eq!((deadline.get(), disconnected.get()), (1, 0));
    }

    /// Tickets in line count their run time until they go, started or not.
    #[tokio::test(flavor = "current_thread")]
    async fn the_line_sums_the_run_time_of_its_tickets() {
        let seq = Arc::new(Sequencer::default());
        let t0 = Instant::now();
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let first = seq.turn(t0, t0 + NEVER, 3000.0, counters()).await.unwrap();
        let second = tokio::spawn({
            let seq = seq.clone();
            async move { seq.turn(t0 + Duration::from_millis(1), t0 + NEVER, 500.0, counters()).await.unwrap() }
        });
        tokio::task::yield_now().await;
        assert_eq!(seq.ahead_us(), 3500.0 / cores);
        first.start();
        let second = second.await.unwrap();
        assert_eq!(seq.ahead_us(), 500.0 / cores);
        second.start();
        assert_eq!(seq.ahead_us(), 0.0);
    }
}

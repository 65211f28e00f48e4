//! First come, first run: requests start their ONNX Runtime work in the order their bytes reached the
//! server, whatever order the runtime happens to poll their connections in. When one core ends a long
//! inline run, every request that arrived meanwhile becomes ready at once, and tokio runs the most recently
//! woken task first (its LIFO slot): measured on ranking traffic at half load, 13% of requests were overtaken
//! by a later one, and those made the p99. A request takes a ticket keyed by its arrival, yields once so that
//! every other ready request can decode and take its own, then starts when its ticket is the oldest. Waiting
//! for one's turn is queueing: a request whose deadline passes, or whose client leaves, while it waits is
//! counted in `ensemble_serve_dropped_total` like a job dropped from a graph's queue.
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
    sequencer: Arc<Sequencer>,
    /// Taken when the request starts; still here on drop = abandoned while waiting.
    abandoned: Option<Abandoned>,
}

impl Ticket {
    /// The request's run has started (or it is queued): it leaves the line.
    pub fn start(mut self) {
        self.abandoned = None;
    }
}

/// The deadline passed while the request waited for its turn.
#[derive(Debug)]
pub struct Expired;

impl Sequencer {
    /// Waits until every request that arrived before `arrival` and is ready to run has started, or until
    /// `deadline`.
    pub async fn turn(
        self: &Arc<Self>,
        arrival: Instant,
        deadline: Instant,
        abandoned: Abandoned,
    ) -> Result<Ticket, Expired> {
        let key = (arrival, self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(key);
        let mut ticket = Ticket { key, sequencer: self.clone(), abandoned: Some(abandoned) };
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
                let ticket = seq.turn(t0 + Duration::from_millis(i), t0 + NEVER, counters()).await.unwrap();
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
        let first = seq.turn(t0, t0 + NEVER, abandoned).await.unwrap();
        let second = tokio::spawn({
            let seq = seq.clone();
            async move { seq.turn(t0 + Duration::from_millis(1), t0 + NEVER, counters()).await.unwrap().key.1 }
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
        let _first = seq.turn(t0, t0 + NEVER, counters()).await.unwrap();
        let abandoned = counters();
        let (deadline, disconnected) = (abandoned.deadline.clone(), abandoned.disconnected.clone());
        let late = seq.turn(t0 + Duration::from_millis(1), Instant::now() + Duration::from_millis(5), abandoned);
        assert!(late.await.is_err());
        assert_eq!((deadline.get(), disconnected.get()), (1, 0));
    }
}

//! Cooldowns between batches: under load a graph waits a moment after a partial batch so that rows gather
//! into larger batches, which cost far less CPU per row than back-to-back small ones.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a busy graph may start its next batch, shared by the worker (which sets it) and submitters (which
/// must neither run inline nor estimate zero wait while it cools).
pub(super) struct Cooling {
    ratio: f64,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the worker waits; 0 = not cooling.
    until_ns: AtomicU64,
}

impl Cooling {
    pub(super) fn new(ratio: f64) -> Self {
        Self { ratio: ratio.max(0.0), epoch: Instant::now(), until_ns: AtomicU64::new(0) }
    }

    pub(super) fn left(&self) -> Duration {
        // Asked per request and tier: skip the clock read when not cooling, the usual case.
        match self.until_ns.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            until => Duration::from_nanos(until).saturating_sub(self.epoch.elapsed()),
        }
    }

    /// Sleeps for `cooldown_pause` after a batch of `rows` (of at most `max_rows`), telling submitters
    /// meanwhile. A queue already holding half a batch fills the next one without waiting, and requests that
    /// big (ranking requests: 165 rows of 256) could not share a batch anyway: a pause would only idle the core.
    pub(super) fn after_batch(
        &self,
        run: Duration,
        one_row_us: f64,
        demand: f64,
        rows: (usize, usize),
        queued_rows: usize,
    ) -> Duration {
        let (batch_rows, max_rows) = rows;
        let backlog = batch_rows >= max_rows || 2 * queued_rows > max_rows;
        let busy = demand >= BUSY_DEMAND && !backlog && queued_rows > 0;
        let Some(pause) = cooldown_pause(self.ratio, run, one_row_us).filter(|_| busy) else {
            return Duration::ZERO;
        };
        let until = self.epoch.elapsed() + pause;
        self.until_ns.store(until.as_nanos().max(1) as u64, Ordering::Relaxed);
        std::thread::sleep(pause);
        self.until_ns.store(0, Ordering::Relaxed);
        pause
    }
}

/// Cooldowns start once a graph would be busy at least half the time under greedy batching: below that,
/// CPU is not short and a pause would only add latency.
const BUSY_DEMAND: f64 = 0.5;

/// How busy greedy batching would keep a graph: EWMA of each run's share of the time since the previous
/// run ended, not counting the cooldown in between.
pub(super) struct Demand {
    ewma: f64,
    prev_end: Instant,
    pub(super) pause: Duration,
}

impl Demand {
    pub(super) fn new() -> Self {
        Self { ewma: 0.0, prev_end: Instant::now(), pause: Duration::ZERO }
    }

    /// Records a run that ended at `now`; returns the updated demand.
    pub(super) fn observe(&mut self, run: Duration, now: Instant) -> f64 {
        let active = now.duration_since(self.prev_end).saturating_sub(self.pause).max(run);
        let share = run.as_secs_f64() / active.as_secs_f64().max(1e-9);
        self.ewma = 0.8 * self.ewma + 0.2 * share;
        self.prev_end = now;
        self.ewma
    }
}

/// A busy graph waits `ratio ×` the last run (at most `ratio ×` two one-row runs) before its next batch,
/// when rows arrived during that run and it was not full: the next batch grows instead of running one or two
/// rows at a time. The cap keeps a burst's big batch from buying an equally long pause; an idle graph
/// (nothing queued) and a backlog (full batch) never wait.
fn cooldown_pause(ratio: f64, run: Duration, one_row_us: f64) -> Option<Duration> {
    if ratio <= 0.0 {
        return None;
    }
    // At most 1 s whatever the profile says (NaN gives 0): `from_secs_f64` must not see NaN or a huge value.
    let cap_s = 2.0 * one_row_us * 1e-6;
    let cap = Duration::from_secs_f64(if cap_s.is_nan() { 0.0 } else { cap_s.clamp(0.0, 1.0) });
    Some(run.min(cap).mul_f64(ratio)).filter(|p| !p.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn cooldown_is_a_multiple_of_the_run_and_capped() {
        assert_eq!(cooldown_pause(1.0, 150 * US, 120.0), Some(150 * US));
        assert_eq!(cooldown_pause(2.0, 150 * US, 120.0), Some(300 * US));
        // A 2 ms batch after a burst waits no longer than two one-row runs.
        assert_eq!(cooldown_pause(1.0, 2000 * US, 120.0), Some(240 * US));
        assert_eq!(cooldown_pause(0.0, 150 * US, 120.0), None);
        // A nonsensical latency profile cannot make the worker panic or sleep for long.
        assert_eq!(cooldown_pause(1.0, 150 * US, f64::NAN), None);
        assert_eq!(cooldown_pause(1.0, 5 * Duration::from_secs(1), 1e300), Some(Duration::from_secs(1)));
    }

    #[test]
    fn only_a_busy_graph_with_rows_waiting_and_room_in_its_batch_cools() {
        let cooling = Cooling::new(1.0);
        let run = 200 * US;
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, (4, 256), 3), 200 * US);
        assert_eq!(cooling.after_batch(run, 120.0, 0.3, (4, 256), 3), Duration::ZERO, "not busy");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, (4, 256), 0), Duration::ZERO, "nothing queued");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, (256, 256), 500), Duration::ZERO, "a backlog");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, (165, 256), 165), Duration::ZERO, "half a batch queued");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, (165, 256), 128), 200 * US, "room for more");
        assert!(cooling.left().is_zero());
    }

    #[test]
    fn demand_is_the_share_of_time_spent_running_without_the_cooldowns() {
        let mut d = Demand::new();
        let (run, mut now) = (200 * US, d.prev_end);
        for _ in 0..30 {
            // Runs back to back but for our own cooldown: greedy batching would never rest.
            now += run;
            d.observe(run, now);
            d.pause = run;
            now += run;
        }
        assert!(d.ewma > 0.99, "{}", d.ewma);
        for _ in 0..30 {
            // 600 µs idle before each run: busy a quarter of the time.
            d.pause = Duration::ZERO;
            now += 4 * run;
            d.observe(run, now);
        }
        assert!((d.ewma - 0.25).abs() < 0.01, "{}", d.ewma);
    }

    #[test]
    fn a_cooling_graph_reports_the_time_left() {
        let cooling = Cooling::new(1.0);
        assert!(cooling.left().is_zero());
        let until = cooling.epoch.elapsed() + Duration::from_millis(50);
        cooling.until_ns.store(until.as_nanos() as u64, Ordering::Relaxed);
        let left = cooling.left();
        assert!(left > Duration::from_millis(40) && left <= Duration::from_millis(50), "{left:?}");
    }
}

//! Dynamic batching per graph: a bounded queue feeds one thread that owns the graph's ONNX Runtime
//! session (`Session::run` takes `&mut self`), forms batches of up to `max_batch_rows` rows from what is
//! queued (waiting at most `max_queue_delay` after the first job for more), runs them and answers each job
//! through a oneshot channel. Under load a graph "cools down" between batches (see `BatcherConfig::cooldown`)
//! so that rows gather into larger batches, which cost far less CPU per row than back-to-back small ones.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::artifact::LatencyPoint;
use crate::runtime::GraphSession;

/// Probabilities for one job's rows, with where its time went.
#[derive(Debug)]
pub struct JobResult {
    pub probabilities: Vec<f32>,
    pub queue_us: f64,
    pub run_us: f64,
    pub batch_rows: usize,
}

struct Job {
    ids: Vec<u32>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<JobResult, String>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    QueueFull,
    Stopped,
}

/// Predicts a batch's run time: the manifest's profile (µs by batch size, interpolated) times an online
/// correction (EWMA of observed / profiled), so estimates track this machine's current speed.
pub struct Estimator {
    profile: Vec<(f64, f64)>,
    scale: Mutex<f64>,
}

impl Estimator {
    pub fn new(points: &[LatencyPoint]) -> Self {
        let mut profile: Vec<(f64, f64)> = points.iter().map(|p| (p.batch_size as f64, p.median_us)).collect();
        profile.sort_by(|a, b| a.0.total_cmp(&b.0));
        if profile.is_empty() {
            profile.push((1.0, 500.0));
        }
        Self { profile, scale: Mutex::new(1.0) }
    }

    fn profiled(&self, rows: f64) -> f64 {
        let p = &self.profile;
        let seg = p.windows(2).find(|w| rows <= w[1].0).unwrap_or(if p.len() > 1 { &p[p.len() - 2..] } else { &p[..] });
        if seg.len() == 1 {
            return seg[0].1 * rows.max(1.0) / seg[0].0;
        }
        let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
        (y0 + (y1 - y0) * (rows - x0) / (x1 - x0)).max(1.0)
    }

    /// Expected run time (µs) of a batch of `rows` rows.
    pub fn run_us(&self, rows: usize) -> f64 {
        self.profiled(rows.max(1) as f64) * *self.scale.lock().expect("estimator lock")
    }

    pub fn observe(&self, rows: usize, us: f64) {
        let ratio = (us / self.profiled(rows.max(1) as f64)).clamp(0.05, 50.0);
        let mut s = self.scale.lock().expect("estimator lock");
        *s = 0.9 * *s + 0.1 * ratio;
    }
}

/// Rows a request may have to run inline on its own thread when the graph is idle (larger ones batch).
const INLINE_MAX_ROWS: usize = 16;

/// The submitting side of one graph's queue.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    /// Shared with the worker thread: an idle graph runs small requests inline, skipping two thread hand-offs.
    session: Arc<Mutex<GraphSession>>,
    width: usize,
    metrics: Arc<Metrics>,
    labels: Arc<[String; 2]>,
    queued_rows: Arc<AtomicUsize>,
    running_rows: Arc<AtomicUsize>,
    pub estimator: Arc<Estimator>,
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
    cooling: Arc<Cooling>,
}

pub struct BatcherConfig {
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
    /// While the graph is busy, after a partial batch during which more rows arrived, the worker waits this
    /// multiple of the batch's run time (capped, see `cooldown_pause`) before the next one; 0 = greedy.
    pub cooldown: f64,
    /// Jobs the queue holds before `submit` answers `QueueFull`.
    pub queue_jobs: usize,
    pub width: usize,
    pub labels: [String; 2],
}

impl Batcher {
    /// Starts the thread that owns `session`.
    pub fn spawn(session: GraphSession, estimator: Estimator, cfg: BatcherConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = sync_channel(cfg.queue_jobs.max(1));
        let session = Arc::new(Mutex::new(session));
        let b = Self {
            tx,
            session: session.clone(),
            width: cfg.width,
            metrics: metrics.clone(),
            labels: Arc::new(cfg.labels.clone()),
            queued_rows: Arc::default(),
            running_rows: Arc::default(),
            estimator: Arc::new(estimator),
            max_batch_rows: cfg.max_batch_rows.max(1),
            max_queue_delay: cfg.max_queue_delay,
            cooling: Arc::new(Cooling::new(cfg.cooldown)),
        };
        let worker = b.clone_inner();
        std::thread::Builder::new()
            .name(format!("batcher-{}-{}", cfg.labels[0], cfg.labels[1]))
            .spawn(move || worker.run(&session, rx, cfg, metrics))
            .expect("spawn batcher thread");
        b
    }

    fn clone_inner(&self) -> Worker {
        Worker {
            queued_rows: self.queued_rows.clone(),
            running_rows: self.running_rows.clone(),
            estimator: self.estimator.clone(),
            max_batch_rows: self.max_batch_rows,
            max_queue_delay: self.max_queue_delay,
            cooling: self.cooling.clone(),
        }
    }

    /// Runs a small request at once on the caller's thread when nothing is queued or running (the common case
    /// at low load: no hand-off to the worker and back). `None`: busy or too large, so `submit` it.
    pub fn try_run_inline(&self, ids: &[u32], rows: usize) -> Option<Result<JobResult, String>> {
        if rows > INLINE_MAX_ROWS
            || self.queued_rows() > 0
            || self.running_rows.load(Ordering::SeqCst) > 0
            || !self.cooling.left().is_zero()
        {
            return None;
        }
        let mut session = self.session.try_lock().ok()?;
        self.running_rows.store(rows, Ordering::SeqCst);
        let start = Instant::now();
        let result = session.run(ids, self.width, "probability");
        let run_us = start.elapsed().as_secs_f64() * 1e6;
        self.running_rows.store(0, Ordering::SeqCst);
        drop(session);
        self.estimator.observe(rows, run_us);
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        self.metrics.batch_ran(&labels, rows, run_us);
        self.metrics.queue_us.with_label_values(&labels).observe(0.0);
        Some(
            result
                .map(|(p, _)| JobResult { probabilities: p, queue_us: 0.0, run_us, batch_rows: rows })
                .map_err(|e| format!("inference failed: {e}")),
        )
    }

    /// Queues `rows` encoded rows; never waits for room.
    pub fn submit(
        &self,
        ids: Vec<u32>,
        rows: usize,
    ) -> Result<oneshot::Receiver<Result<JobResult, String>>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.queued_rows.fetch_add(rows, Ordering::SeqCst);
        match self.tx.try_send(Job { ids, rows, enqueued: Instant::now(), reply }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.queued_rows.fetch_sub(rows, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// Estimated time (µs) until a new job of `rows` rows would be answered: the batch delay, the batches
    /// ahead of it, half of the batch running now, and its own batch.
    pub fn estimate_us(&self, rows: usize) -> f64 {
        let queued = self.queued_rows.load(Ordering::SeqCst);
        let running = self.running_rows.load(Ordering::SeqCst);
        let total = queued + rows;
        let full_batches = total / self.max_batch_rows;
        let rest = total % self.max_batch_rows;
        let mut us = full_batches as f64 * self.estimator.run_us(self.max_batch_rows);
        if rest > 0 {
            us += self.estimator.run_us(rest);
        }
        if running > 0 {
            us += 0.5 * self.estimator.run_us(running);
        } else {
            us += self.cooling.left().as_secs_f64() * 1e6;
        }
        if queued == 0 && running == 0 {
            us += self.max_queue_delay.as_secs_f64() * 1e6;
        }
        us
    }

    pub fn queued_rows(&self) -> usize {
        self.queued_rows.load(Ordering::SeqCst)
    }
}

/// Polls for up to `SPIN` before sleeping: waking a parked thread costs tens of µs on virtual machines, more
/// than a batch-1 run of a student, so a worker that just finished keeps listening for a moment.
const SPIN: Duration = Duration::from_micros(100);

fn next_job(rx: &Receiver<Job>) -> Option<Job> {
    let until = Instant::now() + SPIN;
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < until => std::hint::spin_loop(),
            Err(std::sync::mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// When a busy graph may start its next batch, shared by the worker (which sets it) and submitters (which
/// must neither run inline nor estimate zero wait while it cools).
struct Cooling {
    ratio: f64,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the worker waits; 0 = not cooling.
    until_ns: AtomicU64,
}

impl Cooling {
    fn new(ratio: f64) -> Self {
        Self { ratio: ratio.max(0.0), epoch: Instant::now(), until_ns: AtomicU64::new(0) }
    }

    fn left(&self) -> Duration {
        // Asked per request and tier: skip the clock read when not cooling, the usual case.
        match self.until_ns.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            until => Duration::from_nanos(until).saturating_sub(self.epoch.elapsed()),
        }
    }

    /// Sleeps for `cooldown_pause` after a batch, telling submitters meanwhile.
    fn after_batch(&self, run: Duration, one_row_us: f64, demand: f64, was_full: bool, queued_rows: usize) -> Duration {
        let busy = demand >= BUSY_DEMAND && !was_full && queued_rows > 0;
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
struct Demand {
    ewma: f64,
    prev_end: Instant,
    pause: Duration,
}

impl Demand {
    fn new() -> Self {
        Self { ewma: 0.0, prev_end: Instant::now(), pause: Duration::ZERO }
    }

    /// Records a run that ended at `now`; returns the updated demand.
    fn observe(&mut self, run: Duration, now: Instant) -> f64 {
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

struct Worker {
    queued_rows: Arc<AtomicUsize>,
    running_rows: Arc<AtomicUsize>,
    estimator: Arc<Estimator>,
    max_batch_rows: usize,
    max_queue_delay: Duration,
    cooling: Arc<Cooling>,
}

impl Worker {
    fn run(self, session: &Mutex<GraphSession>, rx: Receiver<Job>, cfg: BatcherConfig, metrics: Arc<Metrics>) {
        set_fine_timer_slack();
        let labels = [cfg.labels[0].as_str(), cfg.labels[1].as_str()];
        let mut demand = Demand::new();
        // Ends when every `Batcher` handle is dropped and the queue is drained.
        while let Some(first) = next_job(&rx) {
            // A zero delay is greedy batching: take what is queued now and run; rows that arrive while a batch
            // runs form the next one, so an idle server adds no wait and a busy one still batches.
            let deadline = first.enqueued + self.max_queue_delay;
            let mut rows = first.rows;
            let mut jobs = vec![first];
            while rows < self.max_batch_rows {
                let now = Instant::now();
                let next = if now >= deadline {
                    rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
                } else {
                    rx.recv_timeout(deadline - now)
                };
                match next {
                    Ok(job) => {
                        rows += job.rows;
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.queued_rows.fetch_sub(rows, Ordering::SeqCst);
            self.running_rows.store(rows, Ordering::SeqCst);
            metrics.queue_depth.with_label_values(&labels).set(self.queued_rows.load(Ordering::SeqCst) as i64);
            let mut ids = Vec::with_capacity(rows * cfg.width);
            for j in &jobs {
                ids.extend_from_slice(&j.ids);
            }
            let start = Instant::now();
            let result = session.lock().expect("session lock").run(&ids, cfg.width, "probability");
            let run = start.elapsed();
            let run_us = run.as_secs_f64() * 1e6;
            self.running_rows.store(0, Ordering::SeqCst);
            self.estimator.observe(rows, run_us);
            metrics.batch_ran(&labels, rows, run_us);
            answer(jobs, result, start, run_us, rows, &metrics.queue_us.with_label_values(&labels));
            let (queued, busy) = (self.queued_rows.load(Ordering::SeqCst), demand.observe(run, Instant::now()));
            let full = rows >= self.max_batch_rows;
            demand.pause = self.cooling.after_batch(run, self.estimator.run_us(1), busy, full, queued);
        }
    }
}

/// Hands each job its rows of a batch's result (or the error).
fn answer(
    jobs: Vec<Job>,
    result: Result<(Vec<f32>, usize), ort::Error>,
    start: Instant,
    run_us: f64,
    batch_rows: usize,
    wait: &Histogram,
) {
    match result {
        Ok((probs, _)) => {
            let mut offset = 0;
            for j in jobs {
                let queue_us = start.duration_since(j.enqueued).as_secs_f64() * 1e6;
                wait.observe(queue_us);
                let probabilities = probs[offset..offset + j.rows].to_vec();
                offset += j.rows;
                let _ = j.reply.send(Ok(JobResult { probabilities, queue_us, run_us, batch_rows }));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "graph run failed");
            for j in jobs {
                let _ = j.reply.send(Err(format!("inference failed: {e}")));
            }
        }
    }
}

/// Cooldowns last tens to hundreds of µs; the default 50 µs timer slack would add up to as much again.
fn set_fine_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
    }
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
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, false, 3), 200 * US);
        assert_eq!(cooling.after_batch(run, 120.0, 0.3, false, 3), Duration::ZERO, "not busy");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, false, 0), Duration::ZERO, "nothing queued");
        assert_eq!(cooling.after_batch(run, 120.0, 0.9, true, 500), Duration::ZERO, "a backlog");
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

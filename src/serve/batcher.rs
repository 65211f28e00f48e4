//! Dynamic batching per graph: a bounded queue feeds one thread that owns the graph's ONNX Runtime
//! session (`Session::run` takes `&mut self`), forms batches of up to `max_batch_rows` rows from what is
//! queued (waiting at most `max_queue_delay` after the first job for more), runs them and answers each job
//! through a oneshot channel.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

pub struct BatcherConfig {
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
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
        }
    }

    /// Runs a small request at once on the caller's thread when nothing is queued or running (the common case
    /// at low load: no hand-off to the worker and back). `None`: busy or too large, so `submit` it.
    pub fn try_run_inline(&self, ids: &[u32], rows: usize) -> Option<Result<JobResult, String>> {
        if rows > INLINE_MAX_ROWS || self.queued_rows() > 0 || self.running_rows.load(Ordering::SeqCst) > 0 {
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

struct Worker {
    queued_rows: Arc<AtomicUsize>,
    running_rows: Arc<AtomicUsize>,
    estimator: Arc<Estimator>,
    max_batch_rows: usize,
    max_queue_delay: Duration,
}

impl Worker {
    fn run(self, session: &Mutex<GraphSession>, rx: Receiver<Job>, cfg: BatcherConfig, metrics: Arc<Metrics>) {
        let labels = [cfg.labels[0].as_str(), cfg.labels[1].as_str()];
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
            let run_us = start.elapsed().as_secs_f64() * 1e6;
            self.running_rows.store(0, Ordering::SeqCst);
            self.estimator.observe(rows, run_us);
            metrics.batch_ran(&labels, rows, run_us);
            match result {
                Ok((probs, _)) => {
                    let mut offset = 0;
                    for j in jobs {
                        let queue_us = start.duration_since(j.enqueued).as_secs_f64() * 1e6;
                        metrics.queue_us.with_label_values(&labels).observe(queue_us);
                        let p = probs[offset..offset + j.rows].to_vec();
                        offset += j.rows;
                        let _ = j.reply.send(Ok(JobResult { probabilities: p, queue_us, run_us, batch_rows: rows }));
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
    }
}

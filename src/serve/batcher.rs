//! Dynamic batching per graph: a bounded queue feeds one thread that owns the graph's ONNX Runtime
//! session (`Session::run` takes `&mut self`), forms batches from what is queued (waiting at most
//! `max_queue_delay` after the first job for more), runs them and answers each job through a oneshot
//! channel. A batch takes further jobs only while it is smaller than the graph's efficient size: at ranking
//! sizes ONNX Runtime already runs near its best rows/s, and merging would only make one request wait for
//! another's rows. Jobs whose deadline passed or whose caller left are dropped before they run.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use tokio::sync::oneshot;

use super::cooldown::{Cooling, Demand};
use super::metrics::Metrics;
use super::router::{Estimator, QueueState};
use crate::runtime::GraphSession;

/// Probabilities for one job's rows, with where its time went.
#[derive(Debug)]
pub struct JobResult {
    pub probabilities: Vec<f32>,
    pub queue_us: f64,
    pub run_us: f64,
    pub batch_rows: usize,
}

/// Why a job got no probabilities.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("the deadline passed before the job's batch started")]
    DeadlineExceeded,
    #[error("inference failed: {0}")]
    Inference(String),
}

pub type JobReply = Result<JobResult, JobError>;

struct Job {
    ids: Vec<u32>,
    rows: usize,
    enqueued: Instant,
    /// Past it the job is answered `DeadlineExceeded` instead of run.
    deadline: Instant,
    reply: oneshot::Sender<JobReply>,
}

/// Why a queued job is dropped instead of run (the `reason` label of `ensemble_serve_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    DeadlineExceeded,
    ClientDisconnected,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::ClientDisconnected => "client_disconnected",
        }
    }
}

impl Job {
    /// Why the job must not run now: its deadline passed, or its caller stopped waiting (a client that
    /// disconnected drops its handler and with it the receiver).
    fn stale(&self, now: Instant) -> Option<DropReason> {
        if now >= self.deadline {
            Some(DropReason::DeadlineExceeded)
        } else if self.reply.is_closed() {
            Some(DropReason::ClientDisconnected)
        } else {
            None
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    QueueFull,
    Stopped,
}

/// Counters shared by submitters and the worker.
#[derive(Default)]
struct Load {
    queued_rows: AtomicUsize,
    queued_jobs: AtomicUsize,
    running_rows: AtomicUsize,
    /// When the graph last ran anything (a batch or a warm-up), µs since `EPOCH`.
    last_run_us: AtomicU64,
    /// When the graph last ran requests (not a warm-up), µs since `EPOCH`; 0 = never.
    last_served_us: AtomicU64,
    /// A warm-up run holds the session: an inline request waits for it (one row) instead of queueing.
    warming: AtomicBool,
}

impl Load {
    fn ran_now(&self) {
        self.last_run_us.store(epoch_us(), Ordering::Relaxed);
    }
    fn served_now(&self) {
        let now = epoch_us().max(1);
        self.last_run_us.store(now, Ordering::Relaxed);
        self.last_served_us.store(now, Ordering::Relaxed);
    }
    fn served_within(&self, span: Duration) -> bool {
        let served = self.last_served_us.load(Ordering::Relaxed);
        served != 0 && epoch_us().saturating_sub(served) <= span.as_micros() as u64
    }
    fn idle_for(&self) -> Duration {
        Duration::from_micros(epoch_us().saturating_sub(self.last_run_us.load(Ordering::Relaxed)))
    }
}

/// A process-wide time origin for the atomics above (an `Instant` does not fit in one).
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn epoch_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// The submitting side of one graph's queue.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    /// Shared with the worker thread: an idle graph runs small requests inline, skipping two thread hand-offs.
    session: Arc<Mutex<GraphSession>>,
    width: usize,
    metrics: Arc<Metrics>,
    labels: Arc<[String; 2]>,
    load: Arc<Load>,
    pub estimator: Arc<Estimator>,
    pub max_batch_rows: usize,
    /// A batch stops taking further jobs once it holds this many rows.
    pub merge_rows: usize,
    pub max_queue_delay: Duration,
    cooling: Arc<Cooling>,
}

pub struct BatcherConfig {
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
    /// While the graph is busy, after a partial batch during which more rows arrived, the worker waits this
    /// multiple of the batch's run time (capped, see `cooldown::cooldown_pause`) before the next; 0 = greedy.
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
        let max_batch_rows = cfg.max_batch_rows.max(1);
        let b = Self {
            tx,
            session: session.clone(),
            width: cfg.width,
            metrics: metrics.clone(),
            labels: Arc::new(cfg.labels.clone()),
            load: Arc::default(),
            merge_rows: estimator.efficient_rows().min(max_batch_rows),
            estimator: Arc::new(estimator),
            max_batch_rows,
            max_queue_delay: cfg.max_queue_delay,
            cooling: Arc::new(Cooling::new(cfg.cooldown)),
        };
        let worker = Worker {
            load: b.load.clone(),
            estimator: b.estimator.clone(),
            max_batch_rows,
            merge_rows: b.merge_rows,
            max_queue_delay: b.max_queue_delay,
            cooling: b.cooling.clone(),
        };
        std::thread::Builder::new()
            .name(format!("batcher-{}-{}", cfg.labels[0], cfg.labels[1]))
            .spawn(move || worker.run(&session, rx, cfg, metrics))
            .expect("spawn batcher thread");
        b
    }

    fn labels(&self) -> [&str; 2] {
        [self.labels[0].as_str(), self.labels[1].as_str()]
    }

    /// Runs a request at once on the caller's thread when nothing is queued or running (the common case
    /// below saturation: no hand-off to the worker and back, which costs 5–8% of a 165-row run on one core,
    /// `cargo bench --bench serving` floor_ratio). `None`: the graph is busy, so `submit` it.
    /// `started` is called once the run holds the session, before it runs.
    pub fn try_run_inline(&self, ids: &[u32], rows: usize, started: impl FnOnce()) -> Option<JobReply> {
        if self.load.queued_jobs.load(Ordering::SeqCst) > 0
            || self.load.running_rows.load(Ordering::SeqCst) > 0
            || !self.cooling.left().is_zero()
        {
            return None;
        }
        let mut session = match self.session.try_lock() {
            Ok(s) => s,
            // A one-row warm-up ends within ~0.1 ms: waiting for it beats two thread hand-offs.
            Err(_) if self.load.warming.load(Ordering::SeqCst) => self.session.lock().ok()?,
            Err(_) => return None,
        };
        started();
        self.load.running_rows.store(rows, Ordering::SeqCst);
        let start = Instant::now();
        let result = session.run(ids, self.width, "probability");
        let run_us = start.elapsed().as_secs_f64() * 1e6;
        self.load.running_rows.store(0, Ordering::SeqCst);
        self.load.served_now();
        drop(session);
        self.estimator.observe(rows, run_us);
        self.metrics.batch_ran(&self.labels(), rows, run_us);
        self.metrics.queue_us.with_label_values(&self.labels()).observe(0.0);
        Some(
            result
                .map(|(p, _)| JobResult { probabilities: p, queue_us: 0.0, run_us, batch_rows: rows })
                .map_err(|e| JobError::Inference(e.to_string())),
        )
    }

    /// Runs one row through an idle graph that has not run for `after` but served requests within `span`,
    /// so the next request finds its weights, code and translations warm (`idle_spin` mode calls this from a
    /// `SCHED_IDLE` thread, so it only ever uses a core nothing else wants). Graphs nobody uses now are left
    /// cold: their warm-ups would only burn CPU (16 graphs for the two shipped models) and hold sessions.
    /// No metrics or estimates see it. Returns whether it ran.
    pub fn keep_warm(&self, after: Duration, span: Duration) -> bool {
        let busy =
            self.load.queued_jobs.load(Ordering::SeqCst) > 0 || self.load.running_rows.load(Ordering::SeqCst) > 0;
        if busy || self.load.idle_for() < after || !self.load.served_within(span) {
            return false;
        }
        let Ok(mut session) = self.session.try_lock() else { return false };
        self.load.warming.store(true, Ordering::SeqCst);
        let _ = session.run(&vec![1u32; self.width], self.width, "probability");
        self.load.ran_now();
        self.load.warming.store(false, Ordering::SeqCst);
        true
    }

    /// Queues `rows` encoded rows to run before `deadline`; never waits for room.
    pub fn submit(
        &self,
        ids: Vec<u32>,
        rows: usize,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<JobReply>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.load.queued_rows.fetch_add(rows, Ordering::SeqCst);
        self.load.queued_jobs.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(Job { ids, rows, enqueued: Instant::now(), deadline, reply }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.load.queued_rows.fetch_sub(rows, Ordering::SeqCst);
                self.load.queued_jobs.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// What routing's estimate reads: the queue, the batch running, the cooldown left.
    pub fn queue_state(&self) -> QueueState {
        QueueState {
            queued_rows: self.load.queued_rows.load(Ordering::SeqCst),
            queued_jobs: self.load.queued_jobs.load(Ordering::SeqCst),
            running_rows: self.load.running_rows.load(Ordering::SeqCst),
            max_batch_rows: self.max_batch_rows,
            merge_rows: self.merge_rows,
            cooling_left_us: self.cooling.left().as_secs_f64() * 1e6,
            max_queue_delay_us: self.max_queue_delay.as_secs_f64() * 1e6,
        }
    }

    /// Estimated time (µs) until a new job of `rows` rows would be answered (see `router::estimate_us`).
    pub fn estimate_us(&self, rows: usize) -> f64 {
        super::router::estimate_us(|r| self.estimator.run_us(r), &self.queue_state(), rows)
    }

    pub fn queued_rows(&self) -> usize {
        self.load.queued_rows.load(Ordering::SeqCst)
    }
}

/// Polls for up to `SPIN` before sleeping: waking a parked thread costs tens of µs on virtual machines, more
/// than a batch-1 run of a student, so a worker that just finished keeps listening for a moment. Only with
/// a core to spare: on one core the spin would take the CPU from the thread that answers and decodes.
const SPIN: Duration = Duration::from_micros(100);

fn spin_time() -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        SPIN
    } else {
        Duration::ZERO
    }
}

fn next_job(rx: &Receiver<Job>, spin: Duration) -> Option<Job> {
    let until = Instant::now() + spin;
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
    load: Arc<Load>,
    estimator: Arc<Estimator>,
    max_batch_rows: usize,
    merge_rows: usize,
    max_queue_delay: Duration,
    cooling: Arc<Cooling>,
}

impl Worker {
    fn run(self, session: &Mutex<GraphSession>, rx: Receiver<Job>, cfg: BatcherConfig, metrics: Arc<Metrics>) {
        set_fine_timer_slack();
        let labels = [cfg.labels[0].as_str(), cfg.labels[1].as_str()];
        let mut demand = Demand::new();
        let spin = spin_time();
        // Ends when every `Batcher` handle is dropped and the queue is drained.
        while let Some(first) = next_job(&rx, spin) {
            let taken = self.gather(first, &rx);
            self.load.queued_rows.fetch_sub(taken.iter().map(|j| j.rows).sum(), Ordering::SeqCst);
            self.load.queued_jobs.fetch_sub(taken.len(), Ordering::SeqCst);
            metrics.queue_depth.with_label_values(&labels).set(self.load.queued_rows.load(Ordering::SeqCst) as i64);
            let jobs = drop_stale(taken, &metrics, &labels);
            if jobs.is_empty() {
                continue;
            }
            let rows: usize = jobs.iter().map(|j| j.rows).sum();
            self.load.running_rows.store(rows, Ordering::SeqCst);
            let mut ids = Vec::with_capacity(rows * cfg.width);
            for j in &jobs {
                ids.extend_from_slice(&j.ids);
            }
            let start = Instant::now();
            let result = session.lock().expect("session lock").run(&ids, cfg.width, "probability");
            let run = start.elapsed();
            let run_us = run.as_secs_f64() * 1e6;
            self.load.running_rows.store(0, Ordering::SeqCst);
            self.load.served_now();
            self.estimator.observe(rows, run_us);
            metrics.batch_ran(&labels, rows, run_us);
            answer(jobs, result, start, run_us, rows, &metrics.queue_us.with_label_values(&labels));
            let (queued, busy) = (self.load.queued_rows.load(Ordering::SeqCst), demand.observe(run, Instant::now()));
            let one_row_us = self.estimator.run_us(1);
            demand.pause = self.cooling.after_batch(run, one_row_us, busy, (rows, self.max_batch_rows), queued);
        }
    }

    /// The jobs of the next batch: `first`, then what is queued (waiting until `max_queue_delay` after the
    /// first was queued) while the batch is below the merge size. A zero delay is greedy batching: rows that
    /// arrive while a batch runs form the next one, so an idle server adds no wait and a busy one still batches.
    fn gather(&self, first: Job, rx: &Receiver<Job>) -> Vec<Job> {
        let deadline = first.enqueued + self.max_queue_delay;
        let mut rows = first.rows;
        let mut jobs = vec![first];
        while rows < self.merge_rows.min(self.max_batch_rows) {
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
        jobs
    }
}

/// Answers and counts the jobs that must not run (deadline passed, caller gone); returns the rest.
fn drop_stale(jobs: Vec<Job>, metrics: &Metrics, labels: &[&str; 2]) -> Vec<Job> {
    let now = Instant::now();
    let mut fresh = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job.stale(now) {
            None => fresh.push(job),
            Some(reason) => {
                metrics.dropped.with_label_values(&[labels[0], labels[1], reason.as_str()]).inc();
                let _ = job.reply.send(Err(JobError::DeadlineExceeded));
            }
        }
    }
    fresh
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
                let _ = j.reply.send(Err(JobError::Inference(e.to_string())));
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

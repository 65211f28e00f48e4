//! The open-loop engine. Each request's scheduled send time comes from the arrival process, and it is sent
//! then without waiting for earlier answers; latency runs from the scheduled time, so a stalled server shows
//! up in the numbers instead of slowing the sender (no coordinated omission).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Normal};

use crate::busy_poll::BusyPoll;
use crate::protocol::{Answer, Prepared, Sender};
use crate::replay::Replay;
use crate::scenario::{Arrival, BudgetShare, Policy, RowsDist};

/// Status codes that are not HTTP: the request never got an answer.
pub const TRANSPORT_ERROR: u16 = 0;
pub const CLIENT_TIMEOUT: u16 = 1;
/// The generator already had `max_outstanding` requests open; this one was not sent.
pub const GENERATOR_OVERFLOW: u16 = 2;

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Shot {
    pub phase: u16,
    /// Scheduled send time, ns since the run's start.
    pub sched_ns: u64,
    pub latency_us: u64,
    pub status: u16,
    /// Index into `Collected::tiers`; `u8::MAX` when no tier answered.
    pub tier: u8,
    pub budget_ms: f32,
    /// Offset of this shot's scores in `Collected::scores`.
    pub scores_at: u32,
    /// Rows in the request, the split's rows `first_row ..` (cycling).
    pub rows: u32,
    pub first_row: u32,
    /// Actual minus scheduled send time (µs): the generator's own delay.
    pub lag_us: u32,
    /// The server's own time for it (`server_time_us`: from the kernel's receipt of its bytes to its answer).
    pub server_us: u32,
    /// Of which ONNX Runtime ran its batch (`inference_time_us`).
    pub run_us: u32,
}

impl Shot {
    /// A request of `phase` not sent yet (a generator overflow until an answer says otherwise).
    fn empty(phase: u16) -> Self {
        Shot {
            phase,
            sched_ns: 0,
            latency_us: 0,
            status: GENERATOR_OVERFLOW,
            tier: u8::MAX,
            budget_ms: 0.0,
            scores_at: 0,
            rows: 0,
            first_row: 0,
            lag_us: 0,
            server_us: 0,
            run_us: 0,
        }
    }
}

#[derive(Default)]
pub struct Collected {
    pub shots: Vec<Shot>,
    /// (row, served probability) of every answered instance.
    pub scores: Vec<(u32, f32)>,
    pub tiers: Vec<String>,
}

impl Collected {
    /// Appends a later run's outcomes, its schedule shifted by `offset_ns` (one phase run in chunks).
    pub fn absorb(&mut self, later: Collected, offset_ns: u64) {
        let scores_base = self.scores.len() as u32;
        let tiers: Vec<u8> = later.tiers.iter().map(|t| self.tier_index(t)).collect();
        self.shots.extend(later.shots.into_iter().map(|s| Shot {
            sched_ns: s.sched_ns + offset_ns,
            scores_at: s.scores_at + scores_base,
            tier: tiers.get(s.tier as usize).copied().unwrap_or(u8::MAX),
            ..s
        }));
        self.scores.extend(later.scores);
    }

    /// When the last answer (of any status) came, in ns since the timeline began.
    pub fn last_answer_ns(&self) -> Option<u64> {
        self.shots.iter().map(|s| s.sched_ns + s.latency_us * 1000).max()
    }

    /// (scheduled ns, rows) of every request: an arrival trace.
    pub fn trace(&self) -> Vec<(u64, u32)> {
        self.shots.iter().map(|s| (s.sched_ns, s.rows)).collect()
    }

    fn tier_index(&mut self, label: &str) -> u8 {
        if let Some(i) = self.tiers.iter().position(|t| t == label) {
            return i as u8;
        }
        self.tiers.push(label.to_string());
        (self.tiers.len() - 1) as u8
    }
}

pub struct Load<'a> {
    pub sender: Sender,
    pub replay: &'a Replay,
    pub policy: Policy,
    pub budgets: &'a [BudgetShare],
    pub arrival: Arrival,
    pub max_outstanding: usize,
    /// One permit per connection: a request holds one from send to answer.
    pub connections: Arc<tokio::sync::Semaphore>,
    pub timeout: Duration,
    pub seed: u64,
    /// Rows of every request, unless `rows_dist` draws them per request.
    pub per_request: usize,
    pub rows_dist: Option<RowsDist>,
    /// Keeps the client polling while a closed loop runs.
    pub busy_poll: &'a BusyPoll,
}

/// One segment of a run: `rate` requests/s for `duration` (or a closed loop, see [`run_closed`]).
#[derive(Clone, Copy)]
pub struct Segment {
    pub phase: u16,
    pub rate: f64,
    /// Closed loop with this many connections instead of arrivals at `rate`.
    pub closed: Option<usize>,
    pub duration: Duration,
}

/// Sends the segments back to back on one timeline and waits for every answer (or its timeout).
/// `next_request` numbers requests across calls so replay continues through the split.
///
/// With the polling client (the default) a task on the client runtime paces the sends, yielding until each
/// one's time, so the runtime never sleeps in `epoll_wait` and no answer waits for a halted core to wake;
/// this thread only builds the requests ahead. With `--client-sleeps` this thread paces them itself.
pub fn run_segments(
    rt: &tokio::runtime::Runtime,
    load: &Load,
    segments: &[Segment],
    next_request: &mut u64,
    progress: &indicatif::ProgressBar,
) -> Collected {
    let fire = Fire::new(rt, load);
    let start = Instant::now();
    load.busy_poll.during(|| {
        match load.busy_poll.enabled() {
            true => {
                let (tx, rx) = tokio::sync::mpsc::channel(BUILT_AHEAD);
                let pacer = rt.spawn(fire.clone().pace(rx));
                schedule(load, segments, next_request, start, |timed| {
                    // Only if the pacer is gone (reported below): the request is counted, as never sent.
                    if let Err(unsent) = tx.blocking_send(timed) {
                        fire.collected.lock().expect("collector").shots.push(unsent.0 .2);
                    }
                    progress.inc(1);
                });
                drop(tx);
                if let Err(e) = rt.block_on(pacer) {
                    eprintln!("warning: the pacing task failed: {e}");
                }
            }
            false => schedule(load, segments, next_request, start, |(sched, request, shot)| {
                sleep_until(sched);
                fire.send(shot, request, sched);
                progress.inc(1);
            }),
        }
        fire.wait_for_answers(load.timeout);
    });
    let mut c = fire.collected.lock().expect("collector");
    std::mem::take(&mut *c)
}

/// Requests the building thread may be ahead of the polling pacer.
const BUILT_AHEAD: usize = 64;

/// A request built ahead of its scheduled send time, with its shot.
type Timed = (Instant, Prepared, Shot);

/// Builds every request of `segments` in order with its scheduled time (`start` + the arrival process's
/// offset) and hands each to `send`.
fn schedule(load: &Load, segments: &[Segment], next_request: &mut u64, start: Instant, mut send: impl FnMut(Timed)) {
    let mut rng = ChaCha8Rng::seed_from_u64(load.seed ^ *next_request);
    let mut offset = 0.0f64;
    for seg in segments {
        let end = offset + seg.duration.as_secs_f64();
        let gap = Exp::new(seg.rate.max(1e-9)).expect("positive rate");
        offset += first_gap(load.arrival, seg.rate, &gap, &mut rng);
        while offset < end {
            let sched = start + Duration::from_secs_f64(offset);
            let i = *next_request;
            *next_request += 1;
            // The body is built before its send time: building it is the client's work, not the server's.
            let (request, shot) = prepare(load, i, seg.phase, &mut rng);
            let shot = Shot { sched_ns: sched.duration_since(start).as_nanos() as u64, ..shot };
            send((sched, request, shot));
            offset += match load.arrival {
                Arrival::Poisson => gap.sample(&mut rng),
                Arrival::Constant => 1.0 / seg.rate,
            };
        }
        offset = end;
    }
}

/// What sending an open loop's requests needs, owned so that a task on the client runtime can pace them.
#[derive(Clone)]
struct Fire {
    rt: tokio::runtime::Handle,
    sender: Sender,
    connections: Arc<tokio::sync::Semaphore>,
    max_outstanding: usize,
    n_rows: u32,
    collected: Arc<Mutex<Collected>>,
    outstanding: Arc<AtomicUsize>,
}

impl Fire {
    fn new(rt: &tokio::runtime::Runtime, load: &Load) -> Self {
        Self {
            rt: rt.handle().clone(),
            sender: load.sender.clone(),
            connections: load.connections.clone(),
            max_outstanding: load.max_outstanding,
            n_rows: load.replay.rows.len() as u32,
            collected: Default::default(),
            outstanding: Default::default(),
        }
    }

    /// Sends each request at its time, yielding to the runtime's other tasks (and its I/O) until then.
    async fn pace(self, mut built: tokio::sync::mpsc::Receiver<Timed>) {
        while let Some((sched, request, shot)) = built.recv().await {
            while Instant::now() < sched {
                tokio::task::yield_now().await;
            }
            self.send(shot, request, sched);
        }
    }

    /// Sends `request` (built ahead of its scheduled time `sched`) without waiting for its answer.
    fn send(&self, shot: Shot, request: Prepared, sched: Instant) {
        if self.outstanding.load(Ordering::SeqCst) >= self.max_outstanding {
            self.collected.lock().expect("collector").shots.push(shot);
            return;
        }
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        // The lag: how late the pacing woke for this send (a starved generator measures itself).
        let lag_us = sched.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let shot = Shot { lag_us, ..shot };
        let this = self.clone();
        self.rt.spawn(async move {
            let permit = this.connections.acquire_owned().await.expect("connection semaphore is never closed");
            let (status, answer) = this.sender.send(request).await;
            drop(permit);
            record(&this.collected, Shot { status, ..shot }, sched, answer, this.n_rows);
            this.outstanding.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Waits until every sent request is answered or `timeout` (and a second) has passed.
    fn wait_for_answers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout + Duration::from_secs(1);
        while self.outstanding.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn first_gap(arrival: Arrival, rate: f64, gap: &Exp<f64>, rng: &mut ChaCha8Rng) -> f64 {
    match arrival {
        Arrival::Poisson => gap.sample(rng),
        Arrival::Constant => 0.5 / rate,
    }
}

/// Request `i` of `phase`, built: its budget and size drawn, its body from the replay, and its shot (not sent
/// yet, no schedule).
fn prepare(load: &Load, i: u64, phase: u16, rng: &mut ChaCha8Rng) -> (Prepared, Shot) {
    let (budget, rows) = (draw_budget(load.budgets, rng), draw_rows(load, rng));
    let first_row = load.replay.first_row(i);
    let request = load.sender.prepare(load.replay, first_row, rows, load.policy.tier(), budget);
    (request, Shot { first_row, rows: rows as u32, budget_ms: budget as f32, ..Shot::empty(phase) })
}

fn draw_rows(load: &Load, rng: &mut ChaCha8Rng) -> usize {
    let Some(d) = load.rows_dist else { return load.per_request };
    let x = Normal::new(d.mean, d.sd).map_or(d.mean, |n| n.sample(rng));
    (x.round().max(0.0) as usize).clamp(d.min, d.max)
}

fn draw_budget(mix: &[BudgetShare], rng: &mut ChaCha8Rng) -> f64 {
    let mut u: f64 = rng.gen();
    for b in mix {
        if u < b.share {
            return b.ms;
        }
        u -= b.share;
    }
    mix.last().map_or(10.0, |b| b.ms)
}

/// Precise sleep: the thread's timer slack is 1 ns (set in main), and the last [`SPIN_BEFORE`] is spent
/// yielding in a loop, because a timer wake-up of an idle virtual CPU was measured 100–150 µs late here.
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now + SPIN_BEFORE {
        std::thread::sleep(t - now - SPIN_BEFORE);
    }
    while Instant::now() < t {
        // Yielding lets the client's runtime thread on this core answer and send meanwhile.
        std::thread::yield_now();
    }
}

/// How long before a send time the pacing thread stops sleeping.
const SPIN_BEFORE: Duration = Duration::from_micros(400);

/// Files one answered (or failed) request: its latency from `sched`, the tier and times the server reported,
/// and its scores by replay row (`n_rows` rows, cycling).
fn record(collected: &Mutex<Collected>, shot: Shot, sched: Instant, answer: Option<Answer>, n_rows: u32) {
    let latency_us = sched.elapsed().as_micros() as u64;
    let mut c = collected.lock().expect("collector");
    let mut shot = Shot { latency_us, ..shot };
    if let Some(a) = answer {
        shot.tier = c.tier_index(&a.served_by);
        shot.server_us = a.server_time_us.round().clamp(0.0, u32::MAX as f64) as u32;
        shot.run_us = a.inference_time_us.round().clamp(0.0, u32::MAX as f64) as u32;
        shot.scores_at = c.scores.len() as u32;
        let first = shot.first_row;
        c.scores.extend(a.probabilities.iter().enumerate().map(|(j, &p)| ((first + j as u32) % n_rows, p)));
    }
    c.shots.push(shot);
}

/// Requests built ahead for a closed-loop segment, sent in turn.
const CLOSED_POOL: u64 = 256;

/// A closed-loop segment: each of `clients` connections sends its next request as soon as its previous one
/// is answered, for `seg.duration`. It measures the server's throughput at saturation; with no pacing there
/// is no send lag to spoil it.
pub fn run_closed(
    rt: &tokio::runtime::Runtime,
    load: &Load,
    (seg, clients): (&Segment, usize),
    next_request: &mut u64,
    progress: &indicatif::ProgressBar,
) -> Collected {
    let mut rng = ChaCha8Rng::seed_from_u64(load.seed ^ *next_request);
    let pool: Arc<Vec<(Prepared, Shot)>> =
        Arc::new((*next_request..*next_request + CLOSED_POOL).map(|i| prepare(load, i, seg.phase, &mut rng)).collect());
    *next_request += CLOSED_POOL;
    let (collected, n_rows) = (Arc::new(Mutex::new(Collected::default())), load.replay.rows.len() as u32);
    let start = Instant::now();
    let end = start + seg.duration;
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|client| {
            let (pool, collected, sender, progress) =
                (pool.clone(), collected.clone(), load.sender.clone(), progress.clone());
            rt.spawn(async move {
                let mut k = client;
                while Instant::now() < end {
                    let (request, shot) = &pool[k % pool.len()];
                    k += clients;
                    let sent = Instant::now();
                    let (status, answer) = sender.send(request.clone()).await;
                    let shot = Shot { sched_ns: (sent - start).as_nanos() as u64, status, ..*shot };
                    record(&collected, shot, sent, answer, n_rows);
                    progress.inc(1);
                }
            })
        })
        .collect();
    load.busy_poll.during(|| {
        rt.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        })
    });
    let mut c = collected.lock().expect("collector");
    std::mem::take(&mut *c)
}

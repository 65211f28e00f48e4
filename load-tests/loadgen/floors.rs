//! The ideal server's costs: raw ONNX Runtime run times of the served graphs, timed in this process on the
//! server's cores before the run and after every phase (floors), and the ideal server itself, executed on a
//! phase's arrival trace right after the phase.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ensemble_serve::artifact::Artifact;
use ensemble_serve::runtime::GraphSession;

use crate::replay::Replay;
use crate::scenario::{Policy, Scenario};
use crate::{server, RunArgs};

/// Raw ONNX Runtime µs by rows (ascending) of the graph each policy forces: the ideal server's cost.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Floors {
    ensemble: Vec<(usize, f64)>,
    student: Vec<(usize, f64)>,
}

impl Floors {
    /// The ideal server's time for a request of `rows` rows under `policy` (budget routing: the ensemble's).
    pub fn service_us(&self, policy: Policy, rows: usize) -> f64 {
        let p = if policy == Policy::Student { &self.student } else { &self.ensemble };
        let i = p.iter().position(|&(n, _)| n >= rows).unwrap_or(p.len() - 1).max(1);
        let ((x0, y0), (x1, y1)) = (p[i - 1], p[i]);
        (y0 + (y1 - y0) * (rows as f64 - x0 as f64) / (x1 - x0) as f64).max(1.0)
    }

    /// Raw ONNX Runtime rows/s of `policy`'s graph at requests of `rows` rows.
    pub fn rows_per_s(&self, policy: Policy, rows: f64) -> f64 {
        let n = rows.round().max(1.0);
        n / self.service_us(policy, n as usize) * 1e6
    }

    /// The faster of two measurements at each size.
    pub fn min(a: &Floors, b: &Floors) -> Floors {
        let min =
            |x: &[(usize, f64)], y: &[(usize, f64)]| x.iter().zip(y).map(|(&(n, u), &(_, v))| (n, u.min(v))).collect();
        Floors { ensemble: min(&a.ensemble, &b.ensemble), student: min(&a.student, &b.student) }
    }
}

/// Rows at which the floors are measured (a request's time is interpolated between them).
const FLOOR_ROWS: [usize; 8] = [1, 16, 64, 128, 165, 256, 512, 1024];

/// The floors timed before and after the run, and what the ideal server used.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FloorRecord {
    pub before: Floors,
    pub after: Floors,
    /// The faster of the two at each size.
    pub best: Floors,
    /// How much slower (%) the slower measurement was at 165 rows on the ensemble: the machine's drift.
    pub drift_pct_165: f64,
}

impl FloorRecord {
    pub fn new(before: Floors, after: Floors) -> Self {
        let at = |f: &Floors| f.service_us(Policy::Ensemble, 165);
        let (a, b) = (at(&before), at(&after));
        let drift_pct_165 = (a.max(b) / a.min(b) - 1.0) * 100.0;
        Self { best: Floors::min(&before, &after), before, after, drift_pct_165 }
    }
}

/// What times the floors: the served model's graphs in this process, on the server's cores (the timing
/// thread moves there while no server runs, then back: one core's speed is not another's on this host).
pub struct FloorSession {
    pub artifact: Artifact,
    env: &'static ort::environment::Environment,
    /// Graph files of the ensemble and the best student.
    ensemble: String,
    student: String,
    /// (server, generator) CPUs.
    cpus: (Vec<usize>, Vec<usize>),
    /// The raw runs' session and rows, kept from turn to turn of a closed-loop phase.
    raw: std::sync::Mutex<Option<RawRuns>>,
}

/// A session and encoded rows for raw runs of `policy`'s graph at `rows` rows.
struct RawRuns {
    policy: Policy,
    rows: usize,
    session: GraphSession,
    width: usize,
    ids: Vec<u32>,
}

impl FloorSession {
    pub fn ensemble_session(&self) -> Result<GraphSession> {
        self.session(Policy::Ensemble)
    }

    /// A session of the graph `policy` forces (budget routing is measured against the ensemble).
    fn session(&self, policy: Policy) -> Result<GraphSession> {
        let a = &self.artifact;
        let file = if policy == Policy::Student { &self.student } else { &self.ensemble };
        Ok(GraphSession::load(self.env, &a.dir.join(file), &a.manifest.inputs, &a.encoder, 1)?)
    }

    /// A session of `policy`'s graph, the encoder's row width and the first `rows` replay rows encoded.
    fn graph_and_rows(&self, replay: &Replay, policy: Policy, rows: usize) -> Result<(GraphSession, usize, Vec<u32>)> {
        let ids = replay.encoded(&self.artifact.encoder, rows).map_err(anyhow::Error::msg)?;
        Ok((self.session(policy)?, self.artifact.encoder.width(), ids))
    }

    /// Runs `f` on the server's CPUs (this thread moves there while no request is in flight), then moves back.
    fn on_server_cpus<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        server::pin(&self.cpus.0).with_context(|| format!("moving {what} to the server's CPUs"))?;
        let out = f();
        server::pin(&self.cpus.1).context("moving back to the generator's CPUs")?;
        out
    }

    pub fn measure(&self, replay: &Replay) -> Result<Floors> {
        let time =
            |graph: &str| replay.run_times(&self.artifact, self.env, graph, &FLOOR_ROWS).map_err(anyhow::Error::msg);
        let floors = self.on_server_cpus("the floor timing", || {
            Ok(Floors { ensemble: time(&self.ensemble)?, student: time(&self.student)? })
        })?;
        eprintln!("raw ORT floors (rows, µs): ensemble {:?}; {} {:?}", floors.ensemble, self.student, floors.student);
        Ok(floors)
    }

    /// Executes the ideal server on `trace` ((scheduled ns since the phase began, rows)): one thread on the
    /// server's cores serving requests first come, first run, each a raw ONNX Runtime run on encoded replay
    /// rows, spinning between arrivals so that no run starts on a halted or cold core. Its latencies (µs)
    /// carry what this host does to run times over a half-minute, which the floors' medians leave out.
    pub fn run_ideal(&self, replay: &Replay, policy: Policy, trace: &[(u64, u32)]) -> Result<Vec<f64>> {
        let most = trace.iter().map(|&(_, rows)| rows as usize).max().unwrap_or(1);
        let (mut session, width, ids) = self.graph_and_rows(replay, policy, most)?;
        let mut order = trace.to_vec();
        order.sort_unstable();
        self.on_server_cpus("the ideal server", || {
            // Warm at a typical and at the largest size: the first run at a new size grows ORT's arenas.
            for rows in [most.min(165); 20].into_iter().chain([most; 3]) {
                session.run(&ids[..rows * width], width, "probability")?;
            }
            let start = Instant::now();
            let mut latencies = Vec::with_capacity(order.len());
            for &(sched_ns, rows) in &order {
                let at = start + Duration::from_nanos(sched_ns);
                while Instant::now() < at {
                    std::hint::spin_loop();
                }
                session.run(&ids[..rows as usize * width], width, "probability")?;
                latencies.push(at.elapsed().as_secs_f64() * 1e6);
            }
            Ok(latencies)
        })
    }

    /// Raw ONNX Runtime rows/s of `policy`'s graph running `rows`-row requests back to back for `duration` on
    /// the server's cores: a saturated ideal server, timed in turns with a closed-loop phase.
    pub fn raw_rows_per_s(&self, replay: &Replay, policy: Policy, rows: usize, duration: Duration) -> Result<f64> {
        let mut kept = self.raw.lock().expect("raw runs");
        if !kept.as_ref().is_some_and(|r| r.policy == policy && r.rows == rows) {
            let (session, width, ids) = self.graph_and_rows(replay, policy, rows)?;
            *kept = Some(RawRuns { policy, rows, session, width, ids });
        }
        let RawRuns { session, width, ids, .. } = kept.as_mut().expect("just set");
        self.on_server_cpus("the raw runs", || {
            // The server's turn has just evicted this session's weights from the caches.
            for _ in 0..5 {
                session.run(ids, *width, "probability")?;
            }
            let (start, mut runs) = (Instant::now(), 0usize);
            while start.elapsed() < duration {
                session.run(ids, *width, "probability")?;
                runs += 1;
            }
            Ok((runs * rows) as f64 / start.elapsed().as_secs_f64())
        })
    }
}

/// The served model's ensemble scores for every replayed row, and the raw ORT floors before the run.
pub fn offline_and_floors(args: &RunArgs, sc: &Scenario, replay: &Replay) -> Result<(Vec<f32>, Floors, FloorSession)> {
    let dir = ensemble_serve::artifact::latest_version(&args.models_dir, &args.model)?;
    let artifact = Artifact::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let lib = ensemble_serve::runtime::resolve_library(args.ort_lib.as_deref());
    let env = ensemble_serve::runtime::init(&lib)?;
    let offline = replay.offline_scores(&artifact, env).map_err(anyhow::Error::msg)?;
    let ensemble = artifact.manifest.ensemble().map(|g| g.file.clone()).context("no ensemble graph")?;
    let student = format!("student_{}.onnx", artifact.manifest.best_student);
    let cpus = (sc.server_cpus.clone(), sc.generator_cpus.clone());
    let session = FloorSession { artifact, env, ensemble, student, cpus, raw: Default::default() };
    let floors = session.measure(replay)?;
    Ok((offline, floors, session))
}

//! `loadgen`: open-loop load against the ensemble-serve HTTP server, replaying real rows of a dataset split.
//! See load-tests/README.md for the scenarios and how to read the results.
mod busy_poll;
mod driver;
mod floors;
mod isolate;
mod plots;
mod protocol;
mod replay;
mod report;
mod scenario;
mod server;
mod stats;
mod steal;
mod turns;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use busy_poll::BusyPoll;
use driver::{run_closed, run_segments, Collected, Load, Segment, Shot};
use floors::{offline_and_floors, FloorRecord, FloorSession, Floors};
use protocol::{Protocol, Sender};
use replay::Replay;
use report::RunResults;
use scenario::{Policy, Scenario, Target};
use stats::{summarise, timeline, PhaseInfo};
use turns::{judge_against_floors, run_beside_ideal, run_closed_beside_raw};

#[derive(Parser)]
#[command(name = "loadgen", about = "Open-loop load generator for ensemble-serve (loopback targets only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario file and writes results.json, summary.md and plots.
    Run(Box<RunArgs>),
    /// Rewrites a results directory's summary.md and plots from its results.json (after a change to how
    /// either is drawn); results.json is left as it is.
    Report {
        /// A directory `run` wrote (load-tests/results/<scenario>).
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario file (load-tests/scenarios/*.toml).
    scenario: PathBuf,
    /// An already running server (http://127.0.0.1:PORT); default: spawn `serve` on a free port.
    #[arg(long)]
    target: Option<String>,
    /// The `serve` binary to spawn (default: the one beside this binary).
    #[arg(long, env = "LOADGEN_SERVE_BIN")]
    serve_bin: Option<PathBuf>,
    /// Base config of the spawned server; the scenario's [server] keys override it.
    #[arg(long, default_value = "config/server.toml")]
    server_config: PathBuf,
    /// Models directory (served by the spawned server; read for the offline AUC).
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Model the requests go to.
    #[arg(long, default_value = "default")]
    model: String,
    /// Root of the real data (dataset specs' relative paths).
    #[arg(long, env = "CTR_DATA_DIR", default_value = ensemble_serve::paths::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Requests/s that `rate_x = 1` means.
    #[arg(long, env = "LOADGEN_CAPACITY")]
    capacity: Option<f64>,
    /// Multiplies every phase's duration (quick trials).
    #[arg(long, default_value_t = 1.0)]
    duration_scale: f64,
    /// Output directory (default load-tests/results/<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// ONNX Runtime library for the offline scores (default as `serve`).
    #[arg(long, env = "SERVE_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Client runtime threads (the server shares the machine).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Let the client sleep in epoll_wait between its sends and answers: its wake-ups then run on the server's
    /// core, which loopback bills to the server, and each answer waits for the client's core to wake
    /// (default: the client polls when the scenario gives it cores apart from the server's; see
    /// busy_poll.rs).
    #[arg(long)]
    client_sleeps: bool,
    /// Move kernel threads and unbound workqueues off the scenario's `server_cpus` for the run, as a
    /// latency-tuned host would, and put them back after (needs root; see isolate.rs).
    #[arg(long)]
    isolate_server_cores: bool,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
    /// Python of the peers' venv (default: the one scripts/setup installs in the cache, when present).
    #[arg(long, env = "ENSEMBLE_SERVE_PEERS_PYTHON")]
    peers_python: Option<PathBuf>,
    /// Directory of the peers' scripts.
    #[arg(long, default_value = "load-tests/peers")]
    peers_dir: PathBuf,
    /// Also write every request (policy, phase, scheduled ms, rows, status, latency, server time, send lag)
    /// to this CSV file, for looking at single requests.
    #[arg(long)]
    shots: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let args = match cli.command {
        Command::Run(args) => *args,
        Command::Report { dir } => {
            let results = report::read(&dir).map_err(anyhow::Error::msg)?;
            let files = report::rewrite_views(&results, &dir).map_err(anyhow::Error::msg)?;
            println!("rewrote {} in {}", files.join(", "), dir.display());
            return Ok(());
        }
    };
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack: sleeps wake within µs.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
    }
    let started = std::time::SystemTime::now();
    let mut sc = Scenario::load(&args.scenario).map_err(anyhow::Error::msg)?;
    // Before any thread starts, so the client runtime and the floor timing run there too.
    server::pin(&sc.generator_cpus)
        .with_context(|| format!("pinning the generator to CPUs {:?}", sc.generator_cpus))?;
    let isolation = args.isolate_server_cores.then(|| isolate::Isolation::apply(&sc.server_cpus, &sc.generator_cpus));
    for p in &mut sc.phases {
        p.duration_s *= args.duration_scale;
    }
    let rates = sc.rates(args.capacity).map_err(anyhow::Error::msg)?;
    let replay = Replay::load(&sc.dataset, &args.data_dir, sc.split, sc.instances_per_request, &sc.context_fields)
        .map_err(anyhow::Error::msg)?;
    if args.target.is_some() && sc.targets.iter().any(|&t| t != Target::Serve) {
        bail!("--target measures one running server; a scenario with peers starts each of them itself");
    }
    let (offline, floors, floor_session) = offline_and_floors(&args, &sc, &replay)?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads.max(1)).enable_all().build()?;
    // A polling client on the server's cores would take their time from it.
    let polling = BusyPoll::start(&rt, !args.client_sleeps && sc.generator_apart());
    exit_on_signal(&rt);
    let client = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).tcp_nodelay(true).build()?;
    let (mut phases, mut timelines, mut rss_kib, mut bases) = (Vec::new(), BTreeMap::new(), Vec::new(), Vec::new());
    for &target in &sc.targets {
        let spawned = match &args.target {
            Some(t) => {
                server::check_loopback(t).map_err(anyhow::Error::msg)?;
                None
            }
            None => Some(spawn(&args, &sc, target)?),
        };
        let base = spawned.as_ref().map_or_else(|| args.target.clone().unwrap_or_default(), |s| s.base.clone());
        let ours = target.is_ours();
        let rss = spawned.as_ref().filter(|_| ours).map(|s| server::RssSampler::start(s.pid(), Duration::from_secs(1)));
        let ctx =
            Ctx { args: &args, sc: &sc, rates: &rates, replay: &replay, rt: &rt, client: &client, polling: &polling };
        let grpc = spawned.as_ref().and_then(|s| s.grpc.clone());
        let (p, t) = drive(&ctx, target, (&base, grpc.as_deref()), (&offline, &floors, &floor_session))?;
        phases.extend(p);
        timelines.extend(t);
        rss_kib.extend(rss.map(|r| r.finish()).unwrap_or_default());
        if let Some(s) = spawned {
            let status = s.stop().map_err(anyhow::Error::msg)?;
            if ours && !status.success() {
                bail!("the server exited with {status} after the run");
            }
        }
        bases.push(format!("{} {base}", target.name()));
    }
    // The machine's speed drifts: floors timed again after the run, and the ideal server of a continuous
    // run's phases gets the faster of the two at each size (the more demanding floor); other phases were
    // judged against the floors on either side of them.
    let after = floor_session.measure(&replay)?;
    let floors = FloorRecord::new(floors, after);
    for x in phases.iter_mut().filter(|x| x.raw_rows_per_s.is_none()) {
        let policy = if x.policy.ends_with(Policy::Student.name()) { Policy::Student } else { Policy::Ensemble };
        x.ideal_p99_ms = stats::ideal_p99_ms(&x.trace, &|rows| floors.best.service_us(policy, rows));
    }
    let mut results = RunResults {
        started_utc: humantime::format_rfc3339_seconds(started).to_string(),
        machine: machine(),
        server_cores: isolation.as_ref().map_or_else(|| "shared with kernel threads".into(), |i| i.note.clone()),
        target: bases.join(", "),
        model: args.model.clone(),
        capacity_rps: args.capacity,
        phases,
        timelines,
        rss_kib,
        floors: Some(floors),
        verdicts: Default::default(),
        scenario: sc,
    };
    results.judge();
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("load-tests/results").join(&results.scenario.name));
    report::write(&results, &out).map_err(anyhow::Error::msg)?;
    println!("{}", report::markdown(&results));
    println!("results written to {}", out.display());
    Ok(())
}

fn spawn(args: &RunArgs, sc: &Scenario, target: Target) -> Result<server::Spawned> {
    let log = std::env::temp_dir().join(format!("loadgen-{}-{}.log", sc.name, target.name()));
    if !target.is_ours() {
        let python = args.peers_python.clone().or_else(ensemble_serve::paths::installed_peers_python).context(
            "peers need the setup's peers venv: run scripts/setup (or point ENSEMBLE_SERVE_PEERS_PYTHON at its Python)",
        )?;
        return server::Spawned::start_peer(server::PeerOptions {
            target,
            python: &python,
            peers_dir: &args.peers_dir,
            models_dir: &args.models_dir,
            model: &args.model,
            log,
            cpus: &sc.server_cpus,
        })
        .map_err(anyhow::Error::msg);
    }
    let serve_bin = match &args.serve_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("serve"),
    };
    server::Spawned::start(server::SpawnOptions {
        serve_bin: &serve_bin,
        base_config: &args.server_config,
        overrides: &sc.server,
        models_dir: &args.models_dir,
        log,
        cpus: &sc.server_cpus,
        grpc: target == Target::ServeGrpc,
    })
    .map_err(anyhow::Error::msg)
}

type Timelines = BTreeMap<String, Vec<stats::Window>>;

/// What every run of a scenario shares.
struct Ctx<'a> {
    args: &'a RunArgs,
    sc: &'a Scenario,
    rates: &'a [f64],
    replay: &'a Replay,
    rt: &'a tokio::runtime::Runtime,
    client: &'a reqwest::Client,
    polling: &'a BusyPoll,
}

/// Where `policy`'s requests go on `target` (HTTP at `base`, gRPC at `grpc`), and in which format.
fn endpoint(ctx: &Ctx, target: Target, policy: Policy, (base, grpc): (&str, Option<&str>)) -> Result<Sender> {
    let (model, tier) = (&ctx.args.model, policy.tier().unwrap_or("auto"));
    let (url, protocol) = match target {
        Target::Triton => (format!("{base}/v2/models/{tier}/infer"), Protocol::V2Json { tier, as_parameter: false }),
        Target::ServeV2Json => {
            (format!("{base}/v2/models/{model}/infer"), Protocol::V2Json { tier, as_parameter: true })
        }
        Target::ServeV2Binary => (format!("{base}/v2/models/{model}/infer"), Protocol::V2Binary { tier }),
        Target::ServeGrpc => (String::new(), Protocol::Grpc { tier }),
        Target::Serve | Target::Fastapi => (format!("{base}/v1/models/{model}/score"), Protocol::V1),
    };
    let grpc = match (protocol, grpc) {
        (Protocol::Grpc { .. }, Some(addr)) => Some(ctx.rt.block_on(async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?.connect().await?;
            Ok::<_, anyhow::Error>(
                ensemble_serve::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient::new(
                    channel,
                )
                .max_decoding_message_size(64 << 20),
            )
        })?),
        (Protocol::Grpc { .. }, None) => bail!("{}: no gRPC address", target.name()),
        _ => None,
    };
    let timeout = Duration::from_millis(ctx.sc.timeout_ms);
    Ok(Sender { protocol, url, http: ctx.client.clone(), grpc, timeout, model: model.clone() })
}

/// Runs every policy `target` supports against it.
fn drive(
    ctx: &Ctx,
    target: Target,
    (base, grpc): (&str, Option<&str>),
    (offline, floors, floor_session): (&[f32], &Floors, &FloorSession),
) -> Result<(Vec<stats::PhaseResult>, Timelines)> {
    let Ctx { args, sc, rates, replay, rt, polling, .. } = *ctx;
    let budgets = sc.budget_mix();
    // Ranking replays: the merged rows are scored offline after each phase, with a session of their own.
    let ranking_session =
        if replay.is_ranking() { Some(std::sync::Mutex::new(floor_session.ensemble_session()?)) } else { None };
    let (mut results, mut timelines) = (Vec::new(), BTreeMap::new());
    let mut next_request = 0u64;
    // The floors timed last: before the run, then after every phase (the machine's speed drifts by tens of
    // percent within minutes, so each phase is judged against the floors on either side of it).
    let mut last_floors = floors.clone();
    for policy in sc.policies.iter().copied().filter(|&p| target.runs(p)) {
        let label = target.label(policy);
        let load = Load {
            sender: endpoint(ctx, target, policy, (base, grpc))?,
            replay,
            policy,
            budgets: &budgets,
            arrival: sc.arrival,
            max_outstanding: sc.max_outstanding,
            connections: Arc::new(tokio::sync::Semaphore::new(sc.connections)),
            timeout: Duration::from_millis(sc.timeout_ms),
            seed: sc.seed,
            per_request: sc.instances_per_request,
            rows_dist: sc.rows_per_request,
            busy_poll: polling,
        };
        warm_up(rt, &load, &mut next_request);
        let segments: Vec<Segment> = sc
            .phases
            .iter()
            .zip(rates)
            .enumerate()
            .map(|(i, (p, &rate))| Segment {
                phase: i as u16,
                rate,
                closed: p.closed,
                duration: Duration::from_secs_f64(p.duration_s),
            })
            .collect();
        let summary = |c: &Collected, i: usize| {
            let shots: Vec<_> = c.shots.iter().filter(|s| s.phase as usize == i).collect();
            let p = &sc.phases[i];
            let name = match (p.name.is_empty(), p.closed) {
                (false, _) => p.name.clone(),
                (true, Some(n)) => format!("closed loop, {n} connections"),
                (true, None) => format!("{:.0} rps", rates[i]),
            };
            let info = PhaseInfo { policy: &label, phase: &name, offered_rps: rates[i], duration_s: p.duration_s };
            let service = |rows: usize| floors.service_us(policy, rows);
            let n = offline.len();
            let per_row = |s: &Shot| (0..s.rows as usize).map(|j| offline[(s.first_row as usize + j) % n]).collect();
            let merged = |s: &Shot| {
                let mut session = ranking_session.as_ref().expect("a ranking replay").lock().expect("offline session");
                replay.merged_scores(s.first_row, s.rows as usize, &mut session, &floor_session.artifact)
            };
            let offline: &stats::OfflineScores<'_> = if replay.is_ranking() { &merged } else { &per_row };
            summarise(info, &shots, c, &replay.labels, Some(offline), Some(&service))
        };
        if sc.continuous {
            let bar = progress(args.quiet, &label, &segments);
            // The steal counters at each phase's start, and after the last answer.
            let starts = segments.iter().scan(Duration::ZERO, |t, s| Some(std::mem::replace(t, *t + s.duration)));
            let sampler = steal::sample_at(starts.collect());
            let c = run_segments(rt, &load, &segments, &mut next_request, &bar);
            let mut ticks = sampler.join().unwrap_or_default();
            ticks.push(steal::CpuTicks::now());
            bar.finish_and_clear();
            append_shots(args.shots.as_deref(), &label, &c);
            results.extend((0..segments.len()).map(|i| {
                let mut r = summary(&c, i);
                if let (Some(a), Some(b)) = (ticks.get(i), ticks.get(i + 1)) {
                    r.judge_steal((a.steal_share(b, &sc.server_cpus), a.steal_share(b, &sc.generator_cpus)));
                }
                r
            }));
            timelines.insert(label.clone(), timeline(&c.shots, &c.tiers, sc.window_ms));
            continue;
        }
        for seg in &segments {
            let bar = progress(args.quiet, &label, std::slice::from_ref(seg));
            let ticks = steal::CpuTicks::now();
            // The phase's outcomes, the executed ideal's latencies (open loop) and raw rows/s (closed loop).
            let (c, executed, raw_executed) = match (seg.closed, sc.ideal_run) {
                (Some(n), false) => (run_closed(rt, &load, (seg, n), &mut next_request, &bar), None, None),
                (Some(n), true) => {
                    let (c, raw) = run_closed_beside_raw(rt, &load, (seg, n), &mut next_request, floor_session)?;
                    (c, None, Some(raw))
                }
                (None, true) => {
                    let (c, ideal) = run_beside_ideal(rt, &load, seg, &mut next_request, &bar, floor_session)?;
                    (c, Some(ideal), None)
                }
                (None, false) => {
                    (run_segments(rt, &load, std::slice::from_ref(seg), &mut next_request, &bar), None, None)
                }
            };
            bar.finish_and_clear();
            append_shots(args.shots.as_deref(), &label, &c);
            let mut r = summary(&c, seg.phase as usize);
            r.ideal_run_p99_ms = executed.and_then(stats::p99_ms);
            last_floors = judge_against_floors(&mut r, policy, &last_floors, (floor_session, replay))?;
            r.raw_rows_per_s = raw_executed.or(r.raw_rows_per_s);
            let now = steal::CpuTicks::now();
            r.judge_steal((ticks.steal_share(&now, &sc.server_cpus), ticks.steal_share(&now, &sc.generator_cpus)));
            if seg.closed.is_some() {
                // A closed loop's sends follow the server's answers: not an arrival trace to serve ideally.
                r.ideal_p99_ms = None;
            }
            let stop = sc.stop.as_ref().is_some_and(|s| report::breaks(&r, s));
            eprintln!(
                "{} {}: p99 {:?} ms, ok {}/{}",
                label,
                r.phase,
                r.latency.as_ref().map(|l| l.p99_ms),
                r.answered_ok,
                r.sent
            );
            results.push(r);
            if stop {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok((results, timelines))
}

/// A second of light load before measuring: connections open, the server's estimators settle.
fn warm_up(rt: &tokio::runtime::Runtime, load: &Load, next: &mut u64) {
    let seg = [Segment { phase: 0, rate: 200.0, closed: None, duration: Duration::from_secs(1) }];
    let warm =
        Load { sender: load.sender.clone(), policy: Policy::Ensemble, connections: load.connections.clone(), ..*load };
    let _ = run_segments(rt, &warm, &seg, next, &indicatif::ProgressBar::hidden());
    std::thread::sleep(Duration::from_millis(300));
}

fn progress(quiet: bool, label: &str, segments: &[Segment]) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let total: f64 = segments.iter().map(|s| s.rate * s.duration.as_secs_f64()).sum();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} requests, {elapsed} / ~{duration}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("{label} @ {:.0} rps", segments[0].rate));
    bar
}

/// On SIGINT or SIGTERM: puts the kernel threads back (`--isolate-server-cores`), stops the servers and
/// peers this run started (their `Drop` will not run) and exits 130.
fn exit_on_signal(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        isolate::restore();
        server::terminate_all();
        eprintln!("interrupted: servers stopped, kernel threads back where they were");
        std::process::exit(130);
    });
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Online CPUs, not this (pinned) process's share of them.
    // SAFETY: sysconf with a valid name.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("{cpu}, {online} cores")
}

/// Appends `c`'s requests to the `--shots` CSV (the header when the file is new); a failure is logged, not
/// fatal: the run's summary does not depend on it.
fn append_shots(path: Option<&std::path::Path>, label: &str, c: &Collected) {
    use std::io::Write;
    let Some(path) = path else { return };
    let write = || -> std::io::Result<()> {
        let new = !path.exists();
        let mut f = std::io::BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?);
        if new {
            writeln!(f, "policy,phase,sched_ms,rows,status,latency_us,server_us,run_us,lag_us")?;
        }
        for s in &c.shots {
            let sched_ms = s.sched_ns as f64 / 1e6;
            let (p, r, st, l, sv, run) = (s.phase, s.rows, s.status, s.latency_us, s.server_us, s.run_us);
            writeln!(f, "{label},{p},{sched_ms:.3},{r},{st},{l},{sv},{run},{}", s.lag_us)?;
        }
        f.flush()
    };
    if let Err(e) = write() {
        eprintln!("warning: {}: shots not written: {e}", path.display());
    }
}

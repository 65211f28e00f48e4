//! The server under test: either spawned here (the real `serve` binary on a free loopback port, its config
//! from config/server.toml plus the scenario's overrides, or a peer from load-tests/peers/ on the same
//! artifact and cores) or an existing loopback address.
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A spawned server; stopped with SIGTERM on drop.
pub struct Spawned {
    child: Child,
    pub base: String,
    _config: Option<tempfile::NamedTempFile>,
    pub log: PathBuf,
    /// The gRPC address (host:port) when the server was started with one.
    pub grpc: Option<String>,
    /// Peers run in their own process group (Triton's server and Python stubs are grandchildren): the
    /// signal goes to the whole group.
    group: bool,
}

/// A peer to start: its script in `peers_dir`, run by `python` (the setup's peers venv).
pub struct PeerOptions<'a> {
    pub target: crate::scenario::Target,
    pub python: &'a Path,
    pub peers_dir: &'a Path,
    pub models_dir: &'a Path,
    pub model: &'a str,
    pub log: PathBuf,
    pub cpus: &'a [usize],
}

pub struct SpawnOptions<'a> {
    pub serve_bin: &'a Path,
    pub base_config: &'a Path,
    pub overrides: &'a toml::Table,
    pub models_dir: &'a Path,
    pub log: PathBuf,
    /// CPUs the server may run on (empty: any).
    pub cpus: &'a [usize],
    /// Also serve KServe v2 gRPC (on another free port).
    pub grpc: bool,
}

/// Restricts the calling thread (and what it spawns afterwards) to `cpus`; empty = no change.
pub fn pin(cpus: &[usize]) -> std::io::Result<()> {
    set_affinity(0, cpus)
}

/// Restricts thread `tid` (0: the calling one) to `cpus`; empty = no change. Allocation-free, so a child may
/// call it between fork and exec.
pub fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs thread `tid` may run on; `None` when it cannot be read (gone, or not ours to see).
pub fn affinity(tid: libc::pid_t) -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set that sched_getaffinity fills; CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

impl Spawned {
    pub fn start(o: SpawnOptions) -> Result<Self, String> {
        let mut table: toml::Table = match std::fs::read_to_string(o.base_config) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", o.base_config.display()))?,
            Err(e) => return Err(format!("{}: {e}", o.base_config.display())),
        };
        table.extend(o.overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let port = free_port()?;
        table.insert("bind".into(), format!("127.0.0.1:{port}").into());
        table.insert("models_dir".into(), o.models_dir.display().to_string().into());
        // A fixed gRPC port would collide between concurrent servers: off, or a free one.
        let grpc = if o.grpc { Some(format!("127.0.0.1:{}", free_port()?)) } else { None };
        table.insert("grpc_bind".into(), grpc.clone().unwrap_or_default().into());
        let config = tempfile::Builder::new().suffix(".toml").tempfile().map_err(|e| e.to_string())?;
        std::fs::write(config.path(), toml::to_string(&table).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(&o.log).map_err(|e| format!("{}: {e}", o.log.display()))?;
        let mut command = Command::new(o.serve_bin);
        command.args(["run", "--config"]).arg(config.path()).stdout(Stdio::null()).stderr(log);
        pin_child(&mut command, o.cpus);
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", o.serve_bin.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let mut s = Self { child, base, _config: Some(config), log: o.log, grpc, group: false };
        s.register();
        s.wait_ready(&["/readyz"], Duration::from_secs(60))?;
        Ok(s)
    }

    /// Starts a peer (FastAPI or Triton) on free loopback ports, pinned like our server, and waits until
    /// both of its tiers answer ready.
    pub fn start_peer(o: PeerOptions) -> Result<Self, String> {
        use crate::scenario::Target;
        let port = free_port()?;
        let models_dir = std::fs::canonicalize(o.models_dir).map_err(|e| format!("{}: {e}", o.models_dir.display()))?;
        let mut command = Command::new(o.python);
        command.current_dir(o.peers_dir);
        let ready: &[&str] = match o.target {
            Target::Fastapi => {
                let workers = if o.cpus.is_empty() { online_cpus() } else { o.cpus.len() };
                command.arg("fastapi_peer.py").args(["--port", &port.to_string(), "--workers", &workers.to_string()]);
                &["/readyz"]
            }
            Target::Triton => {
                let (grpc, metrics) = (free_port()?, free_port()?);
                command.arg("triton_peer.py").args(["--http-port", &port.to_string()]);
                command.args(["--grpc-port", &grpc.to_string(), "--metrics-port", &metrics.to_string()]);
                &["/v2/models/ensemble/ready", "/v2/models/student/ready"]
            }
            _ => return Err("start_peer starts peers only".into()),
        };
        command.args(["--models-dir".as_ref(), models_dir.as_os_str()]).args(["--model", o.model]);
        let log = std::fs::File::create(&o.log).map_err(|e| format!("{}: {e}", o.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        command.stdout(log).stderr(err).process_group(0);
        pin_child(&mut command, o.cpus);
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", o.python.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let mut s = Self { child, base, _config: None, log: o.log, grpc: None, group: true };
        s.register();
        s.wait_ready(ready, Duration::from_secs(120))?;
        Ok(s)
    }

    fn wait_ready(&mut self, paths: &[&str], limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let urls: Vec<String> = paths.iter().map(|p| format!("{}{p}", self.base)).collect();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited ({status}) before ready; see {}", self.log.display()));
            }
            let ready = |url: &String| ensemble_serve::serve::probe::ready(url, Duration::from_secs(2)).is_ok();
            if urls.iter().all(ready) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("server not ready after {limit:?}; see {}", self.log.display()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the drain; returns the exit status.
    pub fn stop(mut self) -> Result<std::process::ExitStatus, String> {
        self.terminate();
        self.child.wait().map_err(|e| e.to_string())
    }

    /// What a signal goes to: the server, or a peer's whole process group.
    fn kill_target(&self) -> libc::pid_t {
        let pid = self.child.id() as libc::pid_t;
        if self.group {
            -pid
        } else {
            pid
        }
    }

    fn register(&self) {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(self.kill_target());
    }

    /// SIGTERM to the server (a peer's whole process group, SIGKILL after 30 s: Triton's stubs may linger).
    fn terminate(&mut self) {
        let target = self.kill_target();
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|&t| t != target);
        // SAFETY: kill(2) on a child we spawned, or the process group it leads; no memory is touched.
        unsafe { libc::kill(target, libc::SIGTERM) };
        if !self.group {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; whatever of the group is left is killed.
        unsafe { libc::kill(target, libc::SIGKILL) };
    }
}

/// Servers and peer groups started and not yet stopped, for [`terminate_all`].
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// SIGTERM to every server and peer group still running: the generator is exiting on a signal and their
/// `Drop` will not run.
pub fn terminate_all() {
    for target in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        // SAFETY: kill(2) on a child (or the process group a child leads) that we spawned; no memory is touched.
        unsafe { libc::kill(target, libc::SIGTERM) };
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn online_cpus() -> usize {
    // SAFETY: sysconf with a valid name.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

/// Runs the child on `cpus` (all when empty): not the generator's own pinning, which it would inherit.
fn pin_child(command: &mut Command, cpus: &[usize]) {
    let cpus = if cpus.is_empty() { (0..online_cpus()).collect() } else { cpus.to_vec() };
    // SAFETY: between fork and exec the child only calls sched_setaffinity (async-signal-safe).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || pin(&cpus));
    }
}

/// Only loopback targets: the generator must never load someone else's server.
pub fn check_loopback(base: &str) -> Result<(), String> {
    let url = host_port(base)?;
    let host = url.trim_start_matches('[').split([']', ':']).next().unwrap_or("");
    let ok = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if ok {
        Ok(())
    } else {
        Err(format!("target {base} is not a loopback address (127.0.0.0/8, ::1 or localhost)"))
    }
}

fn host_port(base: &str) -> Result<&str, String> {
    base.strip_prefix("http://")
        .map(|r| r.split('/').next().unwrap_or(r))
        .ok_or_else(|| format!("target {base} must start with http://"))
}

/// Resident set size samples of a process: (seconds since start, KiB), every `every`.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s2, v2) = (stop.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kib(pid) {
                    v2.lock().expect("rss lock").push((t0.elapsed().as_secs_f64(), kb));
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, samples, handle: Some(handle) }
    }

    pub fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.samples.lock().expect("rss lock"))
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

//! Results of a run: `results.json` (everything), `summary.md` (the tables a person reads) and the plots,
//! written into a temporary directory and renamed into place.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::stats::{recovery_s, PhaseResult, Window};

#[derive(Debug, Serialize, Deserialize)]
pub struct RunResults {
    pub scenario: Scenario,
    pub started_utc: String,
    pub machine: String,
    /// Whether kernel threads were kept off the server's cores (isolate.rs); empty in runs before it.
    #[serde(default)]
    pub server_cores: String,
    pub target: String,
    pub model: String,
    pub capacity_rps: Option<f64>,
    pub phases: Vec<PhaseResult>,
    /// Continuous scenarios: the windowed timeline per policy.
    pub timelines: BTreeMap<String, Vec<Window>>,
    /// (seconds, KiB) of the spawned server.
    pub rss_kib: Vec<(f64, u64)>,
    /// Raw ONNX Runtime µs by rows, timed before and after the run: the ideal server's costs.
    pub floors: Option<crate::FloorRecord>,
    pub verdicts: Verdicts,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Verdicts {
    /// Sweeps: the highest offered rate each policy sustained (no stop-rule breach, ≥ 95% answered).
    pub sustained_rps: BTreeMap<String, f64>,
    /// Spikes: seconds after the spike until p99 is back within 1.5 × the pre-spike p99 for 1 s of windows.
    pub recovery_s: BTreeMap<String, Option<f64>>,
    /// Soaks: RSS of the last minute vs the first minute after a 30 s warm-up.
    pub rss_growth: Option<f64>,
}

impl RunResults {
    /// The labels of the runs (policy names; `<peer>:<policy>` for peers), in run order.
    pub fn policies(&self) -> Vec<String> {
        self.scenario.runs().into_iter().map(|(t, p)| t.label(p)).collect()
    }

    pub fn judge(&mut self) {
        let mut v = Verdicts::default();
        if let Some(stop) = &self.scenario.stop {
            for p in self.policies() {
                let ok = self.phases.iter().filter(|x| x.policy == p).take_while(|x| !breaks(x, stop));
                let best = ok.filter(|x| x.ok_rps >= 0.95 * x.offered_rps).map(|x| x.offered_rps).fold(0.0, f64::max);
                v.sustained_rps.insert(p, best);
            }
        }
        if self.scenario.continuous && self.scenario.phases.len() >= 3 {
            let d: Vec<f64> = self.scenario.phases.iter().map(|p| p.duration_s).collect();
            let (spike_end, end) = (d[0] + d[1], d[0] + d[1] + d[2]);
            for (p, w) in &self.timelines {
                let base =
                    self.phases.iter().find(|x| &x.policy == p).and_then(|x| x.latency.as_ref()).map(|l| l.p99_ms);
                let settle = (1000 / self.scenario.window_ms.max(1)).max(1) as usize;
                v.recovery_s.insert(p.clone(), base.and_then(|b| recovery_s(w, spike_end, end, 1.5 * b, settle)));
            }
        }
        v.rss_growth = rss_growth(&self.rss_kib);
        self.verdicts = v;
    }
}

pub fn breaks(x: &PhaseResult, stop: &crate::scenario::StopRule) -> bool {
    let failed = x.sent - x.answered_ok;
    let share = if x.sent == 0 { 0.0 } else { failed as f64 / x.sent as f64 };
    let p99 = x.latency.as_ref().map_or(f64::INFINITY, |l| l.p99_ms);
    stop.p99_ms.is_some_and(|l| p99 > l) || stop.error_share.is_some_and(|l| share > l)
}

fn rss_growth(s: &[(f64, u64)]) -> Option<f64> {
    let end = s.last()?.0;
    if end < 150.0 {
        return None;
    }
    let mean = |a: f64, b: f64| {
        let v: Vec<f64> = s.iter().filter(|x| x.0 >= a && x.0 < b).map(|x| x.1 as f64).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some(mean(end - 60.0, end + 1.0)? / mean(30.0, 90.0)? - 1.0)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn pct(share: Option<f64>) -> String {
    share.map_or("–".into(), |s| format!("{:.1}%", s * 100.0))
}

pub fn markdown(r: &RunResults) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n\n{}\n", r.scenario.name, r.scenario.description);
    let _ = writeln!(md, "- started {} on {}; target {}; model {}", r.started_utc, r.machine, r.target, r.model);
    if !r.server_cores.is_empty() {
        let _ = writeln!(md, "- server cores: {}", r.server_cores);
    }
    let _ = writeln!(
        md,
        "- arrival {:?}, {} instance(s)/request, at most {} connections, budgets {:?}",
        r.scenario.arrival,
        r.scenario.instances_per_request,
        r.scenario.connections,
        r.scenario.budget_mix().iter().map(|b| format!("{:.0}% {} ms", b.share * 100.0, b.ms)).collect::<Vec<_>>()
    );
    if !r.scenario.server.is_empty() {
        let _ = writeln!(
            md,
            "- server overrides: `{}`",
            toml::to_string(&r.scenario.server).unwrap_or_default().trim().replace('\n', "; ")
        );
    }
    if let Some(f) = &r.floors {
        use crate::Policy::{Ensemble, Student};
        let at = |f: &crate::Floors, p| f.service_us(p, 165);
        let _ = writeln!(
            md,
            "- raw ORT at 165 rows on the server's core, before / after the run: ensemble {:.0} / {:.0} µs, best \
             student {:.0} / {:.0} µs (ensemble drift {:.1}%); they are timed again after every phase, and a phase's \
             ideal server and raw rows/s use the faster of the floors on either side of it (a continuous run's \
             phases: of these two)",
            at(&f.before, Ensemble),
            at(&f.after, Ensemble),
            at(&f.before, Student),
            at(&f.after, Student),
            f.drift_pct_165
        );
    }
    let _ = writeln!(md, "\nLatency is measured from each request's scheduled send time (open loop).\n");
    md.push_str("| policy | phase | offered rps | ok rps | inst/s | p50 ms | p90 ms | p99 ms | server p99 ms | ideal p99 ms | ideal executed p99 ms | p99.9 ms | max ms | rejected (p99 ms) | errors | tiers | budget met | served AUC | offline AUC | effective AUC | inst/s ÷ raw ORT rows/s | stolen: server / generator cores | send lag p99 ms |\n");
    md.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for x in &r.phases {
        let l = x.latency.as_ref();
        let errors = if x.errors.is_empty() { "0".into() } else { format!("{:?}", x.errors) };
        let tiers = x.tiers.iter().map(|(t, n)| format!("{t}: {n}")).collect::<Vec<_>>().join(", ");
        let rej = match &x.rejected_latency {
            Some(p) => format!("{} ({:.2})", x.rejected, p.p99_ms),
            None => "0".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            x.policy,
            x.phase,
            x.offered_rps,
            x.ok_rps,
            x.instances_per_s,
            opt(l.map(|l| l.p50_ms), 3),
            opt(l.map(|l| l.p90_ms), 3),
            opt(l.map(|l| l.p99_ms), 3),
            opt(x.server_p99_ms, 3),
            opt(x.ideal_p99_ms, 3),
            opt(x.ideal_run_p99_ms, 3),
            opt(l.map(|l| l.p999_ms), 3),
            opt(l.map(|l| l.max_ms), 3),
            rej,
            errors,
            tiers,
            opt(x.budget_met_share.map(|s| s * 100.0), 2) + "%",
            opt(x.served_auc, 6),
            opt(x.offline_auc, 6),
            opt(x.effective_auc, 6),
            x.raw_rows_per_s.map_or("–".into(), |raw| format!("{:.1}%", x.instances_per_s / raw * 100.0)),
            pct(x.server_steal_share),
            pct(x.generator_steal_share),
            opt(x.send_lag_p99_ms, 3) + if x.valid { "" } else { " **INVALID**" },
        );
    }
    if r.phases.iter().any(|x| !x.valid) {
        let _ = writeln!(
            md,
            "\n**INVALID** phases are not results: the generator's send lag p99 exceeded {} ms (they measured the \
             generator: give it a core of its own), or the hypervisor gave more than {}% of the server cores' time \
             to other guests (steal in /proc/stat: they measured the host's other tenants).",
            crate::stats::MAX_SEND_LAG_P99_MS,
            crate::steal::MAX_STEAL_SHARE * 100.0
        );
    }
    let v = &r.verdicts;
    if !v.sustained_rps.is_empty() {
        let _ = writeln!(md, "\nSustained rate (no stop-rule breach, ≥ 95% answered): {:?}", v.sustained_rps);
    }
    if !v.recovery_s.is_empty() {
        let _ = writeln!(md, "\nRecovery after the spike (start of the first 1 s of {} ms windows whose p99 ≤ 1.5 × pre-spike p99), seconds: {:?}", r.scenario.window_ms, v.recovery_s);
    }
    if let Some(g) = v.rss_growth {
        let (first, last) = (r.rss_kib.first().map_or(0, |x| x.1), r.rss_kib.last().map_or(0, |x| x.1));
        let _ = writeln!(
            md,
            "\nServer RSS: {:.1} MiB at start, {:.1} MiB at end; growth last minute vs minute after warm-up: {:+.2}%",
            first as f64 / 1024.0,
            last as f64 / 1024.0,
            g * 100.0
        );
    }
    md
}

/// Reads a results directory's `results.json` back (to rewrite its summary and plots).
pub fn read(dir: &Path) -> Result<RunResults, String> {
    let path = dir.join("results.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("{}: {e} (written by an older loadgen? rerun its scenario)", path.display()))
}

/// Rewrites `dir`'s summary.md and plots from `r`, each file replaced atomically; results.json stays as
/// the run wrote it. Returns the files written.
pub fn rewrite_views(r: &RunResults, dir: &Path) -> Result<Vec<String>, String> {
    let tmp = tempfile::Builder::new().prefix(".loadgen-").tempdir_in(dir).map_err(|e| e.to_string())?;
    let files = write_views(r, tmp.path())?;
    for f in &files {
        std::fs::rename(tmp.path().join(f), dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))?;
    }
    Ok(files)
}

/// Writes summary.md and the plots of `r` into `dir`; returns their file names.
fn write_views(r: &RunResults, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::write(dir.join("summary.md"), markdown(r)).map_err(|e| e.to_string())?;
    let mut files = crate::plots::write_all(r, dir)?;
    files.push("summary.md".into());
    Ok(files)
}

/// Writes results.json, summary.md and the plots into `out` atomically.
pub fn write(r: &RunResults, out: &Path) -> Result<(), String> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::Builder::new().prefix(".loadgen-").tempdir_in(parent).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(tmp.path().join("results.json"), json).map_err(|e| e.to_string())?;
    write_views(r, tmp.path())?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::rename(tmp.keep(), out).map_err(|e| format!("{}: {e}", out.display()))
}

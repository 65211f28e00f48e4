//! Outcomes → numbers: HdrHistogram percentiles of answered requests (from scheduled send time), rejections
//! and their answer times, errors by status, tiers served, budgets met, served vs offline AUC, and a timeline
//! of fixed windows with the tiers that answered in each (for spikes and soaks).
use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::driver::{Collected, Shot, CLIENT_TIMEOUT, GENERATOR_OVERFLOW, TRANSPORT_ERROR};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub policy: String,
    pub phase: String,
    pub offered_rps: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub answered_ok: u64,
    /// Answered requests (rows) per second, over the phase or until its last answer if that came later.
    pub ok_rps: f64,
    pub instances_per_s: f64,
    /// Answered requests (HTTP 200), latency from the scheduled send time.
    pub latency: Option<Percentiles>,
    /// 429/503 answers: admission control said no.
    pub rejected: u64,
    pub rejected_latency: Option<Percentiles>,
    /// Everything else that is not a 200, by status ("transport", "client_timeout", "generator_overflow").
    pub errors: BTreeMap<String, u64>,
    pub tiers: BTreeMap<String, u64>,
    pub budget_met: u64,
    pub budget_missed: u64,
    pub budget_met_share: Option<f64>,
    pub served_auc: Option<f64>,
    pub offline_auc: Option<f64>,
    pub served_auc_gap: Option<f64>,
    /// AUC over every row of every request sent, a row of a late (over budget), rejected or failed request
    /// scoring 0.5 (unanswered): accuracy as the caller gets it (Clipper's "effective accuracy").
    pub effective_auc: Option<f64>,
    /// p99 of an ideal one-core FIFO server on the same arrival trace that spends only each request's raw
    /// ONNX Runtime time (the floor for this trace).
    pub ideal_p99_ms: Option<f64>,
    /// p99 of the ideal server executed on the same trace right after the phase (scenario `ideal_run`).
    pub ideal_run_p99_ms: Option<f64>,
    /// Raw ONNX Runtime rows/s of the phase's graph at its mean request size, from the floors timed just
    /// before and just after the phase (the faster); `None` where only the run's floors exist (continuous).
    pub raw_rows_per_s: Option<f64>,
    /// p99 of actual minus scheduled send time: above 1 ms the generator, not the server, was measured.
    pub send_lag_p99_ms: Option<f64>,
    /// Share of the server cores' time the hypervisor gave to other guests while the phase, its raw or ideal
    /// turns and the floors after it ran (`/proc/stat` steal; a continuous run's phase: from its start to the
    /// next one's, the last to the last answer); `None` where unknown.
    pub server_steal_share: Option<f64>,
    /// The same for the generator's cores: what often lies behind a send lag (informational; the lag decides).
    pub generator_steal_share: Option<f64>,
    /// False when the send lag p99 exceeds [`MAX_SEND_LAG_P99_MS`] (the phase measured the generator) or the
    /// server cores lost more than [`crate::steal::MAX_STEAL_SHARE`] to steal (it measured other tenants): not
    /// a result.
    pub valid: bool,
    /// p99 of the server's own time for answered requests (from the kernel's receipt of the request bytes).
    pub server_p99_ms: Option<f64>,
    /// (scheduled ns, rows) of every request: the arrival trace the ideal server is computed on.
    #[serde(skip)]
    pub trace: Vec<(u64, u32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub t_s: f64,
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub budget_met_share: Option<f64>,
    /// Answered requests per tier.
    pub tiers: BTreeMap<String, u64>,
}

/// A phase whose generator sent later than this at p99 is marked invalid.
pub const MAX_SEND_LAG_P99_MS: f64 = 1.0;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    (!h.is_empty()).then(|| {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    })
}

pub fn is_rejection(status: u16) -> bool {
    status == 429 || status == 503
}

fn error_name(status: u16) -> String {
    match status {
        TRANSPORT_ERROR => "transport".into(),
        CLIENT_TIMEOUT => "client_timeout".into(),
        GENERATOR_OVERFLOW => "generator_overflow".into(),
        s => s.to_string(),
    }
}

/// What a phase summary needs besides the shots.
pub struct PhaseInfo<'a> {
    pub policy: &'a str,
    pub phase: &'a str,
    pub offered_rps: f64,
    pub duration_s: f64,
}

/// The p99 latency (ms) of a one-core FIFO server that spends `service_us(rows)` on each request of `trace`
/// ((scheduled ns, rows)) at its scheduled time.
pub fn ideal_p99_ms(trace: &[(u64, u32)], service_us: &dyn Fn(usize) -> f64) -> Option<f64> {
    let mut order = trace.to_vec();
    order.sort_unstable();
    let mut free_at = 0.0f64;
    let latencies: Vec<f64> = order
        .iter()
        .map(|&(sched_ns, rows)| {
            let arrival = sched_ns as f64 / 1e3;
            free_at = free_at.max(arrival) + service_us(rows as usize);
            free_at - arrival
        })
        .collect();
    p99_ms(latencies)
}

/// The p99 (ms) of latencies in µs.
pub fn p99_ms(mut latencies_us: Vec<f64>) -> Option<f64> {
    latencies_us.sort_by(f64::total_cmp);
    let at = ((latencies_us.len() as f64 * 0.99).ceil() as usize).checked_sub(1)?;
    latencies_us.get(at).map(|us| us / 1e3)
}

/// The served model's ensemble scores, offline, of a request's rows as the server saw them.
pub type OfflineScores<'a> = dyn Fn(&Shot) -> Vec<f32> + 'a;

pub fn summarise(
    info: PhaseInfo,
    shots: &[&Shot],
    c: &Collected,
    labels: &[f32],
    offline: Option<&OfflineScores<'_>>,
    service_us: Option<&dyn Fn(usize) -> f64>,
) -> PhaseResult {
    let (mut ok_h, mut rej_h) = (histogram(), histogram());
    let (mut errors, mut tiers) = (BTreeMap::new(), BTreeMap::new());
    let (mut met, mut missed, mut rejected) = (0, 0, 0);
    let (mut served, mut off, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lag_h, mut server_h, mut ok_rows) = (histogram(), histogram(), 0usize);
    for s in shots {
        lag_h.saturating_record(u64::from(s.lag_us).max(1));
        let lat = s.latency_us.max(1);
        if s.status == 200 {
            ok_h.saturating_record(lat);
            // 0: the server reports no time of its own (Triton's KServe v2 answers).
            if s.server_us > 0 {
                server_h.saturating_record(u64::from(s.server_us));
            }
            *tiers.entry(c.tiers[s.tier as usize].clone()).or_insert(0u64) += 1;
            if lat as f64 <= s.budget_ms as f64 * 1000.0 {
                met += 1;
            } else {
                missed += 1;
            }
            ok_rows += s.rows as usize;
            for &(row, p) in &c.scores[s.scores_at as usize..s.scores_at as usize + s.rows as usize] {
                served.push(p);
                ys.push(labels[row as usize]);
            }
            if let Some(o) = offline {
                off.extend(o(s));
            }
        } else if is_rejection(s.status) {
            rejected += 1;
            rej_h.saturating_record(lat);
        } else {
            *errors.entry(error_name(s.status)).or_insert(0u64) += 1;
        }
    }
    let ok = ok_h.len();
    // Answers of an overloaded phase keep coming after its last send: rates count until the last answer.
    let first_ns = shots.iter().map(|s| s.sched_ns).min().unwrap_or(0);
    let last_ns = shots.iter().filter(|s| s.status == 200).map(|s| s.sched_ns + s.latency_us * 1000).max();
    let span_s = info.duration_s.max(last_ns.map_or(0.0, |l| l.saturating_sub(first_ns) as f64 / 1e9));
    let trace: Vec<(u64, u32)> = shots.iter().map(|s| (s.sched_ns, s.rows)).collect();
    let served_auc = ensemble_serve::metrics::auc(&served, &ys);
    let effective_auc = effective_auc(shots, c, labels);
    let offline_auc = offline.and_then(|_| ensemble_serve::metrics::auc(&off, &ys));
    PhaseResult {
        policy: info.policy.into(),
        phase: info.phase.into(),
        offered_rps: info.offered_rps,
        duration_s: info.duration_s,
        sent: shots.len() as u64,
        answered_ok: ok,
        ok_rps: ok as f64 / span_s,
        instances_per_s: ok_rows as f64 / span_s,
        latency: percentiles(&ok_h),
        rejected,
        rejected_latency: percentiles(&rej_h),
        errors,
        tiers,
        budget_met: met,
        budget_missed: missed,
        budget_met_share: (met + missed > 0).then(|| met as f64 / (met + missed) as f64),
        served_auc,
        offline_auc,
        served_auc_gap: served_auc.zip(offline_auc).map(|(a, b)| a - b),
        effective_auc,
        ideal_p99_ms: service_us.and_then(|f| ideal_p99_ms(&trace, f)),
        ideal_run_p99_ms: None,
        raw_rows_per_s: None,
        send_lag_p99_ms: percentiles(&lag_h).map(|p| p.p99_ms),
        server_steal_share: None,
        generator_steal_share: None,
        valid: percentiles(&lag_h).is_none_or(|p| p.p99_ms <= MAX_SEND_LAG_P99_MS),
        server_p99_ms: percentiles(&server_h).map(|p| p.p99_ms),
        trace,
    }
}

impl PhaseResult {
    /// Records the (server, generator) cores' steal shares over the phase; above the bound on the server's
    /// the phase is not a result.
    pub fn judge_steal(&mut self, (server, generator): (Option<f64>, Option<f64>)) {
        (self.server_steal_share, self.generator_steal_share) = (server, generator);
        self.valid &= server.is_none_or(|s| s <= crate::steal::MAX_STEAL_SHARE);
    }
}

/// See [`PhaseResult::effective_auc`].
fn effective_auc(shots: &[&Shot], c: &Collected, labels: &[f32]) -> Option<f64> {
    let (mut scores, mut ys) = (Vec::new(), Vec::new());
    for s in shots {
        let in_time = s.status == 200 && s.latency_us as f64 <= s.budget_ms as f64 * 1000.0;
        let rows = (0..s.rows as usize).map(|j| (s.first_row as usize + j) % labels.len());
        ys.extend(rows.map(|row| labels[row]));
        if in_time {
            scores.extend(c.scores[s.scores_at as usize..][..s.rows as usize].iter().map(|&(_, p)| p));
        } else {
            scores.extend(std::iter::repeat_n(0.5, s.rows as usize));
        }
    }
    ensemble_serve::metrics::auc(&scores, &ys)
}

/// Fixed windows over the scheduled send time of `shots`; `tier_names[i]` names tier index i.
pub fn timeline(shots: &[Shot], tier_names: &[String], window_ms: u64) -> Vec<Window> {
    let w_ns = window_ms.max(1) * 1_000_000;
    let n = shots.iter().map(|s| s.sched_ns / w_ns + 1).max().unwrap_or(0) as usize;
    let mut hs: Vec<Histogram<u64>> = (0..n).map(|_| histogram()).collect();
    let mut rows = vec![(0u64, 0u64, 0u64, 0u64, 0u64); n];
    let mut tiers: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); n];
    for s in shots {
        let i = (s.sched_ns / w_ns) as usize;
        let r = &mut rows[i];
        r.0 += 1;
        if s.status == 200 {
            r.1 += 1;
            if let Some(name) = tier_names.get(s.tier as usize) {
                *tiers[i].entry(name.clone()).or_default() += 1;
            }
            hs[i].saturating_record(s.latency_us.max(1));
            if s.latency_us as f64 <= s.budget_ms as f64 * 1000.0 {
                r.4 += 1;
            }
        } else if is_rejection(s.status) {
            r.2 += 1;
        } else {
            r.3 += 1;
        }
    }
    rows.iter()
        .zip(&hs)
        .zip(tiers)
        .enumerate()
        .map(|(i, ((r, h), t))| (i, r, percentiles(h), t))
        .map(|(i, r, p, tiers)| Window {
            t_s: (i as u64 * w_ns) as f64 / 1e9,
            sent: r.0,
            ok: r.1,
            rejected: r.2,
            errors: r.3,
            p50_ms: p.as_ref().map(|p| p.p50_ms),
            p99_ms: p.as_ref().map(|p| p.p99_ms),
            budget_met_share: (r.1 > 0).then(|| r.4 as f64 / r.1 as f64),
            tiers,
        })
        .collect()
}

/// Seconds after `after_s` until the first run of `settle` consecutive windows whose p99 is within
/// `limit_ms` begins (None: no such run before `until_s`).
pub fn recovery_s(windows: &[Window], after_s: f64, until_s: f64, limit_ms: f64, settle: usize) -> Option<f64> {
    let later: Vec<&Window> = windows.iter().filter(|w| w.t_s >= after_s - 1e-9 && w.t_s < until_s).collect();
    let ok: Vec<bool> = later.iter().map(|w| w.p99_ms.is_some_and(|p| p <= limit_ms)).collect();
    (0..later.len())
        .find(|&i| i + settle <= ok.len() && ok[i..i + settle].iter().all(|&b| b))
        .map(|i| later[i].t_s - after_s)
}

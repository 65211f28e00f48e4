//! Latency-budget routing, pure: which tiers are worth routing to (the accuracy/speed frontier), how long a
//! new job would take on a graph (its latency profile, corrected online, and its queue), and which tier
//! serves a request. No clocks, threads or I/O here: the batcher hands in a snapshot of its queue.
use std::sync::Mutex;

use crate::artifact::LatencyPoint;
use crate::onnx::Precision;

/// How a request asks to be routed; a named graph carries its precision (`:int8` after the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierRequest {
    /// The most accurate tier whose estimate fits the budget.
    Auto,
    Ensemble(Precision),
    /// The manifest's best student.
    BestStudent(Precision),
    Student(usize, Precision),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tier '{0}' (auto, ensemble, student or student:<k>, each optionally followed by :int8)")]
pub struct UnknownTier(pub String);

impl std::str::FromStr for TierRequest {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, UnknownTier> {
        let unknown = || UnknownTier(s.to_string());
        let (graph, precision) = match s.strip_suffix(":int8") {
            Some(graph) => (graph, Precision::Int8),
            None => (s, Precision::Fp32),
        };
        match graph {
            "auto" if precision.is_fp32() => Ok(Self::Auto),
            "ensemble" => Ok(Self::Ensemble(precision)),
            "student" => Ok(Self::BestStudent(precision)),
            other => other
                .strip_prefix("student:")
                // Canonical digits only ("student:01" is not a tier name), so each tier has one spelling.
                .and_then(|k| k.parse::<usize>().ok().filter(|n| n.to_string() == k))
                .map(|k| Self::Student(k, precision))
                .ok_or_else(unknown),
        }
    }
}

impl TierRequest {
    /// The tier label a named graph has in a model whose best student is `best_student`; `None` for `Auto`.
    pub fn label(self, best_student: usize) -> Option<String> {
        let (graph, precision) = match self {
            Self::Auto => return None,
            Self::Ensemble(p) => ("ensemble".to_string(), p),
            Self::BestStudent(p) => (format!("student:{best_student}"), p),
            Self::Student(k, p) => (format!("student:{k}"), p),
        };
        Some(if precision.is_fp32() { graph } else { format!("{graph}:{precision}") })
    }
}

/// Why a tier was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// Its estimate fits the budget, and no more accurate routable tier's does.
    Fits,
    /// No routable tier's estimate fits: the fastest serves (a predicted miss).
    Fallback,
    /// The request named the tier.
    Forced,
}

impl RouteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fits => "fits",
            Self::Fallback => "fallback",
            Self::Forced => "forced",
        }
    }
}

/// A less accurate tier is worth routing to only if it is this much faster than every more accurate one.
const ROUTABLE_SPEEDUP: f64 = 0.9;

/// For tiers sorted most accurate first, with their run times at one size: which are faster than every
/// more accurate tier (the others are dominated). Identical students then leave only the best to route to,
/// so overload concentrates on one graph instead of spreading over equals that each wake their own worker.
pub fn frontier(costs_us: &[f64]) -> Vec<bool> {
    let mut fastest_above = f64::INFINITY;
    costs_us
        .iter()
        .map(|&cost| {
            let routable = cost < ROUTABLE_SPEEDUP * fastest_above;
            fastest_above = fastest_above.min(cost);
            routable
        })
        .collect()
}

/// The order routing ranks tiers in: most accurate first, except that among tiers whose validation AUC is within
/// `tolerance` of the best remaining one, the fastest (`cost_us`, at one reference size) comes first. With
/// tolerance 0 this is plain AUC order; with a tolerance above the AUC an int8 twin loses, the twin outranks its
/// fp32 graph, which the frontier then drops unless it is faster somewhere.
pub fn rank(aucs: &[f64], cost_us: &[f64], tolerance: f64) -> Vec<usize> {
    let mut left: Vec<usize> = (0..aucs.len()).collect();
    let mut order = Vec::with_capacity(aucs.len());
    while !left.is_empty() {
        let best = left.iter().map(|&i| aucs[i]).fold(f64::NEG_INFINITY, f64::max);
        let pick = (left.iter().enumerate())
            .filter(|(_, &i)| aucs[i] >= best - tolerance)
            .min_by(|a, b| cost_us[*a.1].total_cmp(&cost_us[*b.1]).then(aucs[*b.1].total_cmp(&aucs[*a.1])))
            .map(|(pos, _)| pos)
            .expect("a tier within tolerance of the best");
        order.push(left.remove(pick));
    }
    order
}

/// The frontier over several request sizes: `costs_us[s][t]` is tier t's run time at size s; a tier is
/// routable when it is on the frontier at any size (an int8 ensemble can beat an fp32 student at one row
/// and lose to it at 256).
pub fn frontier_over_sizes(costs_us: &[Vec<f64>]) -> Vec<bool> {
    let tiers = costs_us.first().map_or(0, Vec::len);
    costs_us
        .iter()
        .map(|c| frontier(c))
        .fold(vec![false; tiers], |acc, f| acc.iter().zip(f).map(|(a, b)| *a || b).collect())
}

/// For routable tiers (most accurate first) with their estimates: the first that fits `budget_us`, else the
/// one with the smallest estimate. Returns (position in `estimates_us`, reason); `None` when empty.
pub fn choose(estimates_us: &[f64], budget_us: f64) -> Option<(usize, RouteReason)> {
    if let Some(i) = estimates_us.iter().position(|&e| e <= budget_us) {
        return Some((i, RouteReason::Fits));
    }
    let fastest = estimates_us.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?.0;
    Some((fastest, RouteReason::Fallback))
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

    /// The profile's run time at `rows`: linear between profiled sizes, extended past the last two.
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
        self.profiled(rows.max(1) as f64) * self.scale()
    }

    /// The online correction: observed / profiled run time, smoothed.
    pub fn scale(&self) -> f64 {
        *self.scale.lock().expect("estimator lock")
    }

    pub fn observe(&self, rows: usize, us: f64) {
        let ratio = (us / self.profiled(rows.max(1) as f64)).clamp(0.05, 50.0);
        let mut s = self.scale.lock().expect("estimator lock");
        *s = 0.9 * *s + 0.1 * ratio;
    }

    /// The smallest profiled batch size whose µs per row is within 10% of the profile's best: merging
    /// queued jobs beyond it saves little run time but makes the first job wait for the others' rows.
    pub fn efficient_rows(&self) -> usize {
        let per_row = |&(b, us): &(f64, f64)| us / b;
        let best = self.profile.iter().map(per_row).fold(f64::INFINITY, f64::min);
        let size = self.profile.iter().find(|p| per_row(p) <= 1.1 * best).map_or(1.0, |p| p.0);
        size.max(1.0) as usize
    }
}

/// A snapshot of one graph's queue: what an estimate reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueState {
    pub queued_rows: usize,
    pub queued_jobs: usize,
    /// Rows of the batch running now (0: idle).
    pub running_rows: usize,
    /// Rows a batch holds at most.
    pub max_batch_rows: usize,
    /// A batch stops taking further jobs once it holds this many rows.
    pub merge_rows: usize,
    /// Time left of a cooldown between batches (µs).
    pub cooling_left_us: f64,
    /// The wait an idle graph adds after a first job for more (µs).
    pub max_queue_delay_us: f64,
}

/// Expected time (µs) until a new job of `rows` rows is answered: the batches ahead of it and its own
/// (queued rows split into as many batches as the batching rules form), half of the batch running now, or
/// the cooldown left, and the batch delay when the graph is idle.
pub fn estimate_us(run_us: impl Fn(usize) -> f64, q: &QueueState, rows: usize) -> f64 {
    let total = q.queued_rows + rows;
    let by_size = total.div_ceil(q.max_batch_rows.max(1));
    let by_merging = (q.queued_jobs + 1).min(total.div_ceil(q.merge_rows.max(1)));
    let batches = by_size.max(by_merging).max(1);
    let mut us = batches as f64 * run_us(total.div_ceil(batches));
    if q.running_rows > 0 {
        us += 0.5 * run_us(q.running_rows);
    } else {
        us += q.cooling_left_us;
    }
    if q.queued_rows == 0 && q.running_rows == 0 {
        us += q.max_queue_delay_us;
    }
    us
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 µs fixed + 20 µs a row, like the shipped ensemble on one core.
    fn linear(rows: usize) -> f64 {
        200.0 + 20.0 * rows as f64
    }

    fn idle() -> QueueState {
        QueueState { max_batch_rows: 256, merge_rows: 64, ..QueueState::default() }
    }

    fn profile(points: &[(usize, f64)]) -> Estimator {
        let pts: Vec<LatencyPoint> =
            points.iter().map(|&(batch_size, us)| LatencyPoint { batch_size, median_us: us, p99_us: us }).collect();
        Estimator::new(&pts)
    }

    #[test]
    fn tier_requests_parse_and_unknown_ones_name_themselves() {
        assert_eq!("auto".parse(), Ok(TierRequest::Auto));
        assert_eq!("student".parse(), Ok(TierRequest::BestStudent(Precision::Fp32)));
        assert_eq!("student:2".parse(), Ok(TierRequest::Student(2, Precision::Fp32)));
        assert_eq!("student:2:int8".parse(), Ok(TierRequest::Student(2, Precision::Int8)));
        assert_eq!("ensemble:int8".parse(), Ok(TierRequest::Ensemble(Precision::Int8)));
        assert_eq!("student:int8".parse(), Ok(TierRequest::BestStudent(Precision::Int8)));
        assert_eq!("student:x".parse::<TierRequest>(), Err(UnknownTier("student:x".into())));
        assert_eq!("auto:int8".parse::<TierRequest>(), Err(UnknownTier("auto:int8".into())));
        assert_eq!("student:2:fp16".parse::<TierRequest>(), Err(UnknownTier("student:2:fp16".into())));
    }

    #[test]
    fn named_tiers_resolve_to_manifest_labels() {
        let label = |s: &str| s.parse::<TierRequest>().unwrap().label(1);
        assert_eq!(label("student"), Some("student:1".into()));
        assert_eq!(label("student:int8"), Some("student:1:int8".into()));
        assert_eq!(label("ensemble:int8"), Some("ensemble:int8".into()));
        assert_eq!(label("student:0"), Some("student:0".into()));
        assert_eq!(label("auto"), None);
    }

    #[test]
    fn ranking_puts_a_faster_near_equal_tier_first_only_within_the_tolerance() {
        // ensemble, ensemble:int8, student, student:int8 (valid AUC, µs at 64 rows)
        let aucs = [0.98277, 0.98276, 0.98260, 0.98257];
        let cost = [1400.0, 380.0, 340.0, 126.0];
        assert_eq!(rank(&aucs, &cost, 0.0), vec![0, 1, 2, 3]);
        assert_eq!(rank(&aucs, &cost, 0.00005), vec![1, 0, 3, 2]);
        assert_eq!(rank(&aucs, &cost, 0.001), vec![3, 2, 1, 0]);
        assert_eq!(rank(&[], &[], 0.1), Vec::<usize>::new());
    }

    #[test]
    fn a_tier_on_the_frontier_at_any_size_is_routable() {
        // ensemble, ensemble:int8, student: the int8 ensemble wins at 1 row only, the student at 256 only.
        let costs = vec![vec![250.0, 90.0, 100.0], vec![10_000.0, 2_600.0, 2_000.0]];
        assert_eq!(frontier_over_sizes(&costs), vec![true, true, true]);
        assert_eq!(frontier_over_sizes(&costs[..1]), vec![true, true, false]);
        assert_eq!(frontier_over_sizes(&[]), Vec::<bool>::new());
    }

    #[test]
    fn frontier_drops_tiers_that_are_not_10_percent_faster_than_every_more_accurate_one() {
        // ensemble, then three near-identical students, then a slower, less accurate one.
        assert_eq!(frontier(&[110.0, 50.0, 48.0, 40.0, 120.0]), vec![true, true, false, true, false]);
        assert_eq!(frontier(&[]), Vec::<bool>::new());
        assert_eq!(frontier(&[100.0, 100.0]), vec![true, false], "equals: only the more accurate");
    }

    #[test]
    fn choice_is_the_most_accurate_that_fits_else_the_fastest() {
        assert_eq!(choose(&[900.0, 300.0, 100.0], 1000.0), Some((0, RouteReason::Fits)));
        assert_eq!(choose(&[900.0, 300.0, 100.0], 500.0), Some((1, RouteReason::Fits)));
        assert_eq!(choose(&[900.0, 300.0, 100.0], 50.0), Some((2, RouteReason::Fallback)));
        assert_eq!(choose(&[900.0, 80.0, 100.0], 50.0), Some((1, RouteReason::Fallback)), "fastest, not last");
        assert_eq!(choose(&[], 50.0), None);
    }

    #[test]
    fn an_idle_graph_costs_its_own_run_plus_the_batch_delay() {
        assert_eq!(estimate_us(linear, &idle(), 165), linear(165));
        let delayed = QueueState { max_queue_delay_us: 500.0, ..idle() };
        assert_eq!(estimate_us(linear, &delayed, 1), linear(1) + 500.0);
    }

    #[test]
    fn a_running_batch_counts_half_and_a_cooldown_counts_whole() {
        let running = QueueState { running_rows: 100, max_queue_delay_us: 500.0, ..idle() };
        assert_eq!(estimate_us(linear, &running, 10), linear(10) + 0.5 * linear(100), "no batch delay when busy");
        let cooling = QueueState { cooling_left_us: 70.0, queued_rows: 5, queued_jobs: 5, ..idle() };
        assert_eq!(estimate_us(linear, &cooling, 5), linear(10) + 70.0);
    }

    #[test]
    fn queued_ranking_jobs_run_as_separate_batches_and_small_ones_merge() {
        // Three queued 165-row jobs: each is past the merge size, so four batches of ~165 rows.
        let ranking = QueueState { queued_rows: 495, queued_jobs: 3, ..idle() };
        assert_eq!(estimate_us(linear, &ranking, 165), 4.0 * linear(165));
        // Forty queued single rows merge into one batch with the new row.
        let singles = QueueState { queued_rows: 40, queued_jobs: 40, ..idle() };
        assert_eq!(estimate_us(linear, &singles, 1), linear(41));
        // 600 single rows: batches capped by max_batch_rows, not one per job.
        let flood = QueueState { queued_rows: 600, queued_jobs: 600, merge_rows: 256, ..idle() };
        assert_eq!(estimate_us(linear, &flood, 1), 3.0 * linear(201));
    }

    #[test]
    fn the_profile_interpolates_extrapolates_and_tracks_observed_speed() {
        let e = profile(&[(1, 100.0), (64, 1000.0), (256, 3400.0)]);
        assert_eq!(e.run_us(1), 100.0);
        assert_eq!(e.run_us(160), 2200.0);
        assert_eq!(e.run_us(512), 6600.0, "past the last point: the last segment's slope");
        for _ in 0..200 {
            e.observe(64, 2000.0);
        }
        assert!((e.run_us(64) - 2000.0).abs() < 1.0, "{}", e.run_us(64));
        assert!((profile(&[]).run_us(2) - 1000.0).abs() < 1e-9, "no profile: 500 µs a row");
    }

    #[test]
    fn efficient_rows_is_where_per_row_cost_reaches_the_profiles_best() {
        // The shipped ensemble's profile: 64 rows already run at the best µs per row.
        let ensemble = profile(&[(1, 111.7), (8, 285.9), (64, 1847.3), (256, 7359.4)]);
        assert_eq!(ensemble.efficient_rows(), 64);
        let steep = profile(&[(1, 100.0), (64, 1600.0), (256, 3400.0)]);
        assert_eq!(steep.efficient_rows(), 256);
    }
}

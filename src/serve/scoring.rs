//! The one scoring pipeline every front end calls: admission → decoding and encoding → validation →
//! deadline → routing → inline or queued run → metrics. Front ends only turn their protocol into a
//! [`Call`] plus a body decoder, and a [`Scored`] or [`ScoringError`] back into their protocol.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::batcher::{JobError, JobReply, SubmitError};
use super::decode::{BodyOptions, DecodeLimits, Encoded};
use super::error::ScoringError;
use super::metrics::Metrics;
use super::registry::{LoadedModel, Registry, Route};
use super::router::{RouteReason, TierRequest};
use super::sequencer::{Abandoned, Sequencer, Ticket};
use crate::features::Encoder;

/// Per-request limits and defaults from the server config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_instances: usize,
    pub default_budget_ms: f64,
    /// The ceiling of every request's deadline.
    pub request_timeout: Duration,
    pub missing_as_oov: bool,
    pub shed_on_overload: bool,
    /// Share of a request's remaining budget routing leaves unplanned (estimate error, unseen work).
    pub budget_headroom: f64,
}

/// Turns a front end's body into encoded rows with the model's encoder; `Extra` is what the front end
/// needs back for its answer (KServe v2's `id`).
pub trait Decode {
    type Extra;
    fn decode(self, enc: &Encoder, limits: DecodeLimits) -> Result<(Encoded, BodyOptions, Self::Extra), ScoringError>;
}

/// One request as a front end hands it over.
pub struct Call<'a> {
    pub model: &'a str,
    /// When its bytes reached the server (the kernel's receive time where known).
    pub arrival: Instant,
    /// Raw header values (`X-Latency-Budget-Ms`, `X-Request-Timeout-Ms`); the body's options win.
    pub budget_header: Option<&'a str>,
    pub timeout_header: Option<&'a str>,
    /// gRPC's `grpc-timeout` (the client's own deadline, e.g. tritonclient's `client_timeout`): whatever
    /// the body or the other header say, the request's deadline is never later.
    pub grpc_timeout: Option<&'a str>,
}

/// A scored request.
#[derive(Debug)]
pub struct Scored {
    pub model: String,
    pub version: String,
    pub tier: String,
    pub graph: String,
    pub probabilities: Vec<f32>,
    pub server_us: f64,
    pub queue_us: f64,
    pub run_us: f64,
    pub batch_rows: usize,
    pub budget_ms: f64,
    pub budget_met: bool,
    pub predicted_miss: bool,
}

pub struct Scorer {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    pub limits: Limits,
    /// Runs start in arrival order.
    pub sequencer: Arc<Sequencer>,
}

impl Scorer {
    /// Scores one request and records its outcome, whatever it is, once.
    pub async fn score<D: Decode>(&self, call: Call<'_>, body: D) -> Result<(Scored, D::Extra), ScoringError> {
        let result = self.pipeline(&call, body).await;
        self.record(call.model, result.as_ref().map(|(s, _)| s));
        result
    }

    async fn pipeline<D: Decode>(&self, call: &Call<'_>, body: D) -> Result<(Scored, D::Extra), ScoringError> {
        let _permit = self.in_flight.clone().try_acquire_owned().map_err(|_| ScoringError::Overloaded)?;
        // The body is decoded and validated before the deadline is checked: a malformed request is told so
        // whatever its deadline, and nothing reaches ONNX Runtime past it.
        let header_timeout = header_number(call.timeout_header, "X-Request-Timeout-Ms", ScoringError::InvalidTimeout)?;
        let ceiling = grpc_timeout(call.grpc_timeout)?
            .map_or(self.limits.request_timeout, |t| t.min(self.limits.request_timeout));
        let model = self.registry.get(call.model).ok_or_else(|| ScoringError::UnknownModel(call.model.into()))?;
        let limits = DecodeLimits { max_rows: self.limits.max_instances, missing_as_oov: self.limits.missing_as_oov };
        let (encoded, options, extra) = body.decode(&model.artifact.encoder, limits)?;
        let request = self.validate(call, &options, header_timeout)?;
        let deadline = deadline(call.arrival, request.timeout_ms, ceiling);
        if deadline <= Instant::now() {
            return Err(ScoringError::DeadlineExceeded { while_queued: false });
        }
        self.metrics.arrival_wait_us.with_label_values(&[call.model]).observe(us_since(call.arrival));
        let route = self.route(&model, &request, encoded.rows, us_since(call.arrival))?;
        self.metrics.routing.with_label_values(&[call.model, &route.tier.label, route.reason.as_str()]).inc();
        let dropped = |reason: &str| self.metrics.dropped.with_label_values(&[call.model, &route.tier.label, reason]);
        let abandoned =
            Abandoned { deadline: dropped("deadline_exceeded"), disconnected: dropped("client_disconnected") };
        let cost_us = route.tier.batcher.estimator.run_us(encoded.rows);
        let ticket = (self.sequencer.turn(call.arrival, deadline, cost_us, abandoned).await)
            .map_err(|_| ScoringError::DeadlineExceeded { while_queued: true })?;
        let reply = run(&route, encoded, deadline, ticket).await?;
        let server_us = us_since(call.arrival);
        let scored = Scored {
            model: model.name.clone(),
            version: model.version.clone(),
            tier: route.tier.label.clone(),
            graph: route.tier.file.clone(),
            probabilities: reply.probabilities,
            server_us,
            queue_us: reply.queue_us,
            run_us: reply.run_us,
            batch_rows: reply.batch_rows,
            budget_ms: request.budget_ms,
            budget_met: server_us <= request.budget_ms * 1000.0,
            predicted_miss: route.reason == RouteReason::Fallback,
        };
        Ok((scored, extra))
    }

    /// The request's budget, tier and timeout: from the body, else its headers, else the server defaults.
    fn validate(
        &self,
        call: &Call<'_>,
        options: &BodyOptions,
        header_timeout: Option<f64>,
    ) -> Result<Request, ScoringError> {
        let header_budget = header_number(call.budget_header, "X-Latency-Budget-Ms", ScoringError::InvalidBudget)?;
        let budget_ms = options.latency_budget_ms.or(header_budget).unwrap_or(self.limits.default_budget_ms);
        if !budget_ms.is_finite() || budget_ms < 0.0 {
            let msg = format!("latency budget {budget_ms} ms must be a non-negative number");
            return Err(ScoringError::InvalidBudget(msg));
        }
        let timeout_ms = options.timeout_ms.or(header_timeout).unwrap_or(f64::INFINITY);
        if timeout_ms.is_nan() || timeout_ms < 0.0 {
            return Err(ScoringError::InvalidTimeout(format!("timeout {timeout_ms} ms must be a non-negative number")));
        }
        let tier = options.tier.as_deref().unwrap_or("auto");
        let tier = tier.parse::<TierRequest>().map_err(|e| ScoringError::InvalidTier(e.to_string()))?;
        Ok(Request { budget_ms, timeout_ms, tier })
    }

    /// The tier to run on, planned to fill what is left of the budget after `waited_us` since arrival, less the
    /// headroom; with shedding on, a predicted miss that an idle server would meet is refused.
    fn route<'m>(
        &self,
        model: &'m LoadedModel,
        r: &Request,
        rows: usize,
        waited_us: f64,
    ) -> Result<Route<'m>, ScoringError> {
        let budget_us = (r.budget_ms * 1000.0 - waited_us) * (1.0 - self.limits.budget_headroom);
        let route = model.route(r.tier, rows, budget_us, self.sequencer.ahead_us()).ok_or_else(|| {
            let label = r.tier.label(model.artifact.manifest.best_student).unwrap_or_else(|| "auto".into());
            ScoringError::InvalidTier(format!("no tier '{label}' in this model"))
        })?;
        let idle_fit = || route.tier.batcher.estimator.run_us(rows) <= budget_us;
        if self.limits.shed_on_overload && route.reason == RouteReason::Fallback && idle_fit() {
            return Err(ScoringError::BudgetUnattainable {
                budget_ms: r.budget_ms,
                fastest_ms: route.estimate_us / 1e3,
            });
        }
        Ok(route)
    }

    /// Counts the outcome: status, tier, server time, budget, and refusals by reason.
    fn record(&self, model: &str, outcome: Result<&Scored, &ScoringError>) {
        let m = &self.metrics;
        match outcome {
            Ok(s) => {
                m.requests.with_label_values(&[model, &s.tier, "200"]).inc();
                m.request_us.with_label_values(&[model, &s.tier]).observe(s.server_us);
                let met = if s.budget_met { "met" } else { "missed" };
                m.budget.with_label_values(&[model, &s.tier, met]).inc();
            }
            Err(e) => {
                // A name no loaded model has is no label: clients could mint series without end.
                let model = if self.registry.get(model).is_some() { model } else { "" };
                m.requests.with_label_values(&[model, "none", itoa::Buffer::new().format(e.status())]).inc();
                if let Some(reason) = e.rejection() {
                    m.rejected.with_label_values(&[model, reason]).inc();
                }
            }
        }
    }
}

/// A validated request's routing inputs.
struct Request {
    budget_ms: f64,
    timeout_ms: f64,
    tier: TierRequest,
}

/// Runs inline when the graph is idle, else queues it and awaits its batch; the wait ends at the deadline
/// (the batcher then drops the job unrun). `ticket` is given up once the run has started or is queued.
async fn run(
    route: &Route<'_>,
    encoded: Encoded,
    deadline: Instant,
    ticket: Ticket,
) -> Result<super::batcher::JobResult, ScoringError> {
    let batcher = &route.tier.batcher;
    // A small request with others in line goes to the batcher, which merges it with them: one row costs
    // the ensemble about as much as eight. Large ones gain little from merging and run alone.
    let merge = encoded.rows <= MERGE_ROWS && ticket.others_in_line();
    let mut ticket = Some(ticket);
    let start = |t: &mut Option<Ticket>| t.take().map(Ticket::start);
    let inline = match merge {
        true => None,
        false => {
            run_blocking(encoded.rows, || batcher.try_run_inline(&encoded.ids, encoded.rows, || _ = start(&mut ticket)))
        }
    };
    let reply: JobReply = match inline {
        Some(r) => r,
        None => {
            let queued = batcher.submit(encoded.ids, encoded.rows, deadline);
            start(&mut ticket);
            let rx = queued.map_err(|e| match e {
                SubmitError::QueueFull => ScoringError::QueueFull,
                SubmitError::Stopped => ScoringError::Stopped,
            })?;
            tokio::select! {
                reply = rx => reply.map_err(|_| ScoringError::Stopped)?,
                _ = super::deadline::at(deadline) => return Err(ScoringError::DeadlineExceeded { while_queued: true }),
            }
        }
    };
    reply.map_err(|e| match e {
        JobError::DeadlineExceeded => ScoringError::DeadlineExceeded { while_queued: true },
        JobError::Inference(msg) => ScoringError::Inference(msg),
    })
}

/// Rows at or below which a request shares a batch with others waiting rather than running alone.
const MERGE_ROWS: usize = 32;

/// Rows above which an inline run tells a multi-worker runtime it blocks (a few hundred µs and more).
const BLOCKING_ROWS: usize = 16;

/// Runs `f` (an inline ONNX Runtime run) on this thread. On a runtime with other workers, a large run first
/// hands this worker's other tasks to them (`block_in_place`); a single-worker runtime (the server pinned
/// to one core) just runs it: later requests wait in the socket until it ends, like a one-core FIFO server.
fn run_blocking<T>(rows: usize, f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h)
            if rows > BLOCKING_ROWS
                && h.runtime_flavor() == RuntimeFlavor::MultiThread
                && h.metrics().num_workers() > 1 =>
        {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `arrival + min(timeout_ms, ceiling)`; a timeout too large for an `Instant` is the ceiling.
fn deadline(arrival: Instant, timeout_ms: f64, ceiling: Duration) -> Instant {
    let timeout = Duration::try_from_secs_f64(timeout_ms / 1e3).unwrap_or(Duration::MAX).min(ceiling);
    arrival.checked_add(timeout).unwrap_or_else(|| arrival + Duration::from_secs(86_400 * 365))
}

fn us_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// What a milliseconds header holds: a non-negative decimal (`25`, `2.5`), up to 15 digits each side of
/// the point (the OpenAPI document states this pattern; [`header_number`] checks the same).
pub const MS_HEADER_PATTERN: &str = r"^[0-9]{1,15}(\.[0-9]{1,15})?$";

/// A header holding a number of milliseconds, in [`MS_HEADER_PATTERN`]'s grammar.
fn header_number(
    value: Option<&str>,
    name: &str,
    err: fn(String) -> ScoringError,
) -> Result<Option<f64>, ScoringError> {
    let Some(text) = value else { return Ok(None) };
    let digits = |s: &str| (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
    match digits(whole) && fraction.is_none_or(digits) {
        true => Ok(text.parse().ok()),
        false => Err(err(format!("{name} '{text}' is not a decimal number of milliseconds (like 25 or 2.5)"))),
    }
}

/// gRPC's `grpc-timeout` header: 1 to 8 digits and a unit, H, M, S, m, u or n (gRPC over HTTP/2).
fn grpc_timeout(value: Option<&str>) -> Result<Option<Duration>, ScoringError> {
    let Some(text) = value else { return Ok(None) };
    let bad = || {
        ScoringError::InvalidTimeout(format!(
            "grpc-timeout '{text}' is not 1 to 8 digits and a unit (H, M, S, m, u or n)"
        ))
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return Err(bad()),
    };
    Ok(Some(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string up to four characters over digits, point, signs, exponent, space and a non-ASCII digit,
    /// and the 15/16-digit edges: `header_number` accepts exactly what [`MS_HEADER_PATTERN`] (the OpenAPI
    /// document's grammar) matches, so the two cannot drift apart.
    #[test]
    fn header_numbers_follow_the_documented_pattern() {
        let pattern = regex::Regex::new(MS_HEADER_PATTERN).unwrap();
        let alphabet = ['0', '9', '.', '-', '+', 'e', ' ', '٣'];
        let mut corpus = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = corpus.iter().flat_map(|s| alphabet.map(|c| format!("{s}{c}"))).collect();
            corpus.extend(longer);
        }
        let (d15, d16) = ("1".repeat(15), "1".repeat(16));
        corpus.extend([d15.clone(), d16.clone(), format!("{d15}.{d15}"), format!("{d15}.{d16}"), format!("{d16}.1")]);
        corpus.extend(["2.5\n", "25 ", "0x10", "inf", "NaN", "1e3", "25.000"].map(String::from));
        corpus.sort();
        corpus.dedup();
        for text in &corpus {
            let parsed = header_number(Some(text), "X-Test", ScoringError::InvalidTimeout);
            assert_eq!(parsed.is_ok(), pattern.is_match(text), "{text:?}: parser {parsed:?}");
            if let Ok(Some(ms)) = parsed {
                assert!(ms.is_finite() && ms >= 0.0, "{text:?} parsed to {ms}");
            }
        }
        assert!(corpus.len() > 4000);
    }

    /// gRPC's timeout grammar: 1 to 8 digits and one of six units; anything else is refused, never a panic.
    #[test]
    fn grpc_timeouts_follow_the_grpc_grammar() {
        let ms = |t: &str| grpc_timeout(Some(t)).map(|d| d.map(|d| d.as_secs_f64() * 1e3));
        assert_eq!(ms("5m"), Ok(Some(5.0)));
        assert_eq!(ms("2S"), Ok(Some(2000.0)));
        assert_eq!(ms("1M"), Ok(Some(60_000.0)));
        assert_eq!(ms("1H"), Ok(Some(3_600_000.0)));
        assert_eq!(ms("2500u"), Ok(Some(2.5)));
        assert_eq!(ms("99999999n").unwrap().unwrap(), 99.999999);
        assert_eq!(ms("0n"), Ok(Some(0.0)));
        assert_eq!(grpc_timeout(None), Ok(None));
        for bad in ["", "m", "5", "5x", "5 m", "-5m", "+5m", "123456789m", "5.0m", "５m", "5mm", "\u{fffd}", "5ü"] {
            let err = grpc_timeout(Some(bad)).unwrap_err();
            assert!(err.to_string().contains("grpc-timeout"), "{bad:?}: {err}");
            assert_eq!(err.status(), 422, "{bad:?}");
        }
    }
}

//! The one error a scoring request can end with. Each front end maps it to its protocol in one place
//! (v1: `{"error": {"code", "message"}}`, KServe v2: `{"error": "<message>"}`); the status and code live here.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    BadBody(String),
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// One row's field value, or a row that is not an object; `at` names it (`instances[3]`, `context`, …).
    #[error("{at}: {reason}")]
    InvalidInstance { at: String, reason: String },
    #[error("field '{field}' is given both in the context and in candidates[{row}]")]
    FieldInBoth { field: String, row: usize },
    #[error("'{0}' is empty")]
    NoInstances(&'static str),
    #[error("more than {max} {what} (the limit)")]
    TooManyInstances { what: &'static str, max: usize },
    #[error("{0}")]
    InvalidBudget(String),
    #[error("{0}")]
    InvalidTimeout(String),
    #[error("{0}")]
    InvalidTier(String),
    #[error("model '{0}' is not loaded")]
    UnknownModel(String),
    #[error("too many requests in flight; retry later")]
    Overloaded,
    #[error(
        "overloaded: no tier can answer within {budget_ms} ms now (fastest estimate {fastest_ms:.2} ms); retry later"
    )]
    BudgetUnattainable { budget_ms: f64, fastest_ms: f64 },
    #[error("the batch queue is full; retry later")]
    QueueFull,
    #[error("the model is shutting down")]
    Stopped,
    /// Before it was queued (counted as a rejection) or while queued (counted as a drop by the batcher).
    #[error("the request's deadline passed before it could run")]
    DeadlineExceeded { while_queued: bool },
    #[error("{0}")]
    Inference(String),
}

impl ScoringError {
    /// The HTTP status (gRPC maps from it too).
    pub fn status(&self) -> u16 {
        use ScoringError::*;
        match self {
            InvalidJson(_) | BadBody(_) => 400,
            UnknownModel(_) => 404,
            BodyTooLarge(_) | TooManyInstances { .. } => 413,
            InvalidRequest(_)
            | InvalidInstance { .. }
            | FieldInBoth { .. }
            | NoInstances(_)
            | InvalidBudget(_)
            | InvalidTimeout(_)
            | InvalidTier(_) => 422,
            Overloaded | BudgetUnattainable { .. } => 429,
            Inference(_) => 500,
            QueueFull | Stopped => 503,
            DeadlineExceeded { .. } => 504,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ScoringError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            BadBody(_) => "bad_body",
            BodyTooLarge(_) => "body_too_large",
            InvalidRequest(_) => "invalid_request",
            InvalidInstance { .. } => "invalid_instance",
            FieldInBoth { .. } => "field_in_both",
            NoInstances(_) => "no_instances",
            TooManyInstances { .. } => "too_many_instances",
            InvalidBudget(_) => "invalid_budget",
            InvalidTimeout(_) => "invalid_timeout",
            InvalidTier(_) => "invalid_tier",
            UnknownModel(_) => "unknown_model",
            Overloaded => "overloaded",
            BudgetUnattainable { .. } => "budget_unattainable",
            QueueFull => "queue_full",
            Stopped => "stopped",
            DeadlineExceeded { .. } => "deadline_exceeded",
            Inference(_) => "inference_failed",
        }
    }

    /// The `reason` label of `ensemble_serve_rejected_total` for refusals made before running.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Self::Overloaded => Some("too_many_in_flight"),
            Self::QueueFull => Some("queue_full"),
            Self::BudgetUnattainable { .. } => Some("budget_unattainable"),
            Self::DeadlineExceeded { while_queued: false } => Some("deadline_exceeded"),
            _ => None,
        }
    }

    /// A serde_json failure on a request body: syntax (400) or shape (422).
    pub fn from_json(e: &serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => Self::InvalidRequest(e.to_string()),
            _ => Self::InvalidJson(e.to_string()),
        }
    }
}

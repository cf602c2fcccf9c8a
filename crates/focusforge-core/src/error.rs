use std::fmt;

/// One invalid request field: the field path (`blocks[2].minutes`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// The error every domain operation returns. The gRPC layer maps each variant
/// to one status code in one place; messages are lowercase, without a period.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid argument: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist, or is not the caller's.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The operation does not fit the resource's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A conditional write lost to a concurrent change.
    #[error("version mismatch: expected {expected}, found {actual}")]
    VersionMismatch { expected: i64, actual: i64 },
    /// The operation exists in the contract but is not available yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The caller is over a limit (e.g. concurrent model calls); retrying
    /// later helps.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency is down; retrying later may help.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken dependency. The message is logged, never sent to clients.
    #[error("internal: {0}")]
    Internal(String),
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The kind as a snake_case word: what retry policies name as
    /// non-retryable (`invalid_argument`, `not_found`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::VersionMismatch { .. } => "aborted",
            Error::Unimplemented(_) => "unimplemented",
            Error::ResourceExhausted(_) => "resource_exhausted",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn internal(err: impl fmt::Display) -> Self {
        Error::Internal(err.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use focusforge_core::Error;

/// What a backend reports. Callers usually convert into [`focusforge_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("document not found")]
    NotFound,
    #[error("document already exists")]
    AlreadyExists,
    #[error("version mismatch: expected {expected}, found {actual}")]
    VersionMismatch { expected: i64, actual: i64 },
    /// The query or document is malformed: a bug in the caller, not user input.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The backend failed or could not be reached.
    #[error("backend: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn backend(err: impl std::fmt::Display) -> Self {
        StoreError::Backend(err.to_string())
    }

    /// Converts into the domain error, naming what was looked for on `NotFound`.
    pub fn into_domain(self, what: &str) -> Error {
        match self {
            StoreError::NotFound => Error::NotFound(what.to_owned()),
            StoreError::AlreadyExists => Error::AlreadyExists(what.to_owned()),
            StoreError::VersionMismatch { expected, actual } => {
                Error::VersionMismatch { expected, actual }
            }
            StoreError::InvalidQuery(m) => Error::Internal(format!("invalid store query: {m}")),
            StoreError::Backend(m) => Error::Unavailable(format!("document store: {m}")),
        }
    }
}

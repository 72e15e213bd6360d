//! Errors of the engine. Each names the path or the instance involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The OS error is part of the message (and not also a `source`, so
    /// that `{:#}` chains do not print it twice).
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: corrupt record ({msg}); run `eigentrace verify`, then `eigentrace gc` or delete it")]
    CorruptRecord { path: PathBuf, msg: String },
    #[error("the store at {0} is locked by another eigentrace process (--no-wait was given)")]
    Locked(PathBuf),
    #[error("stage graph: {0}")]
    Graph(String),
    /// eigentrace will not do this, to protect the user's files or results
    /// (a usage error: exit 2). The message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, PipelineError>;

/// Attach a path to an io::Error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|err| PipelineError::Io {
            path: path.into(),
            err,
        })
    }
}

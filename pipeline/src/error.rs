//! Errors of the engine. Each names the path or the instance involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt record ({msg}); run `eigentrace verify`, then `eigentrace gc` or delete it")]
    CorruptRecord { path: PathBuf, msg: String },
    #[error("the store at {0} is locked by another eigentrace process (--no-wait was given)")]
    Locked(PathBuf),
    #[error("stage graph: {0}")]
    Graph(String),
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
        self.map_err(|source| PipelineError::Io {
            path: path.into(),
            source,
        })
    }
}

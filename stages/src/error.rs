//! Errors a stage can hit. Each names the file or parameter involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("parameter {field}: {msg}")]
    Param { field: String, msg: String },
    #[error("{0}")]
    Other(String),
}

pub type StageResult<T> = Result<T, StageError>;

pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StageError {
    let path = path.into();
    move |source| StageError::Io { path, source }
}

pub fn fmt_err(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> StageError {
    StageError::Format {
        path: path.into(),
        msg: msg.to_string(),
    }
}

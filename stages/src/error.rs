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

/// A parameter that fails validation: the config field (as the user wrote
/// it, e.g. `dataset.dim` or `momentum`) and what is wrong with it and how
/// to fix it. The experiment crate locates `field` in the TOML file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("parameter {field}: {msg}")]
pub struct ParamError {
    pub field: String,
    pub msg: String,
}

impl ParamError {
    pub fn new(field: impl Into<String>, msg: impl Into<String>) -> ParamError {
        ParamError {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

impl From<ParamError> for StageError {
    fn from(e: ParamError) -> StageError {
        StageError::Param {
            field: e.field,
            msg: e.msg,
        }
    }
}

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

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

/// What an [`Executor`](crate::Executor) returns when a stage fails: the
/// executor's own error type (the engine only renders it). Its `Display` is
/// the message the user sees, so it names the file, field or cause.
pub type ExecError = Box<dyn std::error::Error + Send + Sync>;

/// A role or file a stage asked its [`StageInputs`](crate::StageInputs) for
/// that the graph did not give it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("missing input role {role}")]
    MissingRole { role: String },
    #[error("input {input} has no output {name}")]
    MissingFile { input: String, name: String },
}

/// Why one stage instance failed: the engine's checks around it, or the
/// executor's error. Rendered to text only in the instance's report.
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    /// An input object's bytes no longer hash to its record.
    #[error(
        "input {role} ({id}): {name} is corrupt in the store (its bytes no longer hash to {hash16}); \
         nothing was computed from it. Run again: the next `eigentrace run` recomputes it"
    )]
    CorruptInput {
        role: String,
        id: String,
        name: String,
        hash16: String,
    },
    #[error("input {role} ({id}): cannot read {name}: {err}")]
    UnreadableInput {
        role: String,
        id: String,
        name: String,
        err: PipelineError,
    },
    /// The executor returned success and left nothing in its work dir.
    #[error("the {kind} stage reported success but wrote no output; nothing was committed")]
    NoOutput { kind: String },
    /// Declared outputs (globs) that no file matched.
    #[error(
        "the {kind} stage reported success but did not write {}; nothing was committed",
        .missing.join(", ")
    )]
    MissingOutputs { kind: String, missing: Vec<String> },
    #[error("internal error: declared output {pattern}: {err}")]
    BadPattern { pattern: String, err: String },
    /// The stage panicked (in this process).
    #[error("internal error: {0}")]
    Panicked(String),
    /// The stage's own error, from the executor.
    #[error(transparent)]
    Executor(ExecError),
    /// Preparing the work dir or committing the outputs.
    #[error(transparent)]
    Store(#[from] PipelineError),
}

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

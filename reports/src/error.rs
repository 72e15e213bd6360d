//! The one error type of the crate: every variant names the file (or the
//! figure) it is about, so a failing report says where to look.

use std::path::{Path, PathBuf};

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report was asked for with nothing to plot.
    #[error("report `{experiment}`: no runs to plot")]
    NoRuns { experiment: String },

    /// The file does not exist, cannot be opened, or is not Arrow IPC.
    #[error("{}: cannot read Arrow IPC file: {message}", file.display())]
    Unreadable { file: PathBuf, message: String },

    /// A column the figure needs is absent.
    #[error("{}: missing column `{column}` (columns present: {present})", file.display())]
    MissingColumn {
        file: PathBuf,
        column: String,
        present: String,
    },

    /// A column exists but holds the wrong kind of values.
    #[error("{}: column `{column}` has type {found}, expected {expected}", file.display())]
    ColumnType {
        file: PathBuf,
        column: String,
        found: String,
        expected: &'static str,
    },

    /// The values could not be converted or aggregated.
    #[error("{}: {message}", file.display())]
    Data { file: PathBuf, message: String },

    /// The embedded font could not be registered with plotters.
    #[error("embedded font DejaVuSans.ttf could not be registered: {0}")]
    Font(String),

    /// Drawing or writing a figure failed.
    #[error("{}: plotting failed: {message}", file.display())]
    Plot { file: PathBuf, message: String },
}

impl ReportError {
    /// The file the error is about, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ReportError::Unreadable { file, .. }
            | ReportError::MissingColumn { file, .. }
            | ReportError::ColumnType { file, .. }
            | ReportError::Data { file, .. }
            | ReportError::Plot { file, .. } => Some(file),
            ReportError::NoRuns { .. } | ReportError::Font(_) => None,
        }
    }
}

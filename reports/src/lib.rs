//! reports: comparative optimizer figures (PNG and SVG) from eigentrace's
//! Arrow outputs.
//!
//! Data is read and aggregated with polars (lazy expressions: the seeds of
//! one optimizer and label are averaged per step, with a min–max band) and
//! drawn with plotters on an embedded font (DejaVu Sans), so rendering needs
//! no system fonts. Every problem with the inputs is a [`ReportError`] that
//! names the file; nothing here panics on bad input.

pub mod aging;
mod axis;
mod chart;
mod data;
mod error;
mod fig_dynamics;
mod fig_structure;
mod figures;
pub mod findings;
mod font;
mod index;
mod legend;
mod palette;
mod pdf;
mod threshold;

use std::path::{Path, PathBuf};

// The report's code version lives in the stage table
// (experiment/src/stage.rs): bump it there when a figure or index.html changes.

pub use error::ReportError;
pub use index::Provenance;
pub use palette::optimizer_color;

/// One training run and the files the report reads from it.
#[derive(Clone, Debug)]
pub struct RunInput {
    /// e.g. "adam-lr1e-3-s0".
    pub run_id: String,
    /// The setting's label (the optimizer's name unless the config gives a
    /// label, e.g. "momentum"): the colour key. The optimizer's own name is
    /// `params["optimizer"]`.
    pub optimizer: String,
    /// Legend label, e.g. "Adam (lr=1e-3)". Runs with the same optimizer and
    /// label (the seeds) are averaged into one curve.
    pub label: String,
    /// train.arrow: step (i64), train_loss, test_loss (f64), lr (f64; needed
    /// for SGD-family runs), diverged (bool; optional).
    pub train: PathBuf,
    /// eigen/values.arrow: step (i64), operator (utf8), rank (i32), eigenvalue (f64).
    pub values: PathBuf,
    /// metrics/localization.arrow: step (i64), rank (i32), p_ipr (f64).
    pub localization: PathBuf,
    /// metrics/overlap.arrow: t_w (i64), subspace_overlap (f64), consecutive
    /// (bool; without it, the pair of each t_w with the smallest later t).
    pub overlap: PathBuf,
    /// Every file of the run by its logical name (the output contract's:
    /// `train.arrow`, `param_map.arrow`, `eigen/values.arrow`,
    /// `eigen/vectors.arrow`, `metrics/displacement.arrow`,
    /// `metrics/layer_mass.arrow`, `metrics/spectrum.arrow`,
    /// `metrics/alignment.arrow`, `metrics/null_band.arrow`, …).
    pub files: std::collections::BTreeMap<String, PathBuf>,
    /// The run's hyperparameters as JSON (optimizer, lr, seed, …), for tables.
    pub params: serde_json::Value,
}

impl RunInput {
    /// The path of one of the run's files, or an error naming it.
    pub fn file(&self, name: &str) -> Result<&Path, ReportError> {
        self.files
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| ReportError::Data {
                file: PathBuf::from(name),
                message: format!("run {} has no {name}", self.run_id),
            })
    }
}

/// The runs of one experiment.
#[derive(Clone, Debug)]
pub struct ReportInput {
    pub experiment: String,
    pub runs: Vec<RunInput>,
}

/// Renders the overview into out_dir (which exists) and returns the relative
/// file names written: `optimizer_comparison.{png,svg,pdf}` (2400×1800) and
/// its loss-axis variant `optimizer_comparison_loss.{png,svg,pdf}`.
pub fn render_report(input: &ReportInput, out_dir: &Path) -> Result<Vec<String>, ReportError> {
    if input.runs.is_empty() {
        return Err(ReportError::NoRuns {
            experiment: input.experiment.clone(),
        });
    }
    font::ensure_registered()?;
    let fig = figures::FigureData::load(input)?;
    let mut files = figures::optimizer_comparison(&fig, out_dir)?;
    files.extend(figures::optimizer_comparison_loss(&fig, out_dir)?);
    Ok(files)
}

/// The whole report: every figure, then `index.html` and `provenance.json`
/// (each figure with its blake3 and the input stages it was made from).
/// Returns the relative names of every file written.
pub fn render_all(
    input: &ReportInput,
    provenance: &[Provenance],
    out_dir: &Path,
) -> Result<Vec<String>, ReportError> {
    let mut files = render_report(input, out_dir)?;
    files.extend(fig_dynamics::render(input, out_dir)?);
    files.extend(fig_structure::render(input, out_dir)?);
    let mut hashes = std::collections::BTreeMap::new();
    for f in &files {
        let bytes = std::fs::read(out_dir.join(f)).map_err(|e| ReportError::Data {
            file: out_dir.join(f),
            message: e.to_string(),
        })?;
        hashes.insert(f.clone(), blake3::hash(&bytes).to_hex().to_string());
    }
    let figures = files.clone();
    files.extend(index::write_index(
        input, &figures, &hashes, provenance, out_dir,
    )?);
    Ok(files)
}

/// The figure groups, each on its own (the report's tests call them).
pub mod figure_groups {
    pub use crate::fig_dynamics::render as dynamics;
    pub use crate::fig_structure::render as structure;
    /// `index.html` and `provenance.json` alone, for the figures given.
    pub use crate::index::write_index as index;
}

/// `eigentrace show`: an Arrow IPC file's schema and first `rows` rows, as
/// polars prints them (so a user can look without Python).
pub fn show(path: &Path, rows: usize) -> Result<String, ReportError> {
    // polars has no float16 or bfloat16: such vector columns are widened
    // (exactly) to float32 first, and the header says so.
    let widened =
        stages::arrow_io::widened_for_display(path).map_err(|e| ReportError::Unreadable {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let t = match &widened {
        Some((bytes, _)) => data::Table::from_bytes(path, bytes)?,
        None => data::Table::open(path)?,
    };
    let df = t.frame();
    let mut out = format!(
        "{}: {} rows × {} columns\n",
        path.display(),
        df.height(),
        df.width()
    );
    for (name, dtype) in df.schema().iter() {
        out.push_str(&format!("  {name}: {dtype}\n"));
    }
    if let Some((_, cols)) = &widened {
        out.push_str(&format!(
            "  widened exactly to f32 for display: {}\n",
            cols.join(", ")
        ));
    }
    let head = df.head(Some(rows));
    out.push_str(&format!("{head}\n"));
    Ok(out)
}

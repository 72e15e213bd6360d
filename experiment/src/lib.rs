//! The experiment file (TOML) and its expansion into a DAG of stage instances.
//!
//! ```toml
//! name = "quick"
//! seeds = [0, 1]            # a list sweeps
//! dtype = "f64"
//! [dataset]   kind = "gaussian_mixture", classes, dim, samples, separation, test_fraction, seed
//! [model]     widths = [8, 32, 4], activation = "tanh", init = "torch_default" | { kind = "normal", std = 0.1 }
//! [train]     steps, batch_size, log_every, checkpoints = { every, log_spaced, at }
//! [[optimizer]] name = "adam", lr = [1e-3, 3e-3], label = "adam"   # any list-valued field sweeps
//! [hessian]   k, analysis_size, which, tol, max_iter, block
//! [metrics]   include_untrusted = false, degeneracy_threshold = 1e-3   # optional
//! ```
//!
//! Instances: one `dataset`; per run (optimizer setting × seed) a `train`,
//! `hessian` and `metrics`; one `report` over all runs.
//!
//! Validation happens here, before anything is computed, allocated by the
//! config's sizes, or written. An error names the file, the line and column,
//! the field and the fix (``exp.toml:19:1: field `train.steps`: must be in
//! 1..=1000000000``). In order:
//! - the file: a regular file of at most [`MAX_CONFIG_BYTES`] of UTF-8;
//! - the top level: known keys, `name` a string, the sections tables,
//!   `seed`/`seeds` non-negative integers; then the size of the sweep (at
//!   most [`MAX_RUNS`] runs), from the lists' lengths, before expanding it;
//! - each point: types (serde, its errors mapped back to the field), then
//!   every number against its range, counts against hard limits (the `MAX_*`
//!   constants here and in `stages`), hyperparameters an optimizer does not
//!   use, checkpoint rules (counted without listing them), names and run ids
//!   (their lengths: they name directories);
//! - the resources: a rough estimate of each stage's peak memory (and, when
//!   asked, of the results' disk), refused with the estimate and the field to
//!   change when over the machine's ([`LoadOptions`]; `--force-size`).

use pipeline::{Graph, StageInstance};
use serde::Deserialize;
use serde_json::{json, Value};
use stages::dataset::DatasetParams;
use stages::dataset::{DatasetKind, DatasetShape};
use stages::hessian::{HessianParams, NullParams};
use stages::lanczos::Which;
use stages::metrics::MetricsParams;
use stages::mlp::{Activation, Arch, Init};
use stages::optim::OptName;
use stages::optim::OptimizerParams;
use stages::runtime::Dtype;
use stages::train::{CheckpointSpec, Schedule, ScheduleKind, TrainParams, MAX_STEPS};
use std::path::{Path, PathBuf};

/// A config error: the file, the line and column, the field, and the fix.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.file.display(), self.msg)
    }
}

impl std::error::Error for ConfigError {}

mod graph;
mod load;
mod parse;
mod resources;
mod sections;
mod slurm_config;
mod stage;
mod sweep;
#[cfg(test)]
mod tests;

pub(crate) use graph::*;
pub use load::*;
pub(crate) use parse::*;
pub(crate) use resources::*;
pub(crate) use sections::*;
pub(crate) use slurm_config::*;
pub use slurm_config::{SlurmConfig, SlurmResources};
pub use stage::{EnvKind, ReportParams, ReportRun, StageKind};
pub use sweep::compact_number;
pub(crate) use sweep::*;

/// One training run of the sweep.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub id: String,
    /// The colour and legend key: the optimizer's `label`, or its name.
    pub label: String,
    /// The id of the dataset instance it trains on.
    pub dataset: String,
    pub train: TrainParams,
    pub hessian: HessianParams,
    /// The null model of this run's architecture, data and Hessian settings.
    pub null: Option<NullParams>,
    /// The metrics stage's parameters (`[metrics]`).
    pub metrics: MetricsParams,
}

/// A parsed, validated experiment.
pub struct Experiment {
    pub name: String,
    /// Dataset instances: (id, view dir, params, env: the blake3 of user data files).
    pub datasets: Vec<(String, String, DatasetParams, Value)>,
    /// The config's directory: data paths are relative to it.
    pub base_dir: PathBuf,
    pub runs: Vec<RunSpec>,
    /// `[slurm]`: job resources under `--executor slurm` (not part of any key).
    pub slurm: SlurmConfig,
}

/// Serialize any parameter struct to JSON (object-safe helper).
mod erased {
    pub trait Ser {
        fn to_json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("params serialize")
        }
    }
}

//! The stage table: every stage kind, its code version, where it runs, and
//! what of the environment enters its key. The one place that knows what a
//! stage kind is; the CLI, the worker and Slurm dispatch on [`StageKind`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One run as the findings and report stages see it (their parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRun {
    /// The run id, e.g. `adam-lr1e-3-s0`.
    pub id: String,
    /// The setting's label: the optimizer's name unless the config gives
    /// one; the figures' colour key.
    pub label: String,
    /// The optimizer's name.
    pub optimizer: String,
    pub lr: f64,
    pub seed: u64,
}

/// The parameters of the findings and report stages: the experiment and
/// its runs, in config order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    pub experiment: String,
    pub runs: Vec<ReportRun>,
}

/// A stage kind, in graph order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageKind {
    Dataset,
    Null,
    Train,
    Hessian,
    Metrics,
    Findings,
    Report,
}

/// What of the environment enters a stage's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvKind {
    /// The content of the dataset's user files (`idx`), or nothing.
    InputFiles,
    /// The torch environment: libtorch version, device, threads…
    Torch,
    /// The libtorch version alone (a CPU GEMM summed in a fixed order).
    Libtorch,
    /// Nothing: pure Rust on Arrow files.
    None,
}

impl StageKind {
    /// Every kind, in graph order.
    pub const ALL: [StageKind; 7] = [
        StageKind::Dataset,
        StageKind::Null,
        StageKind::Train,
        StageKind::Hessian,
        StageKind::Metrics,
        StageKind::Findings,
        StageKind::Report,
    ];

    /// The name in stage ids, records, `--force` and `[slurm.<kind>]`.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Dataset => "dataset",
            StageKind::Null => "null",
            StageKind::Train => "train",
            StageKind::Hessian => "hessian",
            StageKind::Metrics => "metrics",
            StageKind::Findings => "findings",
            StageKind::Report => "report",
        }
    }

    pub fn from_name(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kinds' names, comma-separated (for error messages).
    pub fn names() -> String {
        StageKind::ALL.map(StageKind::name).join(", ")
    }

    /// The code version: part of every key of this kind. Bump it whenever
    /// the kind's outputs can change for the same inputs:
    /// - dataset: `stages/src/dataset.rs`;
    /// - train: `torch/src/train.rs`, `optim.rs`, `stages/src/train.rs`;
    /// - hessian, null: `torch/src/hessian.rs`, `rop.rs`, `stages/src/lanczos.rs`;
    /// - metrics: `stages/src/metrics.rs`;
    /// - findings: `reports/src/findings.rs`, `aging.rs`;
    /// - report: any figure or index.html in `reports/src`.
    pub fn code_version(self) -> u32 {
        match self {
            StageKind::Dataset => 1,
            StageKind::Null => 9,
            StageKind::Train => 6,
            StageKind::Hessian => 12,
            StageKind::Metrics => 9,
            StageKind::Findings => 6,
            StageKind::Report => 21,
        }
    }

    /// Whether it runs in the libtorch worker (`eigentrace-worker`).
    pub fn in_worker(self) -> bool {
        matches!(
            self,
            StageKind::Null | StageKind::Train | StageKind::Hessian | StageKind::Metrics
        )
    }

    /// Whether one instance reads every run (findings, report): its
    /// rerunning alone is not "the science changed".
    pub fn over_all_runs(self) -> bool {
        matches!(self, StageKind::Findings | StageKind::Report)
    }

    /// What of the environment enters its key.
    pub fn env_kind(self) -> EnvKind {
        match self {
            StageKind::Dataset => EnvKind::InputFiles,
            StageKind::Null | StageKind::Train | StageKind::Hessian => EnvKind::Torch,
            StageKind::Metrics => EnvKind::Libtorch,
            StageKind::Findings | StageKind::Report => EnvKind::None,
        }
    }

    /// Its environment, from the torch environment and (for a dataset) its
    /// files' env.
    pub fn env(self, torch_env: &Value, input_files: &Value) -> Value {
        match self.env_kind() {
            EnvKind::InputFiles => input_files.clone(),
            EnvKind::Torch => torch_env.clone(),
            EnvKind::Libtorch => json!({ "libtorch": stages::LIBTORCH_VERSION }),
            EnvKind::None => json!({}),
        }
    }
}

impl StageKind {
    /// The outputs it must leave (globs, `*` within a folder): the engine
    /// fails a stage that reports success without them. `with_null`: a
    /// metrics stage given a null model also writes the null's files.
    pub fn declared_outputs(self, with_null: bool) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = match self {
            StageKind::Dataset => vec!["data.arrow"],
            StageKind::Train => vec![
                "train.arrow",
                "param_map.arrow",
                "train_config.toml",
                "checkpoints/step_*.safetensors",
            ],
            StageKind::Hessian => vec![
                "config.toml",
                "eigen/values.arrow",
                "eigen/vectors.arrow",
                "eigen/gradient.arrow",
            ],
            StageKind::Null => vec!["null/values.arrow", "null/vectors.arrow"],
            StageKind::Metrics => vec![
                "metrics/localization.arrow",
                "metrics/layer_mass.arrow",
                "metrics/neuron_mass.arrow",
                "metrics/input_mass.arrow",
                "metrics/overlap.arrow",
                "metrics/displacement.arrow",
                "metrics/spectrum.arrow",
                "metrics/alignment.arrow",
            ],
            StageKind::Findings => vec!["findings.arrow", "findings_tests.arrow", "findings.md"],
            StageKind::Report => vec![
                "index.html",
                "provenance.json",
                "optimizer_comparison.png",
                "optimizer_comparison.svg",
                "optimizer_comparison.pdf",
                "optimizer_comparison_loss.png",
                "optimizer_comparison_loss.svg",
                "optimizer_comparison_loss.pdf",
                "fig*.png",
                "fig*.svg",
                "fig*.pdf",
            ],
        };
        if self == StageKind::Metrics && with_null {
            v.extend([
                "metrics/null_localization.arrow",
                "metrics/null_layer_mass.arrow",
                "metrics/null_band.arrow",
                "metrics/null_overlap.arrow",
            ]);
        }
        v
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for k in StageKind::ALL {
            assert_eq!(StageKind::from_name(k.name()), Some(k));
        }
        assert_eq!(StageKind::from_name("nope"), None);
        assert_eq!(
            StageKind::names(),
            "dataset, null, train, hessian, metrics, findings, report"
        );
    }

    #[test]
    fn the_worker_runs_exactly_the_libtorch_kinds() {
        let w: Vec<&str> = StageKind::ALL
            .into_iter()
            .filter(|k| k.in_worker())
            .map(StageKind::name)
            .collect();
        assert_eq!(w, ["null", "train", "hessian", "metrics"]);
        // A kind whose key holds the torch environment runs in the worker.
        for k in StageKind::ALL {
            if matches!(k.env_kind(), EnvKind::Torch | EnvKind::Libtorch) {
                assert!(k.in_worker(), "{k}");
            }
        }
    }
}

//! The config sections as written (`[model]`, `[train]`, `[hessian]`,
//! `[null]`, point files), with their defaults.

use crate::*;

pub(crate) fn d_dtype() -> Dtype {
    Dtype::F64
}
pub(crate) fn d_init() -> Init {
    Init::TorchDefault
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelSection {
    pub(crate) widths: Vec<usize>,
    pub(crate) activation: Activation,
    #[serde(default = "d_init", deserialize_with = "de_init")]
    pub(crate) init: Init,
}

pub(crate) fn de_init<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Init, D::Error> {
    use serde::de::Error;
    const FIX: &str = "use \"torch_default\" or { kind = \"normal\", std = 0.05 }";
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) if s == "torch_default" => Ok(Init::TorchDefault),
        toml::Value::String(s) => Err(D::Error::custom(format!("unknown init `{s}`: {FIX}"))),
        toml::Value::Table(t) => match t.get("kind").and_then(|k| k.as_str()) {
            Some("torch_default") if t.len() == 1 => Ok(Init::TorchDefault),
            Some("normal") => match (t.get("std"), t.len()) {
                (Some(toml::Value::Float(std)), 2) => Ok(Init::Normal { std: *std }),
                (Some(toml::Value::Integer(std)), 2) => Ok(Init::Normal { std: *std as f64 }),
                _ => Err(D::Error::custom(format!(
                    "kind = \"normal\" takes one number, `std` (> 0): {FIX}"
                ))),
            },
            _ => Err(D::Error::custom(format!(
                "`kind` must be \"normal\" or \"torch_default\": {FIX}"
            ))),
        },
        _ => Err(D::Error::custom(format!(
            "must be a string or a table: {FIX}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainSection {
    /// The budget: `steps`, or `epochs` (passes over the train split).
    #[serde(default)]
    pub(crate) steps: Option<u64>,
    #[serde(default)]
    pub(crate) epochs: Option<u64>,
    #[serde(default)]
    pub(crate) schedule: Schedule,
    #[serde(default)]
    pub(crate) batch_size: Option<usize>,
    #[serde(default = "d_log_every")]
    pub(crate) log_every: u64,
    #[serde(default)]
    pub(crate) checkpoints: CheckpointSpec,
}

pub(crate) fn d_log_every() -> u64 {
    10
}

/// One point of the sweep: every field a single value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PointFile {
    pub(crate) name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) description: Option<String>,
    pub(crate) seed: u64,
    #[serde(default = "d_dtype")]
    pub(crate) dtype: Dtype,
    pub(crate) dataset: DatasetParams,
    pub(crate) model: ModelSection,
    pub(crate) train: TrainSection,
    pub(crate) optimizer: OptimizerParams,
    pub(crate) hessian: stages::hessian::HessianSettings,
    #[serde(default)]
    pub(crate) null: NullSection,
    /// `[trace]`: absent = no trace estimates; an empty table = the defaults.
    #[serde(default)]
    pub(crate) trace: Option<stages::hessian::TraceParams>,
    /// `[density]`: absent = no spectral densities; empty = the defaults.
    #[serde(default)]
    pub(crate) density: Option<stages::density::DensityParams>,
    /// `[metrics]`: `include_untrusted`, `degeneracy_threshold` (both
    /// optional; unknown fields refused by `MetricsParams` itself).
    #[serde(default)]
    pub(crate) metrics: MetricsParams,
}

/// Enough replicas for the null's 5% and 95% quantiles to mean something.
pub(crate) fn d_replicas() -> usize {
    20
}

/// `[null]`: the architecture-induced null model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NullSection {
    /// Fresh random initializations (0 turns the null model off).
    #[serde(default = "d_replicas")]
    pub(crate) replicas: usize,
    /// The null's own residual tolerance (relative to |λ₁|); None = the
    /// hessian's. A looser one buys fewer products where the spectrum at
    /// initialization is flat, at the price of vectors mixed within clusters
    /// narrower than tol·|λ₁| (docs/science.md §8).
    #[serde(default)]
    pub(crate) tol: Option<f64>,
}

impl Default for NullSection {
    fn default() -> Self {
        NullSection {
            replicas: d_replicas(),
            tol: None,
        }
    }
}

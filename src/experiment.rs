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
//! [hessian]   k, analysis_size, which, tol, max_iter
//! ```
//!
//! Instances: one `dataset`; per run (optimizer setting × seed) a `train`,
//! `hessian` and `metrics`; one `report` over all runs.

use pipeline::{Graph, StageInstance};
use serde::Deserialize;
use serde_json::{json, Value};
use stages::hessian::HessianParams;
use stages::lanczos::Which;
use stages::mlp::{Activation, Arch, Init};
use stages::optim::OptimizerParams;
use stages::runtime::Dtype;
use stages::train::{CheckpointSpec, TrainParams};
use stages::{code_version, dataset::DatasetParams};
use std::path::{Path, PathBuf};

/// A config error: the file, where, the field, and the fix.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.msg)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn d_seeds() -> OneOrMany<u64> {
    OneOrMany::One(0)
}
fn d_dtype() -> Dtype {
    Dtype::F64
}
fn d_init() -> Init {
    Init::TorchDefault
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    widths: Vec<usize>,
    activation: Activation,
    #[serde(default = "d_init", deserialize_with = "de_init")]
    init: Init,
}

fn de_init<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Init, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Name(String),
        Table(Init),
    }
    match Raw::deserialize(d)? {
        Raw::Name(s) if s == "torch_default" => Ok(Init::TorchDefault),
        Raw::Name(s) => Err(serde::de::Error::custom(format!(
            "unknown init `{s}`: use \"torch_default\" or {{ kind = \"normal\", std = 0.05 }}"
        ))),
        Raw::Table(i) => Ok(i),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainSection {
    steps: u64,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default = "d_log_every")]
    log_every: u64,
    #[serde(default)]
    checkpoints: CheckpointSpec,
}

fn d_log_every() -> u64 {
    10
}
fn d_which() -> Which {
    Which::Largest
}
fn d_max_iter() -> usize {
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HessianSection {
    k: usize,
    #[serde(default)]
    analysis_size: Option<usize>,
    #[serde(default = "d_which")]
    which: Which,
    #[serde(default)]
    tol: Option<f64>,
    #[serde(default = "d_max_iter")]
    max_iter: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default = "d_seeds")]
    seeds: OneOrMany<u64>,
    #[serde(default = "d_dtype")]
    dtype: Dtype,
    dataset: DatasetParams,
    model: ModelSection,
    train: TrainSection,
    optimizer: Vec<toml::Table>,
    hessian: HessianSection,
}

/// One training run of the sweep.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub id: String,
    pub label: String,
    pub train: TrainParams,
}

/// A parsed, validated experiment.
pub struct Experiment {
    pub name: String,
    pub dataset: DatasetParams,
    pub runs: Vec<RunSpec>,
    pub hessian: HessianParams,
}

/// Compact, filesystem-safe number: 0.001 → "1e-3", 0.1 → "1e-1", 3 → "3".
pub fn compact_number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e6 {
        format!("{}", v as i64)
    } else {
        format!("{v:e}")
    }
}

fn toml_value_tag(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) => compact_number(*f),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Expand list-valued fields of one `[[optimizer]]` table into settings, each
/// with the id suffix naming the swept values.
fn expand_optimizer(table: &toml::Table) -> Vec<(toml::Table, Vec<(String, String)>)> {
    let mut out = vec![(toml::Table::new(), Vec::new())];
    for (k, v) in table {
        let choices: Vec<toml::Value> = match v {
            toml::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let swept = matches!(v, toml::Value::Array(_));
        let mut next = Vec::new();
        for (t, tags) in &out {
            for c in &choices {
                let mut t = t.clone();
                t.insert(k.clone(), c.clone());
                let mut tags = tags.clone();
                if swept || k == "lr" {
                    tags.push((k.clone(), toml_value_tag(c)));
                }
                next.push((t, tags));
            }
        }
        out = next;
    }
    out
}

fn short_field(k: &str) -> &str {
    match k {
        "lr" => "lr",
        "momentum" => "m",
        "weight_decay" => "wd",
        "beta1" => "b1",
        "beta2" => "b2",
        "batch_size" => "bs",
        other => other,
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
        let err = |msg: String| ConfigError {
            file: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read the config: {e}")))?;
        let f: ExperimentFile = toml::from_str(&text).map_err(|e| err(format!("{e}")))?;
        let field_err = |field: &str, msg: &str| err(format!("field `{field}`: {msg}"));
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(field_err("name", "must be non-empty and use only letters, digits, '-' and '_' (it names out/<name>/)"));
        }
        f.dataset.validate().map_err(|(fl, m)| field_err(&fl, &m))?;
        let seeds = f.seeds.to_vec();
        if seeds.is_empty() {
            return Err(field_err(
                "seeds",
                "the sweep list is empty; give at least one seed",
            ));
        }
        let widths = &f.model.widths;
        if widths.len() < 2 || widths.contains(&0) {
            return Err(field_err(
                "model.widths",
                "needs at least [input, classes], every width ≥ 1",
            ));
        }
        if widths[0] != f.dataset.dim {
            return Err(field_err(
                "model.widths",
                &format!(
                    "the first width ({}) must equal dataset.dim ({})",
                    widths[0], f.dataset.dim
                ),
            ));
        }
        if *widths.last().unwrap() != f.dataset.classes {
            return Err(field_err(
                "model.widths",
                &format!(
                    "the last width ({}) must equal dataset.classes ({})",
                    widths.last().unwrap(),
                    f.dataset.classes
                ),
            ));
        }
        if let Init::Normal { std } = f.model.init {
            if !(std.is_finite() && std > 0.0) {
                return Err(field_err("model.init.std", "must be > 0"));
            }
        }
        let arch = Arch {
            widths: widths.clone(),
            activation: f.model.activation,
        };
        if f.train.steps == 0 {
            return Err(field_err("train.steps", "must be ≥ 1"));
        }
        if f.train.log_every == 0 {
            return Err(field_err("train.log_every", "must be ≥ 1"));
        }
        let n_train = f.dataset.samples
            - ((f.dataset.samples as f64) * f.dataset.test_fraction).round() as usize;
        if let Some(b) = f.train.batch_size {
            if b == 0 || b > n_train {
                return Err(field_err(
                    "train.batch_size",
                    &format!(
                        "must be in 1..={n_train} (the train split), or omitted for full batch"
                    ),
                ));
            }
        }
        let p = arch.num_params();
        if f.hessian.k == 0 || f.hessian.k >= p {
            return Err(field_err(
                "hessian.k",
                &format!("must be in 1..{p} (the model has P = {p} parameters)"),
            ));
        }
        if let Some(m) = f.hessian.analysis_size {
            if m == 0 || m > n_train {
                return Err(field_err(
                    "hessian.analysis_size",
                    &format!("must be in 1..={n_train} (the train split)"),
                ));
            }
        }
        if let Some(t) = f.hessian.tol {
            if !(t > 0.0 && t < 1.0) {
                return Err(field_err("hessian.tol", "must be in (0, 1)"));
            }
        }
        if f.hessian.max_iter < f.hessian.k {
            return Err(field_err("hessian.max_iter", "must be ≥ hessian.k"));
        }
        if f.optimizer.is_empty() {
            return Err(field_err(
                "optimizer",
                "no [[optimizer]] tables; add at least one",
            ));
        }
        let mut runs: Vec<RunSpec> = Vec::new();
        for (oi, table) in f.optimizer.iter().enumerate() {
            let mut table = table.clone();
            let label = match table.remove("label") {
                None => None,
                Some(toml::Value::String(s)) => Some(s),
                Some(_) => {
                    return Err(field_err(
                        &format!("optimizer[{oi}].label"),
                        "must be a string",
                    ))
                }
            };
            for (k, v) in &table {
                if let toml::Value::Array(a) = v {
                    if a.is_empty() {
                        return Err(field_err(
                            &format!("optimizer[{oi}].{k}"),
                            "the sweep list is empty",
                        ));
                    }
                }
            }
            for (setting, tags) in expand_optimizer(&table) {
                let op: OptimizerParams =
                    setting.clone().try_into().map_err(|e: toml::de::Error| {
                        field_err(
                            &format!("optimizer[{oi}]"),
                            &e.to_string().replace('\n', " "),
                        )
                    })?;
                op.validate()
                    .map_err(|(fl, m)| field_err(&format!("optimizer[{oi}].{fl}"), &m))?;
                let base = label
                    .clone()
                    .unwrap_or_else(|| op.name.as_str().to_string());
                for &seed in &seeds {
                    let mut id = base.clone();
                    for (k, v) in &tags {
                        id.push_str(&format!("-{}{}", short_field(k), v));
                    }
                    id.push_str(&format!("-s{seed}"));
                    if !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                        || id.starts_with('.')
                    {
                        return Err(field_err(
                            &format!("optimizer[{oi}].label"),
                            &format!("run id `{id}` is not filesystem-safe; use letters, digits, '-', '_' and '.'"),
                        ));
                    }
                    if runs.iter().any(|r| r.id == id) {
                        return Err(field_err(
                            &format!("optimizer[{oi}]"),
                            &format!("duplicate run id `{id}`: two optimizer settings are identical; give one a distinct `label`"),
                        ));
                    }
                    runs.push(RunSpec {
                        id,
                        label: base.clone(),
                        train: TrainParams {
                            arch: arch.clone(),
                            init: f.model.init,
                            optimizer: op.resolved(),
                            steps: f.train.steps,
                            batch_size: f.train.batch_size,
                            log_every: f.train.log_every,
                            checkpoints: f.train.checkpoints.clone(),
                            seed,
                            dtype: f.dtype,
                        },
                    });
                }
            }
        }
        let hessian = HessianParams {
            k: f.hessian.k,
            analysis_size: f.hessian.analysis_size,
            which: f.hessian.which,
            tol: Some(f.hessian.tol.unwrap_or(match f.dtype {
                Dtype::F64 => 1e-6,
                Dtype::F32 => 1e-4,
            })),
            max_iter: f.hessian.max_iter,
            seed: 0,
            dtype: f.dtype,
        };
        Ok(Experiment {
            name: f.name,
            dataset: f.dataset,
            runs,
            hessian,
        })
    }

    /// The stage DAG. `torch_env` is what changes the numbers of torch stages.
    pub fn graph(&self, torch_env: &Value) -> Graph {
        let to = |v: &dyn erased::Ser| v.to_json();
        let mut inst = vec![StageInstance {
            id: "dataset".into(),
            kind: "dataset".into(),
            code_version: code_version::DATASET,
            params: to(&self.dataset),
            env: json!({}),
            inputs: vec![],
            view: "dataset".into(),
        }];
        let mut report_inputs = Vec::new();
        let mut report_runs = Vec::new();
        for r in &self.runs {
            let view = format!("runs/{}", r.id);
            let train_id = format!("train[{}]", r.id);
            let hess_id = format!("hessian[{}]", r.id);
            let met_id = format!("metrics[{}]", r.id);
            inst.push(StageInstance {
                id: train_id.clone(),
                kind: "train".into(),
                code_version: code_version::TRAIN,
                params: to(&r.train),
                env: torch_env.clone(),
                inputs: vec![("dataset".into(), "dataset".into())],
                view: view.clone(),
            });
            inst.push(StageInstance {
                id: hess_id.clone(),
                kind: "hessian".into(),
                code_version: code_version::HESSIAN,
                params: to(&self.hessian),
                env: torch_env.clone(),
                inputs: vec![
                    ("dataset".into(), "dataset".into()),
                    ("train".into(), train_id.clone()),
                ],
                view: view.clone(),
            });
            inst.push(StageInstance {
                id: met_id.clone(),
                kind: "metrics".into(),
                code_version: code_version::METRICS,
                params: json!({}),
                env: json!({}),
                inputs: vec![("hessian".into(), hess_id.clone())],
                view,
            });
            report_inputs.push((format!("train:{}", r.id), train_id));
            report_inputs.push((format!("hessian:{}", r.id), hess_id));
            report_inputs.push((format!("metrics:{}", r.id), met_id));
            report_runs.push(json!({
                "id": r.id,
                "label": r.label,
                "optimizer": r.train.optimizer.name.as_str(),
                "lr": r.train.optimizer.lr,
                "seed": r.train.seed,
            }));
        }
        inst.push(StageInstance {
            id: "report".into(),
            kind: "report".into(),
            code_version: reports::CODE_VERSION,
            params: json!({ "experiment": self.name, "runs": report_runs }),
            env: json!({}),
            inputs: report_inputs,
            view: "report".into(),
        });
        Graph::new(self.name.clone(), inst).expect("the experiment builds a valid graph")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers_are_filesystem_safe() {
        assert_eq!(compact_number(0.001), "1e-3");
        assert_eq!(compact_number(0.003), "3e-3");
        assert_eq!(compact_number(0.1), "1e-1");
        assert_eq!(compact_number(2.0), "2");
    }
}

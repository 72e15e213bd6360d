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
use stages::dataset::{DatasetKind, DatasetShape};
use stages::hessian::{HessianParams, NullParams};
use stages::lanczos::Which;
use stages::metrics::MetricsParams;
use stages::mlp::{Activation, Arch, Init};
use stages::optim::OptName;
use stages::optim::OptimizerParams;
use stages::runtime::Dtype;
use stages::train::{CheckpointSpec, Schedule, ScheduleKind, TrainParams, MAX_STEPS};
use stages::{code_version, dataset::DatasetParams};
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
struct TrainSection {
    /// The budget: `steps`, or `epochs` (passes over the train split).
    #[serde(default)]
    steps: Option<u64>,
    #[serde(default)]
    epochs: Option<u64>,
    #[serde(default)]
    schedule: Schedule,
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
    #[serde(default)]
    chunk_rows: Option<usize>,
    #[serde(default = "d_true")]
    warm_start: bool,
    #[serde(default = "d_true")]
    preconditioned: bool,
    #[serde(default = "d_block")]
    block: usize,
}

fn d_block() -> usize {
    stages::hessian::DEFAULT_BLOCK
}

fn d_true() -> bool {
    true
}

/// One point of the sweep: every field a single value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointFile {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    seed: u64,
    #[serde(default = "d_dtype")]
    dtype: Dtype,
    dataset: DatasetParams,
    model: ModelSection,
    train: TrainSection,
    optimizer: OptimizerParams,
    hessian: HessianSection,
    #[serde(default)]
    null: NullSection,
    /// `[metrics]`: `include_untrusted`, `degeneracy_threshold` (both
    /// optional; unknown fields refused by `MetricsParams` itself).
    #[serde(default)]
    metrics: MetricsParams,
}

/// Enough replicas for the null's 5% and 95% quantiles to mean something.
fn d_replicas() -> usize {
    20
}

/// `[null]`: the architecture-induced null model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NullSection {
    /// Fresh random initializations (0 turns the null model off).
    #[serde(default = "d_replicas")]
    replicas: usize,
}

impl Default for NullSection {
    fn default() -> Self {
        NullSection {
            replicas: d_replicas(),
        }
    }
}

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

/// The stage kinds, as `[slurm.<kind>]` names them.
pub const STAGE_KINDS: &[&str] = &[
    "dataset", "null", "train", "hessian", "metrics", "findings", "report",
];

/// The resources of one kind's Slurm jobs (`[slurm]` and `[slurm.<kind>]`);
/// None leaves Slurm's (or the partition's) default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlurmResources {
    /// `--cpus-per-task`; the job's libtorch threads.
    pub cpus: Option<u32>,
    /// `--mem`, e.g. "4G" (a bare integer is megabytes).
    pub mem: Option<String>,
    /// `--gres=gpu:N`; a kind with gpus runs on CUDA (see `--device`).
    pub gpus: Option<u32>,
    /// `--time`, e.g. "30", "2:00:00" or "1-00:00:00".
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// More sbatch arguments, e.g. ["--qos=short"]; a kind's come after the table's.
    pub extra: Vec<String>,
}

/// The `[slurm]` table: defaults for every kind, and `[slurm.<kind>]` overrides.
#[derive(Clone, Debug)]
pub struct SlurmConfig {
    pub defaults: SlurmResources,
    pub kinds: std::collections::BTreeMap<String, SlurmResources>,
    /// Submit a sweep level (one kind, same resources, same dependencies) as one job array.
    pub arrays: bool,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            defaults: SlurmResources::default(),
            kinds: Default::default(),
            arrays: true,
        }
    }
}

impl SlurmConfig {
    /// The resources of `kind`'s jobs: its table over the defaults.
    pub fn resources(&self, kind: &str) -> SlurmResources {
        let d = &self.defaults;
        let Some(k) = self.kinds.get(kind) else {
            return d.clone();
        };
        SlurmResources {
            cpus: k.cpus.or(d.cpus),
            mem: k.mem.clone().or_else(|| d.mem.clone()),
            gpus: k.gpus.or(d.gpus),
            time: k.time.clone().or_else(|| d.time.clone()),
            partition: k.partition.clone().or_else(|| d.partition.clone()),
            account: k.account.clone().or_else(|| d.account.clone()),
            extra: d.extra.iter().chain(&k.extra).cloned().collect(),
        }
    }
}

const SLURM_FIELDS: &str = "cpus, mem, gpus, time, partition, account, extra";

/// Parse `[slurm]`; errors name the field (file:line:col, like the rest).
fn parse_slurm(
    v: &toml::Value,
    at: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<SlurmConfig, ConfigError> {
    let toml::Value::Table(t) = v else {
        return Err(at("slurm", "must be a table: write [slurm]"));
    };
    let mut cfg = SlurmConfig::default();
    for (k, v) in t {
        let path = format!("slurm.{k}");
        if STAGE_KINDS.contains(&k.as_str()) {
            let toml::Value::Table(kt) = v else {
                return Err(at(&path, "must be a table: write [slurm.<kind>]"));
            };
            let mut r = SlurmResources::default();
            for (f, fv) in kt {
                if !slurm_field(&mut r, f, fv, &format!("{path}.{f}"), at)? {
                    return Err(at(
                        &format!("{path}.{f}"),
                        &format!("unknown field `{f}`, expected one of {SLURM_FIELDS}"),
                    ));
                }
            }
            cfg.kinds.insert(k.clone(), r);
        } else if k == "arrays" {
            cfg.arrays = v
                .as_bool()
                .ok_or_else(|| at(&path, "must be true or false"))?;
        } else if !slurm_field(&mut cfg.defaults, k, v, &path, at)? {
            return Err(at(
                &path,
                &format!(
                    "unknown field `{k}`, expected one of {SLURM_FIELDS}, arrays, or a stage kind table ({})",
                    STAGE_KINDS.join(", ")
                ),
            ));
        }
    }
    Ok(cfg)
}

/// Set resource field `f` from `v`; false when `f` is not a resource field.
fn slurm_field(
    r: &mut SlurmResources,
    f: &str,
    v: &toml::Value,
    path: &str,
    at: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<bool, ConfigError> {
    let word = |what: &str| -> Result<String, ConfigError> {
        match v.as_str() {
            Some(s) if !s.is_empty() && !s.chars().any(char::is_whitespace) => Ok(s.to_string()),
            _ => Err(at(path, &format!("must be {what}"))),
        }
    };
    let count = |min: i64| -> Result<u32, ConfigError> {
        match v.as_integer() {
            Some(n) if n >= min && n <= u32::MAX as i64 => Ok(n as u32),
            _ => Err(at(path, &format!("must be an integer ≥ {min}"))),
        }
    };
    match f {
        "cpus" => r.cpus = Some(count(1)?),
        "gpus" => r.gpus = Some(count(0)?),
        "mem" => {
            let s = match v {
                toml::Value::Integer(n) if *n > 0 => n.to_string(),
                _ => word("a size such as \"4G\" or \"500M\" (an integer is megabytes)")?,
            };
            let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || s.len() - digits.len() > 1
            {
                return Err(at(
                    path,
                    "must be a size such as \"4G\" or \"500M\" (an integer is megabytes)",
                ));
            }
            r.mem = Some(s);
        }
        "time" => {
            let s = match v {
                toml::Value::Integer(n) if *n > 0 => n.to_string(),
                _ => word("a time limit such as \"30\" (minutes), \"2:00:00\" or \"1-00:00:00\"")?,
            };
            if !s
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '-')
            {
                return Err(at(
                    path,
                    "must be a time limit such as \"30\" (minutes), \"2:00:00\" or \"1-00:00:00\"",
                ));
            }
            r.time = Some(s);
        }
        "partition" => r.partition = Some(word("a partition name")?),
        "account" => r.account = Some(word("an account name")?),
        "extra" => {
            let bad = || {
                at(
                    path,
                    "must be a list of sbatch options, e.g. [\"--qos=short\"]",
                )
            };
            let toml::Value::Array(a) = v else {
                return Err(bad());
            };
            for x in a {
                match x.as_str() {
                    Some(s) if s.starts_with('-') => r.extra.push(s.to_string()),
                    _ => return Err(bad()),
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
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
        toml::Value::Array(a) => a.iter().map(toml_value_tag).collect::<Vec<_>>().join("x"),
        // An inline table (e.g. a swept `init`): its values, `kind`'s bare.
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| match k.as_str() {
                "kind" => toml_value_tag(v),
                _ => format!("{k}{}", toml_value_tag(v)),
            })
            .collect::<Vec<_>>()
            .join("-"),
        other => other.to_string(),
    }
}

/// Fields whose natural value is a list: they sweep only when given a list of lists.
const NATURAL_LISTS: &[&str] = &[
    "model.widths",
    "train.checkpoints.at",
    "dataset.teacher_widths",
];

/// Whether the list at `path` sweeps: any list but a natural one given
/// flat (an empty natural list, e.g. `teacher_widths = []`, is a value).
fn is_sweep(path: &str, a: &[toml::Value]) -> bool {
    !NATURAL_LISTS.contains(&path) || (!a.is_empty() && a.iter().all(|x| x.is_array()))
}

/// The swept axes of `table` as [`expand`] sweeps them: (path, values).
fn sweep_axes(table: &toml::Table, prefix: &str, out: &mut Vec<(String, usize)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => sweep_axes(t, &path, out),
            toml::Value::Array(a) if path != "optimizer" && is_sweep(&path, a) => {
                out.push((path, a.len()))
            }
            _ => {}
        }
    }
}

/// The number of points of a sweep over `axes` (saturating).
fn sweep_size(axes: &[(String, usize)]) -> u128 {
    axes.iter()
        .fold(1u128, |n, (_, len)| n.saturating_mul(*len as u128))
}

/// A swept axis and the value this point takes on it.
#[derive(Clone, Debug)]
struct Tag {
    path: String,
    value: toml::Value,
}

impl Tag {
    fn short(&self) -> String {
        let leaf = self.path.rsplit('.').next().unwrap_or(&self.path);
        let v = toml_value_tag(&self.value);
        match leaf {
            "seeds" => format!("s{v}"),
            "lr" => format!("lr{v}"),
            "momentum" => format!("m{v}"),
            "weight_decay" => format!("wd{v}"),
            "widths" => format!("w{v}"),
            "batch_size" => format!("bs{v}"),
            "activation" | "name" | "kind" => v,
            other => format!("{other}{v}"),
        }
    }
}

/// Expand every list-valued field of `table` (a cartesian product), except
/// natural lists given flat. `prefix` is the table's path.
fn expand(table: &toml::Table, prefix: &str) -> Result<Vec<(toml::Table, Vec<Tag>)>, String> {
    let mut out = vec![(toml::Table::new(), Vec::new())];
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let choices: Vec<(toml::Value, Option<Tag>)> = match v {
            toml::Value::Table(t) => expand(t, &path)?
                .into_iter()
                .map(|(t, tags)| (toml::Value::Table(t), tags.into_iter().next_back()))
                .collect::<Vec<_>>()
                .into_iter()
                .collect(),
            toml::Value::Array(a) if !is_sweep(&path, a) => vec![(v.clone(), None)],
            toml::Value::Array(a) if path == "optimizer" => {
                vec![(toml::Value::Array(a.clone()), None)]
            }
            toml::Value::Array(a) => {
                if a.is_empty() {
                    return Err(path);
                }
                a.iter()
                    .map(|x| {
                        (
                            x.clone(),
                            Some(Tag {
                                path: path.clone(),
                                value: x.clone(),
                            }),
                        )
                    })
                    .collect()
            }
            other => vec![(other.clone(), None)],
        };
        // Nested tables may carry several tags; recompute them properly.
        let nested: Option<Vec<Vec<Tag>>> = match v {
            toml::Value::Table(t) => Some(
                expand(t, &path)?
                    .into_iter()
                    .map(|(_, tags)| tags)
                    .collect(),
            ),
            _ => None,
        };
        let mut next = Vec::new();
        for (t, tags) in &out {
            for (i, (c, tag)) in choices.iter().enumerate() {
                let mut t = t.clone();
                t.insert(k.clone(), c.clone());
                let mut tags = tags.clone();
                match &nested {
                    Some(n) => tags.extend(n[i].iter().cloned()),
                    None => tags.extend(tag.clone()),
                }
                next.push((t, tags));
            }
        }
        out = next;
    }
    Ok(out)
}

/// 1-based line and column of the TOML item at `path` (e.g. `optimizer[1].lr`).
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut span = doc.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in path.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let t = match (table, cur) {
            (Some(t), _) => t,
            (None, Some(DeValue::Table(t))) => t,
            _ => break,
        };
        let Some((key, val)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        span = key.span();
        cur = Some(val.get_ref());
        table = None;
        if let (Some(i), DeValue::Array(a)) = (index, val.get_ref()) {
            if let Some(item) = a.get(i) {
                span = item.span();
                cur = Some(item.get_ref());
            }
        }
        if let Some(DeValue::Table(t)) = cur {
            table = Some(t);
        }
    }
    Some(line_col(text, span.start))
}

/// 1-based line and column of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// The largest config file read: a config is a few KB, and this refuses a
/// runaway input (a huge or endless file) before it fills memory.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// The longest `name` (it names out/<name>/).
pub const MAX_NAME: usize = 100;
/// The longest optimizer `label` (it starts the run id).
pub const MAX_LABEL: usize = 100;
/// The longest run id (it names out/<name>/runs/<id>/).
pub const MAX_RUN_ID: usize = 150;
/// The most runs a sweep may expand to.
pub const MAX_RUNS: u128 = 10_000;
/// The widest layer of the model.
pub const MAX_WIDTH: usize = stages::dataset::MAX_DIM;
/// The most layers of the model (`widths` has one more entry).
pub const MAX_LAYERS: usize = 1_000;
/// The most eigenpairs per checkpoint (`hessian.k`).
pub const MAX_K: usize = 10_000;
/// The most Lanczos basis vectors (`hessian.max_iter`).
pub const MAX_LANCZOS_ITER: usize = 1_000_000;
/// The most vectors per block product (`hessian.block`).
pub const MAX_BLOCK: usize = 64;
/// The most fresh initializations of the null model (`null.replicas`).
pub const MAX_REPLICAS: usize = 1_000;

/// How [`Experiment::load_with`] weighs a config against the machine.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Accept a config whose estimated memory or disk exceeds the machine's
    /// (`--force-size`). The hard limits (the `MAX_*` constants) still apply.
    pub force_size: bool,
    /// The memory one stage may use. `load_with` fills None in with this
    /// machine's MemTotal (/proc/meminfo); `parse_with` leaves None unchecked.
    pub mem_bytes: Option<u64>,
    /// The free disk space where the results go; None: no disk check.
    pub disk_free_bytes: Option<u64>,
}

impl LoadOptions {
    /// No check against the machine (the hard limits still apply).
    pub fn unchecked() -> LoadOptions {
        LoadOptions {
            force_size: true,
            ..LoadOptions::default()
        }
    }
}

/// This machine's memory: MemTotal of /proc/meminfo, in bytes.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Read a config: a regular file of at most [`MAX_CONFIG_BYTES`] of UTF-8.
fn read_config(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let fail = |m: String| ConfigError {
        file: path.to_path_buf(),
        msg: format!(": cannot read the config: {m}"),
    };
    let too_big = |n: u64| {
        fail(format!(
            "it is {n} bytes or more, over the limit of {} MiB for a config file",
            MAX_CONFIG_BYTES >> 20
        ))
    };
    // stat before opening: opening a FIFO would block, and /dev/zero never ends.
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(format!(
            "{}, not a regular file; give a TOML file",
            if meta.is_dir() {
                "it is a directory"
            } else {
                "it is a device, FIFO or socket"
            }
        )));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "not UTF-8 text (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The field and message of a serde error on one sweep point. toml ends the
/// message with "in `train.steps`" (without array indices); an unknown or
/// missing field is appended to that path; a message of our own checks that
/// starts with the field (`dataset.noise does not apply …`) names it.
fn serde_error(e: &toml::de::Error, opath: &str) -> (String, String) {
    let msg = e.to_string();
    let (first, rest) = msg.split_once('\n').unwrap_or((&msg, ""));
    let first = first.trim_end();
    let mut field = rest
        .trim()
        .strip_prefix("in `")
        .and_then(|r| r.strip_suffix('`'))
        .unwrap_or("")
        .to_string();
    let join = |f: &str, leaf: &str| {
        if f.is_empty() {
            leaf.to_string()
        } else {
            format!("{f}.{leaf}")
        }
    };
    let quoted = |prefix: &str| {
        first
            .strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
    };
    let mut text = first.to_string();
    if let Some(unknown) = quoted("unknown field `") {
        field = join(&field, &unknown);
    } else if let Some(missing) = quoted("missing field `") {
        let section = if field.starts_with("optimizer") {
            "this [[optimizer]]".to_string()
        } else if field.is_empty() {
            "the top of the file".to_string()
        } else {
            format!("[{field}]")
        };
        text = format!("is missing: add `{missing} = …` to {section}");
        field = join(&field, &missing);
    } else if let Some(word) = first.split_whitespace().next() {
        if !field.is_empty()
            && word.starts_with(&format!("{field}."))
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            field = word.to_string();
        }
    }
    if first.starts_with("invalid type: floating point") && first.contains("expected u") {
        text.push_str("; write a whole number such as 1000 (1e3 is a float in TOML)");
    } else if first.starts_with("invalid value: integer `-") {
        text.push_str("; it must be ≥ 0");
    }
    if field.starts_with("optimizer") {
        field = field.replacen("optimizer", opath, 1);
    }
    (field, text)
}

/// Whether `s` may be part of a file name: letters, digits, '-', '_', '.'.
fn filesystem_safe(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What one sweep point resolves to, and the sizes its estimates need.
struct Point {
    train: TrainParams,
    hessian: HessianParams,
    shape: DatasetShape,
    /// The number of checkpoints the run writes.
    checkpoints: usize,
}

/// The sizes of one run, for the resource estimates.
struct RunSize {
    dataset: DatasetParams,
    shape: DatasetShape,
    checkpoints: usize,
}

type At<'a> = &'a dyn Fn(&str, &str) -> ConfigError;
type AtLoc<'a> = &'a dyn Fn(&str, &str, &str) -> ConfigError;

impl Experiment {
    /// Read and validate `path`, refusing a config whose estimated memory
    /// exceeds this machine's (see [`LoadOptions`] for the other options).
    #[allow(dead_code)] // the CLI passes its options to `load_with`
    pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Read `path` (a regular file of at most [`MAX_CONFIG_BYTES`]), parse
    /// and validate it, and weigh its estimated memory and disk against
    /// `opts` (its `mem_bytes` defaults to this machine's memory).
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Experiment, ConfigError> {
        let text = read_config(path)?;
        let opts = LoadOptions {
            mem_bytes: opts.mem_bytes.or_else(machine_memory),
            ..opts.clone()
        };
        Self::parse_with(path, &text, &opts)
    }

    /// Parse and validate `text` (the content of `path`) with every hard
    /// limit but no check against the machine: what `eigentrace exec` runs
    /// on a node, the submitter having checked.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, ConfigError> {
        Self::parse_with(path, text, &LoadOptions::unchecked())
    }

    /// [`Self::parse`], then the resource check of `opts`: memory only when
    /// `mem_bytes` is given, disk only when `disk_free_bytes` is.
    pub fn parse_with(
        path: &Path,
        text: &str,
        opts: &LoadOptions,
    ) -> Result<Experiment, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                file: path.to_path_buf(),
                msg: format!(
                    ": the config is {} bytes, over the limit of {} MiB for a config file",
                    text.len(),
                    MAX_CONFIG_BYTES >> 20
                ),
            });
        }
        // Data paths in the config are relative to the config's directory.
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // An error at `field`, located at `loc` (a path like `seeds[1]`):
        // file:line:col, the field, the message (with the fix).
        let at_loc = |field: &str, loc: &str, msg: &str| {
            let pos = locate(text, loc)
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            let field = if field.is_empty() {
                String::new()
            } else {
                format!(" field `{field}`:")
            };
            ConfigError {
                file: path.to_path_buf(),
                msg: format!("{pos}:{field} {msg}"),
            }
        };
        let at = |field: &str, msg: &str| at_loc(field, field, msg);
        let mut root: toml::Table = toml::from_str(text).map_err(|e| {
            let pos = e
                .span()
                .map(|s| line_col(text, s.start))
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            ConfigError {
                file: path.to_path_buf(),
                msg: format!("{pos}: {} (TOML syntax)", e.message().trim_end()),
            }
        })?;
        // `[slurm]` says where jobs run, not what they compute: no key sees it.
        let slurm = match root.remove("slurm") {
            None => SlurmConfig::default(),
            Some(v) => parse_slurm(&v, &at)?,
        };
        Self::check_root(&root, &at, &at_loc)?;
        // `seeds` is the sweep over `seed`.
        let seed_field = if root.contains_key("seeds") {
            "seeds"
        } else {
            "seed"
        };
        if let Some(s) = root.remove("seeds") {
            if root.contains_key("seed") {
                return Err(at("seed", "give either `seed` or `seeds`, not both"));
            }
            root.insert("seeds".into(), s);
        }
        let optimizers = match root.remove("optimizer") {
            Some(toml::Value::Array(a)) if !a.is_empty() => a,
            Some(toml::Value::Array(_)) | None => {
                return Err(at("optimizer", "no [[optimizer]] tables; add at least one, e.g. [[optimizer]] name = \"sgd\" lr = 0.1"))
            }
            Some(_) => return Err(at("optimizer", "must be an array of tables: write [[optimizer]]")),
        };
        // Each optimizer's label, and the size of the sweep, before any expansion.
        let mut axes = Vec::new();
        sweep_axes(&root, "", &mut axes);
        let per_optimizer = sweep_size(&axes);
        let mut total: u128 = 0;
        let mut tables = Vec::new();
        for (oi, opt) in optimizers.iter().enumerate() {
            let opath = format!("optimizer[{oi}]");
            let toml::Value::Table(opt) = opt else {
                return Err(at(&opath, "must be a table: write [[optimizer]]"));
            };
            let mut opt = opt.clone();
            let lpath = format!("{opath}.label");
            let label = match opt.remove("label") {
                None => None,
                Some(toml::Value::String(s)) => {
                    let n = s.chars().count();
                    if n == 0 || n > MAX_LABEL {
                        return Err(at(
                            &lpath,
                            &format!("must be 1 to {MAX_LABEL} characters, got {n} (it starts the run id, which names out/<name>/runs/<id>/)"),
                        ));
                    }
                    if s.starts_with('.') || !filesystem_safe(&s) {
                        return Err(at(
                            &lpath,
                            &format!("`{s}` is not filesystem-safe (it starts the run id, which names out/<name>/runs/<id>/); use letters, digits, '-', '_' and '.', not first"),
                        ));
                    }
                    Some(s)
                }
                Some(_) => {
                    return Err(at(
                        &lpath,
                        "must be a string (one label per [[optimizer]]; it cannot be swept)",
                    ))
                }
            };
            let mut oaxes = Vec::new();
            sweep_axes(&opt, "", &mut oaxes);
            total = total.saturating_add(per_optimizer.saturating_mul(sweep_size(&oaxes)));
            axes.extend(oaxes.into_iter().map(|(p, n)| (format!("{opath}.{p}"), n)));
            tables.push((opath, opt, label));
        }
        if total > MAX_RUNS {
            // The longest list, the first of equals.
            let (p, n) = axes
                .iter()
                .rev()
                .max_by_key(|a| a.1)
                .expect("a sweep of more than one run has an axis");
            return Err(at(
                p,
                &format!(
                    "the sweep expands to {total} runs (every list's length multiplied, summed over the optimizers), over the limit of {MAX_RUNS}; give `{p}` fewer than its {n} values"
                ),
            ));
        }
        let points = expand(&root, "")
            .map_err(|p| at(&p, "the sweep list is empty; give at least one value"))?;
        let mut datasets: Vec<(String, String, DatasetParams, Vec<Tag>)> = Vec::new();
        let mut runs: Vec<RunSpec> = Vec::new();
        let mut sizes: Vec<RunSize> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let mut name = String::new();
        for (opath, opt, label) in &tables {
            let settings = expand(opt, "").map_err(|p| {
                at(
                    &format!("{opath}.{p}"),
                    "the sweep list is empty; give at least one value",
                )
            })?;
            for (setting, otags) in settings {
                for (point, tags) in &points {
                    let mut point = point.clone();
                    if let Some(s) = point.remove("seeds") {
                        point.insert("seed".into(), s);
                    }
                    point.entry("seed").or_insert(toml::Value::Integer(0));
                    point.insert("optimizer".into(), toml::Value::Table(setting.clone()));
                    let f: PointFile = point.try_into().map_err(|e: toml::de::Error| {
                        let (field, msg) = serde_error(&e, opath);
                        let field = match field.as_str() {
                            "seed" => seed_field.to_string(),
                            _ => field,
                        };
                        at(&field, &msg)
                    })?;
                    name = f.name.clone();
                    let pt = Self::validate_point(&f, base_dir, &at, opath)?;
                    // Datasets: identical ones are shared.
                    let dtags: Vec<Tag> = tags
                        .iter()
                        .filter(|t| t.path.starts_with("dataset."))
                        .cloned()
                        .collect();
                    let ds_id = match datasets.iter().find(|d| d.2 == f.dataset) {
                        Some(d) => d.0.clone(),
                        None => {
                            let suffix: Vec<String> = dtags.iter().map(Tag::short).collect();
                            let (id, view) = if suffix.is_empty() {
                                ("dataset".to_string(), "dataset".to_string())
                            } else {
                                (
                                    format!("dataset[{}]", suffix.join("-")),
                                    format!("dataset/{}", suffix.join("-")),
                                )
                            };
                            datasets.push((id.clone(), view, f.dataset.clone(), dtags));
                            id
                        }
                    };
                    let base = label
                        .clone()
                        .unwrap_or_else(|| f.optimizer.default_label().to_string());
                    // The id's parts, each with the field it comes from.
                    let mut parts: Vec<(String, String)> = vec![(
                        base.clone(),
                        format!("{opath}.{}", if label.is_some() { "label" } else { "name" }),
                    )];
                    // The optimizer's name is already the id's first part.
                    let mut ot: Vec<Tag> = otags
                        .iter()
                        .filter(|t| label.is_some() || t.path != "name")
                        .cloned()
                        .collect();
                    if !ot.iter().any(|t| t.path == "lr") {
                        ot.insert(
                            0,
                            Tag {
                                path: "lr".into(),
                                value: toml::Value::Float(f.optimizer.lr),
                            },
                        );
                    }
                    ot.sort_by_key(|t| t.path != "lr");
                    parts.extend(
                        ot.iter()
                            .map(|t| (t.short(), format!("{opath}.{}", t.path))),
                    );
                    let mut gt: Vec<&Tag> = tags.iter().filter(|t| t.path != "seeds").collect();
                    gt.sort_by(|a, b| a.path.cmp(&b.path));
                    parts.extend(gt.iter().map(|t| (t.short(), t.path.clone())));
                    parts.push((format!("s{}", f.seed), seed_field.to_string()));
                    let id = parts
                        .iter()
                        .map(|p| p.0.as_str())
                        .collect::<Vec<_>>()
                        .join("-");
                    let unsafe_part = parts
                        .iter()
                        .find(|(t, _)| !filesystem_safe(t))
                        .or(id.starts_with('.').then(|| &parts[0]));
                    if let Some((_, field)) = unsafe_part {
                        return Err(at(
                            field,
                            &format!("run id `{id}` is not filesystem-safe (it names out/<name>/runs/<id>/); use letters, digits, '-', '_' and '.'"),
                        ));
                    }
                    let len = id.chars().count();
                    if len > MAX_RUN_ID {
                        let (_, field) = parts
                            .iter()
                            .max_by_key(|p| p.0.len())
                            .expect("an id has parts");
                        return Err(at(
                            field,
                            &format!("makes the run id {len} characters long, over the limit of {MAX_RUN_ID} (it names out/<name>/runs/<id>/): `{id}`; shorten the value, or give the optimizer a short `label`"),
                        ));
                    }
                    if !ids.insert(id.clone()) {
                        return Err(at(
                            opath,
                            &format!("duplicate run id `{id}`: two optimizer settings are identical; remove one or give it a distinct `label`"),
                        ));
                    }
                    sizes.push(RunSize {
                        dataset: f.dataset.clone(),
                        shape: pt.shape,
                        checkpoints: pt.checkpoints,
                    });
                    runs.push(RunSpec {
                        id,
                        label: base,
                        dataset: ds_id,
                        null: (f.null.replicas > 0).then(|| NullParams {
                            arch: pt.train.arch.clone(),
                            init: pt.train.init,
                            replicas: f.null.replicas,
                            k: pt.hessian.k,
                            analysis_size: pt.hessian.analysis_size,
                            which: pt.hessian.which,
                            tol: pt.hessian.tol(),
                            max_iter: pt.hessian.max_iter,
                            seed: 0,
                            dtype: pt.hessian.dtype,
                            chunk_rows: pt.hessian.chunk_rows,
                            block: pt.hessian.block,
                        }),
                        train: pt.train,
                        hessian: pt.hessian,
                        metrics: f.metrics.clone(),
                    });
                }
            }
        }
        if !opts.force_size {
            check_resources(&runs, &sizes, opts, &at)?;
        }
        Ok(Experiment {
            name,
            datasets: datasets
                .into_iter()
                .map(|(i, v, p, _)| {
                    let env = input_files_env(&p, base_dir);
                    (i, v, p, env)
                })
                .collect(),
            base_dir: base_dir.to_path_buf(),
            runs,
            slurm,
        })
    }

    /// The top level before any expansion: known keys, `name` a string, the
    /// sections tables (present where required), seeds non-negative integers.
    fn check_root(root: &toml::Table, at: At<'_>, at_loc: AtLoc<'_>) -> Result<(), ConfigError> {
        const KEYS: &[&str] = &[
            "name",
            "description",
            "seed",
            "seeds",
            "dtype",
            "dataset",
            "model",
            "train",
            "optimizer",
            "hessian",
            "null",
            "metrics",
        ];
        if let Some(k) = root.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(at(
                k,
                &format!(
                    "unknown field `{k}`, expected one of {}, slurm",
                    KEYS.join(", ")
                ),
            ));
        }
        match root.get("name") {
            None => {
                return Err(at(
                    "name",
                    "is missing: add name = \"my-experiment\" at the top (it names out/<name>/)",
                ))
            }
            Some(toml::Value::String(_)) => {}
            Some(_) => return Err(at(
                "name",
                "must be a string such as \"quick\" (it names out/<name>/, and cannot be swept)",
            )),
        }
        for (s, example) in [
            ("dataset", "kind = \"gaussian_mixture\""),
            ("model", "widths = [8, 32, 4] and activation = \"tanh\""),
            ("train", "steps = 1000"),
            ("hessian", "k = 10"),
            ("null", "replicas = 5"),
            ("metrics", "include_untrusted = true"),
        ] {
            match root.get(s) {
                None if s == "null" || s == "metrics" => {}
                None => {
                    return Err(at(
                        s,
                        &format!("missing section [{s}]: add [{s}] with {example}"),
                    ))
                }
                Some(toml::Value::Table(_)) => {}
                Some(toml::Value::Array(_)) => return Err(at(
                    s,
                    &format!("must be a table: write [{s}], not [[{s}]] (a section is not swept; give one of its fields a list, e.g. lr = [0.1, 0.01])"),
                )),
                Some(_) => return Err(at(s, &format!("must be a table: write [{s}] with {example}"))),
            }
        }
        for key in ["seed", "seeds"] {
            let Some(v) = root.get(key) else { continue };
            let items: Vec<(String, &toml::Value)> = match v {
                toml::Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (format!("{key}[{i}]"), x))
                    .collect(),
                x => vec![(key.to_string(), x)],
            };
            for (loc, x) in items {
                if !matches!(x, toml::Value::Integer(n) if *n >= 0) {
                    return Err(at_loc(
                        key,
                        &loc,
                        &match key {
                            "seeds" => format!("seeds must be non-negative integers, e.g. seeds = [0, 1, 2]; got {x}"),
                            _ => format!("seed must be a non-negative integer, e.g. seed = 0 (or seeds = [0, 1, 2] to sweep); got {x}"),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// Range checks on one sweep point, before anything is sized by it;
    /// errors name the field and give the range.
    fn validate_point(
        f: &PointFile,
        base_dir: &Path,
        at: At<'_>,
        opath: &str,
    ) -> Result<Point, ConfigError> {
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(at("name", "must be non-empty and use only letters, digits, '-' and '_' (it names out/<name>/)"));
        }
        if f.name.len() > MAX_NAME {
            return Err(at(
                "name",
                &format!(
                    "is {} characters, at most {MAX_NAME} (it names out/<name>/)",
                    f.name.len()
                ),
            ));
        }
        let thr = f.metrics.degeneracy_threshold;
        if !(thr > 0.0 && thr < 1.0) {
            return Err(at(
                "metrics.degeneracy_threshold",
                &format!("must be in (0, 1) (a gap over |λ₁|; the default is 1e-3), got {thr}"),
            ));
        }
        let shape = f.dataset.shape(base_dir).map_err(|(fl, m)| at(&fl, &m))?;
        let widths = &f.model.widths;
        if widths.len() < 2
            || widths.len() > MAX_LAYERS + 1
            || widths.iter().any(|w| !(1..=MAX_WIDTH).contains(w))
        {
            return Err(at(
                "model.widths",
                &format!(
                    "needs [input, hidden…, classes]: 2 to {} widths, each in 1..={MAX_WIDTH}",
                    MAX_LAYERS + 1
                ),
            ));
        }
        if widths[0] != shape.dim {
            return Err(at(
                "model.widths",
                &format!(
                    "the first width ({}) must equal dataset.dim ({})",
                    widths[0], shape.dim
                ),
            ));
        }
        if *widths.last().unwrap() != shape.classes {
            return Err(at(
                "model.widths",
                &format!(
                    "the last width ({}) must equal dataset.classes ({})",
                    widths.last().unwrap(),
                    shape.classes
                ),
            ));
        }
        if let Init::Normal { std } = f.model.init {
            if !(std.is_finite() && std > 0.0) {
                return Err(at(
                    "model.init.std",
                    &format!("must be a finite number > 0, got {std}"),
                ));
            }
        }
        let arch = Arch {
            widths: widths.clone(),
            activation: f.model.activation,
        };
        if !(1..=MAX_STEPS).contains(&f.train.log_every) {
            return Err(at(
                "train.log_every",
                &format!("must be in 1..={MAX_STEPS}, got {}", f.train.log_every),
            ));
        }
        let n_train = shape.train;
        if let Some(b) = f.train.batch_size {
            if b == 0 || b > n_train {
                return Err(at(
                    "train.batch_size",
                    &format!(
                        "must be in 1..={n_train} (the train split), or omitted for full batch; got {b}"
                    ),
                ));
            }
        }
        // Minibatches are drawn from a seeded shuffle; an epoch is ⌊n/b⌋ steps.
        let steps_per_epoch = f
            .train
            .batch_size
            .map(|b| (n_train / b) as u64)
            .unwrap_or(1);
        let (steps, budget) = match (f.train.steps, f.train.epochs) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "train.epochs",
                    "give either `steps` or `epochs`, not both",
                ))
            }
            (None, None) => return Err(at("train", "give a budget: `steps = N` or `epochs = N`")),
            (Some(s), None) => (s, "train.steps"),
            (None, Some(e)) => (e.saturating_mul(steps_per_epoch), "train.epochs"),
        };
        if !(1..=MAX_STEPS).contains(&steps) {
            let range = if budget == "train.steps" {
                format!("1..={MAX_STEPS}")
            } else {
                format!(
                    "1..={} ({steps_per_epoch} steps per epoch, at most {MAX_STEPS} steps)",
                    MAX_STEPS / steps_per_epoch
                )
            };
            return Err(at(budget, &format!("must be in {range}")));
        }
        let sch = f.train.schedule;
        if sch.warmup > steps {
            return Err(at(
                "train.schedule.warmup",
                &format!("must be in 0..={steps} (the number of steps)"),
            ));
        }
        if !(0.0..=1.0).contains(&sch.final_fraction)
            || (sch.kind == ScheduleKind::Constant && sch.final_fraction != 0.0)
        {
            return Err(at(
                "train.schedule.final_fraction",
                "must be in [0, 1], and only with kind = \"cosine\"",
            ));
        }
        let checkpoints = f.train.checkpoints.check(steps).map_err(|(fl, m)| {
            let field = if fl.is_empty() {
                "train.checkpoints".to_string()
            } else {
                format!("train.checkpoints.{fl}")
            };
            at(&field, &m)
        })?;
        let p = arch.num_params();
        let k_max = (p - 1).min(MAX_K);
        if !(1..=k_max).contains(&f.hessian.k) {
            return Err(at(
                "hessian.k",
                &format!("must be in 1..={k_max} (below the model's P = {p} parameters, at most {MAX_K})"),
            ));
        }
        if let Some(m) = f.hessian.analysis_size {
            if m == 0 || m > n_train {
                return Err(at(
                    "hessian.analysis_size",
                    &format!("must be in 1..={n_train} (the train split)"),
                ));
            }
        }
        if let Some(t) = f.hessian.tol {
            if !(t > 0.0 && t < 1.0) {
                return Err(at("hessian.tol", &format!("must be in (0, 1), got {t}")));
            }
        }
        if !(f.hessian.k..=MAX_LANCZOS_ITER).contains(&f.hessian.max_iter) {
            return Err(at(
                "hessian.max_iter",
                &format!(
                    "must be in {}..={MAX_LANCZOS_ITER} (at least hessian.k)",
                    f.hessian.k
                ),
            ));
        }
        if let Some(c) = f.hessian.chunk_rows {
            if !(1..=stages::dataset::MAX_SAMPLES).contains(&c) {
                return Err(at(
                    "hessian.chunk_rows",
                    &format!("must be in 1..={} (rows per Hessian-vector-product chunk), or omitted for all rows at once", stages::dataset::MAX_SAMPLES),
                ));
            }
        }
        if !(1..=MAX_BLOCK).contains(&f.hessian.block) {
            return Err(at(
                "hessian.block",
                &format!(
                    "must be in 1..={MAX_BLOCK} (vectors per block product; 1 = classic Lanczos)"
                ),
            ));
        }
        if f.null.replicas > MAX_REPLICAS {
            return Err(at(
                "null.replicas",
                &format!("must be in 0..={MAX_REPLICAS} (0 turns the null model off)"),
            ));
        }
        f.optimizer
            .validate()
            .map_err(|(fl, m)| at(&format!("{opath}.{fl}"), &m))?;
        let muon = f.optimizer.resolved();
        if muon.matrices == Some(stages::optim::MuonMatrices::Hidden) && widths.len() < 4 {
            return Err(at(
                &format!("{opath}.name"),
                &format!(
                    "muon orthogonalizes the hidden-to-hidden weight matrices and gives the input and output layers AdamW (as torch.optim.Muon advises), but widths = {widths:?} has none, so it would be AdamW; add a hidden layer, or set matrices = \"all\" (the variant that orthogonalizes every weight matrix, labelled muon-all)"
                ),
            ));
        }
        let train = TrainParams {
            arch,
            init: f.model.init,
            optimizer: f.optimizer.resolved(),
            steps,
            schedule: sch,
            batch_size: f.train.batch_size,
            log_every: f.train.log_every,
            checkpoints: f.train.checkpoints.clone(),
            seed: f.seed,
            dtype: f.dtype,
        };
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
            chunk_rows: f.hessian.chunk_rows,
            warm_start: f.hessian.warm_start,
            preconditioned: f.hessian.preconditioned,
            block: f.hessian.block,
        };
        Ok(Point {
            train,
            hessian,
            shape,
            checkpoints,
        })
    }

    /// The stage DAG. `torch_env` is what changes the numbers of torch stages.
    pub fn graph(&self, torch_env: &Value) -> Graph {
        let to = |v: &dyn erased::Ser| v.to_json();
        let mut inst: Vec<StageInstance> = self
            .datasets
            .iter()
            .map(|(id, view, p, env)| StageInstance {
                id: id.clone(),
                kind: "dataset".into(),
                code_version: code_version::DATASET,
                params: to(p),
                env: env.clone(),
                inputs: vec![],
                view: view.clone(),
            })
            .collect();
        // Null models: one per distinct (dataset, architecture, Hessian settings).
        let mut nulls: Vec<(String, Value, String)> = Vec::new();
        let mut null_of: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        for r in &self.runs {
            let Some(np) = &r.null else { continue };
            let params = to(np);
            if let Some((_, _, id)) = nulls
                .iter()
                .find(|(d, p, _)| *d == r.dataset && *p == params)
            {
                null_of.insert(r.id.clone(), id.clone());
                continue;
            }
            let i = nulls.len();
            let (id, view) = if i == 0 {
                ("null".to_string(), String::new())
            } else {
                (
                    format!("null[{}]", i + 1),
                    format!("null-variants/{}", i + 1),
                )
            };
            null_of.insert(r.id.clone(), id.clone());
            inst.push(StageInstance {
                id: id.clone(),
                kind: "null".into(),
                code_version: code_version::NULL,
                params: params.clone(),
                env: torch_env.clone(),
                inputs: vec![("dataset".into(), r.dataset.clone())],
                view,
            });
            nulls.push((r.dataset.clone(), params, id));
        }
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
                inputs: vec![("dataset".into(), r.dataset.clone())],
                view: view.clone(),
            });
            inst.push(StageInstance {
                id: hess_id.clone(),
                kind: "hessian".into(),
                code_version: code_version::HESSIAN,
                params: to(&r.hessian),
                env: torch_env.clone(),
                inputs: vec![
                    ("dataset".into(), r.dataset.clone()),
                    ("train".into(), train_id.clone()),
                ],
                view: view.clone(),
            });
            let mut met_inputs = vec![
                ("hessian".into(), hess_id.clone()),
                ("train".into(), train_id.clone()),
            ];
            if let Some(null_id) = null_of.get(&r.id) {
                met_inputs.push(("null".into(), null_id.clone()));
            }
            inst.push(StageInstance {
                id: met_id.clone(),
                kind: "metrics".into(),
                code_version: code_version::METRICS,
                params: to(&r.metrics),
                // Its Gram product is a libtorch GEMM (on the CPU, summed in
                // a fixed order): the libtorch version can change its bits.
                env: json!({ "libtorch": stages::LIBTORCH_VERSION }),
                inputs: met_inputs,
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
        // The findings: the claims tested on every run's metrics (no
        // figure code in its key, so a figure change does not redo them).
        let mut findings_inputs: Vec<(String, String)> = report_inputs
            .iter()
            .filter(|(role, _)| !role.starts_with("hessian:"))
            .cloned()
            .collect();
        // Each run's dataset: the input columns' largest |z| (item 5).
        findings_inputs.extend(
            self.runs
                .iter()
                .map(|r| (format!("dataset:{}", r.id), r.dataset.clone())),
        );
        inst.push(StageInstance {
            id: "findings".into(),
            kind: "findings".into(),
            code_version: reports::findings::FINDINGS_VERSION,
            params: json!({ "experiment": self.name, "runs": report_runs }),
            env: json!({}),
            inputs: findings_inputs,
            view: "findings".into(),
        });
        report_inputs.push(("findings".into(), "findings".into()));
        // Each run's dataset: fig10_input_mass's columns' largest |z|.
        report_inputs.extend(
            self.runs
                .iter()
                .map(|r| (format!("dataset:{}", r.id), r.dataset.clone())),
        );
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

/// One part of a stage's memory, or of the results' disk: what it is, the
/// field that sizes it with how to shrink it, and its estimated bytes.
#[derive(Clone, Debug)]
struct Part {
    what: String,
    field: String,
    fix: &'static str,
    bytes: f64,
}

fn part(what: String, field: &str, fix: &'static str, bytes: f64) -> Part {
    Part {
        what,
        field: field.to_string(),
        fix,
        bytes,
    }
}

/// Bytes as "12.3 GB" (10⁹ bytes).
fn gb(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// The field that sets a dataset's rows.
fn rows_field(ds: &DatasetParams) -> &'static str {
    match ds.kind {
        DatasetKind::Digits { .. } | DatasetKind::Idx { .. } => "dataset.subset",
        _ => "dataset.samples",
    }
}

/// The sizes of one run that the estimates are made of.
struct Dims {
    /// Rows, features, train rows, test rows.
    n: f64,
    d: f64,
    n_train: f64,
    /// Bytes per number of the run's dtype.
    b: f64,
    /// Parameters, and neurons of the layers after the input (hidden and output).
    p: f64,
    neurons: f64,
    hidden: f64,
    /// Checkpoints, eigenpairs per checkpoint and operator (k, or 2k with
    /// both_ends), operators (2 with the preconditioned one).
    ckpts: f64,
    k: f64,
    k_all: f64,
    ops: f64,
    /// Bytes of one checkpoint file.
    ckpt_bytes: f64,
    /// Rows of the analysis set, and of one HVP pass over it.
    analysis: f64,
    hvp_rows: f64,
}

fn dims(r: &RunSpec, s: &RunSize) -> Dims {
    let t = &r.train;
    let h = &r.hessian;
    let w = &t.arch.widths;
    let b = match t.dtype {
        Dtype::F64 => 8.0,
        Dtype::F32 => 4.0,
    };
    let p = t.arch.num_params() as f64;
    let o = &t.optimizer;
    let states = match o.name {
        OptName::Sgd => f64::from(o.momentum.unwrap_or(0.0) != 0.0),
        OptName::Adam | OptName::Adamw => 2.0 + f64::from(o.amsgrad == Some(true)),
        OptName::Rmsprop => {
            1.0 + f64::from(o.momentum.unwrap_or(0.0) > 0.0) + f64::from(o.centered == Some(true))
        }
        OptName::Adagrad | OptName::Lion => 1.0,
        OptName::Muon => 3.0,
    };
    let preconditioned = matches!(
        o.name,
        OptName::Adam | OptName::Adamw | OptName::Rmsprop | OptName::Adagrad
    );
    let k = h.k as f64;
    let analysis = h.analysis_size.unwrap_or(s.shape.train) as f64;
    Dims {
        n: s.shape.samples as f64,
        d: s.shape.dim as f64,
        n_train: s.shape.train as f64,
        b,
        p,
        neurons: w[1..].iter().sum::<usize>() as f64,
        hidden: w[1..w.len() - 1].iter().sum::<usize>() as f64,
        ckpts: s.checkpoints as f64,
        k,
        k_all: if h.which == Which::BothEnds {
            2.0 * k
        } else {
            k
        },
        ops: if h.preconditioned && preconditioned {
            2.0
        } else {
            1.0
        },
        // theta (f32), theta_f64 in f64 runs, grad, update and the state.
        ckpt_bytes: p * (4.0 + if b == 8.0 { 8.0 } else { 0.0 } + b * (2.0 + states)),
        analysis,
        hvp_rows: h
            .chunk_rows
            .map(|c| (c as f64).min(analysis))
            .unwrap_or(analysis),
    }
}

/// The estimated peak memory of each stage of run `r`: (stage, parts).
/// Rough on purpose (factors for the copies each stage makes), so that a
/// config that cannot fit is refused before it runs, not tuned to the byte.
fn stage_memory(r: &RunSpec, s: &RunSize) -> Vec<(&'static str, Vec<Part>)> {
    let x = dims(r, s);
    let ds = &s.dataset;
    let rows = rows_field(ds);
    let h = &r.hessian;
    let data = |extra: f64| {
        part(
            format!("the dataset ({} rows × {} features)", x.n, x.d),
            rows,
            "take fewer rows",
            // data.arrow read whole, its f32 rows, and the rows as tensors.
            x.n * x.d * (4.0 + 4.0 + x.b) + x.n * 24.0 + extra,
        )
    };
    let params = |copies: f64| {
        part(
            format!("the parameter vectors (P = {} parameters)", x.p),
            "model.widths",
            "use narrower or fewer layers",
            x.p * x.b * copies + 2.0 * x.ckpt_bytes,
        )
    };
    // Rows × neurons, forward and backward (preactivations, activations and
    // their gradients).
    let activations = |what: &str, rows: f64, factor: f64, field: &str, fix| {
        part(
            format!(
                "{what} ({rows} rows × {} neurons, forward and backward)",
                x.neurons
            ),
            field,
            fix,
            rows * x.neurons * x.b * factor,
        )
    };
    let (act_field, act_fix) = if x.n_train >= x.neurons {
        (rows, "take fewer rows")
    } else {
        ("model.widths", "use narrower or fewer layers")
    };
    let (hvp_field, hvp_fix) = match h.chunk_rows {
        Some(_) => ("hessian.chunk_rows", "use fewer rows per chunk"),
        None => (
            "hessian.analysis_size",
            "use a smaller analysis set, or set hessian.chunk_rows (bounded-memory products)",
        ),
    };
    let basis = (h.max_iter + h.block) as f64;
    let basis = basis.min(x.p);
    let lanczos = part(
        format!(
            "the Lanczos basis ({basis} vectors of P = {} parameters in f64)",
            x.p
        ),
        "hessian.max_iter",
        "lower it (a smaller basis; at least hessian.k)",
        // The basis, the tridiagonal (block) matrix and its eigenvectors,
        // the Ritz vectors and the warm start.
        basis * x.p * 8.0 + basis * basis * 8.0 * 4.0 + (2.0 + x.ops) * x.k_all * x.p * 8.0,
    );
    let hvp = activations(
        "the Hessian-vector products",
        x.hvp_rows,
        12.0 + 4.0 * h.block as f64,
        hvp_field,
        hvp_fix,
    );
    let vectors = |what: String, field: &str, count: f64, bytes: f64| {
        part(
            what,
            field,
            if field == "null.replicas" {
                "use fewer replicas"
            } else {
                "write fewer checkpoints, or lower hessian.k"
            },
            count * x.k_all * x.ops * x.p * bytes,
        )
    };
    let pairs = x.ckpts * (x.ckpts - 1.0) / 2.0;
    let mut dataset = vec![data(0.0)];
    match &ds.kind {
        DatasetKind::GaussianMixture => dataset.push(part(
            "the class means".into(),
            "dataset.classes",
            "use fewer classes",
            x.d * s.shape.classes as f64 * 8.0,
        )),
        DatasetKind::Teacher { teacher_widths } => {
            let mut sizes = vec![s.shape.dim];
            sizes.extend(teacher_widths);
            sizes.push(s.shape.classes);
            let weights: f64 = sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum();
            dataset.push(part(
                "the teacher's weights".into(),
                "dataset.teacher_widths",
                "use a narrower teacher",
                weights * 8.0 * 2.0,
            ));
        }
        _ => {}
    }
    let mut out = vec![
        ("dataset", dataset),
        (
            "train",
            vec![
                data(0.0),
                params(16.0),
                activations(
                    "the training activations",
                    x.n_train,
                    7.0 + 5.0 * r.train.batch_size.unwrap_or(0) as f64 / x.n_train,
                    act_field,
                    act_fix,
                ),
                part(
                    "the training log".into(),
                    "train.log_every",
                    "log less often (a larger log_every)",
                    (r.train.steps / r.train.log_every + 2) as f64 * 128.0,
                ),
            ],
        ),
        (
            "hessian",
            vec![
                data(x.analysis * x.d * x.b),
                params(8.0),
                hvp.clone(),
                lanczos.clone(),
                vectors(
                    format!(
                        "the eigenvectors of every checkpoint ({} checkpoints × {} vectors × P = {})",
                        x.ckpts,
                        x.k_all * x.ops,
                        x.p
                    ),
                    "train.checkpoints",
                    x.ckpts,
                    8.0,
                ),
            ],
        ),
        (
            "metrics",
            vec![
                vectors(
                    format!(
                        "the eigenvectors of every checkpoint ({} checkpoints × {} vectors × P = {})",
                        x.ckpts,
                        x.k_all * x.ops,
                        x.p
                    ),
                    "train.checkpoints",
                    x.ckpts,
                    12.0,
                ),
                part(
                    format!(
                        "the Gram matrix of every checkpoint's top-k vectors ({} columns)",
                        x.ckpts * x.k
                    ),
                    "train.checkpoints",
                    "write fewer checkpoints, or lower hessian.k",
                    (x.ckpts * x.k).powi(2) * 8.0,
                ),
                part(
                    format!("the overlap and displacement rows of {pairs} pairs of checkpoints"),
                    "train.checkpoints",
                    "write fewer checkpoints",
                    pairs * x.ops * (64.0 + 88.0 * x.k),
                ),
            ],
        ),
    ];
    if let Some(n) = &r.null {
        let reps = n.replicas as f64;
        out.push((
            "null",
            vec![
                data(x.analysis * x.d * x.b),
                params(8.0),
                hvp,
                lanczos,
                part(
                    format!("the null model's eigenvectors ({reps} replicas)"),
                    "null.replicas",
                    "use fewer replicas",
                    reps * x.k_all * x.p * 8.0 + (reps * x.k).powi(2) * 8.0,
                ),
            ],
        ));
    }
    out
}

/// The estimated disk of run `r`'s own results (checkpoints, eigenvectors,
/// metrics; its dataset and null model are counted once per experiment).
fn run_disk(r: &RunSpec, s: &RunSize) -> Vec<Part> {
    let x = dims(r, s);
    let pairs = x.ckpts * (x.ckpts - 1.0) / 2.0;
    vec![
        part(
            "the checkpoints".into(),
            "train.checkpoints",
            "write fewer checkpoints",
            x.ckpts * x.ckpt_bytes,
        ),
        part(
            "the eigenvectors".into(),
            "train.checkpoints",
            "write fewer checkpoints, or lower hessian.k",
            x.ckpts * x.k_all * x.ops * x.p * 4.0,
        ),
        part(
            "the metrics".into(),
            "train.checkpoints",
            "write fewer checkpoints",
            pairs * x.ops * (64.0 + 88.0 * x.k) + x.ckpts * x.k_all * x.ops * x.hidden * 40.0,
        ),
    ]
}

/// Refuse a config whose estimated peak stage memory exceeds
/// `opts.mem_bytes`, or whose results exceed `opts.disk_free_bytes`.
fn check_resources(
    runs: &[RunSpec],
    sizes: &[RunSize],
    opts: &LoadOptions,
    at: At<'_>,
) -> Result<(), ConfigError> {
    const FORCE: &str = "or pass --force-size to run it anyway";
    if let Some(mem) = opts.mem_bytes {
        for (r, s) in runs.iter().zip(sizes) {
            for (stage, parts) in stage_memory(r, s) {
                let total: f64 = parts.iter().map(|p| p.bytes).sum();
                if total <= mem as f64 {
                    continue;
                }
                let big = parts
                    .iter()
                    .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
                    .expect("a stage has parts");
                return Err(at(
                    &big.field,
                    &format!(
                        "run `{}` would need about {} of memory in its {stage} stage, more than the {} of this machine; the largest part is {}, {}. To fit, change `{}`: {}; {FORCE}",
                        r.id,
                        gb(total),
                        gb(mem as f64),
                        big.what,
                        gb(big.bytes),
                        big.field,
                        big.fix
                    ),
                ));
            }
        }
    }
    if let Some(free) = opts.disk_free_bytes {
        let mut parts: Vec<Part> = Vec::new();
        let mut add = |p: Part| match parts.iter_mut().find(|q| q.what == p.what) {
            Some(q) => q.bytes += p.bytes,
            None => parts.push(p),
        };
        let mut seen_ds: Vec<&DatasetParams> = Vec::new();
        let mut seen_null: Vec<(&str, &NullParams)> = Vec::new();
        for (r, s) in runs.iter().zip(sizes) {
            run_disk(r, s).into_iter().for_each(&mut add);
            if !seen_ds.contains(&&s.dataset) {
                seen_ds.push(&s.dataset);
                let (n, d) = (s.shape.samples as f64, s.shape.dim as f64);
                add(part(
                    "the datasets".into(),
                    rows_field(&s.dataset),
                    "take fewer rows",
                    n * (4.0 * d + 24.0),
                ));
            }
            if let Some(np) = &r.null {
                if !seen_null.contains(&(r.dataset.as_str(), np)) {
                    seen_null.push((r.dataset.as_str(), np));
                    let x = dims(r, s);
                    add(part(
                        "the null models".into(),
                        "null.replicas",
                        "use fewer replicas",
                        np.replicas as f64 * x.k_all * x.p * 4.0,
                    ));
                }
            }
        }
        let total: f64 = parts.iter().map(|p| p.bytes).sum();
        if total > free as f64 {
            let big = parts
                .iter()
                .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
                .expect("a run has parts");
            return Err(at(
                &big.field,
                &format!(
                    "the results would need about {} of disk, more than the {} free; the largest part is {}, {}. To fit, change `{}`: {}; {FORCE}",
                    gb(total),
                    gb(free as f64),
                    big.what,
                    gb(big.bytes),
                    big.field,
                    big.fix
                ),
            ));
        }
    }
    Ok(())
}

/// The content of a dataset's user files enters its key (not their paths):
/// `{"input_files": {"train-images-idx3-ubyte": "<blake3>", …}}`, or `{}`.
fn input_files_env(p: &DatasetParams, base_dir: &Path) -> Value {
    let Ok(files) = p.input_files(base_dir) else {
        return json!({});
    };
    if files.is_empty() {
        return json!({});
    }
    let mut m = serde_json::Map::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = pipeline::store::hash_file(&f)
            .map(|(h, _)| h.to_hex())
            .unwrap_or_default();
        m.insert(name, Value::String(hash));
    }
    json!({ "input_files": m })
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

    /// A small valid experiment; the cases below edit it.
    const BASE: &str = r#"name = "t"
seeds = [0]
dtype = "f64"

[dataset]
kind = "gaussian_mixture"
classes = 3
dim = 4
samples = 120
separation = 2.0
test_fraction = 0.25
seed = 1

[model]
widths = [4, 8, 3]
activation = "tanh"

[train]
steps = 40
log_every = 5
checkpoints = { every = 20, log_spaced = 4 }

[[optimizer]]
name = "sgd"
lr = 0.1

[[optimizer]]
name = "adam"
lr = 0.01

[hessian]
k = 3
"#;

    fn cfg_path() -> PathBuf {
        PathBuf::from("/nonexistent-dir/exp.toml")
    }

    /// BASE with `from` replaced by `to` (`from` must occur).
    fn edit(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "BASE has no {from:?}");
        BASE.replacen(from, to, 1)
    }

    /// Assert that `text` is refused naming `field`, at the line and column of
    /// `marker`'s first occurrence in `text` (1:1 for ""), with `fragment`.
    fn refused(text: &str, opts: &LoadOptions, field: &str, marker: &str, fragment: &str) {
        let e = match Experiment::parse_with(&cfg_path(), text, opts) {
            Ok(_) => panic!("accepted, expected `{field}` refused:\n{text}"),
            Err(e) => e.to_string(),
        };
        let (l, c) = if marker.is_empty() {
            (1, 1)
        } else {
            let i = text
                .find(marker)
                .unwrap_or_else(|| panic!("marker {marker:?} not in the text"));
            line_col(text, i)
        };
        let want = format!("exp.toml:{l}:{c}: field `{field}`: ");
        assert!(e.contains(&want), "want {want:?} in\n  {e}");
        assert!(e.contains(fragment), "want {fragment:?} in\n  {e}");
    }

    /// (from, to, field, marker, fragment): BASE with one edit, refused.
    const BAD: &[(&str, &str, &str, &str, &str)] = &[
        // The top level and its sections.
        (
            "[hessian]\nk = 3\n",
            "",
            "hessian",
            "",
            "missing section [hessian]: add [hessian]",
        ),
        (
            "[model]\nwidths = [4, 8, 3]\nactivation = \"tanh\"\n",
            "",
            "model",
            "",
            "missing section [model]",
        ),
        (
            "[train]\n",
            "[trainx]\n",
            "trainx",
            "trainx",
            "unknown field `trainx`",
        ),
        (
            "[dataset]",
            "[[dataset]]",
            "dataset",
            "dataset]]",
            "must be a table: write [dataset]",
        ),
        (
            "[hessian]",
            "[[hessian]]",
            "hessian",
            "hessian]]",
            "must be a table: write [hessian]",
        ),
        ("name = \"t\"\n", "", "name", "", "is missing: add name ="),
        (
            "name = \"t\"",
            "name = 5",
            "name",
            "name = 5",
            "must be a string",
        ),
        (
            "name = \"t\"",
            "name = [\"a\", \"b\"]",
            "name",
            "name = [",
            "must be a string",
        ),
        (
            "name = \"t\"",
            "name = \"../t\"",
            "name",
            "name = \"../t\"",
            "letters, digits",
        ),
        (
            "name = \"t\"",
            "name = \"\"",
            "name",
            "name = \"\"",
            "non-empty",
        ),
        (
            "seeds = [0]",
            "seeds = [1.5]",
            "seeds",
            "1.5]",
            "seeds must be non-negative integers",
        ),
        (
            "seeds = [0]",
            "seeds = [0, -1]",
            "seeds",
            "-1]",
            "seeds must be non-negative integers",
        ),
        (
            "seeds = [0]",
            "seeds = [0, \"1\"]",
            "seeds",
            "\"1\"]",
            "seeds must be non-negative integers",
        ),
        (
            "seeds = [0]",
            "seed = -3",
            "seed",
            "seed = -3",
            "seed must be a non-negative integer",
        ),
        (
            "seeds = [0]",
            "seeds = []",
            "seeds",
            "seeds = []",
            "the sweep list is empty",
        ),
        (
            "seeds = [0]",
            "seeds = [0]\nseed = 1",
            "seed",
            "seed = 1",
            "either `seed` or `seeds`",
        ),
        (
            "dtype = \"f64\"",
            "dtype = \"f16\"",
            "dtype",
            "dtype",
            "unknown variant `f16`",
        ),
        (
            "dtype = \"f64\"",
            "dtype = \"f64\"\nfoo = 1",
            "foo",
            "foo = 1",
            "unknown field `foo`",
        ),
        // [dataset]
        (
            "classes = 3",
            "classes = 1",
            "dataset.classes",
            "classes = 1",
            "2..=100000",
        ),
        (
            "classes = 3",
            "classes = 200000",
            "dataset.classes",
            "classes = 200000",
            "2..=100000",
        ),
        (
            "samples = 120",
            "samples = 1e10",
            "dataset.samples",
            "samples = 1e10",
            "write a whole number",
        ),
        (
            "samples = 120",
            "samples = 10000000000",
            "dataset.samples",
            "samples = 1",
            "6..=100000000",
        ),
        (
            "samples = 120",
            "samples = 5",
            "dataset.samples",
            "samples = 5",
            "6..=100000000",
        ),
        (
            "samples = 120",
            "samples = -5",
            "dataset.samples",
            "samples = -5",
            "≥ 0",
        ),
        (
            "dim = 4",
            "dim = 0",
            "dataset.dim",
            "dim = 0",
            "1..=1000000",
        ),
        (
            "dim = 4",
            "dim = 2000000",
            "dataset.dim",
            "dim = 2000000",
            "1..=1000000",
        ),
        (
            "separation = 2.0",
            "separation = -1.0",
            "dataset.separation",
            "separation = -1.0",
            "≥ 0",
        ),
        (
            "separation = 2.0",
            "separation = nan",
            "dataset.separation",
            "separation = nan",
            "≥ 0",
        ),
        (
            "test_fraction = 0.25",
            "test_fraction = 1.5",
            "dataset.test_fraction",
            "test_fraction = 1.5",
            "[0, 1)",
        ),
        (
            "test_fraction = 0.25",
            "test_fraction = 0.999",
            "dataset.test_fraction",
            "test_fraction = 0.999",
            "no train rows",
        ),
        (
            "kind = \"gaussian_mixture\"",
            "kind = \"spirals\"",
            "dataset.separation",
            "separation = 2.0",
            "does not apply to kind = \"spirals\"",
        ),
        (
            "seed = 1\n",
            "seed = 1\nnoise = 0.1\n",
            "dataset.noise",
            "noise = 0.1",
            "does not apply to kind = \"gaussian_mixture\"",
        ),
        (
            "separation = 2.0",
            "teacher_widths = [0]",
            "dataset.teacher_widths",
            "teacher_widths = [0]",
            "does not apply",
        ),
        (
            "kind = \"gaussian_mixture\"",
            "kind = \"mnist\"",
            "dataset.kind",
            "kind = \"mnist\"",
            "unknown variant `mnist`",
        ),
        (
            "seed = 1\n",
            "seed = 1\nbogus = 1\n",
            "dataset.bogus",
            "bogus = 1",
            "unknown field `bogus`",
        ),
        (
            "seed = 1\n",
            "seed = -1\n",
            "dataset.seed",
            "seed = -1",
            "≥ 0",
        ),
        // [model]
        (
            "widths = [4, 8, 3]",
            "widths = [4, 0, 3]",
            "model.widths",
            "widths = [4, 0, 3]",
            "1..=1000000",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = [4, 100000000, 3]",
            "model.widths",
            "widths = [4, 1",
            "1..=1000000",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = [4]",
            "model.widths",
            "widths = [4]",
            "2 to 1001 widths",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = []",
            "model.widths",
            "widths = []",
            "2 to 1001 widths",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = [5, 8, 3]",
            "model.widths",
            "widths = [5",
            "must equal dataset.dim (4)",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = [4, 8, 2]",
            "model.widths",
            "widths = [4, 8, 2]",
            "must equal dataset.classes (3)",
        ),
        (
            "widths = [4, 8, 3]",
            "widths = [4, -8, 3]",
            "model.widths",
            "widths = [4, -8",
            "≥ 0",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"sigmoid\"",
            "model.activation",
            "activation = \"sigmoid\"",
            "unknown variant `sigmoid`",
        ),
        (
            "activation = \"tanh\"\n",
            "",
            "model.activation",
            "model]",
            "is missing: add `activation = …` to [model]",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = { kind = \"normal\", std = -1.0 }",
            "model.init.std",
            "std = -1.0",
            "finite number > 0",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = \"xavier\"",
            "model.init",
            "init = \"xavier\"",
            "unknown init `xavier`",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = { kind = \"normal\" }",
            "model.init",
            "init = {",
            "takes one number, `std`",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = { kind = \"normal\", std = 0.1, mean = 1.0 }",
            "model.init",
            "init = {",
            "takes one number, `std`",
        ),
        (
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = 3",
            "model.init",
            "init = 3",
            "must be a string or a table",
        ),
        // [train]
        (
            "steps = 40",
            "steps = 0",
            "train.steps",
            "steps = 0",
            "1..=1000000000",
        ),
        (
            "steps = 40",
            "steps = 1000000000000",
            "train.steps",
            "steps = 1",
            "1..=1000000000",
        ),
        (
            "steps = 40",
            "steps = 1e12",
            "train.steps",
            "steps = 1e12",
            "write a whole number",
        ),
        (
            "steps = 40",
            "steps = -1",
            "train.steps",
            "steps = -1",
            "≥ 0",
        ),
        ("steps = 40\n", "", "train", "train]", "give a budget"),
        (
            "steps = 40",
            "epochs = 1000000000000",
            "train.epochs",
            "epochs = 1",
            "1..=1000000000 (1 steps per epoch",
        ),
        (
            "steps = 40",
            "epochs = 0",
            "train.epochs",
            "epochs = 0",
            "1..=1000000000",
        ),
        (
            "steps = 40",
            "steps = 40\nepochs = 2",
            "train.epochs",
            "epochs = 2",
            "either `steps` or `epochs`",
        ),
        (
            "steps = 40",
            "stepz = 40",
            "train.stepz",
            "stepz = 40",
            "unknown field `stepz`",
        ),
        (
            "log_every = 5",
            "log_every = 0",
            "train.log_every",
            "log_every = 0",
            "1..=1000000000",
        ),
        (
            "log_every = 5",
            "log_every = 5\nbatch_size = 0",
            "train.batch_size",
            "batch_size = 0",
            "1..=90 (the train split)",
        ),
        (
            "log_every = 5",
            "log_every = 5\nbatch_size = 1000",
            "train.batch_size",
            "batch_size = 1000",
            "1..=90 (the train split)",
        ),
        (
            "every = 20, log_spaced = 4",
            "every = 0",
            "train.checkpoints.every",
            "every = 0",
            "1..=1000000000",
        ),
        (
            "steps = 40",
            "steps = 1000000000",
            "train.checkpoints.every",
            "every = 20",
            "over the limit of 100000",
        ),
        (
            "log_spaced = 4",
            "log_spaced = 1000000000000",
            "train.checkpoints.log_spaced",
            "log_spaced = 1",
            "2..=100000",
        ),
        (
            "log_spaced = 4",
            "log_spaced = 1",
            "train.checkpoints.log_spaced",
            "log_spaced = 1",
            "2..=100000",
        ),
        (
            "log_spaced = 4",
            "at = [10, 50]",
            "train.checkpoints.at",
            "at = [10, 50]",
            "step 50 is beyond the last step (40); give steps in 0..=40",
        ),
        (
            "log_spaced = 4",
            "at = [-1]",
            "train.checkpoints.at",
            "at = [-1]",
            "≥ 0",
        ),
        (
            "log_spaced = 4",
            "evry = 5",
            "train.checkpoints.evry",
            "evry = 5",
            "unknown field `evry`",
        ),
        (
            "log_every = 5",
            "log_every = 5\nschedule = { kind = \"cosine\", warmup = 50 }",
            "train.schedule.warmup",
            "warmup = 50",
            "0..=40",
        ),
        (
            "log_every = 5",
            "log_every = 5\nschedule = { final_fraction = 0.5 }",
            "train.schedule.final_fraction",
            "final_fraction = 0.5",
            "[0, 1], and only with kind = \"cosine\"",
        ),
        (
            "log_every = 5",
            "log_every = 5\nschedule = { kind = \"cosine\", final_fraction = 2.0 }",
            "train.schedule.final_fraction",
            "final_fraction = 2.0",
            "[0, 1]",
        ),
        (
            "log_every = 5",
            "log_every = 5\nschedule = { kind = \"linear\" }",
            "train.schedule.kind",
            "kind = \"linear\"",
            "unknown variant `linear`",
        ),
        // [[optimizer]]
        (
            "lr = 0.1",
            "lr = 0.1\nbeta1 = 0.9",
            "optimizer[0].beta1",
            "beta1 = 0.9",
            "does not apply to sgd (it uses lr, momentum, dampening, nesterov, weight_decay)",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nmomentum = 0.9",
            "optimizer[1].momentum",
            "momentum = 0.9",
            "does not apply to adam (it uses lr, beta1, beta2, eps, amsgrad, weight_decay)",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nns_steps = 5",
            "optimizer[1].ns_steps",
            "ns_steps = 5",
            "does not apply to adam",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nmomentum = [0.0, 0.9]",
            "optimizer[1].momentum",
            "momentum = [",
            "does not apply to adam",
        ),
        (
            "lr = 0.1",
            "lr = 0.1\nmomentum = 2.0",
            "optimizer[0].momentum",
            "momentum = 2.0",
            "must be in [0, 1), got 2",
        ),
        (
            "lr = 0.1",
            "lr = 0.1\nmomentum = [0.9, 1.0]",
            "optimizer[0].momentum",
            "momentum = [",
            "must be in [0, 1), got 1",
        ),
        (
            "lr = 0.1",
            "lr = 0.1\ndampening = 1.0",
            "optimizer[0].dampening",
            "dampening = 1.0",
            "[0, 1)",
        ),
        (
            "lr = 0.1",
            "lr = 0.1\nnesterov = true",
            "optimizer[0].nesterov",
            "nesterov = true",
            "needs momentum > 0",
        ),
        (
            "lr = 0.1",
            "lr = 0.1\nweight_decay = -1.0",
            "optimizer[0].weight_decay",
            "weight_decay = -1.0",
            "finite number ≥ 0",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nbeta2 = 1.0",
            "optimizer[1].beta2",
            "beta2 = 1.0",
            "[0, 1)",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nbeta1 = -0.1",
            "optimizer[1].beta1",
            "beta1 = -0.1",
            "[0, 1)",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\neps = 0.0",
            "optimizer[1].eps",
            "eps = 0.0",
            "finite number > 0",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\namsgrad = 1",
            "optimizer[1].amsgrad",
            "amsgrad = 1",
            "invalid type",
        ),
        (
            "lr = 0.01",
            "lr = -0.01",
            "optimizer[1].lr",
            "lr = -0.01",
            "finite number > 0",
        ),
        (
            "lr = 0.01",
            "lr = 0.0",
            "optimizer[1].lr",
            "lr = 0.0",
            "finite number > 0",
        ),
        (
            "lr = 0.01",
            "lr = inf",
            "optimizer[1].lr",
            "lr = inf",
            "finite number > 0",
        ),
        (
            "lr = 0.01",
            "lr = []",
            "optimizer[1].lr",
            "lr = []",
            "the sweep list is empty",
        ),
        (
            "lr = 0.01",
            "lr = \"fast\"",
            "optimizer[1].lr",
            "lr = \"fast\"",
            "invalid type",
        ),
        (
            "lr = 0.1\n",
            "",
            "optimizer[0].lr",
            "[[optimizer]]",
            "is missing: add `lr = …` to this [[optimizer]]",
        ),
        (
            "name = \"adam\"",
            "name = \"adamax\"",
            "optimizer[1].name",
            "name = \"adamax\"",
            "unknown variant `adamax`",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\nns_steps = 0",
            "optimizer[1].ns_steps",
            "ns_steps = 0",
            "1..=100",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\nns_steps = 1000",
            "optimizer[1].ns_steps",
            "ns_steps = 1000",
            "1..=100",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\naux_lr = 0.0",
            "optimizer[1].aux_lr",
            "aux_lr = 0.0",
            "finite number > 0",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\ndampening = 0.1",
            "optimizer[1].dampening",
            "dampening = 0.1",
            "does not apply to muon",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"",
            "optimizer[1].name",
            "name = \"muon\"",
            "has none, so it would be AdamW; add a hidden layer, or set matrices = \"all\"",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\nmatrices = \"first\"",
            "optimizer[1].matrices",
            "matrices = \"first\"",
            "unknown variant `first`",
        ),
        (
            "name = \"adam\"",
            "name = \"muon\"\nmomentum = 1.5",
            "optimizer[1].momentum",
            "momentum = 1.5",
            "[0, 1)",
        ),
        (
            "name = \"adam\"",
            "name = \"rmsprop\"\nalpha = 1.0",
            "optimizer[1].alpha",
            "alpha = 1.0",
            "[0, 1)",
        ),
        (
            "name = \"adam\"",
            "name = \"rmsprop\"\nbeta1 = 0.9",
            "optimizer[1].beta1",
            "beta1 = 0.9",
            "does not apply to rmsprop",
        ),
        (
            "name = \"adam\"",
            "name = \"adagrad\"\nlr_decay = -1.0",
            "optimizer[1].lr_decay",
            "lr_decay = -1.0",
            "≥ 0",
        ),
        (
            "name = \"adam\"",
            "name = \"adagrad\"\nmomentum = 0.9",
            "optimizer[1].momentum",
            "momentum = 0.9",
            "does not apply to adagrad",
        ),
        (
            "name = \"adam\"",
            "name = \"lion\"\neps = 1e-8",
            "optimizer[1].eps",
            "eps = 1e-8",
            "does not apply to lion",
        ),
        (
            "name = \"adam\"",
            "name = \"adam\"\nlabel = \"../../escape\"",
            "optimizer[1].label",
            "label = ",
            "not filesystem-safe",
        ),
        (
            "name = \"adam\"",
            "name = \"adam\"\nlabel = \"\"",
            "optimizer[1].label",
            "label = ",
            "1 to 100 characters",
        ),
        (
            "name = \"adam\"",
            "name = \"adam\"\nlabel = 5",
            "optimizer[1].label",
            "label = 5",
            "must be a string",
        ),
        (
            "name = \"adam\"",
            "name = \"adam\"\nlabel = [\"a\", \"b\"]",
            "optimizer[1].label",
            "label = [",
            "must be a string",
        ),
        (
            "name = \"adam\"\nlr = 0.01",
            "name = \"sgd\"\nlr = 0.1",
            "optimizer[1]",
            "[[optimizer]]\nname = \"sgd\"\nlr = 0.1\n\n[hessian]",
            "duplicate run id `sgd-lr1e-1-s0`",
        ),
        (
            "lr = 0.01",
            "lr = 0.01\nbetas = [0.9, 0.99]",
            "optimizer[1].betas",
            "betas = [",
            "unknown field `betas`",
        ),
        // [hessian]
        (
            "k = 3",
            "k = 0",
            "hessian.k",
            "k = 0",
            "1..=66 (below the model's P = 67 parameters",
        ),
        ("k = 3", "k = 67", "hessian.k", "k = 67", "1..=66"),
        ("k = 3", "k = -3", "hessian.k", "k = -3", "≥ 0"),
        (
            "k = 3\n",
            "",
            "hessian.k",
            "hessian]",
            "is missing: add `k = …` to [hessian]",
        ),
        (
            "k = 3",
            "k = 3\nanalysis_size = 1000",
            "hessian.analysis_size",
            "analysis_size = 1000",
            "1..=90 (the train split)",
        ),
        (
            "k = 3",
            "k = 3\nanalysis_size = 0",
            "hessian.analysis_size",
            "analysis_size = 0",
            "1..=90",
        ),
        (
            "k = 3",
            "k = 3\ntol = 0.0",
            "hessian.tol",
            "tol = 0.0",
            "(0, 1)",
        ),
        (
            "k = 3",
            "k = 3\ntol = 2.0",
            "hessian.tol",
            "tol = 2.0",
            "(0, 1)",
        ),
        (
            "k = 3",
            "k = 3\nmax_iter = 2",
            "hessian.max_iter",
            "max_iter = 2",
            "3..=1000000 (at least hessian.k)",
        ),
        (
            "k = 3",
            "k = 3\nmax_iter = 10000000",
            "hessian.max_iter",
            "max_iter = 1",
            "3..=1000000",
        ),
        (
            "k = 3",
            "k = 3\nchunk_rows = 0",
            "hessian.chunk_rows",
            "chunk_rows = 0",
            "1..=100000000",
        ),
        (
            "k = 3",
            "k = 3\nblock = 0",
            "hessian.block",
            "block = 0",
            "1..=64",
        ),
        (
            "k = 3",
            "k = 3\nblock = 65",
            "hessian.block",
            "block = 65",
            "1..=64",
        ),
        (
            "k = 3",
            "k = 3\nwhich = \"smallest\"",
            "hessian.which",
            "which = ",
            "unknown variant `smallest`",
        ),
        (
            "k = 3",
            "k = 3\nkk = 3",
            "hessian.kk",
            "kk = 3",
            "unknown field `kk`",
        ),
        (
            "k = 3",
            "k = 3\nwarm_start = \"yes\"",
            "hessian.warm_start",
            "warm_start = ",
            "invalid type",
        ),
        // [null]
        (
            "k = 3\n",
            "k = 3\n\n[null]\nreplicas = 5000\n",
            "null.replicas",
            "replicas = 5000",
            "0..=1000",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[null]\nreplicas = -1\n",
            "null.replicas",
            "replicas = -1",
            "≥ 0",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[[null]]\nreplicas = 1\n",
            "null",
            "null]]",
            "must be a table: write [null]",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[null]\nreplica = 1\n",
            "null.replica",
            "replica = 1",
            "unknown field `replica`",
        ),
        // [metrics]
        (
            "k = 3\n",
            "k = 3\n\n[metrics]\ndegeneracy_threshold = 1.5\n",
            "metrics.degeneracy_threshold",
            "degeneracy_threshold = 1.5",
            "must be in (0, 1)",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[metrics]\ndegeneracy_threshold = 0.0\n",
            "metrics.degeneracy_threshold",
            "degeneracy_threshold = 0.0",
            "must be in (0, 1)",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[metrics]\ninclude_untrusted = 1\n",
            "metrics.include_untrusted",
            "include_untrusted = 1",
            "invalid type",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[metrics]\ninclude_untrustd = true\n",
            "metrics.include_untrustd",
            "include_untrustd = true",
            "unknown field `include_untrustd`",
        ),
        (
            "k = 3\n",
            "k = 3\n\n[[metrics]]\ninclude_untrusted = true\n",
            "metrics",
            "metrics]]",
            "must be a table: write [metrics]",
        ),
    ];

    /// `[metrics]` reaches the metrics stage's parameters; without it they
    /// are the defaults, serialized as before the section existed.
    #[test]
    fn the_metrics_section_sets_the_metrics_params() {
        let graph = |text: &str| {
            Experiment::parse(&cfg_path(), text)
                .unwrap_or_else(|e| panic!("{e}"))
                .graph(&json!({}))
        };
        let metrics_params = |g: &Graph| -> Vec<Value> {
            g.instances
                .iter()
                .filter(|i| i.kind == "metrics")
                .map(|i| i.params.clone())
                .collect()
        };
        let default = metrics_params(&graph(BASE));
        assert_eq!(default.len(), 2);
        for p in &default {
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                r#"{"degeneracy_threshold":0.001}"#
            );
        }
        let text = edit(
            "k = 3\n",
            "k = 3\n\n[metrics]\ninclude_untrusted = true\ndegeneracy_threshold = 0.01\n",
        );
        let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
        for r in &exp.runs {
            assert_eq!(
                r.metrics,
                MetricsParams {
                    degeneracy_threshold: 0.01,
                    include_untrusted: true
                }
            );
        }
        for p in metrics_params(&graph(&text)) {
            assert_eq!(p["include_untrusted"], json!(true));
            assert_eq!(p["degeneracy_threshold"], json!(0.01));
        }
        // Only include_untrusted: the threshold keeps its default.
        let text = edit("k = 3\n", "k = 3\n\n[metrics]\ninclude_untrusted = true\n");
        let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exp.runs[0].metrics.degeneracy_threshold, 1e-3);
    }

    #[test]
    fn bad_configs_name_the_field_at_its_line_and_column_with_the_range() {
        for (from, to, field, marker, fragment) in BAD {
            refused(
                &edit(from, to),
                &LoadOptions::unchecked(),
                field,
                marker,
                fragment,
            );
        }
        assert!(BAD.len() >= 100, "{} cases", BAD.len());
    }

    #[test]
    fn a_section_given_a_value_is_refused_as_such() {
        let text = BASE
            .replace("[hessian]\nk = 3\n", "")
            .replace("dtype = \"f64\"", "dtype = \"f64\"\nhessian = 3");
        refused(
            &text,
            &LoadOptions::unchecked(),
            "hessian",
            "hessian = 3",
            "must be a table: write [hessian] with k = 10",
        );
    }

    #[test]
    fn teacher_widths_suggestion_is_valid() {
        let teacher =
            edit("separation = 2.0", "teacher_widths = [0]").replace("gaussian_mixture", "teacher");
        refused(
            &teacher,
            &LoadOptions::unchecked(),
            "dataset.teacher_widths",
            "teacher_widths = [0]",
            "give [] for a linear teacher",
        );
        // ... and what it suggests is accepted: a linear teacher.
        let linear = teacher.replace("teacher_widths = [0]", "teacher_widths = []");
        let exp = Experiment::parse(&cfg_path(), &linear).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            exp.datasets[0].2.kind,
            DatasetKind::Teacher {
                teacher_widths: vec![]
            }
        );
        // An empty `at` is no checkpoint list, not an empty sweep.
        let at = edit("log_spaced = 4", "log_spaced = 4, at = []");
        assert!(Experiment::parse(&cfg_path(), &at).is_ok());
    }

    #[test]
    fn long_names_and_ids_are_refused_up_front() {
        let long = "a".repeat(245);
        refused(
            &edit("name = \"t\"", &format!("name = \"{long}\"")),
            &LoadOptions::unchecked(),
            "name",
            "name = ",
            "is 245 characters, at most 100",
        );
        let label = "b".repeat(300);
        refused(
            &edit(
                "name = \"adam\"",
                &format!("name = \"adam\"\nlabel = \"{label}\""),
            ),
            &LoadOptions::unchecked(),
            "optimizer[1].label",
            "label = ",
            "must be 1 to 100 characters, got 300",
        );
        // Each part short enough, the id too long: the longest part is named.
        let label = "c".repeat(100);
        let text = edit(
            "name = \"adam\"\nlr = 0.01",
            &format!("name = \"adam\"\nlabel = \"{label}\"\nlr = [0.0123456789012345, 0.1]\nweight_decay = [0.0123456789012345, 0.1]\neps = [1.23456789012345e-9, 1e-8]"),
        );
        refused(
            &text,
            &LoadOptions::unchecked(),
            "optimizer[1].label",
            "label = ",
            "over the limit of 150",
        );
        // A swept inline table (here `init`) makes a readable id part; it
        // used to be refused as "not filesystem-safe", blamed on the label.
        let text = edit(
            "activation = \"tanh\"",
            "activation = \"tanh\"\ninit = [{ kind = \"normal\", std = 0.1 }, \"torch_default\"]",
        );
        let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = exp.runs.iter().map(|r| r.id.as_str()).collect();
        assert!(ids.contains(&"sgd-lr1e-1-initnormal-std1e-1-s0"), "{ids:?}");
        assert!(ids.contains(&"sgd-lr1e-1-inittorch_default-s0"), "{ids:?}");
    }

    #[test]
    fn sweeps_are_bounded_before_they_expand() {
        let seeds: Vec<String> = (0..=10_000).map(|s| s.to_string()).collect();
        let text = edit("seeds = [0]", &format!("seeds = [{}]", seeds.join(", ")));
        refused(
            &text,
            &LoadOptions::unchecked(),
            "seeds",
            "seeds = ",
            "the sweep expands to 20002 runs",
        );
        // 200 × 200 × 200 points would be 8e6 tables: refused from the lengths.
        let list: Vec<String> = (1..=200)
            .map(|i| format!("{}", i as f64 / 1000.0))
            .collect();
        let l = list.join(", ");
        let text = edit(
            "lr = 0.1",
            &format!("lr = [{l}]\nmomentum = [{l}]\nweight_decay = [{l}]"),
        );
        refused(
            &text,
            &LoadOptions::unchecked(),
            "optimizer[0].lr",
            "lr = [",
            "over the limit of 10000",
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_line_and_column() {
        let e = Experiment::parse(&cfg_path(), &edit("steps = 40", "steps = [40"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/nonexistent-dir/exp.toml:"), "{e}");
        let pos = e.split(':').nth(1).unwrap();
        assert!(pos.parse::<usize>().unwrap() >= 19, "{e}");
        assert!(e.contains("(TOML syntax)"), "{e}");
        assert!(!e.contains(":1:1:"), "{e}");
    }

    /// 16 GB of memory, no disk check.
    fn mem16() -> LoadOptions {
        LoadOptions {
            force_size: false,
            mem_bytes: Some(16_000_000_000),
            disk_free_bytes: None,
        }
    }

    #[test]
    fn configs_that_do_not_fit_in_memory_are_refused_with_the_field_to_change() {
        // P ≈ 1e12: the parameter vectors alone.
        let wide = edit("widths = [4, 8, 3]", "widths = [4, 1000000, 1000000, 3]");
        refused(
            &wide,
            &mem16(),
            "model.widths",
            "widths = ",
            "GB of memory in its train stage, more than the 16.0 GB of this machine",
        );
        // --force-size runs it anyway; the hard limits still hold.
        let force = LoadOptions {
            force_size: true,
            ..mem16()
        };
        assert!(Experiment::parse_with(&cfg_path(), &wide, &force).is_ok());
        // 8e6 parameters: a 301-vector Lanczos basis in f64 is 19 GB.
        let basis = edit("widths = [4, 8, 3]", "widths = [4, 1000000, 3]")
            .replace("k = 3", "k = 3\nanalysis_size = 10");
        refused(
            &basis,
            &mem16(),
            "hessian.max_iter",
            "hessian]",
            "the Lanczos basis",
        );
        let fewer = basis.replace("k = 3", "k = 3\nmax_iter = 100");
        assert!(Experiment::parse_with(&cfg_path(), &fewer, &mem16()).is_ok());
        // 1e8 rows: the training activations.
        let rows = edit("samples = 120", "samples = 100000000");
        refused(
            &rows,
            &mem16(),
            "dataset.samples",
            "samples = ",
            "the training activations",
        );
        // A log row every step of 1e9.
        let log = edit("steps = 40", "steps = 1000000000")
            .replace("log_every = 5", "log_every = 1")
            .replace("every = 20, log_spaced = 4", "log_spaced = 4");
        refused(
            &log,
            &mem16(),
            "train.log_every",
            "log_every = 1",
            "the training log",
        );
        // 50,001 checkpoints: the metrics' Gram matrix of every pair.
        let ckpts = edit("steps = 40", "steps = 1000000")
            .replace("every = 20, log_spaced = 4", "every = 20");
        refused(
            &ckpts,
            &mem16(),
            "train.checkpoints",
            "checkpoints = ",
            "in its metrics stage",
        );
        // 8e5 analysis rows through 1,003 neurons: the HVPs (train fits in 64 GB).
        let mem64 = LoadOptions {
            mem_bytes: Some(64_000_000_000),
            ..mem16()
        };
        let hvp = edit("samples = 120", "samples = 1000000")
            .replace("widths = [4, 8, 3]", "widths = [4, 1000, 3]")
            .replace("k = 3", "k = 3\nmax_iter = 20");
        refused(
            &hvp,
            &mem64,
            "hessian.analysis_size",
            "hessian]",
            "the Hessian-vector products",
        );
        let chunked = hvp.replace("k = 3", "k = 3\nchunk_rows = 10000");
        assert!(Experiment::parse_with(&cfg_path(), &chunked, &mem64).is_ok());
        // The CLI's own dataset: 1e8 rows of 1000 features.
        let data = edit("samples = 120", "samples = 100000000")
            .replace("dim = 4", "dim = 1000")
            .replace("widths = [4, 8, 3]", "widths = [1000, 8, 3]");
        refused(
            &data,
            &mem64,
            "dataset.samples",
            "samples = ",
            "in its dataset stage",
        );
    }

    #[test]
    fn results_that_do_not_fit_on_disk_are_refused() {
        let opts = LoadOptions {
            force_size: false,
            mem_bytes: Some(16_000_000_000),
            disk_free_bytes: Some(1_000),
        };
        refused(
            BASE,
            &opts,
            "train.checkpoints",
            "checkpoints = ",
            "GB of disk, more than the 0.0 GB free",
        );
        let opts = LoadOptions {
            disk_free_bytes: Some(1_000_000_000),
            ..opts
        };
        assert!(Experiment::parse_with(&cfg_path(), BASE, &opts).is_ok());
    }

    /// The shipped configs and a variety of valid ones: (name, text).
    fn valid_configs() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out.push(("base".into(), BASE.into()));
        out.push((
            "spirals-epochs-muon".into(),
            BASE.replace("kind = \"gaussian_mixture\"", "kind = \"spirals\"")
                .replace("separation = 2.0", "noise = 0.1")
                .replace("dim = 4", "dim = 3")
                .replace("widths = [4, 8, 3]", "widths = [3, 8, 8, 3]")
                .replace("activation = \"tanh\"", "activation = \"relu\"\ninit = { kind = \"normal\", std = 0.1 }")
                .replace("steps = 40", "epochs = 6\nbatch_size = 30\nschedule = { kind = \"cosine\", warmup = 3, final_fraction = 0.1 }")
                .replace("seeds = [0]", "seeds = [0, 1]")
                .replace("lr = 0.1", "lr = [0.1, 0.05]\nmomentum = 0.9\nnesterov = true\nweight_decay = 1e-4")
                .replace("name = \"adam\"\nlr = 0.01", "name = \"muon\"\nlr = 0.02\nns_steps = 3\naux_lr = 1e-3\n\n[[optimizer]]\nname = \"adamw\"\nlabel = \"aw\"\nlr = 0.01\nbeta2 = 0.99\neps = 1e-7\namsgrad = true"),
        ));
        out.push((
            "teacher-f32-hessian".into(),
            BASE.replace("kind = \"gaussian_mixture\"", "kind = \"teacher\"")
                .replace("separation = 2.0", "teacher_widths = [16, 8]")
                .replace("dtype = \"f64\"", "dtype = \"f32\"")
                .replace("activation = \"tanh\"", "activation = [\"tanh\", \"gelu\"]")
                .replace("every = 20, log_spaced = 4", "at = [3, 7], log_spaced = 3")
                .replace("k = 3", "k = 2\nanalysis_size = 50\nwhich = \"both_ends\"\ntol = 1e-3\nmax_iter = 40\nchunk_rows = 20\nblock = 2\nwarm_start = false\npreconditioned = false\n\n[null]\nreplicas = 2")
                .replace("name = \"adam\"\nlr = 0.01", "name = \"rmsprop\"\nlr = 0.01\nalpha = 0.9\ncentered = true\nmomentum = 0.5\n\n[[optimizer]]\nname = \"adagrad\"\nlr = 0.1\nlr_decay = 0.01\neps = 1e-9\n\n[[optimizer]]\nname = \"lion\"\nlr = 1e-4\nbeta1 = 0.8\nbeta2 = 0.98\nweight_decay = 0.1"),
        ));
        out.push((
            "digits-sweeps".into(),
            BASE.replace(
                "kind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 120\nseparation = 2.0",
                "kind = \"digits\"\nsubset = 300",
            )
            .replace("seed = 1\n", "seed = [0, 1]\n")
            .replace("widths = [4, 8, 3]", "widths = [[64, 16, 10], [64, 8, 10]]")
            .replace("k = 3", "k = 3\nmax_iter = 50"),
        ));
        out
    }

    #[test]
    fn valid_configs_fit_a_small_machine() {
        // 4 GB of memory and 20 GB of disk: the shipped configs (paper.toml:
        // 21 runs of P = 26,122 at 45 checkpoints) and the variety above.
        let opts = LoadOptions {
            force_size: false,
            mem_bytes: Some(4_000_000_000),
            disk_free_bytes: Some(20_000_000_000),
        };
        for (name, text) in valid_configs() {
            if let Err(e) = Experiment::parse_with(&cfg_path(), &text, &opts) {
                panic!("{name}: {e}");
            }
        }
    }

    /// blake3 of every instance of the graph: id, kind, code version,
    /// resolved parameters, env, inputs and view.
    fn graph_digest(text: &str) -> String {
        let exp = Experiment::parse(&cfg_path(), text).unwrap_or_else(|e| panic!("{e}"));
        let g = exp.graph(&json!({ "libtorch": "test", "device": "cpu" }));
        let mut h = blake3::Hasher::new();
        // Parameters, ids, inputs and views: what the parser decides. (Code
        // versions and environments are the stages' business, and change
        // on purpose.)
        for i in &g.instances {
            let v = json!([i.id, i.kind, i.params, i.inputs, i.view]);
            h.update(serde_json::to_string(&v).unwrap().as_bytes());
        }
        h.finalize().to_hex()[..16].to_string()
    }

    /// Valid configs keep exactly their resolved parameters, ids and views
    /// (what the cache keys and out/ are made of). The digests were taken
    /// with the parser before the validation of issue 13 (over code versions
    /// and environments too), then retaken without those two at the commit
    /// where that earlier digest still held. Issue 14 changed the two with a
    /// Muon run on purpose (torch.optim.Muon's weight decay 0.1, `matrices`).
    /// Issue 16 changed all of them on purpose: every graph gains the
    /// findings stage (an input of the report), the null's default replicas
    /// went from 5 to 20, and paper.toml runs 5 seeds with 20 replicas;
    /// paper-teacher.toml too; paper-lr.toml is new; the findings stage
    /// then gained each run's dataset as an input (the columns' max |z|),
    /// and so did the report (fig10_input_mass); paper-shuffled.toml is new.
    #[test]
    fn valid_configs_resolve_exactly_as_before() {
        let golden: &[(&str, &str)] = &[
            ("paper-lr.toml", "0441ecab9b2076dd"),
            ("paper-shuffled.toml", "7cacb14ca8c7679e"),
            ("paper-teacher.toml", "d74d9427f8882aff"),
            ("paper.toml", "f634de91827ced01"),
            ("quick.toml", "1d714c53fa5a87c1"),
            ("base", "730ca38c74a8f21f"),
            ("spirals-epochs-muon", "7633a0f2f05b4c02"),
            ("teacher-f32-hessian", "445219dd93429653"),
            ("digits-sweeps", "413eedbc2dc81d90"),
        ];
        let mut got = Vec::new();
        for (name, text) in valid_configs() {
            got.push(format!("(\"{name}\", \"{}\"),", graph_digest(&text)));
        }
        assert_eq!(got.len(), golden.len(), "{}", got.join("\n"));
        for (name, digest) in golden {
            assert!(
                got.contains(&format!("(\"{name}\", \"{digest}\"),")),
                "{name}: resolved params changed; now:\n{}",
                got.join("\n")
            );
        }
    }
}

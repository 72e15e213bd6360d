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
//! ```
//!
//! Instances: one `dataset`; per run (optimizer setting × seed) a `train`,
//! `hessian` and `metrics`; one `report` over all runs.

use pipeline::{Graph, StageInstance};
use serde::Deserialize;
use serde_json::{json, Value};
use stages::hessian::{HessianParams, NullParams};
use stages::lanczos::Which;
use stages::mlp::{Activation, Arch, Init};
use stages::optim::OptimizerParams;
use stages::runtime::Dtype;
use stages::train::{CheckpointSpec, Schedule, ScheduleKind, TrainParams};
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
}

fn d_replicas() -> usize {
    5
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
}

/// The stage kinds, as `[slurm.<kind>]` names them.
pub const STAGE_KINDS: &[&str] = &["dataset", "null", "train", "hessian", "metrics", "report"];

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
        other => other.to_string(),
    }
}

/// Fields whose natural value is a list: they sweep only when given a list of lists.
const NATURAL_LISTS: &[&str] = &[
    "model.widths",
    "train.checkpoints.at",
    "dataset.teacher_widths",
];

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
            toml::Value::Array(a)
                if NATURAL_LISTS.contains(&path.as_str()) && !a.iter().all(|x| x.is_array()) =>
            {
                vec![(v.clone(), None)]
            }
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
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    Some((line, col))
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            msg: format!(": cannot read the config: {e}"),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Experiment, ConfigError> {
        // Data paths in the config are relative to the config's directory.
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // An error at `field`: file:line:col, the field, the message (with the fix).
        let at = |field: &str, msg: &str| {
            let loc = locate(text, field)
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            ConfigError {
                file: path.to_path_buf(),
                msg: format!("{loc}: field `{field}`: {msg}"),
            }
        };
        let root: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            msg: format!(": {}", e.to_string().trim_end()),
        })?;
        let mut root = root;
        // `[slurm]` says where jobs run, not what they compute: no key sees it.
        let slurm = match root.remove("slurm") {
            None => SlurmConfig::default(),
            Some(v) => parse_slurm(&v, &at)?,
        };
        // `seeds` is the sweep over `seed`.
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
        let points = expand(&root, "")
            .map_err(|p| at(&p, "the sweep list is empty; give at least one value"))?;
        let mut datasets: Vec<(String, String, DatasetParams, Vec<Tag>)> = Vec::new();
        let mut runs: Vec<RunSpec> = Vec::new();
        let mut name = String::new();
        for (oi, opt) in optimizers.iter().enumerate() {
            let opath = format!("optimizer[{oi}]");
            let toml::Value::Table(opt) = opt else {
                return Err(at(&opath, "must be a table"));
            };
            let mut opt = opt.clone();
            let label = match opt.remove("label") {
                None => None,
                Some(toml::Value::String(s)) => Some(s),
                Some(_) => return Err(at(&format!("{opath}.label"), "must be a string")),
            };
            let settings = expand(&opt, "").map_err(|p| {
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
                        let msg = e.to_string();
                        let (first, rest) = msg.split_once('\n').unwrap_or((&msg, ""));
                        let mut field = rest
                            .trim()
                            .strip_prefix("in `")
                            .and_then(|r| r.strip_suffix('`'))
                            .unwrap_or("")
                            .to_string();
                        if let Some(unknown) = first
                            .strip_prefix("unknown field `")
                            .and_then(|r| r.split('`').next())
                        {
                            field = if field.is_empty() {
                                unknown.to_string()
                            } else {
                                format!("{field}.{unknown}")
                            };
                        }
                        let field = field.replacen("optimizer", &opath, 1);
                        at(if field.is_empty() { "name" } else { &field }, first)
                    })?;
                    name = f.name.clone();
                    let run = Self::validate_point(&f, base_dir, &at, &opath)?;
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
                        .unwrap_or_else(|| f.optimizer.name.as_str().to_string());
                    let mut parts = vec![base.clone()];
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
                    parts.extend(ot.iter().map(Tag::short));
                    let mut gt: Vec<&Tag> = tags.iter().filter(|t| t.path != "seeds").collect();
                    gt.sort_by(|a, b| a.path.cmp(&b.path));
                    parts.extend(gt.iter().map(|t| t.short()));
                    parts.push(format!("s{}", f.seed));
                    let id = parts.join("-");
                    if id.starts_with('.')
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    {
                        return Err(at(
                            &format!("{opath}.label"),
                            &format!("run id `{id}` is not filesystem-safe (it names out/<name>/runs/<id>/); use letters, digits, '-', '_' and '.'"),
                        ));
                    }
                    if runs.iter().any(|r| r.id == id) {
                        return Err(at(
                            &opath,
                            &format!("duplicate run id `{id}`: two optimizer settings are identical; remove one or give it a distinct `label`"),
                        ));
                    }
                    runs.push(RunSpec {
                        id,
                        label: base,
                        dataset: ds_id,
                        null: (f.null.replicas > 0).then(|| NullParams {
                            arch: run.0.arch.clone(),
                            init: run.0.init,
                            replicas: f.null.replicas,
                            k: run.1.k,
                            analysis_size: run.1.analysis_size,
                            which: run.1.which,
                            tol: run.1.tol(),
                            max_iter: run.1.max_iter,
                            seed: 0,
                            dtype: run.1.dtype,
                            chunk_rows: run.1.chunk_rows,
                            block: run.1.block,
                        }),
                        train: run.0,
                        hessian: run.1,
                    });
                }
            }
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

    /// Range checks on one sweep point; errors name the field.
    fn validate_point(
        f: &PointFile,
        base_dir: &Path,
        at: &dyn Fn(&str, &str) -> ConfigError,
        opath: &str,
    ) -> Result<(TrainParams, HessianParams), ConfigError> {
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(at("name", "must be non-empty and use only letters, digits, '-' and '_' (it names out/<name>/)"));
        }
        let shape = f.dataset.shape(base_dir).map_err(|(fl, m)| at(&fl, &m))?;
        let widths = &f.model.widths;
        if widths.len() < 2 || widths.contains(&0) {
            return Err(at(
                "model.widths",
                "needs at least [input, classes], every width ≥ 1",
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
                return Err(at("model.init.std", "must be > 0"));
            }
        }
        let arch = Arch {
            widths: widths.clone(),
            activation: f.model.activation,
        };
        if f.train.log_every == 0 {
            return Err(at("train.log_every", "must be ≥ 1"));
        }
        let n_train = shape.train;
        if let Some(b) = f.train.batch_size {
            if b == 0 || b > n_train {
                return Err(at(
                    "train.batch_size",
                    &format!(
                        "must be in 1..={n_train} (the train split), or omitted for full batch"
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
        let steps = match (f.train.steps, f.train.epochs) {
            (Some(_), Some(_)) => {
                return Err(at(
                    "train.epochs",
                    "give either `steps` or `epochs`, not both",
                ))
            }
            (None, None) => return Err(at("train", "give a budget: `steps = N` or `epochs = N`")),
            (Some(s), None) => s,
            (None, Some(e)) => e * steps_per_epoch,
        };
        if steps == 0 {
            return Err(at(
                if f.train.steps.is_some() {
                    "train.steps"
                } else {
                    "train.epochs"
                },
                "must be ≥ 1",
            ));
        }
        let sch = f.train.schedule;
        if sch.warmup > steps {
            return Err(at(
                "train.schedule.warmup",
                &format!("must be ≤ the number of steps ({steps})"),
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
        let p = arch.num_params();
        if f.hessian.k == 0 || f.hessian.k >= p {
            return Err(at(
                "hessian.k",
                &format!("must be in 1..{p} (the model has P = {p} parameters)"),
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
                return Err(at("hessian.tol", "must be in (0, 1)"));
            }
        }
        if f.hessian.max_iter < f.hessian.k {
            return Err(at("hessian.max_iter", "must be ≥ hessian.k"));
        }
        if f.hessian.block == 0 || f.hessian.block > 64 {
            return Err(at(
                "hessian.block",
                "must be in 1..=64 (vectors per block product; 1 = classic Lanczos)",
            ));
        }
        f.optimizer
            .validate()
            .map_err(|(fl, m)| at(&format!("{opath}.{fl}"), &m))?;
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
        Ok((train, hessian))
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
                params: to(&stages::metrics::MetricsParams::default()),
                env: json!({}),
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
}

//! `[slurm]` and `[slurm.<kind>]`: the job resources under `--executor
//! slurm` (not part of any key).

use crate::*;

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

pub(crate) const SLURM_FIELDS: &str = "cpus, mem, gpus, time, partition, account, extra";

/// Parse `[slurm]`; errors name the field (file:line:col, like the rest).
pub(crate) fn parse_slurm(
    v: &toml::Value,
    at: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<SlurmConfig, ConfigError> {
    let toml::Value::Table(t) = v else {
        return Err(at("slurm", "must be a table: write [slurm]"));
    };
    let mut cfg = SlurmConfig::default();
    for (k, v) in t {
        let path = format!("slurm.{k}");
        if StageKind::from_name(k).is_some() {
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
                    StageKind::names()
                ),
            ));
        }
    }
    Ok(cfg)
}

/// Set resource field `f` from `v`; false when `f` is not a resource field.
pub(crate) fn slurm_field(
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

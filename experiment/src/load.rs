//! Reading a config: its limits, the machine it must fit, and the serde
//! errors mapped back to fields.

use crate::*;

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
/// Products per trace estimator (`[trace] matvecs`).
pub const MAX_TRACE_MATVECS: usize = 10_000;
/// `[density]` probes and grid points.
pub const MAX_DENSITY_PROBES: usize = 1000;
pub const MAX_DENSITY_GRID: usize = 100_000;
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
pub(crate) fn read_config(path: &Path) -> Result<String, ConfigError> {
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
pub(crate) fn serde_error(e: &toml::de::Error, opath: &str) -> (String, String) {
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
pub(crate) fn filesystem_safe(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What one sweep point resolves to, and the sizes its estimates need.
pub(crate) struct Point {
    pub(crate) train: TrainParams,
    pub(crate) hessian: HessianParams,
    pub(crate) shape: DatasetShape,
    /// The number of checkpoints the run writes.
    pub(crate) checkpoints: usize,
}

/// The sizes of one run, for the resource estimates.
pub(crate) struct RunSize {
    pub(crate) dataset: DatasetParams,
    pub(crate) shape: DatasetShape,
    pub(crate) checkpoints: usize,
}

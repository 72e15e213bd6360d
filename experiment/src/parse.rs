//! Validation: the top level, the sweep size, then each point, before
//! anything is computed or written.

use crate::*;

pub(crate) type At<'a> = &'a dyn Fn(&str, &str) -> ConfigError;
pub(crate) type AtLoc<'a> = &'a dyn Fn(&str, &str, &str) -> ConfigError;

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
                            tol: f.null.tol.unwrap_or(pt.hessian.tol()),
                            max_iter: pt.hessian.max_iter,
                            seed: 0,
                            dtype: pt.hessian.dtype,
                            chunk_rows: pt.hessian.chunk_rows,
                            block: pt.hessian.block,
                            max_basis: pt.hessian.max_basis,
                            vector_dtype: pt.hessian.vector_dtype,
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
    pub(crate) fn check_root(
        root: &toml::Table,
        at: At<'_>,
        at_loc: AtLoc<'_>,
    ) -> Result<(), ConfigError> {
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
            "trace",
            "density",
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
            ("trace", "matvecs = 90"),
            ("density", "probes = 4"),
            ("metrics", "include_untrusted = true"),
        ] {
            match root.get(s) {
                None if matches!(s, "null" | "metrics" | "trace" | "density") => {}
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
    pub(crate) fn validate_point(
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
        let shape = f
            .dataset
            .shape(base_dir)
            .map_err(|e| at(&e.field, &e.msg))?;
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
        let checkpoints = f.train.checkpoints.check(steps).map_err(|e| {
            let field = if e.field.is_empty() {
                "train.checkpoints".to_string()
            } else {
                format!("train.checkpoints.{}", e.field)
            };
            at(&field, &e.msg)
        })?;
        f.hessian
            .keep_vectors
            .check(&f.train.checkpoints.steps(steps))
            .map_err(|e| at(&format!("hessian.keep_vectors.{}", e.field), &e.msg))?;
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
        if let Some(mb) = f.hessian.max_basis {
            let k_all = f.hessian.k
                * if f.hessian.which == stages::lanczos::Which::BothEnds {
                    2
                } else {
                    1
                };
            if mb < k_all + 2 || mb > f.hessian.max_iter {
                return Err(at(
                    "hessian.max_basis",
                    &format!(
                        "must be in {}..={} (at least the {k_all} wanted pairs and 2 more, at most hessian.max_iter), or omitted for no restart",
                        k_all + 2,
                        f.hessian.max_iter
                    ),
                ));
            }
            if f.hessian.block != 1 {
                return Err(at(
                    "hessian.max_basis",
                    "restarts are for classic Lanczos: set hessian.block = 1, or drop max_basis",
                ));
            }
        }
        let ops = &f.hessian.operators;
        if !ops.contains(&stages::hessian::Operator::Hessian) {
            return Err(at(
                "hessian.operators",
                "must list \"hessian\" (the metrics and figures are the Hessian's); add the others to it, e.g. [\"hessian\", \"ggn\", \"fisher\"]",
            ));
        }
        if let Some(o) = ops
            .iter()
            .enumerate()
            .find_map(|(i, o)| ops[..i].contains(o).then_some(o))
        {
            return Err(at(
                "hessian.operators",
                &format!("lists \"{}\" twice; give each operator once", o.name()),
            ));
        }
        let extra = ops
            .iter()
            .find(|&&o| o != stages::hessian::Operator::Hessian);
        if let (Some(o), Some(_)) = (extra, f.hessian.chunk_rows) {
            return Err(at(
                "hessian.operators",
                &format!(
                    "\"{}\" has no chunked product (it keeps the whole analysis set's forward state); drop hessian.chunk_rows, or keep operators = [\"hessian\"]",
                    o.name()
                ),
            ));
        }
        // The Fisher is a sum of N rank-one terms, the GGN of N terms of rank
        // C − 1: beyond that rank every eigenvalue is 0, and Lanczos would
        // return noise for them.
        let rows = f.hessian.analysis_size.unwrap_or(n_train);
        let classes = shape.classes;
        if ops.contains(&stages::hessian::Operator::Fisher) && rows < 2 {
            return Err(at(
                "hessian.analysis_size",
                &format!("is {rows}: the empirical Fisher averages per-row gradient outer products and needs at least 2 rows; raise it, or drop \"fisher\" from hessian.operators"),
            ));
        }
        for (op, rank) in [
            (stages::hessian::Operator::Fisher, rows),
            (
                stages::hessian::Operator::Ggn,
                rows.saturating_mul(classes.saturating_sub(1)),
            ),
        ] {
            if ops.contains(&op) && f.hessian.k > rank {
                return Err(at(
                    "hessian.operators",
                    &format!(
                        "\"{}\" has rank at most {rank} on {rows} analysis rows{}, below hessian.k = {}; raise hessian.analysis_size or lower k",
                        op.name(),
                        if op == stages::hessian::Operator::Ggn { format!(" × {} (classes − 1)", classes.saturating_sub(1)) } else { String::new() },
                        f.hessian.k
                    ),
                ));
            }
        }
        if let Some(t) = &f.trace {
            if !(3..=MAX_TRACE_MATVECS).contains(&t.matvecs) {
                return Err(at(
                    "trace.matvecs",
                    &format!("must be in 3..={MAX_TRACE_MATVECS} (products per estimator; Hutch++ splits them in three)"),
                ));
            }
        }
        if let Some(d) = &f.density {
            if !(1..=MAX_DENSITY_PROBES).contains(&d.probes) {
                return Err(at(
                    "density.probes",
                    &format!("must be in 1..={MAX_DENSITY_PROBES}"),
                ));
            }
            let steps_max = MAX_LANCZOS_ITER.min(p);
            if !(2..=steps_max).contains(&d.steps) {
                return Err(at(
                    "density.steps",
                    &format!("must be in 2..={steps_max} (Lanczos steps per probe; at most P = {p} and {MAX_LANCZOS_ITER})"),
                ));
            }
            if !(2..=MAX_DENSITY_GRID).contains(&d.grid) {
                return Err(at(
                    "density.grid",
                    &format!("must be in 2..={MAX_DENSITY_GRID} (points of the broadened density)"),
                ));
            }
            if !(d.sigma > 0.0 && d.sigma < 1.0) {
                return Err(at(
                    "density.sigma",
                    &format!("must be in (0, 1) (the Gaussian's width over the spectrum's range; default 0.01), got {}", d.sigma),
                ));
            }
        }
        if let Some(t) = f.null.tol {
            if !(t > 0.0 && t < 1.0) {
                return Err(at(
                    "null.tol",
                    &format!("must be in (0, 1) (the null's residual tolerance relative to |λ₁|), or omitted for hessian.tol; got {t}"),
                ));
            }
        }
        if f.null.replicas > MAX_REPLICAS {
            return Err(at(
                "null.replicas",
                &format!("must be in 0..={MAX_REPLICAS} (0 turns the null model off)"),
            ));
        }
        f.optimizer
            .validate()
            .map_err(|e| at(&format!("{opath}.{}", e.field), &e.msg))?;
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
        let mut hessian = f.hessian.resolve(f.dtype);
        hessian.trace = f.trace.clone();
        hessian.density = f.density.clone();
        Ok(Point {
            train,
            hessian,
            shape,
            checkpoints,
        })
    }
}

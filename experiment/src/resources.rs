//! Peak memory and disk estimates per stage, refused with the field to
//! change when over the machine's.

use crate::*;

/// One part of a stage's memory, or of the results' disk: what it is, the
/// field that sizes it with how to shrink it, and its estimated bytes.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) what: String,
    pub(crate) field: String,
    pub(crate) fix: &'static str,
    pub(crate) bytes: f64,
}

pub(crate) fn part(what: String, field: &str, fix: &'static str, bytes: f64) -> Part {
    Part {
        what,
        field: field.to_string(),
        fix,
        bytes,
    }
}

/// Bytes as "12.3 GB" (10⁹ bytes).
pub(crate) fn gb(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// The field that sets a dataset's rows.
pub(crate) fn rows_field(ds: &DatasetParams) -> &'static str {
    match ds.kind {
        DatasetKind::Digits { .. } | DatasetKind::Idx { .. } => "dataset.subset",
        _ => "dataset.samples",
    }
}

/// The sizes of one run that the estimates are made of.
pub(crate) struct Dims {
    /// Rows, features, train rows, test rows.
    pub(crate) n: f64,
    pub(crate) d: f64,
    pub(crate) n_train: f64,
    /// Bytes per number of the run's dtype.
    pub(crate) b: f64,
    /// Parameters, and neurons of the layers after the input (hidden and output).
    pub(crate) p: f64,
    pub(crate) neurons: f64,
    pub(crate) hidden: f64,
    /// Checkpoints, eigenpairs per checkpoint and operator (k, or 2k with
    /// both_ends), operators (`hessian.operators`, plus the preconditioned one).
    pub(crate) ckpts: f64,
    pub(crate) k: f64,
    pub(crate) k_all: f64,
    pub(crate) ops: f64,
    /// Bytes of one checkpoint file.
    pub(crate) ckpt_bytes: f64,
    /// Rows of the analysis set, and of one HVP pass over it.
    pub(crate) analysis: f64,
    pub(crate) hvp_rows: f64,
    /// The checkpoints whose vectors are stored (`hessian.keep_vectors`).
    pub(crate) vckpts: f64,
}

pub(crate) fn dims(r: &RunSpec, s: &RunSize) -> Dims {
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
        vckpts: h
            .keep_vectors
            .steps(&t.checkpoints.steps(t.steps))
            .len()
            .min(s.checkpoints) as f64,
        k,
        k_all: if h.which == Which::BothEnds {
            2.0 * k
        } else {
            k
        },
        ops: h.operators.len() as f64 + f64::from(h.preconditioned && preconditioned),
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
pub(crate) fn stage_memory(r: &RunSpec, s: &RunSize) -> Vec<(&'static str, Vec<Part>)> {
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
    // The most P-vectors in f64 held at once: the Lanczos basis, or the
    // trace estimators' probes and their products (`[trace]`), or an SLQ
    // probe's basis (`[density]`), whichever is largest (they run one
    // after another).
    // (The Lanczos basis: `max_basis` vectors when restarted, and in f32
    // for f32 runs, `LanczosOptions::f32_basis`.)
    let lanczos_basis = (h.max_basis.unwrap_or(h.max_iter + h.block) as f64).min(x.p);
    let lanczos_entry = if x.b == 4.0 { 4.0 } else { 8.0 };
    let trace_vectors = h.trace.as_ref().map_or(0.0, |t| 2.0 * t.matvecs as f64);
    let density_basis = h
        .density
        .as_ref()
        .map_or(0.0, |d| (d.steps as f64).min(x.p));
    let lanczos_bytes = lanczos_basis * lanczos_entry;
    let (basis, entry, basis_field, basis_fix) = if trace_vectors * 8.0
        > lanczos_bytes.max(density_basis * 8.0)
    {
        (trace_vectors, 8.0, "trace.matvecs", "use fewer products")
    } else if density_basis * 8.0 > lanczos_bytes {
        (
            density_basis,
            8.0,
            "density.steps",
            "use fewer Lanczos steps per probe",
        )
    } else if h.max_basis.is_some() {
        (
            lanczos_basis,
            lanczos_entry,
            "hessian.max_basis",
            "lower it (at least hessian.k + 2)",
        )
    } else {
        (
                lanczos_basis,
                lanczos_entry,
                "hessian.max_iter",
                "lower it (a smaller basis; at least hessian.k), or bound the basis with hessian.max_basis",
            )
    };
    let lanczos = part(
        format!(
            "the Lanczos basis ({basis} vectors of P = {} parameters in {})",
            x.p,
            if entry == 4.0 { "f32" } else { "f64" }
        ),
        basis_field,
        basis_fix,
        // The basis, the tridiagonal (block) matrix and its eigenvectors,
        // the Ritz vectors and the warm start.
        basis * x.p * entry + basis * basis * 8.0 * 4.0 + (2.0 + x.ops) * x.k_all * x.p * 8.0,
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
                "write fewer checkpoints, keep vectors at fewer of them (hessian.keep_vectors), or lower hessian.k"
            },
            count * x.k_all * x.ops * x.p * bytes,
        )
    };
    let pairs = x.vckpts * (x.vckpts - 1.0) / 2.0;
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
    let all_vectors = format!(
        "the eigenvectors of every checkpoint that keeps them ({} checkpoints × {} vectors × P = {})",
        x.vckpts,
        x.k_all * x.ops,
        x.p
    );
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
                vectors(all_vectors.clone(), "train.checkpoints", x.vckpts, 8.0),
            ],
        ),
        (
            "metrics",
            vec![
                vectors(all_vectors, "train.checkpoints", x.vckpts, 12.0),
                part(
                    format!(
                        "the Gram matrix of every checkpoint's top-k vectors ({} columns)",
                        x.vckpts * x.k
                    ),
                    "train.checkpoints",
                    "write fewer checkpoints, or lower hessian.k",
                    (x.vckpts * x.k).powi(2) * 8.0,
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
pub(crate) fn run_disk(r: &RunSpec, s: &RunSize) -> Vec<Part> {
    let x = dims(r, s);
    let pairs = x.vckpts * (x.vckpts - 1.0) / 2.0;
    let vector_bytes = match r.hessian.vector_dtype {
        stages::hessian::VectorDtype::F32 => 4.0,
        _ => 2.0,
    };
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
            "write fewer checkpoints, keep vectors at fewer of them (hessian.keep_vectors), or lower hessian.k",
            x.vckpts * x.k_all * x.ops * x.p * vector_bytes,
        ),
        part(
            "the metrics".into(),
            "train.checkpoints",
            "write fewer checkpoints",
            pairs * x.ops * (64.0 + 88.0 * x.k) + x.vckpts * x.k_all * x.ops * x.hidden * 40.0,
        ),
    ]
}

/// Refuse a config whose estimated peak stage memory exceeds
/// `opts.mem_bytes`, or whose results exceed `opts.disk_free_bytes`.
pub(crate) fn check_resources(
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

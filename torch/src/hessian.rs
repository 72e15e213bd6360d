//! Hessian-vector products on libtorch, and the hessian stage's loop over
//! checkpoints (Lanczos from `stages::lanczos`). Parameters and outputs are
//! described in `stages::hessian`.

use crate::mlp::ArchExt;
use crate::runtime::kind as torch_kind;
use crate::train::tensor_f64;
use stages::arrow_io::{
    col_bool, col_f64, col_i32, col_i64, col_str, list_f64_opt, write_batch, ArrayRef, VectorColumn,
};

use stages::dataset;
use stages::error::{fmt_err, io_err, StageError, StageResult};
use stages::hessian::{preconditioner_inv_sqrt, HessianParams, NullParams, Operator, VectorDtype};
use stages::lanczos::{lanczos, LanczosOptions};
use stages::mlp::Arch;
use stages::optim::OptimizerParams;
use stages::train::read_checkpoint;
use stages::Progress;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// H·v for the MLP loss at one θ, over fixed rows, by double backprop.
///
/// Without chunks the first-order graph (∇L with its history) is built once
/// and every product is one backward pass through it. With `chunk_rows`,
/// each product runs forward and double backward chunk by chunk, weighting
/// each chunk's mean loss by its share of the rows: memory stays bounded by
/// the chunk, and the sum is the same H·v (up to rounding).
pub struct HessianOperator {
    arch: Arch,
    theta: Tensor,
    x: Tensor,
    y: Tensor,
    /// The cached first-order graph (no chunks).
    grad: Option<Tensor>,
    chunk_rows: Option<usize>,
    kind: Kind,
    device: Device,
    pub products: usize,
}

impl HessianOperator {
    pub fn new(
        arch: &Arch,
        theta: &[f64],
        x: &Tensor,
        y: &Tensor,
        kind: Kind,
        device: Device,
    ) -> HessianOperator {
        Self::with_chunks(arch, theta, x, y, kind, device, None)
    }

    pub fn with_chunks(
        arch: &Arch,
        theta: &[f64],
        x: &Tensor,
        y: &Tensor,
        kind: Kind,
        device: Device,
        chunk_rows: Option<usize>,
    ) -> HessianOperator {
        let theta = Tensor::from_slice(theta)
            .to_kind(kind)
            .to_device(device)
            .set_requires_grad(true);
        let n = x.size()[0] as usize;
        let chunk_rows = chunk_rows.filter(|&c| c > 0 && c < n);
        let grad = if chunk_rows.is_none() {
            let loss = arch.loss(&theta, x, y);
            Some(Tensor::run_backward(&[&loss], &[&theta], true, true).remove(0))
        } else {
            None
        };
        HessianOperator {
            arch: arch.clone(),
            theta,
            x: x.shallow_clone(),
            y: y.shallow_clone(),
            grad,
            chunk_rows,
            kind,
            device,
            products: 0,
        }
    }

    /// The gradient ∇L(θ).
    pub fn gradient(&self) -> Vec<f64> {
        match &self.grad {
            Some(g) => tensor_f64(&g.detach()),
            None => {
                let loss = self.arch.loss(&self.theta, &self.x, &self.y);
                tensor_f64(&Tensor::run_backward(&[&loss], &[&self.theta], false, false).remove(0))
            }
        }
    }

    pub fn apply_tensor(&mut self, v: &Tensor) -> Tensor {
        self.products += 1;
        if let Some(g) = &self.grad {
            let gv = (g * v).sum(self.kind);
            return Tensor::run_backward(&[&gv], &[&self.theta], true, false).remove(0);
        }
        let n = self.x.size()[0];
        let c = self.chunk_rows.expect("chunked") as i64;
        let mut total = self.theta.zeros_like().detach();
        let mut start = 0;
        while start < n {
            let len = c.min(n - start);
            let xc = self.x.narrow(0, start, len);
            let yc = self.y.narrow(0, start, len);
            let loss = self.arch.loss(&self.theta, &xc, &yc) * (len as f64 / n as f64);
            let g = Tensor::run_backward(&[&loss], &[&self.theta], true, true).remove(0);
            let gv = (&g * v).sum(self.kind);
            let hv = Tensor::run_backward(&[&gv], &[&self.theta], false, false).remove(0);
            total += hv;
            start += len;
        }
        total
    }

    pub fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        let vt = Tensor::from_slice(v)
            .to_kind(self.kind)
            .to_device(self.device);
        let hv = self.apply_tensor(&vt);
        out.copy_from_slice(&tensor_f64(&hv));
    }
}

/// The product H·v the stages use: the R-operator (one forward state, no
/// autograd graph; 1.3× faster per product than double backprop here, see
/// `eigentrace bench hessian`), or chunked double backprop when memory must
/// stay bounded.
pub enum Hvp {
    Rop(crate::rop::RopOperator),
    Autograd(HessianOperator),
}

impl Hvp {
    pub fn new(
        arch: &Arch,
        theta: &[f64],
        x: &Tensor,
        y: &Tensor,
        kind: Kind,
        dev: Device,
        chunk_rows: Option<usize>,
    ) -> Hvp {
        match chunk_rows {
            Some(_) => Hvp::Autograd(HessianOperator::with_chunks(
                arch, theta, x, y, kind, dev, chunk_rows,
            )),
            None => {
                let t = Tensor::from_slice(theta).to_kind(kind).to_device(dev);
                Hvp::Rop(crate::rop::RopOperator::new(arch, &t, x, y))
            }
        }
    }

    pub fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        match self {
            Hvp::Rop(r) => r.apply(v, out),
            Hvp::Autograd(a) => a.apply(v, out),
        }
    }

    /// H·X for a block of vectors: one batched pass with the R-operator,
    /// one product per vector with double backprop.
    pub fn apply_block(&mut self, xs: &[Vec<f64>], ys: &mut [Vec<f64>]) {
        match self {
            Hvp::Rop(r) => r.apply_vecs(xs, ys),
            Hvp::Autograd(a) => {
                for (x, y) in xs.iter().zip(ys.iter_mut()) {
                    a.apply(x, y);
                }
            }
        }
    }

    /// The product X ↦ A·X of one operator (the Hessian, the GGN or the
    /// empirical Fisher), as Lanczos, the trace estimators and SLQ take it.
    /// The GGN and the Fisher have only the R-operator's form: with
    /// `chunk_rows` they are refused here, before any product is taken (the
    /// config check refuses them first).
    pub fn product(&mut self, op: Operator) -> StageResult<Box<stages::lanczos::BlockOp<'_>>> {
        if matches!(self, Hvp::Autograd(_)) && op != Operator::Hessian {
            return Err(StageError::Param {
                field: "hessian.operators".into(),
                msg: format!(
                    "\"{}\" has no chunked product; drop hessian.chunk_rows or the operator",
                    op.name()
                ),
            });
        }
        Ok(Box::new(
            move |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| match self {
                Hvp::Rop(r) => r.apply_operator_vecs(op, xs, ys),
                Hvp::Autograd(a) => {
                    for (x, y) in xs.iter().zip(ys.iter_mut()) {
                        a.apply(x, y);
                    }
                }
            },
        ))
    }

    /// H·X for the block, or D (H + wd·I) D·X when a diagonal scaling `d`
    /// is given (the preconditioned operator D^{-1/2}(H + wd·I)D^{-1/2}, with
    /// the L2 weight decay `wd` the update adds to the gradient).
    pub fn apply_scaled(
        &mut self,
        d: Option<&[f64]>,
        wd: f64,
        xs: &[Vec<f64>],
        ys: &mut [Vec<f64>],
    ) {
        let Some(d) = d else {
            return self.apply_block(xs, ys);
        };
        let scaled: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| x.iter().zip(d).map(|(a, b)| a * b).collect())
            .collect();
        self.apply_block(&scaled, ys);
        for (y, x) in ys.iter_mut().zip(&scaled) {
            y.iter_mut()
                .zip(d)
                .zip(x)
                .for_each(|((a, b), xs)| *a = (*a + wd * xs) * b);
        }
    }
}

/// How far apart two products of the operator can be for one direction,
/// from rounding alone: ‖A(v/3)·3 − Av‖ and ‖A(v·√2)/√2 − Av‖ for a seeded
/// random unit v (the same product, with other mantissas at every rounding),
/// the larger of the two, times [`ROUNDING_SAFETY`]. An eigenvalue whose
/// magnitude is below it, or a residual, is not resolved by this arithmetic.
/// Three products.
pub fn rounding_level(n: usize, seed: u64, op: &mut stages::lanczos::BlockOp<'_>) -> f64 {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_7a0d);
    let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    let r2 = std::f64::consts::SQRT_2;
    let xs = vec![
        v.clone(),
        v.iter().map(|x| x / 3.0).collect(),
        v.iter().map(|x| x * r2).collect(),
    ];
    let mut ys = vec![vec![0.0; n]; 3];
    op(&xs, &mut ys);
    let diff = |y: &[f64], s: f64| -> f64 {
        y.iter()
            .zip(&ys[0])
            .map(|(a, b)| (a * s - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    ROUNDING_SAFETY * diff(&ys[1], 3.0).max(diff(&ys[2], 1.0 / r2))
}

/// w = D^{-1/2}u / ‖D^{-1/2}u‖: an eigenvector u of the preconditioned
/// operator D^{-1/2} H D^{-1/2} as a direction in parameter space (the one
/// the update moves along: Δθ = −η D^{-1} g, so θ's coordinates are D^{-1/2}
/// times the scaled ones).
pub fn parameter_direction(d_inv_sqrt: &[f64], u: &[f64]) -> Vec<f64> {
    let w: Vec<f64> = u.iter().zip(d_inv_sqrt).map(|(a, b)| a * b).collect();
    let n = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    w.iter().map(|x| x / n).collect()
}

/// The factor between the measured spread of two products and the rounding
/// level reported: an eigenvalue must stand this far clear of the noise.
pub const ROUNDING_SAFETY: f64 = 10.0;

/// The analysis set: the first `m` train rows.
pub fn analysis_set(
    ds: &dataset::Dataset,
    m: Option<usize>,
    kind: Kind,
    dev: Device,
) -> StageResult<(Tensor, Tensor)> {
    let (x, y) = ds.split(true);
    let n = y.len();
    let m = m.unwrap_or(n);
    if m == 0 || m > n {
        return Err(StageError::Param {
            field: "hessian.analysis_size".into(),
            msg: format!("must be in 1..={n} (the train split's size), got {m}"),
        });
    }
    let xt = Tensor::from_slice(&x[..m * ds.dim])
        .view([m as i64, ds.dim as i64])
        .to_kind(kind)
        .to_device(dev);
    let yt = Tensor::from_slice(&y[..m]).to_device(dev);
    Ok((xt, yt))
}

/// Lanczos, or thick-restart Lanczos with a bounded basis when `max_basis`
/// is given (`hessian.max_basis`).
fn eigenpairs(
    n: usize,
    op: &mut stages::lanczos::BlockOp<'_>,
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
    max_basis: Option<usize>,
) -> stages::lanczos::LanczosResult {
    match max_basis {
        Some(m) => stages::lanczos::lanczos_restarted(n, op, opts, start, m),
        None => lanczos(n, op, opts, start),
    }
}

/// Run the hessian stage. `checkpoints` are (step, path) pairs.
#[allow(clippy::too_many_arguments)]
pub fn run(
    p: &HessianParams,
    arch: &Arch,
    optimizer: &OptimizerParams,
    data: &Path,
    checkpoints: &[(u64, &Path)],
    train_config: &str,
    dev: Device,
    out: &Path,
    progress: Progress<'_>,
) -> StageResult<serde_json::Value> {
    let ds = dataset::read(data)?;
    let kind = torch_kind(p.dtype);
    let (x, y) = analysis_set(&ds, p.analysis_size, kind, dev)?;
    let n = arch.num_params();
    if p.k == 0 || p.k >= n {
        return Err(StageError::Param {
            field: "hessian.k".into(),
            msg: format!("must be in 1..{n} (P = {n} parameters), got {}", p.k),
        });
    }
    let mut rows = Rows::with_vectors(p.vector_dtype);
    let mut grads = Gradients::default();
    let mut traces = Traces::default();
    let mut densities = Densities::default();
    let mut layer_rows = LayerRows::default();
    let trace_blocks = layer_blocks(arch);
    let mut backprop = crate::backprop::Backprop::new(arch, kind, dev);
    let mut total_hvps = 0usize;
    // The previous checkpoint's vectors, per operator, for the warm start.
    let mut previous: BTreeMap<&'static str, Vec<Vec<f64>>> = BTreeMap::new();
    // The checkpoints whose vectors and gradient are stored
    // (`hessian.keep_vectors`; every one by default).
    let (first, last) = (
        checkpoints.first().map_or(0, |c| c.0),
        checkpoints.last().map_or(0, |c| c.0),
    );
    for (ci, (step, path)) in checkpoints.iter().enumerate() {
        let keep = p.keep_vectors.keeps(*step, first, last);
        let ck = read_checkpoint(path)?;
        let theta = ck
            .get("theta_f64")
            .or_else(|| ck.get("theta"))
            .ok_or_else(|| fmt_err(path, "no tensor `theta`"))?;
        if theta.len() != n {
            return Err(fmt_err(
                path,
                format!(
                    "theta has {} entries, the architecture has {n}",
                    theta.len()
                ),
            ));
        }
        if theta.iter().any(|v| !v.is_finite()) {
            continue; // a diverged run's last state: no spectrum to speak of
        }
        grads.push(*step, &mut backprop, arch, theta, &x, &y, keep);
        let mut op = Hvp::new(arch, theta, &x, &y, kind, dev, p.chunk_rows);
        let opts = LanczosOptions {
            k: p.k,
            which: p.which,
            tol: p.tol(),
            abs_tol: 0.0,
            max_iter: p.max_iter,
            seed: p.seed.wrapping_add(*step),
            block: p.block,
            f32_basis: p.dtype == stages::runtime::Dtype::F32,
        };
        // Each operator once, in the config's order, then the preconditioned
        // Hessian: (name, which product, the diagonal scaling if any).
        let mut operators: Vec<(&'static str, Operator, Option<Vec<f64>>)> =
            p.operators.iter().map(|&o| (o.name(), o, None)).collect();
        let wd = stages::hessian::coupled_weight_decay(optimizer);
        if p.preconditioned {
            if let Some(d) = preconditioner_inv_sqrt(optimizer, &ck) {
                operators.push(("preconditioned", Operator::Hessian, Some(d)));
            }
        }
        for (name, product, scale) in operators {
            let start = if p.warm_start {
                previous.get(name).map(Vec::as_slice)
            } else {
                None
            };
            let mut apply: Box<stages::lanczos::BlockOp<'_>> = match &scale {
                Some(d) => Box::new(|xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
                    op.apply_scaled(Some(d), wd, xs, ys)
                }),
                None => op.product(product)?,
            };
            // The operator's rounding level: the stop test's floor, and
            // what each eigenvalue must stand clear of to be resolved.
            let level = rounding_level(n, opts.seed, &mut apply);
            let opts = LanczosOptions {
                abs_tol: level,
                ..opts.clone()
            };
            let r = eigenpairs(n, &mut apply, &opts, start, p.max_basis);
            drop(apply);
            if r.pairs.iter().any(|q| !q.value.is_finite()) {
                continue;
            }
            total_hvps += r.hvps + 3;
            for pair in &r.pairs {
                // The preconditioned operator's eigenvectors u live in scaled
                // coordinates; what is stored (and analysed) is the
                // parameter-space direction w = D^{-1/2}u / ‖D^{-1/2}u‖.
                let stored = match &scale {
                    Some(d) => stages::lanczos::EigenPair {
                        vector: parameter_direction(d, &pair.vector),
                        ..pair.clone()
                    },
                    None => pair.clone(),
                };
                rows.push(
                    *step,
                    name,
                    &stored,
                    r.hvps + 3,
                    r.iterations,
                    r.converged,
                    level,
                    keep,
                );
            }
            previous.insert(
                name,
                r.pairs
                    .iter()
                    .filter(|q| q.rank >= 0)
                    .map(|q| q.vector.clone())
                    .collect(),
            );
        }
        if p.layers {
            let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| op.apply_block(xs, ys);
            for (layer, level, r) in layer_block_eigs(arch, &mut apply, &opts, p.max_basis) {
                total_hvps += r.hvps + 3;
                for pair in r.pairs.iter().filter(|q| q.value.is_finite()) {
                    layer_rows.layer.push(layer);
                    layer_rows.rows.push(
                        *step,
                        "hessian",
                        pair,
                        r.hvps + 3,
                        r.iterations,
                        r.converged,
                        level,
                        false,
                    );
                }
            }
        }
        if let Some(tp) = &p.trace {
            // The exact traces first: the operators' diagonals by Hessian
            // backpropagation, no products (`RopOperator::diagonal`).
            if tp.exact {
                let owned;
                let rop = match &op {
                    Hvp::Rop(r) => r,
                    Hvp::Autograd(_) => {
                        let t = Tensor::from_slice(theta).to_kind(kind).to_device(dev);
                        owned = crate::rop::RopOperator::new(arch, &t, &x, &y);
                        &owned
                    }
                };
                for &o in &p.operators {
                    let diag = crate::train::tensor_f64(&rop.diagonal(o, diagonal_chunk(arch)));
                    let exact = |r: std::ops::Range<usize>| stages::trace::Estimate {
                        value: diag[r].iter().sum(),
                        std_error: 0.0,
                        matvecs: 0,
                    };
                    traces.push(*step, o.name(), "exact", -1, "all", &exact(0..n));
                    for (layer, block, r) in &trace_blocks {
                        traces.push(*step, o.name(), "exact", *layer, block, &exact(r.clone()));
                    }
                }
            }
            for (oi, &o) in p.operators.iter().enumerate() {
                let mut apply = op.product(o)?;
                let seed = p.seed.wrapping_add(*step) ^ ((oi as u64) << 40);
                let ranges: Vec<std::ops::Range<usize>> =
                    trace_blocks.iter().map(|(_, _, r)| r.clone()).collect();
                let (h, per_block) = stages::trace::hutchinson(
                    n,
                    &mut apply,
                    tp.matvecs,
                    seed,
                    &ranges,
                    TRACE_BATCH,
                );
                let pp = stages::trace::hutch_pp(n, &mut apply, tp.matvecs, seed, TRACE_BATCH);
                total_hvps += h.matvecs + pp.matvecs;
                traces.push(*step, o.name(), "hutchinson", -1, "all", &h);
                traces.push(*step, o.name(), "hutch++", -1, "all", &pp);
                for ((layer, block, _), e) in trace_blocks.iter().zip(&per_block) {
                    traces.push(*step, o.name(), "hutchinson", *layer, block, e);
                }
            }
        }
        if let Some(dp) = &p.density {
            for (oi, &o) in p.operators.iter().enumerate() {
                let mut apply = op.product(o)?;
                let seed = p.seed.wrapping_add(*step) ^ ((oi as u64) << 40);
                let rules = stages::density::slq(n, &mut apply, dp.probes, dp.steps, seed);
                total_hvps += rules.iter().map(|r| r.nodes.len()).sum::<usize>();
                densities.push(*step, o.name(), &rules, dp);
            }
        }
        progress(ci as u64 + 1, checkpoints.len() as u64, "checkpoints");
    }
    rows.write(out, "eigen", "step")?;
    if p.density.is_some() {
        densities.write(out)?;
    }
    if p.layers {
        layer_rows.write(&out.join("eigen/layer_values.arrow"))?;
    }
    grads.write(out)?;
    if p.trace.is_some() {
        traces.write(&out.join("eigen/trace.arrow"))?;
    }
    // config.toml: the train stage's resolved config plus ours.
    let mut cfg: toml::Table = toml::from_str(train_config)
        .map_err(|e| StageError::Other(format!("train_config.toml: {e}")))?;
    let ours =
        toml::Table::try_from(p).map_err(|e| StageError::Other(format!("hessian params: {e}")))?;
    cfg.insert("hessian".into(), toml::Value::Table(ours));
    let text = toml::to_string_pretty(&cfg).map_err(|e| StageError::Other(e.to_string()))?;
    std::fs::write(out.join("config.toml"), text).map_err(io_err(out.join("config.toml")))?;
    Ok(serde_json::json!({ "hvps": total_hvps, "checkpoints": checkpoints.len() }))
}

/// `eigen/density.arrow` (step, operator, lambda, density: the broadened
/// SLQ density on its grid) and `eigen/density_nodes.arrow` (step,
/// operator, probe, node, weight: the quadrature rules, to re-broaden).
#[derive(Default)]
struct Densities {
    step: Vec<i64>,
    operator: Vec<&'static str>,
    lambda: Vec<f64>,
    density: Vec<f64>,
    n_step: Vec<i64>,
    n_operator: Vec<&'static str>,
    n_probe: Vec<i32>,
    node: Vec<f64>,
    weight: Vec<f64>,
}

impl Densities {
    fn push(
        &mut self,
        step: u64,
        op: &'static str,
        rules: &[stages::density::Quadrature],
        dp: &stages::density::DensityParams,
    ) {
        let (lambda, density) = stages::density::broaden(rules, dp.grid, dp.sigma);
        self.step
            .extend(std::iter::repeat_n(step as i64, lambda.len()));
        self.operator.extend(std::iter::repeat_n(op, lambda.len()));
        self.lambda.extend(lambda);
        self.density.extend(density);
        for (pi, r) in rules.iter().enumerate() {
            for (x, w) in r.nodes.iter().zip(&r.weights) {
                self.n_step.push(step as i64);
                self.n_operator.push(op);
                self.n_probe.push(pi as i32);
                self.node.push(*x);
                self.weight.push(*w);
            }
        }
    }

    fn write(self, out: &Path) -> StageResult<()> {
        write_batch(
            &out.join("eigen/density.arrow"),
            vec![
                ("step", col_i64(self.step)),
                ("operator", col_str(&self.operator)),
                ("lambda", col_f64(self.lambda)),
                ("density", col_f64(self.density)),
            ],
            false,
        )?;
        write_batch(
            &out.join("eigen/density_nodes.arrow"),
            vec![
                ("step", col_i64(self.n_step)),
                ("operator", col_str(&self.n_operator)),
                ("probe", col_i32(self.n_probe)),
                ("node", col_f64(self.node)),
                ("weight", col_f64(self.weight)),
            ],
            false,
        )
    }
}

/// The top eigenpairs of each layer's diagonal block H_ll (its weights and
/// bias), by Lanczos on the block's own products: x ↦ (A [0 … x … 0])_l, the
/// full operator `op` applied to x embedded in θ, read back on the block.
/// k is capped at the block's size − 1; blocks of one parameter are
/// skipped. Each block's rounding level is measured like the full
/// operator's. Returns (layer, level, result) per layer.
pub fn layer_block_eigs(
    arch: &Arch,
    op: &mut stages::lanczos::BlockOp<'_>,
    opts: &LanczosOptions,
    max_basis: Option<usize>,
) -> Vec<(i64, f64, stages::lanczos::LanczosResult)> {
    let n = arch.num_params();
    let mut out = Vec::new();
    for (layer, block, range) in layer_blocks(arch) {
        if block != "all" || range.len() < 2 {
            continue;
        }
        let m = range.len();
        let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
            let full: Vec<Vec<f64>> = xs
                .iter()
                .map(|x| {
                    let mut v = vec![0.0; n];
                    v[range.clone()].copy_from_slice(x);
                    v
                })
                .collect();
            let mut res = vec![vec![0.0; n]; xs.len()];
            op(&full, &mut res);
            for (y, r) in ys.iter_mut().zip(&res) {
                y.copy_from_slice(&r[range.clone()]);
            }
        };
        let seed = opts.seed ^ ((layer as u64 + 1) << 48);
        let level = rounding_level(m, seed, &mut apply);
        let o = LanczosOptions {
            k: opts.k.min(m - 1),
            abs_tol: level,
            max_iter: opts.max_iter.min(m),
            seed,
            ..opts.clone()
        };
        let bound = max_basis.map(|b| b.min(m));
        out.push((layer, level, eigenpairs(m, &mut apply, &o, None, bound)));
    }
    out
}

/// `eigen/layer_values.arrow`: `values.arrow`'s columns with `layer` after
/// `operator`: the top-k of each layer's diagonal block. (Its vectors are
/// not stored.)
#[derive(Default)]
struct LayerRows {
    layer: Vec<i64>,
    rows: Rows,
}

impl LayerRows {
    fn write(self, path: &Path) -> StageResult<()> {
        let mut cols = self.rows.value_columns("step");
        cols.insert(2, ("layer", col_i64(self.layer)));
        write_batch(path, cols, false)
    }
}

/// Vectors per batched product in the trace estimators.
pub const TRACE_BATCH: usize = 16;

/// Rows per chunk of the exact diagonal: its per-row curvature matrices take
/// rows × width² numbers; about 4M of them (32 MB in f64) at a time.
pub fn diagonal_chunk(arch: &Arch) -> usize {
    let w = arch.widths[1..].iter().copied().max().unwrap_or(1).max(1);
    ((4usize << 20) / (w * w)).max(1)
}

/// Each layer's diagonal blocks for the per-layer traces: (layer, "all" |
/// "weight" | "bias", coordinate range). A layer's weights and bias are
/// contiguous in θ (weights first).
fn layer_blocks(arch: &Arch) -> Vec<(i64, &'static str, std::ops::Range<usize>)> {
    let map = arch.param_map();
    let mut out = Vec::new();
    for pair in map.chunks(2) {
        let (w, b) = (&pair[0], &pair[1]);
        let l = w.layer as i64;
        out.push((l, "all", w.offset..b.offset + b.numel));
        out.push((l, "weight", w.offset..w.offset + w.numel));
        out.push((l, "bias", b.offset..b.offset + b.numel));
    }
    out
}

/// `eigen/trace.arrow`: step, operator, method ("hutchinson" | "hutch++"),
/// layer (−1: every parameter), block ("all" | "weight" | "bias"), trace,
/// std_error, matvecs.
#[derive(Default)]
struct Traces {
    step: Vec<i64>,
    operator: Vec<&'static str>,
    method: Vec<&'static str>,
    layer: Vec<i64>,
    block: Vec<&'static str>,
    trace: Vec<f64>,
    std_error: Vec<f64>,
    matvecs: Vec<i64>,
}

impl Traces {
    fn push(
        &mut self,
        step: u64,
        op: &'static str,
        method: &'static str,
        layer: i64,
        block: &'static str,
        e: &stages::trace::Estimate,
    ) {
        self.step.push(step as i64);
        self.operator.push(op);
        self.method.push(method);
        self.layer.push(layer);
        self.block.push(block);
        self.trace.push(e.value);
        self.std_error.push(e.std_error);
        self.matvecs.push(e.matvecs as i64);
    }

    fn write(self, path: &Path) -> StageResult<()> {
        write_batch(
            path,
            vec![
                ("step", col_i64(self.step)),
                ("operator", col_str(&self.operator)),
                ("method", col_str(&self.method)),
                ("layer", col_i64(self.layer)),
                ("block", col_str(&self.block)),
                ("trace", col_f64(self.trace)),
                ("std_error", col_f64(self.std_error)),
                ("matvecs", col_i64(self.matvecs)),
            ],
            false,
        )
    }
}

/// The loss, its gradient and the margins on the analysis set at each
/// checkpoint: the same rows the Hessian is taken on, so that the metrics
/// stage's gradient alignment compares a gradient with the eigenvectors of
/// its own Hessian, and a reader can see how saturated those rows are.
#[derive(Default)]
struct Gradients {
    step: Vec<i64>,
    loss: Vec<f64>,
    norm: Vec<f64>,
    margins: [Vec<f64>; 3],
    /// None where the vectors are not kept (`hessian.keep_vectors`): the
    /// gradient is for the alignment with them.
    gradient: Vec<Option<Vec<f64>>>,
}

impl Gradients {
    /// ∇L(θ) over the analysis set (the stable cross-entropy of
    /// `crate::backprop`), without weight decay: the loss's own gradient;
    /// and the rows' margins z_c − max_{j≠c} z_j (minimum, 1st percentile,
    /// median). The gradient itself is stored only when `keep`.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: u64,
        bp: &mut crate::backprop::Backprop,
        arch: &Arch,
        theta: &[f64],
        x: &Tensor,
        y: &Tensor,
        keep: bool,
    ) {
        let t = Tensor::from_slice(theta)
            .to_kind(x.kind())
            .to_device(x.device());
        let g = t.zeros_like();
        let loss = bp.loss_and_grad(&t, x, y, &g);
        let g = tensor_f64(&g);
        let m = crate::train::margin_summary(arch, &t, x, y);
        for (col, v) in self.margins.iter_mut().zip(m) {
            col.push(v);
        }
        self.step.push(step as i64);
        self.loss.push(loss);
        self.norm.push(g.iter().map(|v| v * v).sum::<f64>().sqrt());
        self.gradient.push(keep.then_some(g));
    }

    /// `eigen/gradient.arrow`: step, loss, grad_norm, margin_min,
    /// margin_p01, margin_median, gradient (list<f64>, null where not kept).
    fn write(self, out: &Path) -> StageResult<()> {
        let [m_min, m_p01, m_median] = self.margins;
        write_batch(
            &out.join("eigen/gradient.arrow"),
            vec![
                ("step", col_i64(self.step)),
                ("loss", col_f64(self.loss)),
                ("grad_norm", col_f64(self.norm)),
                ("margin_min", col_f64(m_min)),
                ("margin_p01", col_f64(m_p01)),
                ("margin_median", col_f64(m_median)),
                ("gradient", list_f64_opt(&self.gradient)),
            ],
            true,
        )
    }
}

/// The rows of `values.arrow`, and of `vectors.arrow` where vectors are
/// kept: every pair has a value row; a vector row only where
/// [`Rows::push`] is told to keep it (`hessian.keep_vectors`), and never
/// for rows made without a [`VectorColumn`] (the layer blocks').
#[derive(Default)]
struct Rows {
    step: Vec<i64>,
    operator: Vec<&'static str>,
    rank: Vec<i32>,
    value: Vec<f64>,
    residual: Vec<f64>,
    hvps: Vec<i64>,
    iterations: Vec<i64>,
    converged: Vec<bool>,
    resolvable: Vec<bool>,
    rounding_level: Vec<f64>,
    vectors: Option<VectorRows>,
}

/// `vectors.arrow`'s rows: the index, operator and rank of each stored vector.
struct VectorRows {
    step: Vec<i64>,
    operator: Vec<&'static str>,
    rank: Vec<i32>,
    column: VectorColumn,
}

impl Rows {
    /// Rows whose vectors are stored as `dtype`.
    fn with_vectors(dtype: VectorDtype) -> Rows {
        Rows {
            vectors: Some(VectorRows {
                step: Vec::new(),
                operator: Vec::new(),
                rank: Vec::new(),
                column: VectorColumn::new(dtype),
            }),
            ..Rows::default()
        }
    }

    /// One pair of a Lanczos run. `level` is the operator's rounding level
    /// at that checkpoint ([`rounding_level`]): the pair is resolvable when
    /// its eigenvalue stands clear of it (|λ| > level). Its vector is stored
    /// when `keep`.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: u64,
        op: &'static str,
        pair: &stages::lanczos::EigenPair,
        hvps: usize,
        iters: usize,
        conv: bool,
        level: f64,
        keep: bool,
    ) {
        self.step.push(step as i64);
        self.operator.push(op);
        self.rank.push(pair.rank);
        self.value.push(pair.value);
        self.residual.push(pair.residual);
        self.hvps.push(hvps as i64);
        self.iterations.push(iters as i64);
        self.converged.push(conv);
        self.resolvable.push(pair.value.abs() > level);
        self.rounding_level.push(level);
        if let (true, Some(v)) = (keep, &mut self.vectors) {
            v.step.push(step as i64);
            v.operator.push(op);
            v.rank.push(pair.rank);
            v.column.push(&pair.vector);
        }
    }

    /// `values.arrow`'s columns, the first named `index`.
    fn value_columns(self, index: &str) -> Vec<(&str, ArrayRef)> {
        vec![
            (index, col_i64(self.step)),
            ("operator", col_str(&self.operator)),
            ("rank", col_i32(self.rank)),
            ("eigenvalue", col_f64(self.value)),
            ("residual", col_f64(self.residual)),
            ("hvps", col_i64(self.hvps)),
            ("iterations", col_i64(self.iterations)),
            ("converged", col_bool(self.converged)),
            ("resolvable", col_bool(self.resolvable)),
            ("rounding_level", col_f64(self.rounding_level)),
        ]
    }

    /// `dir/values.arrow` and `dir/vectors.arrow`, the first column named `index`
    /// (`step` for checkpoints, `replica` for the null model).
    fn write(mut self, out: &Path, dir: &str, index: &str) -> StageResult<()> {
        let v = self.vectors.take();
        write_batch(
            &out.join(dir).join("values.arrow"),
            self.value_columns(index),
            false,
        )?;
        let Some(v) = v else {
            return Ok(());
        };
        write_batch(
            &out.join(dir).join("vectors.arrow"),
            vec![
                (index, col_i64(v.step)),
                ("operator", col_str(&v.operator)),
                ("rank", col_i32(v.rank)),
                ("vector", v.column.into_array()),
            ],
            true,
        )
    }
}

/// The null stage: the top-k eigenpairs of H at `replicas` fresh random
/// initializations of the same architecture, on the same analysis set: the
/// architecture-induced null model of docs/science.md. Outputs
/// `null/values.arrow` and `null/vectors.arrow` (column `replica` instead of `step`).
pub fn run_null(
    p: &NullParams,
    data: &Path,
    dev: Device,
    out: &Path,
    progress: Progress<'_>,
) -> StageResult<serde_json::Value> {
    let ds = dataset::read(data)?;
    let kind = torch_kind(p.dtype);
    let (x, y) = analysis_set(&ds, p.analysis_size, kind, dev)?;
    let n = p.arch.num_params();
    let mut rows = Rows::with_vectors(p.vector_dtype);
    let mut total = 0usize;
    for r in 0..p.replicas {
        // Seeds of their own, never those of a training run.
        let theta = p
            .arch
            .init(p.init, p.seed.wrapping_add(1_000_003 * (r as u64 + 1)));
        let mut op = Hvp::new(&p.arch, &theta, &x, &y, kind, dev, p.chunk_rows);
        let opts = LanczosOptions {
            k: p.k,
            which: p.which,
            tol: p.tol,
            abs_tol: 0.0,
            max_iter: p.max_iter,
            seed: p.seed.wrapping_add(r as u64),
            block: p.block,
            f32_basis: p.dtype == stages::runtime::Dtype::F32,
        };
        let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| op.apply_block(xs, ys);
        let level = rounding_level(n, opts.seed, &mut apply);
        let opts = LanczosOptions {
            abs_tol: level,
            ..opts
        };
        let res = eigenpairs(n, &mut apply, &opts, None, p.max_basis);
        total += res.hvps + 3;
        for pair in &res.pairs {
            rows.push(
                r as u64,
                "hessian",
                pair,
                res.hvps + 3,
                res.iterations,
                res.converged,
                level,
                true,
            );
        }
        progress(r as u64 + 1, p.replicas as u64, "replicas");
    }
    rows.write(out, "null", "replica")?;
    Ok(serde_json::json!({ "replicas": p.replicas, "hvps": total }))
}

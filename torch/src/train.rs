//! The training loop on libtorch, and the checkpoint writer. Parameters and
//! the checkpoint format are `stages::train`'s.

use crate::backprop::Backprop;
use crate::mlp::ArchExt;
use crate::optim::Optimizer;
use crate::runtime::kind as torch_kind;
use stages::arrow_io::{col_bool, col_f64, col_i64, write_batch};
use stages::dataset::{self, Dataset};
use stages::error::{io_err, StageError, StageResult};
use stages::mlp::{write_param_map, Arch};
use stages::train::{checkpoint_name, TrainParams, TrainSummary};
use stages::Progress;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn to_tensor(x: &[f32], rows: usize, dim: usize, kind: Kind, dev: Device) -> Tensor {
    Tensor::from_slice(x)
        .view([rows as i64, dim as i64])
        .to_kind(kind)
        .to_device(dev)
}

/// Train split and test split as tensors on `dev`.
pub struct Splits {
    pub x_train: Tensor,
    pub y_train: Tensor,
    pub x_test: Tensor,
    pub y_test: Tensor,
}

pub fn splits(ds: &Dataset, kind: Kind, dev: Device) -> Splits {
    let (xt, yt) = ds.split(true);
    let (xs, ys) = ds.split(false);
    Splits {
        x_train: to_tensor(&xt, yt.len(), ds.dim, kind, dev),
        y_train: Tensor::from_slice(&yt).to_device(dev),
        x_test: to_tensor(&xs, ys.len(), ds.dim, kind, dev),
        y_test: Tensor::from_slice(&ys).to_device(dev),
    }
}

pub fn tensor_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(
        &t.to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]),
    )
    .expect("f32 tensor")
}

pub fn tensor_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        &t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]),
    )
    .expect("f64 tensor")
}

/// Write a safetensors checkpoint (tensors sorted by name; metadata: step).
pub fn write_checkpoint(
    path: &Path,
    step: u64,
    tensors: &BTreeMap<String, Tensor>,
) -> StageResult<()> {
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let shape: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
        let (dtype, bytes) = match t.kind() {
            Kind::Double => {
                let v = tensor_f64(t);
                (
                    safetensors::Dtype::F64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            }
            Kind::Int64 => {
                let v = Vec::<i64>::try_from(&t.to_device(Device::Cpu).contiguous().view([-1]))
                    .expect("i64");
                (
                    safetensors::Dtype::I64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            }
            _ => {
                let v = tensor_f32(t);
                (
                    safetensors::Dtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            }
        };
        owned.push((name.clone(), dtype, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("consistent view"),
            )
        })
        .collect();
    let meta = std::collections::HashMap::from([("step".to_string(), step.to_string())]);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    safetensors::tensor::serialize_to_file(views, Some(meta), path)
        .map_err(|e| StageError::Other(format!("{}: {e}", path.display())))
}

/// Run the train stage into `out`.
pub fn run(
    p: &TrainParams,
    data: &Path,
    dev: Device,
    out: &Path,
    progress: Progress<'_>,
) -> StageResult<TrainSummary> {
    let ds = dataset::read(data)?;
    if p.arch.widths.first() != Some(&ds.dim) || p.arch.widths.last() != Some(&ds.classes) {
        return Err(StageError::Param {
            field: "model.widths".into(),
            msg: format!(
                "{:?} does not fit the dataset: the first width must be its dim ({}) and the last its classes ({})",
                p.arch.widths, ds.dim, ds.classes
            ),
        });
    }
    let kind = torch_kind(p.dtype);
    let s = splits(&ds, kind, dev);
    let n_train = s.y_train.size()[0];
    let arch = &p.arch;
    let theta0 = arch.init(p.init, p.seed);
    let theta = Tensor::from_slice(&theta0).to_kind(kind).to_device(dev);
    // Gradient buffers, reused every step (the gradient is computed by
    // backprop written out layer by layer: no autograd graph per step).
    let full_buf = theta.zeros_like();
    let batch_buf = theta.zeros_like();
    let mut full_bp = Backprop::new(arch, kind, dev);
    let mut batch_bp = Backprop::new(arch, kind, dev);
    let matrices = arch
        .param_map()
        .iter()
        .filter(|b| b.is_weight)
        .map(|b| (b.offset, b.shape[0], b.shape[1]))
        .collect();
    let mut opt = Optimizer::with_matrices(&p.optimizer, matrices);
    let ckpts: BTreeSet<u64> = p.checkpoints.steps(p.steps).into_iter().collect();
    let mut shuffle_rng = {
        use rand::SeedableRng;
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(p.seed);
        r.set_stream(0xba7c);
        r
    };
    let mut order: Vec<i64> = (0..n_train).collect();
    let mut cursor = order.len();

    let mut log = LogRows::default();
    let mut diverged_at = None;
    let mut written = Vec::new();
    for step in 0..=p.steps {
        let is_ckpt = ckpts.contains(&step);
        // Every checkpoint is a logged row too: figures against the train
        // loss read it there, not interpolated across a log interval.
        let is_log = step % p.log_every.max(1) == 0 || step == p.steps || is_ckpt;
        // Full-batch loss and gradient at θ_step (what we log and what the analysis sees).
        let need_full = is_log || is_ckpt || p.batch_size.is_none();
        let full_loss = if need_full {
            Some(full_bp.loss_and_grad(&theta, &s.x_train, &s.y_train, &full_buf))
        } else {
            None
        };
        let full_grad = full_loss
            .filter(|l| l.is_finite())
            .map(|_| full_buf.shallow_clone());
        let lr = p.schedule.lr(opt.p.lr, step, p.steps);
        if full_loss.is_some_and(|l| !l.is_finite()) {
            log.push_diverged(step, lr);
            diverged_at = Some(step);
            break;
        }
        if is_log {
            let (tl, ta) = arch.evaluate(&theta, &s.x_train, &s.y_train);
            let (vl, va) = arch.evaluate(&theta, &s.x_test, &s.y_test);
            let gn = full_grad
                .as_ref()
                .map(|g| g.norm().double_value(&[]))
                .unwrap_or(f64::NAN);
            log.push(step, tl, ta, vl, va, gn, lr, false);
            log.margins
                .push(margin_summary(arch, &theta, &s.x_train, &s.y_train));
        }
        let state_before = if is_ckpt {
            Some(opt.state_snapshot())
        } else {
            None
        };
        let theta_before = if is_ckpt { Some(theta.copy()) } else { None };
        if step < p.steps {
            let grad = match p.batch_size {
                None => full_grad.as_ref().expect("full batch").shallow_clone(),
                Some(b) => {
                    if cursor + b > order.len() {
                        use rand::seq::SliceRandom;
                        order.shuffle(&mut shuffle_rng);
                        cursor = 0;
                    }
                    let idx = Tensor::from_slice(&order[cursor..cursor + b]).to_device(dev);
                    cursor += b;
                    let xb = s.x_train.index_select(0, &idx);
                    let yb = s.y_train.index_select(0, &idx);
                    let lb = batch_bp.loss_and_grad(&theta, &xb, &yb, &batch_buf);
                    if !lb.is_finite() {
                        log.push_diverged(step, lr);
                        diverged_at = Some(step);
                        break;
                    }
                    batch_buf.shallow_clone()
                }
            };
            opt.step(&theta, &grad, lr);
        }
        if is_ckpt {
            let before = theta_before.expect("snapshot");
            let mut tensors = state_before.expect("snapshot");
            tensors.insert("theta".into(), before.to_kind(Kind::Float));
            if kind == Kind::Double {
                tensors.insert("theta_f64".into(), before.shallow_clone());
            }
            if let Some(g) = &full_grad {
                tensors.insert("grad".into(), g.copy());
            }
            if step < p.steps {
                tensors.insert("update".into(), &theta - &before);
            }
            tensors.insert(
                "step".into(),
                Tensor::from_slice(&[opt.step - i64::from(step < p.steps)]),
            );
            write_checkpoint(&out.join(checkpoint_name(step)), step, &tensors)?;
            written.push(step);
        }
        if step % 10 == 0 || step == p.steps {
            progress(step, p.steps, "steps");
        }
    }
    let last = log.last_finite();
    log.write(&out.join("train.arrow"))?;
    write_param_map(arch, &out.join("param_map.arrow"))?;
    Ok(TrainSummary {
        diverged: diverged_at.is_some(),
        diverged_at,
        final_train_loss: last.0,
        final_train_acc: last.1,
        final_test_loss: last.2,
        final_test_acc: last.3,
        checkpoints: written,
        num_params: arch.num_params(),
    })
}

#[derive(Default)]
struct LogRows {
    step: Vec<i64>,
    train_loss: Vec<f64>,
    train_acc: Vec<f64>,
    test_loss: Vec<f64>,
    test_acc: Vec<f64>,
    grad_norm: Vec<f64>,
    lr: Vec<f64>,
    diverged: Vec<bool>,
    /// (min, 1st percentile, median) of the train split's margins.
    margins: Vec<[f64; 3]>,
}

/// The margins log(p_c / max_{j≠c} p_j) = z_c − max_{j≠c} z_j of every train
/// row (c its label), summarized as (min, 1st percentile, median; nearest
/// rank). The train split holds every analysis set (its first M rows), so its
/// minimum bounds theirs from below. A margin beyond ~745 (f64) or ~104 (f32)
/// makes every off-target probability underflow: that row's curvature is
/// below what the arithmetic resolves.
pub fn margin_summary(arch: &Arch, theta: &Tensor, x: &Tensor, y: &Tensor) -> [f64; 3] {
    let mut m = tch::no_grad(|| {
        let z = arch.forward(theta, x).to_kind(Kind::Double);
        let yy = y.unsqueeze(1);
        let zc = z.gather(1, &yy, false);
        let others = z.scatter_value(1, &yy, f64::NEG_INFINITY);
        let best = others.amax([1i64].as_slice(), true);
        Vec::<f64>::try_from((zc - best).squeeze_dim(1)).unwrap_or_default()
    });
    if m.is_empty() || m.iter().any(|v| v.is_nan()) {
        return [f64::NAN; 3];
    }
    m.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| m[((m.len() - 1) as f64 * q).floor() as usize];
    [m[0], at(0.01), at(0.5)]
}

impl LogRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: u64,
        tl: f64,
        ta: f64,
        vl: f64,
        va: f64,
        gn: f64,
        lr: f64,
        diverged: bool,
    ) {
        self.step.push(step as i64);
        self.train_loss.push(tl);
        self.train_acc.push(ta);
        self.test_loss.push(vl);
        self.test_acc.push(va);
        self.grad_norm.push(gn);
        self.lr.push(lr);
        self.diverged.push(diverged);
    }
    /// The row that marks a divergence: no metrics, diverged = true.
    fn push_diverged(&mut self, step: u64, lr: f64) {
        let nan = f64::NAN;
        self.push(step, nan, nan, nan, nan, nan, lr, true);
        self.margins.push([nan; 3]);
    }
    fn last_finite(&self) -> (f64, f64, f64, f64) {
        (0..self.step.len())
            .rev()
            .find(|&i| self.train_loss[i].is_finite())
            .map(|i| {
                (
                    self.train_loss[i],
                    self.train_acc[i],
                    self.test_loss[i],
                    self.test_acc[i],
                )
            })
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN))
    }
    fn write(self, path: &Path) -> StageResult<()> {
        write_batch(
            path,
            vec![
                ("step", col_i64(self.step)),
                ("train_loss", col_f64(self.train_loss)),
                ("train_acc", col_f64(self.train_acc)),
                ("test_loss", col_f64(self.test_loss)),
                ("test_acc", col_f64(self.test_acc)),
                ("grad_norm", col_f64(self.grad_norm)),
                ("lr", col_f64(self.lr)),
                ("diverged", col_bool(self.diverged)),
                (
                    "margin_min",
                    col_f64(self.margins.iter().map(|m| m[0]).collect()),
                ),
                (
                    "margin_p01",
                    col_f64(self.margins.iter().map(|m| m[1]).collect()),
                ),
                (
                    "margin_median",
                    col_f64(self.margins.iter().map(|m| m[2]).collect()),
                ),
            ],
            false,
        )
    }
}

/// Timing of the training inner loop, for `eigentrace bench train`.
pub mod bench {
    use crate::backprop::Backprop;
    use crate::optim::{Optimizer, StepKernel};
    use stages::mlp::{Activation, Arch, Init};
    use stages::optim::{OptName, OptimizerParams};
    use std::time::Instant;
    use tch::{Kind, Tensor};

    /// Timed rounds per measurement; the median is reported.
    pub const ROUNDS: usize = 7;

    pub struct StepTiming {
        pub params: usize,
        pub ms_per_step: f64,
        /// The peer's time per step, from the rounds interleaved with ours.
        pub peer_ms_per_step: f64,
        /// Ours with the optimizer as ATen's elementwise passes instead of
        /// one pass (`StepKernel::Passes`), in the same rounds.
        pub passes_ms_per_step: f64,
        /// Ours with the one pass on rayon's pool instead of ATen's OpenMP
        /// team (`StepKernel::OnePassRayon`), in the same rounds.
        pub rayon_ms_per_step: f64,
        /// Matmul FLOPs of one step (forward, and backward for dW and dX).
        pub flops_per_step: f64,
        /// The same matmuls alone, into preallocated outputs: the GEMM floor.
        pub gemm_ms: f64,
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn time_ms(steps: usize, mut f: impl FnMut()) -> f64 {
        let t = Instant::now();
        for _ in 0..steps {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / steps as f64
    }

    /// Steps as the train stage runs them (loss, backward, optimizer), in
    /// `rounds` rounds of `steps` ([`ROUNDS`] for the benchmark, 1 in its
    /// quick mode); after each of ours, `peer_round` times one round of the
    /// peer, so that both see the same machine (this one's neighbours make
    /// single rounds noisy). Medians. Full-batch on `n` rows, or with
    /// `batch = Some(b)`: minibatches of b of the n rows, gathered each
    /// step from a shuffled order as the stage does (the GEMM floor is then
    /// at b rows).
    #[allow(clippy::too_many_arguments)]
    pub fn train_steps(
        widths: &[usize],
        n: usize,
        batch: Option<usize>,
        steps: usize,
        rounds: usize,
        opt: OptName,
        kind: Kind,
        peer_round: &mut dyn FnMut() -> Result<f64, String>,
    ) -> Result<StepTiming, String> {
        let dev = (kind, tch::Device::Cpu);
        let arch = Arch {
            widths: widths.to_vec(),
            activation: Activation::Tanh,
        };
        tch::manual_seed(0);
        let x = Tensor::randn([n as i64, widths[0] as i64], dev);
        let y = Tensor::randint(
            *widths.last().unwrap() as i64,
            [n as i64],
            (Kind::Int64, tch::Device::Cpu),
        );
        let theta = Tensor::from_slice(&arch.init(Init::TorchDefault, 0)).to_kind(kind);
        let g = theta.zeros_like();
        let lr = if opt == OptName::Sgd { 0.1 } else { 1e-3 };
        // [one pass, ATen's passes, one pass on rayon]: each its own θ and
        // state.
        let kernels = [
            StepKernel::OnePass,
            StepKernel::Passes,
            StepKernel::OnePassRayon,
        ];
        let thetas = kernels.map(|_| theta.copy());
        let mut opts = kernels.map(|k| {
            let mut o = Optimizer::new(&OptimizerParams::new(opt, lr));
            o.kernel = k;
            o
        });
        let mut bp = Backprop::new(&arch, kind, tch::Device::Cpu);
        // A fixed pseudo-random order of the rows, walked b at a time.
        let order: Vec<i64> = (0..n as i64)
            .map(|i| (i * 7919) % n as i64)
            .collect::<Vec<_>>();
        let mut cursor = 0;
        let mut step = |which: usize| match batch {
            None => {
                bp.loss_and_grad(&thetas[which], &x, &y, &g);
                opts[which].step(&thetas[which], &g, lr);
            }
            Some(b) => {
                if cursor + b > order.len() {
                    cursor = 0;
                }
                let idx = Tensor::from_slice(&order[cursor..cursor + b]);
                cursor += b;
                let xb = x.index_select(0, &idx);
                let yb = y.index_select(0, &idx);
                bp.loss_and_grad(&thetas[which], &xb, &yb, &g);
                opts[which].step(&thetas[which], &g, lr);
            }
        };
        // The GEMMs of one step, alone, into preallocated outputs.
        let mut flops = 0.0;
        let mut mats = Vec::new();
        for l in 0..widths.len() - 1 {
            let (i, o) = (widths[l] as i64, widths[l + 1] as i64);
            let n = batch.unwrap_or(n) as i64;
            let a = Tensor::randn([n, i], dev);
            let w = Tensor::randn([o, i], dev);
            let d = Tensor::randn([n, o], dev);
            let outs = (
                Tensor::empty([n, o], dev),
                Tensor::empty([o, i], dev),
                Tensor::empty([n, i], dev),
            );
            flops += 2.0 * (n as f64) * (i * o) as f64 * if l == 0 { 2.0 } else { 3.0 };
            mats.push((a, w, d, outs, l == 0));
        }
        let gemms = || {
            for (a, w, d, (z, gw, dx), first) in &mats {
                let _ = a.mm_out(z, &w.tr());
                let _ = d.tr().mm_out(gw, a);
                if !first {
                    let _ = d.mm_out(dx, w);
                }
            }
        };
        for which in 0..kernels.len() {
            time_ms((steps / 10).max(10), || step(which));
        }
        time_ms(10, gemms);
        let (mut ours, mut passes, mut rayon, mut peer, mut floor) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            ours.push(time_ms(steps, || step(0)));
            passes.push(time_ms(steps, || step(1)));
            rayon.push(time_ms(steps, || step(2)));
            floor.push(time_ms(steps, gemms));
            peer.push(peer_round()?);
        }
        Ok(StepTiming {
            params: arch.num_params(),
            ms_per_step: median(ours),
            passes_ms_per_step: median(passes),
            rayon_ms_per_step: median(rayon),
            peer_ms_per_step: median(peer),
            flops_per_step: flops,
            gemm_ms: median(floor),
        })
    }
}

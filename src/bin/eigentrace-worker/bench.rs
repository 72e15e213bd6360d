//! `eigentrace bench`: speed, measured side by side in one run against the
//! PyTorch peers that researchers use, from the same libtorch venv and with
//! the same thread count. Ratios, not absolute times, are the result.

use serde_json::{json, Value};
use stages::optim::OptName;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

pub(crate) fn python() -> anyhow::Result<String> {
    std::env::var("EIGENTRACE_PYTHON").map_err(|_| {
        anyhow::anyhow!("EIGENTRACE_PYTHON is not set: run `make bench` (it bootstraps the PyTorch venv and sets it)")
    })
}

/// The Python peer, on the same cores as this process's slot: OpenMP has
/// pinned this worker's main thread to one core, and a child would inherit
/// that single core.
pub(crate) fn peer(py: &str) -> Command {
    let mut c = Command::new(py);
    if let Ok(list) = std::env::var(stages::cpus::CPUS_ENV) {
        let cpus: Vec<usize> = list.split(',').filter_map(|c| c.parse().ok()).collect();
        use std::os::unix::process::CommandExt;
        // SAFETY: sched_setaffinity is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                stages::cpus::pin_current_thread(&cpus);
                Ok(())
            });
        }
    }
    c
}

pub(crate) fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/bench")
        .join(name)
}

/// Training steps per second against a PyTorch eager loop. `quick`: one
/// tiny shape, one round (CI checks that it runs, not how fast).
pub fn train(threads: usize, steps: usize, quick: bool) -> anyhow::Result<Value> {
    tch::set_num_threads(threads as i32);
    let py = python()?;
    // The digits train split (1797 × 0.8).
    let n = if quick { 200 } else { 1437 };
    let rounds = if quick {
        1
    } else {
        stages_torch::train::bench::ROUNDS
    };
    // (widths, rows, minibatch): full-batch on the digits' train split, and
    // the MNIST-sized minibatch study (configs/mnist-scale.toml: 4800 train
    // rows of 784 dimensions, batches of 128).
    // Adam throughout, and plain SGD at the MNIST-sized shape (and in quick
    // mode), the two kinds of one pass (`torch/src/adam_pass.rs`,
    // `sgd_pass.rs`).
    let shapes: Vec<(Vec<usize>, usize, Option<usize>, OptName)> = if quick {
        vec![
            (vec![16, 8, 8, 4], n, None, OptName::Adam),
            (vec![16, 8, 8, 4], n, Some(32), OptName::Adam),
            (vec![16, 8, 8, 4], n, Some(32), OptName::Sgd),
        ]
    } else {
        vec![
            (vec![64, 32, 32, 10], n, None, OptName::Adam),
            (vec![64, 128, 128, 10], n, None, OptName::Adam),
            (vec![64, 256, 256, 10], n, None, OptName::Adam),
            (vec![784, 512, 512, 10], 4800, Some(128), OptName::Adam),
            (vec![784, 512, 512, 10], 4800, Some(128), OptName::Sgd),
        ]
    };
    let mut rows = Vec::new();
    eprintln!(
        "{:<21} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "widths, optimizer",
        "P",
        "ours ms",
        "rayon ms",
        "passes ms",
        "torch ms",
        "speedup",
        "GFLOP/s",
        "GEMM GF/s",
        "of GEMM"
    );
    for (widths, n, batch, opt) in shapes {
        let opt_label = opt.as_str();
        let ws: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
        let mut child = peer(&py)
            .arg(script("torch_train_step.py"))
            .args([
                ws.join(","),
                n.to_string(),
                steps.to_string(),
                threads.to_string(),
                opt_label.into(),
                "f32".into(),
                batch.unwrap_or(0).to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut to_peer = child.stdin.take().expect("piped");
        let mut from_peer = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut next_line = || -> Result<String, String> {
            match from_peer.next() {
                Some(Ok(l)) => Ok(l),
                _ => Err("the PyTorch peer stopped (its error is above)".into()),
            }
        };
        anyhow::ensure!(
            next_line().map_err(anyhow::Error::msg)? == "ready",
            "the PyTorch peer did not start"
        );
        let ours = stages_torch::train::bench::train_steps(
            &widths,
            n,
            batch,
            steps,
            rounds,
            opt,
            tch::Kind::Float,
            &mut || {
                writeln!(to_peer, "round").map_err(|e| e.to_string())?;
                to_peer.flush().map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_str(&next_line()?).map_err(|e| e.to_string())?;
                v["ms_per_step"]
                    .as_f64()
                    .ok_or_else(|| "the peer sent no time".to_string())
            },
        )
        .map_err(anyhow::Error::msg)?;
        drop(to_peer);
        child.wait()?;
        let torch_ms = ours.peer_ms_per_step;
        let gflops = ours.flops_per_step / (ours.ms_per_step * 1e6);
        let gemm_gflops = ours.flops_per_step / (ours.gemm_ms * 1e6);
        eprintln!(
            "{:<21} {:>7} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>7.2}× {:>9.1} {:>9.1} {:>8.0}%",
            format!("{} {opt_label}", ws.join("-")),
            ours.params,
            ours.ms_per_step,
            ours.rayon_ms_per_step,
            ours.passes_ms_per_step,
            torch_ms,
            torch_ms / ours.ms_per_step,
            gflops,
            gemm_gflops,
            100.0 * gflops / gemm_gflops
        );
        rows.push(json!({
            "widths": widths, "params": ours.params, "rows": n, "batch": batch, "optimizer": opt_label, "dtype": "f32",
            "of_gemm_floor": ours.gemm_ms / ours.ms_per_step, "gemm_floor_ms": ours.gemm_ms,
            "ours_ms_per_step": ours.ms_per_step, "torch_eager_ms_per_step": torch_ms,
            "ours_optimizer_as_passes_ms_per_step": ours.passes_ms_per_step,
            "ours_pass_on_rayon_ms_per_step": ours.rayon_ms_per_step,
            "speedup": torch_ms / ours.ms_per_step, "achieved_gflops": gflops, "gemm_gflops": gemm_gflops,
        }));
    }
    Ok(json!({
        "bench": "train", "threads": threads, "steps": steps, "rounds": rounds, "results": rows,
    }))
}

/// The benchmarks' checkpoint: 64-32-32-10 tanh on a 10-class mixture
/// (N = 1437 train rows) after 200 Adam steps, and 10 steps later (quick:
/// 8-6-6-3 on 240 rows). `data` and `ckpt` (the first snapshot) are files
/// for the Python peers, in `dir`.
pub(crate) struct Checkpoint {
    pub dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
    pub ckpt: std::path::PathBuf,
    pub widths: Vec<usize>,
    pub arch: stages::mlp::Arch,
    pub x: tch::Tensor,
    pub y: tch::Tensor,
    /// θ at step 200 and at step 210.
    pub snapshots: Vec<Vec<f64>>,
}

impl Checkpoint {
    pub fn new(quick: bool) -> anyhow::Result<Checkpoint> {
        use stages::mlp::{Activation, Arch, Init};
        use stages::optim::OptimizerParams;
        use stages_torch::hessian::analysis_set;
        use stages_torch::mlp::ArchExt;
        use tch::{Device, Kind, Tensor};
        let dir = tempfile::tempdir()?;
        let widths: Vec<usize> = if quick {
            vec![8, 6, 6, 3]
        } else {
            vec![64, 32, 32, 10]
        };
        let dp = stages::dataset::DatasetParams {
            kind: stages::dataset::DatasetKind::GaussianMixture,
            classes: *widths.last().expect("widths"),
            dim: widths[0],
            samples: if quick { 300 } else { 1796 },
            separation: 3.0,
            test_fraction: 0.2,
            seed: 0,
            scale: Default::default(),
            std_floor: 0.0,
            shuffle_labels: false,
        };
        let ds = stages::dataset::generate(&dp);
        let data = dir.path().join("data.arrow");
        stages::dataset::write(&ds, &data)?;
        let arch = Arch {
            widths: widths.clone(),
            activation: Activation::Tanh,
        };
        let (x, y) = analysis_set(&ds, None, Kind::Double, Device::Cpu)?;
        let theta = Tensor::from_slice(&arch.init(Init::TorchDefault, 0));
        let mut g = theta.zeros_like();
        let mut opt = stages_torch::optim::Optimizer::new(&OptimizerParams::new(
            stages::optim::OptName::Adam,
            3e-3,
        ));
        let mut snapshots = Vec::new();
        for step in 0..=210 {
            if step == 200 || step == 210 {
                snapshots.push(Vec::<f64>::try_from(&theta)?);
            }
            arch.loss_and_grad(&theta, &x, &y, &mut g);
            opt.step(&theta, &g, 3e-3);
        }
        let ckpt = dir.path().join("theta.safetensors");
        let mut t = std::collections::BTreeMap::new();
        t.insert("theta_f64".to_string(), Tensor::from_slice(&snapshots[0]));
        stages_torch::train::write_checkpoint(&ckpt, 200, &t)?;
        Ok(Checkpoint {
            dir,
            data,
            ckpt,
            widths,
            arch,
            x,
            y,
            snapshots,
        })
    }
}

/// Hessian eigenpairs: HVP cost, R-operator blocks, our Lanczos against
/// scipy's eigsh on torch HVPs and against deflated power iteration, and the
/// warm start. `quick`: a tiny model, one repetition of each timing.
pub fn hessian(threads: usize, quick: bool) -> anyhow::Result<Value> {
    use stages::lanczos::{lanczos, LanczosOptions, Which};
    use stages_torch::hessian::{HessianOperator, Hvp};
    use stages_torch::mlp::ArchExt;
    use std::time::Instant;
    use tch::{Device, Kind, Tensor};
    tch::set_num_threads(threads as i32);
    let py = python()?;
    let Checkpoint {
        dir: _dir,
        data,
        ckpt,
        widths,
        arch,
        x,
        y,
        snapshots,
    } = Checkpoint::new(quick)?;
    let n = arch.num_params();
    let theta_v = snapshots[0].clone();
    let reps = |full: usize| if quick { 1 } else { full };
    let time = |f: &mut dyn FnMut(), reps: usize| {
        f();
        let t0 = Instant::now();
        for _ in 0..reps {
            f();
        }
        t0.elapsed().as_secs_f64() / reps as f64
    };
    // 1. Gradient, autograd HVP, R-operator blocks.
    let th = Tensor::from_slice(&theta_v).set_requires_grad(true);
    let grad_s = time(
        &mut || {
            let l = arch.loss(&th, &x, &y);
            let _ = Tensor::run_backward(&[&l], &[&th], false, false);
        },
        reps(50),
    );
    let mut auto = HessianOperator::new(&arch, &theta_v, &x, &y, Kind::Double, Device::Cpu);
    let v1 = Tensor::randn([n as i64], (Kind::Double, Device::Cpu));
    let hvp_s = time(&mut || drop(auto.apply_tensor(&v1)), reps(50));
    let mut rop = stages_torch::rop::RopOperator::new(&arch, &Tensor::from_slice(&theta_v), &x, &y);
    let nrows = x.size()[0] as f64;
    let layer_flops: f64 = (0..arch.layers())
        .map(|l| 2.0 * nrows * (arch.widths[l] * arch.widths[l + 1]) as f64)
        .sum();
    // R-forward 2, R-backward 4 (R∇W twice, R(δ) twice), one δW: ~7 GEMM-sized products per layer.
    let rop_flops_per_vec = 7.0 * layer_flops;
    let gemm_s = {
        let (i, o) = (widths[0] as i64, widths[1] as i64);
        let a = Tensor::randn([nrows as i64, i], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([o, i], (Kind::Double, Device::Cpu));
        let s = time(&mut || drop(a.matmul(&w.tr())), reps(200));
        (2.0 * nrows * (i * o) as f64) / s
    };
    let mut blocks = Vec::new();
    for b in [1i64, 4, 16] {
        let v = Tensor::randn([b, n as i64], (Kind::Double, Device::Cpu));
        let s = time(&mut || drop(rop.apply_block(&v)), reps(20)) / b as f64;
        blocks.push(
            json!({ "b": b, "seconds_per_vector": s, "vs_autograd": hvp_s / s,
            "gflops": rop_flops_per_vec / s / 1e9, "of_gemm": rop_flops_per_vec / s / gemm_s }),
        );
    }
    // 2. Our Lanczos, k = 10, tol 1e-6 (f64), on the stages' operator (the
    // R-operator), for several block sizes; each timed as the median of 3.
    let k = 10;
    let opts_b = |block: usize| LanczosOptions {
        k,
        which: Which::Largest,
        tol: 1e-6,
        abs_tol: 0.0,
        max_iter: 500,
        seed: 1,
        block,
        f32_basis: false,
    };
    let run_lanczos = |block: usize, theta: &[f64], start: Option<&[Vec<f64>]>| {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..reps(3) {
            let t0 = Instant::now();
            let mut op = Hvp::new(&arch, theta, &x, &y, Kind::Double, Device::Cpu, None);
            let r = lanczos(
                n,
                &mut |xs, ys| op.apply_block(xs, ys),
                &opts_b(block),
                start,
            );
            times.push(t0.elapsed().as_secs_f64());
            last = Some(r);
        }
        times.sort_by(f64::total_cmp);
        (last.expect("one run at least"), times[times.len() / 2])
    };
    let mut by_block = Vec::new();
    let lanczos_blocks: &[usize] = if quick { &[1, 2] } else { &[1, 2, 4, 8, 16] };
    for &b in lanczos_blocks {
        let (r, secs) = run_lanczos(b, &theta_v, None);
        by_block.push((b, r, secs));
    }
    let default_block = stages::hessian::DEFAULT_BLOCK;
    let (_, ours, ours_s) = by_block
        .iter()
        .find(|(b, _, _)| *b == default_block)
        .cloned()
        .expect("the default block size is measured");
    // 3. scipy eigsh on torch HVPs.
    let out = peer(&py)
        .arg(script("scipy_eigsh_hvp.py"))
        .args([
            data.to_str().unwrap(),
            ckpt.to_str().unwrap(),
            &widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "tanh",
            &k.to_string(),
            "1e-6",
            &threads.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the scipy peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sp: Value = serde_json::from_slice(&out.stdout)?;
    let sp_vals: Vec<f64> = sp["eigenvalues"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let agree = ours
        .pairs
        .iter()
        .zip(&sp_vals)
        .map(|(p, s)| (p.value - s).abs() / s.abs())
        .fold(0.0, f64::max);
    // 4. Deflated power iteration (PyHessian's method) to the same residual, capped at 3000 products per pair.
    let t0 = Instant::now();
    let mut op = HessianOperator::new(&arch, &theta_v, &x, &y, Kind::Double, Device::Cpu);
    let lam1 = ours.pairs[0].value.abs();
    let mut found: Vec<(f64, Tensor)> = Vec::new();
    let mut power_hvps = 0usize;
    let mut capped = false;
    for i in 0..k {
        tch::manual_seed(100 + i as i64);
        let mut v = Tensor::randn([n as i64], (Kind::Double, Device::Cpu));
        v = &v / v.norm();
        let mut iters = 0;
        let lambda = loop {
            let mut hv = op.apply_tensor(&v);
            for (l, u) in &found {
                hv -= u * (*l * u.dot(&v).double_value(&[]));
            }
            power_hvps += 1;
            iters += 1;
            let lambda = v.dot(&hv).double_value(&[]);
            let res = (&hv - &v * lambda).norm().double_value(&[]);
            if res <= 1e-6 * lam1 || iters >= 3000 {
                capped |= iters >= 3000;
                break lambda;
            }
            v = &hv / hv.norm();
        };
        found.push((lambda, v));
    }
    let power_s = t0.elapsed().as_secs_f64();
    // 5. Warm start: the checkpoint 10 steps later, cold and warm (the
    // previous vectors folded into the first block).
    let prev: Vec<Vec<f64>> = ours.pairs.iter().map(|p| p.vector.clone()).collect();
    let (cold, cold_s) = run_lanczos(default_block, &snapshots[1], None);
    let (warm, warm_s) = run_lanczos(default_block, &snapshots[1], Some(&prev));
    eprintln!(
        "bench hessian: {} tanh (P = {n}), N = {} rows, f64, {threads} threads",
        widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        nrows as usize
    );
    eprintln!("  gradient                 {:>9.3} ms", grad_s * 1e3);
    eprintln!(
        "  HVP (autograd, cached)   {:>9.3} ms   HVP / gradient = {:.2}",
        hvp_s * 1e3,
        hvp_s / grad_s
    );
    for b in &blocks {
        eprintln!(
            "  R-op block b = {:<2}        {:>9.3} ms per vector   {:.2}× autograd   {:.1} GFLOP/s = {:.0}% of GEMM ({:.1} GFLOP/s)",
            b["b"], b["seconds_per_vector"].as_f64().unwrap() * 1e3, b["vs_autograd"].as_f64().unwrap(),
            b["gflops"].as_f64().unwrap(), 100.0 * b["of_gemm"].as_f64().unwrap(), gemm_s / 1e9
        );
    }
    for (b, r, secs) in &by_block {
        eprintln!(
            "  block Lanczos b = {b:<2}      {:>9.3} s    {:>3} HVPs in {:>3} block iterations{}",
            secs,
            r.hvps,
            r.iterations,
            if *b == default_block {
                "   (the default)"
            } else {
                ""
            }
        );
    }
    eprintln!(
        "  Lanczos (ours) k={k}      {:>9.3} s    {} HVPs   (scipy eigsh: {:.3} s, {} HVPs; time ratio ours/scipy = {:.2}; max eigenvalue rel diff {:.1e})",
        ours_s, ours.hvps, sp["seconds"].as_f64().unwrap_or(f64::NAN), sp["hvps"], ours_s / sp["seconds"].as_f64().unwrap_or(f64::NAN), agree
    );
    eprintln!(
        "  deflated power iteration {:>9.3} s    {}{} HVPs   (HVP ratio power/ours = {:.1}×)",
        power_s,
        if capped { "≥" } else { "" },
        power_hvps,
        power_hvps as f64 / ours.hvps as f64
    );
    eprintln!(
        "  warm start, 10 steps later: {} HVPs cold ({:.3} s), {} warm ({:.3} s): saves {}",
        cold.hvps,
        cold_s,
        warm.hvps,
        warm_s,
        cold.hvps as i64 - warm.hvps as i64
    );
    Ok(json!({
        "bench": "hessian", "threads": threads, "widths": widths, "params": n, "rows": nrows,
        "k": k, "tol": 1e-6, "default_block": default_block,
        "gradient_s": grad_s, "hvp_s": hvp_s, "hvp_over_gradient": hvp_s / grad_s,
        "rop_blocks": blocks, "gemm_gflops": gemm_s / 1e9,
        "ours": { "seconds": ours_s, "hvps": ours.hvps, "converged": ours.converged },
        "scipy_eigsh": sp, "eigenvalue_max_rel_diff": agree,
        "power_iteration": {
            "seconds": power_s, "hvps": power_hvps, "capped": capped,
            "hvps_over_ours": power_hvps as f64 / ours.hvps as f64,
        },
        "ours_over_scipy_seconds": ours_s / sp["seconds"].as_f64().unwrap_or(f64::NAN),
        "warm_start": { "cold_hvps": cold.hvps, "warm_hvps": warm.hvps, "cold_s": cold_s, "warm_s": warm_s },
        "block_lanczos": by_block.iter().map(|(b, r, secs)| json!({ "block": b, "seconds": secs, "hvps": r.hvps, "iterations": r.iterations, "converged": r.converged })).collect::<Vec<_>>(),
    }))
}

/// The metrics stage on 100 checkpoints × k = 20 × P = 100k (synthetic unit
/// vectors), timed end to end (reading vectors.arrow, writing every file).
/// `quick`: 5 checkpoints × k = 4 of a tiny model.
pub fn metrics(quick: bool) -> anyhow::Result<Value> {
    use stages::arrow_io::{col_f64, col_i32, col_i64, col_str, list_f32, write_batch};
    let dir = tempfile::tempdir()?;
    let arch = stages::mlp::Arch {
        widths: if quick {
            vec![8, 16, 16, 4]
        } else {
            vec![64, 312, 256, 10]
        },
        activation: stages::mlp::Activation::Tanh,
    };
    let p = arch.num_params();
    let (steps, k) = if quick { (5usize, 4usize) } else { (100, 20) };
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        // xorshift64*: synthetic vectors, no statistics needed
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let (mut st, mut op, mut rk, mut ev, mut vs) = (vec![], vec![], vec![], vec![], vec![]);
    for s in 0..steps {
        for r in 0..k {
            st.push(s as i64 * 10);
            op.push("hessian");
            rk.push(r as i32);
            ev.push(1.0 / (r + 1) as f64);
            vs.push((0..p).map(|_| next() as f32).collect::<Vec<f32>>());
        }
    }
    let values = dir.path().join("values.arrow");
    let vectors = dir.path().join("vectors.arrow");
    write_batch(
        &values,
        vec![
            ("step", col_i64(st.clone())),
            ("operator", col_str(&op)),
            ("rank", col_i32(rk.clone())),
            ("eigenvalue", col_f64(ev)),
        ],
        false,
    )?;
    write_batch(
        &vectors,
        vec![
            ("step", col_i64(st)),
            ("operator", col_str(&op)),
            ("rank", col_i32(rk)),
            ("vector", list_f32(&vs)),
        ],
        true,
    )?;
    drop(vs);
    let opt = stages::optim::OptimizerParams::new(stages::optim::OptName::Sgd, 0.1);
    let input = stages::metrics::MetricsInputs {
        values: &values,
        vectors: &vectors,
        arch: &arch,
        optimizer: &opt,
        schedule: &Default::default(),
        steps: 1000,
        checkpoints: vec![],
        gradients: None,
        null: None,
    };
    let out = dir.path().join("out");
    let t0 = std::time::Instant::now();
    stages::metrics::run_with(
        &stages::metrics::MetricsParams::default(),
        &input,
        &out,
        &stages_torch::metrics::gram,
    )?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench metrics: {steps} checkpoints × k = {k} × P = {p}: {secs:.2} s (target < 10 s)"
    );
    Ok(json!({
        "bench": "metrics", "widths": arch.widths, "checkpoints": steps, "k": k, "params": p,
        "seconds": secs,
    }))
}

/// Hessian-vector products at scale (`eigentrace bench hessian --widths
/// 784-512-512-10 …`): for each shape and dtype, on `rows` random rows, the
/// R-operator's time per vector at b = 1 and 4 against autograd's double
/// backprop, its GFLOP/s, and two references: one GEMM at the first
/// layer's shape (the rate), and the product's own GEMMs run alone at their
/// shapes (the floor: what is left is elementwise work, copies and
/// allocation). `quick`: one repetition.
pub fn hessian_scale(
    threads: usize,
    shapes: &[Vec<usize>],
    rows: usize,
    quick: bool,
) -> anyhow::Result<Value> {
    use stages::mlp::{Activation, Arch, Init};
    use stages_torch::hessian::HessianOperator;
    use stages_torch::rop::RopOperator;
    use std::time::Instant;
    use tch::{Device, Kind, Tensor};
    tch::set_num_threads(threads as i32);
    let reps = if quick { 1 } else { 3 };
    // The median of `reps` timings after one warm-up call.
    let time = |f: &mut dyn FnMut()| {
        f();
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let mut results = Vec::new();
    for widths in shapes {
        anyhow::ensure!(
            widths.len() >= 2,
            "--widths {widths:?}: at least an input and an output"
        );
        let arch = Arch {
            widths: widths.clone(),
            activation: Activation::Tanh,
        };
        let p = arch.num_params();
        for kind in [Kind::Float, Kind::Double] {
            let dev = Device::Cpu;
            tch::manual_seed(0);
            let x = Tensor::randn([rows as i64, widths[0] as i64], (kind, dev));
            let y = Tensor::randint(
                *widths.last().unwrap() as i64,
                [rows as i64],
                (Kind::Int64, dev),
            );
            let theta_v = arch.init(Init::TorchDefault, 0);
            let theta = Tensor::from_slice(&theta_v).to_kind(kind);
            let mut rop = RopOperator::new(&arch, &theta, &x, &y);
            // GEMM flops of one product per vector: per layer, the forward
            // R-pass (h dWᵀ, and R(h) Wᵀ past the first layer), R(∇W) (R(δ)ᵀh,
            // and δᵀR(h) past the first), and R(δ) back (R(δ) W, δ dW) past
            // the first: 2 × rows × in × out each.
            let mut gemms: Vec<(i64, i64, i64)> = Vec::new(); // (m, k, n): [m,k]×[k,n]
            let r = rows as i64;
            for l in 0..arch.layers() {
                let (i, o) = (widths[l] as i64, widths[l + 1] as i64);
                gemms.push((r, i, o)); // h dWᵀ
                gemms.push((o, r, i)); // R(δ)ᵀ h
                if l > 0 {
                    gemms.push((r, i, o)); // R(h) Wᵀ
                    gemms.push((o, r, i)); // δᵀ R(h)
                    gemms.push((r, o, i)); // R(δ) W
                    gemms.push((r, o, i)); // δ dW
                }
            }
            let flops: f64 = gemms
                .iter()
                .map(|&(m, k, n)| 2.0 * (m * k * n) as f64)
                .sum();
            let mats: Vec<(Tensor, Tensor)> = gemms
                .iter()
                .map(|&(m, k, n)| {
                    (
                        Tensor::randn([m, k], (kind, dev)),
                        Tensor::randn([k, n], (kind, dev)),
                    )
                })
                .collect();
            let floor_s = time(&mut || {
                for (a, b) in &mats {
                    drop(a.mm(b));
                }
            });
            let (i0, o0) = (widths[0] as i64, widths[1] as i64);
            let a = Tensor::randn([r, i0], (kind, dev));
            let w = Tensor::randn([i0, o0], (kind, dev));
            let gemm_rate = 2.0 * (r * i0 * o0) as f64 / time(&mut || drop(a.mm(&w)));
            let theta_f64: Vec<f64> = theta_v.clone();
            let mut auto = HessianOperator::new(&arch, &theta_f64, &x, &y, kind, dev);
            let v1 = Tensor::randn([p as i64], (kind, dev));
            let auto_s = time(&mut || drop(auto.apply_tensor(&v1)));
            let mut blocks = Vec::new();
            for b in [1i64, 4] {
                let v = Tensor::randn([b, p as i64], (kind, dev));
                let s = time(&mut || drop(rop.apply_block(&v))) / b as f64;
                blocks.push(json!({
                    "b": b, "seconds_per_vector": s, "vs_autograd": auto_s / s,
                    "gflops": flops / s / 1e9, "of_gemm_rate": flops / s / gemm_rate,
                    "of_gemm_floor": floor_s / s,
                }));
            }
            let dtype = if kind == Kind::Float { "f32" } else { "f64" };
            // Where a Lanczos step's time goes at this size: `steps` steps
            // (tol 0: no early stop) of the stage's operator, unrestarted and
            // with a 40-vector thick-restart basis; the time inside the
            // products against the rest (reorthogonalization, the projected
            // eigenproblem, copies). The stage's basis (f32 for f32 runs),
            // and in f32 also an f64 basis beside it, for the ratio.
            let steps = if quick { 12 } else { 120 };
            let mut lanczos_rows = Vec::new();
            let f32_run = kind == Kind::Float;
            let variants = [(None, f32_run), (Some(40usize), f32_run)]
                .into_iter()
                .chain(f32_run.then_some((None, false)));
            for (max_basis, f32_basis) in variants {
                let mut op =
                    stages_torch::hessian::Hvp::new(&arch, &theta_v, &x, &y, kind, dev, None);
                let mut in_products = 0.0f64;
                let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
                    let t0 = Instant::now();
                    op.apply_block(xs, ys);
                    in_products += t0.elapsed().as_secs_f64();
                };
                let o = stages::lanczos::LanczosOptions {
                    k: 10.min(p - 1),
                    which: stages::lanczos::Which::Largest,
                    tol: 0.0,
                    abs_tol: 0.0,
                    max_iter: steps,
                    seed: 1,
                    block: 1,
                    f32_basis,
                };
                let t0 = Instant::now();
                let r = match max_basis {
                    None => stages::lanczos::lanczos(p, &mut apply, &o, None),
                    Some(m) => stages::lanczos::lanczos_restarted(p, &mut apply, &o, None, m),
                };
                let total = t0.elapsed().as_secs_f64();
                lanczos_rows.push(json!({
                    "max_basis": max_basis, "f32_basis": f32_basis, "products": r.hvps, "seconds": total,
                    "seconds_per_product": total / r.hvps as f64,
                    "in_products": in_products / total,
                }));
            }
            eprintln!(
                "  {:<18} {dtype} Lanczos, {steps} steps: {:.1} ms per product unrestarted ({:.0}% in the products), {:.1} ms with a 40-vector restarted basis ({:.0}%)",
                widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-"),
                lanczos_rows[0]["seconds_per_product"].as_f64().unwrap() * 1e3,
                100.0 * lanczos_rows[0]["in_products"].as_f64().unwrap(),
                lanczos_rows[1]["seconds_per_product"].as_f64().unwrap() * 1e3,
                100.0 * lanczos_rows[1]["in_products"].as_f64().unwrap(),
            );
            if let Some(f64_basis) = lanczos_rows.get(2) {
                eprintln!(
                    "  {:<18} {dtype} Lanczos with an f64 basis instead: {:.1} ms per product unrestarted",
                    "",
                    f64_basis["seconds_per_product"].as_f64().unwrap() * 1e3,
                );
            }
            eprintln!(
                "  {:<18} P = {:>9}  {dtype}  GEMM {:>6.1} GFLOP/s  autograd {:>8.2} ms  R-op b=1 {:>8.2} ms ({:>3.0}% of GEMM rate, GEMMs alone {:>3.0}%)  b=4 {:>8.2} ms/vector ({:>3.0}%)",
                widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("-"),
                p,
                gemm_rate / 1e9,
                auto_s * 1e3,
                blocks[0]["seconds_per_vector"].as_f64().unwrap() * 1e3,
                100.0 * blocks[0]["of_gemm_rate"].as_f64().unwrap(),
                100.0 * blocks[0]["of_gemm_floor"].as_f64().unwrap(),
                blocks[1]["seconds_per_vector"].as_f64().unwrap() * 1e3,
                100.0 * blocks[1]["of_gemm_rate"].as_f64().unwrap(),
            );
            results.push(json!({
                "widths": widths, "params": p, "rows": rows, "dtype": dtype,
                "gemm_gflops": gemm_rate / 1e9, "product_gemm_flops": flops,
                "gemm_floor_s": floor_s, "autograd_s": auto_s, "rop_blocks": blocks,
                "lanczos": lanczos_rows,
            }));
        }
    }
    Ok(
        json!({ "bench": "hessian_scale", "threads": threads, "rows": rows, "reps": reps, "results": results }),
    )
}

//! `eigentrace bench`: speed, measured side by side in one run against the
//! PyTorch peers that researchers use, from the same libtorch venv and with
//! the same thread count. Ratios, not absolute times, are the result.

use serde_json::{json, Value};
use stages::optim::OptName;
use std::process::Command;

fn python() -> anyhow::Result<String> {
    std::env::var("EIGENTRACE_PYTHON").map_err(|_| {
        anyhow::anyhow!("EIGENTRACE_PYTHON is not set: run `make bench` (it bootstraps the PyTorch venv and sets it)")
    })
}

fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/bench")
        .join(name)
}

/// Training steps per second against a PyTorch eager loop.
pub fn train(threads: usize, steps: usize) -> anyhow::Result<Value> {
    tch::set_num_threads(threads as i32);
    let py = python()?;
    let n = 1437; // the digits train split (1797 × 0.8)
    let mut rows = Vec::new();
    eprintln!(
        "{:<16} {:>7} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "widths", "P", "ours ms", "torch ms", "speedup", "GFLOP/s", "GEMM GF/s", "of GEMM"
    );
    for widths in [
        vec![64usize, 32, 32, 10],
        vec![64, 128, 128, 10],
        vec![64, 256, 256, 10],
    ] {
        let ours = stages_torch::train::bench::train_steps(
            &widths,
            n,
            steps,
            OptName::Adam,
            tch::Kind::Float,
        );
        let ws: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
        let out = Command::new(&py)
            .arg(script("torch_train_step.py"))
            .args([
                ws.join(","),
                n.to_string(),
                steps.to_string(),
                threads.to_string(),
                "adam".into(),
                "f32".into(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "the PyTorch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Value = serde_json::from_slice(&out.stdout)?;
        let torch_ms = theirs["ms_per_step"].as_f64().unwrap_or(f64::NAN);
        let gflops = ours.flops_per_step / (ours.ms_per_step * 1e6);
        let gemm_gflops = ours.flops_per_step / (ours.gemm_ms * 1e6);
        eprintln!(
            "{:<16} {:>7} {:>10.3} {:>10.3} {:>7.2}× {:>9.1} {:>9.1} {:>8.0}%",
            ws.join("-"),
            ours.params,
            ours.ms_per_step,
            torch_ms,
            torch_ms / ours.ms_per_step,
            gflops,
            gemm_gflops,
            100.0 * gflops / gemm_gflops
        );
        rows.push(json!({
            "widths": widths, "params": ours.params, "rows": n, "optimizer": "adam", "dtype": "f32",
            "ours_ms_per_step": ours.ms_per_step, "torch_eager_ms_per_step": torch_ms,
            "speedup": torch_ms / ours.ms_per_step, "achieved_gflops": gflops, "gemm_gflops": gemm_gflops,
        }));
    }
    Ok(json!({ "bench": "train", "threads": threads, "steps": steps, "results": rows }))
}

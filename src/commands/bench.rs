//! `eigentrace bench`: speed side by side with the PyTorch peers.

use crate::*;

pub(crate) fn cmd_bench(cli: &Cli, a: &BenchArgs) -> Result<(), Failure> {
    let what = match a.what {
        BenchWhat::Train => "train",
        BenchWhat::Hessian => "hessian",
        BenchWhat::Metrics => "metrics",
    };
    // Both sides run on the same pinned cores (see `cpus`).
    let slots = cpus::CpuSlots::new(a.threads);
    let slot = slots.acquire();
    let mut cmd = executor::worker_command();
    if let Some(slot) = &slot {
        slot.bind(&mut cmd);
    }
    let out = cmd
        .args(["bench", what, &a.threads.to_string(), &a.steps.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(anyhow::anyhow!("the benchmark failed").into());
    }
    if cli.json {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    }
    Ok(())
}

//! `eigentrace bench`: speed side by side with the PyTorch peers.
//!
//! Each benchmark runs in a worker (it links libtorch) on pinned cores, the
//! peers beside it on the same cores. With `--json` the result carries what
//! it was measured on (CPU, cores, threads, torch, date) and the command
//! that regenerates it; `make bench` keeps those files in `bench/results/`,
//! and `scripts/bench-tables.py` writes the README's tables from them.

use crate::*;

pub(crate) fn cmd_bench(cli: &Cli, a: &BenchArgs) -> Result<(), Failure> {
    let what = match a.what {
        BenchWhat::Train => "train",
        BenchWhat::Hessian => "hessian",
        BenchWhat::Metrics => "metrics",
        BenchWhat::Pyhessian => "pyhessian",
    };
    // Quick mode (CI): tiny sizes and one round, so that every benchmark is
    // exercised on every change; its times mean nothing.
    let steps = if a.quick { a.steps.min(10) } else { a.steps };
    // Both sides run on the same pinned cores (see `cpus`).
    let slots = cpus::CpuSlots::new(a.threads);
    let slot = slots.acquire();
    let mut cmd = executor::worker_command();
    if let Some(slot) = &slot {
        slot.bind(&mut cmd);
    }
    cmd.args(["bench", what, &a.threads.to_string(), &steps.to_string()]);
    if a.quick {
        cmd.arg("quick");
    }
    if !a.widths.is_empty() {
        if what != "hessian" {
            return Err(anyhow::anyhow!("--widths is for `eigentrace bench hessian`").into());
        }
        for w in &a.widths {
            let ok = w.split('-').count() >= 2
                && w.split('-')
                    .all(|n| n.parse::<usize>().is_ok_and(|n| n > 0));
            if !ok {
                return Err(anyhow::anyhow!(
                    "--widths {w}: expected layer widths joined by '-', e.g. 784-512-512-10"
                )
                .into());
            }
        }
        cmd.arg(format!("widths={}", a.widths.join(",")));
        cmd.arg(format!("rows={}", a.rows));
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(anyhow::anyhow!("the benchmark failed").into());
    }
    if cli.json {
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut command = format!("eigentrace bench {what} --threads {}", a.threads);
        if what == "train" {
            command.push_str(&format!(" --steps {steps}"));
        }
        for w in &a.widths {
            command.push_str(&format!(" --widths {w}"));
        }
        if !a.widths.is_empty() {
            command.push_str(&format!(" --rows {}", a.rows));
        }
        if a.quick {
            command.push_str(" --quick");
        }
        if let Some(o) = v.as_object_mut() {
            o.insert("quick".into(), a.quick.into());
            o.insert("command".into(), command.into());
            o.insert("machine".into(), machine(a.threads));
            o.insert("date".into(), utc_date().into());
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    }
    Ok(())
}

/// What a number was measured on.
pub(crate) fn machine(threads: usize) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "threads": threads,
        "torch": stages::LIBTORCH_VERSION,
        "os": format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        "eigentrace": env!("CARGO_PKG_VERSION"),
    })
}

/// Today's date in UTC, as YYYY-MM-DD.
pub(crate) fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 (a leap day of a century leap year) and the day after.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        // 2026-12-01: 20,788 days after the epoch.
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
    }
}

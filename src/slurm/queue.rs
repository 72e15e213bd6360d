//! squeue, sbatch and scancel: the only calls into Slurm.

use super::*;

/// "FAILED (NonZeroExitCode)", "CANCELLED", …
pub(super) fn describe(q: &QState) -> String {
    if q.reason.is_empty() || q.reason == "None" {
        q.state.clone()
    } else {
        format!("{} ({})", q.state, q.reason)
    }
}

/// The base job id of "123" or "123_4" (an array task).
pub(super) fn base_job(job: &str) -> &str {
    job.split('_').next().unwrap_or(job)
}

/// The squeue states of `jobs` ("123" or "123_4"), ended ones included while
/// slurmctld remembers them (MinJobAge). A job that is absent has ended long
/// ago, or never existed.
pub(super) fn queue_states<'a>(
    jobs: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<HashMap<String, QState>> {
    let bases: BTreeSet<&str> = jobs.into_iter().map(|j| base_job(j)).collect();
    let mut out = HashMap::new();
    if bases.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&str> = bases.into_iter().collect();
    let res = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j"])
        .arg(ids.join(","))
        .output()
        .context("running squeue (is Slurm's client on PATH?)")?;
    if !res.status.success() {
        let err = String::from_utf8_lossy(&res.stderr);
        // Every id purged from slurmctld's memory: none of them is queued.
        if err.contains("Invalid job id") {
            return Ok(out);
        }
        return Err(anyhow!("squeue failed: {}", err.trim()));
    }
    for line in String::from_utf8_lossy(&res.stdout).lines() {
        let mut it = line.trim().splitn(3, '|');
        let (Some(id), Some(state), reason) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        out.insert(
            id.to_string(),
            QState {
                state: state.to_string(),
                reason: reason.unwrap_or("").to_string(),
            },
        );
    }
    Ok(out)
}

pub(super) fn sbatch(args: &[String], script: &str) -> anyhow::Result<String> {
    let mut child = Command::new("sbatch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sbatch (is Slurm's client on PATH?)")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(anyhow!(
            "sbatch {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        ));
    }
    Ok(id)
}

pub(super) fn scancel(jobs: &[String]) {
    if jobs.is_empty() {
        return;
    }
    let _ = Command::new("scancel")
        .args(jobs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

//! Waiting for the submitted jobs: squeue polled once a second, a line per
//! change of a job's state, and a status line on a terminal.

use super::queue::{describe, queue_states};
use super::{last_log_line, SlurmDir};
use crate::slurm_plan::QState;
use crate::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline::Graph;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// Progress while the jobs run: a status line on a terminal, and a line per
/// change of a job's state.
pub(super) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(super) fn new(total: usize) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30.green/white}] {pos}/{len} jobs  {elapsed_precise}  {wide_msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_prefix("slurm");
        Progress { bar }
    }
    pub(super) fn line(&self, s: &str) {
        self.bar.suspend(|| eprintln!("{s}"));
    }
}

/// Polls squeue until every job in `jobs` (those of the instances at
/// `planned`) has left the queue; returns each job's last state. Gives up,
/// leaving the jobs queued, when squeue fails for a minute.
pub(super) fn until_ended(
    graph: &Graph,
    planned: &[usize],
    jobs: &[String],
    dirs: &SlurmDir,
) -> Result<HashMap<String, QState>, Failure> {
    let progress = Progress::new(planned.len());
    let mut last: HashMap<String, String> = HashMap::new();
    let mut ended: HashMap<String, QState> = HashMap::new();
    let mut squeue_failures = 0u32;
    while ended.len() < jobs.len() {
        let q = match queue_states(jobs) {
            Ok(q) => {
                squeue_failures = 0;
                q
            }
            Err(e) => {
                squeue_failures += 1;
                if squeue_failures >= 60 {
                    progress.bar.abandon();
                    return Err(e
                        .context("Slurm does not answer; the jobs stay queued, run again to resume waiting")
                        .into());
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut running = Vec::new();
        let mut pending = 0usize;
        for (&i, job) in planned.iter().zip(jobs) {
            if ended.contains_key(job) {
                continue;
            }
            let id = &graph.instances[i].id;
            let st = q.get(job).cloned().unwrap_or(QState {
                state: "GONE".into(),
                reason: String::new(),
            });
            if st.live() {
                if st.state == "PENDING" {
                    pending += 1;
                } else {
                    running.push(format!("{id} ({job})"));
                }
                if last.get(job) != Some(&st.state) {
                    if st.state == "RUNNING" {
                        progress.line(&format!("  run    {id}: job {job}"));
                    }
                    last.insert(job.clone(), st.state.clone());
                }
                continue;
            }
            progress.bar.inc(1);
            match st.state.as_str() {
                "COMPLETED" | "GONE" => {
                    progress.line(&format!("  done   {id}: job {job}"));
                }
                _ if st.doomed() || st.reason.contains("DependencyNeverSatisfied") => {
                    progress.line(&format!(
                        "  skip   {id}: job {job} cancelled, an input failed"
                    ));
                }
                _ => progress.line(&format!(
                    "  FAILED {id}: job {job} {}; log: {}{}",
                    describe(&st),
                    dirs.log(job).display(),
                    last_log_line(&dirs.log(job))
                        .map(|l| format!("\n         {l}"))
                        .unwrap_or_default()
                )),
            }
            ended.insert(job.clone(), st);
        }
        progress.bar.set_message(format!(
            "running: {}{}",
            if running.is_empty() {
                "none".to_string()
            } else {
                running.join(", ")
            },
            if pending > 0 {
                format!("; pending: {pending}")
            } else {
                String::new()
            }
        ));
        if ended.len() < jobs.len() {
            std::thread::sleep(Duration::from_millis(1000));
        }
    }
    progress.bar.finish_and_clear();
    Ok(ended)
}

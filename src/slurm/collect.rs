//! The final pass of a Slurm run: collect what the jobs committed (refs,
//! the out/ view) and summarize each instance as the local executor does,
//! with its job, its log, and why it failed or was skipped.

use super::queue::describe;
use super::submit::Plan;
use super::{last_log_line, SlurmDir};
use crate::slurm_plan::QState;
use crate::{Cli, Failure, RunArgs};
use experiment::Experiment;
use pipeline::{
    engine::ProgressFn, Event, EventSink, Executor, Graph, LockMode, Outcome, RunOptions,
    StageInputs, StageInstance, Store,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// An executor for the final pass, which only collects what the jobs committed.
struct NoExec;

impl Executor for NoExec {
    fn execute(
        &self,
        inst: &StageInstance,
        _: &StageInputs,
        _: &Path,
        _: ProgressFn<'_>,
    ) -> Result<Value, pipeline::ExecError> {
        Err(format!("{}: not executed here", inst.id).into())
    }
}

struct Quiet;

impl EventSink for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// What the submission and the wait leave for the final pass.
pub(super) struct Collect<'a> {
    pub store: &'a Store,
    pub store_root: &'a Path,
    pub graph: &'a Graph,
    pub dirs: &'a SlurmDir,
    /// Per instance: fresh, queued or submitted.
    pub plan: &'a [Plan],
    /// Per instance: its job (empty when fresh).
    pub jobs_of_plan: &'a dyn Fn(usize) -> String,
    /// Each waited-for job's last state.
    pub ended: &'a HashMap<String, QState>,
    /// When this invocation started (records older than it were cached).
    pub started_unix: u64,
    pub t0: Instant,
}

/// Collects the committed records under the store lock, writes the out/
/// view, and prints the run summary (text or JSON).
pub(super) fn summarize(
    cli: &Cli,
    a: &RunArgs,
    exp: &Experiment,
    c: &Collect<'_>,
) -> Result<(), Failure> {
    let (store, graph, dirs, plan, ended) = (c.store, c.graph, c.dirs, c.plan, c.ended);
    let (store_root, started_unix, t0) = (c.store_root, c.started_unix, c.t0);
    let n = graph.instances.len();
    let lock = store.lock(LockMode::Wait, &|holder| {
        eprintln!("waiting for the store lock (held by {holder})")
    })?;
    let opts = RunOptions {
        jobs: 1,
        verify: false,
        only: Some(HashSet::new()),
        ..Default::default()
    };
    let (reports, records) = pipeline::run(store, graph, &NoExec, &opts, &Quiet)?;
    let ids = graph.instances.iter().map(|i| i.id.clone()).collect();
    store.prune_refs(&graph.experiment, &ids)?;
    let out_dir = cli.out.join(&exp.name);
    crate::write_view(store, &out_dir, &records)?;
    drop(lock);

    let mut stages = Vec::with_capacity(n);
    let (mut ran, mut cached, mut failed, mut skipped) = (0, 0, 0, 0);
    for (i, rep) in reports.iter().enumerate() {
        let job = (plan[i] != Plan::Fresh).then(|| (c.jobs_of_plan)(i));
        let log = job.as_ref().map(|j| dirs.log(j));
        let mut s = json!({
            "id": rep.id, "kind": rep.kind, "key": rep.key,
            "job": job, "log": log,
        });
        let committed = rep.status == Outcome::Cached;
        let seconds = records[i].as_ref().map(|r| r.seconds).unwrap_or(0.0);
        // A job that found its instance fresh after all (downstream of a
        // forced stage whose outputs came out the same) executed nothing.
        let old = records[i]
            .as_ref()
            .is_some_and(|r| r.finished_unix < started_unix);
        if committed && (plan[i] == Plan::Fresh || old) {
            cached += 1;
            s["status"] = json!("cached");
            s["seconds"] = json!(0.0);
        } else if committed {
            ran += 1;
            s["status"] = json!("ran");
            s["seconds"] = json!(seconds);
        } else {
            let job = job.unwrap_or_default();
            let st = ended.get(&job);
            let failed_input = graph.instances[i]
                .inputs
                .iter()
                .find(|(_, d)| records[graph.position(d).expect("validated graph")].is_none());
            let doomed = st.is_some_and(|s| s.reason.contains("DependencyNeverSatisfied"));
            if let (Some((_, dep)), true) = (failed_input, doomed || st.is_none()) {
                skipped += 1;
                s["status"] = json!("skipped");
                s["reason"] = json!(format!("input {dep} failed"));
            } else {
                failed += 1;
                let log = dirs.log(&job);
                let silent = matches!(st, Some(q) if q.state == "COMPLETED" || q.state == "GONE");
                let why = match st {
                    Some(_) if silent => format!(
                        "job {job} ended without committing its result to {}: is the store on a filesystem the nodes share, at the same path?",
                        store_root.display()
                    ),
                    Some(q) => format!("job {job} {}", describe(q)),
                    None => format!("job {job} did not run"),
                };
                let tail = last_log_line(&log)
                    .map(|l| format!("; last log line: {l}"))
                    .unwrap_or_default();
                s["status"] = json!("failed");
                s["error"] = json!(format!("{why}; log: {}{tail}", log.display()));
                if silent {
                    // Failures the wait did not see as such.
                    eprintln!("  FAILED {}: {why}; log: {}", rep.id, log.display());
                }
            }
        }
        stages.push(s);
    }
    crate::commands::RunSummary {
        experiment: &exp.name,
        config: &a.config,
        store: &cli.store,
        out: &out_dir,
        slurm_logs: Some(dirs.logs()),
        counts: [ran, cached, failed, skipped],
        seconds: t0.elapsed().as_secs_f64(),
        stages: Value::Array(stages),
        figures: crate::figure_paths(&records, &out_dir),
    }
    .finish(cli.json)
}

//! `eigentrace run --executor slurm`: every stale stage instance becomes one
//! sbatch job (a sweep level becomes one job array), with `afterok`
//! dependencies on the jobs of its inputs, over a store on a shared
//! filesystem. A job is a call of this same binary (`eigentrace exec`), which
//! executes its one instance through the engine and commits it through the
//! store's protocol, so a killed job leaves no partial result.
//!
//! A job is named by (config, instance id), not by key: an instance's key
//! depends on its inputs' committed contents, which are known only when the
//! job runs. What was submitted is pinned by a snapshot of the config's text
//! and by the instance's *spec*, a hash over its kind, code version,
//! parameters, environment and its inputs' specs; a job whose spec no longer
//! matches (the binary changed under it) fails instead of computing something
//! else.
//!
//! ```text
//! <store>/slurm/ledger/<experiment>/<id>.json  the last job of each instance
//! <store>/slurm/logs/<job>.out                 each job's stdout and stderr
//! <store>/slurm/configs/<hash>.toml            config snapshots, by content
//! <store>/slurm/arrays/<hash>.txt              job arrays: task → "id<TAB>spec"
//! <store>/slurm/work/<job>/                    a running job's work dirs
//! ```
//!
//! The ledger is written under the store lock, one file per instance,
//! atomically. An invocation submits an instance only when it is not fresh,
//! and its ledger job is not live (squeue) with the same spec, or depends on
//! an input that had to be submitted again: so a second invocation submits
//! nothing while jobs are pending, and nothing when every stage is fresh.

use crate::slurm_plan::{self, LastJob, Part, PlanInput, QState};
use crate::{usage, Cli, DeviceArg, Failure, RunArgs};
use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use experiment::{Experiment, SlurmResources};
use pipeline::{Event, EventSink, Graph, Hash, Outcome, RunOptions, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod collect;
mod job;
mod ledger;
mod queue;
mod submit;
mod wait;

pub use job::exec;
use ledger::*;
use queue::*;
use submit::*;

/// Where stale stages execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecutorArg {
    /// Here, in this process and its workers.
    Local,
    /// As Slurm jobs (sbatch), over a store on a shared filesystem.
    Slurm,
}

/// `eigentrace exec`: run one instance as a Slurm job does (hidden).
#[derive(Args)]
pub struct ExecArgs {
    /// The experiment config: its directory anchors relative data paths.
    config: PathBuf,
    /// The instance to execute, e.g. 'train[adam-lr3e-3-s0]'.
    #[arg(long, required_unless_present = "list", conflicts_with = "list")]
    id: Option<String>,
    /// A job array's task list: line $SLURM_ARRAY_TASK_ID is "<id>\t<spec>".
    #[arg(long)]
    list: Option<PathBuf>,
    /// Read the config's text from this snapshot instead of the config.
    #[arg(long)]
    text: Option<PathBuf>,
    /// The instance's spec when it was submitted; a different one fails the job.
    #[arg(long)]
    spec: Option<String>,
    /// The device rule of the submission (auto: CUDA for kinds given gpus).
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// libtorch threads (default: $SLURM_CPUS_PER_TASK, else the usable CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Execute the instance even when it is fresh.
    #[arg(long)]
    force: bool,
}

/// The device of `kind`'s jobs: `--device cpu|cuda` for all, or with auto,
/// CUDA where the kind is given gpus.
fn device_for(arg: DeviceArg, res: &SlurmResources) -> &'static str {
    match arg {
        DeviceArg::Cpu => "cpu",
        DeviceArg::Cuda => "cuda",
        DeviceArg::Auto => {
            if res.gpus.unwrap_or(0) > 0 {
                "cuda"
            } else {
                "cpu"
            }
        }
    }
}

fn device_name(arg: DeviceArg) -> &'static str {
    match arg {
        DeviceArg::Auto => "auto",
        DeviceArg::Cpu => "cpu",
        DeviceArg::Cuda => "cuda",
    }
}

/// The graph as the jobs compute it: each torch stage on its kind's device.
/// The submitter and every job build it alike, so their keys agree.
fn job_graph(exp: &Experiment, device: DeviceArg) -> Graph {
    let mut g = exp.graph(&crate::torch_env("cpu"));
    for inst in &mut g.instances {
        if let Some(d) = inst.env.get_mut("device") {
            *d = json!(device_for(device, &exp.slurm.resources(&inst.kind)));
        }
    }
    g
}

/// Each instance's spec (graph order): what it computes, up to its inputs'
/// contents, as a Merkle hash over its inputs' specs.
fn specs(graph: &Graph) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(graph.instances.len());
    for inst in &graph.instances {
        let inputs: BTreeMap<&str, &str> = inst
            .inputs
            .iter()
            .map(|(role, dep)| {
                let j = graph.position(dep).expect("validated graph");
                (role.as_str(), out[j].as_str())
            })
            .collect();
        let v = json!({
            "kind": inst.kind,
            "code_version": inst.code_version,
            "params": inst.params,
            "env": inst.env,
            "inputs": inputs,
        });
        out.push(Hash::of(&pipeline::canonical_bytes(&v)).to_hex()[..32].to_string());
    }
    out
}

/// The instance `i` and everything it reads from, as a graph of their own.
fn ancestors(graph: &Graph, i: usize) -> Graph {
    let mut keep = vec![false; graph.instances.len()];
    let mut stack = vec![i];
    while let Some(j) = stack.pop() {
        if std::mem::replace(&mut keep[j], true) {
            continue;
        }
        for (_, dep) in &graph.instances[j].inputs {
            stack.push(graph.position(dep).expect("validated graph"));
        }
    }
    let insts = graph
        .instances
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(s, _)| s.clone())
        .collect();
    Graph::new(graph.experiment.clone(), insts).expect("a closed subgraph")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A job name Slurm shows: `et-<experiment>-<id>`, with only [A-Za-z0-9._-].
fn job_name(experiment: &str, what: &str) -> String {
    let raw = format!("et-{experiment}-{what}");
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.trim_end_matches('_').chars().take(100).collect()
}

/// Write `bytes` to `dir/<their hash>.<ext>` (once) and return the path.
fn put_by_content(dir: &Path, ext: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = dir.join(format!("{}.{ext}", &Hash::of(bytes).to_hex()[..32]));
    if std::fs::read(&p).ok().as_deref() != Some(bytes) {
        pipeline::store::write_file_atomic(&p, bytes)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(p)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()))
}

/// `eigentrace run --executor slurm`.
pub fn run(cli: &Cli, a: &RunArgs, exp: Experiment) -> Result<(), Failure> {
    for tool in ["sbatch", "squeue", "scancel"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(usage(anyhow!(
                "--executor slurm: `{tool}` is not on PATH; run on a Slurm submit host (or use --executor local)"
            )));
        }
    }
    let t0 = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let force = crate::force_globs(&a.force)?;
    let config = absolute(&a.config).map_err(usage)?;
    let text = std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
    // Jobs are told the store's absolute path: it must be the same on every node.
    Store::open(&cli.store).map_err(crate::engine_err)?;
    let store_root = absolute(&cli.store)?;
    let store = Store::open(&store_root)?;
    let graph = job_graph(&exp, a.device);
    let specs = specs(&graph);
    let n = graph.instances.len();
    let dirs = SlurmDir::new(&store_root);
    let ledger = dirs.ledger(&graph.experiment);
    let bin = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("locating the eigentrace binary")?;

    // Plan and submit, under the store lock.
    let lock = crate::lock_store(&store, &store_root, a.no_wait, &|m| eprintln!("{m}"))?;
    pipeline::view::check_dest(&store, &cli.out.join(&exp.name)).map_err(crate::engine_err)?;
    // Jobs write into tmp/ only with the lock held, and work in slurm/work/.
    store.sweep_tmp()?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    let entries: Vec<Option<Entry>> = graph.instances.iter().map(|i| ledger.get(&i.id)).collect();
    // Instances that left the config (a changed sweep): their jobs are not wanted.
    let orphans: Vec<(PathBuf, Entry)> = ledger
        .all()
        .into_iter()
        .filter(|(_, e)| graph.position(&e.id).is_none())
        .collect();
    let mut known: Vec<String> = entries.iter().flatten().map(|e| e.job.clone()).collect();
    known.extend(orphans.iter().map(|(_, e)| e.job.clone()));
    let work_dirs: Vec<(String, PathBuf)> = std::fs::read_dir(dirs.work())
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_digit() || c == '_')
                })
                .collect()
        })
        .unwrap_or_default();
    known.extend(work_dirs.iter().map(|(name, _)| name.clone()));
    let queue = queue_states(&known)?;
    // The work dirs of jobs that ended (killed mid-stage): their leftovers.
    for (name, p) in &work_dirs {
        if !queue.get(name).is_some_and(QState::live) {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    let snapshot = put_by_content(&dirs.root.join("configs"), "toml", &text)?;
    std::fs::create_dir_all(dirs.logs())
        .with_context(|| format!("creating {}", dirs.logs().display()))?;
    let command = format!(
        "{} --store {} exec {} --text {} --device {}",
        shell_quote(&bin.display().to_string()),
        shell_quote(&store_root.display().to_string()),
        shell_quote(&config.display().to_string()),
        shell_quote(&snapshot.display().to_string()),
        device_name(a.device),
    );
    let sub = Submitter {
        exp: &exp,
        graph: &graph,
        specs: &specs,
        dirs: &dirs,
        ledger: &ledger,
        command,
        store: store_root.clone(),
        config: config.clone(),
    };

    // The plan (pure: slurm_plan.rs), then the IO: cancel, submit.
    let is_forced: Vec<bool> = graph
        .instances
        .iter()
        .map(|inst| pipeline::engine::is_forced(force.as_ref(), &a.force, inst))
        .collect();
    let decided = slurm_plan::plan(&PlanInput {
        graph: &graph,
        stale: states
            .iter()
            .map(|s| s.state != pipeline::State::Fresh)
            .collect(),
        forced: is_forced,
        specs: &specs,
        last: entries
            .iter()
            .map(|e| {
                e.as_ref().map(|e| LastJob {
                    job: e.job.clone(),
                    spec: e.spec.clone(),
                })
            })
            .collect(),
        orphans: orphans.iter().map(|(_, e)| e.job.clone()).collect(),
        queue: &queue,
        arrays: exp.slurm.arrays,
    });
    for (p, _) in &orphans {
        let _ = std::fs::remove_file(p);
    }
    let superseded = decided.superseded.clone();
    // Superseded jobs (a changed instance, or a dead input): they must not
    // commit a result that is no longer wanted.
    scancel(&superseded);

    // Submit in order; a submission whose input's submission failed waits.
    let mut plan: Vec<Plan> = decided
        .parts
        .iter()
        .map(|p| match p {
            Part::Fresh => Plan::Fresh,
            Part::Queued(job) => Plan::Queued(job.clone()),
            Part::Submit(_) => Plan::Submitted(String::new()),
        })
        .collect();
    let job_of = |plan: &[Plan], j: usize| -> Option<String> {
        match &plan[j] {
            Plan::Queued(job) => Some(job.clone()),
            Plan::Submitted(job) if !job.is_empty() => Some(job.clone()),
            _ => None,
        }
    };
    let mut n_sbatch = 0usize;
    let mut n_arrays = 0usize;
    let mut submit_error = None;
    for s in &decided.submissions {
        let Some(deps) = s
            .deps
            .iter()
            .map(|&j| job_of(&plan, j))
            .collect::<Option<BTreeSet<String>>>()
        else {
            continue; // an input's submission failed
        };
        match sub.submit(&s.members, &deps, s.forced) {
            Ok(jobs) => {
                n_sbatch += 1;
                if s.members.len() > 1 {
                    n_arrays += 1;
                }
                for (&m, job) in s.members.iter().zip(jobs) {
                    plan[m] = Plan::Submitted(job);
                }
            }
            Err(e) => {
                submit_error.get_or_insert(e);
            }
        }
    }
    drop(lock);

    let planned: Vec<usize> = (0..n).filter(|&i| plan[i] != Plan::Fresh).collect();
    let n_new = planned
        .iter()
        .filter(|&&i| matches!(&plan[i], Plan::Submitted(j) if !j.is_empty()))
        .count();
    let n_queued = planned
        .iter()
        .filter(|&&i| matches!(plan[i], Plan::Queued(_)))
        .count();
    eprintln!(
        "{}: {} stages: {} fresh, {} submitted ({} sbatch call{}, {} array{}), {} already queued; logs in {}",
        exp.name,
        n,
        n - planned.len(),
        n_new,
        n_sbatch,
        if n_sbatch == 1 { "" } else { "s" },
        n_arrays,
        if n_arrays == 1 { "" } else { "s" },
        n_queued,
        dirs.logs().display()
    );
    if !superseded.is_empty() {
        eprintln!(
            "cancelled {} superseded job(s) (their instances changed or left the config): {}",
            superseded.len(),
            superseded.join(" ")
        );
    }
    if let Some(e) = submit_error {
        return Err(Failure {
            code: 1,
            err: e.context(
                "submitting to Slurm (the jobs already submitted stay queued; run again to resume)",
            ),
        });
    }
    let job_at = |i: usize| job_of(&plan, i).unwrap_or_default();

    if a.detach {
        if cli.json {
            let stages: Vec<Value> = graph
                .instances
                .iter()
                .enumerate()
                .map(|(i, inst)| {
                    let (status, job) = match &plan[i] {
                        Plan::Fresh => ("cached", None),
                        Plan::Queued(j) => ("queued", Some(j.clone())),
                        Plan::Submitted(j) => ("submitted", Some(j.clone())),
                    };
                    json!({
                        "id": inst.id, "kind": inst.kind, "key": states[i].key,
                        "status": status, "job": job,
                        "log": job.as_ref().map(|j| dirs.log(j)),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "experiment": exp.name, "config": config, "store": store_root,
                    "executor": "slurm", "detached": true, "stages": stages,
                }))
                .unwrap()
            );
        } else {
            for &i in &planned {
                eprintln!("  job {:<10} {}", job_at(i), graph.instances[i].id);
            }
            eprintln!(
                "detached: `eigentrace run --executor slurm {}` waits for them (and submits nothing twice)",
                a.config.display()
            );
        }
        return Ok(());
    }

    let jobs: Vec<String> = planned.iter().map(|&i| job_at(i)).collect();
    let ended = wait::until_ended(&graph, &planned, &jobs, &dirs)?;
    collect::summarize(
        cli,
        a,
        &exp,
        &collect::Collect {
            store: &store,
            store_root: &store_root,
            graph: &graph,
            dirs: &dirs,
            plan: &plan,
            jobs_of_plan: &job_at,
            ended: &ended,
            started_unix,
            t0,
        },
    )
}

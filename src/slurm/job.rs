//! `eigentrace exec`: one instance run as a Slurm job does.

use super::*;

/// Progress of one job, as lines in its log.
pub(super) struct LogSink {
    pub(super) last: std::sync::Mutex<Instant>,
}

impl EventSink for LogSink {
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Started { id, reason, .. } => eprintln!("run {id}: {reason}"),
            Event::Progress {
                id,
                done,
                total,
                msg,
            } => {
                let mut last = self.last.lock().unwrap();
                if last.elapsed() >= Duration::from_secs(10) || (total > 0 && done == total) {
                    *last = Instant::now();
                    eprintln!("  {id}: {done}/{total} {msg}");
                }
            }
            Event::Finished(rep) => match rep.status {
                Outcome::Ran => eprintln!("done {} in {:.1}s", rep.id, rep.seconds),
                Outcome::Failed => eprintln!(
                    "FAILED {}: {}",
                    rep.id,
                    rep.error.as_deref().unwrap_or("unknown error")
                ),
                _ => {}
            },
        }
    }
}

/// `eigentrace exec`: execute one instance whose inputs are committed, and
/// commit it, as a Slurm job does.
pub fn exec(cli: &Cli, a: &ExecArgs) -> Result<(), Failure> {
    let text_path = a.text.as_ref().unwrap_or(&a.config);
    let text = std::fs::read_to_string(text_path)
        .with_context(|| format!("reading {}", text_path.display()))
        .map_err(usage)?;
    let exp = Experiment::parse(&a.config, &text).map_err(usage)?;
    let graph = job_graph(&exp, a.device);
    let (id, want) = match (&a.id, &a.list) {
        (Some(id), _) => (id.clone(), a.spec.clone()),
        (None, Some(list)) => {
            let task: usize = std::env::var("SLURM_ARRAY_TASK_ID")
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| {
                    usage(anyhow!(
                        "--list needs $SLURM_ARRAY_TASK_ID (a job array task)"
                    ))
                })?;
            let lines = std::fs::read_to_string(list)
                .with_context(|| format!("reading {}", list.display()))?;
            let line = lines
                .lines()
                .nth(task)
                .ok_or_else(|| anyhow!("{}: no line {task} for this array task", list.display()))?;
            let (id, spec) = line.split_once('\t').unwrap_or((line, ""));
            (
                id.to_string(),
                Some(spec.to_string()).filter(|s| !s.is_empty()),
            )
        }
        (None, None) => return Err(usage(anyhow!("give --id or --list"))),
    };
    let Some(i) = graph.position(&id) else {
        return Err(usage(anyhow!(
            "{}: no stage instance `{id}` in this config",
            a.config.display()
        )));
    };
    let spec = &specs(&graph)[i];
    if let Some(want) = want {
        if *spec != want {
            return Err(anyhow!(
                "{id}: it changed since this job was submitted (spec {want}, now {spec}: the config or the eigentrace binary differs); run `eigentrace run --executor slurm` again"
            )
            .into());
        }
    }
    // Read first (a store not made yet has no committed inputs either).
    let store = Store::at(&cli.store).map_err(crate::engine_err)?;
    let sub = ancestors(&graph, graph.position(&id).expect("present"));
    let inst = sub.get(&id).expect("in its own subgraph").clone();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let job = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_JOB_ID"),
    ) {
        (Ok(a), Ok(t), _) => format!("{a}_{t}"),
        (_, _, Ok(j)) => j,
        _ => format!("pid-{host}-{}", std::process::id()),
    };
    // Its inputs must be committed and fresh: the submitter's afterok
    // dependencies see to it; a job started by hand may find otherwise.
    let states = pipeline::status(&store, &sub, false)?;
    let stale: Vec<String> = states
        .iter()
        .filter(|s| s.id != id && s.state != pipeline::State::Fresh)
        .map(|s| {
            format!(
                "{} ({}: {})",
                s.id,
                s.state,
                pipeline::reason::join(&s.reasons)
            )
        })
        .collect();
    if !stale.is_empty() {
        return Err(anyhow!(
            "{id}: its inputs are not all committed and fresh in {}: {}",
            cli.store.display(),
            stale.join(", ")
        )
        .into());
    }
    // A writer, as `run` is: it may make the store.
    let store = Store::open(&cli.store).map_err(crate::engine_err)?;
    // The job's CPUs: --cpus-per-task, else what Slurm allocated on this node
    // ("4", or "4(x2)"), else the CPUs this process may use.
    let slurm_cpus = |var: &str| -> Option<usize> {
        let v = std::env::var(var).ok()?;
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let threads = a
        .threads
        .or_else(|| slurm_cpus("SLURM_CPUS_PER_TASK"))
        .or_else(|| slurm_cpus("SLURM_JOB_CPUS_PER_NODE"))
        .unwrap_or_else(|| stages::cpus::allowed().len())
        .max(1);
    // A cluster without task/affinity leaves every job all the node's CPUs:
    // pinning each job's worker to the first `threads` of them would stack
    // the node's jobs on the same cores, so let the kernel place them.
    if stages::cpus::allowed().len() > threads && std::env::var_os("OMP_PROC_BIND").is_none() {
        std::env::set_var("OMP_PROC_BIND", "false");
    }
    let device = inst
        .env
        .get("device")
        .and_then(Value::as_str)
        .unwrap_or("cpu")
        .to_string();
    eprintln!(
        "eigentrace exec {id} (job {job} on {host}, {threads} thread(s), {device}, spec {spec})"
    );
    let work_root = SlurmDir::new(store.root()).work().join(&job);
    let opts = RunOptions {
        force_exact: if a.force { vec![id.clone()] } else { vec![] },
        jobs: 1,
        only: Some(HashSet::from([id.clone()])),
        work_root: Some(work_root.clone()),
        lock_writes: true,
        ..Default::default()
    };
    let runner = crate::executor::StageRunner::new(device, threads, exp.base_dir.clone());
    let sink = LogSink {
        last: std::sync::Mutex::new(Instant::now()),
    };
    let result = pipeline::run(&store, &sub, &runner, &opts, &sink);
    let _ = std::fs::remove_dir_all(&work_root);
    let (reports, _) = result?;
    let rep = reports
        .iter()
        .find(|r| r.id == id)
        .expect("the instance is reported");
    match rep.status {
        Outcome::Ran => Ok(()),
        Outcome::Cached => {
            eprintln!(
                "{id}: already fresh (key {})",
                rep.key.as_deref().unwrap_or("?")
            );
            Ok(())
        }
        Outcome::Failed | Outcome::Skipped => Err(anyhow!(
            "{id} failed: {}",
            rep.error
                .as_deref()
                .or(rep.reason.as_deref())
                .unwrap_or("unknown error")
        )
        .into()),
    }
}

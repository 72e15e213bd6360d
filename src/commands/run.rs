//! `eigentrace run`: execute every stale stage, reuse every fresh one, rebuild out/.

use crate::*;

pub(crate) fn cmd_run(cli: &Cli, a: &RunArgs) -> Result<(), Failure> {
    let exp = load_for(&a.config, a.force_size, Some(&cli.store))?;
    if a.executor == slurm::ExecutorArg::Slurm {
        return slurm::run(cli, a, exp);
    }
    if a.detach {
        return Err(usage(anyhow::anyhow!("--detach needs --executor slurm")));
    }
    let device = resolve_device(a.device)?;
    let force = force_globs(&a.force)?;
    let graph = exp.graph(&torch_env(&device));
    let store = Store::open(&cli.store).map_err(|e| match e {
        pipeline::PipelineError::Refused(_) => usage(e),
        other => Failure::from(
            anyhow::Error::from(other)
                .context(format!("opening the store {}", cli.store.display())),
        ),
    })?;
    let ui = ui::Ui::new(graph.instances.len());
    let _lock = lock_store(&store, &cli.store, a.no_wait, &|m| ui.line(m))?;
    // Before computing anything: is out/<name> ours to (re)build?
    pipeline::view::check_dest(&store, &cli.out.join(&exp.name)).map_err(engine_err)?;
    store.sweep_tmp()?;
    // libtorch's intra-op threads share the cores between parallel stages.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let opts = RunOptions {
        force_exact: a.force.clone(),
        force,
        jobs: a.jobs.max(1),
        verify: a.verify,
        ..Default::default()
    };
    let runner =
        executor::StageRunner::new(device, (cores / a.jobs.max(1)).max(1), exp.base_dir.clone());
    let t0 = std::time::Instant::now();
    let (reports, records) = pipeline::run(&store, &graph, &runner, &opts, &ui)?;
    ui.finish();
    let out_dir = cli.out.join(&exp.name);
    write_view(&store, &out_dir, &records)?;
    let count = |o: Outcome| reports.iter().filter(|r| r.status == o).count();
    RunSummary {
        experiment: &exp.name,
        config: &a.config,
        store: &cli.store,
        out: &out_dir,
        slurm_logs: None,
        counts: [
            count(Outcome::Ran),
            count(Outcome::Cached),
            count(Outcome::Failed),
            count(Outcome::Skipped),
        ],
        seconds: t0.elapsed().as_secs_f64(),
        stages: serde_json::to_value(&reports)?,
        figures: figure_paths(&records, &out_dir),
    }
    .finish(cli.json)
}

/// What a run did, local or on Slurm: `--json`'s object on stdout, the
/// one-line tally, the results and figures on stderr, and exit 1 when a
/// stage failed or was skipped.
pub(crate) struct RunSummary<'a> {
    pub experiment: &'a str,
    pub config: &'a Path,
    pub store: &'a Path,
    pub out: &'a Path,
    /// Under `--executor slurm`: where the jobs' logs are.
    pub slurm_logs: Option<PathBuf>,
    /// Ran, cached, failed, skipped.
    pub counts: [usize; 4],
    pub seconds: f64,
    /// One object per stage instance.
    pub stages: serde_json::Value,
    pub figures: Vec<String>,
}

impl RunSummary<'_> {
    pub(crate) fn finish(self, json: bool) -> Result<(), Failure> {
        let [ran, cached, failed, skipped] = self.counts;
        let n = self.stages.as_array().map_or(0, Vec::len);
        if json {
            let mut m = serde_json::Map::new();
            m.insert("experiment".into(), json!(self.experiment));
            m.insert("config".into(), json!(self.config));
            m.insert("store".into(), json!(self.store));
            m.insert("out".into(), json!(self.out));
            if self.slurm_logs.is_some() {
                m.insert("executor".into(), json!("slurm"));
            }
            m.insert("ok".into(), json!(failed + skipped == 0));
            m.insert("seconds".into(), json!(self.seconds));
            m.insert("stages".into(), self.stages);
            m.insert("figures".into(), json!(self.figures));
            println!("{}", serde_json::to_string_pretty(&m).unwrap());
        }
        eprintln!(
            "{}: {n} stages, {ran} ran, {cached} cached, {failed} failed, {skipped} skipped, in {:.1}s{}",
            self.experiment,
            self.seconds,
            if self.slurm_logs.is_some() { " (slurm)" } else { "" }
        );
        eprintln!("results: {}", self.out.display());
        for f in self
            .figures
            .iter()
            .filter(|f| f.ends_with(".png") || f.ends_with("index.html"))
        {
            eprintln!("report:  {f}");
        }
        if failed + skipped > 0 {
            let logs = self
                .slurm_logs
                .map(|d| format!("; logs in {}", d.display()))
                .unwrap_or_default();
            return Err(Failure {
                code: 1,
                err: anyhow::anyhow!("{} stage(s) failed or were skipped{logs}", failed + skipped),
            });
        }
        Ok(())
    }
}

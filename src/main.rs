//! eigentrace: train MLPs with several optimizers, track the leading Hessian
//! eigenvectors through training, and compare their displacement and
//! localization, in a reproducible, content-addressed pipeline.
//!
//! This binary only parses the command line and wires the stages (the
//! `stages` and `reports` crates) to the engine (`pipeline`).

mod cold;
mod cpus;
mod executor;
mod slurm;
mod slurm_plan;
mod ui;

use clap::{Args, Parser, Subcommand, ValueEnum};
use experiment::{Experiment, StageKind};
use pipeline::{LockMode, Outcome, RunOptions, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "eigentrace",
    version,
    about = "Track Hessian eigenvectors through MLP training under different optimizers",
    long_about = "eigentrace trains MLPs with several optimizers, extracts the leading Hessian \
eigenpairs at checkpoints (Lanczos over Hessian-vector products), measures how the \
eigenvectors move (two-time overlaps) and localize (IPR), and renders comparative figures.\n\n\
Every stage is cached by a blake3 key of its parameters, code version, environment and \
inputs' content: running again executes only what changed.\n\n\
Exit codes: 0 ok; 1 a stage failed; 2 a usage or config error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The content-addressed store.
    #[arg(
        long,
        global = true,
        env = "EIGENTRACE_STORE",
        default_value = ".eigentrace"
    )]
    store: PathBuf,
    /// Where readable results go: DIR/<experiment>/.
    #[arg(long, global = true, default_value = "out")]
    out: PathBuf,
    /// Print one JSON object on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Args)]
struct RunArgs {
    /// The experiment config (TOML), e.g. configs/quick.toml.
    config: PathBuf,
    /// Execute instances whose id or kind matches this glob even when fresh (e.g. 'hessian*'). Repeatable.
    #[arg(long)]
    force: Vec<String>,
    /// Run up to N independent stages at once (N ≥ 1).
    #[arg(long, short = 'j', default_value_t = 1, value_parser = jobs_arg)]
    jobs: usize,
    /// Where tensors live.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Fail at once if another eigentrace holds the store, instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Rehash cached objects before reusing them.
    #[arg(long)]
    verify: bool,
    /// Where stale stages execute: here, or as Slurm jobs over a shared --store (README: Running on Slurm).
    #[arg(long, value_enum, default_value = "local")]
    executor: slurm::ExecutorArg,
    /// With --executor slurm: submit the jobs and exit, without waiting for them.
    #[arg(long)]
    detach: bool,
    /// Run a config whose estimated memory or disk exceeds this machine's.
    #[arg(long)]
    force_size: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The experiment config (TOML).
    config: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Rehash objects instead of checking their sizes.
    #[arg(long)]
    verify: bool,
    /// Accept a config whose estimated memory or disk exceeds this machine's.
    #[arg(long)]
    force_size: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment: execute every stale stage, reuse every fresh one, and
    /// rebuild out/<experiment>/ (data, runs, eigenpairs, metrics, report).
    Run(RunArgs),
    /// Render the report (figures, index.html, provenance.json) from cached
    /// results alone: nothing is trained or computed; stale inputs are an error.
    Report(StatusArgs),
    /// Show each stage instance as fresh, stale or missing, and why (which
    /// parameter changed, which input, or that code or environment changed).
    Status(StatusArgs),
    /// Prove where a result came from: the provenance chain of a file (e.g.
    /// out/quick/report/optimizer_comparison.png) or hash, down to the config,
    /// with every hash verified.
    Audit(AuditArgs),
    /// Rehash every object in the store; list the corrupt and the missing.
    /// Exits 1 if any.
    Verify,
    /// Remove what no current result needs: records that no experiment's
    /// latest run reaches, and the objects no kept record lists.
    Gc(GcArgs),
    /// Print an Arrow file's schema and first rows (through polars), e.g.
    /// out/quick/runs/adam-lr3e-3-s0/metrics/localization.arrow.
    Show(ShowArgs),
    /// Measure speed side by side with the PyTorch peers (same torch, same
    /// threads): `train` (steps per second against an eager loop), `hessian`
    /// (HVP cost, R-operator blocks, Lanczos against scipy's eigsh and power
    /// iteration, warm start).
    Bench(BenchArgs),
    /// Execute one stage instance whose inputs are committed, as a Slurm job
    /// of `run --executor slurm` does.
    #[command(hide = true)]
    Exec(slurm::ExecArgs),
}

#[derive(Args)]
struct ShowArgs {
    /// The Arrow IPC file.
    file: PathBuf,
    /// How many rows to print.
    #[arg(long, short = 'n', default_value_t = 10)]
    rows: usize,
}

#[derive(Args)]
struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "train")]
    what: BenchWhat,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 200)]
    steps: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchWhat {
    Train,
    Hessian,
    Metrics,
}

#[derive(Args)]
struct AuditArgs {
    /// A file (any output under out/) or 8+ hex digits of an object hash or stage key.
    target: String,
    /// Execute the producing stage again in a temp dir and compare the bytes.
    #[arg(long)]
    reproduce: bool,
    /// Recompute a sample of a hessian stage's checkpoints from random starts
    /// (no warm start) and print how far the stored eigenpairs are from them:
    /// the largest relative eigenvalue difference and subspace difference 1 − q.
    #[arg(long)]
    cold: bool,
    /// How many checkpoints --cold recomputes (evenly spread, never the first).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Device for --reproduce and --cold.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

#[derive(Args)]
struct GcArgs {
    /// Only list what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Fail at once if another eigentrace holds the store.
    #[arg(long)]
    no_wait: bool,
}

fn jobs_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a number of parallel stages in 1..=1024"
        )),
    }
}

/// An error with its exit code.
struct Failure {
    code: u8,
    err: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            err: e.into(),
        }
    }
}

fn usage(err: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        err: err.into(),
    }
}

/// An engine error, as a usage error (exit 2) where eigentrace refused to
/// touch the user's files, else a failure (exit 1).
pub(crate) fn engine_err(e: pipeline::PipelineError) -> Failure {
    match e {
        pipeline::PipelineError::Refused(_) => usage(e),
        other => other.into(),
    }
}

/// Rebuild `out_dir` from `records`, and say what happened to the user's
/// files in it (kept, moved aside) and which edited results were restored.
pub(crate) fn write_view(
    store: &Store,
    out_dir: &Path,
    records: &[Option<pipeline::record::Record>],
) -> Result<(), Failure> {
    let kept: Vec<&pipeline::Record> = records.iter().flatten().collect();
    let rep = pipeline::view::materialize(store, out_dir, &kept).map_err(|e| match e {
        pipeline::PipelineError::Refused(_) => usage(e),
        other => Failure::from(
            anyhow::Error::from(other).context(format!("writing {}", out_dir.display())),
        ),
    })?;
    let show = |v: &[String]| {
        let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 5 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    if !rep.restored.is_empty() {
        eprintln!(
            "restored {} edited or deleted result file(s) in {}: {}",
            rep.restored.len(),
            out_dir.display(),
            show(&rep.restored)
        );
    }
    if !rep.kept.is_empty() {
        eprintln!(
            "kept {} file(s) of yours in {}: {}",
            rep.kept.len(),
            out_dir.display(),
            show(&rep.kept)
        );
    }
    for (was, now) in &rep.moved_aside {
        eprintln!(
            "moved your {} aside to {} (a result now goes there)",
            out_dir.join(was).display(),
            out_dir.join(now).display()
        );
    }
    Ok(())
}

/// "cpu" or "cuda", without loading libtorch: with no NVIDIA device node
/// there is no CUDA for libtorch either; otherwise the worker is asked.
fn resolve_device(d: DeviceArg) -> Result<String, Failure> {
    let cuda_visible = || -> Result<bool, Failure> {
        if !Path::new("/dev/nvidiactl").exists() && !Path::new("/dev/nvidia0").exists() {
            return Ok(false);
        }
        let out = executor::worker_command().arg("probe").output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(v["cuda"].as_bool().unwrap_or(false))
    };
    match d {
        DeviceArg::Cpu => Ok("cpu".into()),
        DeviceArg::Auto => Ok(if cuda_visible()? { "cuda" } else { "cpu" }.into()),
        DeviceArg::Cuda => {
            if cuda_visible()? {
                Ok("cuda".into())
            } else {
                Err(usage(anyhow::anyhow!("--device cuda: no CUDA device is visible to libtorch (use --device cpu or auto)")))
            }
        }
    }
}

fn torch_env(dev: &str) -> serde_json::Value {
    json!({ "libtorch": stages::LIBTORCH_VERSION, "device": dev })
}

fn load(config: &Path, force_size: bool) -> Result<Experiment, Failure> {
    load_for(config, force_size, None)
}

/// Load and check `config`; with `results_dir`, also against the free disk
/// space where the results will go (the store).
fn load_for(
    config: &Path,
    force_size: bool,
    results_dir: Option<&Path>,
) -> Result<Experiment, Failure> {
    let opts = experiment::LoadOptions {
        force_size,
        disk_free_bytes: results_dir.and_then(free_bytes),
        ..Default::default()
    };
    Experiment::load_with(config, &opts).map_err(usage)
}

/// Free bytes on the filesystem of `dir` (or of its nearest existing parent).
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(dir).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The `--force` patterns as globs over instance ids and kinds (None: none given).
pub(crate) fn force_globs(patterns: &[String]) -> Result<Option<globset::GlobSet>, Failure> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = globset::GlobSetBuilder::new();
    for f in patterns {
        b.add(
            globset::GlobBuilder::new(f)
                .literal_separator(false)
                .build()
                .map_err(|e| usage(anyhow::anyhow!("--force {f}: {e}")))?,
        );
    }
    Ok(Some(b.build().map_err(usage)?))
}

/// The store's writer lock, waiting for it (with a message through `say`)
/// unless `no_wait`; a lock held elsewhere under `no_wait` is a usage error.
pub(crate) fn lock_store(
    store: &Store,
    root: &Path,
    no_wait: bool,
    say: &dyn Fn(&str),
) -> Result<pipeline::store::StoreLock, Failure> {
    let mode = if no_wait {
        LockMode::NoWait
    } else {
        LockMode::Wait
    };
    store
        .lock(mode, &|holder| {
            say(&format!(
                "waiting for the store lock at {} (held by {holder}); --no-wait fails instead",
                root.display()
            ))
        })
        .map_err(|e| match e {
            pipeline::PipelineError::Locked(_) => usage(e),
            other => other.into(),
        })
}

/// The files of the committed report records, as paths under `out_dir`.
pub(crate) fn figure_paths(
    records: &[Option<pipeline::record::Record>],
    out_dir: &Path,
) -> Vec<String> {
    records
        .iter()
        .flatten()
        .filter(|r| r.kind == StageKind::Report.name())
        .flat_map(|r| {
            r.outputs
                .keys()
                .map(|k| out_dir.join(&r.view).join(k).display().to_string())
        })
        .collect()
}

fn cmd_run(cli: &Cli, a: &RunArgs) -> Result<(), Failure> {
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
    let failed = count(Outcome::Failed) + count(Outcome::Skipped);
    let figures = figure_paths(&records, &out_dir);
    if cli.json {
        let summary = json!({
            "experiment": exp.name,
            "config": a.config,
            "store": cli.store,
            "out": out_dir,
            "ok": failed == 0,
            "seconds": t0.elapsed().as_secs_f64(),
            "stages": reports,
            "figures": figures,
        });
        println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    }
    eprintln!(
        "{}: {} stages, {} ran, {} cached, {} failed, {} skipped, in {:.1}s",
        exp.name,
        reports.len(),
        count(Outcome::Ran),
        count(Outcome::Cached),
        count(Outcome::Failed),
        count(Outcome::Skipped),
        t0.elapsed().as_secs_f64()
    );
    eprintln!("results: {}", out_dir.display());
    for f in figures
        .iter()
        .filter(|f| f.ends_with(".png") || f.ends_with("index.html"))
    {
        eprintln!("report:  {f}");
    }
    if failed > 0 {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!("{failed} stage(s) failed or were skipped"),
        });
    }
    Ok(())
}

fn cmd_status(cli: &Cli, a: &StatusArgs) -> Result<(), Failure> {
    let exp = load(&a.config, a.force_size)?;
    let device = resolve_device(a.device)?;
    let graph = exp.graph(&torch_env(&device));
    // Reading only: a store that does not exist yet reads as empty, and
    // nothing is created.
    let store = Store::at(&cli.store).map_err(engine_err)?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    // The view's own problems: results edited or replaced in out/.
    let view = if states.iter().all(|s| s.state == "fresh") {
        let recs: Vec<pipeline::Record> = states
            .iter()
            .filter_map(|s| store.read_record(s.key.as_deref()?).ok().flatten())
            .collect();
        pipeline::view::problems(
            &store,
            &cli.out.join(&exp.name),
            &recs.iter().collect::<Vec<_>>(),
        )
    } else {
        Vec::new()
    };
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "experiment": exp.name, "stages": states, "view": view })
            )
            .unwrap()
        );
    } else {
        for s in &states {
            let why = if s.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", s.reasons.join("; "))
            };
            println!("{:<8} {}{}", s.state, s.id, why);
        }
        for p in &view {
            println!("view     {}/{p}", cli.out.join(&exp.name).display());
        }
        let fresh = states.iter().filter(|s| s.state == "fresh").count();
        println!("{} of {} stages fresh", fresh, states.len());
    }
    Ok(())
}

fn cmd_report(cli: &Cli, a: &StatusArgs) -> Result<(), Failure> {
    let exp = load(&a.config, a.force_size)?;
    let device = resolve_device(a.device)?;
    let graph = exp.graph(&torch_env(&device));
    // A store that does not exist reads as empty (and is not created): the
    // report then names what is missing.
    let store = Store::at(&cli.store).map_err(engine_err)?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    let stale: Vec<String> = states
        .iter()
        // The findings are recomputed with the report when they are stale.
        .filter(|s| !is_summary(&s.kind) && s.state != "fresh")
        .map(|s| format!("{} ({})", s.id, s.state))
        .collect();
    if !stale.is_empty() {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "the report needs every stage computed; not fresh: {}. Run `eigentrace run {}` first",
                stale.join(", "),
                a.config.display()
            ),
        });
    }
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let _lock = store.lock(LockMode::Wait, &|h| {
        eprintln!("waiting for the store lock (held by {h})")
    })?;
    pipeline::view::check_dest(&store, &cli.out.join(&exp.name)).map_err(engine_err)?;
    let mut force = globset::GlobSetBuilder::new();
    force.add(globset::Glob::new("report").map_err(usage)?);
    let opts = RunOptions {
        force: Some(force.build().map_err(usage)?),
        force_exact: vec!["report".into()],
        jobs: 1,
        verify: a.verify,
        ..Default::default()
    };
    let runner = executor::StageRunner::new(device, 1, exp.base_dir.clone());
    let ui = ui::Ui::new(graph.instances.len());
    let (reports, records) = pipeline::run(&store, &graph, &runner, &opts, &ui)?;
    ui.finish();
    if reports
        .iter()
        .any(|r| !is_summary(&r.kind) && r.status == Outcome::Ran)
    {
        return Err(anyhow::anyhow!("internal error: the report computed a stage").into());
    }
    let out_dir = cli.out.join(&exp.name);
    write_view(&store, &out_dir, &records)?;
    if let Some(rep) = reports
        .iter()
        .find(|r| r.kind == StageKind::Report.name() && r.status == Outcome::Failed)
    {
        return Err(
            anyhow::anyhow!("the report failed: {}", rep.error.as_deref().unwrap_or("?")).into(),
        );
    }
    eprintln!("report: {}", out_dir.join("report/index.html").display());
    Ok(())
}

fn cmd_verify(cli: &Cli) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let rep = pipeline::maintain::verify(&store)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    } else {
        for h in &rep.corrupt {
            println!("corrupt  object {h} ({})", store.object_path(h).display());
        }
        for (id, key, name, h) in &rep.missing {
            println!(
                "missing  {name} of {id} (record {}): object {h}",
                &key[..16]
            );
        }
        for e in &rep.bad_records {
            println!("bad      {e}");
        }
        for e in &rep.unreadable {
            println!("unreadable object {e} (not verified: no permission to read it)");
        }
        println!(
            "{} objects rehashed, {} records checked: {} corrupt, {} missing, {} bad records, {} unreadable objects",
            rep.objects,
            rep.records,
            rep.corrupt.len(),
            rep.missing.len(),
            rep.bad_records.len(),
            rep.unreadable.len()
        );
    }
    if rep.ok() {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "the store at {} has problems; `eigentrace run` recomputes what they affect",
                cli.store.display()
            ),
        })
    }
}

fn cmd_gc(cli: &Cli, a: &GcArgs) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let _lock = lock_store(&store, &cli.store, a.no_wait, &|m| eprintln!("{m}"))?;
    store.sweep_tmp()?;
    let rep = pipeline::maintain::gc(&store, a.dry_run)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} {} records and {} objects ({:.1} MB); kept {} records",
            rep.removed_records.len(),
            rep.removed_objects.len(),
            rep.freed_bytes as f64 / 1e6,
            rep.kept_records
        );
    }
    Ok(())
}

fn cmd_audit(cli: &Cli, a: &AuditArgs) -> Result<(), Failure> {
    let store = Store::open_existing(&cli.store).map_err(usage)?;
    let found = pipeline::maintain::find_records(&store, &a.target).map_err(usage)?;
    let Some(rec) = found.first() else {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "{}: no record in {} produced this (is it from another store, or corrupt?)",
                a.target,
                cli.store.display()
            ),
        });
    };
    if a.cold {
        return cold_audit(cli, a, &store, rec);
    }
    let chain = pipeline::maintain::audit(&store, rec)?;
    let problems: usize = chain.iter().map(|n| n.problems.len()).sum();
    let mut repro = None;
    if a.reproduce {
        let runner = audit_runner(a)?;
        let _lock = store.lock(LockMode::Wait, &|h| {
            eprintln!("waiting for the store lock (held by {h})")
        })?;
        repro = Some(pipeline::maintain::reproduce(&store, rec, &runner)?);
    }
    let repro_bad = repro
        .as_ref()
        .map(|r| r.values().filter(|(a, b)| a != b).count())
        .unwrap_or(0);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "target": a.target,
                "record": rec.key,
                "chain": chain,
                "problems": problems,
                "reproduce": repro,
                "ok": problems == 0 && repro_bad == 0,
            }))
            .unwrap()
        );
    } else {
        println!(
            "{} was produced by {} (experiment {})",
            a.target, rec.id, rec.experiment
        );
        for n in &chain {
            println!("\n{} [{}]", n.id, n.kind);
            println!("  key      {}", n.key);
            println!("  code     {} v{}   env {}", n.kind, n.code_version, n.env);
            println!("  params   {}", n.params);
            for (role, key) in &n.inputs {
                println!("  input    {role} ← {}", &key[..16]);
            }
            let ok = n.outputs.values().filter(|(_, ok)| *ok).count();
            println!(
                "  outputs  {} of {} verified; content {}",
                ok,
                n.outputs.len(),
                &n.content[..16]
            );
            for p in &n.problems {
                println!("  PROBLEM  {p}");
            }
        }
        if let Some(r) = &repro {
            println!("\nreproduce {}:", rec.id);
            for (name, (want, got)) in r {
                let same = if want == got {
                    "identical"
                } else {
                    "DIFFERENT"
                };
                println!("  {same:<9} {name}");
            }
        }
        println!(
            "\n{} stages, {} problems{}",
            chain.len(),
            problems,
            repro
                .as_ref()
                .map(|r| format!(
                    ", {} of {} outputs reproduced byte for byte",
                    r.len() - repro_bad,
                    r.len()
                ))
                .unwrap_or_default()
        );
    }
    if problems > 0 || repro_bad > 0 {
        return Err(Failure {
            code: 1,
            err: anyhow::anyhow!(
                "audit found {problems} problem(s) and {repro_bad} differing output(s)"
            ),
        });
    }
    Ok(())
}

/// The stage runner `audit --reproduce` and `--cold` execute with: every
/// core, data paths relative to the working directory.
fn audit_runner(a: &AuditArgs) -> Result<executor::StageRunner, Failure> {
    Ok(executor::StageRunner::new(
        resolve_device(a.device)?,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::env::current_dir()?,
    ))
}

fn cold_audit(
    cli: &Cli,
    a: &AuditArgs,
    store: &Store,
    rec: &pipeline::Record,
) -> Result<(), Failure> {
    let runner = audit_runner(a)?;
    let _lock = store.lock(LockMode::Wait, &|h| {
        eprintln!("waiting for the store lock (held by {h})")
    })?;
    let rows = cold::audit(store, rec, &runner, a.samples.max(1))
        .map_err(|e| usage(anyhow::anyhow!(e)))?;
    let max = |f: &dyn Fn(&cold::ColdRow) -> f64, trusted: bool| {
        rows.iter()
            .filter(|r| !trusted || r.trusted)
            .map(f)
            .fold(0f64, f64::max)
    };
    let (ev, sub) = (
        max(&|r| r.eigenvalue_rel_diff, true),
        max(&|r| r.subspace_diff, true),
    );
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "record": rec.key,
                "id": rec.id,
                "rows": rows,
                "max_eigenvalue_rel_diff_trusted": ev,
                "max_subspace_diff_trusted": sub,
            }))
            .unwrap()
        );
    } else {
        println!(
            "cold audit of {} (warm-started) against random starts:",
            rec.id
        );
        println!(
            "  {:>8}  {:<15} {:>14} {:>14}  trusted",
            "step", "operator", "max |Δλ|/|λ|", "1 − q"
        );
        for r in &rows {
            println!(
                "  {:>8}  {:<15} {:>14.3e} {:>14.3e}  {}",
                r.step, r.operator, r.eigenvalue_rel_diff, r.subspace_diff, r.trusted
            );
        }
        println!(
            "largest over trusted pairs: eigenvalue {ev:.3e} (relative), subspace {sub:.3e} \
             (1 − q; a last rank that is nearly degenerate with the next makes the top-k span \
             itself uncertain)"
        );
    }
    Ok(())
}

fn cmd_bench(cli: &Cli, a: &BenchArgs) -> Result<(), Failure> {
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

fn main() -> ExitCode {
    // A closed pipe (`eigentrace status … | head`) ends the process quietly,
    // as it does any Unix filter, instead of panicking in println!.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Run(a) => cmd_run(&cli, a),
        Cmd::Status(a) => cmd_status(&cli, a),
        Cmd::Report(a) => cmd_report(&cli, a),
        Cmd::Audit(a) => cmd_audit(&cli, a),
        Cmd::Verify => cmd_verify(&cli),
        Cmd::Gc(a) => cmd_gc(&cli, a),
        Cmd::Bench(a) => cmd_bench(&cli, a),
        Cmd::Exec(a) => slurm::exec(&cli, a),
        Cmd::Show(a) => reports::show(&a.file, a.rows)
            .map(|s| print!("{s}"))
            .map_err(usage),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.err);
            ExitCode::from(f.code)
        }
    }
}

/// A stage that reads every run (findings, report).
fn is_summary(kind: &str) -> bool {
    StageKind::from_name(kind).is_some_and(StageKind::over_all_runs)
}

//! eigentrace: train MLPs with several optimizers, track the leading Hessian
//! eigenvectors through training, and compare their displacement and
//! localization, in a reproducible, content-addressed pipeline.
//!
//! This binary only parses the command line and wires the stages (the
//! `stages` and `reports` crates) to the engine (`pipeline`).

mod cold;
mod commands;
mod executor;
mod slurm;
mod slurm_plan;
mod ui;

use clap::{Args, Parser, Subcommand, ValueEnum};
use commands::*;
use experiment::{Experiment, StageKind};
use pipeline::{LockMode, Outcome, RunOptions, Store};
use serde_json::json;
use stages::cpus;
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
    /// How far two results are apart: every column of every Arrow file under
    /// A against the same file and column under B (e.g. out/paper against
    /// out/paper-f16, a CUDA run against a CPU run). Numbers: the largest
    /// absolute difference and its ratio to the column's largest |value|.
    Compare(CompareArgs),
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
struct CompareArgs {
    /// An output folder (out/<experiment>, or any folder under it) or an Arrow file.
    a: PathBuf,
    /// The folder or file to compare it with, at the same relative paths.
    b: PathBuf,
    /// Exit 1 when a column's relative difference exceeds this (or a
    /// column or file cannot be compared).
    #[arg(long)]
    tol: Option<f64>,
    /// List every column, not only those that differ.
    #[arg(long)]
    all: bool,
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
    /// Timed steps per measurement (train).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// hessian: only the Hessian-vector products' cost, at these MLP
    /// shapes (e.g. 784-512-512-10; repeat for several), f32 and f64.
    #[arg(long)]
    widths: Vec<String>,
    /// hessian --widths: rows of the (random) analysis set.
    #[arg(long, default_value_t = 1024)]
    rows: usize,
    /// Tiny sizes and one round: checks that the benchmark runs and that its
    /// output is well-formed (CI); its times mean nothing.
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchWhat {
    Train,
    Hessian,
    Metrics,
    /// PyHessian at its defaults against our eigenvalues, trace and density.
    Pyhessian,
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
        Cmd::Compare(a) => cmd_compare(&cli, a),
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

//! eigentrace: train MLPs with several optimizers, track the leading Hessian
//! eigenvectors through training, and compare their displacement and
//! localization, in a reproducible, content-addressed pipeline.
//!
//! This binary only parses the command line and wires the stages (the
//! `stages` and `reports` crates) to the engine (`pipeline`).

mod executor;
mod experiment;
mod ui;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use experiment::Experiment;
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
    /// Run up to N independent stages at once.
    #[arg(long, short = 'j', default_value_t = 1)]
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
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment: execute every stale stage, reuse every fresh one, and
    /// rebuild out/<experiment>/ (data, runs, eigenpairs, metrics, report).
    Run(RunArgs),
    /// Show each stage instance as fresh, stale or missing, and why (which
    /// parameter changed, which input, or that code or environment changed).
    Status(StatusArgs),
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

fn resolve_device(d: DeviceArg) -> Result<tch::Device, Failure> {
    use stages::runtime::DeviceChoice;
    let c = match d {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Cuda => DeviceChoice::Cuda,
    };
    c.resolve().map_err(|e| usage(anyhow::anyhow!(e)))
}

fn torch_env(dev: tch::Device) -> serde_json::Value {
    json!({ "libtorch": stages::LIBTORCH_VERSION, "device": stages::runtime::device_kind(dev) })
}

fn load(config: &Path) -> Result<Experiment, Failure> {
    Experiment::load(config).map_err(usage)
}

fn cmd_run(cli: &Cli, a: &RunArgs) -> Result<(), Failure> {
    let exp = load(&a.config)?;
    let device = resolve_device(a.device)?;
    let mut force = None;
    if !a.force.is_empty() {
        let mut b = globset::GlobSetBuilder::new();
        for f in &a.force {
            b.add(
                globset::GlobBuilder::new(f)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| usage(anyhow::anyhow!("--force {f}: {e}")))?,
            );
        }
        force = Some(b.build().map_err(usage)?);
    }
    let graph = exp.graph(&torch_env(device));
    let store = Store::open(&cli.store)
        .with_context(|| format!("opening the store {}", cli.store.display()))?;
    let ui = ui::Ui::new(graph.instances.len());
    let mode = if a.no_wait {
        LockMode::NoWait
    } else {
        LockMode::Wait
    };
    let _lock = store
        .lock(mode, &|holder| {
            ui.line(&format!(
                "waiting for the store lock at {} (held by {holder}); --no-wait fails instead",
                cli.store.display()
            ))
        })
        .map_err(|e| match e {
            pipeline::PipelineError::Locked(_) => usage(e),
            other => other.into(),
        })?;
    store.sweep_tmp()?;
    let opts = RunOptions {
        force,
        jobs: a.jobs.max(1),
        verify: a.verify,
    };
    let runner = executor::StageRunner { exp: &exp, device };
    let t0 = std::time::Instant::now();
    let (reports, records) = pipeline::run(&store, &graph, &runner, &opts, &ui)?;
    ui.finish();
    let kept: Vec<&pipeline::Record> = records.iter().flatten().collect();
    let out_dir = cli.out.join(&exp.name);
    pipeline::view::materialize(&store, &out_dir, &kept)
        .with_context(|| format!("writing {}", out_dir.display()))?;
    let count = |o: Outcome| reports.iter().filter(|r| r.status == o).count();
    let failed = count(Outcome::Failed) + count(Outcome::Skipped);
    let figures: Vec<String> = records
        .iter()
        .flatten()
        .filter(|r| r.kind == "report")
        .flat_map(|r| {
            r.outputs
                .keys()
                .map(|k| out_dir.join(&r.view).join(k).display().to_string())
        })
        .collect();
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
    for f in figures.iter().filter(|f| f.ends_with(".png")) {
        eprintln!("figure:  {f}");
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
    let exp = load(&a.config)?;
    let device = resolve_device(a.device)?;
    let graph = exp.graph(&torch_env(device));
    let store = Store::open(&cli.store)?;
    let states = pipeline::status(&store, &graph, a.verify)?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "experiment": exp.name, "stages": states }))
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
        let fresh = states.iter().filter(|s| s.state == "fresh").count();
        println!("{} of {} stages fresh", fresh, states.len());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Run(a) => cmd_run(&cli, a),
        Cmd::Status(a) => cmd_status(&cli, a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.err);
            ExitCode::from(f.code)
        }
    }
}

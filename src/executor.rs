//! The table from stage kinds to stage functions: the one place that knows
//! both the engine's instances and the science's parameter types.

use experiment::StageKind;
use pipeline::{engine::ProgressFn, Executor, StageInputs, StageInstance};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use stages::dataset;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct StageRunner {
    /// "cpu" or "cuda".
    pub device: String,
    /// libtorch intra-op threads per worker.
    pub threads: usize,
    /// User data paths (e.g. IDX files) are relative to this: the config's directory.
    pub base_dir: PathBuf,
    /// Cores for the workers running side by side (see `cpus`).
    pub cpus: stages::cpus::CpuSlots,
}

/// Why the CLI could not run a stage. Its `Display` is the message the user
/// reads in the run summary.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A stage run in this process (dataset).
    #[error(transparent)]
    Stage(#[from] stages::StageError),
    /// The findings or the report.
    #[error(transparent)]
    Report(#[from] reports::ReportError),
    #[error(transparent)]
    Input(#[from] pipeline::InputError),
    #[error("{id}: bad parameters: {source}")]
    Params {
        id: String,
        source: serde_json::Error,
    },
    #[error("bad {kind} parameters: {source}")]
    ReportParams {
        kind: String,
        source: serde_json::Error,
    },
    #[error("cannot start {}: {source}", .path.display())]
    WorkerStart {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("worker: {0}")]
    WorkerIo(#[from] std::io::Error),
    #[error("worker result: {0}")]
    WorkerResult(serde_json::Error),
    /// The worker's own message (its stderr, see [`worker_failure`]): text,
    /// because it crossed a process boundary.
    #[error("{0}")]
    Worker(String),
    #[error("copying {}: {source}", .path.display())]
    Copy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown stage kind {0}")]
    UnknownKind(String),
    #[error("no runner for the {0} stage")]
    NoRunner(StageKind),
}

fn params<T: DeserializeOwned>(inst: &StageInstance, v: &Value) -> Result<T, RunError> {
    serde_json::from_value(v.clone()).map_err(|source| RunError::Params {
        id: inst.id.clone(),
        source,
    })
}

/// The worker binary, installed next to this one.
pub fn worker_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("eigentrace"));
    exe.with_file_name("eigentrace-worker")
}

/// A worker command that dies with its parent (so a killed `run` leaves no
/// orphan writing into the store's temp dir).
pub fn worker_command() -> Command {
    let mut c = Command::new(worker_path());
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    c
}

impl StageRunner {
    pub fn new(device: String, threads: usize, base_dir: PathBuf) -> StageRunner {
        StageRunner {
            device,
            threads,
            base_dir,
            cpus: stages::cpus::CpuSlots::new(threads),
        }
    }

    /// Run a libtorch stage in an `eigentrace-worker` process.
    fn in_worker(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<Value, RunError> {
        let req = stages::worker::Request {
            kind: inst.kind.clone(),
            params: inst.params.clone(),
            inputs: inputs
                .by_role
                .iter()
                .map(|(role, i)| {
                    (
                        role.clone(),
                        stages::worker::InputSpec {
                            params: i.params.clone(),
                            files: i.files.clone(),
                        },
                    )
                })
                .collect(),
            device: self.device.clone(),
            threads: self.threads,
        };
        let slot = self.cpus.acquire();
        let mut cmd = worker_command();
        if let Some(slot) = &slot {
            slot.bind(&mut cmd);
        }
        let mut child = cmd
            .arg("exec")
            .arg(workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunError::WorkerStart {
                path: worker_path(),
                source,
            })?;
        {
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(serde_json::to_string(&req).unwrap().as_bytes())?;
        }
        let stderr = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
            s
        });
        let mut meta = None;
        for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            if let Some(rest) = line.strip_prefix("progress ") {
                let mut it = rest.splitn(3, ' ');
                let done = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let total = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                progress(done, total, it.next().unwrap_or(""));
            } else if let Some(rest) = line.strip_prefix("result ") {
                meta = Some(serde_json::from_str(rest).map_err(RunError::WorkerResult)?);
            }
        }
        let status = child.wait()?;
        let err = err_reader.join().unwrap_or_default();
        match (status.success(), meta) {
            (true, Some(m)) => Ok(m),
            _ => Err(RunError::Worker(worker_failure(&status, &err))),
        }
    }
}

/// Why a worker failed, from its exit status and its stderr: the signal that
/// killed it (and the likely cause), a panic's whole message, or its last
/// line (the stage's own error).
pub fn worker_failure(status: &std::process::ExitStatus, stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let tail = |n: usize| lines[lines.len().saturating_sub(n)..].join("\n  ");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let (name, why) = match sig {
                libc::SIGKILL => (
                    "SIGKILL",
                    "most likely the kernel's out-of-memory killer (the stage needed more memory \
                     than was free; see `dmesg`): lower model.widths, hessian.analysis_size, \
                     hessian.max_iter or -j, or free memory",
                ),
                libc::SIGSEGV => ("SIGSEGV", "a crash in native code (libtorch)"),
                libc::SIGABRT => ("SIGABRT", "libtorch or the allocator aborted"),
                libc::SIGBUS => (
                    "SIGBUS",
                    "a memory-mapped file vanished or the disk is full",
                ),
                libc::SIGTERM => ("SIGTERM", "it was asked to stop"),
                libc::SIGINT => ("SIGINT", "it was interrupted"),
                _ => ("a signal", "killed from outside"),
            };
            let mut m = format!("the worker was killed by {name} ({sig}): {why}");
            if !lines.is_empty() {
                m.push_str(&format!("; its last output:\n  {}", tail(5)));
            }
            return m;
        }
    }
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        return format!(
            "internal error: the worker panicked ({status}):\n  {}",
            lines[i..].join("\n  ")
        );
    }
    match lines.last() {
        Some(l) => l.to_string(),
        None => format!("the worker failed without a message ({status})"),
    }
}

/// A report run's params with the train stage's `batch_size` (null for full
/// batch), read from its `train_config.toml`: the figures label a minibatch
/// run's stability threshold as the full-batch reference. Taken from an
/// input file, so it is covered by the report's key.
fn with_batch_size(
    mut params: serde_json::Value,
    files: &std::collections::BTreeMap<String, PathBuf>,
) -> serde_json::Value {
    let batch = files
        .get("train_config.toml")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("train")?.get("batch_size")?.as_integer());
    if let Some(obj) = params.as_object_mut() {
        obj.insert("batch_size".into(), serde_json::json!(batch));
    }
    params
}

/// The outputs each stage kind must leave (the stage table's list).
pub fn declared_outputs(inst: &StageInstance) -> Vec<String> {
    let with_null = inst.inputs.iter().any(|(role, _)| role == "null");
    StageKind::from_name(&inst.kind)
        .map(|k| k.declared_outputs(with_null))
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect()
}

/// The runs of a report or findings stage, from its params and inputs.
fn report_input(
    inst: &StageInstance,
    inputs: &StageInputs,
) -> Result<reports::ReportInput, RunError> {
    let p: experiment::ReportParams =
        serde_json::from_value(inst.params.clone()).map_err(|source| RunError::ReportParams {
            kind: inst.kind.clone(),
            source,
        })?;
    let mut rin = Vec::new();
    for r in &p.runs {
        let id = r.id.clone();
        let mut files = std::collections::BTreeMap::new();
        for role in ["train", "hessian", "metrics", "dataset"] {
            if let Ok(i) = inputs.role(&format!("{role}:{id}")) {
                files.extend(i.files.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let params = serde_json::to_value(r).map_err(|source| RunError::ReportParams {
            kind: inst.kind.clone(),
            source,
        })?;
        rin.push(reports::RunInput {
            run_id: id.clone(),
            // The setting's label is the colour key.
            optimizer: r.label.clone(),
            label: format!("{} (η={})", r.label, experiment::compact_number(r.lr)),
            train: inputs
                .file(&format!("train:{id}"), "train.arrow")?
                .to_path_buf(),
            // The findings stage reads no eigenvalues (no hessian input).
            values: inputs
                .file(&format!("hessian:{id}"), "eigen/values.arrow")
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            localization: inputs
                .file(&format!("metrics:{id}"), "metrics/localization.arrow")?
                .to_path_buf(),
            overlap: inputs
                .file(&format!("metrics:{id}"), "metrics/overlap.arrow")?
                .to_path_buf(),
            params: with_batch_size(params, &files),
            files,
        });
    }
    Ok(reports::ReportInput {
        experiment: p.experiment,
        runs: rin,
    })
}

impl Executor for StageRunner {
    fn declared_outputs(&self, inst: &StageInstance) -> Vec<String> {
        declared_outputs(inst)
    }

    fn execute(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<Value, pipeline::ExecError> {
        Ok(self.run_stage(inst, inputs, workdir, progress)?)
    }
}

impl StageRunner {
    /// Run one instance: dataset here, the libtorch stages and metrics in a
    /// worker, findings and the report here.
    fn run_stage(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<Value, RunError> {
        let Some(kind) = StageKind::from_name(&inst.kind) else {
            return Err(RunError::UnknownKind(inst.kind.clone()));
        };
        match kind {
            StageKind::Dataset => {
                let p: dataset::DatasetParams = params(inst, &inst.params)?;
                let ds = dataset::load(&p, &self.base_dir)?;
                dataset::write(&ds, &workdir.join("data.arrow"))?;
                Ok(
                    json!({ "rows": ds.len(), "train_rows": ds.is_train.iter().filter(|&&t| t).count() }),
                )
            }
            // The libtorch stages, and metrics (its Gram matrix is a BLAS product).
            k if k.in_worker() => self.in_worker(inst, inputs, workdir, progress),
            StageKind::Findings => {
                let input = report_input(inst, inputs)?;
                let files = reports::findings::run(&input, workdir)?;
                Ok(json!({ "files": files }))
            }
            StageKind::Report => {
                let input = report_input(inst, inputs)?;
                // The findings stage's tables go into report/ too, and
                // index.html shows findings.md.
                let mut copied = Vec::new();
                if let Ok(f) = inputs.role("findings") {
                    for (name, path) in &f.files {
                        std::fs::copy(path, workdir.join(name)).map_err(|source| {
                            RunError::Copy {
                                path: path.clone(),
                                source,
                            }
                        })?;
                        copied.push(name.clone());
                    }
                }
                let provenance: Vec<reports::Provenance> = inputs
                    .by_role
                    .iter()
                    .map(|(role, i)| reports::Provenance {
                        role: role.clone(),
                        id: i.id.clone(),
                        kind: i.kind.clone(),
                        key: i.key.clone(),
                        content: i.content.clone(),
                    })
                    .collect();
                let files = reports::render_all(&input, &provenance, workdir)?;
                Ok(json!({ "figures": files, "findings": copied }))
            }
            k => Err(RunError::NoRunner(k)),
        }
    }
}

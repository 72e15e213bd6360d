//! Running a libtorch stage from a serialized request: the whole job of the
//! `eigentrace-worker` binary. The CLI never links libtorch (whose static
//! initialization alone costs a few hundred milliseconds): it decides what is
//! stale, then hands each train or hessian stage to a worker process.

use crate::{hessian, train};
use experiment::StageKind;
use serde_json::{json, Value};
use stages::error::StageError;
use stages::train::{checkpoint_name, TrainParams};
use stages::worker::{InputSpec, Request};
use stages::{Progress, LIBTORCH_VERSION};
use std::path::{Path, PathBuf};

/// What the worker's libtorch sees.
pub fn probe() -> Value {
    json!({
        "libtorch": LIBTORCH_VERSION,
        "cuda": tch::Cuda::is_available(),
        "cuda_devices": tch::Cuda::device_count(),
    })
}

/// Why the worker could not run a request.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The stage's own error (names its file or parameter).
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Device(#[from] crate::runtime::DeviceError),
    #[error("missing input {role}")]
    MissingInput { role: String },
    #[error("input {role} has no output {name}")]
    MissingOutput { role: String, name: String },
    #[error("bad parameters: {0}")]
    Params(#[from] serde_json::Error),
    #[error("train_config.toml: {0}")]
    Config(String),
    #[error("the worker does not run {0} stages")]
    NotWorkerStage(String),
}

fn input<'a>(req: &'a Request, role: &str) -> Result<&'a InputSpec, WorkerError> {
    req.inputs
        .get(role)
        .ok_or_else(|| WorkerError::MissingInput {
            role: role.to_string(),
        })
}

fn file<'a>(req: &'a Request, role: &str, name: &str) -> Result<&'a Path, WorkerError> {
    input(req, role)?
        .files
        .get(name)
        .map(PathBuf::as_path)
        .ok_or_else(|| WorkerError::MissingOutput {
            role: role.to_string(),
            name: name.to_string(),
        })
}

fn json_to_toml(v: &Value) -> Result<toml::Value, WorkerError> {
    toml::Value::try_from(v).map_err(|e| WorkerError::Config(e.to_string()))
}

/// Execute `req` into `workdir`; returns the record's metadata.
pub fn execute(
    req: &Request,
    workdir: &Path,
    progress: Progress<'_>,
) -> Result<Value, WorkerError> {
    let device = crate::runtime::device(&req.device)?;
    tch::set_num_threads(req.threads.max(1) as i32);
    match StageKind::from_name(&req.kind) {
        Some(StageKind::Train) => {
            let p: TrainParams = serde_json::from_value(req.params.clone())?;
            // train_config.toml: this run's resolved parameters, dataset included.
            let mut cfg = toml::Table::new();
            cfg.insert(
                "dataset".into(),
                json_to_toml(&input(req, "dataset")?.params)?,
            );
            cfg.insert(
                "model".into(),
                json_to_toml(&json!({ "widths": p.arch.widths, "activation": p.arch.activation, "init": p.init }))?,
            );
            cfg.insert(
                "optimizer".into(),
                json_to_toml(&serde_json::to_value(&p.optimizer).unwrap())?,
            );
            let mut tr = serde_json::to_value(&p).unwrap();
            if let Some(o) = tr.as_object_mut() {
                for k in ["arch", "init", "optimizer", "seed", "dtype"] {
                    o.remove(k);
                }
            }
            cfg.insert("train".into(), json_to_toml(&tr)?);
            cfg.insert("seed".into(), toml::Value::Integer(p.seed as i64));
            cfg.insert("dtype".into(), toml::Value::String(p.dtype.name().into()));
            let text =
                toml::to_string_pretty(&cfg).map_err(|e| WorkerError::Config(e.to_string()))?;
            let path = workdir.join("train_config.toml");
            std::fs::write(&path, text).map_err(stages::error::io_err(&path))?;
            let summary = train::run(
                &p,
                file(req, "dataset", "data.arrow")?,
                device,
                workdir,
                progress,
            )?;
            Ok(serde_json::to_value(summary).unwrap())
        }
        Some(StageKind::Hessian) => {
            let p: stages::hessian::HessianParams = serde_json::from_value(req.params.clone())?;
            let tr = input(req, "train")?;
            let tp: TrainParams = serde_json::from_value(tr.params.clone())?;
            let steps = stages::hessian::checkpoint_steps(tr.files.keys());
            let paths: Vec<(u64, &Path)> = steps
                .iter()
                .map(|&st| (st, tr.files[&checkpoint_name(st)].as_path()))
                .collect();
            let cfg_path = file(req, "train", "train_config.toml")?;
            let cfg = std::fs::read_to_string(cfg_path).map_err(stages::error::io_err(cfg_path))?;
            let data = file(req, "dataset", "data.arrow")?;
            hessian::run(
                &p,
                &tp.arch,
                &tp.optimizer,
                data,
                &paths,
                &cfg,
                device,
                workdir,
                progress,
            )
            .map_err(WorkerError::from)
        }
        Some(StageKind::Null) => {
            let p: stages::hessian::NullParams = serde_json::from_value(req.params.clone())?;
            hessian::run_null(
                &p,
                file(req, "dataset", "data.arrow")?,
                device,
                workdir,
                progress,
            )
            .map_err(WorkerError::from)
        }
        Some(StageKind::Metrics) => {
            let p: stages::metrics::MetricsParams = serde_json::from_value(req.params.clone())?;
            let tr = input(req, "train")?;
            let tp: TrainParams = serde_json::from_value(tr.params.clone())?;
            let checkpoints: Vec<(u64, &Path)> = stages::hessian::checkpoint_steps(tr.files.keys())
                .into_iter()
                .map(|st| (st, tr.files[&checkpoint_name(st)].as_path()))
                .collect();
            let null_params: Option<stages::hessian::NullParams> = req
                .inputs
                .get("null")
                .map(|n| serde_json::from_value(n.params.clone()))
                .transpose()?;
            let null = null_params
                .map(|np| -> Result<_, WorkerError> {
                    Ok(stages::metrics::NullInputs {
                        values: file(req, "null", "null/values.arrow")?,
                        vectors: file(req, "null", "null/vectors.arrow")?,
                        tol: np.tol,
                    })
                })
                .transpose()?;
            let inp = stages::metrics::MetricsInputs {
                values: file(req, "hessian", "eigen/values.arrow")?,
                vectors: file(req, "hessian", "eigen/vectors.arrow")?,
                arch: &tp.arch,
                optimizer: &tp.optimizer,
                schedule: &tp.schedule,
                steps: tp.steps,
                checkpoints,
                gradients: Some(file(req, "hessian", "eigen/gradient.arrow")?),
                null,
            };
            progress(0, 1, "gram");
            let meta = stages::metrics::run_with(&p, &inp, workdir, &crate::metrics::gram)?;
            progress(1, 1, "done");
            Ok(meta)
        }
        _ => Err(WorkerError::NotWorkerStage(req.kind.clone())),
    }
}

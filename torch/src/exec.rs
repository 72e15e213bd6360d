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

fn input<'a>(req: &'a Request, role: &str) -> Result<&'a InputSpec, String> {
    req.inputs
        .get(role)
        .ok_or_else(|| format!("missing input {role}"))
}

fn file<'a>(req: &'a Request, role: &str, name: &str) -> Result<&'a Path, String> {
    input(req, role)?
        .files
        .get(name)
        .map(PathBuf::as_path)
        .ok_or_else(|| format!("input {role} has no output {name}"))
}

fn json_to_toml(v: &Value) -> Result<toml::Value, String> {
    toml::Value::try_from(v).map_err(|e| e.to_string())
}

/// Execute `req` into `workdir`; returns the record's metadata.
pub fn execute(req: &Request, workdir: &Path, progress: Progress<'_>) -> Result<Value, String> {
    let device = crate::runtime::device(&req.device)?;
    tch::set_num_threads(req.threads.max(1) as i32);
    let s = |e: StageError| e.to_string();
    let bad = |e: serde_json::Error| format!("bad parameters: {e}");
    match StageKind::from_name(&req.kind) {
        Some(StageKind::Train) => {
            let p: TrainParams = serde_json::from_value(req.params.clone()).map_err(bad)?;
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
            let text = toml::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
            std::fs::write(workdir.join("train_config.toml"), text).map_err(|e| e.to_string())?;
            let summary = train::run(
                &p,
                file(req, "dataset", "data.arrow")?,
                device,
                workdir,
                progress,
            )
            .map_err(s)?;
            Ok(serde_json::to_value(summary).unwrap())
        }
        Some(StageKind::Hessian) => {
            let p: stages::hessian::HessianParams =
                serde_json::from_value(req.params.clone()).map_err(bad)?;
            let tr = input(req, "train")?;
            let tp: TrainParams = serde_json::from_value(tr.params.clone()).map_err(bad)?;
            let steps = stages::hessian::checkpoint_steps(tr.files.keys());
            let paths: Vec<(u64, &Path)> = steps
                .iter()
                .map(|&st| (st, tr.files[&checkpoint_name(st)].as_path()))
                .collect();
            let cfg = std::fs::read_to_string(file(req, "train", "train_config.toml")?)
                .map_err(|e| e.to_string())?;
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
            .map_err(s)
        }
        Some(StageKind::Null) => {
            let p: stages::hessian::NullParams =
                serde_json::from_value(req.params.clone()).map_err(bad)?;
            hessian::run_null(
                &p,
                file(req, "dataset", "data.arrow")?,
                device,
                workdir,
                progress,
            )
            .map_err(s)
        }
        Some(StageKind::Metrics) => {
            let p: stages::metrics::MetricsParams =
                serde_json::from_value(req.params.clone()).map_err(bad)?;
            let tr = input(req, "train")?;
            let tp: TrainParams = serde_json::from_value(tr.params.clone()).map_err(bad)?;
            let checkpoints: Vec<(u64, &Path)> = stages::hessian::checkpoint_steps(tr.files.keys())
                .into_iter()
                .map(|st| (st, tr.files[&checkpoint_name(st)].as_path()))
                .collect();
            let null_vectors = req
                .inputs
                .get("null")
                .and_then(|n| n.files.get("null/vectors.arrow"))
                .map(PathBuf::as_path);
            let inp = stages::metrics::MetricsInputs {
                values: file(req, "hessian", "eigen/values.arrow")?,
                vectors: file(req, "hessian", "eigen/vectors.arrow")?,
                arch: &tp.arch,
                optimizer: &tp.optimizer,
                schedule: &tp.schedule,
                steps: tp.steps,
                checkpoints,
                gradients: Some(file(req, "hessian", "eigen/gradient.arrow")?),
                null_vectors,
            };
            progress(0, 1, "gram");
            let meta =
                stages::metrics::run_with(&p, &inp, workdir, &crate::metrics::gram).map_err(s)?;
            progress(1, 1, "done");
            Ok(meta)
        }
        _ => Err(format!("the worker does not run {} stages", req.kind)),
    }
}

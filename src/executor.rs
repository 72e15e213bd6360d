//! The table from stage kinds to stage functions: the one place that knows
//! both the engine's instances and the science's parameter types.

use pipeline::{engine::ProgressFn, Executor, StageInputs, StageInstance};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use stages::train::TrainParams;
use stages::{dataset, hessian, metrics, train};
use std::path::Path;

pub struct StageRunner {
    pub device: tch::Device,
    /// User data paths (e.g. IDX files) are relative to this: the config's directory.
    pub base_dir: std::path::PathBuf,
}

fn params<T: DeserializeOwned>(inst: &StageInstance, v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{}: bad parameters: {e}", inst.id))
}

fn json_to_toml(v: &Value) -> Result<toml::Value, String> {
    toml::Value::try_from(v).map_err(|e| e.to_string())
}

impl Executor for StageRunner {
    fn execute(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<Value, String> {
        let s = |e: stages::StageError| e.to_string();
        match inst.kind.as_str() {
            "dataset" => {
                let p: dataset::DatasetParams = params(inst, &inst.params)?;
                let ds = dataset::load(&p, &self.base_dir).map_err(s)?;
                dataset::write(&ds, &workdir.join("data.arrow")).map_err(s)?;
                Ok(
                    json!({ "rows": ds.len(), "train_rows": ds.is_train.iter().filter(|&&t| t).count() }),
                )
            }
            "train" => {
                let p: TrainParams = params(inst, &inst.params)?;
                let data = inputs.file("dataset", "data.arrow")?;
                // train_config.toml: this run's resolved parameters, dataset included.
                let mut cfg = toml::Table::new();
                cfg.insert(
                    "dataset".into(),
                    json_to_toml(&inputs.role("dataset")?.params)?,
                );
                cfg.insert("model".into(), json_to_toml(&json!({ "widths": p.arch.widths, "activation": p.arch.activation, "init": p.init }))?);
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
                std::fs::write(workdir.join("train_config.toml"), text)
                    .map_err(|e| e.to_string())?;
                let summary = train::run(&p, data, self.device, workdir, progress).map_err(s)?;
                Ok(serde_json::to_value(summary).unwrap())
            }
            "hessian" => {
                let p: hessian::HessianParams = params(inst, &inst.params)?;
                let tr = inputs.role("train")?;
                let tp: TrainParams = params(inst, &tr.params)?;
                let steps = hessian::checkpoint_steps(tr.files.keys());
                let paths: Vec<(u64, &Path)> = steps
                    .iter()
                    .map(|&st| (st, tr.files[&train::checkpoint_name(st)].as_path()))
                    .collect();
                let cfg = std::fs::read_to_string(inputs.file("train", "train_config.toml")?)
                    .map_err(|e| e.to_string())?;
                let data = inputs.file("dataset", "data.arrow")?;
                hessian::run(
                    &p,
                    &tp.arch,
                    data,
                    &paths,
                    &cfg,
                    self.device,
                    workdir,
                    progress,
                )
                .map_err(s)
            }
            "metrics" => {
                metrics::run(inputs.file("hessian", "eigen/vectors.arrow")?, workdir).map_err(s)
            }
            "report" => {
                let runs = inst.params["runs"].as_array().cloned().unwrap_or_default();
                let mut rin = Vec::new();
                for r in runs {
                    let id = r["id"].as_str().unwrap_or_default().to_string();
                    rin.push(reports::RunInput {
                        run_id: id.clone(),
                        optimizer: r["label"].as_str().unwrap_or_default().to_string(),
                        label: format!(
                            "{} (η={})",
                            r["label"].as_str().unwrap_or_default(),
                            crate::experiment::compact_number(r["lr"].as_f64().unwrap_or(f64::NAN))
                        ),
                        train: inputs
                            .file(&format!("train:{id}"), "train.arrow")?
                            .to_path_buf(),
                        values: inputs
                            .file(&format!("hessian:{id}"), "eigen/values.arrow")?
                            .to_path_buf(),
                        localization: inputs
                            .file(&format!("metrics:{id}"), "metrics/localization.arrow")?
                            .to_path_buf(),
                        overlap: inputs
                            .file(&format!("metrics:{id}"), "metrics/overlap.arrow")?
                            .to_path_buf(),
                    });
                }
                let input = reports::ReportInput {
                    experiment: inst.params["experiment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    runs: rin,
                };
                let files = reports::render_report(&input, workdir).map_err(|e| e.to_string())?;
                Ok(json!({ "figures": files }))
            }
            other => Err(format!("unknown stage kind {other}")),
        }
    }
}

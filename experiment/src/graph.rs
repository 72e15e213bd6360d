//! The stage DAG of a parsed experiment.

use crate::*;

impl Experiment {
    /// The stage DAG. `torch_env` is what changes the numbers of torch stages.
    pub fn graph(&self, torch_env: &Value) -> Graph {
        let to = |v: &dyn erased::Ser| v.to_json();
        let mut inst: Vec<StageInstance> = self
            .datasets
            .iter()
            .map(|(id, view, p, env)| StageInstance {
                id: id.clone(),
                kind: StageKind::Dataset.name().into(),
                code_version: StageKind::Dataset.code_version(),
                params: to(p),
                env: StageKind::Dataset.env(torch_env, env),
                inputs: vec![],
                view: view.clone(),
            })
            .collect();
        // Null models: one per distinct (dataset, architecture, Hessian settings).
        let mut nulls: Vec<(String, Value, String)> = Vec::new();
        let mut null_of: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        for r in &self.runs {
            let Some(np) = &r.null else { continue };
            let params = to(np);
            if let Some((_, _, id)) = nulls
                .iter()
                .find(|(d, p, _)| *d == r.dataset && *p == params)
            {
                null_of.insert(r.id.clone(), id.clone());
                continue;
            }
            let i = nulls.len();
            let (id, view) = if i == 0 {
                ("null".to_string(), String::new())
            } else {
                (
                    format!("null[{}]", i + 1),
                    format!("null-variants/{}", i + 1),
                )
            };
            null_of.insert(r.id.clone(), id.clone());
            inst.push(StageInstance {
                id: id.clone(),
                kind: StageKind::Null.name().into(),
                code_version: StageKind::Null.code_version(),
                params: params.clone(),
                env: StageKind::Null.env(torch_env, &json!({})),
                inputs: vec![("dataset".into(), r.dataset.clone())],
                view,
            });
            nulls.push((r.dataset.clone(), params, id));
        }
        let mut report_inputs = Vec::new();
        let mut report_runs = Vec::new();
        for r in &self.runs {
            let view = format!("runs/{}", r.id);
            let train_id = format!("train[{}]", r.id);
            let hess_id = format!("hessian[{}]", r.id);
            let met_id = format!("metrics[{}]", r.id);
            inst.push(StageInstance {
                id: train_id.clone(),
                kind: StageKind::Train.name().into(),
                code_version: StageKind::Train.code_version(),
                params: to(&r.train),
                env: StageKind::Train.env(torch_env, &json!({})),
                inputs: vec![("dataset".into(), r.dataset.clone())],
                view: view.clone(),
            });
            inst.push(StageInstance {
                id: hess_id.clone(),
                kind: StageKind::Hessian.name().into(),
                code_version: StageKind::Hessian.code_version(),
                params: to(&r.hessian),
                env: StageKind::Hessian.env(torch_env, &json!({})),
                inputs: vec![
                    ("dataset".into(), r.dataset.clone()),
                    ("train".into(), train_id.clone()),
                ],
                view: view.clone(),
            });
            let mut met_inputs = vec![
                ("hessian".into(), hess_id.clone()),
                ("train".into(), train_id.clone()),
            ];
            if let Some(null_id) = null_of.get(&r.id) {
                met_inputs.push(("null".into(), null_id.clone()));
            }
            inst.push(StageInstance {
                id: met_id.clone(),
                kind: StageKind::Metrics.name().into(),
                code_version: StageKind::Metrics.code_version(),
                params: to(&r.metrics),
                // Its Gram product is a libtorch GEMM (on the CPU, summed in
                // a fixed order): the libtorch version can change its bits.
                env: StageKind::Metrics.env(torch_env, &json!({})),
                inputs: met_inputs,
                view,
            });
            report_inputs.push((format!("train:{}", r.id), train_id));
            report_inputs.push((format!("hessian:{}", r.id), hess_id));
            report_inputs.push((format!("metrics:{}", r.id), met_id));
            report_runs.push(ReportRun {
                id: r.id.clone(),
                label: r.label.clone(),
                optimizer: r.train.optimizer.name.as_str().to_string(),
                lr: r.train.optimizer.lr,
                seed: r.train.seed,
            });
        }
        // The findings: the claims tested on every run's metrics (no
        // figure code in its key, so a figure change does not redo them).
        let mut findings_inputs: Vec<(String, String)> = report_inputs
            .iter()
            .filter(|(role, _)| !role.starts_with("hessian:"))
            .cloned()
            .collect();
        // Each run's dataset: the input columns' largest |z| (item 5).
        findings_inputs.extend(
            self.runs
                .iter()
                .map(|r| (format!("dataset:{}", r.id), r.dataset.clone())),
        );
        inst.push(StageInstance {
            id: "findings".into(),
            kind: StageKind::Findings.name().into(),
            code_version: StageKind::Findings.code_version(),
            params: to(&ReportParams {
                experiment: self.name.clone(),
                runs: report_runs.clone(),
            }),
            env: StageKind::Findings.env(torch_env, &json!({})),
            inputs: findings_inputs,
            view: "findings".into(),
        });
        report_inputs.push(("findings".into(), "findings".into()));
        // Each run's dataset: fig10_input_mass's columns' largest |z|.
        report_inputs.extend(
            self.runs
                .iter()
                .map(|r| (format!("dataset:{}", r.id), r.dataset.clone())),
        );
        inst.push(StageInstance {
            id: "report".into(),
            kind: StageKind::Report.name().into(),
            code_version: StageKind::Report.code_version(),
            params: to(&ReportParams {
                experiment: self.name.clone(),
                runs: report_runs.clone(),
            }),
            env: StageKind::Report.env(torch_env, &json!({})),
            inputs: report_inputs,
            view: "report".into(),
        });
        Graph::new(self.name.clone(), inst).expect("the experiment builds a valid graph")
    }
}

/// The content of a dataset's user files enters its key (not their paths):
/// `{"input_files": {"train-images-idx3-ubyte": "<blake3>", …}}`, or `{}`.
pub(crate) fn input_files_env(p: &DatasetParams, base_dir: &Path) -> Value {
    let Ok(files) = p.input_files(base_dir) else {
        return json!({});
    };
    if files.is_empty() {
        return json!({});
    }
    let mut m = serde_json::Map::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = pipeline::store::hash_file(&f)
            .map(|(h, _)| h.to_hex())
            .unwrap_or_default();
        m.insert(name, Value::String(hash));
    }
    json!({ "input_files": m })
}

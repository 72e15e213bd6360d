//! End-to-end tests that drive the real binary on tiny experiments.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_eigentrace");

fn tiny_config(name: &str, sgd_lr: f64) -> String {
    format!(
        r#"
name = "{name}"
seeds = [0]
dtype = "f64"

[dataset]
kind = "gaussian_mixture"
classes = 3
dim = 4
samples = 120
separation = 2.0
test_fraction = 0.25
seed = 1

[model]
widths = [4, 8, 3]
activation = "tanh"

[train]
steps = 40
log_every = 5
checkpoints = {{ every = 20, log_spaced = 4 }}

[[optimizer]]
name = "sgd"
lr = {sgd_lr}

[[optimizer]]
name = "adam"
lr = 0.01

[hessian]
k = 3
"#
    )
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path().join("exp.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    fn eigentrace(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(self.path())
            .args(args)
            .env_remove("EIGENTRACE_STORE")
            .output()
            .expect("run eigentrace")
    }
    fn run_json(&self, config: &Path) -> Value {
        let out = self.eigentrace(&["run", "--json", "--device", "cpu", config.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "run failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).expect("run --json prints one JSON object")
    }
}

fn statuses(v: &Value) -> Vec<(String, String)> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ran(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = statuses(v)
        .into_iter()
        .filter(|(_, s)| s == "ran")
        .map(|(id, _)| id)
        .collect();
    r.sort();
    r
}

#[test]
fn first_run_computes_everything_second_run_nothing() {
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("tiny", 0.1));
    let first = env.run_json(&cfg);
    let st = statuses(&first);
    assert_eq!(st.len(), 1 + 3 * 2 + 1, "{st:?}");
    assert!(st.iter().all(|(_, s)| s == "ran"), "{st:?}");
    for s in first["stages"].as_array().unwrap() {
        assert_eq!(s["key"].as_str().unwrap().len(), 64);
        assert!(s["seconds"].as_f64().unwrap() >= 0.0);
        assert!(s["kind"].is_string());
    }

    // The output contract.
    let out = env.path().join("out/tiny");
    for f in [
        "dataset/data.arrow",
        "runs/sgd-lr1e-1-s0/train.arrow",
        "runs/sgd-lr1e-1-s0/param_map.arrow",
        "runs/sgd-lr1e-1-s0/config.toml",
        "runs/sgd-lr1e-1-s0/checkpoints/step_00000000.safetensors",
        "runs/sgd-lr1e-1-s0/checkpoints/step_00000040.safetensors",
        "runs/sgd-lr1e-1-s0/eigen/values.arrow",
        "runs/sgd-lr1e-1-s0/eigen/vectors.arrow",
        "runs/adam-lr1e-2-s0/metrics/localization.arrow",
        "runs/adam-lr1e-2-s0/metrics/overlap.arrow",
        "report/optimizer_comparison.png",
        "report/optimizer_comparison.svg",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let cfg_text = std::fs::read_to_string(out.join("runs/adam-lr1e-2-s0/config.toml")).unwrap();
    let cfg_toml: toml::Table = toml::from_str(&cfg_text).unwrap();
    assert_eq!(cfg_toml["optimizer"]["name"].as_str(), Some("adam"));
    assert_eq!(cfg_toml["hessian"]["k"].as_integer(), Some(3));
    assert_eq!(cfg_toml["model"]["widths"].as_array().unwrap().len(), 3);

    let second = env.run_json(&cfg);
    assert!(
        statuses(&second).iter().all(|(_, s)| s == "cached"),
        "{:?}",
        statuses(&second)
    );
    assert_eq!(
        first["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].clone())
            .collect::<Vec<_>>(),
        second["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].clone())
            .collect::<Vec<_>>()
    );

    // out/ is a view: deleting it loses nothing, and nothing is recomputed.
    std::fs::remove_dir_all(env.path().join("out")).unwrap();
    let third = env.run_json(&cfg);
    assert!(statuses(&third).iter().all(|(_, s)| s == "cached"));
    assert!(out.join("report/optimizer_comparison.png").is_file());
}

#[test]
fn changing_one_learning_rate_reruns_exactly_its_branch() {
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("edit", 0.1));
    env.run_json(&cfg);
    let cfg = env.write_config(&tiny_config("edit", 0.2));
    let st = env.eigentrace(&["status", "--device", "cpu", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("missing  train[sgd-lr2e-1-s0]"), "{text}");
    let after = env.run_json(&cfg);
    assert_eq!(
        ran(&after),
        vec![
            "hessian[sgd-lr2e-1-s0]",
            "metrics[sgd-lr2e-1-s0]",
            "report",
            "train[sgd-lr2e-1-s0]"
        ]
    );
    let cached: Vec<String> = statuses(&after)
        .into_iter()
        .filter(|(_, s)| s == "cached")
        .map(|(i, _)| i)
        .collect();
    assert!(
        cached.contains(&"dataset".to_string())
            && cached.contains(&"train[adam-lr1e-2-s0]".to_string())
    );
}

#[test]
fn status_names_the_changed_parameter() {
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("why", 0.1));
    env.run_json(&cfg);
    // Same run ids, different hessian k: the hessian stages are stale because k changed.
    let cfg = env.write_config(&tiny_config("why", 0.1).replace("k = 3", "k = 2"));
    let st = env.eigentrace(&["status", "--json", "--device", "cpu", cfg.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&st.stdout).unwrap();
    let h = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "hessian[adam-lr1e-2-s0]")
        .unwrap();
    assert_eq!(h["state"], "stale");
    let reasons = h["reasons"].to_string();
    assert!(reasons.contains("param k 3 → 2"), "{reasons}");
    let t = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "train[adam-lr1e-2-s0]")
        .unwrap();
    assert_eq!(t["state"], "fresh");
}

#[test]
fn bad_config_exits_2_naming_the_field_and_writes_nothing() {
    let env = Env::new();
    for (bad, field) in [
        (
            tiny_config("bad", 0.1).replace("lr = 0.01", "lr = -0.01"),
            "lr",
        ),
        (
            tiny_config("bad", 0.1).replace("k = 3", "k = 0"),
            "hessian.k",
        ),
        (
            tiny_config("bad", 0.1).replace("steps = 40", "stepz = 40"),
            "stepz",
        ),
        (
            tiny_config("bad", 0.1).replace("widths = [4, 8, 3]", "widths = [4, 8, 2]"),
            "model.widths",
        ),
    ] {
        let cfg = env.write_config(&bad);
        let out = env.eigentrace(&["run", "--device", "cpu", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(field), "message should name {field}: {err}");
        assert!(
            err.contains("exp.toml"),
            "message should name the file: {err}"
        );
        assert!(!env.path().join(".eigentrace").exists() && !env.path().join("out").exists());
    }
}

#[test]
fn help_explains_every_subcommand() {
    let env = Env::new();
    let out = env.eigentrace(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for s in ["run", "status", "Hessian"] {
        assert!(text.contains(s), "{text}");
    }
    let out = env.eigentrace(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--force") && text.contains("--jobs") && text.contains("--json"),
        "{text}"
    );
}

//! Helpers shared by the end-to-end tests: a temp workspace and the binary.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_eigentrace");

/// A tiny experiment: `optimizers` is a TOML fragment of [[optimizer]] tables.
pub fn tiny_config(name: &str, seeds: &str, optimizers: &str) -> String {
    format!(
        r#"
name = "{name}"
seeds = {seeds}
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

{optimizers}

[hessian]
k = 3
"#
    )
}

pub fn two_optimizers(sgd_lr: f64) -> String {
    format!("[[optimizer]]\nname = \"sgd\"\nlr = {sgd_lr}\n\n[[optimizer]]\nname = \"adam\"\nlr = 0.01\n")
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path().join("exp.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path())
            .args(args)
            .env_remove("EIGENTRACE_STORE")
            .env_remove("EIGENTRACE_FAILPOINT");
        c
    }
    pub fn eigentrace(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run eigentrace")
    }
    pub fn run_json(&self, config: &Path) -> Value {
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

/// (id, status) of every stage in a `run --json` summary.
pub fn statuses(v: &Value) -> Vec<(String, String)> {
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

/// Sorted ids of the stages that ran.
pub fn ran(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = statuses(v)
        .into_iter()
        .filter(|(_, s)| s == "ran")
        .map(|(id, _)| id)
        .collect();
    r.sort();
    r
}

/// Every record of a store: id → outputs (name → hash), for byte-for-byte comparisons.
pub fn store_outputs(store: &Path) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let p = e.unwrap().path();
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let outputs: serde_json::Map<String, Value> = v["outputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, o)| (k.clone(), o["hash"].clone()))
            .collect();
        out.insert(
            v["id"].as_str().unwrap().to_string(),
            Value::Object(outputs),
        );
    }
    out
}

/// blake3 over every file (path and bytes) under `dir`, or "absent".
pub fn tree_hash(dir: &Path) -> String {
    tree_hash_skipping(dir, &[])
}

/// [`tree_hash`] of an out/ view without its stamp (which names its store).
pub fn view_hash(dir: &Path) -> String {
    tree_hash_skipping(dir, &[".eigentrace-view"])
}

fn tree_hash_skipping(dir: &Path, skip: &[&str]) -> String {
    fn walk(d: &Path, root: &Path, h: &mut blake3::Hasher, skip: &[&str]) {
        let mut entries: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if skip.iter().any(|s| p.file_name().is_some_and(|n| n == *s)) {
                continue;
            }
            h.update(p.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
            if p.is_dir() {
                walk(&p, root, h, skip);
            } else {
                h.update(&std::fs::read(&p).unwrap());
            }
        }
    }
    if !dir.exists() {
        return "absent".into();
    }
    let mut h = blake3::Hasher::new();
    walk(dir, dir, &mut h, skip);
    h.finalize().to_hex().to_string()
}

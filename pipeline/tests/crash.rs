//! The commit protocol and the store lock, without libtorch or the CLI. A
//! child process (this test binary, re-run on its `child` test) runs a
//! small graph through the engine and is aborted at each failpoint (see
//! `pipeline::failpoint`), exactly like `kill -9` there; a rerun then gives
//! the same objects as an uninterrupted run, `verify` finds nothing wrong,
//! and nothing half-written is left in tmp/. Two processes sharing one store
//! execute each stage once between them.

use pipeline::engine::ProgressFn;
use pipeline::{
    Event, EventSink, Executor, Graph, LockMode, RunOptions, StageInputs, StageInstance, Store,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Writes `out` (its id and its inputs' outs, padded to 64 KiB so that
/// object writes are real) and `extra/note.txt`; reports progress three
/// times; appends its id to `log` when given; sleeps `slow`.
struct Chain {
    log: Option<PathBuf>,
    slow: Duration,
}

impl Executor for Chain {
    fn execute(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<Value, pipeline::ExecError> {
        if let Some(log) = &self.log {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            writeln!(f, "{}", inst.id)?;
        }
        for k in 0..3 {
            progress(k, 3, "working");
        }
        std::thread::sleep(self.slow);
        let mut text = inst.id.clone();
        for i in inputs.by_role.values() {
            let s = std::fs::read_to_string(&i.files["out"])?;
            text.push_str(&s[..s.len().min(64)]);
        }
        let mut bytes = text.into_bytes();
        bytes.resize(64 << 10, b'.');
        std::fs::write(workdir.join("out"), &bytes)?;
        std::fs::create_dir_all(workdir.join("extra"))?;
        std::fs::write(workdir.join("extra/note.txt"), inst.id.as_bytes())?;
        Ok(json!({ "bytes": bytes.len() }))
    }

    fn declared_outputs(&self, _: &StageInstance) -> Vec<String> {
        vec!["out".into(), "extra/*.txt".into()]
    }
}

struct Quiet;
impl EventSink for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// data → a, b → report.
fn graph() -> Graph {
    let inst = |id: &str, inputs: &[&str]| StageInstance {
        id: id.to_string(),
        kind: "k".to_string(),
        code_version: 1,
        params: json!({ "id": id }),
        env: json!({}),
        inputs: inputs
            .iter()
            .map(|d| (d.to_string(), d.to_string()))
            .collect(),
        view: id.to_string(),
    };
    Graph::new(
        "crash".to_string(),
        vec![
            inst("data", &[]),
            inst("a", &["data"]),
            inst("b", &["data"]),
            inst("report", &["a", "b"]),
        ],
    )
    .unwrap()
}

/// One run as the CLI does it: lock, sweep tmp/, run, write the out/ view.
/// Returns each instance's outputs (name → hash).
fn run_once(root: &Path, exec: &Chain) -> BTreeMap<String, BTreeMap<String, String>> {
    let store = Store::open(root.join(".store")).unwrap();
    let _lock = store.lock(LockMode::Wait, &|_| {}).unwrap();
    store.sweep_tmp().unwrap();
    let opts = RunOptions {
        jobs: 2,
        ..Default::default()
    };
    let (reports, records) = pipeline::run(&store, &graph(), exec, &opts, &Quiet).unwrap();
    assert!(reports
        .iter()
        .all(|r| !matches!(r.status, pipeline::Outcome::Failed)));
    let kept: Vec<&pipeline::Record> = records.iter().flatten().collect();
    pipeline::view::materialize(&store, &root.join("out"), &kept).unwrap();
    records
        .iter()
        .flatten()
        .map(|r| {
            (
                r.id.clone(),
                r.outputs
                    .iter()
                    .map(|(k, o)| (k.clone(), o.hash.clone()))
                    .collect(),
            )
        })
        .collect()
}

const CHILD_ROOT: &str = "PIPELINE_TEST_CHILD_ROOT";
const CHILD_LOG: &str = "PIPELINE_TEST_CHILD_LOG";

/// The child: does nothing unless this binary was re-run for it.
#[test]
fn child() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else {
        return;
    };
    let exec = Chain {
        log: std::env::var_os(CHILD_LOG).map(PathBuf::from),
        slow: Duration::from_millis(150),
    };
    run_once(Path::new(&root), &exec);
}

fn spawn_child(root: &Path, failpoint: Option<&str>, log: Option<&Path>) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--test-threads=1", "--nocapture"])
        .env(CHILD_ROOT, root);
    if let Some(fp) = failpoint {
        c.env("EIGENTRACE_FAILPOINT", fp);
    }
    if let Some(l) = log {
        c.env(CHILD_LOG, l);
    }
    c
}

/// The engine's crash points, at several hits each: during a stage, before
/// its commit, around an object's fsync and rename, half-way through a
/// record or ref write, after a record before its ref, and half-way through
/// the out/ view.
const FAILPOINTS: &[&str] = &[
    "stage-progress:1",
    "stage-progress:7",
    "stage-before-commit:2",
    "object-before-sync:3",
    "object-before-rename:1",
    "object-before-rename:5",
    "object-after-rename:4",
    "atomic-write-half:1",
    "atomic-write-half:6",
    "atomic-before-rename:3",
    "after-record:1",
    "after-record:3",
    "view-half:1",
];

#[test]
fn a_crash_at_any_failpoint_then_a_rerun_gives_identical_objects() {
    let fast = Chain {
        log: None,
        slow: Duration::ZERO,
    };
    let reference = tempfile::tempdir().unwrap();
    let want = run_once(reference.path(), &fast);
    assert_eq!(want.len(), 4);
    for fp in FAILPOINTS {
        let dir = tempfile::tempdir().unwrap();
        let out = spawn_child(dir.path(), Some(fp), None).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains(&format!("failpoint {}", fp.split(':').next().unwrap())),
            "{fp} did not crash the child: {err}"
        );
        let got = run_once(dir.path(), &fast);
        assert_eq!(
            got, want,
            "{fp}: the rerun differs from the uninterrupted run"
        );
        let store = Store::open(dir.path().join(".store")).unwrap();
        let v = pipeline::maintain::verify(&store).unwrap();
        assert!(v.ok(), "{fp}: verify: {v:?}");
        // Nothing half-written is left to look complete.
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join(".store/tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "{fp}: tmp/ holds {}", tmp.len());
        let note = std::fs::read_to_string(dir.path().join("out/report/extra/note.txt"));
        assert_eq!(note.ok().as_deref(), Some("report"), "{fp}: the out/ view");
    }
}

#[test]
fn two_processes_on_one_store_execute_each_stage_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executed.log");
    let mut a = spawn_child(dir.path(), None, Some(&log)).spawn().unwrap();
    let mut b = spawn_child(dir.path(), None, Some(&log)).spawn().unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let mut ran: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(ran, ["a", "b", "data", "report"]);
}

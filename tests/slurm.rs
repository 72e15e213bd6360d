//! `run --executor slurm` (issue 9) on a single-node Slurm cluster on
//! localhost, started by `scripts/slurm-local.sh` (as in CI). Without Slurm
//! these tests fail, loudly: as root the script installs Debian's slurm-wlm
//! and munge; otherwise install them, or run the tests as root.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// SLURM_CONF of the local cluster, started once for all tests.
fn cluster() -> &'static str {
    static CONF: OnceLock<Result<String, String>> = OnceLock::new();
    let r = CONF.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            let root = Command::new("id")
                .arg("-u")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
                .unwrap_or(false);
            return Err(format!(
                "the local Slurm cluster did not start ({}):\n{}{}\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                if root {
                    "see the logs it names"
                } else {
                    "these tests need Slurm: run them as root (the script then installs Debian's \
                     slurm-wlm and munge and starts slurmctld and slurmd on localhost), or install \
                     slurm-wlm and munge and start the cluster with `sudo scripts/slurm-local.sh`"
                }
            ));
        }
        let env = Command::new(&script).arg("env").output().unwrap();
        let line = String::from_utf8_lossy(&env.stdout).trim().to_string();
        Ok(line
            .strip_prefix("export SLURM_CONF=")
            .ok_or_else(|| format!("unexpected `{} env` output: {line}", script.display()))?
            .to_string())
    });
    match r {
        Ok(conf) => conf,
        Err(e) => panic!("{e}"),
    }
}

/// The quick config, renamed (job names and squeue checks stay per test) and
/// with `steps`, and `[slurm]` giving each job `cpus` CPUs.
fn quick(name: &str, steps: u64, cpus: usize) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/quick.toml"))
            .unwrap();
    let text = text.replace("name = \"quick\"", &format!("name = \"{name}\""));
    let text = text.replace("steps = 2000", &format!("steps = {steps}"));
    assert!(
        text.contains(&format!("steps = {steps}")),
        "quick.toml changed shape"
    );
    format!("{text}\n[slurm]\ncpus = {cpus}\ntime = \"10:00\"\n\n[slurm.report]\nmem = \"1G\"\n")
}

/// A unique experiment name, so that squeue's job names are this test's own.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

fn slurm_cmd(env: &Env, store: &Path, args: &[&str]) -> Command {
    let mut c = env.cmd(&["--store", store.to_str().unwrap()]);
    c.args(args).env("SLURM_CONF", cluster());
    c
}

/// `eigentrace <global…> run <cfg> --executor slurm --device cpu <extra…>`.
fn slurm_run(env: &Env, store: &Path, global: &[&str], cfg: &Path, extra: &[&str]) -> Command {
    let mut args = global.to_vec();
    args.extend([
        "run",
        cfg.to_str().unwrap(),
        "--executor",
        "slurm",
        "--device",
        "cpu",
    ]);
    args.extend(extra);
    slurm_cmd(env, store, &args)
}

fn ok_json(out: std::process::Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// (state, name) of every job of `squeue -t all` whose name starts with `prefix`.
fn jobs_named(prefix: &str) -> BTreeMap<String, (String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-o", "%i|%T|%j"])
        .env("SLURM_CONF", cluster())
        .output()
        .expect("squeue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, '|');
            let (id, st, name) = (it.next()?, it.next()?, it.next()?);
            name.starts_with(prefix)
                .then(|| (id.to_string(), (st.to_string(), name.to_string())))
        })
        .collect()
}

fn job_state(job: &str) -> String {
    let base = job.split('_').next().unwrap();
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-o", "%i|%T", "-j", base])
        .env("SLURM_CONF", cluster())
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once('|'))
        .find(|(id, _)| *id == job)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| "GONE".into())
}

/// The ledger: instance id → job id.
fn ledger(store: &Path, experiment: &str) -> BTreeMap<String, String> {
    let dir = store.join("slurm/ledger").join(experiment);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        out.insert(
            v["id"].as_str().unwrap().to_string(),
            v["job"].as_str().unwrap().to_string(),
        );
    }
    out
}

/// id → (key, content) of every record in a store.
fn record_keys(store: &Path) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        out.insert(
            v["id"].as_str().unwrap().to_string(),
            (
                v["key"].as_str().unwrap().to_string(),
                v["content"].as_str().unwrap().to_string(),
            ),
        );
    }
    out
}

fn object_path(store: &Path, hash: &str) -> PathBuf {
    store.join("objects").join(&hash[..2]).join(hash)
}

fn verify_clean(env: &Env, store: &Path) {
    let out = env.eigentrace(&["--store", store.to_str().unwrap(), "verify"]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nothing half-done is left: no temp files, no job work dirs.
fn no_leftovers(store: &Path) {
    for d in ["tmp", "slurm/work"] {
        let p = store.join(d);
        let left: Vec<_> = std::fs::read_dir(&p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{}: leftovers {left:?}", p.display());
    }
}

#[test]
fn slurm_objects_equal_the_local_executors_byte_for_byte() {
    let env = Env::new();
    let name = unique("slurm-eq");
    // One CPU per job, against a local run with every core per stage: the
    // objects must not depend on the thread count either.
    let cfg = env.write_config(&quick(&name, 600, 1));
    let shared = env.path().join("shared/store");
    let t = Instant::now();
    let v = ok_json(
        slurm_run(&env, &shared, &["--out", "out-slurm", "--json"], &cfg, &[])
            .output()
            .unwrap(),
        "run --executor slurm",
    );
    eprintln!("slurm run: {:.1}s", t.elapsed().as_secs_f64());
    let st = statuses(&v);
    // dataset, null, 2 × (train, hessian, metrics), findings, report
    assert_eq!(st.len(), 10, "{st:?}");
    assert!(st.iter().all(|(_, s)| s == "ran"), "{st:?}");
    let led = ledger(&shared, &name);
    for s in v["stages"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let job = s["job"].as_str().expect("each stage names its job");
        assert_eq!(led.get(id).map(String::as_str), Some(job), "ledger of {id}");
        assert!(
            Path::new(s["log"].as_str().unwrap()).is_file(),
            "log of {id}"
        );
    }
    // The train instances (same kind, both after the dataset job) were one array.
    let trains: Vec<&String> = led
        .iter()
        .filter(|(id, _)| id.starts_with("train["))
        .map(|(_, j)| j)
        .collect();
    assert_eq!(trains.len(), 2);
    assert!(
        trains.iter().all(|j| j.contains('_'))
            && trains[0].split('_').next() == trains[1].split('_').next(),
        "one job array for the train level: {trains:?}"
    );
    // Every job ran under its own name, and each instance had exactly one.
    let jobs = jobs_named(&format!("et-{name}-"));
    assert_eq!(jobs.len(), 10, "{jobs:?}");

    let local = env.path().join("local-store");
    let l = ok_json(
        env.eigentrace(&[
            "--store",
            local.to_str().unwrap(),
            "--out",
            "out-local",
            "--json",
            "run",
            cfg.to_str().unwrap(),
            "--device",
            "cpu",
        ]),
        "run --executor local",
    );
    assert!(statuses(&l).iter().all(|(_, s)| s == "ran"));

    // Same keys, same contents, same objects, byte for byte.
    assert_eq!(record_keys(&shared), record_keys(&local));
    let (a, b) = (store_outputs(&shared), store_outputs(&local));
    assert_eq!(a, b);
    let mut n = 0;
    for outputs in a.values() {
        for hash in outputs.as_object().unwrap().values() {
            let h = hash.as_str().unwrap();
            let (x, y) = (
                std::fs::read(object_path(&shared, h)).unwrap(),
                std::fs::read(object_path(&local, h)).unwrap(),
            );
            assert!(x == y, "object {h} differs");
            n += 1;
        }
    }
    assert!(n > 50, "only {n} objects compared");
    // The views differ only in their stamps, which name their stores.
    assert_eq!(
        view_hash(&env.path().join("out-slurm").join(&name)),
        view_hash(&env.path().join("out-local").join(&name)),
        "out/<experiment>/ differs"
    );

    // Again: every stage is fresh, nothing is submitted.
    let again = ok_json(
        slurm_run(&env, &shared, &["--out", "out-slurm", "--json"], &cfg, &[])
            .output()
            .unwrap(),
        "second run --executor slurm",
    );
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"));
    assert_eq!(
        jobs_named(&format!("et-{name}-")).len(),
        10,
        "a job was submitted again"
    );
    assert_eq!(ledger(&shared, &name), led);
    verify_clean(&env, &shared);
    no_leftovers(&shared);
}

#[test]
fn a_job_cancelled_mid_run_is_reported_and_the_next_run_recovers() {
    let env = Env::new();
    let name = unique("slurm-cancel");
    let cfg = env.write_config(&quick(&name, 4000, 1));
    let store = env.path().join("shared/store");
    let run = |json: bool| {
        let global: &[&str] = if json { &["--json"] } else { &[] };
        slurm_run(&env, &store, global, &cfg, &[])
    };
    // The submitter waits; a train job is cancelled while it runs.
    let waiting = run(false)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let target = "train[sgd-lr1-s0]";
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        assert!(Instant::now() < deadline, "{target} never ran");
        let led = store.join("slurm/ledger").join(&name);
        if led.is_dir() {
            if let Some(job) = ledger(&store, &name).get(target).cloned() {
                match job_state(&job).as_str() {
                    "RUNNING" => break job,
                    "PENDING" | "CONFIGURING" => {}
                    other => panic!("{target}: job {job} is {other} before it was cancelled"),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("scancel")
        .arg(&job)
        .env("SLURM_CONF", cluster())
        .status()
        .unwrap();
    assert!(st.success());
    let out = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let log = store.join("slurm/logs").join(format!("{job}.out"));
    assert!(
        err.contains(&format!("job {job} CANCELLED")) && err.contains(&log.display().to_string()),
        "the failure names the job and its log:\n{err}"
    );
    assert!(
        !record_keys(&store).contains_key(target),
        "{target} committed although its job was cancelled (it finished too soon?)"
    );

    // The next invocation submits what is missing, and completes.
    let v = ok_json(run(true).output().unwrap(), "run after scancel");
    let st = statuses(&v);
    assert!(
        st.iter().all(|(_, s)| s == "ran" || s == "cached"),
        "{st:?}"
    );
    let ran: Vec<&str> = st
        .iter()
        .filter(|(_, s)| s == "ran")
        .map(|(id, _)| id.as_str())
        .collect();
    for id in [
        target,
        "hessian[sgd-lr1-s0]",
        "metrics[sgd-lr1-s0]",
        "report",
    ] {
        assert!(ran.contains(&id), "{id} should have run again: {st:?}");
    }
    assert_ne!(
        ledger(&store, &name)[target],
        job,
        "resubmitted under a new job"
    );
    verify_clean(&env, &store);
    no_leftovers(&store);
    let status = env.eigentrace(&[
        "--store",
        store.to_str().unwrap(),
        "status",
        cfg.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("10 of 10 stages fresh"), "{text}");
}

#[test]
fn resubmitting_while_jobs_are_queued_submits_nothing_twice() {
    let env = Env::new();
    let name = unique("slurm-pend");
    let cfg = env.write_config(&quick(&name, 600, 1));
    let store = env.path().join("shared/store");
    let detach = || {
        ok_json(
            slurm_run(&env, &store, &["--json"], &cfg, &["--detach"])
                .output()
                .unwrap(),
            "run --executor slurm --detach",
        )
    };
    let first = detach();
    let st = statuses(&first);
    assert!(st.iter().all(|(_, s)| s == "submitted"), "{st:?}");
    let led = ledger(&store, &name);
    assert_eq!(led.len(), 10);
    // At once again, twice, while the jobs are pending or running.
    for _ in 0..2 {
        let again = detach();
        for s in again["stages"].as_array().unwrap() {
            let id = s["id"].as_str().unwrap();
            match s["status"].as_str().unwrap() {
                "queued" => assert_eq!(s["job"].as_str(), Some(led[id].as_str()), "{id}"),
                "cached" => {}
                other => panic!("{id} was {other} again: {again}"),
            }
        }
        assert_eq!(ledger(&store, &name), led, "the ledger moved");
    }
    // Waiting for them: everything completes, still one job per instance.
    let v = ok_json(
        slurm_run(&env, &store, &["--json"], &cfg, &[])
            .output()
            .unwrap(),
        "run --executor slurm (waiting)",
    );
    assert!(
        statuses(&v)
            .iter()
            .all(|(_, s)| s == "ran" || s == "cached"),
        "{v}"
    );
    assert_eq!(ledger(&store, &name), led);
    let jobs = jobs_named(&format!("et-{name}-"));
    assert_eq!(jobs.len(), 10, "one job per instance: {jobs:?}");
    assert!(jobs.values().all(|(s, _)| s == "COMPLETED"), "{jobs:?}");
    verify_clean(&env, &store);
}

#[test]
fn slurm_table_errors_name_file_line_and_column() {
    let env = Env::new();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/quick.toml"))
            .unwrap();
    for (table, want) in [
        (
            "[slurm]\ncpus = 2\n\n[slurm.train]\ncpuss = 4\n",
            "field `slurm.train.cpuss`: unknown field `cpuss`",
        ),
        (
            "[slurm]\npartitions = \"gpu\"\n",
            "field `slurm.partitions`",
        ),
        (
            "[slurm.hessian]\nmem = \"lots\"\n",
            "field `slurm.hessian.mem`",
        ),
        (
            "[slurm.train]\ncpus = 0\n",
            "field `slurm.train.cpus`: must be an integer ≥ 1",
        ),
    ] {
        let cfg = env.write_config(&format!("{base}\n{table}"));
        let line = base.lines().count() + 1 + table.lines().count();
        let out = env.eigentrace(&["status", cfg.to_str().unwrap(), "--device", "cpu"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{table}: {err}");
        assert!(err.contains(want), "{table}: {err}");
        assert!(
            err.contains(&format!("exp.toml:{line}:")),
            "{table}: want line {line}: {err}"
        );
    }
    // A valid table changes no key: the instances stay the same.
    let plain = env.write_config(&base);
    let a = env.eigentrace(&[
        "--json",
        "status",
        plain.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let with = env.write_config(&format!(
        "{base}\n[slurm]\npartition = \"cpu\"\nextra = [\"--qos=short\"]\n\n[slurm.train]\ncpus = 4\nmem = \"8G\"\ngpus = 0\ntime = \"1:00:00\"\n"
    ));
    let b = env.eigentrace(&[
        "--json",
        "status",
        with.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn exec_refuses_an_instance_whose_inputs_are_not_committed() {
    let env = Env::new();
    let cfg = env.write_config(&quick("exec-early", 600, 1));
    let store = env.path().join("store");
    let s = store.to_str().unwrap();
    let st = env.eigentrace(&[
        "--store",
        s,
        "status",
        cfg.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(st.status.success());
    let out = env.eigentrace(&[
        "--store",
        s,
        "exec",
        cfg.to_str().unwrap(),
        "--id",
        "hessian[sgd-lr1-s0]",
        "--device",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("inputs are not all committed") && err.contains("train[sgd-lr1-s0]"),
        "{err}"
    );
    let out = env.eigentrace(&["--store", s, "exec", cfg.to_str().unwrap(), "--id", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    // Hidden from --help.
    let help = env.eigentrace(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("  run "), "{help}");
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("exec")),
        "{help}"
    );
    // The dataset has no inputs: exec runs and commits it, and it is then fresh.
    let out = env.eigentrace(&[
        "--store",
        s,
        "exec",
        cfg.to_str().unwrap(),
        "--id",
        "dataset",
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = env.eigentrace(&[
        "--store",
        s,
        "status",
        cfg.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("fresh    dataset"), "{text}");
    no_leftovers(&store);
}

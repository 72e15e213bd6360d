//! The engine, end to end on the real binary: reruns exactly what changed,
//! survives kill -9 anywhere, shares a store between concurrent runs, catches
//! corrupt objects, refuses bad configs without writing, and stays fresh when
//! the checkout moves.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn sweep(name: &str, adam_lr: f64) -> String {
    tiny_config(
        name,
        "[0, 1]",
        &format!("[[optimizer]]\nname = \"sgd\"\nlr = 0.1\n\n[[optimizer]]\nname = \"adam\"\nlr = {adam_lr}\n"),
    )
}

#[test]
fn editing_one_lr_in_a_sweep_reruns_exactly_the_affected_branches() {
    let env = Env::new();
    let cfg = env.write_config(&sweep("sweep", 0.01));
    let first = env.run_json(&cfg);
    assert_eq!(statuses(&first).len(), 1 + 3 * 4 + 1 + 1 + 1); // + null, findings, report
    let cfg = env.write_config(&sweep("sweep", 0.02));
    let second = env.run_json(&cfg);
    let mut expect: Vec<String> = ["train", "hessian", "metrics"]
        .iter()
        .flat_map(|k| ["s0", "s1"].map(|s| format!("{k}[adam-lr2e-2-{s}]")))
        .collect();
    expect.push("findings".into());
    expect.push("report".into());
    expect.sort();
    assert_eq!(ran(&second), expect);
    let cached = statuses(&second)
        .iter()
        .filter(|(_, s)| s == "cached")
        .count();
    assert_eq!(
        cached,
        1 + 3 * 2 + 1,
        "dataset, null and both sgd branches stay cached"
    );
}

/// Crash points inside the engine (see pipeline::failpoint): during an object
/// write, between an object's fsync and rename, half-way through a record or
/// ref write, after a record before its ref, during a stage, before its
/// commit, and half-way through rebuilding out/.
const FAILPOINTS: &[&str] = &[
    "stage-progress:1",
    "stage-progress:6",
    "stage-before-commit:2",
    "object-before-sync:3",
    "object-before-rename:1",
    "object-before-rename:9",
    "object-after-rename:4",
    "atomic-write-half:1",
    "atomic-write-half:6",
    "atomic-before-rename:3",
    "after-record:1",
    "after-record:5",
    "view-half:1",
];

#[test]
fn kill_at_any_point_then_rerun_gives_identical_objects() {
    let reference = Env::new();
    let cfg_text = tiny_config("crash", "[0]", &two_optimizers(0.1));
    let cfg = reference.write_config(&cfg_text);
    reference.run_json(&cfg);
    let want = store_outputs(&reference.path().join(".eigentrace"));

    for fp in FAILPOINTS {
        let env = Env::new();
        let cfg = env.write_config(&cfg_text);
        let out = env
            .cmd(&["run", "--device", "cpu", cfg.to_str().unwrap()])
            .env("EIGENTRACE_FAILPOINT", fp)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("failpoint"),
            "{fp} did not crash: {err}"
        );
        let after = env.run_json(&cfg);
        assert!(after["ok"].as_bool().unwrap(), "{fp}");
        let v = env.eigentrace(&["verify"]);
        assert!(
            v.status.success(),
            "{fp}: verify: {}",
            String::from_utf8_lossy(&v.stdout)
        );
        let got = store_outputs(&env.path().join(".eigentrace"));
        for (id, outputs) in &want {
            assert_eq!(
                got.get(id),
                Some(outputs),
                "{fp}: {id} differs from the uninterrupted run"
            );
        }
        assert!(
            env.path()
                .join("out/crash/report/optimizer_comparison.png")
                .is_file(),
            "{fp}"
        );
        // Nothing half-written is left to look complete.
        assert_eq!(
            std::fs::read_dir(env.path().join(".eigentrace/tmp"))
                .unwrap()
                .count(),
            0,
            "{fp}"
        );
    }
}

#[test]
fn kill_9_from_outside_at_several_moments() {
    let reference = Env::new();
    let cfg_text = tiny_config("k9", "[0]", &two_optimizers(0.1));
    let cfg = reference.write_config(&cfg_text);
    reference.run_json(&cfg);
    let want = store_outputs(&reference.path().join(".eigentrace"));
    for delay_ms in [50u64, 250, 600] {
        let env = Env::new();
        let cfg = env.write_config(&cfg_text);
        let mut child = env
            .cmd(&["run", "--device", "cpu", cfg.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        env.run_json(&cfg);
        assert!(env.eigentrace(&["verify"]).status.success());
        let got = store_outputs(&env.path().join(".eigentrace"));
        for (id, outputs) in &want {
            assert_eq!(
                got.get(id),
                Some(outputs),
                "after kill at {delay_ms} ms: {id}"
            );
        }
    }
}

#[test]
fn two_concurrent_runs_share_one_store_and_run_each_stage_once() {
    let env = Env::new();
    let cfg = env.write_config(&sweep("conc", 0.01));
    let spawn = || {
        env.cmd(&["run", "--json", "--device", "cpu", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "a concurrent run failed:\n--- a ---\n{}\n--- b ---\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (ja, jb): (Value, Value) = (
        serde_json::from_slice(&a.stdout).unwrap(),
        serde_json::from_slice(&b.stdout).unwrap(),
    );
    let total = statuses(&ja).len();
    let ran_a = ran(&ja);
    let ran_b = ran(&jb);
    assert_eq!(
        ran_a.len() + ran_b.len(),
        total,
        "each stage ran exactly once: {ran_a:?} / {ran_b:?}"
    );
    let waited = String::from_utf8_lossy(&a.stderr).contains("waiting for the store lock")
        || String::from_utf8_lossy(&b.stderr).contains("waiting for the store lock");
    assert!(waited, "the second writer says it waits");
    assert!(env.eigentrace(&["verify"]).status.success());
    // --no-wait fails fast while the lock is held.
    let holder = env
        .cmd(&[
            "run",
            "--device",
            "cpu",
            "--force",
            "train*",
            cfg.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let fast = env.eigentrace(&["run", "--no-wait", "--device", "cpu", cfg.to_str().unwrap()]);
    let held_output = holder.wait_with_output().unwrap();
    assert!(held_output.status.success());
    if !fast.status.success() {
        assert!(String::from_utf8_lossy(&fast.stderr).contains("locked"));
    }
}

fn object_of(store: &Path, id: &str, name: &str) -> String {
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        if v["id"] == id {
            return v["outputs"][name]["hash"].as_str().unwrap().to_string();
        }
    }
    panic!("no record for {id}");
}

#[test]
fn a_flipped_byte_is_reported_and_recomputed() {
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("flip", "[0]", &two_optimizers(0.1)));
    env.run_json(&cfg);
    let store = env.path().join(".eigentrace");
    let hash = object_of(&store, "train[adam-lr1e-2-s0]", "train.arrow");
    let obj = store.join("objects").join(&hash[..2]).join(&hash);
    let mut perm = std::fs::metadata(&obj).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&obj, perm).unwrap();
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&obj, &bytes).unwrap();

    let v = env.eigentrace(&["verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains(&hash),
        "verify names the object"
    );
    let a = env.eigentrace(&["audit", "--json", &hash]);
    assert_eq!(a.status.code(), Some(1));
    let aj: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(aj["problems"].as_u64().unwrap() >= 1);

    let again = env.run_json(&cfg);
    assert!(
        ran(&again).contains(&"train[adam-lr1e-2-s0]".to_string()),
        "{:?}",
        ran(&again)
    );
    assert!(
        env.eigentrace(&["verify"]).status.success(),
        "the rerun restored the object"
    );
    // Training is deterministic: the recomputed bytes are the original ones.
    assert_eq!(
        object_of(&store, "train[adam-lr1e-2-s0]", "train.arrow"),
        hash
    );
}

#[test]
fn bad_configs_exit_2_name_the_field_and_write_nothing() {
    let env = Env::new();
    let good = tiny_config("bad", "[0]", &two_optimizers(0.1));
    let cfg = env.write_config(&good);
    env.run_json(&cfg);
    let before = (
        tree_hash(&env.path().join(".eigentrace")),
        tree_hash(&env.path().join("out")),
    );
    let sgd = "[[optimizer]]\nname = \"sgd\"\nlr = 0.1\n";
    let cases: Vec<(String, &str)> = vec![
        (good.replace("lr = 0.01", "lr = -0.01"), "optimizer[1].lr"),
        (good.replace("lr = 0.01", "lr = 0.0"), "optimizer[1].lr"),
        (
            good.replace("widths = [4, 8, 3]", "widths = [4, 0, 3]"),
            "model.widths",
        ),
        (
            good.replace("widths = [4, 8, 3]", "widths = [4, 8, 2]"),
            "model.widths",
        ),
        (good.replace("k = 3", "k = 67"), "hessian.k"),
        (good.replace("seeds = [0]", "seeds = []"), "seeds"),
        (good.replace("lr = 0.01", "lr = []"), "optimizer[1].lr"),
        (
            tiny_config("bad", "[0]", &format!("{sgd}\n{sgd}")),
            "optimizer[1]",
        ),
        (
            good.replace(
                "name = \"adam\"",
                "name = \"adam\"\nlabel = \"../../escape\"",
            ),
            "optimizer[1].label",
        ),
        (good.replace("name = \"bad\"", "name = \"../bad\""), "name"),
        (good.replace("steps = 40", "stepz = 40"), "train.stepz"),
        (
            good.replace("samples = 120", "samples = \"many\""),
            "dataset.samples",
        ),
        (
            good.replace("activation = \"tanh\"", "activation = \"sigmoid\""),
            "model.activation",
        ),
        (
            good.replace("name = \"adam\"", "name = \"adamax\""),
            "optimizer[1].name",
        ),
        (
            good.replace("test_fraction = 0.25", "test_fraction = 1.5"),
            "dataset.test_fraction",
        ),
        (
            good.replace("k = 3", "k = 3\nanalysis_size = 1000"),
            "hessian.analysis_size",
        ),
        (good.replace("steps = 40", "steps = 0"), "train.steps"),
    ];
    assert!(cases.len() >= 12);
    for (text, field) in &cases {
        let cfg = env.write_config(text);
        let out = env.eigentrace(&["run", "--device", "cpu", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(
            err.contains(&format!("`{field}`")),
            "message should name `{field}`: {err}"
        );
        assert!(
            err.contains("exp.toml:"),
            "message should name the file and line: {err}"
        );
        let after = (
            tree_hash(&env.path().join(".eigentrace")),
            tree_hash(&env.path().join("out")),
        );
        assert_eq!(before, after, "{field}: the store or out/ changed");
    }
}

#[test]
fn moving_the_checkout_and_store_keeps_everything_fresh() {
    let env = Env::new();
    let a = env.path().join("a");
    std::fs::create_dir(&a).unwrap();
    std::fs::write(
        a.join("exp.toml"),
        tiny_config("moved", "[0]", &two_optimizers(0.1)),
    )
    .unwrap();
    let run = |dir: &Path| -> Value {
        let out = std::process::Command::new(BIN)
            .current_dir(dir)
            .args(["run", "--json", "--device", "cpu", "exp.toml"])
            .env_remove("EIGENTRACE_STORE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    run(&a);
    let b = env.path().join("elsewhere/b");
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    std::fs::rename(&a, &b).unwrap();
    let again = run(&b);
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "cached"),
        "{:?}",
        statuses(&again)
    );
}

#[test]
fn gc_keeps_what_the_current_config_uses() {
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("gc", "[0]", &two_optimizers(0.1)));
    env.run_json(&cfg);
    let cfg = env.write_config(&tiny_config("gc", "[0]", &two_optimizers(0.2)));
    env.run_json(&cfg);
    let dry = env.eigentrace(&["gc", "--dry-run", "--json"]);
    let dj: Value = serde_json::from_slice(&dry.stdout).unwrap();
    // The sgd lr 0.1 branch (train, hessian, metrics) and the old findings
    // and report are unreachable.
    assert_eq!(dj["removed_records"].as_array().unwrap().len(), 5, "{dj}");
    let gc = env.eigentrace(&["gc"]);
    assert!(gc.status.success());
    assert!(env.eigentrace(&["verify"]).status.success());
    let again = env.run_json(&cfg);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"));
}

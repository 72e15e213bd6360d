//! End-to-end tests that drive the real binary on tiny experiments.

mod common;

use common::*;
use serde_json::Value;

fn tiny(name: &str, sgd_lr: f64) -> String {
    tiny_config(name, "[0]", &two_optimizers(sgd_lr))
}

#[test]
fn first_run_computes_everything_second_run_nothing() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("tiny", 0.1));
    let first = env.run_json(&cfg);
    let st = statuses(&first);
    assert_eq!(st.len(), 1 + 3 * 2 + 1 + 1 + 1, "{st:?}"); // dataset, 2 runs × 3, null, findings, report
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
        "report/findings.md",
        "report/findings.arrow",
        "findings/findings.arrow",
        "findings/findings_tests.arrow",
        "null/values.arrow",
        "null/vectors.arrow",
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
    let cfg = env.write_config(&tiny("edit", 0.1));
    env.run_json(&cfg);
    let cfg = env.write_config(&tiny("edit", 0.2));
    let st = env.eigentrace(&["status", "--device", "cpu", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("missing  train[sgd-lr2e-1-s0]"), "{text}");
    let after = env.run_json(&cfg);
    assert_eq!(
        ran(&after),
        vec![
            "findings",
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
    let cfg = env.write_config(&tiny("why", 0.1));
    env.run_json(&cfg);
    // Same run ids, different hessian k: the hessian stages are stale because k changed.
    let cfg = env.write_config(&tiny("why", 0.1).replace("k = 3", "k = 2"));
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

#[test]
fn a_cold_audit_recomputes_warm_started_checkpoints_and_agrees() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("cold", 0.1));
    env.run_json(&cfg);
    let out = env.eigentrace(&[
        "audit",
        "--cold",
        "--json",
        "--samples",
        "2",
        "out/cold/runs/adam-lr1e-2-s0/eigen/values.arrow",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    // 2 checkpoints × (hessian, preconditioned), never checkpoint 0.
    assert_eq!(rows.len(), 4, "{v}");
    assert!(rows.iter().all(|r| r["step"].as_i64().unwrap() > 0));
    assert!(
        v["max_eigenvalue_rel_diff_trusted"].as_f64().unwrap() < 1e-6,
        "{v}"
    );
    assert!(
        v["max_subspace_diff_trusted"].as_f64().unwrap() < 1e-6,
        "{v}"
    );
    // Only a hessian stage can be recomputed cold.
    let bad = env.eigentrace(&[
        "audit",
        "--cold",
        "out/cold/runs/adam-lr1e-2-s0/train.arrow",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("recomputes a hessian stage"));
}

/// The CUDA path, as far as a machine without a GPU can check it: `--device
/// cuda` is refused up front, with the fix, for `run` and `status`, and
/// writes nothing (no store, no out/). That the stage keys carry the device,
/// so that a CUDA result is never reused for a CPU run, is
/// `pipeline::key`'s unit test.
#[test]
fn device_cuda_without_a_gpu_is_refused_up_front_and_writes_nothing() {
    if std::path::Path::new("/dev/nvidia0").exists() {
        eprintln!("a GPU is visible here: this test is for machines without one");
        return;
    }
    let env = Env::new();
    let cfg = env.write_config(&tiny_config("cuda", "[0]", &two_optimizers(0.1)));
    for cmd in ["run", "status"] {
        let out = env.eigentrace(&[cmd, "--device", "cuda", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("no CUDA device is visible") && err.contains("--device cpu"),
            "{cmd}: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["exp.toml".to_string()], "written: {left:?}");
}

//! Every benchmark runs here in its quick mode (tiny sizes, one round), so
//! that none can rot unnoticed. The tests check that each runs and that its
//! output is well-formed and consistent with itself: ratios recomputed from
//! the times it reports, instance counts from the config, parameter counts
//! from the widths, and the peers' eigenvalues against ours. They never
//! check the clock.
//!
//! They also check that the README's performance tables are exactly what
//! `scripts/bench-tables.py` renders from `bench/results/`, and that the
//! check fails when a result changes.

mod common;

use common::BIN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json_of(out: std::process::Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn bench(what: &str) -> Value {
    let out = Command::new(BIN)
        .args(["bench", what, "--quick", "--json", "--threads", "1"])
        .output()
        .expect("run eigentrace bench");
    json_of(out, &format!("eigentrace bench {what} --quick"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        "{what}: {a} against {b}"
    );
}

/// P of an MLP with these widths (weights and biases).
fn params(widths: &[usize]) -> u64 {
    widths.windows(2).map(|w| (w[0] * w[1] + w[1]) as u64).sum()
}

fn widths(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("widths")
        .iter()
        .map(|w| w.as_u64().unwrap() as usize)
        .collect()
}

/// The provenance every result carries: the machine, a date, the command.
fn check_provenance(v: &Value, bench: &str, threads: Option<u64>) {
    assert_eq!(v["bench"], bench);
    assert_eq!(v["quick"], true, "{v}");
    let m = &v["machine"];
    assert!(!m["cpu"].as_str().unwrap_or("").is_empty(), "cpu in {m}");
    assert!(m["cores"].as_u64().unwrap_or(0) >= 1, "cores in {m}");
    if let Some(t) = threads {
        assert_eq!(m["threads"], t);
        assert_eq!(m["torch"], "2.13.0");
    }
    let date = v["date"].as_str().expect("date");
    assert!(
        date.len() == 10
            && date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "date {date}"
    );
    let cmd = v["command"].as_str().expect("command");
    assert!(cmd.contains("--quick"), "{cmd}");
}

#[test]
fn bench_train_quick() {
    let v = bench("train");
    check_provenance(&v, "train", Some(1));
    assert_eq!(v["rounds"], 1);
    let rows = v["results"].as_array().expect("results");
    // Full-batch, and minibatches of 32 of the same rows with Adam and with
    // SGD.
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["batch"].is_null() && rows[1]["batch"] == 32 && rows[2]["batch"] == 32);
    let opts: Vec<&str> = rows
        .iter()
        .map(|r| r["optimizer"].as_str().unwrap())
        .collect();
    assert_eq!(opts, ["adam", "adam", "sgd"]);
    for r in rows {
        assert_eq!(r["params"].as_u64().unwrap(), params(&widths(&r["widths"])));
        let (ours, torch) = (f(r, "ours_ms_per_step"), f(r, "torch_eager_ms_per_step"));
        assert!(ours > 0.0 && torch > 0.0);
        assert!(f(r, "ours_optimizer_as_passes_ms_per_step") > 0.0, "{r}");
        assert!(f(r, "ours_pass_on_rayon_ms_per_step") > 0.0, "{r}");
        close(f(r, "speedup"), torch / ours, "speedup = eager / ours");
        assert!(f(r, "achieved_gflops") > 0.0 && f(r, "gemm_gflops") > 0.0);
        close(
            f(r, "of_gemm_floor"),
            f(r, "achieved_gflops") / f(r, "gemm_gflops"),
            "share of the GEMM floor",
        );
    }
}

#[test]
fn bench_hessian_quick() {
    let v = bench("hessian");
    check_provenance(&v, "hessian", Some(1));
    assert_eq!(v["params"].as_u64().unwrap(), params(&widths(&v["widths"])));
    close(
        f(&v, "hvp_over_gradient"),
        f(&v, "hvp_s") / f(&v, "gradient_s"),
        "HVP / gradient",
    );
    let gemm = f(&v, "gemm_gflops");
    for b in v["rop_blocks"].as_array().unwrap() {
        close(f(b, "of_gemm"), f(b, "gflops") / gemm, "fraction of GEMM");
        close(
            f(b, "vs_autograd"),
            f(&v, "hvp_s") / f(b, "seconds_per_vector"),
            "R-operator against autograd",
        );
    }
    let ours = &v["ours"];
    assert_eq!(ours["converged"], true);
    let pw = &v["power_iteration"];
    close(
        f(pw, "hvps_over_ours"),
        f(pw, "hvps") / f(ours, "hvps"),
        "power iteration's HVPs / ours",
    );
    close(
        f(&v, "ours_over_scipy_seconds"),
        f(ours, "seconds") / f(&v["scipy_eigsh"], "seconds"),
        "time ratio ours / scipy",
    );
    // Correctness, not speed: scipy's eigsh on torch HVPs finds our eigenvalues.
    let agree = f(&v, "eigenvalue_max_rel_diff");
    assert!(
        agree < 1e-6,
        "ours and scipy's eigenvalues differ by {agree:e}"
    );
    let default = v["default_block"].as_u64().unwrap();
    let blocks = v["block_lanczos"].as_array().unwrap();
    let d = blocks
        .iter()
        .find(|b| b["block"] == default)
        .expect("the default block size is measured");
    assert_eq!(
        d["hvps"], ours["hvps"],
        "the headline run is the default block's"
    );
    assert!(blocks.iter().all(|b| b["converged"] == true));
}

/// `bench hessian --widths`: the products' cost at given shapes, f32 and
/// f64, with ratios that recompute from the reported times, and a Lanczos
/// profile whose share in the products is a fraction. A malformed shape is
/// refused with the fix.
#[test]
fn bench_hessian_scale_quick() {
    let out = Command::new(BIN)
        .args(["bench", "hessian", "--quick", "--json", "--threads", "1"])
        .args(["--widths", "8-6-3", "--widths", "5-4-4-2", "--rows", "40"])
        .output()
        .expect("run eigentrace bench hessian --widths");
    let v = json_of(out, "eigentrace bench hessian --widths");
    assert_eq!(v["bench"], "hessian_scale");
    assert!(v["command"]
        .as_str()
        .unwrap()
        .contains("--widths 8-6-3 --widths 5-4-4-2 --rows 40"));
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "two shapes × f32, f64");
    for r in rows {
        assert_eq!(r["params"].as_u64().unwrap(), params(&widths(&r["widths"])));
        assert_eq!(r["rows"], 40);
        let flops = f(r, "product_gemm_flops");
        let gemm = f(r, "gemm_gflops") * 1e9;
        for b in r["rop_blocks"].as_array().unwrap() {
            let s = f(b, "seconds_per_vector");
            close(
                f(b, "of_gemm_rate"),
                flops / s / gemm,
                "fraction of the GEMM rate",
            );
            close(
                f(b, "of_gemm_floor"),
                f(r, "gemm_floor_s") / s,
                "fraction of the GEMM floor",
            );
            close(
                f(b, "vs_autograd"),
                f(r, "autograd_s") / s,
                "against autograd",
            );
        }
        let l = r["lanczos"].as_array().unwrap();
        // The stage's basis (f32 in f32), unrestarted and restarted; in f32
        // also an f64 basis beside them.
        let f32_run = r["dtype"] == "f32";
        assert_eq!(l.len(), if f32_run { 3 } else { 2 });
        assert!(l[0]["max_basis"].is_null() && l[1]["max_basis"] == 40);
        assert!(l[0]["f32_basis"] == f32_run && l[1]["f32_basis"] == f32_run);
        if f32_run {
            assert!(l[2]["max_basis"].is_null() && l[2]["f32_basis"] == false);
        }
        for x in l {
            let share = f(x, "in_products");
            assert!(share > 0.0 && share <= 1.0, "{x}");
            close(
                f(x, "seconds_per_product"),
                f(x, "seconds") / f(x, "products"),
                "per product",
            );
        }
    }
    let bad = Command::new(BIN)
        .args(["bench", "hessian", "--quick", "--widths", "8-x-3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--widths 8-x-3") && err.contains("784-512-512-10"),
        "{err}"
    );
}

/// PyHessian (pip-installed into the venv) against ours: the errors are
/// recomputed here from nothing but their definitions' inputs where the
/// JSON has them, ours are at the dense truth's level, and the speedups are
/// the reported times' ratios.
#[test]
fn bench_pyhessian_quick() {
    let v = bench("pyhessian");
    check_provenance(&v, "pyhessian", Some(1));
    assert_eq!(v["params"].as_u64().unwrap(), params(&widths(&v["widths"])));
    assert_eq!(v["pyhessian_version"], "0.1");
    let tasks = v["tasks"].as_array().unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(names, ["eigenvalues", "trace", "trace_1000", "density"]);
    for t in tasks {
        let (p, o) = (&t["pyhessian"]["summary"], &t["ours"]["summary"]);
        close(
            f(t, "speedup"),
            f(p, "seconds") / f(o, "seconds"),
            "speedup",
        );
        assert!(f(p, "error") <= f(p, "worst_error") && f(o, "error") <= f(o, "worst_error"));
        assert!(f(p, "hvps") > 0.0, "{t}");
    }
    // Lanczos to 1e-6 and the exact trace are at the dense truth's level;
    // PyHessian's power iteration (tol 1e-3) and Hutchinson are not.
    assert!(
        f(&tasks[0]["ours"]["summary"], "worst_error") < 1e-8,
        "{}",
        tasks[0]
    );
    assert!(
        f(&tasks[1]["ours"]["summary"], "worst_error") < 1e-12,
        "{}",
        tasks[1]
    );
    assert_eq!(f(&tasks[1]["ours"]["summary"], "hvps"), 0.0);
    assert!(
        f(&tasks[1]["pyhessian"]["summary"], "error") > 1e-8,
        "{}",
        tasks[1]
    );
    // The density's budget is the first ladder rung within PyHessian's error.
    let ladder = v["density_ladder"].as_array().unwrap();
    let target = f(&tasks[3]["pyhessian"]["summary"], "error");
    for (i, rung) in ladder.iter().enumerate() {
        let e = f(&rung["tuning"], "error");
        assert_eq!(
            e <= target,
            i + 1 == ladder.len() && tasks[3]["equal_accuracy_budget"] == true,
            "{rung}"
        );
    }
}

#[test]
fn bench_metrics_quick() {
    let v = bench("metrics");
    check_provenance(&v, "metrics", Some(1));
    assert_eq!(v["params"].as_u64().unwrap(), params(&widths(&v["widths"])));
    assert!(f(&v, "seconds") > 0.0);
    assert!(v["checkpoints"].as_u64().unwrap() >= 2 && v["k"].as_u64().unwrap() >= 1);
}

/// The engine benchmark builds dvc's DAG from `eigentrace status --json`:
/// both tools see the same instances, and the ratio is the medians'.
#[test]
fn bench_engine_quick() {
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("engine.json");
    let out = Command::new(repo().join("scripts/bench-engine.sh"))
        .arg("--quick")
        .arg("--json")
        .arg(&out_json)
        .arg(BIN)
        .output()
        .expect("run bench-engine.sh");
    assert!(
        out.status.success(),
        "bench-engine.sh --quick failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    check_provenance(&v, "engine", None);
    // dataset, null, 2 seeds × 3 optimizers × (train, hessian, metrics), findings, report.
    let expected = 1 + 1 + 2 * 3 * 3 + 1 + 1;
    assert_eq!(v["instances"], expected, "{v}");
    assert_eq!(v["dvc_stages"], v["instances"]);
    let median = |key: &str| {
        let mut t: Vec<f64> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(t.len() as u64, v["runs"].as_u64().unwrap(), "{key}");
        t.sort_by(f64::total_cmp);
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        }
    };
    let (et, dvc) = (median("eigentrace_run_s"), median("dvc_status_s"));
    assert!((f(&v, "eigentrace_run_median_s") - et).abs() < 6e-4);
    assert!((f(&v, "dvc_status_median_s") - dvc).abs() < 6e-4);
    let ratio = f(&v, "ratio");
    let want = f(&v, "dvc_status_median_s") / f(&v, "eigentrace_run_median_s");
    assert!(
        (ratio - want).abs() <= 0.051,
        "ratio {ratio} against {want}"
    );
}

/// The study benchmark in its quick mode runs configs/quick.toml into an
/// empty store: every instance of the config runs.
#[test]
fn bench_paper_quick() {
    let out = Command::new(repo().join("scripts/bench-paper.sh"))
        .args(["--quick", BIN])
        .output()
        .expect("run bench-paper.sh");
    let v = json_of(out, "bench-paper.sh --quick");
    check_provenance(&v, "paper", None);
    let empty = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .args(["status", "--json", "--store"])
        .arg(empty.path().join("store"))
        .arg(repo().join("configs/quick.toml"))
        .output()
        .unwrap();
    let st = json_of(status, "status --json");
    assert_eq!(
        v["instances"].as_u64().unwrap() as usize,
        st["stages"].as_array().unwrap().len()
    );
    assert!(f(&v, "seconds") > 0.0 && f(&v, "seconds") >= f(&v, "stage_seconds") / 2.0);
}

/// The build benchmark's quick mode builds one small crate into an empty
/// target dir and reads cargo's timings report.
#[test]
fn bench_build_quick() {
    let out = Command::new(repo().join("scripts/bench-build.sh"))
        .arg("--quick")
        .current_dir(repo())
        .output()
        .expect("run bench-build.sh");
    let v = json_of(out, "bench-build.sh --quick");
    check_provenance(&v, "build", None);
    assert!(v["units"].as_u64().unwrap() > 1, "{v}");
    let shares: f64 = v["compile_share"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!(shares > 0.0 && shares <= 1.0 + 1e-6, "{v}");
    assert!(f(&v, "wall_s") > 0.0 && f(&v, "cpu_s") > 0.0);
    // Quick mode reuses the cached venv and runs nothing: no first-run total.
    assert!(f(&v, "venv_s") >= 0.0, "{v}");
    assert!(v["run_s"].is_null() && v["first_run_s"].is_null(), "{v}");
}

fn tables(results: &Path, readme: &Path, check: bool) -> std::process::Output {
    let mut c = Command::new("python3");
    c.arg(repo().join("scripts/bench-tables.py"))
        .arg("--results")
        .arg(results)
        .arg("--readme")
        .arg(readme);
    if check {
        c.arg("--check");
    }
    c.output().expect("run bench-tables.py")
}

/// The README's tables are the committed results, rendered; a changed
/// result makes the check fail, and rendering it changes the table.
#[test]
fn readme_tables_are_the_results() {
    let results = repo().join("bench/results");
    let readme = repo().join("README.md");
    let out = tables(&results, &readme, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("results");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&results).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let engine = copy.join("engine.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&engine).unwrap()).unwrap();
    v["ratio"] = serde_json::json!(f(&v, "ratio") + 7.0);
    std::fs::write(&engine, v.to_string()).unwrap();
    let readme_copy = dir.path().join("README.md");
    std::fs::copy(&readme, &readme_copy).unwrap();
    let out = tables(&copy, &readme_copy, true);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a changed result must fail the check"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("engine"));
    assert!(tables(&copy, &readme_copy, false).status.success());
    let text = std::fs::read_to_string(&readme_copy).unwrap();
    assert!(text.contains(&format!("**{:.0}×**", f(&v, "ratio"))));
    // A quick-mode result is refused.
    v["quick"] = serde_json::json!(true);
    std::fs::write(&engine, v.to_string()).unwrap();
    assert_eq!(tables(&copy, &readme_copy, true).status.code(), Some(2));
}

/// The storage benchmark's quick mode: configs/quick.toml with f32, f16
/// and bf16 vectors. Training and the eigenvalues are identical, the stored
/// vectors rounded within the dtype's unit roundoff, and the half-precision
/// files smaller.
#[test]
fn bench_storage_quick() {
    let out = Command::new(repo().join("scripts/bench-storage.sh"))
        .args(["--quick", BIN])
        .output()
        .expect("run bench-storage.sh");
    let v = json_of(out, "bench-storage.sh --quick");
    check_provenance(&v, "storage", None);
    let r = &v["results"][0];
    assert_eq!(r["params"], 1476);
    let bytes = |d: &str| r["vector_bytes"][d].as_u64().unwrap();
    assert!(bytes("f16") < bytes("f32") * 6 / 10 && bytes("bf16") < bytes("f32") * 6 / 10);
    let cols = r["columns"].as_array().unwrap();
    for (d, u) in [("f16", 2f64.powi(-11)), ("bf16", 2f64.powi(-8))] {
        let col = |file: &str, column: &str| {
            cols.iter()
                .find(|c| c["file"] == file && c["column"] == column)
                .unwrap_or_else(|| panic!("{file}:{column}"))[d]
                .clone()
        };
        let vec = col("eigen/vectors.arrow", "vector");
        assert!(
            vec["differing"].as_u64().unwrap() > 0 && f(&vec, "relative") <= u,
            "{vec}"
        );
        assert_eq!(col("eigen/values.arrow", "eigenvalue")["differing"], 0);
        assert_eq!(col("train.arrow", "train_loss")["differing"], 0);
        let ipr = col("metrics/localization.arrow", "ipr");
        assert!(f(&ipr, "relative") <= 4.0 * u, "{ipr}");
    }
}

/// The scale benchmark's quick mode runs configs/quick.toml and reports
/// its time, memory and bytes on disk, which add up.
#[test]
fn bench_scale_quick() {
    let out = Command::new(repo().join("scripts/bench-scale.sh"))
        .args(["--quick", BIN])
        .output()
        .expect("run bench-scale.sh");
    let v = json_of(out, "bench-scale.sh --quick");
    check_provenance(&v, "scale", None);
    let r = &v["results"][0];
    assert_eq!(r["params"], 1476);
    assert!(f(r, "seconds") > 0.0);
    let (peak, largest) = (f(r, "peak_rss_bytes"), f(r, "largest_process_rss_bytes"));
    assert!(largest > 1e6 && peak >= largest * 0.5, "{r}");
    let store = f(r, "store_bytes");
    assert!(f(r, "vector_bytes") > 0.0 && f(r, "checkpoint_bytes") > 0.0);
    assert!(
        f(r, "vector_bytes") + f(r, "checkpoint_bytes") <= store * 1.01,
        "{r}"
    );
}

/// The null-tolerance benchmark's quick mode: each tolerance's null against
/// the reference's, replica by replica; the reference matches itself
/// exactly, and the loosest tolerance takes fewer products.
#[test]
fn bench_null_quick() {
    let out = Command::new(repo().join("scripts/bench-null.sh"))
        .args(["--quick", BIN])
        .output()
        .expect("run bench-null.sh");
    let v = json_of(out, "bench-null.sh --quick");
    check_provenance(&v, "null", None);
    assert_eq!(v["params"], 1476);
    let rows = v["results"].as_array().unwrap();
    // Five tolerances, then block 2, block 4 and a 30-vector basis at the
    // reference tolerance.
    assert_eq!(rows.len(), 8);
    let shape = |r: &Value| {
        (
            r["tol"].as_f64().unwrap(),
            r["block"].as_u64().unwrap(),
            r["max_basis"].as_u64(),
        )
    };
    assert_eq!(shape(&rows[4]), (0.1, 1, None));
    assert_eq!(shape(&rows[5]), (1e-4, 2, None));
    assert_eq!(shape(&rows[6]), (1e-4, 4, None));
    assert_eq!(shape(&rows[7]), (1e-4, 1, Some(30)));
    let reference = &rows[0];
    assert_eq!(reference["tol"], v["reference_tol"]);
    assert!(
        (f(reference, "subspace_overlap_min") - 1.0).abs() < 1e-9,
        "{reference}"
    );
    assert_eq!(f(reference, "eigenvalue_diff"), 0.0);
    assert_eq!(f(reference, "p_ipr_band_mean_rel_diff"), 0.0);
    for r in rows {
        let q = f(r, "subspace_overlap_min");
        assert!((0.0..=1.0 + 1e-9).contains(&q), "{r}");
        assert!(
            f(r, "hvps_per_replica") > 0.0 && r["converged"] == true,
            "{r}"
        );
    }
    // At the reference tolerance every variant finds the same top-k.
    for r in &rows[5..] {
        assert!(f(r, "subspace_overlap_min") > 0.999, "{r}");
    }
    assert!(f(&rows[4], "hvps_per_replica") < f(reference, "hvps_per_replica"));
}

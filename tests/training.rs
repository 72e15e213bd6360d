//! Training end to end: checkpoints that PyTorch can load and that reproduce
//! the logged loss, byte-identical reruns, and divergence handled cleanly.

mod common;

use common::*;
use serde_json::Value;

fn python() -> String {
    std::env::var("EIGENTRACE_PYTHON")
        .expect("EIGENTRACE_PYTHON is not set: run the tests through `make test` (it bootstraps the PyTorch venv)")
}

/// Reads every row of an Arrow file through pyarrow (an independent
/// reader), as JSON records; a non-finite float (which JSON cannot hold)
/// as null.
fn arrow_rows(path: &std::path::Path) -> Vec<Value> {
    let script = format!(
        "import pyarrow.ipc as i, json, math\n\
         rows = i.open_file('{}').read_all().to_pylist()\n\
         fix = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v\n\
         print(json.dumps([{{k: fix(v) for k, v in r.items()}} for r in rows]))",
        path.display()
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// The logged train loss at `step`, and whether any row is diverged, read
/// through pyarrow (an independent reader of our file).
fn read_train_arrow_loss(path: &std::path::Path, step: i64) -> (f64, bool) {
    let rows = arrow_rows(path);
    let r = rows
        .iter()
        .find(|r| r["step"] == step)
        .unwrap_or_else(|| panic!("{}: no step {step}", path.display()));
    (
        r["train_loss"].as_f64().unwrap(),
        rows.iter().any(|x| x["diverged"] == true),
    )
}

/// Runs a check script from tests/python with the venv's python and these
/// arguments; asserts that it succeeded (its stdout and stderr in the
/// message) and returns its stdout's JSON.
fn python_check(script: &str, args: &[&std::ffi::OsStr]) -> Value {
    let out = std::process::Command::new(python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/python")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{script}: {report}");
    assert!(
        out.status.success(),
        "{script}: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(report.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {report}"))
}

fn minibatch_sweep(name: &str) -> String {
    tiny_config(
        name,
        "[0]",
        "[[optimizer]]\nname = \"sgd\"\nlr = 0.1\nmomentum = 0.9\n\n[[optimizer]]\nname = \"muon\"\nlr = 0.02\nmatrices = \"all\"\n\n[[optimizer]]\nname = \"adamw\"\nlr = 0.01\n",
    )
    .replace("steps = 40", "epochs = 6\nbatch_size = 30\nschedule = { kind = \"cosine\", warmup = 3, final_fraction = 0.1 }")
}

#[test]
fn pytorch_rebuilds_the_model_from_our_files_and_reproduces_the_logged_loss() {
    let env = Env::new();
    let cfg =
        env.write_config(&minibatch_sweep("ckpt").replace("dtype = \"f64\"", "dtype = \"f32\""));
    env.run_json(&cfg);
    let cfg64 = env.write_config(&minibatch_sweep("ckpt64"));
    env.run_json(&cfg64);
    for (exp, run, tol) in [
        ("ckpt", "adamw-lr1e-2-s0", 1e-6),
        ("ckpt64", "muon-all-lr2e-2-s0", 1e-6),
        ("ckpt64", "sgd-lr1e-1-s0", 1e-6),
    ] {
        let dir = env.path().join("out").join(exp).join("runs").join(run);
        let data = env.path().join("out").join(exp).join("dataset/data.arrow");
        // The last step is always both a checkpoint and a logged step.
        let cks: Vec<i64> = std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .map(|e| {
                e.unwrap().file_name().to_string_lossy()[5..13]
                    .parse()
                    .unwrap()
            })
            .collect();
        let step = cks.iter().copied().max().unwrap();
        let step_arg = step.to_string();
        let v = python_check(
            "checkpoint_loss.py",
            &[dir.as_os_str(), data.as_os_str(), step_arg.as_ref()],
        );
        let (logged, _) = read_train_arrow_loss(&dir.join("train.arrow"), step);
        let theirs = if v["loss_f64"].is_null() {
            v["loss_f32"].as_f64().unwrap()
        } else {
            v["loss_f64"].as_f64().unwrap()
        };
        let rel = (theirs - logged).abs() / logged.abs();
        eprintln!("{exp}/{run} step {step}: logged {logged}, PyTorch {theirs}, rel {rel:e}");
        assert!(
            rel <= tol,
            "{exp}/{run} step {step}: logged {logged} vs PyTorch {theirs} (rel {rel:e})"
        );
        // The f32 θ alone reproduces it to f32 precision as well.
        let rel32 = (v["loss_f32"].as_f64().unwrap() - logged).abs() / logged.abs();
        assert!(rel32 <= 1e-5, "{run}: f32 θ gives rel {rel32:e}");
    }
}

#[test]
fn the_same_config_twice_gives_byte_identical_data_checkpoints_and_logs() {
    let a = Env::new();
    let b = Env::new();
    let text = minibatch_sweep("det");
    let ja = a.run_json(&a.write_config(&text));
    let jb = b.run_json(&b.write_config(&text));
    let oa = store_outputs(&a.path().join(".eigentrace"));
    let ob = store_outputs(&b.path().join(".eigentrace"));
    assert_eq!(oa, ob, "every output of every stage is byte-identical");
    let keys = |j: &Value| {
        j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&ja), keys(&jb));
    // And a different seed does change the training bytes.
    let c = Env::new();
    c.run_json(&c.write_config(&text.replace("seeds = [0]", "seeds = [1]")));
    let oc = store_outputs(&c.path().join(".eigentrace"));
    assert_ne!(
        oa.get("train[adamw-lr1e-2-s0]"),
        oc.get("train[adamw-lr1e-2-s1]")
    );
    assert_eq!(
        oa.get("dataset"),
        oc.get("dataset"),
        "the dataset has its own seed"
    );
}

#[test]
fn a_diverging_run_stops_cleanly_and_the_others_go_on() {
    let env = Env::new();
    let text = tiny_config(
        "div",
        "[0]",
        "[[optimizer]]\nname = \"sgd\"\nlr = 1e12\n\n[[optimizer]]\nname = \"adam\"\nlr = 0.01\n",
    )
    .replace("activation = \"tanh\"", "activation = \"relu\"");
    let j = env.run_json(&env.write_config(&text));
    assert!(j["ok"].as_bool().unwrap());
    let train = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "train[sgd-lr1e12-s0]")
        .unwrap();
    assert_eq!(train["meta"]["diverged"], true, "{train}");
    let out = env.path().join("out/div");
    let (_, diverged) = read_train_arrow_loss(&out.join("runs/sgd-lr1e12-s0/train.arrow"), 0);
    assert!(diverged, "train.arrow marks the divergence");
    let (_, adam_div) = read_train_arrow_loss(&out.join("runs/adam-lr1e-2-s0/train.arrow"), 0);
    assert!(!adam_div);
    assert!(out.join("report/optimizer_comparison.png").is_file());
}

#[test]
fn numpy_recomputes_our_metrics_from_our_vectors() {
    let env = Env::new();
    let text = tiny_config("met", "[0]", &two_optimizers(0.1))
        .replace("k = 3", "k = 4\nwhich = \"both_ends\"");
    env.run_json(&env.write_config(&text));
    for run in ["sgd-lr1e-1-s0", "adam-lr1e-2-s0"] {
        let dir = env.path().join("out/met/runs").join(run);
        let j = python_check("recompute_metrics.py", &[dir.as_os_str()]);
        // The null model (20 replicas by default) was checked too.
        assert_eq!(j["null_pairs"], 20 * 19 / 2, "{run}: {j}");
    }
}

/// `hessian.vector_dtype = "f16"` and `"bf16"`: numpy decodes the stored
/// vectors from the file's schema alone and recomputes the metrics from
/// them (1e-6); `eigentrace compare` against the f32 run of the same config
/// finds training and the eigenvalues identical, the vectors within the
/// dtype's unit roundoff u of the f32 ones but rounded, and every metric
/// that is smooth in the vectors within 4u of its column's scale. Principal
/// angles near 0 are ill-conditioned (δθ ≈ √(2δ)): within √(8u). Counts of
/// entries (`frac50`, `frac90`) move by whole entries.
#[test]
fn half_precision_vectors_are_decoded_independently_and_cost_at_most_their_roundoff() {
    let env = Env::new();
    let base = tiny_config("vd", "[0]", &two_optimizers(0.1)).replace("k = 3", "k = 4");
    for d in ["f32", "f16", "bf16"] {
        let text = base
            .replace("name = \"vd\"", &format!("name = \"vd-{d}\""))
            .replace("k = 4", &format!("k = 4\nvector_dtype = \"{d}\""));
        let cfg = env.path().join(format!("{d}.toml"));
        std::fs::write(&cfg, text).unwrap();
        env.run_json(&cfg);
        // fig 8 reads the stored vector too.
        assert!(env
            .path()
            .join(format!("out/vd-{d}/report/fig8_localization_map.png"))
            .is_file());
    }
    for (d, u) in [("f16", 2f64.powi(-11)), ("bf16", 2f64.powi(-8))] {
        for run in ["sgd-lr1e-1-s0", "adam-lr1e-2-s0"] {
            let dir = env.path().join(format!("out/vd-{d}/runs")).join(run);
            python_check("recompute_metrics.py", &[dir.as_os_str()]);
        }
        let out = env.eigentrace(&["--json", "compare", "out/vd-f32", &format!("out/vd-{d}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["missing_in_b"].as_array().unwrap().len(), 0, "{j}");
        // --tol makes it a check: the vectors differ by more than u/100.
        let b = format!("out/vd-{d}");
        let tol = |t: f64| {
            env.eigentrace(&["compare", "out/vd-f32", &b, "--tol", &t.to_string()])
                .status
                .code()
        };
        assert_eq!(tol(u / 100.0), Some(1));
        assert_eq!(tol(0.5), Some(0));
        let mut metrics_seen = 0;
        for c in j["columns"].as_array().unwrap() {
            let (file, column) = (c["file"].as_str().unwrap(), c["column"].as_str().unwrap());
            let what = format!("{d}: {file} {column}: {c}");
            assert!(c["mismatch"].is_null(), "{what}");
            let rel = c["relative"].as_f64();
            if file.ends_with("vectors.arrow") && column == "vector" {
                // Rounded, and by no more than u of the largest entry.
                assert!(c["differing"].as_u64().unwrap() > 0, "{what}");
                assert!(rel.unwrap() <= u, "{what}");
            } else if file.ends_with("values.arrow")
                || file.ends_with("train.arrow")
                || file.contains("checkpoints/")
            {
                assert_eq!(c["differing"], 0, "{what}");
            } else if file.contains("/metrics/") {
                if let Some(rel) = rel {
                    metrics_seen += 1;
                    if column.starts_with("frac") {
                        // Two entries of P = 67 at most.
                        let d = c["max_abs"].as_f64().unwrap();
                        assert!(d <= 2.0 / 67.0 + 1e-12, "{what}");
                        continue;
                    }
                    let bound = match column {
                        "principal_angles" | "grassmann" => (8.0 * u).sqrt(),
                        _ => 4.0 * u,
                    };
                    assert!(rel <= bound, "{what}: over {bound:e}");
                }
            }
        }
        assert!(
            metrics_seen > 20,
            "{d}: only {metrics_seen} metric columns compared"
        );
    }
    // `show` widens them for display and says so.
    for (d, kind) in [("f16", "float16"), ("bf16", "bfloat16")] {
        let f = format!("out/vd-{d}/runs/sgd-lr1e-1-s0/eigen/vectors.arrow");
        let out = env.eigentrace(&["show", &f, "-n", "2"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("vector (stored as {kind})")) && text.contains("list[f32]"),
            "{text}"
        );
    }
    // Stored at half the bytes: the f16 and bf16 vector files are smaller.
    let size = |d: &str| {
        std::fs::metadata(
            env.path()
                .join(format!("out/vd-{d}/runs/sgd-lr1e-1-s0/eigen/vectors.arrow")),
        )
        .unwrap()
        .len()
    };
    assert!(size("f16") < size("f32") && size("bf16") < size("f32"));
}

/// `hessian.keep_vectors`: the eigenpairs of every checkpoint are computed
/// (each warm-starts the next) and their values stored, but the vectors and
/// the analysis-set gradient only at the first and last checkpoints, at
/// multiples of `every` and at the steps of `at`. The values, and every
/// vector metric at a kept checkpoint, equal those of the run that keeps
/// every vector; numpy recomputes the metrics from the kept vectors; the
/// cold audit samples kept checkpoints only, and finds this run's record
/// although the full run wrote the same bytes of values.arrow; a step that
/// is no checkpoint is refused with the nearest ones.
#[test]
fn keep_vectors_stores_them_at_chosen_checkpoints_and_the_metrics_there_equal_a_full_runs() {
    let env = Env::new();
    let full = tiny_config("kv-all", "[0]", &two_optimizers(0.1));
    // Checkpoints: 0, 1, 3, 12, 20, 40 (every 20, 4 log-spaced).
    let kept_cfg = full
        .replace("name = \"kv-all\"", "name = \"kv-some\"")
        .replace("k = 3", "k = 3\nkeep_vectors = { every = 20, at = [3] }");
    let (a, b) = (env.path().join("all.toml"), env.path().join("some.toml"));
    std::fs::write(&a, &full).unwrap();
    std::fs::write(&b, &kept_cfg).unwrap();
    // The partial run first: the full one's identical values.arrow is newer.
    env.run_json(&b);
    env.run_json(&a);
    let kept = [0i64, 3, 20, 40];
    let steps = |rows: &[Value], col: &str| -> std::collections::BTreeSet<i64> {
        rows.iter().map(|r| r[col].as_i64().unwrap()).collect()
    };
    for run in ["sgd-lr1e-1-s0", "adam-lr1e-2-s0"] {
        let da = env.path().join("out/kv-all/runs").join(run);
        let db = env.path().join("out/kv-some/runs").join(run);
        let read = |d: &std::path::Path, f: &str| arrow_rows(&d.join(f));
        // Every checkpoint's values, bit for bit.
        assert_eq!(
            std::fs::read(da.join("eigen/values.arrow")).unwrap(),
            std::fs::read(db.join("eigen/values.arrow")).unwrap(),
            "{run}"
        );
        let all_steps = steps(&read(&da, "eigen/values.arrow"), "step");
        assert_eq!(all_steps.len(), 6, "{run}: {all_steps:?}");
        assert_eq!(
            steps(&read(&db, "eigen/vectors.arrow"), "step"),
            kept.into_iter().collect(),
            "{run}"
        );
        // The gradient: null where no vector is kept; the scalars everywhere.
        let (ga, gb) = (
            read(&da, "eigen/gradient.arrow"),
            read(&db, "eigen/gradient.arrow"),
        );
        assert_eq!(ga.len(), gb.len());
        for (x, y) in ga.iter().zip(&gb) {
            let s = y["step"].as_i64().unwrap();
            assert_eq!(x["grad_norm"], y["grad_norm"], "{run} step {s}");
            assert_eq!(
                y["gradient"].is_null(),
                !kept.contains(&s),
                "{run} step {s}"
            );
            if !y["gradient"].is_null() {
                assert_eq!(x["gradient"], y["gradient"], "{run} step {s}");
            }
        }
        // Each vector metric at a kept checkpoint equals the full run's.
        for (file, key) in [
            ("localization", &["step", "operator", "rank"][..]),
            (
                "layer_mass",
                &["step", "operator", "rank", "layer", "block"][..],
            ),
            ("overlap", &["operator", "t_w", "t"][..]),
            ("displacement", &["operator", "t_w", "t", "rank"][..]),
            ("alignment", &["step"][..]),
        ] {
            let path = format!("metrics/{file}.arrow");
            let id = |r: &Value| key.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>();
            let whole: std::collections::BTreeMap<Vec<String>, Value> =
                read(&da, &path).into_iter().map(|r| (id(&r), r)).collect();
            let part = read(&db, &path);
            let time = if key.contains(&"t") { "t" } else { "step" };
            assert_eq!(
                steps(&part, time),
                kept.into_iter()
                    .filter(|&s| time == "step" || s > 0)
                    .collect(),
                "{run} {file}"
            );
            assert!(!part.is_empty());
            for r in &part {
                let w = &whole[&id(r)];
                for (c, v) in r.as_object().unwrap() {
                    // The consecutive chain links kept checkpoints, and
                    // per_step divides by their gap.
                    if c == "consecutive" || c == "per_step" {
                        continue;
                    }
                    let close = match (v.as_f64(), w[c].as_f64()) {
                        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                        _ if v.is_array() => v
                            .as_array()
                            .unwrap()
                            .iter()
                            .zip(w[c].as_array().unwrap())
                            .all(|(x, y)| {
                                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-12
                            }),
                        _ => v == &w[c],
                    };
                    assert!(
                        close,
                        "{run} {file} {c}: {v} against {} in {:?}",
                        w[c],
                        id(r)
                    );
                }
            }
        }
        // The eigenvalue metrics cover every checkpoint.
        assert_eq!(
            steps(&read(&db, "metrics/spectrum.arrow"), "step"),
            all_steps
        );
        python_check("recompute_metrics.py", &[db.as_os_str()]);
    }
    // The cold audit: this run's record, and kept checkpoints only.
    let values = "out/kv-some/runs/sgd-lr1e-1-s0/eigen/values.arrow";
    let out = env.eigentrace(&["--json", "audit", "--cold", "--samples", "9", values]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sampled = steps(j["rows"].as_array().unwrap(), "step");
    assert_eq!(sampled, [3i64, 20, 40].into_iter().collect(), "{j}");
    assert!(
        j["max_subspace_diff_trusted"].as_f64().unwrap() < 1e-6,
        "{j}"
    );
    let out = env.eigentrace(&["--json", "audit", values]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        j["chain"][0]["params"]["keep_vectors"]["every"], 20,
        "the audit names the record this view shows: {}",
        j["chain"][0]["params"]
    );
    assert!(env
        .path()
        .join("out/kv-some/report/fig8_localization_map.png")
        .is_file());
    // The report's runs table says which checkpoints the vector figures have.
    let index = |e: &str| {
        std::fs::read_to_string(env.path().join(format!("out/{e}/report/index.html"))).unwrap()
    };
    let (some, all) = (index("kv-some"), index("kv-all"));
    assert!(
        some.contains("<td>4 of 6 checkpoints</td>") && some.contains("hessian.keep_vectors"),
        "{some}"
    );
    assert!(
        all.contains("<td>all 6</td>") && !all.contains("hessian.keep_vectors"),
        "{all}"
    );
    // A step that is no checkpoint: refused, with the nearest ones.
    std::fs::write(&b, kept_cfg.replace("at = [3]", "at = [5]")).unwrap();
    let out = env.eigentrace(&["run", "--device", "cpu", b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hessian.keep_vectors.at")
            && err.contains("step 5 is not a checkpoint (the nearest are 3 and 12)"),
        "{err}"
    );
}

/// `operators = ["hessian", "ggn", "fisher"]`: PyTorch rebuilds each
/// checkpoint's model, forms the GGN and the empirical Fisher densely from
/// torch.func's Jacobian, and checks our eigenvalues (1e-8), our
/// Hessian/GGN and Hessian/Fisher subspace overlaps, and our trace
/// estimates (`[trace]`, each within 4 of its standard errors), and the
/// SLQ densities' normalization and edge (`[density]`). Every operator's
/// Lanczos here is thick-restarted (`max_basis = 8`, k = 3).
#[test]
fn pytorch_checks_the_ggn_and_fisher_eigenpairs_and_their_overlap_with_h() {
    let env = Env::new();
    let text = tiny_config("curv", "[0]", &two_optimizers(0.1)).replace(
        "k = 3",
        "k = 3\nanalysis_size = 60\ntol = 1e-10\nmax_basis = 8\noperators = [\"hessian\", \"ggn\", \"fisher\"]\nlayers = true\n\n[trace]\nmatvecs = 60\n\n[density]\nprobes = 3\nsteps = 40",
    );
    env.run_json(&env.write_config(&text));
    // [density] adds fig 11 to the report, one panel per setting.
    let report = env.path().join("out/curv/report");
    for ext in ["png", "svg", "pdf"] {
        assert!(
            report.join(format!("fig11_density.{ext}")).is_file(),
            "fig11_density.{ext}"
        );
    }
    let svg = std::fs::read_to_string(report.join("fig11_density.svg")).unwrap();
    assert!(
        svg.contains("sgd (η=") && svg.contains("adam (η="),
        "fig 11's panel titles"
    );
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(index.contains("fig11_density.png"));
    // layers = true adds fig 12, one panel per setting.
    let svg = std::fs::read_to_string(report.join("fig12_layer_curvature.svg")).unwrap();
    assert!(
        svg.contains("sgd (η=") && svg.contains("adam (η=") && svg.contains("layer 1 (output)"),
        "fig 12's panel titles and legend"
    );
    assert!(index.contains("fig12_layer_curvature.png"));
    let data = env.path().join("out/curv/dataset/data.arrow");
    for run in ["sgd-lr1e-1-s0", "adam-lr1e-2-s0"] {
        let dir = env.path().join("out/curv/runs").join(run);
        let j = python_check(
            "curvature_operators.py",
            &[dir.as_os_str(), data.as_os_str(), "60".as_ref()],
        );
        let report = j.to_string();
        // Every checkpoint has both operators' top 3, and an overlap row each.
        let steps = j["steps"].as_u64().unwrap();
        assert!(steps >= 3, "{report}");
        assert_eq!(j["overlap_rows"].as_u64().unwrap(), 2 * steps, "{report}");
        assert!(j["pairs"].as_u64().unwrap() >= 3 * steps, "{report}");
        // [trace]: per step and operator, three whole-θ traces (exact,
        // Hutchinson, Hutch++) and three blocks for each of the 2 layers,
        // exact and Hutchinson; the exact ones to 1e-10 (checked above).
        assert_eq!(
            j["trace_rows"].as_u64().unwrap(),
            steps * 3 * (3 + 2 * 3 * 2),
            "{report}"
        );
        assert_eq!(
            j["exact_rows"].as_u64().unwrap(),
            steps * 3 * (1 + 3 * 2),
            "{report}"
        );
    }
}

//! The metrics stage on synthetic eigenpairs: trust (converged and
//! resolvable) flags every row, two-time rows need both ends, the
//! `consecutive` chain runs through trusted steps unless
//! `include_untrusted`, the last rank's degeneracy is unknown, and
//! per-vector displacement is reported only for isolated vectors.

use arrow_array::Array;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use stages::arrow_io::{
    col_bool, col_f64, col_i32, col_i64, col_str, list_f32, write_batch, Table,
};
use stages::metrics::{run, MetricsInputs, MetricsParams, NullInputs};
use stages::mlp::{Activation, Arch};
use stages::optim::{OptName, OptimizerParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// P = 3·4 + 4 + 4·2 + 2 = 26.
fn arch() -> Arch {
    Arch {
        widths: vec![3, 4, 2],
        activation: Activation::Tanh,
    }
}

struct Pair {
    step: i64,
    rank: i32,
    ev: f64,
    converged: bool,
    resolvable: bool,
    v: Vec<f64>,
}

/// `n` orthonormal vectors of R^p (Gram–Schmidt on Gaussian columns).
fn orthonormal(rng: &mut ChaCha8Rng, p: usize, n: usize) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    while out.len() < n {
        let mut v: Vec<f64> = (0..p).map(|_| StandardNormal.sample(rng)).collect();
        for u in &out {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let n2 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.push(v.iter().map(|x| x / n2).collect());
    }
    out
}

/// A null model's pairs: `replicas` replicas (in `step`) of k ≤ 3
/// orthonormal vectors with eigenvalues 8, 4, 2, each pair's (converged,
/// resolvable) given by `flags(replica, rank)`.
fn null_replicas(
    rng: &mut ChaCha8Rng,
    replicas: i64,
    k: usize,
    flags: impl Fn(i64, i32) -> (bool, bool),
) -> Vec<Pair> {
    let p = arch().num_params();
    let mut null = Vec::new();
    for r in 0..replicas {
        for (rank, v) in orthonormal(rng, p, k).into_iter().enumerate() {
            let (converged, resolvable) = flags(r, rank as i32);
            null.push(Pair {
                step: r,
                rank: rank as i32,
                ev: [8.0, 4.0, 2.0][rank],
                converged,
                resolvable,
                v,
            });
        }
    }
    null
}

/// `base` moved by a small random amount and re-orthonormalized: the
/// matching stays the identity.
fn nudge(rng: &mut ChaCha8Rng, base: &[Vec<f64>], eps: f64) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for b in base {
        let mut v: Vec<f64> = b
            .iter()
            .map(|x| {
                let z: f64 = StandardNormal.sample(rng);
                x + eps * z
            })
            .collect();
        for u in &out {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let n2 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.push(v.iter().map(|x| x / n2).collect());
    }
    out
}

/// Writes values.arrow (with `resolvable` and `rounding_level` when
/// `with_resolvable`) and vectors.arrow.
fn write_inputs(dir: &Path, pairs: &[Pair], with_resolvable: bool) -> (PathBuf, PathBuf) {
    write_inputs_as(dir, pairs, with_resolvable, "step")
}

/// [`write_inputs`] with `index` (the null model's `replica`) for `step`.
fn write_inputs_as(
    dir: &Path,
    pairs: &[Pair],
    with_resolvable: bool,
    index: &str,
) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let values = dir.join("values.arrow");
    let vectors = dir.join("vectors.arrow");
    let n = pairs.len();
    let mut cols = vec![
        (index, col_i64(pairs.iter().map(|p| p.step).collect())),
        ("operator", col_str(&vec!["hessian"; n])),
        ("rank", col_i32(pairs.iter().map(|p| p.rank).collect())),
        ("eigenvalue", col_f64(pairs.iter().map(|p| p.ev).collect())),
        ("residual", col_f64(vec![1e-9; n])),
        ("hvps", col_i64(vec![40; n])),
        ("iterations", col_i64(vec![8; n])),
        (
            "converged",
            col_bool(pairs.iter().map(|p| p.converged).collect()),
        ),
    ];
    if with_resolvable {
        cols.push((
            "resolvable",
            col_bool(pairs.iter().map(|p| p.resolvable).collect()),
        ));
        cols.push(("rounding_level", col_f64(vec![1e-14; n])));
    }
    write_batch(&values, cols, false).unwrap();
    let vs: Vec<Vec<f32>> = pairs
        .iter()
        .map(|p| p.v.iter().map(|&x| x as f32).collect())
        .collect();
    write_batch(
        &vectors,
        vec![
            (index, col_i64(pairs.iter().map(|p| p.step).collect())),
            ("operator", col_str(&vec!["hessian"; n])),
            ("rank", col_i32(pairs.iter().map(|p| p.rank).collect())),
            ("vector", list_f32(&vs)),
        ],
        true,
    )
    .unwrap();
    (values, vectors)
}

/// A checkpoint holding `grad` and `update` (f64), for the alignment.
fn write_checkpoint(path: &Path, grad: &[f64]) {
    let bytes: Vec<u8> = grad.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = || {
        safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![grad.len()], &bytes)
            .unwrap()
    };
    let data =
        safetensors::tensor::serialize(vec![("grad", view()), ("update", view())], None).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Runs the stage into `dir/<name>/` and returns that directory.
fn run_metrics(
    dir: &Path,
    name: &str,
    files: &(PathBuf, PathBuf),
    p: &MetricsParams,
    checkpoints: &[(u64, PathBuf)],
) -> (PathBuf, serde_json::Value) {
    run_metrics_with(dir, name, files, p, checkpoints, None, None)
}

/// [`run_metrics`] with the hessian stage's `eigen/gradient.arrow`, and
/// with a null model: its (values, vectors) files and its tolerance.
fn run_metrics_with(
    dir: &Path,
    name: &str,
    files: &(PathBuf, PathBuf),
    p: &MetricsParams,
    checkpoints: &[(u64, PathBuf)],
    gradients: Option<&Path>,
    null: Option<(&(PathBuf, PathBuf), f64)>,
) -> (PathBuf, serde_json::Value) {
    let arch = arch();
    let opt = OptimizerParams::new(OptName::Sgd, 0.1);
    let schedule = Default::default();
    let input = MetricsInputs {
        values: &files.0,
        vectors: &files.1,
        arch: &arch,
        optimizer: &opt,
        schedule: &schedule,
        steps: 100,
        checkpoints: checkpoints.iter().map(|(s, p)| (*s, p.as_path())).collect(),
        gradients,
        null: null.map(|(f, tol)| NullInputs {
            values: &f.0,
            vectors: &f.1,
            tol,
        }),
    };
    let out = dir.join(name);
    let meta = run(p, &input, &out).unwrap_or_else(|e| panic!("{e}"));
    (out, meta)
}

/// One Arrow file's rows as maps column → value (JSON; null as Null).
fn rows(path: &Path) -> Vec<BTreeMap<String, serde_json::Value>> {
    use serde_json::json;
    let t = Table::open(path).unwrap();
    let schema = t.batch.schema();
    let mut out = vec![BTreeMap::new(); t.len()];
    for (f, c) in schema.fields().iter().zip(t.batch.columns()) {
        let name = f.name().as_str();
        for (i, row) in out.iter_mut().enumerate() {
            let v = if c.is_null(i) {
                serde_json::Value::Null
            } else {
                match f.data_type() {
                    arrow_schema::DataType::Int64 => json!(t.i64(name).unwrap().value(i)),
                    arrow_schema::DataType::Int32 => json!(t.i32(name).unwrap().value(i)),
                    arrow_schema::DataType::Float64 => json!(t.f64(name).unwrap().value(i)),
                    arrow_schema::DataType::Boolean => json!(t.bool(name).unwrap().value(i)),
                    arrow_schema::DataType::Utf8 => json!(t.str(name).unwrap().value(i)),
                    _ => serde_json::Value::Null,
                }
            };
            row.insert(name.to_string(), v);
        }
    }
    out
}

fn b(r: &BTreeMap<String, serde_json::Value>, c: &str) -> bool {
    r[c].as_bool()
        .unwrap_or_else(|| panic!("{c} is not a bool: {r:?}"))
}
fn i(r: &BTreeMap<String, serde_json::Value>, c: &str) -> i64 {
    r[c].as_i64()
        .unwrap_or_else(|| panic!("{c} is not an integer: {r:?}"))
}

/// Steps 0, 10, 20, 30 with k = 3 and λ = 10, 5, 1 (well separated): at
/// step 10 rank 2 is unresolvable, at step 20 nothing converged.
fn scenario_a(rng: &mut ChaCha8Rng) -> Vec<Pair> {
    let p = arch().num_params();
    let mut basis = orthonormal(rng, p, 3);
    let mut pairs = Vec::new();
    for step in [0i64, 10, 20, 30] {
        basis = nudge(rng, &basis, 0.02);
        for (rank, v) in basis.iter().enumerate() {
            pairs.push(Pair {
                step,
                rank: rank as i32,
                ev: [10.0, 5.0, 1.0][rank],
                converged: step != 20,
                resolvable: !(step == 10 && rank == 2),
                v: v.clone(),
            });
        }
    }
    pairs
}

fn pair_trusted(step: i64, rank: i64) -> bool {
    step != 20 && !(step == 10 && rank == 2)
}

#[test]
fn every_row_carries_the_trust_of_its_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let files = write_inputs(dir.path(), &scenario_a(&mut rng), true);
    let p = arch().num_params();
    let grad: Vec<f64> = (0..p).map(|j| j as f64 - 7.0).collect();
    let checkpoints: Vec<(u64, PathBuf)> = [0u64, 10, 20, 30]
        .iter()
        .map(|s| {
            let path = dir.path().join(format!("ck{s}.safetensors"));
            write_checkpoint(&path, &grad);
            (*s, path)
        })
        .collect();
    let (out, meta) = run_metrics(
        dir.path(),
        "out",
        &files,
        &MetricsParams::default(),
        &checkpoints,
    );
    assert_eq!(meta["pairs"], 12);
    assert_eq!(meta["trusted_pairs"], 8, "{meta}");

    // One-pair files: the pair's own trust, every row of it.
    for file in ["localization", "layer_mass", "neuron_mass", "spectrum"] {
        let rs = rows(&out.join(format!("metrics/{file}.arrow")));
        assert!(!rs.is_empty());
        for r in &rs {
            assert_eq!(
                b(r, "trusted"),
                pair_trusted(i(r, "step"), i(r, "rank")),
                "{file}: {r:?}"
            );
        }
    }
    // Steps: trusted when every top-k pair is (0 and 30).
    let step_trusted = |s: i64| s == 0 || s == 30;
    let al = rows(&out.join("metrics/alignment.arrow"));
    assert_eq!(al.len(), 4);
    for r in &al {
        assert_eq!(b(r, "trusted"), step_trusted(i(r, "step")), "{r:?}");
        assert!(r["grad_alignment_train"].as_f64().unwrap() > 0.0);
        // Without the hessian stage's gradients there is no analysis-set
        // alignment to report.
        assert!(r["grad_alignment"].is_null() || r["grad_alignment"].as_f64().unwrap().is_nan());
    }
    // Overlap: both ends, all k pairs at each.
    let ov = rows(&out.join("metrics/overlap.arrow"));
    assert_eq!(ov.len(), 6);
    for r in &ov {
        let (tw, t) = (i(r, "t_w"), i(r, "t"));
        assert_eq!(
            b(r, "trusted"),
            step_trusted(tw) && step_trusted(t),
            "{r:?}"
        );
    }
    // Displacement: the pair at t_w and its matched pair at t.
    let dp = rows(&out.join("metrics/displacement.arrow"));
    assert_eq!(dp.len(), 6 * 3);
    for r in &dp {
        assert_eq!(
            i(r, "matched_rank"),
            i(r, "rank"),
            "the nudge keeps the order"
        );
        let want = pair_trusted(i(r, "t_w"), i(r, "rank"))
            && pair_trusted(i(r, "t"), i(r, "matched_rank"));
        assert_eq!(b(r, "trusted"), want, "{r:?}");
    }
    // (0, 10) rank 0 is trusted, rank 2 is not (its end at 10 is unresolvable).
    let at = |tw: i64, t: i64, rank: i64| {
        dp.iter()
            .find(|r| i(r, "t_w") == tw && i(r, "t") == t && i(r, "rank") == rank)
            .unwrap()
    };
    assert!(b(at(0, 10, 0), "trusted"));
    assert!(!b(at(0, 10, 2), "trusted"));
    assert!(b(at(0, 30, 2), "trusted"));
}

#[test]
fn the_consecutive_chain_skips_untrusted_steps_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let files = write_inputs(dir.path(), &scenario_a(&mut rng), true);
    let consecutive = |out: &Path, file: &str| -> Vec<(i64, i64, bool)> {
        let mut c: Vec<(i64, i64, bool)> = rows(&out.join(format!("metrics/{file}.arrow")))
            .iter()
            .filter(|r| b(r, "consecutive"))
            .map(|r| (i(r, "t_w"), i(r, "t"), b(r, "trusted")))
            .collect();
        c.dedup();
        c
    };
    let (strict, _) = run_metrics(dir.path(), "strict", &files, &MetricsParams::default(), &[]);
    // Steps 10 and 20 are untrusted: the chain links 0 to 30.
    assert_eq!(consecutive(&strict, "overlap"), vec![(0, 30, true)]);
    assert_eq!(consecutive(&strict, "displacement"), vec![(0, 30, true)]);
    let all = MetricsParams {
        include_untrusted: true,
        ..MetricsParams::default()
    };
    let (loose, _) = run_metrics(dir.path(), "loose", &files, &all, &[]);
    assert_eq!(
        consecutive(&loose, "overlap"),
        vec![(0, 10, false), (10, 20, false), (20, 30, false)]
    );
    // Displacement rows of (0, 10): ranks 0 and 1 trusted, rank 2 not.
    let d: Vec<(i64, i64, bool)> = rows(&loose.join("metrics/displacement.arrow"))
        .iter()
        .filter(|r| b(r, "consecutive") && i(r, "t_w") == 0)
        .map(|r| (i(r, "t"), i(r, "rank"), b(r, "trusted")))
        .collect();
    assert_eq!(d, vec![(10, 0, true), (10, 1, true), (10, 2, false)]);
    // The values themselves do not depend on the switch.
    for file in ["overlap", "displacement", "localization", "spectrum"] {
        let (a, b_) = (
            rows(&strict.join(format!("metrics/{file}.arrow"))),
            rows(&loose.join(format!("metrics/{file}.arrow"))),
        );
        assert_eq!(a.len(), b_.len());
        for (x, y) in a.iter().zip(&b_) {
            for (k, v) in x {
                if k != "consecutive" {
                    assert_eq!(v, &y[k], "{file}.{k}");
                }
            }
        }
    }
    // The default keeps the key: include_untrusted is not serialized.
    assert_eq!(
        serde_json::to_string(&MetricsParams::default()).unwrap(),
        r#"{"degeneracy_threshold":0.001}"#
    );
    let old: MetricsParams = serde_json::from_str(r#"{"degeneracy_threshold":0.001}"#).unwrap();
    assert_eq!(old, MetricsParams::default());
    assert_eq!(
        serde_json::to_string(&all).unwrap(),
        r#"{"degeneracy_threshold":0.001,"include_untrusted":true}"#
    );
}

/// Rank 0 at step 0 turns into rank 1 at step 10 (and back), and rank 1 at
/// step 10 is unresolvable: rank 0's row is untrusted through its match,
/// rank 1's is trusted although rank 1 at t is not.
#[test]
fn displacement_is_trusted_through_its_matched_pair() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let p = arch().num_params();
    let base = orthonormal(&mut rng, p, 3);
    let mut moved = nudge(&mut rng, &base, 0.02);
    moved.swap(0, 1);
    let mut pairs = Vec::new();
    for (step, vs) in [(0i64, &base), (10, &moved)] {
        for (rank, v) in vs.iter().enumerate() {
            pairs.push(Pair {
                step,
                rank: rank as i32,
                ev: [10.0, 5.0, 1.0][rank],
                converged: true,
                resolvable: !(step == 10 && rank == 1),
                v: v.clone(),
            });
        }
    }
    let files = write_inputs(dir.path(), &pairs, true);
    let (out, _) = run_metrics(dir.path(), "out", &files, &MetricsParams::default(), &[]);
    let dp: Vec<(i64, i64, bool)> = rows(&out.join("metrics/displacement.arrow"))
        .iter()
        .map(|r| (i(r, "rank"), i(r, "matched_rank"), b(r, "trusted")))
        .collect();
    assert_eq!(dp, vec![(0, 1, false), (1, 0, true), (2, 2, true)]);
    let ov = rows(&out.join("metrics/overlap.arrow"));
    assert_eq!(ov.len(), 1);
    assert!(!b(&ov[0], "trusted"));
}

/// k = 4 and a most-negative pair: the last top rank's gap (and the
/// innermost negative one's) is unknown, not false, and per-vector
/// displacement is reported for isolated vectors only.
#[test]
fn degeneracy_of_the_last_rank_is_unknown_and_displacement_needs_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let p = arch().num_params();
    let base = orthonormal(&mut rng, p, 5);
    let moved = nudge(&mut rng, &base, 0.02);
    // Step 0: λ_1 ≈ λ_2 (rel gap 5e-4); step 10: well separated.
    let evs = |step: i64| -> [f64; 4] {
        if step == 0 {
            [10.0, 9.995, 5.0, 1.0]
        } else {
            [10.0, 6.0, 3.0, 1.0]
        }
    };
    let mut pairs = Vec::new();
    for (step, vs) in [(0i64, &base), (10, &moved)] {
        for rank in 0..4 {
            pairs.push(Pair {
                step,
                rank,
                ev: evs(step)[rank as usize],
                converged: true,
                resolvable: true,
                v: vs[rank as usize].clone(),
            });
        }
        pairs.push(Pair {
            step,
            rank: -1,
            ev: -2.0,
            converged: true,
            resolvable: true,
            v: vs[4].clone(),
        });
    }
    let files = write_inputs(dir.path(), &pairs, true);
    let (out, _) = run_metrics(dir.path(), "out", &files, &MetricsParams::default(), &[]);
    let sp = rows(&out.join("metrics/spectrum.arrow"));
    let get = |step: i64, rank: i64| {
        sp.iter()
            .find(|r| i(r, "step") == step && i(r, "rank") == rank)
            .unwrap()
    };
    for step in [0, 10] {
        // The last top rank and the only negative one: unknown.
        for rank in [3, -1] {
            assert!(
                get(step, rank)["rel_gap"].is_null(),
                "{:?}",
                get(step, rank)
            );
            assert!(get(step, rank)["degenerate"].is_null());
        }
    }
    assert!(b(get(0, 0), "degenerate"));
    assert!((get(0, 0)["rel_gap"].as_f64().unwrap() - 5e-4).abs() < 1e-12);
    assert!(!b(get(0, 1), "degenerate"));
    assert!(!b(get(0, 2), "degenerate"));
    assert!((get(10, 2)["rel_gap"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    for rank in 0..3 {
        assert!(!b(get(10, rank), "degenerate"));
    }
    // Isolated at 0: rank 2 only (0 and 1 form a cluster, 3 is unknown);
    // at 10: ranks 0, 1, 2. Displacement needs both ends isolated.
    let dp = rows(&out.join("metrics/displacement.arrow"));
    assert_eq!(dp.len(), 4, "the top ranks only");
    for r in &dp {
        let rank = i(r, "rank");
        assert_eq!(i(r, "matched_rank"), rank);
        let reported = rank == 2;
        for c in ["matched_displacement", "same_rank_displacement", "per_step"] {
            assert_eq!(!r[c].is_null(), reported, "{c} of rank {rank}: {r:?}");
        }
        assert!(b(r, "trusted"), "degeneracy is not distrust");
    }
    // The subspace measures cover every rank: q over k = 4 vectors, near 1.
    let ov = rows(&out.join("metrics/overlap.arrow"));
    assert_eq!(ov.len(), 1);
    let q = ov[0]["subspace_overlap"].as_f64().unwrap();
    assert!(q > 0.95 && q <= 1.0 + 1e-9, "q = {q}");
    // The negative pair is analysed for localization like any other.
    let loc = rows(&out.join("metrics/localization.arrow"));
    assert_eq!(loc.iter().filter(|r| i(r, "rank") == -1).count(), 2);
}

/// A store written before `resolvable` existed: every converged pair is
/// trusted; a threshold out of range is refused.
#[test]
fn without_resolvable_converged_pairs_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut pairs = scenario_a(&mut rng);
    for p in &mut pairs {
        p.converged = true;
    }
    let files = write_inputs(dir.path(), &pairs, false);
    let (out, meta) = run_metrics(dir.path(), "out", &files, &MetricsParams::default(), &[]);
    assert_eq!(meta["trusted_pairs"], 12);
    for file in ["localization", "spectrum", "overlap", "displacement"] {
        for r in rows(&out.join(format!("metrics/{file}.arrow"))) {
            assert!(b(&r, "trusted"), "{file}: {r:?}");
        }
    }
    let bad = MetricsParams {
        degeneracy_threshold: 1.0,
        ..MetricsParams::default()
    };
    let arch = arch();
    let opt = OptimizerParams::new(OptName::Sgd, 0.1);
    let schedule = Default::default();
    let input = MetricsInputs {
        values: &files.0,
        vectors: &files.1,
        arch: &arch,
        optimizer: &opt,
        schedule: &schedule,
        steps: 100,
        checkpoints: vec![],
        gradients: None,
        null: None,
    };
    let e = run(&bad, &input, &dir.path().join("bad")).unwrap_err();
    assert!(e.to_string().contains("degeneracy_threshold"), "{e}");
}

/// The preconditioned operator's stored vectors are parameter-space
/// directions, unit but not orthogonal. The same span at two checkpoints must
/// overlap by exactly 1 (Grassmann distance 0), which only holds once the
/// bases are orthonormalized: the raw cross-Gram would give
/// ‖WᵀW‖²_F / k = 1 + c² for two unit vectors at cosine c.
#[test]
fn non_orthogonal_preconditioned_bases_are_compared_as_subspaces() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let p = arch().num_params();
    let e = orthonormal(&mut rng, p, 2);
    // w1 = e0, w2 = 0.6 e0 + 0.8 e1 (unit, cosine 0.6); at step 10 the same
    // span with the vectors in the other order and w2' = 0.8 e0 − 0.6 e1.
    let at = |a: f64, b: f64| -> Vec<f64> {
        e[0].iter().zip(&e[1]).map(|(x, y)| a * x + b * y).collect()
    };
    let rows_in = [
        (0i64, 0i32, at(1.0, 0.0)),
        (0, 1, at(0.6, 0.8)),
        (10, 0, at(0.8, -0.6)),
        (10, 1, at(1.0, 0.0)),
    ];
    let n = rows_in.len();
    let values = dir.path().join("values.arrow");
    let vectors = dir.path().join("vectors.arrow");
    write_batch(
        &values,
        vec![
            ("step", col_i64(rows_in.iter().map(|r| r.0).collect())),
            ("operator", col_str(&vec!["preconditioned"; n])),
            ("rank", col_i32(rows_in.iter().map(|r| r.1).collect())),
            ("eigenvalue", col_f64(vec![2.0, 1.0, 2.0, 1.0])),
            ("residual", col_f64(vec![1e-9; n])),
            ("hvps", col_i64(vec![40; n])),
            ("iterations", col_i64(vec![8; n])),
            ("converged", col_bool(vec![true; n])),
        ],
        false,
    )
    .unwrap();
    let vs: Vec<Vec<f32>> = rows_in
        .iter()
        .map(|r| r.2.iter().map(|&x| x as f32).collect())
        .collect();
    write_batch(
        &vectors,
        vec![
            ("step", col_i64(rows_in.iter().map(|r| r.0).collect())),
            ("operator", col_str(&vec!["preconditioned"; n])),
            ("rank", col_i32(rows_in.iter().map(|r| r.1).collect())),
            ("vector", list_f32(&vs)),
        ],
        true,
    )
    .unwrap();
    let (out, _) = run_metrics(
        dir.path(),
        "m",
        &(values, vectors),
        &MetricsParams::default(),
        &[],
    );
    let ov = rows(&out.join("metrics/overlap.arrow"));
    assert_eq!(ov.len(), 1);
    let q = ov[0]["subspace_overlap"].as_f64().unwrap();
    let g = ov[0]["grassmann"].as_f64().unwrap();
    assert!((q - 1.0).abs() < 1e-6, "subspace overlap {q}");
    assert!(g < 1e-3, "Grassmann distance {g}");
}

/// `grad_alignment` is taken on the analysis-set gradient the hessian stage
/// wrote, `grad_alignment_train` on the checkpoint's train-split gradient:
/// closed forms ‖V_kᵀg‖²/‖g‖² for gradients built from the basis.
#[test]
fn gradient_alignment_uses_the_analysis_set_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let p = arch().num_params();
    // Four orthonormal directions: three eigenvectors and one outside.
    let basis = orthonormal(&mut rng, p, 4);
    let mut pairs = Vec::new();
    for step in [0i64, 10] {
        for rank in 0..3 {
            pairs.push(Pair {
                step,
                rank,
                ev: [10.0, 5.0, 1.0][rank as usize],
                converged: true,
                resolvable: true,
                v: basis[rank as usize].clone(),
            });
        }
    }
    let files = write_inputs(dir.path(), &pairs, true);
    let combo = |c: [f64; 4]| -> Vec<f64> {
        (0..p)
            .map(|j| (0..4).map(|b| c[b] * basis[b][j]).sum())
            .collect()
    };
    // Analysis set: 3·v0 + 4·u (alignment 9/25); train split: 2·v1 + u
    // (alignment 4/5), at both steps.
    let analysis = combo([3.0, 0.0, 0.0, 4.0]);
    let train = combo([0.0, 2.0, 0.0, 1.0]);
    let grad_path = dir.path().join("gradient.arrow");
    write_batch(
        &grad_path,
        vec![
            ("step", col_i64(vec![0, 10])),
            ("loss", col_f64(vec![1.0, 0.5])),
            ("grad_norm", col_f64(vec![5.0, 5.0])),
            (
                "gradient",
                stages::arrow_io::list_f64(&[analysis.clone(), analysis.clone()]),
            ),
        ],
        true,
    )
    .unwrap();
    let checkpoints: Vec<(u64, PathBuf)> = [0u64, 10]
        .iter()
        .map(|s| {
            let path = dir.path().join(format!("ck{s}.safetensors"));
            write_checkpoint(&path, &train);
            (*s, path)
        })
        .collect();
    let (out, _) = run_metrics_with(
        dir.path(),
        "out",
        &files,
        &MetricsParams::default(),
        &checkpoints,
        Some(&grad_path),
        None,
    );
    let al = rows(&out.join("metrics/alignment.arrow"));
    assert_eq!(al.len(), 2);
    for r in &al {
        let f = |c: &str| r[c].as_f64().unwrap();
        // The stored vectors are f32: agreement to a few f32 roundings.
        assert!((f("grad_alignment") - 9.0 / 25.0).abs() < 1e-6, "{r:?}");
        assert!(
            (f("grad_alignment_train") - 4.0 / 5.0).abs() < 1e-6,
            "{r:?}"
        );
        assert!((f("update_alignment") - 4.0 / 5.0).abs() < 1e-6, "{r:?}");
        assert!(b(r, "trusted"));
    }
}

/// The null model's pairs are trusted by the null's own `values.arrow`, as
/// a run's are: an unconverged or unresolvable replica's rows are flagged in
/// `null_localization.arrow`, left out of `null_band.arrow` (which counts
/// them and carries the null's tolerance), and flag its overlaps. The band
/// is recomputed here from the stored vectors of the trusted replicas.
#[test]
fn the_null_band_is_made_of_trusted_replicas_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let files = write_inputs(dir.path(), &scenario_a(&mut rng), true);
    let p = arch().num_params();
    // 4 replicas, k = 3: replica 2 not converged, replica 3's rank 2 below
    // the rounding level.
    let trusted = |r: i64, rank: i32| r != 2 && !(r == 3 && rank == 2);
    let null = null_replicas(&mut rng, 4, 3, |r, rank| (r != 2, !(r == 3 && rank == 2)));
    let nf = write_inputs_as(&dir.path().join("null"), &null, true, "replica");
    let (out, meta) = run_metrics_with(
        dir.path(),
        "m",
        &files,
        &MetricsParams::default(),
        &[],
        None,
        Some((&nf, 1e-2)),
    );
    assert_eq!(meta["null_replicas"], 4, "{meta}");
    assert_eq!(meta["null_trusted_replicas"], 2, "{meta}");

    let loc = rows(&out.join("metrics/null_localization.arrow"));
    assert_eq!(loc.len(), 12);
    for r in &loc {
        assert_eq!(
            b(r, "trusted"),
            trusted(i(r, "replica"), i(r, "rank") as i32),
            "{r:?}"
        );
    }
    let mass = rows(&out.join("metrics/null_layer_mass.arrow"));
    assert!(mass
        .iter()
        .all(|r| b(r, "trusted") == trusted(i(r, "replica"), i(r, "rank") as i32)));

    // P·IPR of each stored (f32) vector, computed here.
    let p_ipr = |v: &[f64]| {
        let v: Vec<f64> = v.iter().map(|&x| x as f32 as f64).collect();
        let n2: f64 = v.iter().map(|x| x * x).sum();
        p as f64 * v.iter().map(|x| x.powi(4)).sum::<f64>() / (n2 * n2)
    };
    let band = rows(&out.join("metrics/null_band.arrow"));
    assert_eq!(band.len(), 3);
    for row in &band {
        let rank = i(row, "rank") as i32;
        let vals: Vec<f64> = null
            .iter()
            .filter(|q| q.rank == rank && trusted(q.step, rank))
            .map(|q| p_ipr(&q.v))
            .collect();
        assert_eq!(i(row, "replicas"), vals.len() as i64, "{row:?}");
        assert_eq!(i(row, "untrusted"), 4 - vals.len() as i64, "{row:?}");
        assert_eq!(row["tol"], 1e-2);
        let f = |c: &str| row[c].as_f64().unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!(close(f("p_ipr_min"), min), "{row:?} {vals:?}");
        assert!(close(f("p_ipr_max"), max), "{row:?} {vals:?}");
        assert!(close(f("p_ipr_mean"), mean), "{row:?} {vals:?}");
    }
    // Rank 2 has 2 trusted replicas (0 and 1), ranks 0 and 1 have 3.
    assert_eq!(
        band.iter().map(|r| i(r, "replicas")).collect::<Vec<_>>(),
        [3, 3, 2]
    );

    // An overlap row is trusted when both replicas' top-k all are: only 0×1.
    let ov = rows(&out.join("metrics/null_overlap.arrow"));
    assert_eq!(ov.len(), 6);
    for r in &ov {
        let pair = (i(r, "replica_a"), i(r, "replica_b"));
        assert_eq!(b(r, "trusted"), pair == (0, 1), "{r:?}");
    }
}

/// A rank no replica resolved has no band: NaN, not ±∞.
#[test]
fn a_rank_without_a_trusted_null_replica_has_no_band() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let files = write_inputs(dir.path(), &scenario_a(&mut rng), true);
    let null = null_replicas(&mut rng, 3, 2, |_, rank| (true, rank == 0));
    let nf = write_inputs_as(&dir.path().join("null"), &null, true, "replica");
    let (out, _) = run_metrics_with(
        dir.path(),
        "m",
        &files,
        &MetricsParams::default(),
        &[],
        None,
        Some((&nf, 1e-4)),
    );
    let band = out.join("metrics/null_band.arrow");
    let t = Table::open(&band).unwrap();
    let (rank, min, max) = (
        t.i32("rank").unwrap(),
        t.f64("p_ipr_min").unwrap(),
        t.f64("p_ipr_max").unwrap(),
    );
    let n = t.i64("replicas").unwrap();
    for j in 0..t.len() {
        if rank.value(j) == 1 {
            assert!(min.value(j).is_nan() && max.value(j).is_nan());
            assert_eq!(n.value(j), 0);
        } else {
            assert!(min.value(j).is_finite() && max.value(j).is_finite());
            assert_eq!(n.value(j), 3);
        }
    }
}

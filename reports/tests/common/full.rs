//! One synthetic run with every file the whole report reads (the overview,
//! the dynamics and the structure figures, the index), small enough that a
//! 20-setting × 3-seed report renders in seconds.

use super::{run_input, wiggle, write_ipc};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const CHECKPOINTS: [i64; 10] = [0, 1, 3, 10, 30, 100, 250, 500, 750, 1000];
const K: i32 = 3;
/// widths [4, 6, 3]: layers.0.weight [6, 4], bias 6, layers.1.weight [3, 6], bias 3.
const P: usize = 51;

/// name, offset, numel, shape, layer, kind
type Block = (&'static str, i64, i64, Vec<i64>, i64, &'static str);

/// Writes run `run_id` under `dir`. `shape` in (0, 2] varies the curves
/// between settings; `adaptive` adds the preconditioned operator.
#[allow(clippy::too_many_arguments)]
pub fn full_run(
    dir: &Path,
    run_id: &str,
    optimizer: &str,
    label: &str,
    lr: f64,
    seed: u64,
    shape: f64,
    adaptive: bool,
) -> reports::RunInput {
    let root = dir.join(run_id);
    let mut files = BTreeMap::new();
    let mut put = |name: &str, df: DataFrame| {
        let path = root.join(name);
        write_ipc(&path, df);
        files.insert(name.to_string(), path);
    };
    let noise = |i: usize, amp: f64| 1.0 + amp * wiggle(seed, i);
    let lt = |t: i64| (t as f64 + 1.0).ln();

    // train.arrow
    let steps: Vec<i64> = (0..=100).map(|i| i * 10).collect();
    let loss: Vec<f64> = steps
        .iter()
        .enumerate()
        .map(|(i, &t)| (2.3 * (-(t as f64) * shape / 200.0).exp() + 1e-3) * noise(i, 0.05))
        .collect();
    let acc: Vec<f64> = loss
        .iter()
        .map(|l| (1.0 - l / 2.5).clamp(0.0, 1.0))
        .collect();
    let n = steps.len();
    put(
        "train.arrow",
        df!(
            "step" => &steps,
            "train_loss" => &loss,
            "train_acc" => &acc,
            "test_loss" => loss.iter().map(|l| l * 1.2 + 0.05).collect::<Vec<f64>>(),
            "test_acc" => acc.iter().map(|a| a * 0.95).collect::<Vec<f64>>(),
            "grad_norm" => vec![1.0; n],
            "lr" => vec![lr; n],
            "diverged" => vec![false; n],
        )
        .unwrap(),
    );

    // eigen/values.arrow and metrics/spectrum.arrow
    let ops: &[&str] = if adaptive {
        &["hessian", "preconditioned"]
    } else {
        &["hessian"]
    };
    let (mut st, mut op, mut rk, mut ev, mut thr) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let rise = 1.0 - (-(t as f64) / (150.0 * shape)).exp();
        for &o in ops {
            for r in 0..K {
                let top = (0.5 + 20.0 * shape * rise) * noise(i + 7 * r as usize, 0.08);
                st.push(t);
                op.push(o);
                rk.push(r);
                ev.push(top / (1.0 + r as f64) * if o == "hessian" { 1.0 } else { 40.0 });
                thr.push(match (o, adaptive) {
                    ("hessian", false) => 2.0 / lr,
                    ("preconditioned", _) => 38.0 / lr,
                    _ => f64::NAN,
                });
            }
        }
    }
    let m = st.len();
    put(
        "eigen/values.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "eigenvalue" => &ev,
            "converged" => vec![true; m], "resolvable" => vec![true; m])
        .unwrap(),
    );
    put(
        "metrics/spectrum.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "eigenvalue" => &ev,
            "threshold" => &thr, "trusted" => vec![true; m])
        .unwrap(),
    );

    // overlap and displacement: every pair t_w < t
    let (mut tw, mut tt, mut q, mut cons) = (vec![], vec![], vec![], vec![]);
    let (mut dtw, mut dt, mut dr, mut dd, mut dps, mut dcons) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, &a) in CHECKPOINTS.iter().enumerate() {
        for (j, &b) in CHECKPOINTS.iter().enumerate().skip(i + 1) {
            let age = (lt(b) - lt(a)) / (1.0 + 0.3 * lt(a));
            let v = ((0.05 + 0.95 * (-shape * age).exp()) * noise(i + j, 0.03)).clamp(0.0, 1.0);
            tw.push(a);
            tt.push(b);
            q.push(v);
            cons.push(j == i + 1);
            for r in 0..K {
                let d = (1.0 - v * (1.0 - 0.1 * r as f64)).clamp(0.0, 1.0);
                dtw.push(a);
                dt.push(b);
                dr.push(r);
                dd.push(d);
                dps.push(d / (b - a) as f64);
                dcons.push(j == i + 1);
            }
        }
    }
    let m = tw.len();
    put(
        "metrics/overlap.arrow",
        df!("operator" => vec!["hessian"; m], "t_w" => &tw, "t" => &tt,
            "subspace_overlap" => &q, "consecutive" => &cons, "trusted" => vec![true; m])
        .unwrap(),
    );
    let m = dtw.len();
    put(
        "metrics/displacement.arrow",
        df!("operator" => vec!["hessian"; m], "t_w" => &dtw, "t" => &dt, "rank" => &dr,
            "matched_rank" => &dr, "matched_displacement" => &dd,
            "same_rank_displacement" => &dd, "consecutive" => &dcons, "per_step" => &dps,
            "trusted" => vec![true; m])
        .unwrap(),
    );

    // localization, null band, layer mass
    let (mut st, mut op, mut rk, mut pipr) = (vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        for &o in ops {
            for r in 0..K {
                let grow = 1.0 - (-(t as f64) / (100.0 * shape)).exp();
                st.push(t);
                op.push(o);
                rk.push(r);
                pipr.push((3.5 + 20.0 * shape * grow / (1.0 + r as f64)) * noise(i, 0.1));
            }
        }
    }
    let m = st.len();
    let frac50: Vec<f64> = pipr.iter().map(|p| 0.5 / p).collect();
    put(
        "metrics/localization.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "p_ipr" => &pipr,
            "frac50" => &frac50,
            "frac90" => frac50.iter().map(|f| (2.0 * f).min(1.0)).collect::<Vec<f64>>(),
            "trusted" => vec![true; m])
        .unwrap(),
    );
    // The architecture null: 20 replicas' P·IPR per rank, around 3.5.
    let (mut rep, mut rrk, mut rp) = (vec![], vec![], vec![]);
    for replica in 0..20i64 {
        for r in 0..K {
            rep.push(replica);
            rrk.push(r);
            rp.push(3.5 + 1.5 * wiggle(99 + r as u64, replica as usize));
        }
    }
    let m = rep.len();
    put(
        "metrics/null_localization.arrow",
        df!("replica" => &rep, "operator" => vec!["hessian"; m], "rank" => &rrk,
            "p_ipr" => &rp,
            "frac50" => rp.iter().map(|p| 0.5 / p).collect::<Vec<f64>>(),
            "frac90" => rp.iter().map(|p| 0.9 / p).collect::<Vec<f64>>())
        .unwrap(),
    );
    // Its v₁'s first-layer weight mass per replica, and the matched D
    // between every pair of replicas.
    let reps: Vec<i64> = (0..20).collect();
    put(
        "metrics/null_layer_mass.arrow",
        df!("replica" => &reps, "operator" => vec!["hessian"; 20], "rank" => vec![0i32; 20],
            "layer" => vec![0i64; 20], "block" => vec!["weight"; 20],
            "mass" => reps.iter().map(|r| 0.4 + 0.1 * wiggle(7, *r as usize)).collect::<Vec<f64>>())
        .unwrap(),
    );
    let (mut ra, mut rb, mut rd) = (vec![], vec![], vec![]);
    for a in 0..20i64 {
        for b in a + 1..20 {
            ra.push(a);
            rb.push(b);
            rd.push(0.9 + 0.05 * wiggle(11, (20 * a + b) as usize));
        }
    }
    let m = ra.len();
    put(
        "metrics/null_overlap.arrow",
        df!("replica_a" => &ra, "replica_b" => &rb, "subspace_overlap" => vec![0.01; m],
            "matched_displacement" => &rd)
        .unwrap(),
    );
    put(
        "metrics/null_band.arrow",
        df!("rank" => [0i32, 1, 2], "p_ipr_min" => [2.5, 2.6, 2.7],
            "p_ipr_mean" => [3.2, 3.3, 3.4], "p_ipr_max" => [4.5, 4.6, 4.7])
        .unwrap(),
    );
    let (mut st, mut op, mut rk, mut la, mut bl, mut ma) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for &t in &CHECKPOINTS {
        let first = 0.2 + 0.6 * (t as f64 / 1000.0) * (shape / 2.0);
        for (layer, total) in [(0i64, first), (1, 1.0 - first)] {
            for (block, frac) in [("weight", 0.8), ("bias", 0.2), ("all", 1.0)] {
                st.push(t);
                op.push("hessian");
                rk.push(0i32);
                la.push(layer);
                bl.push(block);
                ma.push(total * frac);
            }
        }
    }
    put(
        "metrics/layer_mass.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "layer" => &la,
            "block" => &bl, "mass" => &ma)
        .unwrap(),
    );

    // v₁'s mass per input column (4 inputs: the first weight block is
    // 6×4), and data.arrow, whose column 3 is near-constant with one large
    // standardized value.
    let (mut st, mut op, mut rk, mut cl, mut ma, mut tr) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for &t in &CHECKPOINTS {
        let first = 0.2 + 0.6 * (t as f64 / 1000.0) * (shape / 2.0);
        for c in 0..4i64 {
            st.push(t);
            op.push("hessian");
            rk.push(0i32);
            cl.push(c);
            ma.push(first * 0.8 * [0.4, 0.3, 0.2, 0.1][c as usize]);
            tr.push(true);
        }
    }
    put(
        "metrics/input_mass.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "column" => &cl,
            "mass" => &ma, "trusted" => &tr)
        .unwrap(),
    );
    let rows = 20usize;
    let ds = stages::dataset::Dataset {
        dim: 4,
        classes: 3,
        features: (0..rows * 4)
            .map(|i| {
                let (r, c) = (i / 4, i % 4);
                if c == 3 {
                    if r == 0 {
                        4.2
                    } else {
                        -0.2
                    }
                } else {
                    wiggle(seed + c as u64, r) as f32 as f64
                }
            } as f32)
            .collect(),
        labels: (0..rows as i64).map(|i| i % 3).collect(),
        is_train: (0..rows).map(|i| i < 16).collect(),
    };
    let data = root.join("data.arrow");
    stages::dataset::write(&ds, &data).unwrap();

    // eigen/density.arrow (fig 11): a bulk near 0 narrowing with training
    // and a bump at the top eigenvalue, on each step's own grid.
    let (mut st, mut op, mut la, mut de) = (vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let rise = 1.0 - (-(t as f64) / (150.0 * shape)).exp();
        let top = (0.5 + 20.0 * shape * rise) * noise(i, 0.08);
        let width = 0.05 / (1.0 + t as f64 / 100.0);
        let (lo, hi) = (-0.2, top * 1.1);
        for g in 0..200 {
            let l = lo + (hi - lo) * g as f64 / 199.0;
            let bulk = (-0.5 * (l / width).powi(2)).exp() / (width * 2.5066);
            let bump = (-0.5 * ((l - top) / (0.02 * top)).powi(2)).exp() / (0.02 * top * 2.5066);
            st.push(t);
            op.push("hessian");
            la.push(l);
            de.push(0.98 * bulk + 0.02 * bump);
        }
    }
    put(
        "eigen/density.arrow",
        df!("step" => &st, "operator" => &op, "lambda" => &la, "density" => &de).unwrap(),
    );

    // eigen/layer_values.arrow (fig 12): each layer's block λ₁ below the
    // whole H's (interlacing), the first layer's share rising with training;
    // the first checkpoint's output-layer pair unresolved (a hollow marker).
    let (mut st, mut op, mut la, mut rk, mut ev, mut res) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let rise = 1.0 - (-(t as f64) / (150.0 * shape)).exp();
        let top = (0.5 + 20.0 * shape * rise) * noise(i, 0.08);
        for (layer, share) in [(0i64, 0.3 + 0.6 * rise), (1, 0.5 - 0.3 * rise)] {
            for r in 0..3i32 {
                st.push(t);
                op.push("hessian");
                la.push(layer);
                rk.push(r);
                ev.push(top * share / (1.0 + r as f64) * noise(i + 3 * layer as usize, 0.05));
                res.push(!(i == 0 && layer == 1));
            }
        }
    }
    let m = st.len();
    put(
        "eigen/layer_values.arrow",
        df!("step" => &st, "operator" => &op, "layer" => &la, "rank" => &rk,
            "eigenvalue" => &ev, "converged" => vec![true; m], "resolvable" => &res)
        .unwrap(),
    );

    // alignment
    let grad: Vec<f64> = CHECKPOINTS
        .iter()
        .enumerate()
        .map(|(i, &t)| (0.2 + 0.6 * (1.0 - (-(t as f64) / (100.0 * shape)).exp())) * noise(i, 0.1))
        .collect();
    put(
        "metrics/alignment.arrow",
        df!("step" => &CHECKPOINTS, "grad_alignment" => &grad,
            "update_alignment" => grad.iter().map(|g| g * 0.7).collect::<Vec<f64>>(),
            "trusted" => vec![true; CHECKPOINTS.len()])
        .unwrap(),
    );

    // param_map and eigen/vectors (fig 8)
    let blocks: [Block; 4] = [
        ("layers.0.weight", 0, 24, vec![6, 4], 0, "weight"),
        ("layers.0.bias", 24, 6, vec![6], 0, "bias"),
        ("layers.1.weight", 30, 18, vec![3, 6], 1, "weight"),
        ("layers.1.bias", 48, 3, vec![3], 1, "bias"),
    ];
    let shapes: Vec<Series> = blocks
        .iter()
        .map(|b| Series::new("".into(), b.3.clone()))
        .collect();
    put(
        "param_map.arrow",
        df!(
            "name" => blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
            "offset" => blocks.iter().map(|b| b.1).collect::<Vec<_>>(),
            "numel" => blocks.iter().map(|b| b.2).collect::<Vec<_>>(),
            "shape" => shapes,
            "layer" => blocks.iter().map(|b| b.4).collect::<Vec<_>>(),
            "kind" => blocks.iter().map(|b| b.5).collect::<Vec<_>>(),
        )
        .unwrap(),
    );
    let (mut st, mut op, mut rk, mut vs) = (vec![], vec![], vec![], vec![]);
    for &t in &[0i64, 500, 1000] {
        for r in 0..2i32 {
            let v: Vec<f32> = (0..P)
                .map(|i| {
                    let peak = if i % 7 == (r as usize + seed as usize) {
                        5.0
                    } else {
                        0.0
                    };
                    (0.05 + peak + 0.5 * wiggle(seed + t as u64, i).abs()) as f32
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            st.push(t);
            op.push("hessian");
            rk.push(r);
            vs.push(Series::new(
                "".into(),
                v.iter().map(|x| x / norm).collect::<Vec<f32>>(),
            ));
        }
    }
    put(
        "eigen/vectors.arrow",
        df!("step" => &st, "operator" => &op, "rank" => &rk, "vector" => vs).unwrap(),
    );

    files.insert("data.arrow".to_string(), data);
    let mut r = run_input(run_id, optimizer, label, &root, files);
    r.params = serde_json::json!({ "optimizer": optimizer, "lr": lr, "seed": seed });
    r
}

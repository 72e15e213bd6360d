//! Renders the structure figures (fig 4–8) from small synthetic Arrow inputs
//! (2 optimizers × 2 seeds) and checks every PNG and SVG, and that a broken
//! input is a ReportError naming its file.
#![allow(dead_code)]

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::prelude::*;
use reports::{ReportError, ReportInput, RunInput};

const CHECKPOINTS: [i64; 11] = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
const K: i32 = 4;
/// widths [4, 6, 3]: layers.0.weight [6, 4], bias 6, layers.1.weight [3, 6], bias 3.
/// name, offset, numel, shape (0: none), layer, kind
type Block = (&'static str, i64, i64, [i64; 2], i64, &'static str);
const BLOCKS: [Block; 4] = [
    ("layers.0.weight", 0, 24, [6, 4], 0, "weight"),
    ("layers.0.bias", 24, 6, [6, 0], 0, "bias"),
    ("layers.1.weight", 30, 18, [3, 6], 1, "weight"),
    ("layers.1.bias", 48, 3, [3, 0], 1, "bias"),
];
const P: usize = 51;

const NAMES: [&str; 8] = [
    "fig4_aging",
    "fig4_aging_loss",
    "fig4_aging_collapse",
    "fig5_overlap_heatmaps",
    "fig6_ipr",
    "fig6_ipr_loss",
    "fig7_layer_mass",
    "fig8_localization_map",
];

fn wiggle(seed: u64, i: usize) -> f64 {
    (((i as f64 + 1.0) * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453).fract()
}

/// The one place a RunInput is built (its fields may grow).
fn run_input(run_id: &str, optimizer: &str, label: &str, root: &Path) -> RunInput {
    let mut files = BTreeMap::new();
    for name in [
        "train.arrow",
        "param_map.arrow",
        "eigen/values.arrow",
        "eigen/vectors.arrow",
        "metrics/localization.arrow",
        "metrics/overlap.arrow",
        "metrics/displacement.arrow",
        "metrics/layer_mass.arrow",
        "metrics/null_band.arrow",
    ] {
        files.insert(name.to_string(), root.join(name));
    }
    common::run_input(run_id, optimizer, label, root, files)
}

/// Writes the structure files of one run; `decay` sets how fast overlaps fall.
fn synth_run(dir: &Path, optimizer: &str, label: &str, seed: u64, decay: f64) -> RunInput {
    let run_id = format!("{optimizer}-s{seed}");
    let root = dir.join(&run_id);
    let lt = |t: i64| (t as f64 + 1.0).ln();

    // overlap and displacement: every pair t_w < t
    let (mut tw, mut tt, mut q, mut cons) = (vec![], vec![], vec![], vec![]);
    let (mut dtw, mut dt, mut dr, mut dd) = (vec![], vec![], vec![], vec![]);
    for (i, &a) in CHECKPOINTS.iter().enumerate() {
        for (j, &b) in CHECKPOINTS.iter().enumerate().skip(i + 1) {
            let age = (lt(b) - lt(a)) / (1.0 + 0.3 * lt(a));
            let v = (0.05 + 0.95 * (-decay * age).exp()) * (1.0 + 0.03 * wiggle(seed, i + j));
            tw.push(a);
            tt.push(b);
            q.push(v.clamp(0.0, 1.0));
            cons.push(j == i + 1);
            for r in 0..K {
                dtw.push(a);
                dt.push(b);
                dr.push(r);
                dd.push((1.0 - v * (1.0 - 0.1 * r as f64)).clamp(0.0, 1.0));
            }
        }
    }
    // train.arrow: the loss the loss-axis variants place points at, logged
    // every 10 steps (so checkpoints 1, 2 and 5 are interpolated).
    let steps: Vec<i64> = (0..=100).map(|i| i * 10).collect();
    write_ipc(
        &root.join("train.arrow"),
        df!("step" => &steps,
            "train_loss" => steps.iter().map(|&t| 2.3 * (-(t as f64) * decay / 300.0).exp() + 1e-3).collect::<Vec<f64>>())
        .unwrap(),
    );
    let m = tw.len();
    write_ipc(
        &root.join("metrics/overlap.arrow"),
        df!("operator" => vec!["hessian"; m], "t_w" => &tw, "t" => &tt,
            "subspace_overlap" => &q, "consecutive" => &cons)
        .unwrap(),
    );
    let m = dtw.len();
    write_ipc(
        &root.join("metrics/displacement.arrow"),
        df!("operator" => vec!["hessian"; m], "t_w" => &dtw, "t" => &dt, "rank" => &dr,
            "matched_rank" => &dr, "same_rank_displacement" => &dd)
        .unwrap(),
    );

    // localization: both operators, K ranks
    let (mut st, mut op, mut rk, mut pipr) = (vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        for operator in ["hessian", "preconditioned"] {
            for r in 0..K {
                st.push(t);
                op.push(operator);
                rk.push(r);
                let grow = 1.0 - (-(t as f64) / (100.0 * decay)).exp();
                pipr.push(
                    (3.5 + 20.0 * decay * grow / (1.0 + r as f64)) * (1.0 + 0.1 * wiggle(seed, i)),
                );
            }
        }
    }
    write_ipc(
        &root.join("metrics/localization.arrow"),
        df!("step" => &st, "operator" => &op, "rank" => &rk, "p_ipr" => &pipr).unwrap(),
    );
    write_ipc(
        &root.join("metrics/null_band.arrow"),
        df!("rank" => [0i32, 1, 2, 3], "p_ipr_min" => [2.5, 2.6, 2.7, 2.8],
            "p_ipr_mean" => [3.2, 3.3, 3.4, 3.5], "p_ipr_max" => [4.5, 4.6, 4.7, 4.8])
        .unwrap(),
    );

    // layer_mass: 2 layers, blocks weight/bias/all
    let (mut st, mut op, mut rk, mut la, mut bl, mut ma) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for &t in &CHECKPOINTS {
        let first = 0.2 + 0.6 * (t as f64 / 1000.0) * decay.min(1.0);
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
    write_ipc(
        &root.join("metrics/layer_mass.arrow"),
        df!("step" => &st, "operator" => &op, "rank" => &rk, "layer" => &la,
            "block" => &bl, "mass" => &ma)
        .unwrap(),
    );

    // param_map
    let shapes: Vec<Series> = BLOCKS
        .iter()
        .map(|b| {
            let s: Vec<i64> = b.3.iter().copied().filter(|&d| d > 0).collect();
            Series::new("".into(), s)
        })
        .collect();
    write_ipc(
        &root.join("param_map.arrow"),
        df!(
            "name" => BLOCKS.iter().map(|b| b.0).collect::<Vec<_>>(),
            "offset" => BLOCKS.iter().map(|b| b.1).collect::<Vec<_>>(),
            "numel" => BLOCKS.iter().map(|b| b.2).collect::<Vec<_>>(),
            "shape" => shapes,
            "layer" => BLOCKS.iter().map(|b| b.4).collect::<Vec<_>>(),
            "kind" => BLOCKS.iter().map(|b| b.5).collect::<Vec<_>>(),
        )
        .unwrap(),
    );

    // eigen/vectors: rank 0 and 1 at three steps, localized on a few weights
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
    write_ipc(
        &root.join("eigen/vectors.arrow"),
        df!("step" => &st, "operator" => &op, "rank" => &rk, "vector" => vs).unwrap(),
    );

    run_input(&run_id, optimizer, label, &root)
}

fn two_by_two(dir: &Path) -> ReportInput {
    let mut runs = Vec::new();
    for (opt, label, decay) in [
        ("sgd", "SGD (lr=0.1)", 0.3),
        ("adam", "Adam (lr=1e-3)", 1.2),
    ] {
        for seed in 0..2 {
            runs.push(synth_run(dir, opt, label, seed, decay));
        }
    }
    ReportInput {
        experiment: "synthetic".into(),
        runs,
    }
}

fn check_outputs(out: &Path, files: &[String]) {
    let expected: Vec<String> = NAMES
        .iter()
        .flat_map(|n| [format!("{n}.png"), format!("{n}.svg"), format!("{n}.pdf")])
        .collect();
    assert_eq!(files, expected.as_slice());
    for name in NAMES {
        let png = out.join(format!("{name}.png"));
        let img = image::open(&png).expect("PNG decodes").to_rgb8();
        assert!(img.width() >= 2000, "{name}: width {}", img.width());
        let luma: Vec<f64> = img
            .pixels()
            .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
            .collect();
        let mean = luma.iter().sum::<f64>() / luma.len() as f64;
        let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
        assert!(var > 300.0, "{name}: pixel variance {var} (blank figure?)");
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        let texts = svg_text_elements(&svg);
        assert!(texts >= 10, "{name}: only {texts} <text> elements");
    }
}

#[test]
fn renders_structure_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_by_two(&tmp.path().join("runs"));
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::figure_groups::structure(&input, &out).expect("render");
    keep_copy(&out, &files, "structure");
    check_outputs(&out, &files);

    let svg = |n: &str| std::fs::read_to_string(out.join(format!("{n}.svg"))).unwrap();
    let aging = svg("fig4_aging");
    // fig 4: one panel per setting, its seeds averaged (no single run shown).
    assert!(aging.contains("t_w = 0") && aging.contains("\nSGD (lr=0.1)\n"));
    assert!(aging.contains("line: mean over 2 seeds · band: min–max"));
    assert!(!aging.contains("(run "));
    // The collapse variant: x is the scaled lag, each panel says its μ and
    // regime, and waiting time 0 (no scaled lag) is gone.
    let collapse = svg("fig4_aging_collapse");
    assert!(collapse.contains("scaled lag τ / t_w^μ"));
    assert!(collapse.contains("μ = ") && !collapse.contains("\nt_w = 0\n"));
    assert!(
        [
            "simple aging",
            "subaging",
            "superaging",
            "no aging",
            "no collapse",
            "inconclusive",
            "no fit"
        ]
        .iter()
        .any(|r| collapse.contains(r)),
        "no regime in fig4_aging_collapse"
    );
    // fig 6: the layer-mass-matched null is named.
    assert!(svg("fig6_ipr").contains("layer-mass-matched null"));
    // fig 5: the seeds' mean maps, said so; no single run named.
    let heat = svg("fig5_overlap_heatmaps");
    assert!(heat.contains("each map the mean over 2 seeds") && !heat.contains("(run "));
    // The loss-axis variants: the x axis is the train loss, and the legend
    // says how x is made.
    for n in ["fig4_aging_loss", "fig6_ipr_loss"] {
        let v = svg(n);
        assert!(
            v.contains("train loss") && v.contains("geometric mean over seeds"),
            "{n}"
        );
    }
    let ipr = svg("fig6_ipr");
    for needle in ["random vector (3)", "null model (min–max)", "rank 3"] {
        assert!(ipr.contains(needle), "fig6 lacks {needle:?}");
    }
    let mass = svg("fig7_layer_mass");
    assert!(mass.contains("layer 0 (input)") && mass.contains("layer 1 (output)"));
    assert!(svg("fig8_localization_map").contains("step 1000"));
    // The palette colours of both optimizers are drawn in fig 6.
    let img = image::open(out.join("fig6_ipr.png")).unwrap().to_rgb8();
    for rgb in [[0x00, 0x72, 0xB2], [0xD5, 0x5E, 0x00]] {
        let n = img.pixels().filter(|p| p.0 == rgb).count();
        assert!(n > 1000, "{rgb:?}: only {n} pixels");
    }
}

/// Gives every run's metrics files a `trusted` column, untrusted from step
/// `from` on (both ends for two-time rows; `i64::MAX`: all trusted).
fn trust_from(input: &ReportInput, from: i64) {
    for r in &input.runs {
        for (name, cols) in [
            ("metrics/localization.arrow", &["step"][..]),
            ("metrics/overlap.arrow", &["t_w", "t"][..]),
            ("metrics/displacement.arrow", &["t_w", "t"][..]),
            ("metrics/layer_mass.arrow", &["step"][..]),
        ] {
            set_trust(r.file(name).unwrap(), "trusted", cols, from);
        }
    }
}

#[test]
fn untrusted_pairs_are_marked_in_structure_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_by_two(&tmp.path().join("runs"));
    trust_from(&input, 500);
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::figure_groups::structure(&input, &out).expect("render");
    keep_copy(&out, &files, "structure_untrusted");
    check_outputs(&out, &files);
    let svg = |n: &str| std::fs::read_to_string(out.join(format!("{n}.svg"))).unwrap();
    for n in ["fig4_aging", "fig6_ipr", "fig7_layer_mass"] {
        let s = svg(n);
        assert!(s.contains(UNTRUSTED_NOTE), "{n} lacks the note");
        assert!(hollow_circles(&s) > 1, "{n}: no hollow points");
    }
    // fig 6: 2 groups × 4 ranks × steps 500 and 1000, and the legend's sample.
    assert_eq!(hollow_circles(&svg("fig6_ipr")), 2 * 4 * 2 + 1);
    // fig 7: 2 panels × steps 500 and 1000, and the legend's sample.
    assert_eq!(hollow_circles(&svg("fig7_layer_mass")), 2 * 2 + 1);
    assert!(svg("fig8_localization_map").contains("untrusted pair"));
    // fig 5: the heading says what a slashed cell is.
    assert!(svg("fig5_overlap_heatmaps").contains("slashed: untrusted pair"));

    // All trusted: no note, no hollow point, and the very figures of a
    // store without the columns.
    let plain = two_by_two(&tmp.path().join("plain_runs"));
    let trusted = two_by_two(&tmp.path().join("trusted_runs"));
    trust_from(&trusted, i64::MAX);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (inp, dir) in [(&plain, &a), (&trusted, &b)] {
        std::fs::create_dir_all(dir).unwrap();
        reports::figure_groups::structure(inp, dir).expect("render");
    }
    for n in NAMES {
        let read = |d: &Path| std::fs::read_to_string(d.join(format!("{n}.svg"))).unwrap();
        let (x, y) = (read(&a), read(&b));
        assert!(
            !y.contains(UNTRUSTED_NOTE) && !y.contains("untrusted pair"),
            "{n}"
        );
        assert_eq!(hollow_circles(&y), 0, "{n}");
        assert_eq!(x, y, "{n}: an all-true trusted column changes the figure");
    }
}

#[test]
fn single_run_without_null_band() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = synth_run(&tmp.path().join("runs"), "sgd", "SGD", 0, 0.5);
    run.files.remove("metrics/null_band.arrow");
    let input = ReportInput {
        experiment: "one".into(),
        runs: vec![run],
    };
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::figure_groups::structure(&input, &out).expect("render");
    check_outputs(&out, &files);
}

#[test]
fn broken_inputs_name_their_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();

    // Not Arrow.
    let run = synth_run(&dir, "adam", "Adam", 0, 1.0);
    let overlap = run.file("metrics/overlap.arrow").unwrap().to_path_buf();
    std::fs::write(&overlap, b"not arrow").unwrap();
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run],
    };
    let err = reports::figure_groups::structure(&input, &out).expect_err("garbage");
    assert!(matches!(err, ReportError::Unreadable { .. }), "{err:?}");
    assert_eq!(err.file(), Some(overlap.as_path()));

    // A missing column.
    let run = synth_run(&dir, "sgd", "SGD", 1, 1.0);
    let lm = run.file("metrics/layer_mass.arrow").unwrap().to_path_buf();
    let df = IpcReader::new(File::open(&lm).unwrap()).finish().unwrap();
    write_ipc(&lm, df.drop("mass").unwrap());
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run],
    };
    let err = reports::figure_groups::structure(&input, &out).expect_err("no mass");
    assert!(matches!(&err, ReportError::MissingColumn { column, .. } if column == "mass"));
    assert_eq!(err.file(), Some(lm.as_path()));

    // A file the run does not have.
    let mut run = synth_run(&dir, "sgd", "SGD", 2, 1.0);
    run.files.remove("param_map.arrow");
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run],
    };
    let err = reports::figure_groups::structure(&input, &out).expect_err("no param map");
    assert!(err.to_string().contains("param_map.arrow"), "{err}");

    // A vector too short for the first layer.
    let run = synth_run(&dir, "sgd", "SGD", 3, 1.0);
    let pm = run.file("param_map.arrow").unwrap().to_path_buf();
    let vp = run.file("eigen/vectors.arrow").unwrap().to_path_buf();
    let short = Series::new("".into(), vec![0.5f32; 4]);
    write_ipc(
        &vp,
        df!("step" => [0i64], "operator" => ["hessian"], "rank" => [0i32], "vector" => [short])
            .unwrap(),
    );
    let _ = pm;
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run],
    };
    let err = reports::figure_groups::structure(&input, &out).expect_err("short vector");
    assert_eq!(err.file(), Some(vp.as_path()), "{err}");
}

/// Renders from the real outputs under /tmp/figdata (run by hand:
/// `cargo test -p reports --test fig_structure -- --ignored`); figures go to
/// $REPORTS_KEEP_FIGURES/real or /tmp/fig_structure_real.
#[test]
#[ignore]
fn renders_real_runs() {
    let base = Path::new("/tmp/figdata/out/figs/runs");
    let mut runs = Vec::new();
    for (id, opt, label) in [
        ("sgd-lr1-s0", "sgd", "SGD (lr=1)"),
        ("sgd-lr1-s1", "sgd", "SGD (lr=1)"),
        ("adam-lr3e-3-s0", "adam", "Adam (lr=3e-3)"),
        ("adam-lr3e-3-s1", "adam", "Adam (lr=3e-3)"),
    ] {
        runs.push(run_input(id, opt, label, &base.join(id)));
    }
    let input = ReportInput {
        experiment: "figs".into(),
        runs,
    };
    let out = std::env::var_os("REPORTS_KEEP_FIGURES")
        .map(|d| PathBuf::from(d).join("real"))
        .unwrap_or_else(|| PathBuf::from("/tmp/fig_structure_real"));
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::figure_groups::structure(&input, &out).expect("render");
    check_outputs(&out, &files);
}

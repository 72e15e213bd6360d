//! Renders the training-dynamics figures (fig1, fig2, fig3, fig9) from small
//! synthetic Arrow inputs (SGD and Adam, two seeds each) and checks every PNG
//! and SVG, and that a missing column is an error naming the file.
//!
//! The module is crate-private, so it is compiled here from its source along
//! with the crate-private modules it uses (the public types come from the
//! library).

mod common;
use common::*;

use std::path::{Path, PathBuf};

use polars::prelude::*;
use reports::{ReportError, ReportInput, RunInput};

const CHECKPOINTS: [i64; 12] = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];
const K: i32 = 4;

struct Synth {
    optimizer: &'static str,
    label: &'static str,
    lr: f64,
    lambda: f64,
    adaptive: bool,
    diverge_at: Option<i64>,
}

fn synth_run(dir: &Path, s: &Synth, seed: u64, drop: Option<(&str, &str)>) -> RunInput {
    let run_id = format!("{}-s{seed}", s.optimizer);
    let root = dir.join(&run_id);
    let noise = |i: usize, amp: f64| 1.0 + amp * wiggle(seed, i);
    let mut files = std::collections::BTreeMap::new();
    let mut put = |name: &str, mut df: DataFrame| {
        if let Some((file, column)) = drop {
            if file == name {
                df = df.drop(column).unwrap();
            }
        }
        let path = root.join(name);
        write_ipc(&path, df);
        files.insert(name.to_string(), path);
    };

    let steps: Vec<i64> = (0..=200).map(|i| i * 10).collect();
    let nan_from = s.diverge_at.unwrap_or(i64::MAX);
    let loss: Vec<f64> = steps
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t >= nan_from {
                f64::NAN
            } else {
                (2.3 * (-(t as f64) / 300.0).exp() + 0.04) * noise(i, 0.05)
            }
        })
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
            "test_loss" => loss.iter().map(|l| l * 1.2).collect::<Vec<f64>>(),
            "test_acc" => acc.iter().map(|a| a * 0.95).collect::<Vec<f64>>(),
            "grad_norm" => vec![1.0; n],
            "lr" => vec![s.lr; n],
            "diverged" => steps.iter().map(|&t| t >= nan_from).collect::<Vec<bool>>(),
        )
        .unwrap(),
    );

    let (mut step, mut op, mut rank, mut ev, mut thr) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let rise = 1.0 - (-(t as f64) / 150.0).exp();
        let ops: &[&str] = if s.adaptive {
            &["hessian", "preconditioned"]
        } else {
            &["hessian"]
        };
        for &operator in ops {
            for r in 0..=K {
                let top = (0.5 + s.lambda * rise) * noise(i + 7 * r as usize, 0.08);
                step.push(t);
                op.push(operator);
                rank.push(r);
                ev.push(top / (1.0 + r as f64) * if operator == "hessian" { 1.0 } else { 40.0 });
                thr.push(match (operator, s.adaptive) {
                    ("hessian", false) => 2.0 / s.lr,
                    ("preconditioned", _) => 38.0 / s.lr,
                    _ => f64::NAN,
                });
            }
        }
    }
    let m = step.len();
    put(
        "metrics/spectrum.arrow",
        df!(
            "step" => &step,
            "operator" => &op,
            "rank" => &rank,
            "eigenvalue" => &ev,
            "rel_gap" => vec![0.1; m],
            "degenerate" => vec![false; m],
            "threshold" => &thr,
            "over_threshold" => vec![false; m],
        )
        .unwrap(),
    );

    let (mut tw, mut tt, mut rk, mut md, mut cons, mut ps, mut op) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for lag in [1usize, 2] {
        for i in 0..CHECKPOINTS.len() - lag {
            for r in 0..=K {
                let dt = (CHECKPOINTS[i + lag] - CHECKPOINTS[i]) as f64;
                let v = (0.02 * dt.sqrt() * noise(i + r as usize, 0.3)).min(1.0);
                tw.push(CHECKPOINTS[i]);
                tt.push(CHECKPOINTS[i + lag]);
                rk.push(r);
                md.push(v);
                ps.push(v / dt);
                cons.push(lag == 1);
                op.push("hessian");
            }
        }
    }
    put(
        "metrics/displacement.arrow",
        df!(
            "operator" => &op,
            "t_w" => &tw,
            "t" => &tt,
            "rank" => &rk,
            "matched_rank" => &rk,
            "matched_displacement" => &md,
            "same_rank_displacement" => &md,
            "consecutive" => &cons,
            "per_step" => &ps,
        )
        .unwrap(),
    );

    let grad: Vec<f64> = CHECKPOINTS
        .iter()
        .enumerate()
        .map(|(i, &t)| (0.2 + 0.6 * (1.0 - (-(t as f64) / 100.0).exp())) * noise(i, 0.1))
        .collect();
    put(
        "metrics/alignment.arrow",
        df!(
            "step" => &CHECKPOINTS,
            "grad_alignment" => &grad,
            "update_alignment" => grad.iter().map(|g| g * 0.7).collect::<Vec<f64>>(),
        )
        .unwrap(),
    );

    run_input(&run_id, s.optimizer, s.label, &root, files)
}

fn sgd() -> Synth {
    Synth {
        optimizer: "sgd",
        label: "SGD (lr=0.1)",
        lr: 0.1,
        lambda: 18.0,
        adaptive: false,
        diverge_at: None,
    }
}

fn adam() -> Synth {
    Synth {
        optimizer: "adam",
        label: "Adam (lr=1e-3)",
        lr: 1e-3,
        lambda: 60.0,
        adaptive: true,
        diverge_at: None,
    }
}

fn input(dir: &Path, kinds: &[Synth], drop: Option<(&str, &str)>) -> ReportInput {
    let mut runs = Vec::new();
    for s in kinds {
        for seed in 0..2 {
            runs.push(synth_run(dir, s, seed, drop));
        }
    }
    ReportInput {
        experiment: "synthetic".into(),
        runs,
    }
}

const NAMES: [&str; 5] = [
    "fig1_loss_accuracy",
    "fig2_eigenvalues",
    "fig3_displacement",
    "fig3_displacement_loss",
    "fig9_alignment",
];

fn check_png(path: &Path) {
    let img = image::open(path).expect("PNG decodes").to_rgb8();
    assert!(
        img.width() >= 2000,
        "{}: width {}",
        path.display(),
        img.width()
    );
    let luma: Vec<f64> = img
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(var > 300.0, "{}: pixel variance {var}", path.display());
}

fn check_svg(path: &Path) {
    use quick_xml::events::Event;
    let svg = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&svg);
    let (mut root, mut texts) = (None, 0);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
                if name == "text" {
                    texts += 1;
                }
                root.get_or_insert(name);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed XML: {e}", path.display()),
        }
    }
    assert_eq!(root.as_deref(), Some("svg"));
    assert!(texts > 10, "{}: only {texts} text elements", path.display());
}

fn render_and_check(input: &ReportInput, out: &Path) -> String {
    std::fs::create_dir_all(out).unwrap();
    let files = reports::figure_groups::dynamics(input, out).expect("render");
    let expected: Vec<String> = NAMES
        .iter()
        .flat_map(|n| [format!("{n}.png"), format!("{n}.svg"), format!("{n}.pdf")])
        .collect();
    assert_eq!(files, expected);
    for f in &files {
        let p = out.join(f);
        assert!(p.is_file(), "{f} written");
        if f.ends_with(".png") {
            check_png(&p);
        } else if f.ends_with(".svg") {
            check_svg(&p);
        } else {
            assert!(std::fs::read(&p).unwrap().starts_with(b"%PDF-"), "{f}");
        }
    }
    std::fs::read_to_string(out.join("fig2_eigenvalues.svg")).unwrap()
}

#[test]
fn renders_all_dynamics_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(&tmp.path().join("runs"), &[sgd(), adam()], None);
    let svg = render_and_check(&inp, &tmp.path().join("report"));
    // Both thresholds are labelled: 2/η (SGD) and 38/η (Adam).
    assert!(svg.contains("2/η"), "2/η label");
    assert!(svg.contains("38/η"), "38/η label");
    assert!(!svg.contains("no adaptive optimizer"));
}

#[test]
fn sgd_only_has_no_adaptive_note_and_diverged_label() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sgd();
    s.diverge_at = Some(1500);
    let inp = input(&tmp.path().join("runs"), &[s], None);
    let svg = render_and_check(&inp, &tmp.path().join("report"));
    assert!(svg.contains("no adaptive optimizer"));
    assert!(svg.contains("(diverged)"));
}

#[test]
fn missing_inputs_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    // A missing column.
    let inp = input(
        &tmp.path().join("a"),
        &[sgd()],
        Some(("metrics/displacement.arrow", "per_step")),
    );
    let err = reports::figure_groups::dynamics(&inp, &out).unwrap_err();
    assert!(matches!(err, ReportError::MissingColumn { .. }), "{err}");
    assert!(err.to_string().contains("displacement.arrow"), "{err}");
    assert!(err.to_string().contains("per_step"), "{err}");
    // A file the run does not list.
    let mut inp = input(&tmp.path().join("b"), &[adam()], None);
    inp.runs[1].files.remove("metrics/alignment.arrow");
    let err = reports::figure_groups::dynamics(&inp, &out).unwrap_err();
    assert!(err.to_string().contains("alignment.arrow"), "{err}");
    // A file that is not Arrow.
    let mut inp = input(&tmp.path().join("c"), &[adam()], None);
    let bad = tmp.path().join("garbage.arrow");
    std::fs::write(&bad, b"not arrow").unwrap();
    inp.runs[0]
        .files
        .insert("metrics/spectrum.arrow".into(), bad);
    let err = reports::figure_groups::dynamics(&inp, &out).unwrap_err();
    assert!(matches!(err, ReportError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("garbage.arrow"), "{err}");
    // No runs.
    let empty = ReportInput {
        experiment: "e".into(),
        runs: vec![],
    };
    assert!(reports::figure_groups::dynamics(&empty, &out).is_err());
}

/// Gives a run the metrics stage's `trusted` columns, untrusted from step
/// `from` on (both ends for displacement; `i64::MAX`: all trusted).
fn trust_from(run: &RunInput, from: i64) {
    for (name, cols) in [
        ("metrics/spectrum.arrow", &["step"][..]),
        ("metrics/displacement.arrow", &["t_w", "t"][..]),
        ("metrics/alignment.arrow", &["step"][..]),
    ] {
        set_trust(run.file(name).unwrap(), "trusted", cols, from);
    }
}

#[test]
fn untrusted_points_are_hollow_and_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(&tmp.path().join("runs"), &[sgd()], None);
    // Seed 0 untrusted from 1000, seed 1 from 500: the mean at 500 is over
    // one untrusted input, so it is hollow too.
    trust_from(&inp.runs[0], 1000);
    trust_from(&inp.runs[1], 500);
    let out = tmp.path().join("report");
    render_and_check(&inp, &out);
    let names: Vec<String> = NAMES
        .iter()
        .flat_map(|n| [format!("{n}.png"), format!("{n}.svg"), format!("{n}.pdf")])
        .collect();
    keep_copy(&out, &names, "untrusted");
    let svg = |n: &str| std::fs::read_to_string(out.join(format!("{n}.svg"))).unwrap();
    // fig2: steps 500, 1000, 2000 of each of the K + 1 ranks, and the
    // legend's sample.
    let fig2 = svg("fig2_eigenvalues");
    assert!(fig2.contains(UNTRUSTED_NOTE), "fig2 lacks the note");
    assert_eq!(hollow_circles(&fig2), 3 * (K as usize + 1) + 1, "fig2");
    // fig3: consecutive pairs from t_w = 200 (its t = 500 is untrusted),
    // 500 and 1000, in both panels.
    let fig3 = svg("fig3_displacement");
    assert!(fig3.contains(UNTRUSTED_NOTE), "fig3 lacks the note");
    assert_eq!(hollow_circles(&fig3), 3 * 2 + 1, "fig3");
    // fig9: steps 500, 1000, 2000, in both panels.
    let fig9 = svg("fig9_alignment");
    assert!(fig9.contains(UNTRUSTED_NOTE), "fig9 lacks the note");
    assert_eq!(hollow_circles(&fig9), 3 * 2 + 1, "fig9");
    // fig1 is the training log: no pairs, no note.
    let fig1 = svg("fig1_loss_accuracy");
    assert!(!fig1.contains(UNTRUSTED_NOTE));
    assert_eq!(hollow_circles(&fig1), 0);
}

#[test]
fn fully_trusted_runs_draw_no_hollow_points() {
    let tmp = tempfile::tempdir().unwrap();
    // With every row trusted, and without the columns (older stores), the
    // figures are the same: filled markers and no note.
    let inp = input(&tmp.path().join("a"), &[sgd(), adam()], None);
    for r in &inp.runs {
        trust_from(r, i64::MAX);
    }
    let with = tmp.path().join("with");
    render_and_check(&inp, &with);
    let inp = input(&tmp.path().join("b"), &[sgd(), adam()], None);
    let without = tmp.path().join("without");
    render_and_check(&inp, &without);
    for n in NAMES {
        let a = std::fs::read_to_string(with.join(format!("{n}.svg"))).unwrap();
        let b = std::fs::read_to_string(without.join(format!("{n}.svg"))).unwrap();
        assert!(!a.contains(UNTRUSTED_NOTE), "{n}: note on a trusted run");
        assert_eq!(hollow_circles(&a), 0, "{n}: hollow points on a trusted run");
        assert_eq!(a, b, "{n}: an all-true trusted column changes the figure");
    }
}

/// Renders from the real outputs under FIG_DYNAMICS_RUNS (a `runs/` folder)
/// into FIG_DYNAMICS_OUT, for a person to look at.
#[test]
#[ignore]
fn render_real_runs() {
    let runs = PathBuf::from(std::env::var("FIG_DYNAMICS_RUNS").expect("FIG_DYNAMICS_RUNS"));
    let out = PathBuf::from(std::env::var("FIG_DYNAMICS_OUT").expect("FIG_DYNAMICS_OUT"));
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    ids.sort();
    let runs = ids
        .iter()
        .map(|id| {
            // "adam-lr3e-3-s0" → optimizer "adam", label "adam (lr=3e-3)"
            let stem = id.rsplit_once("-s").map_or(id.as_str(), |(a, _)| a);
            let (optimizer, lr) = stem.split_once("-lr").unwrap_or((stem, "?"));
            let label = format!("{optimizer} (lr={lr})");
            let optimizer = optimizer.to_string();
            let root = runs.join(id);
            let files = [
                "train.arrow",
                "metrics/spectrum.arrow",
                "metrics/displacement.arrow",
                "metrics/alignment.arrow",
            ]
            .iter()
            .map(|n| (n.to_string(), root.join(n)))
            .collect();
            run_input(id, &optimizer, &label, &root, files)
        })
        .collect();
    let inp = ReportInput {
        experiment: "real".into(),
        runs,
    };
    render_and_check(&inp, &out);
}

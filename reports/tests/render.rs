//! Renders the optimizer-comparison figure from small synthetic Arrow inputs
//! (2 optimizers × 2 seeds) and checks the PNG and SVG it writes, and that
//! bad inputs give a ReportError naming the file instead of a panic.

mod common;
use common::*;

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use polars_io::prelude::*;
use reports::{render_report, ReportError, ReportInput, RunInput};

const CHECKPOINTS: [i64; 12] = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];

struct Synth {
    optimizer: &'static str,
    label: &'static str,
    lr: f64,
    /// sharpness plateau, P·IPR plateau, consecutive overlap plateau
    lambda: f64,
    pipr: f64,
    q: f64,
    /// loss decay time
    loss_tau: f64,
    /// NaN losses from this step on, and diverged = true.
    diverge_at: Option<i64>,
}

/// Writes the four files of one run and returns its RunInput.
fn synth_run(dir: &Path, s: &Synth, seed: u64, drop_train_column: Option<&str>) -> RunInput {
    let run_id = format!("{}-s{seed}", s.optimizer);
    let root = dir.join(&run_id);
    let noise = |i: usize, amp: f64| 1.0 + amp * wiggle(seed, i);

    // train.arrow: every 10 steps
    let steps: Vec<i64> = (0..=200).map(|i| i * 10).collect();
    let nan_from = s.diverge_at.unwrap_or(i64::MAX);
    let train_loss: Vec<f64> = steps
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t >= nan_from {
                f64::NAN
            } else {
                (2.3 * (-(t as f64) / s.loss_tau).exp() + 0.04) * noise(i, 0.05)
            }
        })
        .collect();
    let test_loss: Vec<f64> = train_loss
        .iter()
        .zip(&steps)
        .map(|(l, &t)| l + 0.15 * (1.0 - (-(t as f64) / 600.0).exp()))
        .collect();
    let n = steps.len();
    let mut train = df!(
        "step" => &steps,
        "train_loss" => &train_loss,
        "train_acc" => vec![0.5; n],
        "test_loss" => &test_loss,
        "test_acc" => vec![0.5; n],
        "grad_norm" => vec![1.0; n],
        "lr" => vec![s.lr; n],
        "diverged" => steps.iter().map(|&t| t >= nan_from).collect::<Vec<bool>>(),
    )
    .unwrap();
    if let Some(c) = drop_train_column {
        train = train.drop(c).unwrap();
    }
    write_ipc(&root.join("train.arrow"), train);

    // eigen/values.arrow: 4 ranks × 2 operators per checkpoint
    let (mut step, mut op, mut rank, mut ev) = (vec![], vec![], vec![], vec![]);
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let rise = 1.0 - (-(t as f64) / 150.0).exp();
        for operator in ["hessian", "preconditioned"] {
            for r in 0..4i32 {
                step.push(t);
                op.push(operator);
                rank.push(r);
                let top = (0.5 + s.lambda * rise) * noise(i + 7 * r as usize, 0.08);
                ev.push(top / (1.0 + r as f64) * if operator == "hessian" { 1.0 } else { 5.0 });
            }
        }
    }
    let m = step.len();
    write_ipc(
        &root.join("eigen/values.arrow"),
        df!(
            "step" => &step,
            "operator" => &op,
            "rank" => &rank,
            "eigenvalue" => &ev,
            "residual" => vec![1e-7; m],
            "hvps" => vec![40i64; m],
        )
        .unwrap(),
    );

    // metrics/localization.arrow
    let (mut step, mut rank, mut ipr, mut pipr, mut pr) = (vec![], vec![], vec![], vec![], vec![]);
    let p = 5000.0;
    for (i, &t) in CHECKPOINTS.iter().enumerate() {
        let grow = 1.0 - (-(t as f64) / 400.0).exp();
        for r in 0..4i32 {
            let v = (3.2 + (s.pipr - 3.2) * grow) * noise(i + 3 * r as usize, 0.1);
            step.push(t);
            rank.push(r);
            pipr.push(v);
            ipr.push(v / p);
            pr.push(1.0 / v);
        }
    }
    write_ipc(
        &root.join("metrics/localization.arrow"),
        df!("step" => &step, "rank" => &rank, "ipr" => &ipr, "p_ipr" => &pipr, "pr" => &pr)
            .unwrap(),
    );

    // metrics/overlap.arrow: consecutive pairs and lag-2 pairs
    let (mut tw, mut tt, mut q, mut gr, mut cons) = (vec![], vec![], vec![], vec![], vec![]);
    for lag in [1usize, 2] {
        for i in 0..CHECKPOINTS.len() - lag {
            let settle = 1.0 - (-(CHECKPOINTS[i] as f64) / 200.0).exp();
            let v = ((0.3 + (s.q - 0.3) * settle) * noise(i, 0.06) / lag as f64).clamp(0.0, 1.0);
            tw.push(CHECKPOINTS[i]);
            tt.push(CHECKPOINTS[i + lag]);
            q.push(v);
            gr.push((1.0 - v).sqrt());
            cons.push(lag == 1);
        }
    }
    write_ipc(
        &root.join("metrics/overlap.arrow"),
        df!("t_w" => &tw, "t" => &tt, "subspace_overlap" => &q, "grassmann" => &gr, "consecutive" => &cons)
            .unwrap(),
    );

    run_input(&run_id, s.optimizer, s.label, &root, Default::default())
}

fn sgd() -> Synth {
    Synth {
        optimizer: "sgd",
        label: "SGD (lr=0.1)",
        lr: 0.1,
        lambda: 18.0,
        pipr: 6.0,
        q: 0.95,
        loss_tau: 600.0,
        diverge_at: None,
    }
}

fn adam() -> Synth {
    Synth {
        optimizer: "adam",
        label: "Adam (lr=1e-3)",
        lr: 1e-3,
        lambda: 60.0,
        pipr: 80.0,
        q: 0.55,
        loss_tau: 200.0,
        diverge_at: None,
    }
}

fn two_by_two(dir: &Path) -> ReportInput {
    let mut runs = Vec::new();
    for s in [sgd(), adam()] {
        for seed in 0..2 {
            runs.push(synth_run(dir, &s, seed, None));
        }
    }
    ReportInput {
        experiment: "synthetic".into(),
        runs,
    }
}

/// Where to leave a copy of the figure for a person to look at, if asked.

#[test]
fn renders_png_and_svg() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_by_two(&tmp.path().join("runs"));
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();

    let files = render_report(&input, &out).expect("render");
    assert_eq!(
        files,
        [
            "optimizer_comparison.png",
            "optimizer_comparison.svg",
            "optimizer_comparison.pdf",
            "optimizer_comparison_loss.png",
            "optimizer_comparison_loss.svg",
            "optimizer_comparison_loss.pdf"
        ]
    );
    for f in &files {
        assert!(out.join(f).is_file(), "{f} written");
    }
    keep_copy(&out, &files, "two_by_two");

    // The PNG decodes, is wide enough for print, and is not blank.
    let img = image::open(out.join("optimizer_comparison.png"))
        .expect("PNG decodes")
        .to_rgb8();
    assert!(img.width() >= 2000, "width {}", img.width());
    let luma: Vec<f64> = img
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(var > 300.0, "pixel variance {var} (blank figure?)");
    // Both optimizers' palette colours are drawn (sgd blue, adam vermillion).
    for (name, rgb) in [("sgd", [0x00, 0x72, 0xB2]), ("adam", [0xD5, 0x5E, 0x00])] {
        let n = img.pixels().filter(|p| p.0 == rgb).count();
        assert!(n > 2000, "{name}: only {n} pixels of its colour");
    }

    // The SVG is well-formed, rooted at <svg>, and carries its text as text.
    let svg = std::fs::read_to_string(out.join("optimizer_comparison.svg")).unwrap();
    assert!(svg.contains("<svg"));
    let texts = svg_text_elements(&svg);
    assert!(texts >= 30, "only {texts} <text> elements");
    for needle in [
        "(a) Loss",
        "SGD (lr=0.1)",
        "Adam (lr=1e-3)",
        "2/η",
        "random vector (3)",
        "λ₁",
    ] {
        assert!(svg.contains(needle), "SVG lacks {needle:?}");
    }
}

#[test]
fn diverged_runs_are_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let mut bad = adam();
    bad.diverge_at = Some(700);
    let runs = vec![
        synth_run(&dir, &sgd(), 0, None),
        synth_run(&dir, &adam(), 0, None),
        synth_run(&dir, &bad, 1, None),
    ];
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let input = ReportInput {
        experiment: "diverged".into(),
        runs,
    };
    let files = render_report(&input, &out).expect("render");
    keep_copy(&out, &files, "diverged");
    let svg = std::fs::read_to_string(out.join("optimizer_comparison.svg")).unwrap();
    assert!(svg.contains("Adam (lr=1e-3) (diverged)"));
    svg_text_elements(&svg);
}

#[test]
fn missing_column_names_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let run = synth_run(&dir, &adam(), 0, Some("test_loss"));
    let train = run.train.clone();
    let input = ReportInput {
        experiment: "broken".into(),
        runs: vec![run],
    };
    let err = render_report(&input, tmp.path()).expect_err("must fail");
    match &err {
        ReportError::MissingColumn { file, column, .. } => {
            assert_eq!(file, &train);
            assert_eq!(column, "test_loss");
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("train.arrow") && msg.contains("test_loss"),
        "{msg}"
    );
    assert_eq!(err.file(), Some(train.as_path()));
}

#[test]
fn unreadable_and_mistyped_inputs_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");

    // Not Arrow at all.
    let mut run = synth_run(&dir, &sgd(), 0, None);
    std::fs::write(&run.localization, b"this is not an arrow file").unwrap();
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run.clone()],
    };
    let err = render_report(&input, tmp.path()).expect_err("garbage");
    assert!(matches!(err, ReportError::Unreadable { .. }), "{err:?}");
    assert_eq!(err.file(), Some(run.localization.as_path()));

    // Missing file.
    run.localization = dir.join("nowhere.arrow");
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run.clone()],
    };
    let err = render_report(&input, tmp.path()).expect_err("missing");
    assert!(err.to_string().contains("nowhere.arrow"), "{err}");

    // A string where a number belongs.
    let bad = dir.join("bad_values.arrow");
    write_ipc(
        &bad,
        df!("step" => [0i64], "operator" => ["hessian"], "rank" => [0i32], "eigenvalue" => ["big"])
            .unwrap(),
    );
    run = synth_run(&dir, &sgd(), 1, None);
    run.values = bad.clone();
    let input = ReportInput {
        experiment: "x".into(),
        runs: vec![run],
    };
    let err = render_report(&input, tmp.path()).expect_err("mistyped");
    match &err {
        ReportError::ColumnType { file, column, .. } => {
            assert_eq!(file, &bad);
            assert_eq!(column, "eigenvalue");
        }
        other => panic!("wrong error: {other:?}"),
    }

    // No runs.
    let err = render_report(
        &ReportInput {
            experiment: "empty".into(),
            runs: vec![],
        },
        tmp.path(),
    )
    .expect_err("no runs");
    assert!(matches!(err, ReportError::NoRuns { .. }));
}

#[test]
fn empty_tables_render_no_data_panels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let run = synth_run(&dir, &sgd(), 0, None);
    // Same schemas, zero rows: Hessian, localization and overlap not computed.
    for path in [&run.values, &run.localization, &run.overlap] {
        let df = IpcReader::new(File::open(path).unwrap()).finish().unwrap();
        write_ipc(path, df.head(Some(0)));
    }
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let input = ReportInput {
        experiment: "empty tables".into(),
        runs: vec![run],
    };
    let files = render_report(&input, &out).expect("render");
    keep_copy(&out, &files, "empty");
    let svg = std::fs::read_to_string(out.join("optimizer_comparison.svg")).unwrap();
    assert_eq!(svg.matches("no data").count(), 3);
}

#[test]
fn the_overview_draws_the_threshold_that_spectrum_arrow_holds() {
    // A heavy-ball run (β = 0.9, η = 0.1): spectrum.arrow holds (2+2β)/η =
    // 38, not 2/η = 20, and the figure must draw 38.
    let tmp = tempfile::tempdir().unwrap();
    let mut run = synth_run(&tmp.path().join("runs"), &sgd(), 0, None);
    let spectrum = tmp.path().join("spectrum.arrow");
    write_ipc(
        &spectrum,
        df!(
            "step" => [0i64, 10],
            "operator" => ["hessian", "hessian"],
            "rank" => [0i32, 0],
            "eigenvalue" => [5.0, 18.0],
            "threshold" => [38.0, 38.0],
        )
        .unwrap(),
    );
    run.files
        .insert("metrics/spectrum.arrow".into(), spectrum.clone());
    let input = ReportInput {
        experiment: "thr".into(),
        runs: vec![run],
    };
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    render_report(&input, &out).expect("render");
    let svg = std::fs::read_to_string(out.join("optimizer_comparison.svg")).unwrap();
    assert!(
        svg.contains("threshold = 38"),
        "the line is not labelled 38"
    );
    assert!(!svg.contains("2/η"), "2/η drawn for a momentum run");
}

/// Marks the overview's inputs of a run untrusted from step `from` on:
/// values.arrow's `resolvable` (with `converged` all true), and the
/// `trusted` columns of localization and overlap (both ends).
fn trust_from(run: &RunInput, from: i64) {
    set_trust(&run.values, "converged", &["step"], i64::MAX);
    set_trust(&run.values, "resolvable", &["step"], from);
    set_trust(&run.localization, "trusted", &["step"], from);
    set_trust(&run.overlap, "trusted", &["t_w", "t"], from);
}

#[test]
fn the_overview_draws_untrusted_points_hollow() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_by_two(&tmp.path().join("runs"));
    // Only Adam's seed 1 is untrusted from 1000 on; its group's means at
    // 1000 and 2000 are hollow, SGD's are not.
    trust_from(&input.runs[3], 1000);
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = render_report(&input, &out).expect("render");
    keep_copy(&out, &files, "untrusted");
    let svg = std::fs::read_to_string(out.join("optimizer_comparison.svg")).unwrap();
    assert!(svg.contains(UNTRUSTED_NOTE), "the overview lacks the note");
    // (b) λ₁ at 1000 and 2000, (c) P·IPR at 1000 and 2000, (d) q from
    // t_w = 500 (its t = 1000) and 1000; and the legend's sample.
    assert_eq!(hollow_circles(&svg), 2 + 2 + 2 + 1);

    // Fully trusted: the figure is byte for byte the one without the columns.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let input = two_by_two(&tmp.path().join("runs_plain"));
    render_report(&input, &plain).unwrap();
    let trusted = tmp.path().join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    let input = two_by_two(&tmp.path().join("runs_trusted"));
    for r in &input.runs {
        trust_from(r, i64::MAX);
    }
    render_report(&input, &trusted).unwrap();
    let a = std::fs::read_to_string(plain.join("optimizer_comparison.svg")).unwrap();
    let b = std::fs::read_to_string(trusted.join("optimizer_comparison.svg")).unwrap();
    assert!(!b.contains(UNTRUSTED_NOTE));
    assert_eq!(hollow_circles(&b), 0);
    assert_eq!(a, b);
}

#[test]
fn index_gives_each_runs_trusted_fraction() {
    let tmp = tempfile::tempdir().unwrap();
    let input = two_by_two(&tmp.path().join("runs"));
    // values.arrow: 12 checkpoints × 2 operators × 4 ranks = 96 pairs.
    // sgd-s1: 2 checkpoints (1000, 2000) unresolvable → 80/96 (83%).
    trust_from(&input.runs[1], 1000);
    // adam-s0: all converged and resolvable; adam-s1: one null converged.
    trust_from(&input.runs[2], i64::MAX);
    trust_from(&input.runs[3], i64::MAX);
    {
        let path = &input.runs[3].values;
        let mut df = IpcReader::new(File::open(path).unwrap()).finish().unwrap();
        let mut conv: Vec<Option<bool>> = vec![Some(true); df.height()];
        conv[5] = None;
        df.with_column(Column::new("converged".into(), conv))
            .unwrap();
        write_ipc(path, df);
    }
    // sgd-s0 has neither column: every pair counts as trusted.
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    reports::figure_groups::index(&input, &[], &Default::default(), &[], &out).expect("index");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<th>trusted pairs</th>"), "no column");
    assert!(html.contains("<th>vectors at</th>"), "no vectors column");
    let row = |run: &str| -> String {
        let start = html
            .find(&format!(">{run}<"))
            .unwrap_or_else(|| panic!("{run}"));
        html[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(
        row("sgd-s0").contains(">96/96 (100%)<"),
        "{}",
        row("sgd-s0")
    );
    assert!(row("sgd-s1").contains(">80/96 (83%)<"), "{}", row("sgd-s1"));
    assert!(
        row("adam-s0").contains(">96/96 (100%)<"),
        "{}",
        row("adam-s0")
    );
    assert!(
        row("adam-s1").contains(">95/96 (98%)<"),
        "{}",
        row("adam-s1")
    );
}

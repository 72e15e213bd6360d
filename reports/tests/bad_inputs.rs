//! Figures of runs that went wrong say so in words: a diverged run is
//! labelled diverged in every figure, a run with one checkpoint has panels
//! that say there are no pairs, and a figure with no trusted point says
//! that no point is trusted (not only that hollow markers mean untrusted).

mod common;
use common::full::full_run;
use common::layout::problems;
use common::write_ipc;

use polars::prelude::*;
use reports::ReportInput;
use std::fs::File;

/// Rewrites every file of a run as if it had stopped after its first
/// checkpoint (step 0) and diverged, with no trusted pair: the metrics keep
/// step 0 only (so there is no pair of checkpoints), every trust flag is
/// false, and train.arrow's last row is the diverged one.
fn break_run(run: &reports::RunInput) {
    for (name, path) in &run.files {
        let mut df = IpcReader::new(File::open(path).unwrap()).finish().unwrap();
        let schema = df.schema().clone();
        if name == "train.arrow" {
            let n = df.height();
            let last = |v: f64, keep: Float64Chunked| -> Column {
                let mut out: Vec<f64> = keep.into_no_null_iter().collect();
                out[n - 1] = v;
                Column::new(keep.name().clone(), out)
            };
            let tl = df.column("train_loss").unwrap().f64().unwrap().clone();
            df.with_column(last(f64::NAN, tl)).unwrap();
            let mut d = vec![false; n];
            d[n - 1] = true;
            df.with_column(Column::new("diverged".into(), d)).unwrap();
        } else {
            let mut keep = lit(true);
            for c in ["step", "t_w", "t"] {
                if schema.contains(c) {
                    keep = keep.and(col(c).eq(lit(0i64)));
                }
            }
            let mut lf = df.lazy().filter(keep);
            for c in ["trusted", "converged", "resolvable"] {
                if schema.contains(c) {
                    lf = lf.with_column(lit(false).alias(c));
                }
            }
            df = lf.collect().unwrap();
        }
        write_ipc(path, df);
    }
}

#[test]
fn broken_runs_are_described_in_words() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let mut runs = Vec::new();
    for seed in 0..2 {
        let run = full_run(
            &dir,
            &format!("sgd-s{seed}"),
            "sgd",
            "SGD (η=0.05)",
            0.05,
            seed,
            1.0,
            false,
        );
        break_run(&run);
        runs.push(run);
    }
    let input = ReportInput {
        experiment: "broken".into(),
        runs,
    };
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::render_all(&input, &[], &out).expect("a broken run still renders");
    common::keep_copy(&out, &files, "broken");
    let svg = |n: &str| std::fs::read_to_string(out.join(format!("{n}.svg"))).unwrap();

    // Diverged: in the legend or the panel title of every figure that
    // names the setting.
    for n in [
        "optimizer_comparison",
        "fig1_loss_accuracy",
        "fig3_displacement",
        "fig4_aging",
        "fig5_overlap_heatmaps",
        "fig6_ipr",
        "fig7_layer_mass",
        "fig8_localization_map",
    ] {
        assert!(
            svg(n).contains("SGD (η=0.05) (diverged)"),
            "{n} does not say the run diverged"
        );
    }
    // One checkpoint: the pair panels say why they are empty.
    for n in [
        "optimizer_comparison",
        "optimizer_comparison_loss",
        "fig3_displacement",
    ] {
        assert!(svg(n).contains("one checkpoint: no pairs"), "{n}");
    }
    assert!(svg("fig4_aging").contains("too few checkpoints"));
    assert!(svg("fig5_overlap_heatmaps").contains("no pair of checkpoints"));
    // No trusted pair: said in words where points are drawn.
    for n in ["optimizer_comparison", "fig2_eigenvalues", "fig6_ipr"] {
        assert!(
            svg(n).contains("no point of this figure is trusted"),
            "{n} does not say that no point is trusted"
        );
    }
    // And the words fit: no overprinted or clipped text.
    for f in files.iter().filter(|f| f.ends_with(".svg")) {
        let p = problems(&std::fs::read_to_string(out.join(f)).unwrap());
        assert!(p.is_empty(), "{f}: {p:#?}");
    }
}

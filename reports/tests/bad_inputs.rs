//! Figures of runs that went wrong say so in words: a diverged run is
//! labelled diverged in every figure, a run with one checkpoint has panels
//! that say there are no pairs, and a figure with no trusted point says
//! that no point is trusted (not only that hollow markers mean untrusted).

mod common;
use common::full::full_run;
use common::layout::problems;
use common::write_ipc;

use polars::prelude::*;
use polars_io::prelude::*;
use reports::ReportInput;
use std::fs::File;

/// Rewrites every file of a run as if it had stopped after its first
/// checkpoint (step 0) and diverged, with no trusted pair: the metrics keep
/// step 0 only (so there is no pair of checkpoints), every trust flag is
/// false, and train.arrow's last row is the diverged one.
fn break_run(run: &reports::RunInput) {
    for (name, path) in &run.files {
        // The dataset is not a run's result: it stays as the stage wrote it.
        if name == "data.arrow" {
            continue;
        }
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

/// fig10_input_mass: drawn when the runs have input_mass.arrow and
/// data.arrow, one panel per setting at the last checkpoint every seed has,
/// its Spearman ρ and top-|z| share under it, equal to what the findings
/// compute from the same files.
#[test]
fn the_input_mass_figure_states_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    let runs: Vec<_> = (0..2)
        .map(|seed| {
            full_run(
                &dir,
                &format!("sgd-s{seed}"),
                "sgd",
                "SGD (η=0.05)",
                0.05,
                seed,
                1.0,
                false,
            )
        })
        .collect();
    let input = ReportInput {
        experiment: "input".into(),
        runs,
    };
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::figure_groups::structure(&input, &out).expect("render");
    assert!(files.iter().any(|f| f == "fig10_input_mass.svg"));
    let svg = std::fs::read_to_string(out.join("fig10_input_mass.svg")).unwrap();
    assert!(svg.contains("step 1000 · ρ = "), "the note under the panel");
    assert!(svg.contains("largest |z| of the column"));
    // Both seeds put 0.4, 0.3, 0.2, 0.1 of the input layer's mass on the
    // columns; the panel ranks them against the first seed's max |z|.
    let ds = stages::dataset::read(input.runs[0].file("data.arrow").unwrap()).unwrap();
    let mut z = vec![0f64; ds.dim];
    for (i, &train) in ds.is_train.iter().enumerate() {
        if train {
            for (j, v) in z.iter_mut().enumerate() {
                *v = v.max(f64::from(ds.features[i * ds.dim + j]).abs());
            }
        }
    }
    let rho = reports::findings::spearman(&[0.4, 0.3, 0.2, 0.1], &z);
    assert!(
        svg.contains(&format!("ρ = {rho:.2} ").replace('-', "\u{2212}")),
        "ρ = {rho:.2} not in the figure"
    );
}

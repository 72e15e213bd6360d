//! configs/paper.toml, scaled down (fewer steps, a smaller MLP, one seed),
//! runs end to end in the test suite and its report holds every figure.

mod common;

use common::*;

#[test]
fn scaled_down_paper_study_completes_with_every_figure() {
    let env = Env::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/paper.toml"))
        .unwrap();
    let small = text
        .replace("seeds = [0, 1, 2, 3, 4]", "seeds = [0]")
        .replace("widths = [64, 128, 128, 10]", "widths = [64, 16, 16, 10]")
        .replace("steps = 5000", "steps = 150")
        .replace(
            "checkpoints = { every = 250, log_spaced = 28 }",
            "checkpoints = { every = 50, log_spaced = 5 }",
        )
        .replace("k = 10", "k = 3")
        .replace("analysis_size = 1024", "analysis_size = 256")
        .replace("replicas = 20", "replicas = 2");
    assert_ne!(
        small, text,
        "paper.toml changed shape: update this test's substitutions"
    );
    let j = env.run_json(&env.write_config(&small));
    assert!(j["ok"].as_bool().unwrap());
    let runs = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "train")
        .count();
    assert_eq!(runs, 7, "sgd, momentum, adam, adamw, rmsprop, lion, muon");
    let report = env.path().join("out/paper/report");
    for stem in [
        "optimizer_comparison",
        "optimizer_comparison_loss",
        "fig1_loss_accuracy",
        "fig2_eigenvalues",
        "fig3_displacement",
        "fig3_displacement_loss",
        "fig4_aging",
        "fig4_aging_loss",
        "fig4_aging_collapse",
        "fig5_overlap_heatmaps",
        "fig6_ipr",
        "fig6_ipr_loss",
        "fig7_layer_mass",
        "fig8_localization_map",
        "fig9_alignment",
        "fig10_input_mass",
    ] {
        for ext in ["png", "svg", "pdf"] {
            let f = report.join(format!("{stem}.{ext}"));
            assert!(
                f.is_file() && std::fs::metadata(&f).unwrap().len() > 1000,
                "missing or empty {}",
                f.display()
            );
        }
    }
    assert!(report.join("index.html").is_file() && report.join("provenance.json").is_file());
    // The findings, in the report and shown by its index.
    let md = std::fs::read_to_string(report.join("findings.md")).unwrap();
    assert!(md.contains("## (a)") && md.contains("## (b)") && md.contains("## (c)"));
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(index.contains("<h2 id=\"findings\">Findings</h2>"));
}

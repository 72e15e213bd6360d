//! The findings stage on a tiny sweep: SGD and Adam, 3 seeds each, from
//! synthetic metric files. Its statistics are checked against numpy and
//! scipy (reports/tests/python/findings_reference.py), two of its measures
//! are recomputed from the raw files there, its verdicts follow the decision
//! rules, and the layer-mass-matched null's expectation is checked against
//! Monte Carlo.

mod common;
use common::full::full_run;

use polars_io::prelude::*;
use reports::findings::{layer_matched_p_ipr, quantile, summarize, welch};
use reports::ReportInput;
use serde_json::json;
use std::fs::File;

fn sweep(dir: &std::path::Path) -> ReportInput {
    let mut runs = Vec::new();
    // Adam's overlaps fall faster (larger `shape`): more displacement.
    for (name, label, lr, shape, adaptive) in [
        ("sgd", "sgd (η=0.05)", 0.05, 0.6, false),
        ("adam", "adam (η=1e-3)", 1e-3, 1.4, true),
    ] {
        for seed in 0..3u64 {
            let id = format!("{name}-s{seed}");
            runs.push(full_run(dir, &id, name, label, lr, seed, shape, adaptive));
        }
    }
    ReportInput {
        experiment: "tiny".into(),
        runs,
    }
}

fn python() -> String {
    std::env::var("EIGENTRACE_PYTHON").expect(
        "EIGENTRACE_PYTHON is not set: run the tests through `make test` (it bootstraps the PyTorch venv)",
    )
}

#[test]
fn findings_of_a_tiny_sweep_match_scipy_and_the_raw_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sweep(&tmp.path().join("runs"));
    let out = tmp.path().join("findings");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::findings::run(&input, &out).expect("findings");
    assert_eq!(
        files,
        ["findings.arrow", "findings_tests.arrow", "findings.md"]
    );

    // The independent check.
    let mut settings = serde_json::Map::new();
    let mut runs = serde_json::Map::new();
    for r in &input.runs {
        let e = settings.entry(r.label.clone()).or_insert_with(|| json!([]));
        e.as_array_mut().unwrap().push(json!(r.run_id));
        let dir = r.file("train.arrow").unwrap().parent().unwrap();
        runs.insert(r.run_id.clone(), json!(dir));
    }
    let req = tmp.path().join("req.json");
    std::fs::write(
        &req,
        json!({
            "out": out, "runs": runs, "settings": settings,
            "early_before": reports::findings::EARLY_BEFORE,
        })
        .to_string(),
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/findings_reference.py"
    );
    let o = std::process::Command::new(python())
        .arg(script)
        .arg(&req)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    eprintln!("findings against scipy: {report}");
    assert!(
        o.status.success(),
        "scipy disagrees: {report}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The verdicts follow the rules on data built to decide them: Adam's
    // displacement is above SGD's at matched loss (claim b holds for Adam),
    // SGD's falls from early to late (claim a holds), and every setting's
    // v₁ peaks far above this null's 95th percentile (about 5). SGD's loss
    // never falls two decades here, so it has no falling window, and the
    // falling-phase contrast cannot decide.
    let tests = IpcReader::new(File::open(out.join("findings_tests.arrow")).unwrap())
        .finish()
        .unwrap();
    let col = |n: &str| -> Vec<String> {
        tests
            .column(n)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    };
    let (claim, setting, reference, window, verdict) = (
        col("claim"),
        col("setting"),
        col("reference"),
        col("window"),
        col("verdict"),
    );
    let find = |c: &str, s: &str, r: &str, w: &str| -> String {
        (0..claim.len())
            .find(|&i| claim[i] == c && setting[i] == s && reference[i] == r && window[i] == w)
            .map(|i| verdict[i].clone())
            .unwrap_or_else(|| panic!("no test {c} {s} {r} {w}"))
    };
    assert_eq!(
        find("b", "adam (η=1e-3)", "sgd (η=0.05)", "L/L0=0.1"),
        "holds"
    );
    assert_eq!(
        find("b", "adam (η=1e-3)", "sgd (η=0.05)", "falling"),
        "inconclusive"
    );
    assert_eq!(
        find("a", "sgd (η=0.05)", "sgd (η=0.05)", "early vs late"),
        "holds"
    );
    assert_eq!(
        find("c", "adam (η=1e-3)", "architecture null", "peak"),
        "holds"
    );
    // Every setting has an aging test per window with a fit, its regime in
    // words.
    let detail = col("detail");
    for s in ["sgd (η=0.05)", "adam (η=1e-3)"] {
        let i = (0..claim.len())
            .find(|&i| claim[i] == "aging" && setting[i] == s && window[i] == "all")
            .unwrap_or_else(|| panic!("no aging test for {s}"));
        assert!(
            [
                "simple aging",
                "subaging",
                "superaging",
                "no aging",
                "no collapse",
                "inconclusive"
            ]
            .iter()
            .any(|r| detail[i].starts_with(r)),
            "{}",
            detail[i]
        );
    }
    let md = std::fs::read_to_string(out.join("findings.md")).unwrap();
    for needle in [
        "## (a) SGD's leading Hessian directions stabilize",
        "**Verdict for adam (η=1e-3): holds** (primary test: peak_p_ipr_v1 peak",
        "Decision rule:",
        "| displacement_rate | L/L0=0.1 |",
        "## Aging: do the curves q(t_w, t_w + τ) collapse against τ/t_w^μ?",
        "| frac90_v1 | late |",
        "| displacement_null_pairs | baseline |",
    ] {
        assert!(md.contains(needle), "findings.md lacks {needle:?}\n{md}");
    }
}

/// The statistics on hand-checkable numbers (a closed form each).
#[test]
fn statistics_on_small_samples() {
    // mean 2, sd 1, t₀.₉₇₅,₂ = 4.302652729911275.
    let s = summarize(&[1.0, 2.0, 3.0]);
    assert_eq!((s.n, s.mean, s.sd), (3, 2.0, 1.0));
    let half = 4.302652729911275 / 3f64.sqrt();
    assert!((s.ci.0 - (2.0 - half)).abs() < 1e-9 && (s.ci.1 - (2.0 + half)).abs() < 1e-9);
    // One value: no spread, no interval (never a made-up zero).
    let s = summarize(&[5.0]);
    assert!(s.sd.is_nan() && s.ci.0.is_nan());
    // Equal variances and sizes: Welch's df is 2(n−1) and t the pooled one.
    let (t, df, p) = welch(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
    assert!((t + 3.0 / (2.0f64 / 3.0).sqrt()).abs() < 1e-12 && (df - 4.0).abs() < 1e-12);
    assert!(p > 0.0 && p < 0.05);
    assert!(welch(&[1.0], &[2.0, 3.0]).2.is_nan());
    // NumPy's linear quantile.
    assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
    assert!((quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95) - 4.8).abs() < 1e-12);
}

/// E[P·IPR] of a direction with mass m_l spread uniformly on block l
/// (n_l parameters) is 3P Σ m_l²/(n_l + 2): against 20,000 Monte Carlo
/// draws, within 4 standard errors.
#[test]
fn the_layer_matched_null_matches_monte_carlo() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let blocks = [(0.7, 40usize), (0.05, 8), (0.25, 100)];
    let p: usize = blocks.iter().map(|b| b.1).sum();
    let want = layer_matched_p_ipr(
        &blocks
            .iter()
            .map(|&(m, n)| (m, n as f64))
            .collect::<Vec<_>>(),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let draws = 20_000;
    let mut xs = Vec::with_capacity(draws);
    for _ in 0..draws {
        let mut ipr = 0.0;
        for &(m, n) in &blocks {
            let g: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm2: f64 = g.iter().map(|x| x * x).sum();
            ipr += g.iter().map(|x| (m * x * x / norm2).powi(2)).sum::<f64>();
        }
        xs.push(p as f64 * ipr);
    }
    let s = summarize(&xs);
    let se = s.sd / (draws as f64).sqrt();
    assert!(
        (s.mean - want).abs() < 4.0 * se,
        "Monte Carlo {} ± {se} against {want}",
        s.mean
    );
    // Mass on one block of n: 3P/(n + 2), the isotropic value when n = P.
    let iso = layer_matched_p_ipr(&[(1.0, p as f64)]);
    assert!((iso - 3.0 * p as f64 / (p as f64 + 2.0)).abs() < 1e-12);
}

/// D of two random unit vectors: 1 − E|⟨u, v⟩|, against closed forms at
/// small P (P = 2: 1 − 2/π; P = 3: 1/2) and Monte Carlo at P = 50.
#[test]
fn the_random_displacement_baseline() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    use reports::findings::random_displacement;
    assert!((random_displacement(2.0) - (1.0 - 2.0 / std::f64::consts::PI)).abs() < 1e-12);
    assert!((random_displacement(3.0) - 0.5).abs() < 1e-12);
    let p = 50usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut unit = || {
        let g: Vec<f64> = (0..p).map(|_| StandardNormal.sample(&mut rng)).collect();
        let n = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        g.into_iter().map(|x| x / n).collect::<Vec<f64>>()
    };
    let draws: Vec<f64> = (0..20_000)
        .map(|_| {
            let (u, v) = (unit(), unit());
            1.0 - u.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>().abs()
        })
        .collect();
    let s = summarize(&draws);
    let se = s.sd / (draws.len() as f64).sqrt();
    let want = random_displacement(p as f64);
    assert!(
        (s.mean - want).abs() < 4.0 * se,
        "{} ± {se} against {want}",
        s.mean
    );
    // Large P: 1 − √(2/(πP)) to leading order.
    let big = 26_122.0f64;
    assert!(
        (random_displacement(big) - (1.0 - (2.0 / (std::f64::consts::PI * big)).sqrt())).abs()
            < 1e-7
    );
}

/// Spearman's ρ on hand-checkable data: monotone ±1, ties averaged (the
/// closed form 1 − 6Σd²/(n(n²−1)) without ties, Pearson on mid-ranks with).
#[test]
fn spearman_rank_correlation() {
    use reports::findings::spearman;
    let a = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert!((spearman(&a, &[2.0, 4.0, 8.0, 16.0, 100.0]) - 1.0).abs() < 1e-15);
    assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-15);
    // d = (0, 0, 1, −1, 0): ρ = 1 − 6·2/(5·24) = 0.9.
    assert!((spearman(&a, &[1.0, 2.0, 4.0, 3.0, 5.0]) - 0.9).abs() < 1e-15);
    // Ties: ranks of (1, 2, 2, 3) are (1, 2.5, 2.5, 4); against (1, 2, 3, 4)
    // Pearson gives 0.9486832980505138 (scipy.stats.spearmanr agrees).
    let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
    assert!((r - 0.9486832980505138).abs() < 1e-12, "{r}");
    assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
}

/// The findings are the same bits on every run (a stage's outputs must be
/// reproducible for `audit --reproduce`): two runs write identical files.
#[test]
fn findings_are_byte_identical_from_run_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = sweep(&tmp.path().join("runs"));
    let mut first: Option<Vec<Vec<u8>>> = None;
    for k in 0..3 {
        let out = tmp.path().join(format!("f{k}"));
        std::fs::create_dir_all(&out).unwrap();
        let files = reports::findings::run(&input, &out).expect("findings");
        let bytes: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect();
        match &first {
            None => first = Some(bytes),
            Some(a) => assert!(a == &bytes, "run {k} differs from run 0"),
        }
    }
}

/// A file's table.
fn read_df(path: &std::path::Path) -> polars::prelude::DataFrame {
    IpcReader::new(File::open(path).unwrap()).finish().unwrap()
}

/// A numeric column as i64 (no nulls expected).
fn ints(df: &polars::prelude::DataFrame, c: &str) -> Vec<i64> {
    use polars::prelude::*;
    let col = df.column(c).unwrap().cast(&DataType::Int64).unwrap();
    col.i64().unwrap().into_no_null_iter().collect()
}

/// A float column; a null entry is NaN.
fn floats(df: &polars::prelude::DataFrame, c: &str) -> Vec<f64> {
    let col = df.column(c).unwrap();
    col.f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

/// Rewrites every run's null files: the first `untrusted` replicas' v₁
/// flagged untrusted with an absurd P·IPR (1000, which would dominate the
/// 95th percentile if it entered), and the band carrying `tol` and the counts.
fn flag_null(input: &ReportInput, tol: f64, untrusted: i64) {
    use polars::prelude::*;
    for r in &input.runs {
        let path = r
            .file("metrics/null_localization.arrow")
            .unwrap()
            .to_path_buf();
        let mut df = read_df(&path);
        let (rep, rank, mut p) = (
            ints(&df, "replica"),
            ints(&df, "rank"),
            floats(&df, "p_ipr"),
        );
        let trusted: Vec<bool> = (0..rep.len())
            .map(|i| !(rank[i] == 0 && rep[i] < untrusted))
            .collect();
        for i in 0..p.len() {
            if !trusted[i] {
                p[i] = 1000.0;
            }
        }
        df.with_column(Column::new("p_ipr".into(), p)).unwrap();
        df.with_column(Column::new("trusted".into(), trusted))
            .unwrap();
        common::write_ipc(&path, df);
        let band = r.file("metrics/null_band.arrow").unwrap().to_path_buf();
        let mut df = read_df(&band);
        let n = df.height();
        let out: Vec<i64> = ints(&df, "rank")
            .iter()
            .map(|&k| if k == 0 { untrusted } else { 0 })
            .collect();
        df.with_column(Column::new(
            "replicas".into(),
            out.iter().map(|o| 20 - o).collect::<Vec<i64>>(),
        ))
        .unwrap();
        df.with_column(Column::new("untrusted".into(), out))
            .unwrap();
        df.with_column(Column::new("tol".into(), vec![tol; n]))
            .unwrap();
        common::write_ipc(&band, df);
    }
}

/// A null computed at a `null.tol` looser than the measured one, or with
/// replicas left out as untrusted, is flagged on every verdict and row that
/// uses it; the left-out replicas do not enter its quantiles. At the
/// default tolerance with every replica trusted nothing is flagged.
#[test]
fn a_null_that_cannot_be_taken_at_face_value_is_flagged_where_it_is_used() {
    let strs = |df: &polars::prelude::DataFrame, c: &str| -> Vec<Option<String>> {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    };
    for (tol, untrusted) in [(1e-2, 5i64), (1e-4, 0)] {
        let tmp = tempfile::tempdir().unwrap();
        let input = sweep(&tmp.path().join("runs"));
        flag_null(&input, tol, untrusted);
        let out = tmp.path().join("findings");
        std::fs::create_dir_all(&out).unwrap();
        reports::findings::run(&input, &out).expect("findings");
        let flagged = untrusted > 0;

        let tests = read_df(&out.join("findings_tests.arrow"));
        let (claim, reference, caveat) = (
            strs(&tests, "claim"),
            strs(&tests, "reference"),
            strs(&tests, "caveat"),
        );
        let mut against_null = 0;
        for i in 0..claim.len() {
            let on_null = reference[i].as_deref() == Some("architecture null");
            against_null += on_null as usize;
            match (&caveat[i], on_null && flagged) {
                (Some(c), true) => {
                    assert!(c.contains("null.tol = 0.01"), "{c}");
                    assert!(c.contains("(v1: 5 of 20)"), "{c}");
                }
                (None, false) => {}
                (c, want) => panic!("test {i} ({:?}): caveat {c:?}, flagged {want}", claim[i]),
            }
        }
        assert_eq!(against_null, 2, "one (c) test per setting against the null");

        // The left-out replicas' P·IPR of 1000 does not enter q95.
        let rows = read_df(&out.join("findings.arrow"));
        let (measure, row_caveat) = (strs(&rows, "measure"), strs(&rows, "null_caveat"));
        let q95 = floats(&rows, "null_q95");
        let nl = read_df(
            input.runs[0]
                .file("metrics/null_localization.arrow")
                .unwrap(),
        );
        let (rank, p) = (ints(&nl, "rank"), floats(&nl, "p_ipr"));
        let trusted: Vec<Option<bool>> = nl
            .column("trusted")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        let v1: Vec<f64> = (0..nl.height())
            .filter(|&i| rank[i] == 0 && trusted[i] == Some(true))
            .map(|i| p[i])
            .collect();
        assert_eq!(v1.len(), 20 - untrusted as usize);
        let want = quantile(&v1, 0.95);
        assert!(want < 10.0, "{v1:?}");
        let mut peaks = 0;
        for i in 0..measure.len() {
            let m = measure[i].as_deref().unwrap();
            if m == "peak_p_ipr_v1" {
                peaks += 1;
                assert_eq!(q95[i], want, "{m}");
            }
            let uses_null =
                q95[i].is_finite() || m == "peak_p_ipr_v1" || m == "displacement_null_pairs";
            assert_eq!(row_caveat[i].is_some(), uses_null && flagged, "row {i} {m}");
        }
        assert_eq!(peaks, 2);

        let md = std::fs::read_to_string(out.join("findings.md")).unwrap();
        assert_eq!(md.contains("⚠ **Flagged:**"), flagged, "{md}");
        assert_eq!(
            md.contains("These verdicts rest on the architecture null, which is flagged"),
            flagged
        );
    }
}

//! The whole report at sweep sizes users make: 1, 2, 7 and 20 optimizer
//! settings × 1 and 3 seeds, from tiny synthetic runs, and every SVG it
//! writes read the way a person would: no text overprints another, none
//! leaves the canvas, no plot area is squeezed (`common::layout`).

mod common;
use common::full::full_run;
use common::layout::problems;

use reports::ReportInput;

/// The settings of a sweep of `n`: the seven named optimizers first, then
/// learning-rate variants of them (so names repeat, as in an lr sweep).
fn settings(n: usize) -> Vec<(String, String, f64, bool)> {
    let base = [
        ("sgd", 0.05, false),
        ("momentum", 5e-3, false),
        ("adam", 1e-3, true),
        ("adamw", 1e-3, true),
        ("rmsprop", 3e-4, true),
        ("lion", 1e-4, false),
        ("muon", 2e-2, false),
    ];
    (0..n)
        .map(|i| {
            let (name, lr, adaptive) = base[i % base.len()];
            let lr = lr * [1.0, 3.0, 0.3][(i / base.len()) % 3];
            (
                name.to_string(),
                format!("{name} (η={lr:.0e})"),
                lr,
                adaptive,
            )
        })
        .collect()
}

fn report(dir: &std::path::Path, n: usize, seeds: u64) -> ReportInput {
    let mut runs = Vec::new();
    for (i, (name, label, lr, adaptive)) in settings(n).into_iter().enumerate() {
        for seed in 0..seeds {
            let shape = 0.3 + 1.7 * i as f64 / n.max(2) as f64;
            let id = format!("{name}-{i}-s{seed}");
            runs.push(full_run(dir, &id, &name, &label, lr, seed, shape, adaptive));
        }
    }
    ReportInput {
        experiment: format!("layout-{n}x{seeds}"),
        runs,
    }
}

#[test]
fn every_figure_reads_cleanly_from_1_to_20_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for n in [1usize, 2, 7, 20] {
        for seeds in [1u64, 3] {
            let tag = format!("{n}x{seeds}");
            let input = report(&tmp.path().join(&tag).join("runs"), n, seeds);
            let out = tmp.path().join(&tag).join("report");
            std::fs::create_dir_all(&out).unwrap();
            let files = reports::render_all(&input, &[], &out).expect("render");
            common::keep_copy(&out, &files, &format!("layout/{tag}"));
            // The fixture has densities: fig 11 is drawn and checked too.
            assert!(
                files.iter().any(|f| f == "fig11_density.svg"),
                "{tag}: no fig 11"
            );
            // And per-layer block eigenvalues: fig 12.
            assert!(
                files.iter().any(|f| f == "fig12_layer_curvature.svg"),
                "{tag}: no fig 12"
            );
            for f in files.iter().filter(|f| f.ends_with(".svg")) {
                let svg = std::fs::read_to_string(out.join(f)).unwrap();
                for p in problems(&svg) {
                    all.push(format!("{tag} {f}: {p}"));
                }
            }
        }
    }
    // Per report and figure: how many, then the first few in full.
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for p in &all {
        let key: String = p.split(": ").next().unwrap_or("").to_string();
        *counts.entry(key).or_default() += 1;
    }
    assert!(
        all.is_empty(),
        "{} layout problems:\n{:#?}\n{}",
        all.len(),
        counts,
        all.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The checker itself can fail: two labels drawn on top of each other, one
/// off the canvas and a squeezed plot area are all found.
#[test]
fn the_checker_finds_overlaps_overshoots_and_squeezed_plots() {
    let svg = r##"<svg width="400" height="300" viewBox="0 0 400 300" xmlns="http://www.w3.org/2000/svg">
<text x="100" y="100" dy="0.5ex" text-anchor="middle" font-family="DejaVu Sans" font-size="30">overlapping</text>
<text x="110" y="105" dy="0.5ex" text-anchor="middle" font-family="DejaVu Sans" font-size="30">labels</text>
<text x="390" y="200" dy="0.5ex" text-anchor="start" font-family="DejaVu Sans" font-size="30">off the edge</text>
<text x="20" y="220" dy="0.76em" text-anchor="middle" font-family="DejaVu Sans" font-size="20" transform="rotate(270, 20, 220)">rotated</text>
<polyline fill="none" stroke="#202020" stroke-width="3" points="200,20 200,280 "/>
<polyline fill="none" stroke="#202020" stroke-width="3" points="200,280 230,280 "/>
</svg>"##;
    let p = problems(svg);
    assert!(
        p.iter()
            .any(|m| m.contains("\"overlapping\" and \"labels\" overlap")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m.contains("\"off the edge\" leaves")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m.contains("30 px wide for 260 px high")),
        "{p:#?}"
    );
    // The rotated label stands clear of everything: no problem names it.
    assert!(!p.iter().any(|m| m.contains("rotated")), "{p:#?}");
    assert_eq!(p.len(), 3, "{p:#?}");
}

/// Checks any SVG given in `LAYOUT_CHECK_SVG` (a path): for looking at a
/// real report, e.g. one made before a layout change.
#[test]
#[ignore]
fn check_an_svg_from_the_environment() {
    let path = std::env::var("LAYOUT_CHECK_SVG").expect("LAYOUT_CHECK_SVG=path/to/figure.svg");
    let p = problems(&std::fs::read_to_string(&path).unwrap());
    assert!(
        p.is_empty(),
        "{}: {} problems\n{}",
        path,
        p.len(),
        p.join("\n")
    );
}

/// Every figure also comes as a PDF (for LaTeX): it parses, has one page of
/// the SVG's size, embeds the font, and its text is text: the longest ASCII
/// label of the SVG is found in the PDF's extracted text.
#[test]
fn every_figure_has_a_pdf_with_its_text() {
    let tmp = tempfile::tempdir().unwrap();
    let input = report(&tmp.path().join("runs"), 2, 2);
    let out = tmp.path().join("report");
    std::fs::create_dir_all(&out).unwrap();
    let files = reports::render_all(&input, &[], &out).expect("render");
    let svgs: Vec<&String> = files.iter().filter(|f| f.ends_with(".svg")).collect();
    assert!(svgs.len() >= 10, "{files:?}");
    for svg_name in svgs {
        let stem = svg_name.trim_end_matches(".svg");
        let pdf_name = format!("{stem}.pdf");
        assert!(
            files.contains(&pdf_name),
            "{pdf_name} is not among {files:?}"
        );
        let bytes = std::fs::read(out.join(&pdf_name)).unwrap();
        assert!(bytes.starts_with(b"%PDF-"), "{pdf_name}: no PDF header");
        let doc = lopdf::Document::load_mem(&bytes).unwrap_or_else(|e| panic!("{pdf_name}: {e}"));
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        assert_eq!(pages.len(), 1, "{pdf_name}");
        assert!(
            bytes.windows(9).any(|w| w == b"/FontFile"),
            "{pdf_name}: the font is not embedded"
        );
        let text = doc.extract_text(&pages).unwrap_or_default();
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let svg = std::fs::read_to_string(out.join(svg_name)).unwrap();
        let (_, boxes) = common::layout::text_boxes(&svg);
        let label = boxes
            .iter()
            .map(|b| b.text.clone())
            .filter(|t| t.is_ascii())
            .max_by_key(String::len)
            .expect("an ASCII label");
        assert!(
            squash(&text).contains(&squash(&label)),
            "{pdf_name}: {label:?} not in the PDF's text {:?}",
            &text.chars().take(300).collect::<String>()
        );
    }
}

/// The same inputs give byte-identical PDFs (the store hashes them and
/// `audit --reproduce` compares them): svg2pdf's hash-map order of resource
/// entries is sorted away. Five renders of a report with both operators.
#[test]
fn pdfs_are_byte_identical_from_run_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = report(&tmp.path().join("runs"), 7, 1);
    let mut first: Option<Vec<(String, Vec<u8>)>> = None;
    for k in 0..5 {
        let out = tmp.path().join(format!("r{k}"));
        std::fs::create_dir_all(&out).unwrap();
        let files = reports::render_all(&input, &[], &out).expect("render");
        let pdfs: Vec<(String, Vec<u8>)> = files
            .iter()
            .filter(|f| f.ends_with(".pdf"))
            .map(|f| (f.clone(), std::fs::read(out.join(f)).unwrap()))
            .collect();
        // 13 figures (figs 11 and 12 from the fixture's densities and layer
        // blocks), 4 loss-axis variants and the aging collapse.
        assert_eq!(pdfs.len(), 18);
        match &first {
            None => first = Some(pdfs),
            Some(a) => {
                for ((name, x), (_, y)) in a.iter().zip(&pdfs) {
                    assert!(x == y, "{name} differs between render 0 and {k}");
                }
            }
        }
    }
}

//! `report/index.html` and `report/provenance.json`: every figure, a table of
//! runs, and what each figure was made from, hash by hash. Static, with no
//! network: inline CSS, relative links only.

use crate::data::{Kind, Table};
use crate::{ReportError, ReportInput};
use polars::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One input stage of the report: what `eigentrace audit` would show.
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    pub role: String,
    pub id: String,
    pub kind: String,
    /// The stage key (blake3 of kind, code version, params, env and inputs).
    pub key: String,
    /// The content hash of its outputs.
    pub content: String,
}

/// Captions: what each figure shows (by file stem).
fn caption(stem: &str) -> &'static str {
    match stem {
        "optimizer_comparison" => "Overview: loss, sharpness λ₁ against 2/η, P·IPR of v₁ against the random-vector value 3, consecutive subspace overlap.",
        "fig1_loss_accuracy" => "Loss and accuracy, train and test, against step.",
        "fig2_eigenvalues" => "The top-k Hessian eigenvalues against step, with 2/η; Adam's preconditioned sharpness with 2(1+β₁)/((1−β₁)η) = 38/η at β₁ = 0.9.",
        "fig3_displacement" => "Consecutive displacement D(tₙ, tₙ₊₁) of the matched eigenvectors, and per step.",
        "fig4_aging" => "Aging: the subspace overlap q(t_w, t_w+τ) against τ, one curve per waiting time t_w.",
        "fig5_overlap_heatmaps" => "Two-time maps of |⟨v₁(t), v₁(t′)⟩| and of q(t, t′), per setting, each cell the mean over its seeds.",
        "fig6_ipr" => "P·IPR against step per rank, with the architecture's null-model band and the random-vector line at 3.",
        "fig7_layer_mass" => "The mass of v₁ per layer against step.",
        "fig8_localization_map" => "The mass of v₁ over the first-layer weight matrix at the end of training.",
        "fig10_input_mass" => "The mass of v₁ on each input column (its first-layer weights) against the column's largest |z| over the train rows, at the last checkpoint, with the input layer's mass spread evenly (dashed): does v₁ sit on the near-constant pixels that standardizing blows up?",
        "fig12_layer_curvature" => "Each layer's own curvature through training (`[hessian] layers = true`): λ₁ of the layer's diagonal Hessian block H_ll, with λ₁ of the whole Hessian in black (never below any block's, by interlacing). The spectral counterpart of fig 7: does the layer that holds v₁'s mass carry the top curvature on its own?",
        "fig11_density" => "The Hessian's spectral density through training (stochastic Lanczos quadrature, `[density]`): checkpoint against λ on a symmetric-log axis, coloured by log₁₀ density over six decades, with Lanczos's top-k eigenvalues in white. The outliers separate from the bulk near 0 as training goes on.",
        "fig9_alignment" => "Alignment of the gradient and of the realized update with the top-k Hessian subspace.",
        _ => "",
    }
}

/// The caption of a loss-axis variant (`<stem>_loss`).
fn loss_caption(stem: &str) -> &'static str {
    match stem {
        "optimizer_comparison" => "Against the train loss: P·IPR of v₁ and the consecutive subspace overlap at the train loss of each checkpoint, so that optimizers are compared at the same point of training, not the same step.",
        "fig3_displacement" => "Against the train loss: the displacement at the train loss of tₙ.",
        "fig4_aging" => "Against the train loss: q(t_w, t) at the train loss of t, one curve per waiting time.",
        "fig6_ipr" => "Against the train loss: P·IPR at the train loss of each checkpoint, with the null band.",
        _ => "Against the train loss.",
    }
}

/// The caption of a collapse variant (`<stem>_collapse`).
fn collapse_caption(_stem: &str) -> &'static str {
    "Collapse: the same curves against the scaled lag τ/t_w^μ, μ the setting's fitted exponent (mean over seeds, with its 95% t interval), and the regime by the findings' rule: simple aging (μ = 1), subaging, superaging, no aging, or no collapse within twice the seeds' scatter of q. Waiting time 0 has no scaled lag."
}

/// A variant's caption, from its figure's stem.
type Caption = fn(&str) -> &'static str;

/// The variants shown under their figure: suffix and caption.
const VARIANTS: [(&str, Caption); 2] = [("_loss", loss_caption), ("_collapse", collapse_caption)];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One row of the runs table: the last logged row of train.arrow.
fn final_row(path: &Path) -> Result<(f64, f64, f64, f64, bool), ReportError> {
    let t = Table::open(path)?;
    let cols = [
        t.col("train_loss", Kind::Float)?,
        t.col("train_acc", Kind::Float)?,
        t.col("test_loss", Kind::Float)?,
        t.col("test_acc", Kind::Float)?,
    ];
    let div = if t.has("diverged") {
        t.col("diverged", Kind::Bool)?.any(true)
    } else {
        lit(false)
    };
    let df = t.query(|lf| {
        lf.filter(col("train_loss").is_not_nan()).select([
            cols[0].clone().last().alias("a"),
            cols[1].clone().last().alias("b"),
            cols[2].clone().last().alias("c"),
            cols[3].clone().last().alias("d"),
        ])
    })?;
    let dv = t.query(|lf| lf.select([div.alias("x")]))?;
    let get = |name: &str| -> f64 {
        df.column(name)
            .ok()
            .and_then(|c| c.f64().ok().and_then(|c| c.get(0)))
            .unwrap_or(f64::NAN)
    };
    let diverged = dv
        .column("x")
        .ok()
        .and_then(|c| c.bool().ok().and_then(|c| c.get(0)))
        .unwrap_or(false);
    Ok((get("a"), get("b"), get("c"), get("d"), diverged))
}

/// The trusted pairs of a run's `eigen/values.arrow` (converged and
/// resolvable; an absent column counts as true, a null entry as false), all
/// its pairs, and its checkpoints.
fn trusted_pairs(path: &Path) -> Result<(u64, u64, u64), ReportError> {
    let t = Table::open(path)?;
    let trusted = t.values_trusted()?;
    let df = t.query(|lf| {
        // with_column broadcasts a literal `true` (a file without the columns).
        lf.with_column(trusted.alias("trusted")).select([
            col("trusted").cast(DataType::UInt64).sum().alias("trusted"),
            len().cast(DataType::UInt64).alias("total"),
            col("step").n_unique().cast(DataType::UInt64).alias("steps"),
        ])
    })?;
    let get = |name: &str| -> Result<u64, ReportError> {
        df.column(name)
            .and_then(|c| c.cast(&DataType::UInt64))
            .map(|c| c.u64().ok().and_then(|c| c.get(0)).unwrap_or(0))
            .map_err(|e| ReportError::Data {
                file: path.to_path_buf(),
                message: e.to_string(),
            })
    };
    Ok((get("trusted")?, get("total")?, get("steps")?))
}

/// The checkpoints a run's vector metrics are at: those whose vectors
/// `hessian.keep_vectors` kept, `metrics/localization.arrow`'s steps.
fn vector_checkpoints(r: &crate::RunInput) -> Result<Option<u64>, ReportError> {
    let Ok(loc) = r.file("metrics/localization.arrow") else {
        return Ok(None);
    };
    let df = Table::open(loc)?
        .query(|lf| lf.select([col("step").n_unique().cast(DataType::UInt64).alias("n")]))?;
    Ok(df
        .column("n")
        .ok()
        .and_then(|c| c.u64().ok().and_then(|c| c.get(0))))
}

/// "118/120 (98%)": the percentage rounded down, so that 100% means all.
fn trusted_fraction(trusted: u64, total: u64) -> String {
    if total == 0 {
        return "0/0".to_string();
    }
    format!("{trusted}/{total} ({}%)", trusted * 100 / total)
}

/// Write index.html and provenance.json into `out_dir`. `figures` are the
/// files written there (PNG and SVG); `hashes` their blake3, by name.
pub fn write_index(
    input: &ReportInput,
    figures: &[String],
    hashes: &std::collections::BTreeMap<String, String>,
    provenance: &[Provenance],
    out_dir: &Path,
) -> Result<Vec<String>, ReportError> {
    let io = |e: std::io::Error| ReportError::Data {
        file: out_dir.to_path_buf(),
        message: e.to_string(),
    };
    let mut stems: Vec<&str> = figures
        .iter()
        .filter_map(|f| f.strip_suffix(".png"))
        .collect();
    // The overview first, then by figure number (fig10 after fig9).
    stems.sort_by_key(|s| {
        let number: u32 = s
            .strip_prefix("fig")
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (
            if s.starts_with("optimizer_comparison") {
                0
            } else {
                1
            },
            number,
            s.to_string(),
        )
    });
    // A variant (loss axis, collapse) is shown with its figure, under it.
    let variant_of = |s: &str| {
        VARIANTS.iter().any(|(suffix, _)| {
            s.strip_suffix(suffix)
                .filter(|base| stems.contains(base))
                .is_some()
        })
    };
    let shown: Vec<&str> = stems.iter().copied().filter(|s| !variant_of(s)).collect();
    let mut html = String::new();
    html.push_str(&format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e} — eigentrace report</title>\n<style>\nbody{{font-family:'DejaVu Sans',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}\nfigure{{margin:2em 0}} img{{width:100%;border:1px solid #ddd}} figcaption{{margin:.5em 0}}\ntable{{border-collapse:collapse;font-size:90%}} td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}} th{{background:#f4f4f4}} td.l{{text-align:left}}\ncode{{font-size:85%;color:#555}} .diverged{{color:#b00;font-weight:bold}} td.untrusted{{color:#b00}}\n</style></head>\n<body>\n<h1>{e}</h1>\n<p>Made by eigentrace {v} from cached stage results. Every figure lists the stages it was made from; <code>eigentrace audit &lt;file&gt;</code> verifies any of them hash by hash.</p>\n",
        e = esc(&input.experiment),
        v = env!("CARGO_PKG_VERSION")
    ));
    // Runs table.
    html.push_str("<h2>Runs</h2>\n<table><tr><th>run</th><th>optimizer</th><th>lr</th><th>seed</th><th>train loss</th><th>train acc</th><th>test loss</th><th>test acc</th><th>trusted pairs</th><th>vectors at</th><th>status</th></tr>\n");
    let mut some_vectors = false;
    for r in &input.runs {
        let (tl, ta, vl, va, div) = final_row(r.file("train.arrow").unwrap_or(&r.train))?;
        let (trusted, total, all) =
            trusted_pairs(r.file("eigen/values.arrow").unwrap_or(&r.values))?;
        let kept = match vector_checkpoints(r)? {
            Some(kept) if kept < all => {
                some_vectors = true;
                format!("{kept} of {all} checkpoints")
            }
            Some(_) => format!("all {all}"),
            None => "–".to_string(),
        };
        let p = &r.params;
        html.push_str(&format!(
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{tl:.4}</td><td>{ta:.3}</td><td>{vl:.4}</td><td>{va:.3}</td><td{}>{}</td><td>{}</td><td class=\"l\">{}</td></tr>\n",
            esc(&r.run_id),
            esc(p["optimizer"].as_str().unwrap_or(&r.optimizer)),
            p["lr"],
            p["seed"],
            if trusted < total { " class=\"untrusted\"" } else { "" },
            trusted_fraction(trusted, total),
            kept,
            if div { "<span class=\"diverged\">diverged</span>" } else { "ok" }
        ));
    }
    html.push_str("</table>\n");
    if some_vectors {
        html.push_str("<p class=\"note\">Some runs kept their eigenvectors at only some checkpoints (<code>hessian.keep_vectors</code>). Their eigenvalues are every checkpoint's; their localization, masses, overlaps, displacements and alignment are the kept checkpoints' only, and a <em>consecutive</em> displacement or overlap there spans the steps between two kept checkpoints, not two computed ones.</p>\n");
    }
    // The findings stage's verdicts, when the report was given them.
    if let Ok(md) = std::fs::read_to_string(out_dir.join("findings.md")) {
        html.push_str("<h2 id=\"findings\">Findings</h2>\n<p><a href=\"findings.md\">findings.md</a> · <a href=\"findings.arrow\">findings.arrow</a> (per setting, measure and window: per-seed values, n, mean, sd, 95% CI) · <a href=\"findings_tests.arrow\">findings_tests.arrow</a> (every test behind a verdict)</p>\n<div class=\"findings\">\n");
        html.push_str(&crate::findings::markdown_to_html(&md));
        html.push_str("</div>\n");
    }
    // Figures, with their provenance.
    html.push_str("<h2>Figures</h2>\n");
    for stem in &shown {
        let png = format!("{stem}.png");
        let svg = format!("{stem}.svg");
        let pdf = format!("{stem}.pdf");
        html.push_str(&format!(
            "<figure id=\"{s}\"><a href=\"{png}\"><img src=\"{png}\" alt=\"{s}\"></a>\n<figcaption><b>{s}</b>: {c} <a href=\"{svg}\">SVG</a> · <a href=\"{pdf}\">PDF</a> · <a href=\"{png}\">PNG</a><br><code>blake3 {h}</code></figcaption>\n",
            s = esc(stem),
            c = esc(caption(stem)),
            h = hashes.get(&png).map(String::as_str).unwrap_or("?"),
        ));
        for (suffix, caption_of) in VARIANTS {
            let v = format!("{stem}{suffix}");
            if !stems.contains(&v.as_str()) {
                continue;
            }
            let (png, svg, pdf) = (format!("{v}.png"), format!("{v}.svg"), format!("{v}.pdf"));
            html.push_str(&format!(
                "<a id=\"{s}\" href=\"{png}\"><img src=\"{png}\" alt=\"{s}\"></a>\n<figcaption><b>{s}</b>: {c} <a href=\"{svg}\">SVG</a> · <a href=\"{pdf}\">PDF</a> · <a href=\"{png}\">PNG</a><br><code>blake3 {h}</code></figcaption>\n",
                s = esc(&v),
                c = esc(caption_of(stem)),
                h = hashes.get(&png).map(String::as_str).unwrap_or("?"),
            ));
        }
        html.push_str(&format!(
            "<details><summary>provenance ({n} input stages)</summary><table><tr><th>stage</th><th>key</th><th>content</th></tr>\n",
            n = provenance.len()
        ));
        for p in provenance {
            html.push_str(&format!(
                "<tr><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td class=\"l\"><code>{}</code></td></tr>\n",
                esc(&p.id),
                esc(&p.key),
                esc(&p.content)
            ));
        }
        html.push_str("</table></details></figure>\n");
    }
    // The headless-browser test reads this: every image decoded.
    html.push_str("<script>window.addEventListener('load',function(){var ok=Array.prototype.every.call(document.images,function(i){return i.complete&&i.naturalWidth>0});document.body.setAttribute('data-images',ok?'ok':'broken');});</script>\n</body></html>\n");
    std::fs::write(out_dir.join("index.html"), html).map_err(io)?;
    let prov = serde_json::json!({
        "experiment": input.experiment,
        "eigentrace_version": env!("CARGO_PKG_VERSION"),
        "figures": stems.iter().map(|s| {
            let files: Vec<serde_json::Value> = [format!("{s}.png"), format!("{s}.svg"), format!("{s}.pdf")]
                .iter()
                .map(|f| serde_json::json!({ "file": f, "blake3": hashes.get(f) }))
                .collect();
            (s.to_string(), serde_json::json!({ "files": files, "inputs": provenance }))
        }).collect::<serde_json::Map<String, serde_json::Value>>(),
        "runs": input.runs.iter().map(|r| serde_json::json!({ "id": r.run_id, "params": r.params })).collect::<Vec<_>>(),
    });
    std::fs::write(
        out_dir.join("provenance.json"),
        serde_json::to_string_pretty(&prov).unwrap(),
    )
    .map_err(io)?;
    Ok(vec!["index.html".into(), "provenance.json".into()])
}

//! A layout check that a person would agree with: every `<text>` of an SVG
//! measured with the embedded font's own metrics (ab_glyph: the ink box of
//! its glyphs, placed by `x`, `y`, `dy`, `text-anchor` and a rotation), and
//! every plot area found from its axis lines. Problems: two text boxes that
//! overlap, a box that leaves the canvas, a plot area narrower than a
//! quarter of its height.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use quick_xml::events::Event;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Overlaps and overshoots smaller than this (pixels) are not problems.
const SLACK: f64 = 1.5;
/// A plot area must be at least this wide for its height.
pub const MIN_ASPECT: f64 = 0.25;

#[derive(Clone, Debug)]
pub struct TextBox {
    pub text: String,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

/// The attributes of an element, by name.
fn attrs(e: &quick_xml::events::BytesStart<'_>) -> std::collections::HashMap<String, String> {
    e.attributes()
        .filter_map(Result::ok)
        .map(|a| {
            (
                String::from_utf8_lossy(a.key.as_ref()).to_string(),
                a.unescape_value()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The ink box of `text` at SVG font size `em`, its pen starting at (0, 0)
/// on the baseline (y down), and its advance width. The same text is larger
/// in the PNG: plotters writes the SVG's font-size as its size / 1.24 and
/// draws the bitmap's with ab_glyph at a pixel height (ascent − descent) of
/// the size itself, 1.24 / 1.164 = 6.5% larger for DejaVu Sans. Boxes are
/// measured at the larger of the two, so that both files read cleanly.
fn ink(font: &FontRef<'_>, text: &str, em: f64) -> (f64, f64, f64, f64, f64) {
    let svg: PxScale = font
        .pt_to_px_scale(em as f32 * 0.75)
        .expect("scalable font");
    let png = PxScale::from(em as f32 * 1.24);
    let scale = if png.y > svg.y { png } else { svg };
    let scaled = font.as_scaled(scale);
    let (mut pen, mut x0, mut y0, mut x1, mut y1) =
        (0.0f32, f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        let g = id.with_scale_and_position(scale, ab_glyph::point(pen, 0.0));
        if let Some(o) = font.outline_glyph(g) {
            let b = o.px_bounds();
            x0 = x0.min(b.min.x);
            y0 = y0.min(b.min.y);
            x1 = x1.max(b.max.x);
            y1 = y1.max(b.max.y);
        }
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    if x0 > x1 {
        return (0.0, 0.0, 0.0, 0.0, f64::from(pen));
    }
    (
        f64::from(x0),
        f64::from(y0),
        f64::from(x1),
        f64::from(y1),
        f64::from(pen),
    )
}

/// A length like "0.76em", "0.5ex" or "12" in pixels, at em size `em`.
fn length(v: &str, em: f64, ex: f64) -> f64 {
    let v = v.trim();
    if let Some(n) = v.strip_suffix("em") {
        n.parse::<f64>().unwrap_or(0.0) * em
    } else if let Some(n) = v.strip_suffix("ex") {
        n.parse::<f64>().unwrap_or(0.0) * ex * em
    } else {
        v.trim_end_matches("px").parse::<f64>().unwrap_or(0.0)
    }
}

/// The canvas size and every text element's box.
pub fn text_boxes(svg: &str) -> ((f64, f64), Vec<TextBox>) {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    // The x-height in em, for "ex" lengths.
    let ex = {
        let (_, y0, _, y1, _) = ink(&font, "x", 1000.0);
        (y1 - y0) / 1000.0
    };
    let mut reader = quick_xml::Reader::from_str(svg);
    let mut size = (0.0, 0.0);
    let mut boxes = Vec::new();
    let mut open: Option<std::collections::HashMap<String, String>> = None;
    let mut content = String::new();
    loop {
        match reader.read_event().expect("well-formed SVG") {
            Event::Start(e) if e.name().as_ref() == b"svg" => {
                let a = attrs(&e);
                let num = |k: &str| a.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                size = (num("width"), num("height"));
            }
            Event::Start(e) if e.name().as_ref() == b"text" => {
                open = Some(attrs(&e));
                content.clear();
            }
            Event::Text(t) if open.is_some() => {
                content.push_str(&t.decode().map(|c| c.to_string()).unwrap_or_default());
            }
            Event::GeneralRef(r) if open.is_some() => {
                let name = r.decode().map(|c| c.to_string()).unwrap_or_default();
                content.push_str(match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "?",
                });
            }
            Event::End(e) if e.name().as_ref() == b"text" => {
                let a = open.take().expect("an open <text>");
                let text = content.trim().to_string();
                if text.is_empty() {
                    continue;
                }
                let num = |k: &str| a.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                let (x, y, em) = (num("x"), num("y"), num("font-size"));
                let dy = a.get("dy").map(|v| length(v, em, ex)).unwrap_or(0.0);
                let (ix0, iy0, ix1, iy1, adv) = ink(&font, &text, em);
                let shift = match a.get("text-anchor").map(String::as_str) {
                    Some("middle") => -adv / 2.0,
                    Some("end") => -adv,
                    _ => 0.0,
                };
                let (mut bx0, mut by0, mut bx1, mut by1) =
                    (x + shift + ix0, y + dy + iy0, x + shift + ix1, y + dy + iy1);
                if let Some(t) = a.get("transform") {
                    // rotate(270, cx, cy): (x, y) ↦ (cx + (y − cy), cy − (x − cx)).
                    let nums: Vec<f64> = t
                        .trim_start_matches("rotate(")
                        .trim_end_matches(')')
                        .split(',')
                        .filter_map(|v| v.trim().parse().ok())
                        .collect();
                    if let [angle, cx, cy] = nums[..] {
                        // rotate(270): (x, y) ↦ (cx + (y − cy), cy − (x − cx));
                        // rotate(90):  (x, y) ↦ (cx − (y − cy), cy + (x − cx)).
                        let (nx0, nx1, ny0, ny1) = if (angle - 270.0).abs() < 1e-9 {
                            (
                                cx + (by0 - cy),
                                cx + (by1 - cy),
                                cy - (bx1 - cx),
                                cy - (bx0 - cx),
                            )
                        } else if (angle - 90.0).abs() < 1e-9 {
                            (
                                cx - (by1 - cy),
                                cx - (by0 - cy),
                                cy + (bx0 - cx),
                                cy + (bx1 - cx),
                            )
                        } else {
                            panic!("only rotate(90 or 270, …) is measured, got {t}")
                        };
                        (bx0, bx1, by0, by1) = (nx0, nx1, ny0, ny1);
                    }
                }
                boxes.push(TextBox {
                    text,
                    x0: bx0,
                    y0: by0,
                    x1: bx1,
                    y1: by1,
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    (size, boxes)
}

/// The plot areas: a long vertical axis line (stroke-width 3) whose bottom
/// end starts a long horizontal one. (x0, y0, x1, y1).
pub fn plot_areas(svg: &str) -> Vec<(f64, f64, f64, f64)> {
    let mut v = Vec::new();
    let mut h = Vec::new();
    for part in svg.split("<polyline").skip(1) {
        let tag = part.split('>').next().unwrap_or("");
        if !tag.contains("stroke-width=\"3\"") {
            continue;
        }
        let Some(points) = tag.split("points=\"").nth(1) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = points
            .split('"')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|p| {
                let (a, b) = p.split_once(',')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect();
        if let [(ax, ay), (bx, by)] = pts[..] {
            if ax == bx && (ay - by).abs() > 60.0 {
                v.push((ax, ay.min(by), ay.max(by)));
            } else if ay == by && (ax - bx).abs() > 20.0 {
                h.push((ax.min(bx), ax.max(bx), ay));
            }
        }
    }
    v.iter()
        .filter_map(|&(x, top, bottom)| {
            let &(_, x1, _) = h
                .iter()
                .find(|&&(hx0, _, hy)| (hx0 - x).abs() <= 2.0 && (hy - bottom).abs() <= 2.0)?;
            Some((x, top, x1, bottom))
        })
        .collect()
}

/// Everything a reader would object to in one SVG, in words.
pub fn problems(svg: &str) -> Vec<String> {
    let ((w, h), boxes) = text_boxes(svg);
    let mut out = Vec::new();
    for b in &boxes {
        if b.x0 < -SLACK || b.y0 < -SLACK || b.x1 > w + SLACK || b.y1 > h + SLACK {
            out.push(format!(
                "{:?} leaves the {w}×{h} canvas: x {:.0}..{:.0}, y {:.0}..{:.0}",
                b.text, b.x0, b.x1, b.y0, b.y1
            ));
        }
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let ox = a.x1.min(b.x1) - a.x0.max(b.x0);
            let oy = a.y1.min(b.y1) - a.y0.max(b.y0);
            if ox > SLACK && oy > SLACK {
                out.push(format!(
                    "{:?} and {:?} overlap by {ox:.0}×{oy:.0} px (at x {:.0}, y {:.0})",
                    a.text,
                    b.text,
                    a.x0.max(b.x0),
                    a.y0.max(b.y0)
                ));
            }
        }
    }
    for (x0, y0, x1, y1) in plot_areas(svg) {
        let (pw, ph) = (x1 - x0, y1 - y0);
        if pw < MIN_ASPECT * ph {
            out.push(format!(
                "the plot area at x {x0:.0}, y {y0:.0} is {pw:.0} px wide for {ph:.0} px high"
            ));
        }
    }
    out
}

//! Figure legends: one entry type, one layout and one drawing for every
//! figure, so that legends look alike across the report.
//!
//! Entries are laid out in centred rows that wrap at the figure's width.
//! The layout measures text with the embedded font's advances and kerning,
//! exactly as plotters' `estimate_text_size` does, but without a drawing
//! area: a figure knows its legend's height before it creates its canvas.

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{
    hollow_marker, pe, text_style, untrusted_text, INK, LEGEND_PX, MARKER_R, NOTE_PX, REF_GREY,
};

/// What stands before an entry's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sample {
    /// A line of this width.
    Line(u32),
    /// A dashed line of this width.
    Dashed(u32),
    /// Short dashes: the layer-mass-matched null.
    Dotted,
    /// A filled swatch: a band or a stacked area.
    Swatch,
    /// A hollow marker: the untrusted-points note.
    Hollow,
    /// Text only.
    Text,
}

/// One legend entry: its sample and its text.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub color: RGBColor,
    pub sample: Sample,
    pub text: String,
    pub px: f64,
    pub text_color: RGBColor,
}

impl Entry {
    /// A sample in `color` and its text in ink.
    pub fn new(color: RGBColor, sample: Sample, text: impl Into<String>) -> Entry {
        Entry {
            color,
            sample,
            text: text.into(),
            px: LEGEND_PX,
            text_color: INK,
        }
    }

    /// A solid or dashed line sample.
    pub fn line(color: RGBColor, width: u32, dashed: bool, text: String) -> Entry {
        let sample = if dashed {
            Sample::Dashed(width)
        } else {
            Sample::Line(width)
        };
        Entry::new(color, sample, text)
    }

    /// A grey note, with no sample.
    pub fn note(text: impl Into<String>) -> Entry {
        Entry {
            color: REF_GREY,
            sample: Sample::Text,
            text: text.into(),
            px: NOTE_PX,
            text_color: REF_GREY,
        }
    }

    /// The note on what lines and bands mean, when some group has several seeds.
    pub fn seeds_note(several_seeds: bool) -> Option<Entry> {
        several_seeds.then(|| Entry::note("line: mean over seeds · band: min–max"))
    }

    /// The note on hollow markers, when some point is built on an untrusted
    /// pair (a mean over seeds is, when any of its inputs is).
    pub fn untrusted_note(any_untrusted: bool, all_untrusted: bool) -> Option<Entry> {
        let text = untrusted_text(any_untrusted, all_untrusted)?;
        Some(Entry {
            color: INK,
            sample: Sample::Hollow,
            text: text.to_string(),
            px: NOTE_PX,
            text_color: INK,
        })
    }

    /// The room its sample takes before the text.
    fn sample_w(&self) -> i32 {
        match self.sample {
            Sample::Text => 0,
            Sample::Hollow => HOLLOW_SAMPLE_W,
            _ => SAMPLE_W + SAMPLE_GAP,
        }
    }
}

const SAMPLE_W: i32 = 84;
const SAMPLE_GAP: i32 = 16;
const ENTRY_GAP: i32 = 64;
const ROW_H: i32 = 62;
const MARGIN: i32 = 40;
/// The room a hollow-marker sample takes before its text.
const HOLLOW_SAMPLE_W: i32 = 2 * MARKER_R + 2 * SAMPLE_GAP;

/// The width of `text` at `px` in the embedded font, as plotters measures
/// it (advances plus kerning, truncated to whole pixels).
pub(crate) fn text_width(text: &str, px: f64) -> i32 {
    let Ok(font) = FontRef::try_from_slice(crate::font::FONT_BYTES) else {
        return 0;
    };
    let font = font.as_scaled(px as f32);
    let mut w = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        w += font.h_advance(id);
        if let Some(p) = prev {
            w += font.kern(p, id);
        }
        prev = Some(id);
    }
    w as i32
}

/// Where each entry goes: per entry its row and x offset, per row its width
/// (rows are centred).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    placed: Vec<(usize, i32)>,
    rows: Vec<i32>,
    width: u32,
}

impl Layout {
    /// Lays `entries` out in rows that fit `width` pixels.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a Entry>, width: u32) -> Layout {
        let max_w = width as i32 - 2 * MARGIN;
        let mut placed = Vec::new();
        let mut rows: Vec<i32> = vec![0];
        for e in entries {
            let w = text_width(&e.text, e.px) + e.sample_w();
            let row = rows.len() - 1;
            let cur = rows[row];
            if cur > 0 && cur + ENTRY_GAP + w > max_w {
                rows.push(w);
                placed.push((row + 1, 0));
            } else {
                let x = if cur > 0 { cur + ENTRY_GAP } else { 0 };
                rows[row] = x + w;
                placed.push((row, x));
            }
        }
        Layout {
            placed,
            rows,
            width,
        }
    }

    /// The legend's height in pixels, margins included.
    pub fn height(&self) -> u32 {
        (MARGIN + self.rows.len() as i32 * ROW_H) as u32
    }

    /// Draws `entries` (those it was laid out for) at the top of `area`.
    pub fn draw<'a, DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), String> {
        for (e, &(row, x)) in entries.into_iter().zip(&self.placed) {
            let left = (self.width as i32 - self.rows[row]) / 2 + x;
            let y = MARGIN / 2 + row as i32 * ROW_H + ROW_H / 2;
            let seg = vec![(left, y), (left + SAMPLE_W, y)];
            match e.sample {
                Sample::Line(w) => area
                    .draw(&PathElement::new(seg, e.color.stroke_width(w)))
                    .map_err(pe)?,
                Sample::Dashed(w) => area
                    .draw(&DashedPathElement::new(
                        seg,
                        22,
                        12,
                        e.color.stroke_width(w),
                    ))
                    .map_err(pe)?,
                Sample::Dotted => area
                    .draw(&DashedPathElement::new(seg, 6, 10, e.color.stroke_width(4)))
                    .map_err(pe)?,
                Sample::Swatch => area
                    .draw(&Rectangle::new(
                        [(left, y - 16), (left + SAMPLE_W, y + 16)],
                        e.color.filled(),
                    ))
                    .map_err(pe)?,
                Sample::Hollow => {
                    for c in hollow_marker((left + SAMPLE_GAP + MARKER_R, y), MARKER_R + 2, e.color)
                    {
                        area.draw(&c).map_err(pe)?;
                    }
                }
                Sample::Text => {}
            }
            let style = text_style(e.px, e.text_color).pos(Pos::new(HPos::Left, VPos::Center));
            area.draw(&Text::new(e.text.clone(), (left + e.sample_w(), y), style))
                .map_err(pe)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout's widths are plotters' own measurements (so rows never
    /// overflow what is drawn), and rows wrap at the width.
    #[test]
    fn text_width_matches_plotters_and_rows_wrap() {
        crate::font::ensure_registered().unwrap();
        let mut buf = vec![0u8; 600 * 100 * 3];
        let area = BitMapBackend::with_buffer(&mut buf, (600, 100)).into_drawing_area();
        for (text, px) in [("λ₁ of P⁻¹H", LEGEND_PX), ("Adam (η=1e-3) · 10⁻³", NOTE_PX)]
        {
            let (w, _) = area.estimate_text_size(text, &text_style(px, INK)).unwrap();
            assert_eq!(text_width(text, px), w as i32, "{text}");
        }
        let e: Vec<Entry> = (0..12)
            .map(|i| Entry::line(INK, 5, false, format!("setting {i}")))
            .collect();
        let one = Layout::new(&e[..1], 2400);
        assert_eq!(one.rows.len(), 1);
        let many = Layout::new(&e, 1200);
        assert!(many.rows.len() > 1);
        assert!(many.rows.iter().all(|&w| w <= 1200 - 2 * MARGIN));
        assert_eq!(
            many.height(),
            (MARGIN + many.rows.len() as i32 * ROW_H) as u32
        );
    }
}

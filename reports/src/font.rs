//! The embedded font. Figures never depend on system fonts or fontconfig:
//! DejaVu Sans (Bitstream Vera license, `assets/DejaVuSans-LICENSE.txt`) is
//! compiled into the library and registered with plotters once.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use crate::error::ReportError;

/// The family every text style in this crate uses. The font is registered
/// under this name and under plain "sans-serif"; the SVG output names it as a
/// CSS font list, so a viewer with DejaVu Sans shows the PNG's metrics and
/// any other falls back to its sans-serif.
pub(crate) const FAMILY: &str = "DejaVu Sans, sans-serif";

/// DejaVu Sans: covers Latin, Greek (λ, η), sub/superscript digits and the
/// math symbols the figures use.
pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the embedded font under [`FAMILY`] exactly once per process.
pub(crate) fn ensure_registered() -> Result<(), ReportError> {
    REGISTERED
        .get_or_init(|| {
            ["sans-serif", FAMILY]
                .into_iter()
                .try_for_each(|name| register_font(name, FontStyle::Normal, FONT_BYTES))
                .map_err(|_| "not a valid TrueType/OpenType font".to_string())
        })
        .clone()
        .map_err(ReportError::Font)
}

#[cfg(test)]
mod tests {
    use ab_glyph::{Font, FontRef};

    use super::FONT_BYTES;

    /// λ, η, subscripts, superscripts, ·, −, – and × all have glyphs, so no
    /// label renders as empty boxes.
    #[test]
    fn embedded_font_covers_every_label() {
        let font = FontRef::try_from_slice(FONT_BYTES).expect("valid font");
        for text in crate::figures::TEXTS
            .iter()
            .chain(crate::fig_dynamics::TEXTS)
        {
            for c in text.chars().filter(|c| !c.is_whitespace()) {
                assert_ne!(font.glyph_id(c).0, 0, "no glyph for {c:?} in {text:?}");
            }
        }
        super::ensure_registered().expect("registers");
        super::ensure_registered().expect("registers twice");
    }
}

//! PDF copies of the SVG figures, for LaTeX: svg2pdf converts usvg's tree of
//! each SVG the report wrote, with the embedded font, so that text stays
//! text (selectable, searchable) and needs no font on the reader's machine.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use svg2pdf::usvg;
use svg2pdf::{ConversionOptions, PageOptions};

use crate::error::ReportError;

/// The embedded DejaVu Sans, as usvg's font database (built once).
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_font_data(crate::font::FONT_BYTES.to_vec());
            db.set_sans_serif_family("DejaVu Sans");
            Arc::new(db)
        })
        .clone()
}

/// Writes `<stem>.pdf` from `<stem>.svg` in `out_dir`; returns its file name.
pub(crate) fn from_svg(out_dir: &Path, stem: &str) -> Result<String, ReportError> {
    let svg_path = out_dir.join(format!("{stem}.svg"));
    let pdf_name = format!("{stem}.pdf");
    let pdf_path = out_dir.join(&pdf_name);
    let fail = |file: &Path, message: String| ReportError::Plot {
        file: file.to_path_buf(),
        message,
    };
    let svg = std::fs::read_to_string(&svg_path).map_err(|e| fail(&svg_path, e.to_string()))?;
    let options = usvg::Options {
        fontdb: fonts(),
        font_family: "DejaVu Sans".into(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(&svg, &options)
        .map_err(|e| fail(&svg_path, format!("SVG for the PDF: {e}")))?;
    let pdf = svg2pdf::to_pdf(&tree, ConversionOptions::default(), PageOptions::default())
        .map_err(|e| fail(&pdf_path, format!("PDF conversion: {e}")))?;
    std::fs::write(&pdf_path, pdf).map_err(|e| fail(&pdf_path, e.to_string()))?;
    Ok(pdf_name)
}

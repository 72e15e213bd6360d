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
    std::fs::write(&pdf_path, canonical(pdf)).map_err(|e| fail(&pdf_path, e.to_string()))?;
    Ok(pdf_name)
}

/// The PDF with the entries of its resource dictionaries in sorted order.
///
/// svg2pdf writes a page's resource dictionaries (`/XObject`, `/ExtGState`,
/// …) from hash maps, so their entry order, and with it the file's bytes,
/// changes from run to run. Results must be byte-identical for the same
/// inputs (the store hashes them, `audit --reproduce` compares them), so
/// each run of lines `/name N 0 R` between a `<<` line and its `>>` is
/// sorted. Sorting lines within one object keeps every object's offset, so
/// the cross-reference table stays valid.
fn canonical(pdf: Vec<u8>) -> Vec<u8> {
    let is_ref = |line: &[u8]| -> bool {
        let t = String::from_utf8_lossy(line);
        let mut parts = t.trim().split(' ');
        matches!(
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
            (Some(n), Some(num), Some("0"), Some("R"), None)
                if n.starts_with('/') && n.len() > 1 && num.bytes().all(|b| b.is_ascii_digit())
        )
    };
    let mut lines: Vec<&[u8]> = pdf.split_inclusive(|&b| b == b'\n').collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].ends_with(b"<<\n") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && is_ref(lines[end]) {
                end += 1;
            }
            if end > start + 1
                && end < lines.len()
                && String::from_utf8_lossy(lines[end]).trim() == ">>"
            {
                lines[start..end].sort();
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    lines.concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_entries_are_sorted_and_nothing_else_moves() {
        let a = b"%PDF-1.7\n4 0 obj\n<<\n  /Resources <<\n    /XObject <<\n      /xo1 10 0 R\n      /xo0 8 0 R\n    >>\n    /Font <<\n      /fo0 1 0 R\n    >>\n  >>\n>>\nendobj\nstream\n/b 2 0 R\n/a 1 0 R\nendstream\n".to_vec();
        let b = b"%PDF-1.7\n4 0 obj\n<<\n  /Resources <<\n    /XObject <<\n      /xo0 8 0 R\n      /xo1 10 0 R\n    >>\n    /Font <<\n      /fo0 1 0 R\n    >>\n  >>\n>>\nendobj\nstream\n/b 2 0 R\n/a 1 0 R\nendstream\n".to_vec();
        assert_eq!(super::canonical(a.clone()), super::canonical(b.clone()));
        assert_eq!(super::canonical(b.clone()), b, "already sorted: unchanged");
        assert_eq!(super::canonical(a.clone()).len(), a.len());
    }
}

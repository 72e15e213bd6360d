//! Helpers shared by the report tests: writing synthetic Arrow files,
//! deterministic noise, keeping copies of figures, and checking SVGs.
#![allow(dead_code)]

use polars::prelude::*;
use polars_io::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};

pub fn write_ipc(path: &Path, mut df: DataFrame) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = File::create(path).unwrap();
    IpcWriter::new(&mut f).finish(&mut df).unwrap();
}

/// A deterministic "noise" in [-1, 1].
pub fn wiggle(seed: u64, i: usize) -> f64 {
    (((i as f64 + 1.0) * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453).fract()
}

pub fn keep_copy(out: &Path, names: &[String], sub: &str) {
    if let Some(dir) = std::env::var_os("REPORTS_KEEP_FIGURES").map(|d| PathBuf::from(d).join(sub))
    {
        std::fs::create_dir_all(&dir).unwrap();
        for n in names {
            std::fs::copy(out.join(n), dir.join(n)).unwrap();
        }
    }
}

pub fn svg_text_elements(svg: &str) -> usize {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let (mut texts, mut root) = (0, None);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
                if root.is_none() {
                    root = Some(name.clone());
                }
                if name == "text" {
                    texts += 1;
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "SVG is not well-formed XML at {}: {e}",
                reader.buffer_position()
            ),
        }
    }
    assert_eq!(root.as_deref(), Some("svg"), "root element");
    texts
}

/// A run as the report sees it: its ids and the contract's paths under
/// `root`, with `files` (logical name → path).
pub fn run_input(
    run_id: &str,
    optimizer: &str,
    label: &str,
    root: &Path,
    files: std::collections::BTreeMap<String, PathBuf>,
) -> reports::RunInput {
    reports::RunInput {
        run_id: run_id.to_string(),
        optimizer: optimizer.to_string(),
        label: label.to_string(),
        train: root.join("train.arrow"),
        values: root.join("eigen/values.arrow"),
        localization: root.join("metrics/localization.arrow"),
        overlap: root.join("metrics/overlap.arrow"),
        files,
        params: serde_json::json!({}),
    }
}

/// Adds (or replaces) a bool column `name` of the Arrow file at `path`: true
/// on a row when every column of `time_cols` is below `from` (the trust of
/// a run whose pairs from step `from` on are unconverged or unresolvable;
/// `i64::MAX`: every row trusted).
pub fn set_trust(path: &Path, name: &str, time_cols: &[&str], from: i64) {
    let mut df = IpcReader::new(File::open(path).unwrap()).finish().unwrap();
    let mut ok = vec![true; df.height()];
    for c in time_cols {
        let c = df.column(c).unwrap().cast(&DataType::Int64).unwrap();
        for (o, t) in ok.iter_mut().zip(c.i64().unwrap().iter()) {
            *o &= t.unwrap() < from;
        }
    }
    df.with_column(Column::new(name.into(), ok)).unwrap();
    write_ipc(path, df);
}

/// The `<circle>` elements of an SVG drawn hollow (`fill="none"`).
pub fn hollow_circles(svg: &str) -> usize {
    svg.split("<circle")
        .skip(1)
        .filter(|c| c.split('>').next().unwrap_or("").contains("fill=\"none\""))
        .count()
}

pub const UNTRUSTED_NOTE: &str = "hollow: untrusted pair (unconverged or below the rounding level)";

pub mod full;
pub mod layout;

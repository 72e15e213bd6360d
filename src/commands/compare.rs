//! `eigentrace compare A B`: how far apart two runs' numbers are, file by
//! file and column by column.
//!
//! A and B are two output folders (e.g. `out/paper` and `out/paper-f16`, or
//! one run's folders) or two Arrow files. Every Arrow file under A is paired
//! with the file at the same relative path under B, and each column with the
//! column of the same name, row by row. For numbers (and lists of numbers,
//! such as the stored eigenvectors, in any `vector_dtype`) the result is the
//! largest absolute difference, the largest |value| in A (the column's
//! scale) and their ratio; for strings and booleans, the count of rows that
//! differ. It answers "what did this change do to my results?": f16 against
//! f32 vectors, CUDA against CPU, one machine against another.

use crate::*;
use arrow_array::{cast::AsArray, types, Array, ArrayRef};
use arrow_schema::DataType;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
pub(crate) struct ColumnDiff {
    pub file: String,
    pub column: String,
    /// Values (list entries for list columns) compared.
    pub values: usize,
    /// Entries that differ at all (NaN equals NaN).
    pub differing: usize,
    /// max |a − b| (numbers only).
    pub max_abs: Option<f64>,
    /// max |a| over the column in A (numbers only).
    pub scale: Option<f64>,
    /// max_abs / scale (numbers only; 0 when both are 0).
    pub relative: Option<f64>,
    /// Why the column could not be compared (missing in B, other length…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// The Arrow files under `root` (or `root` itself), as relative paths.
fn arrow_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if root.is_file() {
        return Ok(vec![PathBuf::new()]);
    }
    anyhow::ensure!(root.is_dir(), "{}: no such file or folder", root.display());
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "arrow") {
                out.push(p.strip_prefix(root)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A column as numbers, one Vec per row (one entry for scalar columns),
/// or None for a column that is not numeric.
fn numbers(t: &stages::arrow_io::Table, name: &str, a: &ArrayRef) -> Option<Vec<Vec<f64>>> {
    // One value per row, a null as NaN.
    fn scalars<T: arrow_array::ArrowPrimitiveType>(
        a: &ArrayRef,
        f: impl Fn(T::Native) -> f64,
    ) -> Option<Vec<Vec<f64>>> {
        let c = a.as_primitive::<T>();
        Some(
            (0..c.len())
                .map(|i| {
                    vec![if c.is_null(i) {
                        f64::NAN
                    } else {
                        f(c.value(i))
                    }]
                })
                .collect(),
        )
    }
    match a.data_type() {
        DataType::Float64 => scalars::<types::Float64Type>(a, |x| x),
        DataType::Float32 => scalars::<types::Float32Type>(a, f64::from),
        DataType::Int64 => scalars::<types::Int64Type>(a, |x| x as f64),
        DataType::Int32 => scalars::<types::Int32Type>(a, f64::from),
        DataType::UInt32 => scalars::<types::UInt32Type>(a, f64::from),
        DataType::List(_) | DataType::LargeList(_) => (0..a.len())
            .map(|i| t.vector_row(name, i).ok().or_else(|| f64_list_row(a, i)))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
}

/// Row `i` of a list (or large list) of float64, None for anything else.
fn f64_list_row(a: &ArrayRef, i: usize) -> Option<Vec<f64>> {
    let v = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(i),
        DataType::LargeList(_) => a.as_list::<i64>().value(i),
        _ => return None,
    };
    let f = v.as_primitive_opt::<types::Float64Type>()?;
    Some(
        (0..f.len())
            .map(|j| if f.is_null(j) { f64::NAN } else { f.value(j) })
            .collect(),
    )
}

/// Rows whose rendering differs, for columns that are not numbers.
fn differing_rows(a: &ArrayRef, b: &ArrayRef) -> usize {
    match (a.data_type(), b.data_type()) {
        (DataType::Utf8, DataType::Utf8) => {
            let (x, y) = (a.as_string::<i32>(), b.as_string::<i32>());
            (0..x.len()).filter(|&i| x.value(i) != y.value(i)).count()
        }
        (DataType::Boolean, DataType::Boolean) => {
            let (x, y) = (a.as_boolean(), b.as_boolean());
            (0..x.len())
                .filter(|&i| x.is_null(i) != y.is_null(i) || x.value(i) != y.value(i))
                .count()
        }
        // Anything else, by Arrow's logical equality of each one-row slice.
        _ => (0..a.len())
            .filter(|&i| a.slice(i, 1).to_data() != b.slice(i, 1).to_data())
            .count(),
    }
}

fn compare_file(a: &Path, b: &Path, rel: &str) -> anyhow::Result<Vec<ColumnDiff>> {
    let (ta, tb) = (
        stages::arrow_io::Table::open(a)?,
        stages::arrow_io::Table::open(b)?,
    );
    let mut out = Vec::new();
    let schema = ta.batch.schema();
    for (f, ca) in schema.fields().iter().zip(ta.batch.columns()) {
        let name = f.name();
        let mut d = ColumnDiff {
            file: rel.to_string(),
            column: name.clone(),
            values: 0,
            differing: 0,
            max_abs: None,
            scale: None,
            relative: None,
            mismatch: None,
        };
        let Some(cb) = tb.batch.column_by_name(name) else {
            d.mismatch = Some("missing in B".into());
            out.push(d);
            continue;
        };
        if ca.len() != cb.len() {
            d.mismatch = Some(format!("{} rows in A, {} in B", ca.len(), cb.len()));
            out.push(d);
            continue;
        }
        match (numbers(&ta, name, ca), numbers(&tb, name, cb)) {
            (Some(xa), Some(xb)) => {
                let (mut max_abs, mut scale) = (0.0f64, 0.0f64);
                for (i, (ra, rb)) in xa.iter().zip(&xb).enumerate() {
                    if ra.len() != rb.len() {
                        d.mismatch = Some(format!(
                            "row {i}: {} entries in A, {} in B",
                            ra.len(),
                            rb.len()
                        ));
                        break;
                    }
                    for (&x, &y) in ra.iter().zip(rb) {
                        d.values += 1;
                        let same = x == y || (x.is_nan() && y.is_nan());
                        if !same {
                            d.differing += 1;
                            let diff = (x - y).abs();
                            max_abs = if diff.is_nan() {
                                f64::INFINITY
                            } else {
                                max_abs.max(diff)
                            };
                        }
                        if x.is_finite() {
                            scale = scale.max(x.abs());
                        }
                    }
                }
                if d.mismatch.is_none() {
                    d.max_abs = Some(max_abs);
                    d.scale = Some(scale);
                    d.relative = Some(if max_abs == 0.0 { 0.0 } else { max_abs / scale });
                }
            }
            (None, None) if ca.data_type() == cb.data_type() => {
                d.values = ca.len();
                d.differing = differing_rows(ca, cb);
            }
            _ => d.mismatch = Some(format!("{} in A, {} in B", ca.data_type(), cb.data_type())),
        }
        out.push(d);
    }
    Ok(out)
}

/// Every column of every Arrow file under `a`, against `b`.
pub(crate) fn compare_trees(a: &Path, b: &Path) -> anyhow::Result<(Vec<ColumnDiff>, Vec<String>)> {
    let files = arrow_files(a)?;
    anyhow::ensure!(
        !files.is_empty(),
        "{}: no Arrow files under it",
        a.display()
    );
    let (mut diffs, mut missing) = (Vec::new(), Vec::new());
    for rel in files {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let shown = if rel.as_os_str().is_empty() {
            a.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            rel.display().to_string()
        };
        if !pb.is_file() {
            missing.push(shown);
            continue;
        }
        diffs.extend(compare_file(&pa, &pb, &shown)?);
    }
    Ok((diffs, missing))
}

pub(crate) fn cmd_compare(cli: &Cli, a: &CompareArgs) -> Result<(), Failure> {
    let (diffs, missing) = compare_trees(&a.a, &a.b).map_err(usage)?;
    let over: Vec<&ColumnDiff> = diffs
        .iter()
        .filter(|d| {
            d.mismatch.is_some()
                || match (a.tol, d.relative) {
                    (Some(t), Some(r)) => r > t,
                    (Some(_), None) => d.differing > 0,
                    (None, _) => false,
                }
        })
        .collect();
    if cli.json {
        let v = serde_json::json!({
            "a": a.a, "b": a.b, "tol": a.tol, "columns": diffs, "missing_in_b": missing,
            "over_tol": over.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        let shown: Vec<&ColumnDiff> = diffs
            .iter()
            .filter(|d| a.all || d.differing > 0 || d.mismatch.is_some())
            .collect();
        println!(
            "{:<48} {:<22} {:>10} {:>10} {:>10} {:>10}",
            "file", "column", "differing", "max |Δ|", "max |A|", "relative"
        );
        for d in &shown {
            let g = |x: Option<f64>| x.map(|x| format!("{x:.2e}")).unwrap_or_else(|| "-".into());
            match &d.mismatch {
                Some(m) => println!("{:<48} {:<22} {m}", d.file, d.column),
                None => println!(
                    "{:<48} {:<22} {:>10} {:>10} {:>10} {:>10}",
                    d.file,
                    d.column,
                    format!("{}/{}", d.differing, d.values),
                    g(d.max_abs),
                    g(d.scale),
                    g(d.relative)
                ),
            }
        }
        let same = diffs
            .iter()
            .filter(|d| d.differing == 0 && d.mismatch.is_none())
            .count();
        println!(
            "{} columns compared: {same} identical, {} differ{}",
            diffs.len(),
            diffs.len() - same,
            if a.all {
                ""
            } else {
                " (shown; --all lists every column)"
            }
        );
        for m in &missing {
            println!("only in A: {m}");
        }
    }
    if let Some(t) = a.tol {
        if !over.is_empty() || !missing.is_empty() {
            return Err(Failure {
                code: 1,
                err: anyhow::anyhow!(
                    "{} columns differ by more than {t:e} relative (or cannot be compared), {} files are missing in {}",
                    over.len(),
                    missing.len(),
                    a.b.display()
                ),
            });
        }
    }
    Ok(())
}

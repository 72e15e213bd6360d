//! The readable results view, `out/<experiment>/`, rebuilt from the store.
//!
//! Files are hard links to the (read-only) objects, or copies where the out
//! directory is on another filesystem. The view is built beside the old one
//! and swapped in, so a reader never sees a half-built tree. Deleting it loses
//! nothing: the next `run` restores it without recomputing.

use crate::error::{IoContext, Result};
use crate::record::Record;
use crate::store::Store;
use std::fs;
use std::path::{Path, PathBuf};

/// Rebuild `dest` from the outputs of `records` (each placed under its `view`
/// directory). Later records win where two place the same path.
pub fn materialize(store: &Store, dest: &Path, records: &[&Record]) -> Result<PathBuf> {
    // The view is a function of the records' keys and places: when the last
    // build was of the same ones and every file is still there, keep it.
    let manifest: String = records
        .iter()
        .map(|r| format!("{} {}\n", r.key, r.view))
        .collect();
    let stamp = dest.join(".eigentrace-view");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(manifest.as_str())
        && view_intact(dest, records)
    {
        return Ok(dest.to_path_buf());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).at(parent)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "view".into());
    // Leftovers of a build that was killed.
    if let Ok(rd) = fs::read_dir(parent) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&format!(".{name}.building."))
                || f.starts_with(&format!(".{name}.old."))
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let staging = parent.join(format!(".{name}.building.{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).at(&staging)?;
    }
    fs::create_dir_all(&staging).at(&staging)?;
    for (n, rec) in records.iter().enumerate() {
        if n == records.len() / 2 {
            crate::failpoint::hit("view-half");
        }
        for (rel, obj) in &rec.outputs {
            let target = if rec.view.is_empty() {
                staging.join(rel)
            } else {
                staging.join(&rec.view).join(rel)
            };
            if let Some(p) = target.parent() {
                fs::create_dir_all(p).at(p)?;
            }
            if target.exists() {
                fs::remove_file(&target).at(&target)?;
            }
            let src = store.object_path(&obj.hash);
            if fs::hard_link(&src, &target).is_err() {
                fs::copy(&src, &target).at(&target)?;
            }
        }
    }
    fs::write(staging.join(".eigentrace-view"), &manifest).at(&staging)?;
    let old = parent.join(format!(".{name}.old.{}", std::process::id()));
    if dest.exists() {
        fs::rename(dest, &old).at(dest)?;
    }
    fs::rename(&staging, dest).at(dest)?;
    if old.exists() {
        fs::remove_dir_all(&old).at(&old)?;
    }
    Ok(dest.to_path_buf())
}

/// Every output of `records` is present in the view with its recorded size.
fn view_intact(dest: &Path, records: &[&Record]) -> bool {
    records.iter().all(|r| {
        r.outputs.iter().all(|(rel, obj)| {
            let p = if r.view.is_empty() {
                dest.join(rel)
            } else {
                dest.join(&r.view).join(rel)
            };
            fs::metadata(p)
                .map(|m| m.len() == obj.size)
                .unwrap_or(false)
        })
    })
}

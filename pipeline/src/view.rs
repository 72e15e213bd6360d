//! The readable results view, `out/<experiment>/`, rebuilt from the store.
//!
//! The view is eigentrace's own folder, and it says so: a stamp file,
//! `.eigentrace-view`, names the store it was built from and every file
//! eigentrace placed in it (with the object each is). So:
//!
//! - a folder without the stamp (someone's `src/`, say) is never replaced:
//!   [`materialize`] refuses, and the CLI exits 2 with the fix;
//! - a view built from another store is never replaced either (two stores
//!   sharing one `--out` would otherwise overwrite each other's results);
//! - files a user adds under the view (notes, analysis) are carried over into
//!   every rebuild; only files eigentrace placed are replaced or removed;
//! - an edited result is found by content, not by size: a file that is not
//!   the object itself (same inode) and whose mtime moved is rehashed, and
//!   restored when it differs.
//!
//! Files are reflinks of the (read-only) objects where the filesystem can
//! (btrfs, XFS), else hard links, else copies. A hard link shares its bytes
//! with the store: an edit in place through it changes the object, whose
//! sentinel mtime then moves, so the engine rehashes it, finds it corrupt and
//! recomputes it, and the view is rebuilt from the new object.
//!
//! The view is built beside the old one and swapped in atomically
//! (`renameat2(RENAME_EXCHANGE)` where the kernel has it), so a reader never
//! sees a half-built tree and a crash never loses a user's file. Deleting
//! the view loses nothing: the next `run` restores it without recomputing.

use crate::error::{IoContext, PipelineError, Result};
use crate::record::{ObjectRef, Record};
use crate::store::{hash_file, make_writable_recursive, object_mtime, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The stamp file's name, at the view's root.
pub const STAMP: &str = ".eigentrace-view";

/// What the stamp says (JSON; format 1 was a plain list of `key view` lines).
#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    format: u32,
    /// The id of the store the view was built from ([`Store::id`]).
    store: String,
    /// Where that store was, for messages.
    store_path: String,
    /// (key, view dir) of the records the view shows.
    records: Vec<(String, String)>,
    /// Every file eigentrace placed: relative path → object hash.
    files: BTreeMap<String, String>,
}

/// The records the view holding `file` shows, with `file`'s path
/// relative to each one's folder, for those whose folder holds it (from the
/// nearest `.eigentrace-view` above `file`); empty when `file` is in no
/// view. This tells apart records that produced identical bytes: the one
/// whose output `name` is this very file is the one the view shows here.
pub fn records_at(file: &Path) -> Vec<(String, PathBuf)> {
    let Ok(file) = file.canonicalize() else {
        return Vec::new();
    };
    for root in file.ancestors().skip(1) {
        let Ok(text) = fs::read_to_string(root.join(STAMP)) else {
            continue;
        };
        let (Ok(stamp), Ok(rel)) = (
            serde_json::from_str::<Stamp>(&text),
            file.strip_prefix(root),
        ) else {
            return Vec::new();
        };
        return stamp
            .records
            .into_iter()
            .filter_map(|(key, dir)| Some((key, rel.strip_prefix(&dir).ok()?.to_path_buf())))
            .collect();
    }
    Vec::new()
}

/// What [`materialize`] did.
#[derive(Debug, Default, Serialize)]
pub struct ViewReport {
    pub path: PathBuf,
    /// Whether the view was rebuilt (false: it was already current).
    pub rebuilt: bool,
    /// Results that were edited or deleted in the view and are now restored.
    pub restored: Vec<String>,
    /// Files the user added to the view, carried over.
    pub kept: Vec<String>,
    /// User files that stood where a result now goes: (was, now).
    pub moved_aside: Vec<(String, String)>,
}

/// Every output of `records`, by its path in the view (later records win).
fn wanted(records: &[&Record]) -> BTreeMap<String, ObjectRef> {
    let mut out = BTreeMap::new();
    for r in records {
        for (rel, obj) in &r.outputs {
            let p = if r.view.is_empty() {
                rel.clone()
            } else {
                format!("{}/{rel}", r.view)
            };
            out.insert(p, obj.clone());
        }
    }
    out
}

/// The previous view at `dest`, if it is eigentrace's: its stamp, and the
/// files it placed. Refuses a folder that is someone else's.
fn previous(store: &Store, store_id: &str, dest: &Path) -> Result<Option<Stamp>> {
    let meta = match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(dest),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(PipelineError::Refused(format!(
            "{}: exists and is not a folder eigentrace made; it was left alone. \
             Choose another --out (or experiment name), or move it away",
            dest.display()
        )));
    }
    let text = match fs::read_to_string(dest.join(STAMP)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if fs::read_dir(dest).at(dest)?.next().is_none() {
                return Ok(None); // an empty folder: ours to fill
            }
            return Err(PipelineError::Refused(format!(
                "{}: this folder exists and was not made by eigentrace (it has no {STAMP} stamp), \
                 so eigentrace will not replace it. Choose another --out or experiment `name`, \
                 or move the folder away",
                dest.display()
            )));
        }
        Err(e) => return Err(e).at(dest.join(STAMP)),
    };
    if let Ok(stamp) = serde_json::from_str::<Stamp>(&text) {
        if stamp.store != store_id {
            return Err(PipelineError::Refused(format!(
                "{}: holds the results of another store ({}); two stores cannot share one view. \
                 Pass another --out, or --store {} to use that store",
                dest.display(),
                stamp.store_path,
                stamp.store_path
            )));
        }
        return Ok(Some(stamp));
    }
    // Format 1: `key view` lines. Its files are the outputs of those records.
    let mut records = Vec::new();
    for line in text.lines() {
        match line.split_once(' ') {
            Some((key, view)) if key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()) => {
                records.push((key.to_string(), view.to_string()))
            }
            _ => {
                return Err(PipelineError::Refused(format!(
                    "{}: its {STAMP} stamp is not eigentrace's; the folder was left alone. \
                     Choose another --out, or move the folder away",
                    dest.display()
                )))
            }
        }
    }
    let old: Vec<Record> = records
        .iter()
        .filter_map(|(k, _)| store.read_record(k).ok().flatten())
        .collect();
    let files = wanted(&old.iter().collect::<Vec<_>>())
        .into_iter()
        .map(|(p, o)| (p, o.hash))
        .collect();
    Ok(Some(Stamp {
        format: 1,
        store: store_id.into(),
        store_path: String::new(),
        records,
        files,
    }))
}

/// Whether the file at `p` holds exactly object `obj`: it is the object
/// itself (a hard link: the engine checks the object), or it is an
/// untouched copy (size and sentinel mtime), or it rehashes to it.
fn file_is(store: &Store, p: &Path, obj: &ObjectRef) -> bool {
    let Ok(m) = fs::symlink_metadata(p) else {
        return false;
    };
    if !m.is_file() || m.len() != obj.size {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(o) = fs::metadata(store.object_path(&obj.hash)) {
            if o.dev() == m.dev() && o.ino() == m.ino() {
                return true;
            }
        }
    }
    if m.modified().map(|t| t == object_mtime()).unwrap_or(false) {
        return true;
    }
    matches!(hash_file(p), Ok((h, _)) if h.to_hex() == obj.hash)
}

/// The view's files that no longer hold their results (edited, replaced or
/// deleted), for `status`; empty when the view is current or absent.
pub fn problems(store: &Store, dest: &Path, records: &[&Record]) -> Vec<String> {
    if !dest.join(STAMP).is_file() {
        return Vec::new();
    }
    wanted(records)
        .iter()
        .filter(|(rel, obj)| {
            let p = dest.join(rel);
            p.exists() && !file_is(store, &p, obj)
        })
        .map(|(rel, _)| format!("{rel} was edited or replaced; the next run restores it"))
        .collect()
}

/// Whether a view may be built at `dest` from `store`: refuses (with the fix)
/// a folder eigentrace did not make, or one built from another store. `run`
/// asks before computing anything.
pub fn check_dest(store: &Store, dest: &Path) -> Result<()> {
    previous(store, &store.id()?, dest).map(|_| ())
}

/// Rebuild `dest` from the outputs of `records` (each placed under its `view`
/// directory). Later records win where two place the same path.
pub fn materialize(store: &Store, dest: &Path, records: &[&Record]) -> Result<ViewReport> {
    let store_id = store.id()?;
    let want = wanted(records);
    let keys: Vec<(String, String)> = records
        .iter()
        .map(|r| (r.key.clone(), r.view.clone()))
        .collect();
    let parent = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "view".into());
    if parent.exists() {
        recover_leftovers(parent, dest, &name)?;
    }
    let old = previous(store, &store_id, dest)?;
    let mut report = ViewReport {
        path: dest.to_path_buf(),
        ..Default::default()
    };
    let broken: Vec<&String> = want
        .iter()
        .filter(|(rel, obj)| !file_is(store, &dest.join(rel), obj))
        .map(|(rel, _)| rel)
        .collect();
    if let Some(stamp) = &old {
        if stamp.format >= 2 && stamp.records == keys && broken.is_empty() {
            return Ok(report);
        }
        // What was a result of the same object, and no longer is.
        report.restored = broken
            .iter()
            .filter(|rel| stamp.files.get(rel.as_str()) == Some(&want[rel.as_str()].hash))
            .map(|rel| rel.to_string())
            .collect();
    }
    report.rebuilt = true;
    fs::create_dir_all(parent).at(parent)?;
    let staging = parent.join(format!(".{name}.building.{}", std::process::id()));
    if staging.exists() {
        make_writable_recursive(&staging);
        fs::remove_dir_all(&staging).at(&staging)?;
    }
    fs::create_dir_all(&staging).at(&staging)?;
    // The user's files first (linked, so the old view keeps them until the swap).
    if let Some(stamp) = &old {
        let ours: BTreeSet<&str> = stamp.files.keys().map(String::as_str).collect();
        carry_user_files(dest, dest, &staging, &ours, &want, &mut report)?;
    }
    for (n, (rel, obj)) in want.iter().enumerate() {
        if n == want.len() / 2 {
            crate::failpoint::hit("view-half");
        }
        let target = staging.join(rel);
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).at(p)?;
        }
        place(&store.object_path(&obj.hash), &target)?;
    }
    let stamp = Stamp {
        format: 2,
        store: store_id,
        store_path: store.root().display().to_string(),
        records: keys,
        files: want
            .iter()
            .map(|(p, o)| (p.clone(), o.hash.clone()))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&stamp).expect("stamp serializes");
    fs::write(staging.join(STAMP), text).at(&staging)?;
    swap_in(&staging, dest)?;
    Ok(report)
}

/// Link (or copy) every file under `dir` of the old view that eigentrace did
/// not place into the same place in `staging`; empty folders too.
fn carry_user_files(
    root: &Path,
    dir: &Path,
    staging: &Path,
    ours: &BTreeSet<&str>,
    want: &BTreeMap<String, ObjectRef>,
    report: &mut ViewReport,
) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir).at(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = crate::engine::rel_path(root, &p);
        if rel == STAMP || ours.contains(rel.as_str()) {
            continue;
        }
        let ft = e.file_type().at(&p)?;
        if ft.is_dir() {
            let d = staging.join(&rel);
            if want.contains_key(&rel) {
                return Err(PipelineError::Refused(format!(
                    "{}: a folder of yours stands where eigentrace now puts a result; move it away",
                    p.display()
                )));
            }
            fs::create_dir_all(&d).at(&d)?;
            carry_user_files(root, &p, staging, ours, want, report)?;
            continue;
        }
        let mut to = rel.clone();
        if want.contains_key(&rel) {
            let mut n = 1;
            to = format!("{rel}.yours");
            while want.contains_key(&to) || p.with_file_name(file_name(&to)).exists() {
                n += 1;
                to = format!("{rel}.yours{n}");
            }
            report.moved_aside.push((rel.clone(), to.clone()));
        } else {
            report.kept.push(rel.clone());
        }
        let target = staging.join(&to);
        if let Some(d) = target.parent() {
            fs::create_dir_all(d).at(d)?;
        }
        if ft.is_symlink() {
            let link = fs::read_link(&p).at(&p)?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(&link, &target).at(&target)?;
        } else if fs::hard_link(&p, &target).is_err() {
            fs::copy(&p, &target).at(&target)?;
        }
    }
    Ok(())
}

fn file_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// Put object `src` at `target`: a reflink, else a hard link, else a copy
/// (read-only, with the object's sentinel mtime, so an edit shows).
fn place(src: &Path, target: &Path) -> Result<()> {
    if reflink(src, target) || fs::hard_link(src, target).is_ok() {
        return Ok(());
    }
    fs::copy(src, target).at(target)?;
    let f = fs::File::open(target).at(target)?;
    f.set_modified(object_mtime()).at(target)?;
    let mut perm = fs::metadata(target).at(target)?.permissions();
    perm.set_readonly(true);
    fs::set_permissions(target, perm).at(target)
}

/// A copy-on-write clone (FICLONE), where the filesystem supports it.
fn reflink(src: &Path, target: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        const FICLONE: libc::c_ulong = 0x4004_9409;
        let Ok(s) = fs::File::open(src) else {
            return false;
        };
        let Ok(t) = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
        else {
            return false;
        };
        // SAFETY: both descriptors are open for the duration of the call.
        let ok = unsafe { libc::ioctl(t.as_raw_fd(), FICLONE as _, s.as_raw_fd()) } == 0;
        if !ok {
            drop(t);
            let _ = fs::remove_file(target);
            return false;
        }
        let _ = t.set_modified(object_mtime());
        drop(t);
        if let Ok(m) = fs::metadata(target) {
            let mut perm = m.permissions();
            perm.set_readonly(true);
            let _ = fs::set_permissions(target, perm);
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (src, target);
        false
    }
}

/// Swap the built `staging` in for `dest`, then remove what was there.
fn swap_in(staging: &Path, dest: &Path) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        if exchange(staging, dest) {
            // `staging` now holds the old view; every user file in it is
            // also linked into the new one.
            make_writable_recursive(staging);
            fs::remove_dir_all(staging).at(staging)?;
            return Ok(());
        }
        // No atomic exchange: move the old view aside, then the new one in.
        // A crash in between leaves `.NAME.old.PID` and no `dest`, which the
        // next build moves back first (see `recover_leftovers`).
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.parent().unwrap_or(Path::new("."));
        let old = parent.join(format!(".{name}.old.{}", std::process::id()));
        fs::rename(dest, &old).at(dest)?;
        fs::rename(staging, dest).at(dest)?;
        make_writable_recursive(&old);
        fs::remove_dir_all(&old).at(&old)?;
    } else {
        fs::rename(staging, dest).at(dest)?;
    }
    Ok(())
}

/// Atomically exchange two paths (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (Ok(ca), Ok(cb)) = (
            CString::new(a.as_os_str().as_bytes()),
            CString::new(b.as_os_str().as_bytes()),
        ) else {
            return false;
        };
        const RENAME_EXCHANGE: libc::c_uint = 2;
        // SAFETY: two valid NUL-terminated paths, relative to the cwd.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                RENAME_EXCHANGE,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        false
    }
}

/// Clean up after a build that was killed: a half-built `.NAME.building.*`
/// holds only links (removed); an `.NAME.old.*` with no `dest` is the last
/// complete view, moved aside just before the crash (moved back).
fn recover_leftovers(parent: &Path, dest: &Path, name: &str) -> Result<()> {
    let Ok(rd) = fs::read_dir(parent) else {
        return Ok(());
    };
    let mut olds = Vec::new();
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&format!(".{name}.building.")) {
            make_writable_recursive(&e.path());
            let _ = fs::remove_dir_all(e.path());
        } else if f.starts_with(&format!(".{name}.old.")) {
            olds.push(e.path());
        }
    }
    for old in olds {
        if fs::symlink_metadata(dest).is_err() {
            fs::rename(&old, dest).at(dest)?;
        } else {
            make_writable_recursive(&old);
            let _ = fs::remove_dir_all(&old);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RECORD_FORMAT;

    fn record(store: &Store, view: &str, files: &[(&str, &[u8])]) -> Record {
        let mut outputs = BTreeMap::new();
        for (name, bytes) in files {
            let w = store.fresh_tmp_dir("t").unwrap();
            let p = w.join("f");
            fs::write(&p, bytes).unwrap();
            outputs.insert(name.to_string(), store.put_file(&p).unwrap());
        }
        let hashes = outputs
            .iter()
            .map(|(n, o)| (n.clone(), crate::Hash::from_hex(&o.hash).unwrap()))
            .collect();
        Record {
            format: RECORD_FORMAT,
            key: format!("{:064x}", outputs.len() + view.len()),
            id: format!("x[{view}]"),
            experiment: "e".into(),
            kind: "k".into(),
            code_version: 1,
            params: serde_json::json!({}),
            env: serde_json::json!({}),
            inputs: BTreeMap::new(),
            outputs,
            content: crate::content_hash(&hashes).to_hex(),
            view: view.into(),
            meta: serde_json::Value::Null,
            seconds: 0.0,
            finished_unix: 0,
            eigentrace_version: "t".into(),
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        (dir, store)
    }

    #[test]
    fn refuses_a_folder_it_did_not_make_and_leaves_it_alone() {
        let (dir, store) = setup();
        let dest = dir.path().join("src");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("main.rs"), b"fn main() {}").unwrap();
        let r = record(&store, "runs/a", &[("x.arrow", b"1")]);
        let err = materialize(&store, &dest, &[&r]).unwrap_err();
        assert!(matches!(err, PipelineError::Refused(_)), "{err}");
        assert!(err.to_string().contains("not made by eigentrace"), "{err}");
        assert_eq!(fs::read(dest.join("main.rs")).unwrap(), b"fn main() {}");
        // A plain file in the view's place is refused too.
        let f = dir.path().join("file");
        fs::write(&f, b"mine").unwrap();
        assert!(matches!(
            materialize(&store, &f, &[&r]),
            Err(PipelineError::Refused(_))
        ));
        assert_eq!(fs::read(&f).unwrap(), b"mine");
        // An empty folder is ours to fill.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        materialize(&store, &empty, &[&r]).unwrap();
        assert_eq!(fs::read(empty.join("runs/a/x.arrow")).unwrap(), b"1");
    }

    #[test]
    fn user_files_survive_rebuilds_and_results_are_replaced() {
        let (dir, store) = setup();
        let dest = dir.path().join("out/e");
        let a = record(&store, "runs/a", &[("x.arrow", b"one")]);
        materialize(&store, &dest, &[&a]).unwrap();
        fs::write(dest.join("notes.md"), b"my notes").unwrap();
        fs::create_dir_all(dest.join("runs/a/analysis")).unwrap();
        fs::write(dest.join("runs/a/analysis/fit.py"), b"print(1)").unwrap();
        fs::create_dir_all(dest.join("empty-dir")).unwrap();
        let b = record(&store, "runs/a", &[("x.arrow", b"two"), ("notes.md", b"r")]);
        let rep = materialize(&store, &dest, &[&b]).unwrap();
        assert!(rep.rebuilt);
        assert_eq!(fs::read(dest.join("runs/a/x.arrow")).unwrap(), b"two");
        assert_eq!(
            fs::read(dest.join("runs/a/analysis/fit.py")).unwrap(),
            b"print(1)"
        );
        assert_eq!(fs::read(dest.join("notes.md")).unwrap(), b"my notes");
        assert!(dest.join("empty-dir").is_dir());
        assert!(rep.kept.contains(&"runs/a/analysis/fit.py".to_string()));
        // A result that now goes where a user file stood moves the user's aside.
        let c = record(&store, "", &[("notes.md", b"result")]);
        let rep = materialize(&store, &dest, &[&b, &c]).unwrap();
        assert_eq!(fs::read(dest.join("notes.md")).unwrap(), b"result");
        assert_eq!(fs::read(dest.join("notes.md.yours")).unwrap(), b"my notes");
        assert_eq!(
            rep.moved_aside,
            vec![("notes.md".to_string(), "notes.md.yours".to_string())]
        );
        // Results no longer wanted go; user files stay.
        materialize(&store, &dest, &[&a]).unwrap();
        assert!(!dest.join("notes.md").exists());
        assert_eq!(fs::read(dest.join("notes.md.yours")).unwrap(), b"my notes");
        assert_eq!(fs::read(dest.join("runs/a/x.arrow")).unwrap(), b"one");
        // No leftovers beside the view.
        let names: Vec<String> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["e".to_string()]);
    }

    #[test]
    fn an_edited_result_is_found_by_content_and_restored() {
        let (dir, store) = setup();
        let dest = dir.path().join("out/e");
        let a = record(&store, "r", &[("x.arrow", b"abcdef")]);
        materialize(&store, &dest, &[&a]).unwrap();
        let p = dest.join("r/x.arrow");
        // `sed -i`: a new file of the same size in its place.
        fs::remove_file(&p).unwrap();
        fs::write(&p, b"abcdeF").unwrap();
        assert_eq!(problems(&store, &dest, &[&a]).len(), 1);
        let rep = materialize(&store, &dest, &[&a]).unwrap();
        assert!(rep.rebuilt);
        assert_eq!(rep.restored, vec!["r/x.arrow".to_string()]);
        assert_eq!(fs::read(&p).unwrap(), b"abcdef");
        assert!(problems(&store, &dest, &[&a]).is_empty());
        // Unchanged: nothing rebuilt.
        assert!(!materialize(&store, &dest, &[&a]).unwrap().rebuilt);
    }

    #[test]
    fn a_view_of_another_store_is_refused() {
        let (dir, store) = setup();
        let other = Store::open(dir.path().join("s2")).unwrap();
        assert_ne!(store.id().unwrap(), other.id().unwrap());
        let dest = dir.path().join("out/e");
        let a = record(&store, "r", &[("x.arrow", b"1")]);
        materialize(&store, &dest, &[&a]).unwrap();
        let b = record(&other, "r", &[("x.arrow", b"2")]);
        let err = materialize(&other, &dest, &[&b]).unwrap_err();
        assert!(err.to_string().contains("another store"), "{err}");
        assert_eq!(fs::read(dest.join("r/x.arrow")).unwrap(), b"1");
    }

    #[test]
    fn a_crash_between_the_two_renames_loses_nothing() {
        let (dir, store) = setup();
        let dest = dir.path().join("out/e");
        let a = record(&store, "r", &[("x.arrow", b"1")]);
        materialize(&store, &dest, &[&a]).unwrap();
        fs::write(dest.join("mine.txt"), b"keep").unwrap();
        // As the fallback path leaves it after a crash: the old view aside, no dest.
        let old = dir.path().join("out/.e.old.12345");
        fs::rename(&dest, &old).unwrap();
        fs::create_dir_all(dir.path().join("out/.e.building.12345/r")).unwrap();
        materialize(&store, &dest, &[&a]).unwrap();
        assert_eq!(fs::read(dest.join("mine.txt")).unwrap(), b"keep");
        assert!(!old.exists());
        assert!(!dir.path().join("out/.e.building.12345").exists());
    }

    #[test]
    fn a_format_1_view_is_upgraded_keeping_user_files() {
        let (dir, store) = setup();
        let dest = dir.path().join("out/e");
        let a = record(&store, "r", &[("x.arrow", b"1")]);
        fs::create_dir_all(dest.join("r")).unwrap();
        fs::hard_link(
            store.object_path(&a.outputs["x.arrow"].hash),
            dest.join("r/x.arrow"),
        )
        .unwrap();
        fs::write(dest.join(STAMP), format!("{} r\n", a.key)).unwrap();
        fs::write(dest.join("r/mine.txt"), b"keep").unwrap();
        let rep = materialize(&store, &dest, &[&a]).unwrap();
        assert!(rep.rebuilt);
        assert_eq!(rep.kept, vec!["r/mine.txt".to_string()]);
        let stamp: Stamp =
            serde_json::from_str(&fs::read_to_string(dest.join(STAMP)).unwrap()).unwrap();
        assert_eq!(stamp.format, 2);
    }
}

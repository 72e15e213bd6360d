//! The content-addressed store (`.eigentrace/` by default).
//!
//! ```text
//! objects/ab/abcdef…   immutable outputs, named by their blake3 hash, mode 0444
//! records/<key>.json   one record per executed key: the commit point
//! refs/<exp>/<id>.json the last key of each logical instance (for `status` reasons)
//! tmp/                 work dirs and half-written files; swept at start
//! lock                 the writer lock (flock: freed when its process dies)
//! id                   a random id, created once: which store an out/ view came from
//! ```
//!
//! Crash safety: outputs are written in `tmp/`, hashed, fsynced and renamed
//! into `objects/`; only then is the record written (temp, fsync, rename,
//! fsync dir). A crash at any point leaves either no record (the stage reruns
//! and the orphan objects are harmless; `gc` removes them) or a complete one.

use crate::canon::Hash;
use crate::error::{IoContext, PipelineError, Result};
use crate::record::{ObjectRef, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// How to take the writer lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Wait for the holder to finish (the callback is told once, first).
    Wait,
    /// Fail at once with [`PipelineError::Locked`].
    NoWait,
}

/// The held writer lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (creating if needed) the store at `root`. A folder that exists
    /// and is neither empty nor a store is refused: a store is never laid
    /// over someone's files.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        if root.is_dir() && !root.join("records").is_dir() {
            // Only names of the store's own layout are tolerated: another
            // process may be creating this store right now (it makes the
            // folder, then records/, objects/, …), and between our two
            // checks above and here it may have made some of them.
            const LAYOUT: [&str; 6] = ["records", "objects", "refs", "tmp", "lock", "id"];
            let foreign = fs::read_dir(&root)
                .at(&root)?
                .flatten()
                .any(|e| !LAYOUT.iter().any(|n| e.file_name() == *n));
            if foreign {
                return Err(PipelineError::Refused(format!(
                    "{}: this folder is not an eigentrace store (no records/) and is not empty; \
                     pass --store with a new or existing store folder",
                    root.display()
                )));
            }
        }
        // records/ first: it is what marks a store. (Checking it alone was
        // not enough: a second process could see the folder before records/
        // and read it after objects/ — the layout check above covers that.)
        for sub in ["records", "objects", "refs", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        let store = Store { root };
        store.id()?;
        Ok(store)
    }

    /// The store at `root` for reading only: nothing is created, and a store
    /// that does not exist yet reads as empty (every record missing). A
    /// folder that exists but is not a store is an error.
    pub fn at(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        if root.exists() && !root.join("records").is_dir() {
            return Err(PipelineError::Refused(format!(
                "{}: no eigentrace store here (no records/); pass --store DIR",
                root.display()
            )));
        }
        Ok(Store { root })
    }

    /// The store's id (random, made once, kept in `<store>/id`): an out/
    /// view names the store it was built from. Created when missing.
    pub fn id(&self) -> Result<String> {
        let p = self.root.join("id");
        if let Ok(s) = fs::read_to_string(&p) {
            let s = s.trim();
            if s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Ok(s.to_string());
            }
        }
        // Random enough: time, pid and a counter through blake3. Made in
        // tmp/ and linked into place, so two openers agree on one id.
        let mut h = blake3::Hasher::new();
        h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(self.root.to_string_lossy().as_bytes());
        h.update(&TMP_COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let id = h.finalize().to_hex()[..32].to_string();
        let tmp = self.root.join("tmp").join(format!(
            ".id.{}.{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&tmp, format!("{id}\n")).at(&tmp)?;
        if fs::read_to_string(&p).is_ok() {
            // A broken id file: replace it.
            let _ = fs::rename(&tmp, &p);
        } else if fs::hard_link(&tmp, &p).is_err() {
            let _ = fs::rename(&tmp, &p);
        }
        let _ = fs::remove_file(&tmp);
        sync_dir(&self.root);
        Ok(fs::read_to_string(&p).at(&p)?.trim().to_string())
    }

    /// Open an existing store without creating anything.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        if !root.join("records").is_dir() {
            return Err(PipelineError::Other(format!(
                "{}: no eigentrace store here (no records/); pass --store DIR or run `eigentrace run` first",
                root.display()
            )));
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Take the writer lock. `on_wait` is called once if another process holds it.
    pub fn lock(&self, mode: LockMode, on_wait: &dyn Fn(&str)) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                if mode == LockMode::NoWait {
                    return Err(PipelineError::Locked(self.root.clone()));
                }
                let mut holder = String::new();
                let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut holder));
                on_wait(holder.trim());
                file.lock().at(&path)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).at(&path),
        }
        // Say who holds it, for the next waiter's message.
        let mut f = &file;
        let _ = f.set_len(0);
        let _ = writeln!(f, "pid {}", std::process::id());
        Ok(StoreLock { _file: file })
    }

    /// Remove everything in `tmp/`. Call with the lock held.
    pub fn sweep_tmp(&self) -> Result<usize> {
        let tmp = self.root.join("tmp");
        let mut n = 0;
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let entry = entry.at(&tmp)?;
            let p = entry.path();
            let r = if entry.file_type().at(&p)?.is_dir() {
                make_writable_recursive(&p);
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.at(&p)?;
            n += 1;
        }
        Ok(n)
    }

    /// A fresh, empty, uniquely named directory under `tmp/`.
    pub fn fresh_tmp_dir(&self, label: &str) -> Result<PathBuf> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let d = self
            .root
            .join("tmp")
            .join(format!("{safe}.{}.{n}", std::process::id()));
        fs::create_dir_all(&d).at(&d)?;
        Ok(d)
    }

    pub fn object_path(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("xx");
        self.root.join("objects").join(prefix).join(hash)
    }

    /// Hash `path` and move it into `objects/` (or drop it if that object is
    /// already there). The object is fsynced and made read-only.
    pub fn put_file(&self, path: &Path) -> Result<ObjectRef> {
        let (hash, size) = hash_file(path)?;
        let hex = hash.to_hex();
        let dest = self.object_path(&hex);
        if let Ok(meta) = fs::metadata(&dest) {
            if meta.len() == size && hash_file(&dest).map(|(h, _)| h == hash).unwrap_or(false) {
                fs::remove_file(path).at(path)?;
                return Ok(ObjectRef { hash: hex, size });
            }
            // A corrupt or foreign file in the object's place: replace it.
            let _ = set_writable(&dest);
            fs::remove_file(&dest).at(&dest)?;
        }
        let parent = dest.parent().expect("object path has a parent");
        fs::create_dir_all(parent).at(parent)?;
        crate::failpoint::hit("object-before-sync");
        {
            let f = File::open(path).at(path)?;
            f.set_modified(object_mtime()).at(path)?;
            f.sync_all().at(path)?;
        }
        // 0444 whatever mode the stage wrote it with (a checkpoint writer
        // may make 0600): every reader of the store can verify every object.
        set_readonly_for_all(path).at(path)?;
        crate::failpoint::hit("object-before-rename");
        fs::rename(path, &dest).at(&dest)?;
        sync_dir(parent);
        crate::failpoint::hit("object-after-rename");
        Ok(ObjectRef { hash: hex, size })
    }

    pub fn record_path(&self, key: &str) -> PathBuf {
        self.root.join("records").join(format!("{key}.json"))
    }

    /// Read the record of `key`, if one was committed.
    pub fn read_record(&self, key: &str) -> Result<Option<Record>> {
        read_json(&self.record_path(key))
    }

    /// Commit a record: temp file, fsync, rename, fsync dir.
    pub fn write_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        self.write_atomic(&self.record_path(&record.key), &bytes)
    }

    fn ref_path(&self, experiment: &str, id: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(safe_name(experiment))
            .join(format!("{}.json", safe_name(id)))
    }

    /// Point the logical instance `id` of `experiment` at `key`.
    pub fn write_ref(&self, experiment: &str, id: &str, key: &str) -> Result<()> {
        if self.read_ref(experiment, id).ok().flatten().as_deref() == Some(key) {
            return Ok(()); // unchanged: no write, no fsync
        }
        let p = self.ref_path(experiment, id);
        let parent = p.parent().expect("ref has a parent");
        fs::create_dir_all(parent).at(parent)?;
        let bytes = serde_json::to_vec(&serde_json::json!({ "id": id, "key": key })).unwrap();
        self.write_atomic(&p, &bytes)
    }

    /// Forget the refs of `experiment` whose ids are not in `keep` (instances
    /// the config no longer has); `gc` may then collect their results.
    pub fn prune_refs(
        &self,
        experiment: &str,
        keep: &std::collections::HashSet<String>,
    ) -> Result<usize> {
        let dir = self.root.join("refs").join(safe_name(experiment));
        let keep: std::collections::HashSet<String> = keep
            .iter()
            .map(|id| format!("{}.json", safe_name(id)))
            .collect();
        let mut n = 0;
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        for e in rd {
            let p = e.at(&dir)?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !keep.contains(&name) {
                fs::remove_file(&p).at(&p)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The last key committed for `id` in `experiment`.
    pub fn read_ref(&self, experiment: &str, id: &str) -> Result<Option<String>> {
        let v: Option<serde_json::Value> = read_json(&self.ref_path(experiment, id))?;
        Ok(v.and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_string)))
    }

    /// Every committed record (unordered). Unreadable ones are returned as errors.
    pub fn records(&self) -> Result<Vec<std::result::Result<Record, PipelineError>>> {
        let dir = self.root.join("records");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let p = entry.at(&dir)?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            out.push(read_json::<Record>(&p).and_then(|r| {
                r.ok_or_else(|| PipelineError::CorruptRecord {
                    path: p.clone(),
                    msg: "vanished".into(),
                })
            }));
        }
        Ok(out)
    }

    /// Why `record`, read as the record of `key`, is not self-consistent: it
    /// names another key, or its content hash does not follow from its
    /// outputs (a record edited or swapped by hand). None when it is.
    pub fn check_record(&self, record: &Record, key: &str) -> Option<String> {
        if record.key != key {
            return Some(format!(
                "its record names another key ({})",
                &record.key.get(..16).unwrap_or(&record.key)
            ));
        }
        let mut hashes = std::collections::BTreeMap::new();
        for (name, obj) in &record.outputs {
            match Hash::from_hex(&obj.hash) {
                Some(h) => {
                    hashes.insert(name.clone(), h);
                }
                None => return Some(format!("its record has a malformed hash for {name}")),
            }
        }
        if crate::key::content_hash(&hashes).to_hex() != record.content {
            return Some(
                "its record's outputs do not match its content hash (edited by hand?)".into(),
            );
        }
        None
    }

    /// Why the record's objects cannot be reused, or None when they can.
    ///
    /// Every object carries a sentinel mtime ([`object_mtime`]); any write to
    /// it (a flipped byte, even by root through the read-only mode) moves the
    /// mtime, and then the object is rehashed. So a plain check costs one
    /// `stat` per object, and `rehash` forces the full rehash.
    pub fn check_objects(&self, record: &Record, rehash: bool) -> Option<String> {
        for (name, obj) in &record.outputs {
            let p = self.object_path(&obj.hash);
            let meta = match fs::metadata(&p) {
                Err(_) => return Some(format!("output {name} is missing from the store")),
                Ok(m) => m,
            };
            if meta.len() != obj.size {
                return Some(format!(
                    "output {name} is corrupt in the store ({} bytes, {} recorded)",
                    meta.len(),
                    obj.size
                ));
            }
            let untouched = meta
                .modified()
                .map(|t| t == object_mtime())
                .unwrap_or(false);
            if rehash || !untouched {
                match hash_file(&p) {
                    Ok((h, _)) if h.to_hex() == obj.hash => {
                        if !untouched {
                            // Touched but intact: restore the sentinel.
                            let _ = File::open(&p).and_then(|f| f.set_modified(object_mtime()));
                        }
                    }
                    _ => {
                        return Some(format!(
                            "output {name} is corrupt in the store (hash mismatch)"
                        ))
                    }
                }
            }
        }
        None
    }

    /// Every object file in the store, with its name (the claimed hash).
    pub fn objects(&self) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.root.join("objects");
        let mut out = Vec::new();
        for sub in fs::read_dir(&dir).at(&dir)? {
            let sub = sub.at(&dir)?.path();
            if !sub.is_dir() {
                continue;
            }
            for e in fs::read_dir(&sub).at(&sub)? {
                let p = e.at(&sub)?.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((name, p));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove one object file (gc).
    pub fn remove_object(&self, hash: &str) -> Result<u64> {
        let p = self.object_path(hash);
        let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let _ = set_writable(&p);
        fs::remove_file(&p).at(&p)?;
        Ok(size)
    }

    /// Remove one record (gc).
    pub fn remove_record(&self, key: &str) -> Result<()> {
        let p = self.record_path(key);
        fs::remove_file(&p).at(&p)
    }

    /// Every ref: (experiment dir name, id, key).
    pub fn refs(&self) -> Result<Vec<(String, String, String)>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for exp in fs::read_dir(&dir).at(&dir)? {
            let exp = exp.at(&dir)?.path();
            if !exp.is_dir() {
                continue;
            }
            let ename = exp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for e in fs::read_dir(&exp).at(&exp)? {
                let p = e.at(&exp)?.path();
                if let Some(v) = read_json::<serde_json::Value>(&p)? {
                    if let (Some(id), Some(key)) = (v["id"].as_str(), v["key"].as_str()) {
                        out.push((ename.clone(), id.to_string(), key.to_string()));
                    }
                }
            }
        }
        Ok(out)
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!(".write.{}.{n}", std::process::id()));
        {
            let mut f = File::create(&tmp).at(&tmp)?;
            let half = bytes.len() / 2;
            f.write_all(&bytes[..half]).at(&tmp)?;
            crate::failpoint::hit("atomic-write-half");
            f.write_all(&bytes[half..]).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        crate::failpoint::hit("atomic-before-rename");
        fs::rename(&tmp, dest).at(dest)?;
        if let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
        Ok(())
    }
}

/// Give an object found corrupt a fresh mtime: the next cheap check
/// ([`Store::check_objects`]) then rehashes it.
pub fn mark_suspect(p: &Path) {
    if let Ok(f) = File::open(p) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// The mtime every object carries (1970-01-01T00:00:01Z): a write moves it.
pub fn object_mtime() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1)
}

/// blake3 and size of a file: streamed when small, memory-mapped and
/// hashed on every core when large (≥ 4 MiB).
pub fn hash_file(path: &Path) -> Result<(Hash, u64)> {
    let mut f = File::open(path).at(path)?;
    let len = f.metadata().at(path)?.len();
    let mut hasher = blake3::Hasher::new();
    let n = if len >= 4 << 20 {
        hasher.update_mmap_rayon(path).at(path)?;
        hasher.count()
    } else {
        std::io::copy(&mut f, &mut hasher).at(path)?
    };
    Ok((Hash(*hasher.finalize().as_bytes()), n))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PipelineError::CorruptRecord {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

/// A name that is safe as one path component.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '[' | ']' | '=' | ',' => c,
            _ => '_',
        })
        .collect()
}

/// Writes `bytes` to `path` atomically outside a store (the Slurm ledger,
/// config snapshots): a temporary file in the same directory, synced, then
/// renamed over `path`, and the directory synced, so that a crash leaves the
/// old file or the new one, never a torn one.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{n}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

fn set_writable(p: &Path) -> std::io::Result<()> {
    let mut perm = fs::metadata(p)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(p, perm)
}

/// Mode 0444 (r--r--r--).
fn set_readonly_for_all(p: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(0o444))
    }
    #[cfg(not(unix))]
    {
        let mut perm = fs::metadata(p)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(p, perm)
    }
}

pub(crate) fn make_writable_recursive(dir: &Path) {
    let _ = set_writable(dir);
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                make_writable_recursive(&p);
            } else {
                let _ = set_writable(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written outside a store: created with its directory,
    /// replaced whole, and no temporary file left beside it.
    #[test]
    fn write_file_atomic_replaces_whole_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger/x.json");
        write_file_atomic(&p, b"first").unwrap();
        write_file_atomic(&p, b"second, longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    /// A store half made by another process (its folder and some of its
    /// layout, records/ not yet) opens; a folder with anything else in it
    /// is refused, and left as it was.
    #[test]
    fn a_half_made_store_opens_and_a_foreign_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let half = dir.path().join("half");
        fs::create_dir_all(half.join("objects")).unwrap();
        fs::create_dir_all(half.join("tmp")).unwrap();
        fs::write(half.join("lock"), b"").unwrap();
        Store::open(&half).unwrap();
        assert!(half.join("records").is_dir());

        let foreign = dir.path().join("foreign");
        fs::create_dir_all(foreign.join("objects")).unwrap();
        fs::write(foreign.join("paper.tex"), b"x").unwrap();
        let err = Store::open(&foreign).unwrap_err();
        assert!(matches!(err, PipelineError::Refused(_)), "{err}");
        assert!(!foreign.join("records").exists());
    }

    #[test]
    fn put_is_idempotent_and_readonly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let work = store.fresh_tmp_dir("t").unwrap();
        let a = work.join("a");
        fs::write(&a, b"hello").unwrap();
        let o1 = store.put_file(&a).unwrap();
        assert!(!a.exists());
        assert_eq!(o1.hash, blake3::hash(b"hello").to_hex().to_string());
        fs::write(&a, b"hello").unwrap();
        let o2 = store.put_file(&a).unwrap();
        assert_eq!(o1, o2);
        let p = store.object_path(&o1.hash);
        assert!(fs::metadata(&p).unwrap().permissions().readonly());
        assert_eq!(fs::read(&p).unwrap(), b"hello");
    }

    #[test]
    fn sweep_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let w = store.fresh_tmp_dir("x").unwrap();
        fs::write(w.join("f"), b"1").unwrap();
        assert_eq!(store.sweep_tmp().unwrap(), 1);
        assert!(!w.exists());
    }

    #[test]
    fn second_lock_fails_fast_with_no_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _held = store.lock(LockMode::NoWait, &|_| {}).unwrap();
        let again = store.lock(LockMode::NoWait, &|_| {});
        assert!(matches!(again, Err(PipelineError::Locked(_))));
    }
}

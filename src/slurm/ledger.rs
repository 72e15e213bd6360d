//! The ledger (the last job of each instance) and the paths under
//! `<store>/slurm/`.

use super::*;

/// One submission: the last job of one instance of one experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Entry {
    pub(super) experiment: String,
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) spec: String,
    /// "123", or "123_4" for task 4 of array job 123.
    pub(super) job: String,
    pub(super) log: PathBuf,
    pub(super) config: PathBuf,
    pub(super) submitted_unix: u64,
}

pub(super) struct Ledger {
    pub(super) dir: PathBuf,
}

impl Ledger {
    pub(super) fn path(&self, id: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", pipeline::store::safe_name(id)))
    }
    pub(super) fn get(&self, id: &str) -> Option<Entry> {
        let bytes = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .filter(|e| e.id == id)
    }
    /// Every entry (with its file), for instances the config may no longer have.
    pub(super) fn all(&self) -> Vec<(PathBuf, Entry)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| {
                let e = serde_json::from_slice::<Entry>(&std::fs::read(&p).ok()?).ok()?;
                Some((p, e))
            })
            .collect()
    }
    /// Record a submission; call with the store lock held.
    pub(super) fn put(&self, e: &Entry) -> anyhow::Result<()> {
        let p = self.path(&e.id);
        pipeline::store::write_file_atomic(&p, &serde_json::to_vec_pretty(e)?)
            .with_context(|| format!("writing the ledger entry {}", p.display()))
    }
}

/// The paths under `<store>/slurm/`.
pub(super) struct SlurmDir {
    pub(super) root: PathBuf,
}

impl SlurmDir {
    pub(super) fn new(store: &Path) -> SlurmDir {
        SlurmDir {
            root: store.join("slurm"),
        }
    }
    pub(super) fn ledger(&self, experiment: &str) -> Ledger {
        Ledger {
            dir: self
                .root
                .join("ledger")
                .join(pipeline::store::safe_name(experiment)),
        }
    }
    pub(super) fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub(super) fn log(&self, job: &str) -> PathBuf {
        self.logs().join(format!("{job}.out"))
    }
    pub(super) fn work(&self) -> PathBuf {
        self.root.join("work")
    }
}

/// The last non-empty line of a job's log, if readable.
pub(super) fn last_log_line(p: &Path) -> Option<String> {
    let text = std::fs::read_to_string(p).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

//! `run` and `status`: walk the DAG, reuse what is fresh, execute what is
//! stale (independent branches in parallel), commit each result, and say why.

use crate::canon::Hash;
use crate::error::{ExecError, InputError, IoContext, PipelineError, Result, StageFailure};
use crate::graph::{Graph, StageInstance};
use crate::key::{content_hash, stage_key};
use crate::reason::{FieldChange, FieldOf, StaleReason, State};
use crate::record::{InputRef, Record, RECORD_FORMAT};
use crate::store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// One input of a stage, resolved to files in the store.
#[derive(Clone, Debug)]
pub struct InputFiles {
    pub id: String,
    pub kind: String,
    pub params: Value,
    pub key: String,
    pub content: String,
    /// Logical output name → read-only path of its object.
    pub files: BTreeMap<String, PathBuf>,
    pub meta: Value,
}

impl InputFiles {
    /// The input `id`, as committed in `rec`: every output by the read-only
    /// path of its object.
    pub fn of(store: &Store, id: &str, rec: &Record) -> InputFiles {
        InputFiles {
            id: id.to_string(),
            kind: rec.kind.clone(),
            params: rec.params.clone(),
            key: rec.key.clone(),
            content: rec.content.clone(),
            files: rec
                .outputs
                .iter()
                .map(|(name, o)| (name.clone(), store.object_path(&o.hash)))
                .collect(),
            meta: rec.meta.clone(),
        }
    }
}

/// The inputs of a stage, by role.
#[derive(Clone, Debug, Default)]
pub struct StageInputs {
    pub by_role: BTreeMap<String, InputFiles>,
}

impl StageInputs {
    pub fn role(&self, role: &str) -> std::result::Result<&InputFiles, InputError> {
        self.by_role
            .get(role)
            .ok_or_else(|| InputError::MissingRole {
                role: role.to_string(),
            })
    }
    /// The path of output `name` of the input in `role`.
    pub fn file(&self, role: &str, name: &str) -> std::result::Result<&Path, InputError> {
        let input = self.role(role)?;
        input
            .files
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| InputError::MissingFile {
                input: input.id.clone(),
                name: name.to_string(),
            })
    }
}

/// Reports progress from inside a stage: (done, total, message).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64, &str) + Sync);

/// Runs one stage instance. Implemented by the binary, which knows the stages.
pub trait Executor: Sync {
    /// Execute `inst` into the empty directory `workdir` (every file left there
    /// becomes an output, named by its path relative to `workdir`). Returns
    /// metadata for the record, or the executor's error (whose `Display` is
    /// what the user reads).
    fn execute(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> std::result::Result<Value, ExecError>;

    /// The outputs a stage of this kind must leave, as globs over the
    /// relative paths in its work dir (`*` stays within one folder), e.g.
    /// `eigen/values.arrow` or `checkpoints/step_*.safetensors`. Each must
    /// match at least one file, or the stage fails and nothing is committed.
    /// A stage that leaves no file at all always fails.
    fn declared_outputs(&self, _inst: &StageInstance) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ran,
    Cached,
    Failed,
    /// Not attempted because an input failed.
    Skipped,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct InstanceReport {
    pub id: String,
    pub kind: String,
    pub key: Option<String>,
    pub status: Outcome,
    pub seconds: f64,
    /// Why it ran (or why it could not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub meta: Value,
}

/// What the engine tells the user interface.
pub enum Event<'a> {
    Started {
        id: &'a str,
        kind: &'a str,
        reason: &'a str,
    },
    Progress {
        id: &'a str,
        done: u64,
        total: u64,
        msg: &'a str,
    },
    Finished(&'a InstanceReport),
}

pub trait EventSink: Sync {
    fn event(&self, e: Event<'_>);
}

pub struct RunOptions {
    /// Instances whose id or kind matches are executed even when fresh.
    pub force: Option<globset::GlobSet>,
    /// The raw `--force` patterns: an exact id (brackets and all) always matches.
    pub force_exact: Vec<String>,
    pub jobs: usize,
    /// Rehash objects before reusing them.
    pub verify: bool,
    /// Execute only the instances with these ids: fresh ones are still reused
    /// (their keys computed), any other stale one is reported `Skipped`
    /// ("not selected") and not executed. Refs of instances that left the
    /// config are then not pruned (the caller sees only part of the run).
    /// None: every instance. A Slurm job (`eigentrace exec`) selects one.
    pub only: Option<HashSet<String>>,
    /// Where stale instances execute: fresh work dirs under this directory
    /// instead of the store's `tmp/` (which a `run` sweeps). It must be on
    /// the store's filesystem. A Slurm job uses one of its own.
    pub work_root: Option<PathBuf>,
    /// Take the store's writer lock around each write to the store (a
    /// commit, a ref), instead of relying on the caller holding it for the
    /// whole run: for processes that execute into one store side by side.
    pub lock_writes: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            force: None,
            force_exact: Vec::new(),
            jobs: 1,
            verify: false,
            only: None,
            work_root: None,
            lock_writes: false,
        }
    }
}

/// The writer lock, when `opts.lock_writes` asks for one per write.
fn write_guard(store: &Store, opts: &RunOptions) -> Result<Option<crate::store::StoreLock>> {
    if opts.lock_writes {
        store.lock(crate::store::LockMode::Wait, &|_| {}).map(Some)
    } else {
        Ok(None)
    }
}

/// Point the ref of `id` at `key` (taking the lock only when it moves).
fn ensure_ref(
    store: &Store,
    opts: &RunOptions,
    experiment: &str,
    id: &str,
    key: &str,
) -> Result<()> {
    if opts.lock_writes && store.read_ref(experiment, id).ok().flatten().as_deref() == Some(key) {
        return Ok(());
    }
    let _guard = write_guard(store, opts)?;
    store.write_ref(experiment, id, key)
}

/// A fresh, empty work dir for `label`: under `opts.work_root` when set,
/// else in the store's `tmp/`.
fn work_dir(store: &Store, opts: &RunOptions, label: &str) -> Result<PathBuf> {
    static WORK_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match &opts.work_root {
        None => store.fresh_tmp_dir(label),
        Some(root) => {
            let n = WORK_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = root.join(format!(
                "{}.{}.{n}",
                crate::store::safe_name(label),
                std::process::id()
            ));
            std::fs::create_dir_all(&d).map_err(|err| PipelineError::Io {
                path: d.clone(),
                err,
            })?;
            Ok(d)
        }
    }
}

/// The freshness of one instance, as `status` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InstanceState {
    pub id: String,
    pub kind: String,
    /// `fresh`, `stale` (an earlier result exists but no longer applies) or
    /// `missing` (never computed).
    pub state: State,
    pub key: Option<String>,
    pub reasons: Vec<StaleReason>,
}

/// Compute the key of `inst` given the records of its inputs.
fn key_of(inst: &StageInstance, input_records: &BTreeMap<String, Record>) -> Hash {
    let contents: BTreeMap<String, Hash> = input_records
        .iter()
        .map(|(role, r)| {
            (
                role.clone(),
                Hash::from_hex(&r.content).unwrap_or(Hash([0; 32])),
            )
        })
        .collect();
    stage_key(
        &inst.kind,
        inst.code_version,
        &inst.params,
        &inst.env,
        &contents,
    )
}

fn input_records(
    graph: &Graph,
    inst: &StageInstance,
    done: &[Option<Record>],
) -> Option<BTreeMap<String, Record>> {
    let mut out = BTreeMap::new();
    for (role, dep) in &inst.inputs {
        let i = graph.position(dep)?;
        out.insert(role.clone(), done[i].clone()?);
    }
    Some(out)
}

/// Why the current instance differs from the last record of the same logical
/// instance (params old → new, inputs, code, environment).
pub fn explain_change(
    inst: &StageInstance,
    inputs: &BTreeMap<String, Record>,
    old: &Record,
) -> Vec<StaleReason> {
    let mut reasons = Vec::new();
    if old.code_version != inst.code_version {
        reasons.push(StaleReason::CodeChanged {
            kind: inst.kind.clone(),
            old: old.code_version,
            new: inst.code_version,
        });
    }
    diff_values(FieldOf::Param, "", &old.params, &inst.params, &mut reasons);
    diff_values(FieldOf::Env, "", &old.env, &inst.env, &mut reasons);
    let (mut changed, mut added) = (Vec::new(), Vec::new());
    for (role, rec) in inputs {
        match old.inputs.get(role) {
            Some(prev) if prev.content == rec.content => {}
            Some(_) => changed.push(format!("{role} ({})", rec.id)),
            None => added.push(format!("{role} ({})", rec.id)),
        }
    }
    // A report over 35 runs names its first changed (or new) inputs and
    // counts the rest, so that one reason stays one line.
    if !changed.is_empty() {
        reasons.push(StaleReason::InputsChanged(changed));
    }
    if !added.is_empty() {
        reasons.push(StaleReason::InputsNew(added));
    }
    for role in old.inputs.keys() {
        if !inputs.contains_key(role) {
            reasons.push(StaleReason::InputRemoved(role.clone()));
        }
    }
    reasons
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn diff_values(of: FieldOf, path: &str, old: &Value, new: &Value, out: &mut Vec<StaleReason>) {
    let field = |path: String, change: FieldChange| StaleReason::Field { of, path, change };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(vb) => diff_values(of, &p, va, vb, out),
                    None => out.push(field(p, FieldChange::Removed { was: show(va) })),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(field(p, FieldChange::Added { now: show(vb) }));
                }
            }
        }
        (a, b) => {
            let same = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) if a.is_number() && b.is_number() => x.to_bits() == y.to_bits(),
                _ => a == b,
            };
            if !same {
                out.push(field(
                    path.to_string(),
                    FieldChange::Changed {
                        from: show(a),
                        to: show(b),
                    },
                ));
            }
        }
    }
}

/// Why `inst` (with known inputs) must run, or None when its record is reusable.
fn stale_reason(
    store: &Store,
    graph: &Graph,
    inst: &StageInstance,
    key: &str,
    inputs: &BTreeMap<String, Record>,
    verify: bool,
) -> Result<(Option<Record>, Vec<StaleReason>)> {
    match store.read_record(key) {
        Ok(Some(rec)) => match store
            .check_record(&rec, key)
            .or_else(|| store.check_objects(&rec, verify))
        {
            None => Ok((Some(rec), Vec::new())),
            Some(why) => Ok((None, vec![StaleReason::Damaged(why)])),
        },
        Ok(None) | Err(PipelineError::CorruptRecord { .. }) => {
            let old_key = store.read_ref(&graph.experiment, &inst.id)?;
            let old = match old_key {
                Some(k) => store.read_record(&k).ok().flatten(),
                None => None,
            };
            let reasons = match old {
                None => vec![StaleReason::NeverComputed],
                Some(old) => {
                    let r = explain_change(inst, inputs, &old);
                    if r.is_empty() {
                        vec![StaleReason::RecordMissing]
                    } else {
                        r
                    }
                }
            };
            Ok((None, reasons))
        }
        Err(e) => Err(e),
    }
}

/// The state of every instance, without executing anything.
pub fn status(store: &Store, graph: &Graph, verify: bool) -> Result<Vec<InstanceState>> {
    let n = graph.instances.len();
    let mut done: Vec<Option<Record>> = vec![None; n];
    let mut out = Vec::with_capacity(n);
    for (i, inst) in graph.instances.iter().enumerate() {
        let Some(inputs) = input_records(graph, inst, &done) else {
            let stale_inputs: Vec<String> = inst
                .inputs
                .iter()
                .filter(|(_, dep)| {
                    graph
                        .position(dep)
                        .map(|j| done[j].is_none())
                        .unwrap_or(true)
                })
                .map(|(_, dep)| dep.clone())
                .collect();
            let not_fresh = vec![StaleReason::InputsNotFresh(stale_inputs)];
            let ever = store.read_ref(&graph.experiment, &inst.id)?.is_some();
            out.push(InstanceState {
                id: inst.id.clone(),
                kind: inst.kind.clone(),
                state: if ever { State::Stale } else { State::Missing },
                key: None,
                reasons: not_fresh,
            });
            continue;
        };
        let key = key_of(inst, &inputs).to_hex();
        let (rec, reasons) = stale_reason(store, graph, inst, &key, &inputs, verify)?;
        let state = if rec.is_some() {
            State::Fresh
        } else if reasons.first() == Some(&StaleReason::NeverComputed) {
            State::Missing
        } else {
            State::Stale
        };
        done[i] = rec;
        out.push(InstanceState {
            id: inst.id.clone(),
            kind: inst.kind.clone(),
            state,
            key: Some(key),
            reasons,
        });
    }
    Ok(out)
}

fn resolve_inputs(
    store: &Store,
    graph: &Graph,
    inst: &StageInstance,
    recs: &BTreeMap<String, Record>,
) -> StageInputs {
    let mut by_role = BTreeMap::new();
    for (role, r) in recs {
        let dep_id = inst
            .inputs
            .iter()
            .find(|(ro, _)| ro == role)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        debug_assert!(graph.position(&dep_id).is_some());
        by_role.insert(role.clone(), InputFiles::of(store, &dep_id, r));
    }
    StageInputs { by_role }
}

/// Execute one instance in a fresh temp dir and commit it.
#[allow(clippy::too_many_arguments)]
fn execute_and_commit(
    store: &Store,
    graph: &Graph,
    inst: &StageInstance,
    key: &str,
    recs: &BTreeMap<String, Record>,
    exec: &dyn Executor,
    sink: &dyn EventSink,
    opts: &RunOptions,
    verified: &VerifiedObjects,
) -> std::result::Result<Record, StageFailure> {
    let started = Instant::now();
    verify_inputs(store, recs, verified)?;
    let work = work_dir(store, opts, &inst.kind)?;
    let inputs = resolve_inputs(store, graph, inst, recs);
    let progress = |done: u64, total: u64, msg: &str| {
        crate::failpoint::hit("stage-progress");
        sink.event(Event::Progress {
            id: &inst.id,
            done,
            total,
            msg,
        })
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exec.execute(inst, &inputs, &work, &progress)
    }));
    let meta = match result {
        Ok(Ok(meta)) => meta,
        Ok(Err(err)) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(StageFailure::Executor(err));
        }
        Err(panic) => {
            let _ = std::fs::remove_dir_all(&work);
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "stage panicked".into());
            return Err(StageFailure::Panicked(msg));
        }
    };
    crate::failpoint::hit("stage-before-commit");
    let _guard = write_guard(store, opts)?;
    let mut files = Vec::new();
    collect_files(&work, &work, &mut files).at(&work)?;
    files.sort();
    if let Err(e) = check_declared(&inst.kind, &exec.declared_outputs(inst), &files) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let mut outputs = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for (name, path) in files {
        let obj = store.put_file(&path)?;
        hashes.insert(name.clone(), Hash::from_hex(&obj.hash).expect("hex"));
        outputs.insert(name, obj);
    }
    let _ = std::fs::remove_dir_all(&work);
    let inputs_ref = recs
        .iter()
        .map(|(role, r)| {
            let dep = inst
                .inputs
                .iter()
                .find(|(ro, _)| ro == role)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            (
                role.clone(),
                InputRef {
                    id: dep,
                    key: r.key.clone(),
                    content: r.content.clone(),
                },
            )
        })
        .collect();
    let record = Record {
        format: RECORD_FORMAT,
        key: key.to_string(),
        id: inst.id.clone(),
        experiment: graph.experiment.clone(),
        kind: inst.kind.clone(),
        code_version: inst.code_version,
        params: inst.params.clone(),
        env: inst.env.clone(),
        inputs: inputs_ref,
        outputs,
        content: content_hash(&hashes).to_hex(),
        view: inst.view.clone(),
        meta,
        seconds: started.elapsed().as_secs_f64(),
        finished_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        eigentrace_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    store.write_record(&record)?;
    crate::failpoint::hit("after-record");
    store.write_ref(&graph.experiment, &inst.id, key)?;
    Ok(record)
}

/// The objects rehashed (and found intact) during one `run`: each is read
/// once however many stages take it as input.
#[derive(Default)]
pub struct VerifiedObjects(std::sync::Mutex<HashSet<String>>);

/// Rehash every object a stage is about to read, against its record: a
/// stage never computes from a corrupt input (a flipped byte whose mtime
/// was restored passes the cheap sentinel check). A corrupt object gets a
/// fresh mtime, so that the next `run` rehashes it, finds it corrupt and
/// recomputes its stage.
pub fn verify_inputs(
    store: &Store,
    recs: &BTreeMap<String, Record>,
    verified: &VerifiedObjects,
) -> std::result::Result<(), StageFailure> {
    for (role, r) in recs {
        for (name, obj) in &r.outputs {
            if verified.0.lock().unwrap().contains(&obj.hash) {
                continue;
            }
            let p = store.object_path(&obj.hash);
            match crate::store::hash_file(&p) {
                Ok((h, n)) if h.to_hex() == obj.hash && n == obj.size => {
                    verified.0.lock().unwrap().insert(obj.hash.clone());
                }
                Ok(_) => {
                    crate::store::mark_suspect(&p);
                    return Err(StageFailure::CorruptInput {
                        role: role.clone(),
                        id: r.id.clone(),
                        name: name.clone(),
                        hash16: obj.hash.get(..16).unwrap_or(&obj.hash).to_string(),
                    });
                }
                Err(err) => {
                    return Err(StageFailure::UnreadableInput {
                        role: role.clone(),
                        id: r.id.clone(),
                        name: name.clone(),
                        err,
                    })
                }
            }
        }
    }
    Ok(())
}

/// Each declared output pattern matches at least one of `files`, and there
/// is at least one file.
fn check_declared(
    kind: &str,
    declared: &[String],
    files: &[(String, PathBuf)],
) -> std::result::Result<(), StageFailure> {
    if files.is_empty() {
        return Err(StageFailure::NoOutput {
            kind: kind.to_string(),
        });
    }
    let mut missing = Vec::new();
    for pat in declared {
        let glob = globset::GlobBuilder::new(pat)
            .literal_separator(true)
            .build()
            .map_err(|e| StageFailure::BadPattern {
                pattern: pat.clone(),
                err: e.to_string(),
            })?
            .compile_matcher();
        if !files.iter().any(|(rel, _)| glob.is_match(rel)) {
            missing.push(pat.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StageFailure::MissingOutputs {
            kind: kind.to_string(),
            missing,
        })
    }
}

/// `p` relative to `root`, its components joined by `/` (a logical output
/// name, whatever the platform).
pub(crate) fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .expect("under root")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            out.push((rel_path(root, &p), p));
        }
    }
    Ok(())
}

fn forced(opts: &RunOptions, inst: &StageInstance) -> bool {
    is_forced(opts.force.as_ref(), &opts.force_exact, inst)
}

/// Whether `--force` selects the instance: an exact id or kind among
/// `exact`, or a match of the globs.
pub fn is_forced(globs: Option<&globset::GlobSet>, exact: &[String], inst: &StageInstance) -> bool {
    exact.iter().any(|p| *p == inst.id || *p == inst.kind)
        || globs.is_some_and(|g| g.is_match(&inst.id) || g.is_match(&inst.kind))
}

/// Run the graph: reuse fresh instances, execute stale ones (up to `jobs` at
/// once), never stop other branches for a failed one. Returns one report per
/// instance, in graph order, and the committed records (None where failed).
pub fn run(
    store: &Store,
    graph: &Graph,
    exec: &dyn Executor,
    opts: &RunOptions,
    sink: &dyn EventSink,
) -> Result<(Vec<InstanceReport>, Vec<Option<Record>>)> {
    let n = graph.instances.len();
    let mut done: Vec<Option<Record>> = vec![None; n];
    let mut decided = vec![false; n];
    let mut queued = vec![false; n];
    let mut reports: Vec<Option<InstanceReport>> = vec![None; n];
    let jobs = opts.jobs.max(1);
    let verified = VerifiedObjects::default();

    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = mpsc::channel::<(
            usize,
            String,
            String,
            std::result::Result<Record, StageFailure>,
            f64,
        )>();
        let mut pending: VecDeque<(usize, String, BTreeMap<String, Record>, String)> =
            VecDeque::new();
        let mut running = 0usize;
        let mut running_keys: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            // Decide every instance whose inputs are all decided.
            for i in 0..n {
                if decided[i] || queued[i] {
                    continue;
                }
                let inst = &graph.instances[i];
                let deps: Vec<usize> = inst
                    .inputs
                    .iter()
                    .map(|(_, d)| graph.position(d).expect("validated graph"))
                    .collect();
                if !deps.iter().all(|&j| decided[j]) {
                    continue;
                }
                if let Some(&bad) = deps.iter().find(|&&j| done[j].is_none()) {
                    decided[i] = true;
                    let rep = InstanceReport {
                        id: inst.id.clone(),
                        kind: inst.kind.clone(),
                        key: None,
                        status: Outcome::Skipped,
                        seconds: 0.0,
                        reason: Some(format!("input {} failed", graph.instances[bad].id)),
                        error: None,
                        meta: Value::Null,
                    };
                    sink.event(Event::Finished(&rep));
                    reports[i] = Some(rep);
                    continue;
                }
                let recs = input_records(graph, inst, &done).expect("inputs decided and ok");
                let key = key_of(inst, &recs).to_hex();
                let (rec, reasons) = stale_reason(store, graph, inst, &key, &recs, opts.verify)?;
                match rec {
                    Some(rec) if !forced(opts, inst) => {
                        decided[i] = true;
                        let rep = InstanceReport {
                            id: inst.id.clone(),
                            kind: inst.kind.clone(),
                            key: Some(key),
                            status: Outcome::Cached,
                            seconds: 0.0,
                            reason: None,
                            error: None,
                            meta: rec.meta.clone(),
                        };
                        // Keep the ref pointing at what this config uses.
                        ensure_ref(store, opts, &graph.experiment, &inst.id, &rec.key)?;
                        sink.event(Event::Finished(&rep));
                        reports[i] = Some(rep);
                        done[i] = Some(rec);
                    }
                    _ if opts
                        .only
                        .as_ref()
                        .is_some_and(|only| !only.contains(&inst.id)) =>
                    {
                        decided[i] = true;
                        let rep = InstanceReport {
                            id: inst.id.clone(),
                            kind: inst.kind.clone(),
                            key: Some(key),
                            status: Outcome::Skipped,
                            seconds: 0.0,
                            reason: Some("not selected".into()),
                            error: None,
                            meta: Value::Null,
                        };
                        sink.event(Event::Finished(&rep));
                        reports[i] = Some(rep);
                    }
                    _ => {
                        let reason = if reasons.is_empty() {
                            StaleReason::Forced.to_string()
                        } else {
                            crate::reason::join(&reasons)
                        };
                        queued[i] = true;
                        pending.push_back((i, key, recs, reason));
                    }
                }
            }
            let mut deferred = VecDeque::new();
            let mut resolved_now = false;
            while running < jobs {
                let Some((i, key, recs, reason)) = pending.pop_front() else {
                    break;
                };
                let inst = &graph.instances[i];
                // Two instances with one key (the same training under two
                // hessian settings, say): run it once, then reuse it.
                if running_keys.contains(&key) {
                    deferred.push_back((i, key, recs, reason));
                    continue;
                }
                if !forced(opts, inst) {
                    if let Ok(Some(rec)) = store.read_record(&key) {
                        if store.check_record(&rec, &key).is_none()
                            && store.check_objects(&rec, opts.verify).is_none()
                        {
                            queued[i] = false;
                            decided[i] = true;
                            resolved_now = true;
                            let rep = InstanceReport {
                                id: inst.id.clone(),
                                kind: inst.kind.clone(),
                                key: Some(key.clone()),
                                status: Outcome::Cached,
                                seconds: 0.0,
                                reason: None,
                                error: None,
                                meta: rec.meta.clone(),
                            };
                            ensure_ref(store, opts, &graph.experiment, &inst.id, &key)?;
                            sink.event(Event::Finished(&rep));
                            reports[i] = Some(rep);
                            done[i] = Some(rec);
                            continue;
                        }
                    }
                }
                running_keys.insert(key.clone());
                sink.event(Event::Started {
                    id: &inst.id,
                    kind: &inst.kind,
                    reason: &reason,
                });
                let tx = tx.clone();
                running += 1;
                let verified = &verified;
                scope.spawn(move || {
                    let t = Instant::now();
                    let r = execute_and_commit(
                        store, graph, inst, &key, &recs, exec, sink, opts, verified,
                    );
                    let _ = tx.send((i, key, reason, r, t.elapsed().as_secs_f64()));
                });
            }
            deferred.extend(pending.drain(..));
            pending = deferred;
            if running == 0 {
                if resolved_now || !pending.is_empty() {
                    continue;
                }
                break;
            }
            let (i, key, reason, result, secs) = rx.recv().expect("a worker is running");
            running_keys.remove(&key);
            running -= 1;
            queued[i] = false;
            decided[i] = true;
            let inst = &graph.instances[i];
            let rep = match result {
                Ok(rec) => {
                    let rep = InstanceReport {
                        id: inst.id.clone(),
                        kind: inst.kind.clone(),
                        key: Some(rec.key.clone()),
                        status: Outcome::Ran,
                        seconds: secs,
                        reason: Some(reason),
                        error: None,
                        meta: rec.meta.clone(),
                    };
                    done[i] = Some(rec);
                    rep
                }
                Err(failure) => InstanceReport {
                    id: inst.id.clone(),
                    kind: inst.kind.clone(),
                    key: None,
                    status: Outcome::Failed,
                    seconds: secs,
                    reason: Some(reason),
                    // Rendered to text here, at the edge.
                    error: Some(failure.to_string()),
                    meta: Value::Null,
                },
            };
            sink.event(Event::Finished(&rep));
            reports[i] = Some(rep);
        }
        Ok(())
    })?;
    let reports = reports
        .into_iter()
        .map(|r| r.expect("every instance decided"))
        .collect();
    if opts.only.is_none() {
        let ids = graph.instances.iter().map(|i| i.id.clone()).collect();
        store.prune_refs(&graph.experiment, &ids)?;
    }
    Ok((reports, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Touch(std::sync::Mutex<Vec<PathBuf>>);

    impl Executor for Touch {
        fn execute(
            &self,
            inst: &StageInstance,
            _: &StageInputs,
            workdir: &Path,
            _: ProgressFn<'_>,
        ) -> std::result::Result<Value, ExecError> {
            self.0.lock().unwrap().push(workdir.to_path_buf());
            std::fs::write(workdir.join("out"), inst.id.as_bytes())?;
            Ok(Value::Null)
        }
    }

    struct Quiet;
    impl EventSink for Quiet {
        fn event(&self, _: Event<'_>) {}
    }

    /// A stale reason names up to 3 changed inputs and counts the rest.
    #[test]
    fn many_changed_inputs_make_one_short_reason() {
        let record = |content: &str| Record {
            format: 1,
            key: String::new(),
            id: "m".into(),
            experiment: "e".into(),
            kind: "metrics".into(),
            code_version: 1,
            params: Value::Null,
            env: Value::Null,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            content: content.into(),
            view: String::new(),
            meta: Value::Null,
            seconds: 0.0,
            finished_unix: 0,
            eigentrace_version: String::new(),
        };
        let reasons = |n: usize| {
            let roles: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let mut old = record("x");
            let mut now = BTreeMap::new();
            for r in &roles {
                old.inputs.insert(
                    r.clone(),
                    InputRef {
                        id: r.clone(),
                        key: String::new(),
                        content: "old".into(),
                    },
                );
                now.insert(r.clone(), record("new"));
            }
            let mut i = inst("report", &[]);
            i.code_version = 1;
            i.params = Value::Null;
            i.env = Value::Null;
            explain_change(&i, &now, &old)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons(1), ["input r0 (m) changed"]);
        assert_eq!(reasons(3), ["inputs r0 (m), r1 (m), r2 (m) changed"]);
        assert_eq!(
            reasons(30),
            ["30 inputs changed: r0 (m), r1 (m), r10 (m) and 27 more"]
        );
    }

    fn inst(id: &str, inputs: &[&str]) -> StageInstance {
        let mut i = crate::graph::test_instance(id, inputs);
        i.params = serde_json::json!({ "id": id });
        i
    }

    /// Writes `out` = its id plus what it read from its inputs' `out`s;
    /// `empty` writes nothing; declares `out` (or `never` for kind "decl").
    struct Chain;
    impl Executor for Chain {
        fn execute(
            &self,
            inst: &StageInstance,
            inputs: &StageInputs,
            workdir: &Path,
            _: ProgressFn<'_>,
        ) -> std::result::Result<Value, ExecError> {
            if inst.id == "empty" {
                return Ok(Value::Null);
            }
            let mut text = inst.id.clone();
            for i in inputs.by_role.values() {
                text.push_str(&std::fs::read_to_string(&i.files["out"]).unwrap());
            }
            std::fs::write(workdir.join("out"), text).unwrap();
            Ok(Value::Null)
        }
        fn declared_outputs(&self, inst: &StageInstance) -> Vec<String> {
            if inst.id == "decl" {
                vec!["out".into(), "sub/*.arrow".into()]
            } else {
                vec!["out".into()]
            }
        }
    }

    /// Flip a byte of `id`'s object `out`, restoring its sentinel mtime (bit
    /// rot, or a copy that preserves mtimes).
    fn rot(store: &Store, rec: &Record) {
        let p = store.object_path(&rec.outputs["out"].hash);
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p, perm).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        b[0] ^= 1;
        std::fs::write(&p, b).unwrap();
        std::fs::File::open(&p)
            .unwrap()
            .set_modified(crate::store::object_mtime())
            .unwrap();
    }

    #[test]
    fn run_verify_rehashes_and_recomputes_a_rotten_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let g = Graph::new("e", vec![inst("a", &[])]).unwrap();
        let (_, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        rot(&store, done[0].as_ref().unwrap());
        // The cheap check cannot see it; --verify must.
        let (reps, _) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Cached);
        let opts = RunOptions {
            verify: true,
            ..Default::default()
        };
        let (reps, done) = run(&store, &g, &Chain, &opts, &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Ran, "{:?}", reps[0]);
        let p = store.object_path(&done[0].as_ref().unwrap().outputs["out"].hash);
        assert_eq!(std::fs::read_to_string(p).unwrap(), "a");
        assert!(crate::maintain::verify(&store).unwrap().ok());
    }

    #[test]
    fn a_rotten_input_is_refused_then_recomputed_and_never_poisons_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let g = Graph::new("e", vec![inst("a", &[]), inst("b", &["a"])]).unwrap();
        let (_, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        let clean_b = done[1].as_ref().unwrap().outputs["out"].hash.clone();
        rot(&store, done[0].as_ref().unwrap());
        // b must run again (forced): it refuses its corrupt input.
        let force = |p: &str| RunOptions {
            force_exact: vec![p.into()],
            ..Default::default()
        };
        let (reps, _) = run(&store, &g, &Chain, &force("b"), &Quiet).unwrap();
        assert_eq!(reps[1].status, Outcome::Failed);
        let err = reps[1].error.as_deref().unwrap();
        assert!(err.contains("corrupt") && err.contains("input a"), "{err}");
        // The next plain run recomputes a (its mtime now tells), then b, from clean bytes.
        let (reps, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Ran, "{:?}", reps[0]);
        assert_eq!(done[1].as_ref().unwrap().outputs["out"].hash, clean_b);
        assert!(crate::maintain::verify(&store).unwrap().ok());
    }

    #[test]
    fn a_tampered_record_is_not_reused_and_verify_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let g = Graph::new("e", vec![inst("a", &[]), inst("bb", &[])]).unwrap();
        let (_, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        let (a, b) = (done[0].clone().unwrap(), done[1].clone().unwrap());
        // Point a's record at b's object (same size: "a" vs "bb" differ, so pad).
        let mut t = a.clone();
        t.outputs.insert("out".into(), b.outputs["out"].clone());
        store.write_record(&t).unwrap();
        let v = crate::maintain::verify(&store).unwrap();
        assert!(!v.ok(), "{v:?} {t:?}");
        assert!(
            v.bad_records.iter().any(|m| m.contains("content hash")),
            "{:?}",
            v.bad_records
        );
        let (reps, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Ran);
        let p = store.object_path(&done[0].as_ref().unwrap().outputs["out"].hash);
        assert_eq!(std::fs::read_to_string(p).unwrap(), "a");
        assert!(crate::maintain::verify(&store).unwrap().ok());
    }

    #[test]
    fn a_stage_missing_a_declared_output_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let g = Graph::new("e", vec![inst("empty", &[]), inst("decl", &[])]).unwrap();
        let (reps, done) = run(&store, &g, &Chain, &RunOptions::default(), &Quiet).unwrap();
        assert!(done.iter().all(Option::is_none));
        assert!(reps.iter().all(|r| r.status == Outcome::Failed));
        assert!(
            reps[0]
                .error
                .as_deref()
                .unwrap()
                .contains("wrote no output"),
            "{:?}",
            reps[0]
        );
        assert!(
            reps[1].error.as_deref().unwrap().contains("sub/*.arrow"),
            "{:?}",
            reps[1]
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("s/records"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("s/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn only_runs_the_selected_in_its_work_root_and_prunes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        store.write_ref("e", "gone", "k0").unwrap();
        let g = Graph::new("e", vec![inst("a", &[]), inst("b", &["a"])]).unwrap();
        let exec = Touch(Default::default());
        let work = dir.path().join("s/job-work");
        let opts = RunOptions {
            only: Some(HashSet::from(["a".to_string()])),
            work_root: Some(work.clone()),
            lock_writes: true,
            ..Default::default()
        };
        let (reps, done) = run(&store, &g, &exec, &opts, &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Ran);
        assert_eq!(reps[1].status, Outcome::Skipped);
        assert_eq!(reps[1].reason.as_deref(), Some("not selected"));
        assert!(done[0].is_some() && done[1].is_none());
        let used = exec.0.lock().unwrap().clone();
        assert_eq!(used.len(), 1);
        assert!(used[0].starts_with(&work), "{used:?}");
        assert!(
            !used[0].exists(),
            "the work dir is removed after the commit"
        );
        assert!(store.read_ref("e", "gone").unwrap().is_some(), "not pruned");
        // Then b alone: a is reused, b runs.
        let opts = RunOptions {
            only: Some(HashSet::from(["b".to_string()])),
            lock_writes: true,
            ..Default::default()
        };
        let (reps, _) = run(&store, &g, &exec, &opts, &Quiet).unwrap();
        assert_eq!(reps[0].status, Outcome::Cached);
        assert_eq!(reps[1].status, Outcome::Ran);
        // A plain run finds both fresh and prunes the ref that left the graph.
        let (reps, _) = run(&store, &g, &exec, &RunOptions::default(), &Quiet).unwrap();
        assert!(reps.iter().all(|r| r.status == Outcome::Cached));
        assert!(store.read_ref("e", "gone").unwrap().is_none());
    }
}

//! `run` and `status`: walk the DAG, reuse what is fresh, execute what is
//! stale (independent branches in parallel), commit each result, and say why.

use crate::canon::Hash;
use crate::error::{PipelineError, Result};
use crate::graph::{Graph, StageInstance};
use crate::key::{content_hash, stage_key};
use crate::record::{InputRef, Record, RECORD_FORMAT};
use crate::store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
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

/// The inputs of a stage, by role.
#[derive(Clone, Debug, Default)]
pub struct StageInputs {
    pub by_role: BTreeMap<String, InputFiles>,
}

impl StageInputs {
    pub fn role(&self, role: &str) -> std::result::Result<&InputFiles, String> {
        self.by_role
            .get(role)
            .ok_or_else(|| format!("missing input role {role}"))
    }
    /// The path of output `name` of the input in `role`.
    pub fn file(&self, role: &str, name: &str) -> std::result::Result<&Path, String> {
        let input = self.role(role)?;
        input
            .files
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| format!("input {} has no output {name}", input.id))
    }
}

/// Reports progress from inside a stage: (done, total, message).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64, &str) + Sync);

/// Runs one stage instance. Implemented by the binary, which knows the stages.
pub trait Executor: Sync {
    /// Execute `inst` into the empty directory `workdir` (every file left there
    /// becomes an output, named by its path relative to `workdir`). Returns
    /// metadata for the record, or an error message.
    fn execute(
        &self,
        inst: &StageInstance,
        inputs: &StageInputs,
        workdir: &Path,
        progress: ProgressFn<'_>,
    ) -> std::result::Result<Value, String>;
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            force: None,
            force_exact: Vec::new(),
            jobs: 1,
            verify: false,
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
    pub state: String,
    pub key: Option<String>,
    pub reasons: Vec<String>,
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
) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.code_version != inst.code_version {
        reasons.push(format!(
            "code changed: {} code version {} → {}",
            inst.kind, old.code_version, inst.code_version
        ));
    }
    diff_values("param ", "", &old.params, &inst.params, &mut reasons);
    diff_values("env ", "", &old.env, &inst.env, &mut reasons);
    for (role, rec) in inputs {
        match old.inputs.get(role) {
            Some(prev) if prev.content == rec.content => {}
            Some(_) => reasons.push(format!("input {role} ({}) changed", rec.id)),
            None => reasons.push(format!("new input {role} ({})", rec.id)),
        }
    }
    for role in old.inputs.keys() {
        if !inputs.contains_key(role) {
            reasons.push(format!("input {role} was removed"));
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

fn diff_values(prefix: &str, path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(vb) => diff_values(prefix, &p, va, vb, out),
                    None => out.push(format!("{prefix}{p} removed (was {})", show(va))),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(format!("{prefix}{p} added: {}", show(vb)));
                }
            }
        }
        (a, b) => {
            let same = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) if a.is_number() && b.is_number() => x.to_bits() == y.to_bits(),
                _ => a == b,
            };
            if !same {
                out.push(format!("{prefix}{path} {} → {}", show(a), show(b)));
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
) -> Result<(Option<Record>, Vec<String>)> {
    match store.read_record(key) {
        Ok(Some(rec)) => match store.check_objects(&rec, verify) {
            None => Ok((Some(rec), Vec::new())),
            Some(why) => Ok((None, vec![why])),
        },
        Ok(None) | Err(PipelineError::CorruptRecord { .. }) => {
            let old_key = store.read_ref(&graph.experiment, &inst.id)?;
            let old = match old_key {
                Some(k) => store.read_record(&k).ok().flatten(),
                None => None,
            };
            let reasons = match old {
                None => vec!["never computed".to_string()],
                Some(old) => {
                    let r = explain_change(inst, inputs, &old);
                    if r.is_empty() {
                        vec!["its record is missing from the store".to_string()]
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
            let stale_inputs: Vec<&str> = inst
                .inputs
                .iter()
                .filter(|(_, dep)| {
                    graph
                        .position(dep)
                        .map(|j| done[j].is_none())
                        .unwrap_or(true)
                })
                .map(|(_, dep)| dep.as_str())
                .collect();
            let not_fresh = vec![match stale_inputs.len() {
                1 => format!("input {} is not fresh", stale_inputs[0]),
                n if n <= 3 => format!("inputs {} are not fresh", stale_inputs.join(", ")),
                n => format!(
                    "{n} inputs are not fresh ({}, …)",
                    stale_inputs[..2].join(", ")
                ),
            }];
            let ever = store.read_ref(&graph.experiment, &inst.id)?.is_some();
            out.push(InstanceState {
                id: inst.id.clone(),
                kind: inst.kind.clone(),
                state: if ever { "stale" } else { "missing" }.into(),
                key: None,
                reasons: not_fresh,
            });
            continue;
        };
        let key = key_of(inst, &inputs).to_hex();
        let (rec, reasons) = stale_reason(store, graph, inst, &key, &inputs, verify)?;
        let state = if rec.is_some() {
            "fresh"
        } else if reasons.first().map(String::as_str) == Some("never computed") {
            "missing"
        } else {
            "stale"
        };
        done[i] = rec;
        out.push(InstanceState {
            id: inst.id.clone(),
            kind: inst.kind.clone(),
            state: state.into(),
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
        let files = r
            .outputs
            .iter()
            .map(|(name, o)| (name.clone(), store.object_path(&o.hash)))
            .collect();
        let dep_id = inst
            .inputs
            .iter()
            .find(|(ro, _)| ro == role)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        debug_assert!(graph.position(&dep_id).is_some());
        by_role.insert(
            role.clone(),
            InputFiles {
                id: dep_id,
                kind: r.kind.clone(),
                params: r.params.clone(),
                key: r.key.clone(),
                content: r.content.clone(),
                files,
                meta: r.meta.clone(),
            },
        );
    }
    StageInputs { by_role }
}

/// Execute one instance in a fresh temp dir and commit it.
fn execute_and_commit(
    store: &Store,
    graph: &Graph,
    inst: &StageInstance,
    key: &str,
    recs: &BTreeMap<String, Record>,
    exec: &dyn Executor,
    sink: &dyn EventSink,
) -> std::result::Result<Record, String> {
    let started = Instant::now();
    let work = store.fresh_tmp_dir(&inst.kind).map_err(|e| e.to_string())?;
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
        Ok(Err(msg)) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(msg);
        }
        Err(panic) => {
            let _ = std::fs::remove_dir_all(&work);
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "stage panicked".into());
            return Err(format!("internal error: {msg}"));
        }
    };
    crate::failpoint::hit("stage-before-commit");
    let mut files = Vec::new();
    collect_files(&work, &work, &mut files).map_err(|e| format!("{}: {e}", work.display()))?;
    files.sort();
    let mut outputs = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for (name, path) in files {
        let obj = store.put_file(&path).map_err(|e| e.to_string())?;
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
    store.write_record(&record).map_err(|e| e.to_string())?;
    crate::failpoint::hit("after-record");
    store
        .write_ref(&graph.experiment, &inst.id, key)
        .map_err(|e| e.to_string())?;
    Ok(record)
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
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, p));
        }
    }
    Ok(())
}

fn forced(opts: &RunOptions, inst: &StageInstance) -> bool {
    if opts
        .force_exact
        .iter()
        .any(|p| *p == inst.id || *p == inst.kind)
    {
        return true;
    }
    opts.force
        .as_ref()
        .map(|g| g.is_match(&inst.id) || g.is_match(&inst.kind))
        .unwrap_or(false)
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

    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = mpsc::channel::<(
            usize,
            String,
            String,
            std::result::Result<Record, String>,
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
                        store.write_ref(&graph.experiment, &inst.id, &rec.key)?;
                        sink.event(Event::Finished(&rep));
                        reports[i] = Some(rep);
                        done[i] = Some(rec);
                    }
                    _ => {
                        let reason = if reasons.is_empty() {
                            "forced (--force)".to_string()
                        } else {
                            reasons.join("; ")
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
                        if store.check_objects(&rec, false).is_none() {
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
                            store.write_ref(&graph.experiment, &inst.id, &key)?;
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
                scope.spawn(move || {
                    let t = Instant::now();
                    let r = execute_and_commit(store, graph, inst, &key, &recs, exec, sink);
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
                Err(msg) => InstanceReport {
                    id: inst.id.clone(),
                    kind: inst.kind.clone(),
                    key: None,
                    status: Outcome::Failed,
                    seconds: secs,
                    reason: Some(reason),
                    error: Some(msg),
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
    let ids = graph.instances.iter().map(|i| i.id.clone()).collect();
    store.prune_refs(&graph.experiment, &ids)?;
    Ok((reports, done))
}

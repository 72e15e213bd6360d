//! `verify`, `gc` and `audit`: the store's integrity and provenance.

use crate::canon::Hash;
use crate::engine::{Executor, InputFiles, StageInputs};
use crate::error::{PipelineError, Result};
use crate::graph::StageInstance;
use crate::key::{content_hash, stage_key};
use crate::record::Record;
use crate::store::{hash_file, Store};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub objects: usize,
    pub records: usize,
    /// Objects whose bytes no longer hash to their name.
    pub corrupt: Vec<String>,
    /// (record id, key, output name, hash) of outputs absent from the store.
    pub missing: Vec<(String, String, String, String)>,
    /// Record files that do not parse, or that are not self-consistent (a
    /// record edited or swapped by hand): "path or id: why".
    pub bad_records: Vec<String>,
    /// Objects this user cannot read (permissions): "hash: error". Not
    /// corrupt, but not verified either.
    pub unreadable: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.bad_records.is_empty()
            && self.unreadable.is_empty()
    }
}

/// Rehash every object, and check every record: it is stored under its own
/// key, its key recomputes from its parameters and inputs, its content hash
/// follows from its outputs, each output exists with its recorded size, and
/// each input's record exists with the content this record was computed
/// from.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let mut rep = VerifyReport::default();
    for (name, path) in store.objects()? {
        rep.objects += 1;
        match hash_file(&path) {
            Ok((h, _)) if h.to_hex() == name => {}
            Err(PipelineError::Io { err, .. })
                if err.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                rep.unreadable.push(format!("{name}: {err}"))
            }
            _ => rep.corrupt.push(name),
        }
    }
    let mut by_key: BTreeMap<String, Record> = BTreeMap::new();
    let dir = store.root().join("records");
    for r in store.records()? {
        match r {
            Ok(rec) => {
                rep.records += 1;
                let file_key = format!("{}.json", rec.key);
                if !dir.join(&file_key).is_file() {
                    rep.bad_records.push(format!(
                        "{}: a record file names key {} but is stored under another",
                        rec.id,
                        &rec.key.get(..16).unwrap_or(&rec.key)
                    ));
                }
                for (out, obj) in &rec.outputs {
                    match std::fs::metadata(store.object_path(&obj.hash)) {
                        Err(_) => rep.missing.push((
                            rec.id.clone(),
                            rec.key.clone(),
                            out.clone(),
                            obj.hash.clone(),
                        )),
                        Ok(m) if m.len() != obj.size => rep.bad_records.push(format!(
                            "{}: output {out} is recorded as {} bytes, its object has {}",
                            rec.id,
                            obj.size,
                            m.len()
                        )),
                        Ok(_) => {}
                    }
                }
                by_key.insert(rec.key.clone(), rec);
            }
            Err(e) => rep.bad_records.push(e.to_string()),
        }
    }
    for rec in by_key.values() {
        let mut hashes = BTreeMap::new();
        for (name, obj) in &rec.outputs {
            hashes.insert(
                name.clone(),
                Hash::from_hex(&obj.hash).unwrap_or(Hash([0; 32])),
            );
        }
        if content_hash(&hashes).to_hex() != rec.content {
            rep.bad_records.push(format!(
                "{} (record {}): its outputs do not match its content hash (edited by hand?)",
                rec.id,
                &rec.key.get(..16).unwrap_or(&rec.key)
            ));
        }
        let contents: BTreeMap<String, Hash> = rec
            .inputs
            .iter()
            .map(|(role, i)| {
                (
                    role.clone(),
                    Hash::from_hex(&i.content).unwrap_or(Hash([0; 32])),
                )
            })
            .collect();
        if stage_key(
            &rec.kind,
            rec.code_version,
            &rec.params,
            &rec.env,
            &contents,
        )
        .to_hex()
            != rec.key
        {
            rep.bad_records.push(format!(
                "{} (record {}): its key does not recompute from its parameters and inputs",
                rec.id,
                &rec.key.get(..16).unwrap_or(&rec.key)
            ));
        }
        for (role, input) in &rec.inputs {
            if let Some(ir) = by_key.get(&input.key) {
                if ir.content != input.content {
                    rep.bad_records.push(format!(
                        "{} (record {}): input {role} ({}) now holds other content than it was computed from",
                        rec.id,
                        &rec.key.get(..16).unwrap_or(&rec.key),
                        input.id
                    ));
                }
            }
        }
    }
    Ok(rep)
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub kept_records: usize,
    pub removed_records: Vec<String>,
    pub removed_objects: Vec<String>,
    pub freed_bytes: u64,
    pub dry_run: bool,
}

/// Keep the records that a ref (the last result of some logical instance of
/// some experiment) reaches, with their inputs, transitively; remove the other
/// records and every object no kept record lists.
pub fn gc(store: &Store, dry_run: bool) -> Result<GcReport> {
    let mut by_key: BTreeMap<String, Record> = BTreeMap::new();
    for r in store.records()?.into_iter().flatten() {
        by_key.insert(r.key.clone(), r);
    }
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = store.refs()?.into_iter().map(|(_, _, k)| k).collect();
    while let Some(k) = todo.pop() {
        if let Some(rec) = by_key.get(&k) {
            if kept.insert(k) {
                todo.extend(rec.inputs.values().map(|i| i.key.clone()));
            }
        }
    }
    let live: BTreeSet<&str> = kept
        .iter()
        .flat_map(|k| by_key[k].outputs.values().map(|o| o.hash.as_str()))
        .collect();
    let mut rep = GcReport {
        kept_records: kept.len(),
        dry_run,
        ..Default::default()
    };
    for key in by_key.keys().filter(|k| !kept.contains(*k)) {
        if !dry_run {
            store.remove_record(key)?;
        }
        rep.removed_records.push(key.clone());
    }
    for (name, path) in store.objects()? {
        if !live.contains(name.as_str()) {
            rep.freed_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                store.remove_object(&name)?;
            }
            rep.removed_objects.push(name);
        }
    }
    Ok(rep)
}

/// One stage in a provenance chain, with what was checked.
#[derive(Debug, Serialize)]
pub struct AuditNode {
    pub id: String,
    pub kind: String,
    pub experiment: String,
    pub key: String,
    pub code_version: u32,
    pub params: serde_json::Value,
    pub env: serde_json::Value,
    pub content: String,
    /// Output name → (hash, verified).
    pub outputs: BTreeMap<String, (String, bool)>,
    /// Role → key of the input stage.
    pub inputs: BTreeMap<String, String>,
    /// Every mismatch found at this node.
    pub problems: Vec<String>,
}

/// Records whose outputs include `target` (a file, hashed) or whose object
/// hash, key or content hash starts with `target` (≥ 8 hex digits).
pub fn find_records(store: &Store, target: &str) -> Result<Vec<Record>> {
    let path = Path::new(target);
    let needle = if path.is_file() {
        hash_file(path)?.0.to_hex()
    } else if target.len() >= 8 && target.chars().all(|c| c.is_ascii_hexdigit()) {
        target.to_ascii_lowercase()
    } else {
        return Err(PipelineError::Other(format!(
            "{target}: neither a file nor a hash (give a path under out/, or 8+ hex digits of an object hash or stage key)"
        )));
    };
    let mut found: Vec<Record> = store
        .records()?
        .into_iter()
        .flatten()
        .filter(|r| {
            r.key.starts_with(&needle)
                || r.content.starts_with(&needle)
                || r.outputs.values().any(|o| o.hash.starts_with(&needle))
        })
        .collect();
    // Identical bytes may come from several records (a file that does not
    // depend on a changed parameter): the one the view shows at this very
    // path first, then the newest.
    let here = if path.is_file() {
        crate::view::records_at(path)
    } else {
        Vec::new()
    };
    let shown_here = |r: &Record| {
        here.iter()
            .any(|(key, name)| *key == r.key && r.outputs.contains_key(&*name.to_string_lossy()))
    };
    found.sort_by_key(|r| (!shown_here(r), std::cmp::Reverse(r.finished_unix)));
    Ok(found)
}

/// Walk the provenance of `rec` down to its roots (the config's first
/// stages), verifying every hash on the way: objects rehashed, content hashes
/// and keys recomputed, each input's content matched.
pub fn audit(store: &Store, rec: &Record) -> Result<Vec<AuditNode>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec![rec.clone()];
    while let Some(r) = todo.pop() {
        if !seen.insert(r.key.clone()) {
            continue;
        }
        let mut problems = Vec::new();
        let mut outputs = BTreeMap::new();
        let mut hashes = BTreeMap::new();
        for (name, obj) in &r.outputs {
            let ok = matches!(hash_file(&store.object_path(&obj.hash)), Ok((h, _)) if h.to_hex() == obj.hash);
            if !ok {
                problems.push(format!(
                    "output {name} ({}) is missing or corrupt",
                    &obj.hash[..16]
                ));
            }
            outputs.insert(name.clone(), (obj.hash.clone(), ok));
            hashes.insert(
                name.clone(),
                Hash::from_hex(&obj.hash).unwrap_or(Hash([0; 32])),
            );
        }
        if content_hash(&hashes).to_hex() != r.content {
            problems.push("content hash does not match the outputs".into());
        }
        let mut contents = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for (role, input) in &r.inputs {
            inputs.insert(role.clone(), input.key.clone());
            contents.insert(
                role.clone(),
                Hash::from_hex(&input.content).unwrap_or(Hash([0; 32])),
            );
            match store.read_record(&input.key)? {
                Some(ir) => {
                    if ir.content != input.content {
                        problems.push(format!(
                            "input {role}: its record's content differs from what this stage used"
                        ));
                    }
                    todo.push(ir);
                }
                None => problems.push(format!(
                    "input {role}: record {} is missing (gc'd?)",
                    &input.key[..16]
                )),
            }
        }
        let key = stage_key(&r.kind, r.code_version, &r.params, &r.env, &contents);
        if key.to_hex() != r.key {
            problems
                .push("the key does not recompute from the record's parameters and inputs".into());
        }
        out.push(AuditNode {
            id: r.id.clone(),
            kind: r.kind.clone(),
            experiment: r.experiment.clone(),
            key: r.key.clone(),
            code_version: r.code_version,
            params: r.params.clone(),
            env: r.env.clone(),
            content: r.content.clone(),
            outputs,
            inputs,
            problems,
        });
    }
    Ok(out)
}

/// Output name → (recorded hash, reproduced hash).
pub type Reproduction = BTreeMap<String, (Option<String>, Option<String>)>;

/// Execute the stage of `rec` again in a temp dir, from its recorded inputs,
/// and compare the bytes of every output.
pub fn reproduce(store: &Store, rec: &Record, exec: &dyn Executor) -> Result<Reproduction> {
    let mut by_role = BTreeMap::new();
    let mut recs: BTreeMap<String, Record> = BTreeMap::new();
    for (role, input) in &rec.inputs {
        let ir = store.read_record(&input.key)?.ok_or_else(|| {
            PipelineError::Other(format!(
                "input {role} of {}: record {} is missing",
                rec.id, input.key
            ))
        })?;
        by_role.insert(role.clone(), InputFiles::of(store, &input.id, &ir));
        recs.insert(role.clone(), ir);
    }
    let inst = StageInstance {
        id: rec.id.clone(),
        kind: rec.kind.clone(),
        code_version: rec.code_version,
        params: rec.params.clone(),
        env: rec.env.clone(),
        inputs: rec
            .inputs
            .iter()
            .map(|(r, i)| (r.clone(), i.id.clone()))
            .collect(),
        view: rec.view.clone(),
    };
    crate::engine::verify_inputs(store, &recs, &Default::default())
        .map_err(|e| PipelineError::Other(format!("reproducing {}: {e}", rec.id)))?;
    let dir = store.fresh_tmp_dir("reproduce")?;
    let none = |_: u64, _: u64, _: &str| {};
    exec.execute(&inst, &StageInputs { by_role }, &dir, &none)
        .map_err(|e| PipelineError::Other(format!("reproducing {}: {e}", rec.id)))?;
    let mut files = Vec::new();
    crate::engine::collect_files(&dir, &dir, &mut files)
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    let mut out: Reproduction = rec
        .outputs
        .iter()
        .map(|(n, o)| (n.clone(), (Some(o.hash.clone()), None)))
        .collect();
    for (name, path) in files {
        let (h, _) = hash_file(&path)?;
        out.entry(name).or_insert((None, None)).1 = Some(h.to_hex());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

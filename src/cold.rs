//! `eigentrace audit --cold`: recompute a sample of a hessian stage's
//! checkpoints from random starts (no warm start) and compare them with what
//! the stage stored: the largest relative eigenvalue difference and the
//! largest subspace difference 1 − q (q the subspace overlap of the two
//! top-k bases). A warm start that hid a direction rising into the top-k
//! would show here as a subspace difference.

use experiment::StageKind;
use pipeline::engine::{InputFiles, StageInputs};
use pipeline::{Executor, Record, StageInstance, Store};
use serde::Serialize;
use stages::arrow_io::Table;
use std::collections::BTreeMap;
use std::path::Path;

/// One recomputed (checkpoint, operator).
#[derive(Debug, Serialize)]
pub struct ColdRow {
    pub step: i64,
    pub operator: String,
    /// max over ranks of |λ_warm − λ_cold| / |λ_cold|.
    pub eigenvalue_rel_diff: f64,
    /// 1 − q, q = ‖AᵀB‖²_F / k of the orthonormalized top-k bases.
    pub subspace_diff: f64,
    /// Both runs' pairs trusted (converged and resolvable).
    pub trusted: bool,
}

type Pairs = BTreeMap<(i64, String), Vec<(i32, f64, bool, Vec<f64>)>>;

/// (step, operator) → [(rank, eigenvalue, trusted, vector)] of a hessian output.
fn read(values: &Path, vectors: &Path) -> Result<Pairs, String> {
    let e = |e: stages::StageError| e.to_string();
    let v = Table::open(values).map_err(e)?;
    let w = Table::open(vectors).map_err(e)?;
    let (st, op, rk, ev) = (
        v.i64("step").map_err(e)?,
        v.str("operator").map_err(e)?,
        v.i32("rank").map_err(e)?,
        v.f64("eigenvalue").map_err(e)?,
    );
    let conv = v.bool("converged").ok();
    let res = v.bool("resolvable").ok();
    // The vectors by (step, operator, rank): `hessian.keep_vectors` may
    // have stored them at some checkpoints only.
    let (wst, wop, wrk) = (
        w.i64("step").map_err(e)?,
        w.str("operator").map_err(e)?,
        w.i32("rank").map_err(e)?,
    );
    let mut rows = BTreeMap::new();
    for j in 0..w.len() {
        rows.insert((wst.value(j), wop.value(j), wrk.value(j)), j);
    }
    let mut out: Pairs = BTreeMap::new();
    for i in 0..v.len() {
        let Some(&j) = rows.get(&(st.value(i), op.value(i), rk.value(i))) else {
            continue;
        };
        let trusted = conv.is_none_or(|c| c.value(i)) && res.is_none_or(|r| r.value(i));
        let vec = w.vector_row("vector", j).map_err(e)?;
        out.entry((st.value(i), op.value(i).to_string()))
            .or_default()
            .push((rk.value(i), ev.value(i), trusted, vec));
    }
    Ok(out)
}

/// 1 − ‖Q_aᵀQ_b‖²_F / k for the spans of `a` and `b` (orthonormalized:
/// the preconditioned operator's parameter-space vectors are not orthogonal).
fn subspace_diff(a: &[&Vec<f64>], b: &[&Vec<f64>]) -> f64 {
    let p = a[0].len();
    let ma = nalgebra::DMatrix::from_fn(p, a.len(), |r, c| a[c][r]);
    let mb = nalgebra::DMatrix::from_fn(p, b.len(), |r, c| b[c][r]);
    let qa = ma.qr().q();
    let qb = mb.qr().q();
    let m = qa.transpose() * qb;
    let k = a.len().min(b.len()) as f64;
    1.0 - m.iter().map(|x| x * x).sum::<f64>() / k
}

/// Recompute up to `samples` checkpoints of the hessian record `rec` (the
/// last ones, evenly spread, never the first: it is cold already) without a
/// warm start, in a temp dir of the store, and compare.
pub fn audit(
    store: &Store,
    rec: &Record,
    exec: &dyn Executor,
    samples: usize,
) -> Result<Vec<ColdRow>, String> {
    if rec.kind != StageKind::Hessian.name() {
        return Err(format!(
            "{} is a {} stage: --cold recomputes a hessian stage; give one of its outputs, \
             e.g. out/<experiment>/runs/<run>/eigen/values.arrow",
            rec.id, rec.kind
        ));
    }
    let mut by_role = BTreeMap::new();
    for (role, input) in &rec.inputs {
        let ir = store
            .read_record(&input.key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("input {role}: record {} is missing", input.key))?;
        by_role.insert(role.clone(), ir);
    }
    // The sample: checkpoints other than the first, evenly spread.
    let train = by_role
        .get("train")
        .ok_or("the hessian record has no train input")?;
    let steps = stages::hessian::checkpoint_steps(train.outputs.keys());
    // Only checkpoints whose vectors were stored can be compared.
    let hp: stages::hessian::HessianParams = serde_json::from_value(rec.params.clone())
        .map_err(|e| format!("{}: its parameters do not read: {e}", rec.id))?;
    let kept = hp.keep_vectors.steps(&steps);
    let later: Vec<u64> = steps
        .iter()
        .skip(1)
        .copied()
        .filter(|s| kept.contains(s))
        .collect();
    let pick: Vec<u64> = if later.len() <= samples {
        later
    } else {
        (0..samples)
            .map(|i| later[(i + 1) * later.len() / samples - 1])
            .collect()
    };
    if pick.is_empty() {
        return Err("the run has a single checkpoint: nothing was warm-started".into());
    }
    let keep: std::collections::BTreeSet<String> = pick
        .iter()
        .map(|&s| stages::train::checkpoint_name(s))
        .collect();
    let mut inputs = StageInputs::default();
    for (role, ir) in &by_role {
        let mut input = InputFiles::of(store, &rec.inputs[role].id, ir);
        // Only the sampled checkpoints: the stage computes every one it gets.
        input.files.retain(|name, _| {
            role != "train" || !name.starts_with("checkpoints/") || keep.contains(name)
        });
        inputs.by_role.insert(role.clone(), input);
    }
    let mut params = rec.params.clone();
    params["warm_start"] = serde_json::Value::Bool(false);
    // Every sampled checkpoint keeps its vectors in the recomputation.
    if let Some(obj) = params.as_object_mut() {
        obj.remove("keep_vectors");
    }
    let inst = StageInstance {
        id: rec.id.clone(),
        kind: rec.kind.clone(),
        code_version: rec.code_version,
        params,
        env: rec.env.clone(),
        inputs: rec
            .inputs
            .iter()
            .map(|(r, i)| (r.clone(), i.id.clone()))
            .collect(),
        view: rec.view.clone(),
    };
    let dir = store
        .fresh_tmp_dir("cold-audit")
        .map_err(|e| e.to_string())?;
    let none = |_: u64, _: u64, _: &str| {};
    let result = exec
        .execute(&inst, &inputs, &dir, &none)
        .map_err(|e| e.to_string());
    let cold = result.and_then(|_| {
        read(
            &dir.join("eigen/values.arrow"),
            &dir.join("eigen/vectors.arrow"),
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    let cold = cold?;
    let stored = read(
        &store.object_path(&rec.outputs["eigen/values.arrow"].hash),
        &store.object_path(&rec.outputs["eigen/vectors.arrow"].hash),
    )?;
    let mut rows = Vec::new();
    for ((step, op), c) in &cold {
        let Some(w) = stored.get(&(*step, op.clone())) else {
            continue;
        };
        let top = |v: &[(i32, f64, bool, Vec<f64>)]| -> BTreeMap<i32, (f64, bool, Vec<f64>)> {
            v.iter()
                .filter(|p| p.0 >= 0)
                .map(|p| (p.0, (p.1, p.2, p.3.clone())))
                .collect()
        };
        let (c, w) = (top(c), top(w));
        let mut rel = 0f64;
        for (r, (lc, _, _)) in &c {
            if let Some((lw, _, _)) = w.get(r) {
                rel = rel.max((lw - lc).abs() / lc.abs().max(f64::MIN_POSITIVE));
            }
        }
        let a: Vec<&Vec<f64>> = c.values().map(|p| &p.2).collect();
        let b: Vec<&Vec<f64>> = w.values().map(|p| &p.2).collect();
        rows.push(ColdRow {
            step: *step,
            operator: op.clone(),
            eigenvalue_rel_diff: rel,
            subspace_diff: subspace_diff(&a, &b),
            trusted: c.values().chain(w.values()).all(|p| p.1),
        });
    }
    Ok(rows)
}

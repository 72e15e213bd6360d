//! The metrics stage: localization (IPR) and two-time subspace overlap of the
//! eigenvectors in `eigen/vectors.arrow`. Definitions: SCIENCE.md.
//!
//! Outputs: `metrics/localization.arrow` (step, operator, rank, ipr, p_ipr,
//! pr) and `metrics/overlap.arrow` (operator, t_w, t, subspace_overlap,
//! grassmann, consecutive) over the full upper triangle t_w < t of checkpoints.

use crate::arrow_io::{col_bool, col_f64, col_i32, col_i64, col_str, write_batch, Table};
use crate::error::StageResult;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {}

/// IPR = Σ_j v_j⁴ of the unit vector along `v` (v is normalized here).
pub fn ipr(v: &[f64]) -> f64 {
    let n2: f64 = v.iter().map(|x| x * x).sum();
    v.iter().map(|x| x.powi(4)).sum::<f64>() / (n2 * n2)
}

/// Subspace overlap q = ‖AᵀB‖_F² / k and the Grassmann distance ‖θ‖₂ from
/// the cross-Gram M = AᵀB (k×k) of two orthonormal bases.
/// Gur-Ari et al. 2018 (q); principal angles θ_i = arccos σ_i(M).
pub fn overlap_from_gram(m: &DMatrix<f64>) -> (f64, f64) {
    let k = m.nrows().min(m.ncols()) as f64;
    let q = m.iter().map(|x| x * x).sum::<f64>() / k;
    let sv = m.clone().svd(false, false).singular_values;
    let g = sv
        .iter()
        .map(|s| s.clamp(0.0, 1.0).acos().powi(2))
        .sum::<f64>()
        .sqrt();
    (q, g)
}

/// Vectors by operator, then by step: the rank ≥ 0 vectors in rank order.
type Bases = BTreeMap<String, BTreeMap<i64, Vec<(i32, Vec<f64>)>>>;

fn load(vectors: &Path) -> StageResult<Bases> {
    let t = Table::open(vectors)?;
    let step = t.i64("step")?;
    let op = t.str("operator")?;
    let rank = t.i32("rank")?;
    let mut out: Bases = BTreeMap::new();
    for i in 0..t.len() {
        let v: Vec<f64> = t
            .list_f32_row("vector", i)?
            .iter()
            .map(|&x| x as f64)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let v = v.iter().map(|x| x / n).collect();
        out.entry(op.value(i).to_string())
            .or_default()
            .entry(step.value(i))
            .or_default()
            .push((rank.value(i), v));
    }
    for steps in out.values_mut() {
        for vs in steps.values_mut() {
            vs.sort_by_key(|(r, _)| if *r >= 0 { *r } else { i32::MAX + *r });
        }
    }
    Ok(out)
}

pub fn run(vectors: &Path, out: &Path) -> StageResult<serde_json::Value> {
    let bases = load(vectors)?;
    // Localization.
    let (mut ls, mut lo, mut lr, mut li, mut lp, mut lpr) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (op, steps) in &bases {
        for (step, vs) in steps {
            for (rank, v) in vs {
                let i = ipr(v);
                let p = v.len() as f64;
                ls.push(*step);
                lo.push(op.clone());
                lr.push(*rank);
                li.push(i);
                lp.push(p * i);
                lpr.push(1.0 / (p * i));
            }
        }
    }
    write_batch(
        &out.join("metrics/localization.arrow"),
        vec![
            ("step", col_i64(ls)),
            ("operator", col_str(&lo)),
            ("rank", col_i32(lr)),
            ("ipr", col_f64(li)),
            ("p_ipr", col_f64(lp)),
            ("pr", col_f64(lpr)),
        ],
        false,
    )?;
    // Overlaps over the upper triangle, from one Gram matrix per operator.
    let (mut oo, mut otw, mut ot, mut oq, mut og, mut oc) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (op, steps) in &bases {
        let tops: Vec<(i64, Vec<&Vec<f64>>)> = steps
            .iter()
            .map(|(s, vs)| {
                (
                    *s,
                    vs.iter()
                        .filter(|(r, _)| *r >= 0)
                        .map(|(_, v)| v)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, vs)| !vs.is_empty())
            .collect();
        if tops.is_empty() {
            continue;
        }
        let p = tops[0].1[0].len();
        let cols: Vec<&Vec<f64>> = tops.iter().flat_map(|(_, vs)| vs.iter().copied()).collect();
        let all = DMatrix::from_fn(p, cols.len(), |r, c| cols[c][r]);
        let gram = all.tr_mul(&all);
        let mut offs = Vec::new();
        let mut o = 0;
        for (_, vs) in &tops {
            offs.push(o);
            o += vs.len();
        }
        for a in 0..tops.len() {
            for b in a + 1..tops.len() {
                let (ka, kb) = (tops[a].1.len(), tops[b].1.len());
                let m = gram.view((offs[a], offs[b]), (ka, kb)).into_owned();
                let (q, g) = overlap_from_gram(&m);
                oo.push(op.clone());
                otw.push(tops[a].0);
                ot.push(tops[b].0);
                oq.push(q);
                og.push(g);
                oc.push(b == a + 1);
            }
        }
    }
    write_batch(
        &out.join("metrics/overlap.arrow"),
        vec![
            ("operator", col_str(&oo)),
            ("t_w", col_i64(otw)),
            ("t", col_i64(ot)),
            ("subspace_overlap", col_f64(oq)),
            ("grassmann", col_f64(og)),
            ("consecutive", col_bool(oc)),
        ],
        false,
    )?;
    Ok(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipr_closed_forms() {
        let mut one_hot = vec![0.0; 50];
        one_hot[7] = 3.0;
        assert!((ipr(&one_hot) - 1.0).abs() < 1e-15);
        let uniform = vec![0.2; 50];
        assert!((ipr(&uniform) - 1.0 / 50.0).abs() < 1e-15);
    }

    #[test]
    fn overlap_closed_forms() {
        let id = DMatrix::<f64>::identity(4, 4);
        let (q, g) = overlap_from_gram(&id);
        assert!((q - 1.0).abs() < 1e-12 && g.abs() < 1e-6);
        let zero = DMatrix::<f64>::zeros(4, 4);
        let (q, g) = overlap_from_gram(&zero);
        assert!(q.abs() < 1e-15);
        assert!((g - 2.0 * std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    }
}

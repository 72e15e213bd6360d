//! Lanczos with full reorthogonalization, accumulated in f64, for the extreme
//! eigenpairs of a symmetric operator given only by its products.
//!
//! Stopping rule (SCIENCE.md): every wanted Ritz pair has residual
//! ‖Hy − θy‖ ≤ tol·|λ_1|. While iterating, the residual of a Ritz pair is
//! known without extra products: ‖Hy_i − θ_i y_i‖ = β_m |s_{m,i}| (Parlett,
//! "The Symmetric Eigenvalue Problem", §13.1); with full reorthogonalization
//! this estimate is accurate. At the end the true residuals are computed with
//! k more products and reported.

use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Which end(s) of the spectrum to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// The k algebraically largest.
    Largest,
    /// The k largest and the k most negative.
    BothEnds,
}

#[derive(Clone, Debug)]
pub struct LanczosOptions {
    pub k: usize,
    pub which: Which,
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct EigenPair {
    pub value: f64,
    pub vector: Vec<f64>,
    /// True residual ‖Hv − λv‖ (v has unit norm).
    pub residual: f64,
    /// 0 = largest, 1 = next…; -1 = most negative, -2 = next…
    pub rank: i32,
}

#[derive(Clone, Debug)]
pub struct LanczosResult {
    pub pairs: Vec<EigenPair>,
    /// Products used, the final residual checks included.
    pub hvps: usize,
    pub iterations: usize,
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Orthogonalize `w` against the basis, twice ("twice is enough", Kahan–Parlett).
fn reorthogonalize(basis: &[Vec<f64>], w: &mut [f64]) {
    for _ in 0..2 {
        for q in basis {
            let c = dot(q, w);
            axpy(-c, q, w);
        }
    }
}

/// The wanted Ritz indices (into ascending eigenvalues of T) with their ranks.
fn wanted(m: usize, k: usize, which: Which) -> Vec<(usize, i32)> {
    let mut out: Vec<(usize, i32)> = (0..k.min(m)).map(|r| (m - 1 - r, r as i32)).collect();
    if which == Which::BothEnds {
        for r in 0..k.min(m) {
            let idx = r;
            if out.iter().all(|(i, _)| *i != idx) {
                out.push((idx, -(r as i32) - 1));
            }
        }
    }
    out
}

/// Eigenpairs of the symmetric operator `op` (op(x, y) sets y = Hx) of
/// dimension `n`. `start` optionally gives vectors whose sum starts the
/// iteration (a warm start); otherwise a seeded random vector is used.
pub fn lanczos(
    n: usize,
    op: &mut dyn FnMut(&[f64], &mut [f64]),
    opts: &LanczosOptions,
    start: Option<&[Vec<f64>]>,
) -> LanczosResult {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut random_unit = |basis: &[Vec<f64>]| -> Vec<f64> {
        loop {
            let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            reorthogonalize(basis, &mut v);
            let nv = norm(&v);
            if nv > 1e-8 {
                v.iter_mut().for_each(|x| *x /= nv);
                return v;
            }
        }
    };
    let mut q0 = match start {
        Some(vs) if !vs.is_empty() => {
            let mut v = vec![0.0; n];
            for s in vs {
                axpy(1.0, s, &mut v);
            }
            v
        }
        _ => Vec::new(),
    };
    let nq = norm(&q0);
    if q0.is_empty() || nq.is_nan() || nq <= 1e-12 {
        q0 = random_unit(&[]);
    } else {
        q0.iter_mut().for_each(|x| *x /= nq);
    }

    let max_iter = opts.max_iter.min(n).max(1);
    let mut basis: Vec<Vec<f64>> = vec![q0];
    let mut alpha: Vec<f64> = Vec::new();
    let mut beta: Vec<f64> = Vec::new();
    let mut hvps = 0usize;
    let mut w = vec![0.0; n];
    let mut converged = false;
    let mut ritz: Option<(Vec<f64>, DMatrix<f64>)> = None;
    let check_every = 4;

    for j in 0..max_iter {
        op(&basis[j], &mut w);
        hvps += 1;
        let a = dot(&w, &basis[j]);
        axpy(-a, &basis[j], &mut w);
        if j > 0 {
            axpy(-beta[j - 1], &basis[j - 1], &mut w);
        }
        reorthogonalize(&basis, &mut w);
        alpha.push(a);
        let b = norm(&w);
        let m = j + 1;
        let at_end = m == max_iter;
        if m >= opts.k.min(n) && (m % check_every == 0 || at_end || b < 1e-12) {
            let (vals, vecs) = tridiagonal_eigen(&alpha, &beta);
            let scale = vals
                .iter()
                .fold(0f64, |acc, v| acc.max(v.abs()))
                .max(f64::MIN_POSITIVE);
            let done = wanted(m, opts.k, opts.which)
                .iter()
                .all(|&(i, _)| b * vecs[(m - 1, i)].abs() <= opts.tol * scale);
            ritz = Some((vals, vecs));
            if done || at_end {
                converged = done;
                break;
            }
        }
        if b < 1e-12
            * alpha
                .iter()
                .fold(0f64, |acc, v| acc.max(v.abs()))
                .max(1e-300)
        {
            // An invariant subspace: continue from a fresh direction (β = 0 decouples T).
            beta.push(0.0);
            let v = random_unit(&basis);
            basis.push(v);
        } else {
            beta.push(b);
            basis.push(w.iter().map(|x| x / b).collect());
        }
        ritz = None;
    }
    let m = alpha.len();
    let (vals, vecs) = ritz.unwrap_or_else(|| tridiagonal_eigen(&alpha, &beta[..m - 1]));
    let mut pairs = Vec::new();
    let mut hv = vec![0.0; n];
    for (i, rank) in wanted(m, opts.k, opts.which) {
        let mut y = vec![0.0; n];
        for (jj, q) in basis.iter().take(m).enumerate() {
            axpy(vecs[(jj, i)], q, &mut y);
        }
        let ny = norm(&y);
        y.iter_mut().for_each(|x| *x /= ny);
        op(&y, &mut hv);
        hvps += 1;
        let lambda = vals[i];
        let r: f64 = hv
            .iter()
            .zip(&y)
            .map(|(h, v)| (h - lambda * v).powi(2))
            .sum::<f64>()
            .sqrt();
        pairs.push(EigenPair {
            value: lambda,
            vector: y,
            residual: r,
            rank,
        });
    }
    LanczosResult {
        pairs,
        hvps,
        iterations: m,
        converged,
    }
}

/// Ascending eigenvalues and the eigenvectors (columns) of the symmetric
/// tridiagonal matrix with diagonal `alpha` and off-diagonal `beta`.
fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> (Vec<f64>, DMatrix<f64>) {
    let m = alpha.len();
    let mut t = DMatrix::<f64>::zeros(m, m);
    for i in 0..m {
        t[(i, i)] = alpha[i];
        if i + 1 < m {
            t[(i, i + 1)] = beta[i];
            t[(i + 1, i)] = beta[i];
        }
    }
    let eig = SymmetricEigen::new(t);
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]));
    let vals = idx.iter().map(|&i| eig.eigenvalues[i]).collect();
    let mut vecs = DMatrix::<f64>::zeros(m, m);
    for (c, &i) in idx.iter().enumerate() {
        vecs.set_column(c, &eig.eigenvectors.column(i));
    }
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense symmetric matrix with a known spectrum: Q diag(d) Qᵀ.
    fn matrix(n: usize, seed: u64) -> (DMatrix<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = DMatrix::<f64>::from_fn(n, n, |_, _| StandardNormal.sample(&mut rng));
        let q = a.qr().q();
        let d: Vec<f64> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    -(i as f64)
                } else {
                    i as f64 * 0.5 + 1.0
                }
            })
            .collect();
        let m =
            &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(d.clone())) * q.transpose();
        (m, d)
    }

    #[test]
    fn matches_known_spectrum_both_ends() {
        let n = 120;
        let (m, d) = matrix(n, 3);
        let mut sorted = d.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let mut op = |x: &[f64], y: &mut [f64]| {
            let v = &m * nalgebra::DVector::from_column_slice(x);
            y.copy_from_slice(v.as_slice());
        };
        let opts = LanczosOptions {
            k: 5,
            which: Which::BothEnds,
            tol: 1e-10,
            max_iter: 120,
            seed: 1,
        };
        let r = lanczos(n, &mut op, &opts, None);
        assert!(r.converged);
        for p in &r.pairs {
            let expect = if p.rank >= 0 {
                sorted[p.rank as usize]
            } else {
                sorted[n - (-p.rank) as usize]
            };
            assert!(
                (p.value - expect).abs() <= 1e-9 * expect.abs().max(1.0),
                "rank {} {} vs {}",
                p.rank,
                p.value,
                expect
            );
            assert!(p.residual <= 1e-8 * sorted[0].abs());
        }
        assert_eq!(r.pairs.iter().filter(|p| p.rank < 0).count(), 5);
    }
}

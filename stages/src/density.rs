//! Spectral density by stochastic Lanczos quadrature (SLQ; Lin, Saad and
//! Yang 2016; Ghorbani, Krishnan and Xiao 2019), docs/science.md §4c.
//!
//! For each probe, a Rademacher vector v (normalized) starts `steps` Lanczos
//! iterations with full reorthogonalization; the tridiagonal T's eigenvalues
//! θ_i are the quadrature nodes and the squared first components of its
//! eigenvectors τ_i the weights. Σ_i τ_i f(θ_i) is the Gauss quadrature of
//! vᵀ f(A) v, exact for polynomials of degree ≤ 2·steps − 1, and
//! E_v[vᵀ f(A) v] = tr f(A)/P. The density is the probes' mean of
//! Σ_i τ_i N(t; θ_i, σ²), a Gaussian broadening on a grid.

use crate::lanczos::{dot, reorthogonalize, BlockOp};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The `[density]` section. An empty `[density]` means the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityParams {
    /// Random starting vectors (the Monte Carlo average).
    #[serde(default = "d_probes")]
    pub probes: usize,
    /// Lanczos steps per probe: quadrature nodes per probe.
    #[serde(default = "d_steps")]
    pub steps: usize,
    /// Grid points of the broadened density.
    #[serde(default = "d_grid")]
    pub grid: usize,
    /// The Gaussian's σ as a fraction of the nodes' range (λ_max − λ_min).
    #[serde(default = "d_sigma")]
    pub sigma: f64,
}

fn d_probes() -> usize {
    4
}
fn d_steps() -> usize {
    60
}
fn d_grid() -> usize {
    400
}
fn d_sigma() -> f64 {
    0.01
}

impl Default for DensityParams {
    fn default() -> Self {
        DensityParams {
            probes: d_probes(),
            steps: d_steps(),
            grid: d_grid(),
            sigma: d_sigma(),
        }
    }
}

/// One probe's quadrature rule.
#[derive(Clone, Debug)]
pub struct Quadrature {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
}

impl Quadrature {
    /// Σ_i τ_i θ_i^j: the probe's estimate of tr(A^j)/P.
    pub fn moment(&self, j: i32) -> f64 {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(t, w)| w * t.powi(j))
            .sum()
    }
}

/// The SLQ rules of `probes` probes, `steps` Lanczos steps each (fewer when
/// the Krylov space is exhausted). Products one vector at a time.
pub fn slq(
    n: usize,
    op: &mut BlockOp<'_>,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Vec<Quadrature> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x51a0_d3e5);
    let steps = steps.min(n);
    (0..probes)
        .map(|_| {
            let s = 1.0 / (n as f64).sqrt();
            let mut start = crate::trace::rademacher(n, 1, &mut rng);
            start[0].iter_mut().for_each(|x| *x *= s);
            let mut q: Vec<Vec<f64>> = start;
            let (mut alpha, mut beta) = (Vec::new(), Vec::new());
            let mut w = [vec![0.0; n]];
            for j in 0..steps {
                op(&q[j..j + 1], &mut w[..1]);
                let mut r = w[0].clone();
                alpha.push(dot(&r, &q[j]));
                // Full reorthogonalization (a second pass when needed).
                reorthogonalize(&q, &mut r);
                let b = dot(&r, &r).sqrt();
                let scale = alpha
                    .iter()
                    .chain(&beta)
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                if j + 1 == steps || b <= 1e-12 * scale.max(f64::MIN_POSITIVE) {
                    break;
                }
                beta.push(b);
                q.push(r.iter().map(|x| x / b).collect());
            }
            let m = alpha.len();
            let t = DMatrix::<f64>::from_fn(m, m, |i, j| {
                if i == j {
                    alpha[i]
                } else if i + 1 == j {
                    beta[i]
                } else if j + 1 == i {
                    beta[j]
                } else {
                    0.0
                }
            });
            let e = t.symmetric_eigen();
            Quadrature {
                nodes: e.eigenvalues.iter().copied().collect(),
                weights: (0..m).map(|i| e.eigenvectors[(0, i)].powi(2)).collect(),
            }
        })
        .collect()
}

/// The broadened density on `grid` points over [min − 5σ', max + 5σ'],
/// σ' = sigma·(max − min) of all nodes (σ' = sigma·max(|node|, 1e-300) when
/// they coincide): (λ grid, density), the probes' mean, integrating to 1.
pub fn broaden(rules: &[Quadrature], grid: usize, sigma: f64) -> (Vec<f64>, Vec<f64>) {
    let all = rules.iter().flat_map(|r| r.nodes.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let range = hi - lo;
    let s = if range > 0.0 {
        sigma * range
    } else {
        sigma * lo.abs().max(1e-300)
    };
    let (a, b) = (lo - 5.0 * s, hi + 5.0 * s);
    let grid = grid.max(2);
    let norm = 1.0 / (s * (2.0 * std::f64::consts::PI).sqrt() * rules.len() as f64);
    let lambda: Vec<f64> = (0..grid)
        .map(|i| a + (b - a) * i as f64 / (grid - 1) as f64)
        .collect();
    let density = lambda
        .iter()
        .map(|&t| {
            rules
                .iter()
                .flat_map(|r| r.nodes.iter().zip(&r.weights))
                .map(|(x, w)| w * (-0.5 * ((t - x) / s).powi(2)).exp())
                .sum::<f64>()
                * norm
        })
        .collect();
    (lambda, density)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn matrix(n: usize) -> DMatrix<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let g = DMatrix::<f64>::from_fn(n, n, |_, _| StandardNormal.sample(&mut rng));
        let q = g.qr().q();
        let d = DMatrix::<f64>::from_fn(n, n, |i, j| {
            if i == j {
                if i < 3 {
                    5.0 + i as f64
                } else {
                    0.1 * ((i as f64) / n as f64 - 0.3)
                }
            } else {
                0.0
            }
        });
        &q * d * q.transpose()
    }

    /// Each probe's rule reproduces vᵀA^j v (j ≤ 4) exactly (it is a Gauss
    /// rule of degree 2·steps − 1); the weights sum to 1; the broadened
    /// density integrates to 1; the moments average to tr(A^j)/n within 4
    /// standard errors of the probes.
    #[test]
    fn quadrature_moments_and_density() {
        let n = 150;
        let a = matrix(n);
        let mut op = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
            for (x, y) in xs.iter().zip(ys.iter_mut()) {
                let v = &a * nalgebra::DVector::from_column_slice(x);
                y.copy_from_slice(v.as_slice());
            }
        };
        let rules = slq(n, &mut op, 12, 20, 1);
        // Regenerate the probes as slq draws them.
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(1 ^ 0x51a0_d3e5);
        let s = 1.0 / (n as f64).sqrt();
        let mut apow = vec![DMatrix::<f64>::identity(n, n)];
        for _ in 0..4 {
            let last = apow.last().unwrap().clone();
            apow.push(&last * &a);
        }
        let mut per_probe: Vec<[f64; 4]> = Vec::new();
        for (pi, r) in rules.iter().enumerate() {
            let v = nalgebra::DVector::from_iterator(
                n,
                (0..n).map(|_| if rng.random::<bool>() { s } else { -s }),
            );
            assert!((r.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let mut m = [0.0; 4];
            for j in 1..=4 {
                let exact = (v.transpose() * &apow[j] * &v)[(0, 0)];
                let got = r.moment(j as i32);
                assert!(
                    (got - exact).abs() <= 1e-10 * exact.abs().max(1e-3),
                    "probe {pi} j {j}: {got} vs {exact}"
                );
                m[j - 1] = got;
            }
            per_probe.push(m);
        }
        for j in 0..4 {
            let xs: Vec<f64> = per_probe.iter().map(|m| m[j]).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let sd =
                (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt();
            let truth = apow[j + 1].trace() / n as f64;
            assert!(
                (mean - truth).abs() <= 4.0 * sd / (xs.len() as f64).sqrt(),
                "j {}: {mean} vs {truth} (sd {sd})",
                j + 1
            );
        }
        let (lambda, dens) = broaden(&rules, 2000, 0.01);
        let h = lambda[1] - lambda[0];
        let integral: f64 = dens.iter().sum::<f64>() * h;
        assert!((integral - 1.0).abs() < 1e-3, "∫ density = {integral}");
        // The outliers near 5, 6 and 7 carry about 3/n of the mass.
        let near_top: f64 = lambda
            .iter()
            .zip(&dens)
            .filter(|(t, _)| **t > 4.0)
            .map(|(_, d)| d * h)
            .sum();
        assert!(
            (near_top - 3.0 / n as f64).abs() < 0.02,
            "outlier mass {near_top}"
        );
    }
}

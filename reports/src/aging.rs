//! Aging as a physicist tests it: do the two-time curves q(t_w, t_w + τ)
//! collapse onto one master curve against τ / t_w^μ, and for which μ?
//!
//! - μ = 1: simple aging (the relaxation time grows like the age t_w);
//! - 0 < μ < 1: subaging; μ > 1: superaging;
//! - μ = 0: no aging (q depends on τ alone: stationary dynamics).
//!
//! The collapse is measured as Bhattacharjee and Seno (2001) do: the mean
//! |Δq| between every curve's points and every other curve interpolated
//! (linearly in ln x) inside its own x range, x = τ / t_w^μ. μ minimizes it
//! on a grid of step [`MU_STEP`] over [0, [`MU_MAX`]], refined by golden
//! section inside the best grid cell. Waiting times t_w = 0 have no scaled
//! lag and are left out. See docs/science.md §6.

use std::collections::BTreeMap;

/// The largest exponent searched; a fit that lands on it says so.
pub const MU_MAX: f64 = 4.0;
/// The grid step of the search.
pub const MU_STEP: f64 = 0.01;
/// A curve needs this many points (lags) to enter a fit.
pub const MIN_POINTS: usize = 3;
/// A fit needs this many curves.
pub const MIN_CURVES: usize = 3;
/// Exponents whose curves overlap at fewer than this fraction of the
/// possible point pairs are not considered (the residual of curves pushed
/// apart until they barely touch measures nothing).
pub const MIN_OVERLAP: f64 = 0.1;
/// The curves collapse when their residual is at most this many times the
/// seed-to-seed standard deviation of q (two independent noisy copies of
/// one curve differ by 2/√π ≈ 1.13 sd on average).
pub const COLLAPSE_FACTOR: f64 = 2.0;

/// One waiting time's curve: lags τ > 0, ascending, and q at each.
#[derive(Clone, Debug)]
pub struct Curve {
    pub t_w: f64,
    pub tau: Vec<f64>,
    pub q: Vec<f64>,
}

/// The collapse residual at `mu` and the fraction of possible point pairs
/// that overlapped; None when no point of any curve falls inside another
/// curve's range.
pub fn collapse_residual(curves: &[Curve], mu: f64) -> Option<(f64, f64)> {
    // ln x = ln τ − μ ln t_w, ascending within each curve.
    let scaled: Vec<(Vec<f64>, &[f64])> = curves
        .iter()
        .map(|c| {
            let shift = mu * c.t_w.ln();
            (c.tau.iter().map(|t| t.ln() - shift).collect(), &c.q[..])
        })
        .collect();
    let (mut sum, mut n, mut possible) = (0.0, 0usize, 0usize);
    for (p, (xp, qp)) in scaled.iter().enumerate() {
        let (lo, hi) = (xp[0], xp[xp.len() - 1]);
        for (j, (xj, qj)) in scaled.iter().enumerate() {
            if j == p {
                continue;
            }
            possible += xj.len();
            for (x, q) in xj.iter().zip(qj.iter()) {
                if *x < lo || *x > hi {
                    continue;
                }
                sum += (q - interp(xp, qp, *x)).abs();
                n += 1;
            }
        }
    }
    (n > 0).then(|| (sum / n as f64, n as f64 / possible as f64))
}

/// Linear interpolation of (xs, ys) at x, xs ascending, x inside.
fn interp(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let i = xs.partition_point(|v| *v < x);
    if i == 0 {
        return ys[0];
    }
    if i >= xs.len() {
        return ys[xs.len() - 1];
    }
    let (x0, x1) = (xs[i - 1], xs[i]);
    if x1 == x0 {
        return ys[i];
    }
    ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)
}

/// One run's fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The exponent that collapses the curves best.
    pub mu: f64,
    /// The residual there, and without rescaling (μ = 0).
    pub residual: f64,
    pub unscaled: f64,
    /// The fraction of possible point pairs that overlapped at μ.
    pub overlap: f64,
    /// μ landed on the search bound (the true minimum may lie beyond).
    pub at_bound: bool,
}

/// The curves that can enter a fit: t_w > 0, at least [`MIN_POINTS`] lags.
pub fn usable(curves: Vec<Curve>) -> Vec<Curve> {
    curves
        .into_iter()
        .filter(|c| c.t_w > 0.0 && c.tau.len() >= MIN_POINTS && c.tau.iter().all(|t| *t > 0.0))
        .collect()
}

/// Fits μ; None with fewer than [`MIN_CURVES`] usable curves or no overlap.
pub fn fit_mu(curves: &[Curve]) -> Option<Fit> {
    if curves.len() < MIN_CURVES {
        return None;
    }
    let score = |mu: f64| -> Option<f64> {
        collapse_residual(curves, mu)
            .filter(|(_, o)| *o >= MIN_OVERLAP)
            .map(|(r, _)| r)
    };
    let steps = (MU_MAX / MU_STEP).round() as usize;
    let mut best: Option<(f64, f64)> = None;
    for i in 0..=steps {
        let mu = i as f64 * MU_STEP;
        if let Some(r) = score(mu) {
            if best.is_none_or(|b| r < b.1) {
                best = Some((mu, r));
            }
        }
    }
    let (mut mu, mut residual) = best?;
    // Golden section in the best cell's neighbourhood.
    let (mut a, mut b) = ((mu - MU_STEP).max(0.0), (mu + MU_STEP).min(MU_MAX));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..30 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        match (score(c), score(d)) {
            (Some(rc), Some(rd)) if rc <= rd => b = d,
            (Some(_), Some(_)) => a = c,
            _ => break,
        }
    }
    let m = (a + b) / 2.0;
    if let Some(r) = score(m) {
        if r < residual {
            (mu, residual) = (m, r);
        }
    }
    let overlap = collapse_residual(curves, mu).map_or(0.0, |x| x.1);
    Some(Fit {
        mu,
        residual,
        unscaled: collapse_residual(curves, 0.0).map_or(f64::NAN, |x| x.0),
        overlap,
        at_bound: mu >= MU_MAX - MU_STEP,
    })
}

/// The seed-to-seed scatter of q: the mean over (t_w, t) cells with at
/// least two seeds of the cells' sample standard deviation (ddof = 1).
pub fn seed_scatter(cells: impl IntoIterator<Item = Vec<f64>>) -> f64 {
    let sds: Vec<f64> = cells
        .into_iter()
        .filter(|v| v.len() >= 2)
        .map(|v| crate::findings::summarize(&v).sd)
        .filter(|s| s.is_finite())
        .collect();
    if sds.is_empty() {
        f64::NAN
    } else {
        sds.iter().sum::<f64>() / sds.len() as f64
    }
}

/// The curves of one run's trusted pairs (t_w, t) → q whose waiting time
/// lies in [lo, hi), as far as they can enter a fit (see [`usable`]).
pub fn curves_of(pairs: &BTreeMap<(i64, i64), f64>, lo: f64, hi: f64) -> Vec<Curve> {
    let mut by_tw: BTreeMap<i64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (&(tw, t), &q) in pairs {
        if t > tw && q.is_finite() && (tw as f64) >= lo && (tw as f64) < hi {
            let e = by_tw.entry(tw).or_default();
            e.0.push((t - tw) as f64);
            e.1.push(q);
        }
    }
    usable(
        by_tw
            .into_iter()
            .map(|(tw, (tau, q))| Curve {
                t_w: tw as f64,
                tau,
                q,
            })
            .collect(),
    )
}

/// A setting's fits: one per seed (None where a seed has too few curves),
/// and the seeds' scatter of q over the cells the curves share.
#[derive(Clone, Debug)]
pub struct SettingFit {
    pub fits: Vec<Option<Fit>>,
    pub scatter: f64,
}

/// Fits every seed's curves (one list per seed).
pub fn fit_setting(per_seed: &[Vec<Curve>]) -> SettingFit {
    let mut cells: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for curves in per_seed {
        for c in curves {
            for (tau, q) in c.tau.iter().zip(&c.q) {
                cells
                    .entry((c.t_w as i64, (c.t_w + tau) as i64))
                    .or_default()
                    .push(*q);
            }
        }
    }
    SettingFit {
        fits: per_seed.iter().map(|c| fit_mu(c)).collect(),
        scatter: seed_scatter(cells.into_values()),
    }
}

impl SettingFit {
    fn values(&self, pick: fn(&Fit) -> f64) -> Vec<f64> {
        self.fits.iter().flatten().map(pick).collect()
    }

    /// μ's summary over the seeds (mean, sd, 95% t interval) and the regime.
    pub fn verdict(&self) -> (crate::findings::Summary, Regime) {
        let mu = crate::findings::summarize(&self.values(|f| f.mu));
        let regime = regime(
            &self.values(|f| f.residual),
            &self.values(|f| f.unscaled),
            mu.ci,
            self.scatter,
        );
        (mu, regime)
    }
}

/// What a setting's fits say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// The curves collapse and μ's interval contains 1 (and excludes 0).
    Simple,
    /// They collapse with μ's interval inside (0, 1).
    Sub,
    /// They collapse with μ's interval above 1.
    Super,
    /// The unscaled curves already coincide within the seed scatter: q
    /// depends on τ alone, μ is not identified.
    NoAging,
    /// No μ brings the curves within the seed scatter.
    NoCollapse,
    /// Too few seeds or fits, or μ's interval reaches 0.
    Inconclusive,
}

impl Regime {
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Simple => "simple aging",
            Regime::Sub => "subaging",
            Regime::Super => "superaging",
            Regime::NoAging => "no aging",
            Regime::NoCollapse => "no collapse",
            Regime::Inconclusive => "inconclusive",
        }
    }
}

fn median(v: &[f64]) -> f64 {
    crate::findings::quantile(v, 0.5)
}

/// The regime from the seeds' fits (their residuals at μ and at μ = 0) and
/// the seed scatter: the median residuals against
/// [`COLLAPSE_FACTOR`]·scatter, then μ's 95% t interval (`ci`) against 0
/// and 1.
pub fn regime(residual: &[f64], unscaled: &[f64], ci: (f64, f64), scatter: f64) -> Regime {
    if residual.len() < 2 || !scatter.is_finite() || !(ci.0.is_finite() && ci.1.is_finite()) {
        return Regime::Inconclusive;
    }
    let tol = COLLAPSE_FACTOR * scatter;
    if median(unscaled) <= tol {
        Regime::NoAging
    } else if median(residual) > tol {
        Regime::NoCollapse
    } else if ci.0 <= 0.0 {
        Regime::Inconclusive
    } else if ci.0 > 1.0 {
        Regime::Super
    } else if ci.1 < 1.0 {
        Regime::Sub
    } else {
        Regime::Simple
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// q = exp(−τ / t_w^μ₀) at lags shared by every curve.
    fn synthetic(mu0: f64, t_ws: &[f64]) -> Vec<Curve> {
        t_ws.iter()
            .map(|&tw| {
                let tau: Vec<f64> = (0..70).map(|i| 1.1f64.powi(i)).collect();
                let q = tau.iter().map(|t| (-t / tw.powf(mu0)).exp()).collect();
                Curve { t_w: tw, tau, q }
            })
            .collect()
    }

    #[test]
    fn recovers_the_exponent_of_exact_scaling() {
        for mu0 in [0.3, 0.7, 1.0, 1.6] {
            let c = synthetic(mu0, &[5.0, 10.0, 20.0, 40.0, 80.0]);
            let f = fit_mu(&c).expect("a fit");
            assert!((f.mu - mu0).abs() < 2e-3, "μ₀ = {mu0}: fitted {}", f.mu);
            assert!(f.residual < 2e-3, "residual {}", f.residual);
            assert!(f.unscaled > 10.0 * f.residual);
            assert!(!f.at_bound);
        }
    }

    #[test]
    fn a_stationary_process_has_mu_zero_and_no_unscaled_residual() {
        let c = synthetic(0.0, &[5.0, 10.0, 20.0]);
        let f = fit_mu(&c).expect("a fit");
        assert!(f.mu < 2e-3 && f.unscaled < 1e-12, "{f:?}");
        let (r, u) = ([f.residual; 3], [f.unscaled; 3]);
        assert_eq!(regime(&r, &u, (-0.01, 0.01), 0.01), Regime::NoAging);
    }

    /// The residual by hand: two curves, q = 1 and q = 0.5 on the same
    /// lags, differ by 0.5 at every overlapping point; shifted apart by
    /// rescaling they stop overlapping.
    #[test]
    fn residual_by_hand() {
        let c = vec![
            Curve {
                t_w: 1.0,
                tau: vec![1.0, 2.0, 4.0],
                q: vec![1.0, 1.0, 1.0],
            },
            Curve {
                t_w: std::f64::consts::E,
                tau: vec![1.0, 2.0, 4.0],
                q: vec![0.5, 0.5, 0.5],
            },
        ];
        let (r, o) = collapse_residual(&c, 0.0).unwrap();
        assert!((r - 0.5).abs() < 1e-15 && (o - 1.0).abs() < 1e-15);
        // μ = ln 2: the second curve's ln x shifts by −ln 2 · 1, so two of
        // its three points overlap the first's [0, ln 4] and vice versa.
        let (r, o) = collapse_residual(&c, 2f64.ln()).unwrap();
        assert!(
            (r - 0.5).abs() < 1e-15 && (o - 4.0 / 6.0).abs() < 1e-12,
            "{o}"
        );
        assert!(collapse_residual(&c, 3.0).is_none());
    }

    #[test]
    fn interpolation_is_linear_in_ln_x() {
        let c = vec![
            Curve {
                t_w: 1.0,
                tau: vec![1.0, 4.0],
                q: vec![1.0, 0.0],
            },
            Curve {
                t_w: 1.0,
                tau: vec![2.0, 100.0, 200.0],
                q: vec![0.5, 0.0, 0.0],
            },
        ];
        // τ = 2 is halfway between 1 and 4 in ln τ: q = 0.5 there, so
        // curve 2's point matches exactly; curve 1's τ = 4 against curve
        // 2 (ln-interpolated between 2 and 100) differs by a known amount.
        let (r, _) = collapse_residual(&c, 0.0).unwrap();
        let q2_at_4 = 0.5 - 0.5 * (4f64.ln() - 2f64.ln()) / (100f64.ln() - 2f64.ln());
        assert!((r - q2_at_4 / 2.0).abs() < 1e-15, "{r}");
    }

    #[test]
    fn regimes_follow_the_rule() {
        let (good, u) = ([0.01, 0.01], [0.3, 0.3]);
        assert_eq!(regime(&good, &u, (0.8, 1.3), 0.01), Regime::Simple);
        assert_eq!(regime(&good, &u, (0.4, 0.8), 0.01), Regime::Sub);
        assert_eq!(regime(&good, &u, (1.2, 1.8), 0.01), Regime::Super);
        assert_eq!(regime(&good, &u, (-0.1, 0.8), 0.01), Regime::Inconclusive);
        let bad = [0.1, 0.1];
        assert_eq!(regime(&bad, &u, (0.8, 1.3), 0.01), Regime::NoCollapse);
        assert_eq!(
            regime(&good[..1], &u[..1], (0.8, 1.3), 0.01),
            Regime::Inconclusive
        );
        assert_eq!(
            regime(&good, &u, (0.8, 1.3), f64::NAN),
            Regime::Inconclusive
        );
    }

    #[test]
    fn too_few_curves_give_no_fit() {
        assert!(fit_mu(&synthetic(1.0, &[5.0, 10.0])).is_none());
        let u = usable(synthetic(1.0, &[0.0, 5.0, 10.0]));
        assert_eq!(u.len(), 2, "t_w = 0 has no scaled lag");
    }

    #[test]
    fn scatter_is_the_mean_sample_sd() {
        let s = seed_scatter(vec![vec![0.0, 2.0], vec![1.0], vec![1.0, 1.0, 1.0]]);
        // sd(0, 2) = √2, sd(1, 1, 1) = 0; the single-seed cell is left out.
        assert!((s - 2f64.sqrt() / 2.0).abs() < 1e-15);
    }
}

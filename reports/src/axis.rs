//! Axes with hand-picked ticks. Every panel is drawn on a linear plotters
//! coordinate in *transformed* space (log10 of the value for a log axis), so
//! one drawing path serves linear and log axes, and the ticks, minor grid
//! lines and labels (10⁻², 0.5, 1000, …) are chosen here.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// How values map onto the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    /// log10 of the value.
    Log,
    /// log10 of (value + 1): for steps, which start at 0.
    LogPlusOne,
}

/// An axis: its scale, its range and ticks in transformed space.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub scale: Scale,
    pub lo: f64,
    pub hi: f64,
    /// Labelled ticks (bold grid lines), transformed.
    pub major: Vec<f64>,
    /// Unlabelled light grid lines, transformed.
    pub minor: Vec<f64>,
    /// Label ticks that are powers of ten as 10ⁿ.
    sci: bool,
    /// Drawn right to left: `hi` at the left edge (a loss axis, so that
    /// training proceeds to the right as the loss falls).
    pub reversed: bool,
}

impl Axis {
    /// The transformed coordinate of `v`, or None where the scale cannot show it.
    pub(crate) fn t(&self, v: f64) -> Option<f64> {
        let u = match self.scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
            Scale::LogPlusOne => (v + 1.0).log10(),
        };
        u.is_finite().then_some(u)
    }

    /// At most `n` labelled ticks: every k-th of them kept (k the smallest
    /// that fits), the others become unlabelled grid lines. For narrow
    /// panels, where a label per decade runs the labels together.
    pub(crate) fn at_most(mut self, n: usize) -> Axis {
        let n = n.max(2);
        if self.major.len() > n {
            let k = self.major.len().div_ceil(n);
            let all = std::mem::take(&mut self.major);
            for (i, u) in all.into_iter().enumerate() {
                if i % k == 0 {
                    self.major.push(u);
                } else {
                    self.minor.push(u);
                }
            }
        }
        self
    }

    /// The same axis drawn right to left.
    pub(crate) fn reversed(self) -> Axis {
        Axis {
            reversed: true,
            ..self
        }
    }

    /// The transformed coordinate at fraction `f` of the axis's length from
    /// its left end (0: the left edge, 1: the right edge).
    pub(crate) fn at_frac(&self, f: f64) -> f64 {
        if self.reversed {
            self.hi - f * (self.hi - self.lo)
        } else {
            self.lo + f * (self.hi - self.lo)
        }
    }

    fn inv(&self, u: f64) -> f64 {
        match self.scale {
            Scale::Linear => u,
            Scale::Log | Scale::LogPlusOne => 10f64.powf(u),
        }
    }

    /// Fits an axis to data spanning [min, max] (raw values), with `pad` of
    /// the (transformed) span added on each side.
    pub(crate) fn fit(scale: Scale, min: f64, max: f64, pad: f64) -> Axis {
        let probe = Axis {
            scale,
            lo: 0.0,
            hi: 1.0,
            major: vec![],
            minor: vec![],
            sci: false,
            reversed: false,
        };
        let (mut lo, mut hi) = match (probe.t(min), probe.t(max)) {
            (Some(a), Some(b)) if a <= b => (a, b),
            (Some(a), Some(b)) => (b, a),
            _ => (0.0, 1.0),
        };
        if hi - lo < 1e-12 {
            let half = match scale {
                Scale::Linear => (lo.abs() * 0.1).max(0.5),
                _ => 0.5,
            };
            lo -= half;
            hi += half;
        } else {
            let span = hi - lo;
            lo -= pad * span;
            hi += pad * span;
        }
        Axis::fixed(scale, lo, hi)
    }

    /// An axis over the transformed range [lo, hi].
    pub(crate) fn fixed(scale: Scale, lo: f64, hi: f64) -> Axis {
        let mut axis = Axis {
            scale,
            lo,
            hi,
            major: vec![],
            minor: vec![],
            sci: false,
            reversed: false,
        };
        match scale {
            Scale::Linear => axis.linear_ticks(),
            Scale::Log | Scale::LogPlusOne => axis.log_ticks(),
        }
        axis
    }

    fn linear_ticks(&mut self) {
        let step = nice_step((self.hi - self.lo) / 5.0);
        let first = (self.lo / step).ceil() as i64;
        let last = (self.hi / step).floor() as i64;
        self.major = (first..=last).map(|i| i as f64 * step).collect();
        let half = step / 2.0;
        let first = (self.lo / half).ceil() as i64;
        let last = (self.hi / half).floor() as i64;
        self.minor = (first..=last)
            .filter(|i| i % 2 != 0)
            .map(|i| i as f64 * half)
            .collect();
    }

    fn log_ticks(&mut self) {
        let inside = |u: f64| u >= self.lo - 1e-9 && u <= self.hi + 1e-9;
        let d_lo = self.lo.floor() as i64;
        let d_hi = self.hi.ceil() as i64;
        let at = |mantissas: &[f64]| -> Vec<f64> {
            (d_lo..=d_hi)
                .flat_map(|d| mantissas.iter().map(move |m| m.log10() + d as f64))
                .filter(|&u| inside(u))
                .collect()
        };
        let decades = at(&[1.0]);
        // Two or three decades carry few labels: label 1-2-5 instead when
        // that stays under ten labels.
        let one_two_five = at(&[1.0, 2.0, 5.0]);
        if decades.len() <= 3 && (3..=9).contains(&one_two_five.len()) {
            self.major = one_two_five;
            self.minor = at(&[3.0, 4.0, 6.0, 7.0, 8.0, 9.0]);
            self.sci = !self
                .major
                .iter()
                .all(|&u| (-3.0 - 1e-9..=4.0 + 1e-9).contains(&u));
            return;
        }
        if decades.len() >= 2 {
            // Thin out to at most ~7 labelled decades.
            let every = decades.len().div_ceil(7);
            self.major = decades
                .iter()
                .copied()
                .filter(|u| (u.round() as i64).rem_euclid(every as i64) == 0)
                .collect();
            if self.major.len() < 2 {
                self.major = decades.clone();
            }
            self.minor = if every == 1 {
                at(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            } else {
                decades
                    .into_iter()
                    .filter(|u| !self.major.iter().any(|m| (m - u).abs() < 1e-9))
                    .collect()
            };
            let plain = self
                .major
                .iter()
                .all(|&u| (-3.0 - 1e-9..=4.0 + 1e-9).contains(&u));
            self.sci = !plain;
            return;
        }
        for (major, minor) in [
            (&[1.0, 2.0, 5.0][..], &[3.0, 4.0, 6.0, 7.0, 8.0, 9.0][..]),
            (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..], &[][..]),
        ] {
            let m = at(major);
            if m.len() >= 3 {
                self.major = m;
                self.minor = at(minor);
                return;
            }
        }
        // Less than a factor of ~1.3: nice linear ticks in raw space.
        // For LogPlusOne, inv gives value + 1: the quantity the axis shows.
        let (a, b) = (self.inv(self.lo), self.inv(self.hi));
        let step = nice_step((b - a) / 4.0);
        let first = (a / step).ceil() as i64;
        let last = (b / step).floor() as i64;
        self.major = (first..=last)
            .map(|i| (i as f64 * step).log10())
            .filter(|u| u.is_finite())
            .collect();
        self.minor = vec![];
    }

    /// The tick label of the transformed value `u`.
    pub(crate) fn label(&self, u: f64) -> String {
        match self.scale {
            Scale::Linear => {
                let step = if self.major.len() >= 2 {
                    (self.major[1] - self.major[0]).abs()
                } else {
                    (self.hi - self.lo).abs() / 5.0
                };
                fmt_linear(u, step)
            }
            Scale::Log | Scale::LogPlusOne => {
                let v = 10f64.powf(u);
                if self.sci {
                    fmt_sci(v)
                } else {
                    fmt_plain(v)
                }
            }
        }
    }
}

/// The axis is its own plotters coordinate: linear in transformed space,
/// with exactly our ticks (labels come from [`Axis::label`]).
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let pixels = f64::from(limit.1 - limit.0);
        if span == 0.0 || pixels == 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        // Clamp so that a stray value cannot overflow the pixel type.
        let from_left = if self.reversed {
            self.hi - value
        } else {
            value - self.lo
        };
        let frac = (from_left / span).clamp(-4.0, 5.0);
        let frac = if frac.is_nan() { 0.0 } else { frac };
        limit.0 + (pixels * frac).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// 1, 2, 2.5 or 5 times a power of ten: the one closest to `raw` in the
/// number of ticks it gives.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| {
            let da = (raw / a).ln().abs();
            let db = (raw / b).ln().abs();
            da.total_cmp(&db)
        })
        .unwrap_or(mag)
}

/// A Unicode minus instead of a hyphen, as typeset figures have it.
fn minus(s: String) -> String {
    match s.strip_prefix('-') {
        Some(rest) => format!("\u{2212}{rest}"),
        None => s,
    }
}

fn fmt_linear(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    let decimals = if step >= 1.0 {
        0
    } else {
        let d = (-step.log10()).ceil() as usize;
        // 0.25 needs one more digit than 0.2
        let scaled = step * 10f64.powi(d as i32);
        if (scaled - scaled.round()).abs() > 1e-6 {
            d + 1
        } else {
            d
        }
    };
    if v.abs() >= 1e6 {
        return fmt_sci(v);
    }
    minus(format!("{v:.decimals$}"))
}

/// 0.001, 0.2, 1, 50, 2000: up to 3 significant digits, no trailing zeros.
pub(crate) fn fmt_plain(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    minus(s)
}

const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];

fn superscript(n: i32) -> String {
    let mut s = String::new();
    if n < 0 {
        s.push('⁻');
    }
    for c in n.unsigned_abs().to_string().chars() {
        s.push(SUPERSCRIPT[c.to_digit(10).unwrap_or(0) as usize]);
    }
    s
}

/// 0.05 or 2×10⁻⁷: plain between 10⁻³ and 10⁴, else scientific.
pub(crate) fn fmt_plain_or_sci(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e4).contains(&v.abs()) {
        fmt_sci(v)
    } else {
        fmt_plain(v)
    }
}

/// 10⁻³, 2×10⁴.
fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let e = v.abs().log10().floor() as i32;
    let m = v / 10f64.powi(e);
    let m_round = (m * 10.0).round() / 10.0;
    if (m_round.abs() - 1.0).abs() < 1e-9 {
        let sign = if v < 0.0 { "\u{2212}" } else { "" };
        format!("{sign}10{}", superscript(e))
    } else {
        minus(format!("{}×10{}", fmt_plain(m_round), superscript(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_like_a_paper() {
        assert_eq!(fmt_plain(0.001), "0.001");
        assert_eq!(fmt_plain(1000.0000001), "1000");
        assert_eq!(fmt_plain(0.19999999), "0.2");
        assert_eq!(fmt_sci(1e-5), "10⁻⁵");
        assert_eq!(fmt_sci(2e4), "2×10⁴");
        assert_eq!(fmt_linear(0.25, 0.25), "0.25");
        assert_eq!(fmt_linear(-1.0, 0.5), "\u{2212}1.0");
        assert_eq!(fmt_linear(1e-17, 0.2), "0.0");
    }

    #[test]
    fn log_axis_over_decades() {
        let a = Axis::fit(Scale::LogPlusOne, 0.0, 9999.0, 0.0);
        assert_eq!(a.major.len(), 5);
        assert_eq!(a.label(a.major[4]), "10000");
        let a = Axis::fit(Scale::Log, 1e-6, 1.0, 0.0);
        assert_eq!(a.label(a.major[0]), "10⁻⁶");
        // Less than one decade: 1-2-5 ticks.
        let a = Axis::fit(Scale::Log, 0.3, 2.5, 0.0);
        let labels: Vec<String> = a.major.iter().map(|&u| a.label(u)).collect();
        assert_eq!(labels, ["0.5", "1", "2"]);
        // Two decades: 1-2-5 labels too.
        let a = Axis::fit(Scale::Log, 0.04, 2.5, 0.0);
        let labels: Vec<String> = a.major.iter().map(|&u| a.label(u)).collect();
        assert_eq!(labels, ["0.05", "0.1", "0.2", "0.5", "1", "2"]);
    }

    #[test]
    fn a_reversed_axis_maps_right_to_left() {
        let a = Axis::fit(Scale::Log, 1e-3, 1.0, 0.0);
        let r = a.clone().reversed();
        let px = (100, 1100);
        // The largest value sits at the left edge, the smallest at the right.
        assert_eq!(r.map(&a.hi, px), 100);
        assert_eq!(r.map(&a.lo, px), 1100);
        assert_eq!(a.map(&a.lo, px), 100);
        let mid = (a.lo + a.hi) / 2.0;
        assert_eq!(r.map(&mid, px), a.map(&mid, px));
        assert_eq!(r.at_frac(0.0), a.hi);
        assert_eq!(a.at_frac(1.0), a.hi);
        // Ticks and labels do not depend on the direction.
        assert_eq!(r.major, a.major);
    }

    #[test]
    fn at_most_n_labels() {
        let a = Axis::fit(Scale::Log, 1e-6, 1.0, 0.0);
        assert_eq!(a.major.len(), 7);
        let b = a.clone().at_most(4);
        let labels: Vec<String> = b.major.iter().map(|&u| b.label(u)).collect();
        assert_eq!(labels, ["10⁻⁶", "10⁻⁴", "10⁻²", "10⁰"]);
        assert_eq!(b.minor.len(), a.minor.len() + 3);
    }

    #[test]
    fn linear_ticks_are_nice() {
        let a = Axis::fixed(Scale::Linear, -0.02, 1.02);
        let labels: Vec<String> = a.major.iter().map(|&u| a.label(u)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }
}

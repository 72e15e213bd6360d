//! One fixed colour per optimizer name, the same in every figure.
//!
//! The named colours are the Okabe–Ito colour-blind-safe set (plus a purple
//! and a brown); unknown optimizer names get a fallback chosen by a stable
//! hash of the name, so they too keep their colour across figures.

use plotters::style::RGBColor;

const NAMED: [(&str, RGBColor); 8] = [
    ("sgd", RGBColor(0x00, 0x72, 0xB2)),      // blue
    ("momentum", RGBColor(0x56, 0xB4, 0xE9)), // sky blue
    ("adam", RGBColor(0xD5, 0x5E, 0x00)),     // vermillion
    ("adamw", RGBColor(0xE6, 0x9F, 0x00)),    // orange
    ("rmsprop", RGBColor(0x00, 0x9E, 0x73)),  // bluish green
    ("adagrad", RGBColor(0xCC, 0x79, 0xA7)),  // reddish purple
    ("lion", RGBColor(0x6A, 0x3D, 0x9A)),     // purple
    ("muon", RGBColor(0x8C, 0x56, 0x4B)),     // brown
];

const FALLBACK: [RGBColor; 6] = [
    RGBColor(0x17, 0xA2, 0xB8), // teal
    RGBColor(0x7F, 0x7F, 0x7F), // grey
    RGBColor(0x9A, 0x9A, 0x1A), // olive
    RGBColor(0x1F, 0x3A, 0x93), // navy
    RGBColor(0xE7, 0x29, 0x8A), // magenta
    RGBColor(0x33, 0x33, 0x33), // near black
];

/// The colour of an optimizer (case-insensitive name).
pub fn optimizer_color(name: &str) -> RGBColor {
    let key = name.trim().to_ascii_lowercase();
    if let Some((_, c)) = NAMED.iter().find(|(n, _)| *n == key) {
        return *c;
    }
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    FALLBACK[(h % FALLBACK.len() as u64) as usize]
}

/// Where the optimizer sorts in legends: the named ones in palette order,
/// then the rest.
pub(crate) fn optimizer_rank(name: &str) -> usize {
    let key = name.trim().to_ascii_lowercase();
    NAMED
        .iter()
        .position(|(n, _)| *n == key)
        .unwrap_or(NAMED.len())
}

/// SGD-family optimizers, whose sharpness is compared with 2/η.
pub(crate) fn is_sgd_family(name: &str) -> bool {
    let key = name.trim().to_ascii_lowercase();
    matches!(
        key.as_str(),
        "sgd" | "gd" | "momentum" | "nesterov" | "sgdm" | "heavy_ball" | "heavy-ball"
    ) || key.starts_with("sgd")
}

/// Legend order and colours of the groups of a figure, each given as its
/// optimizer and its learning rate: the optimizers in palette order; within
/// one optimizer (a sweep), ascending learning rate, then first appearance.
/// A sweep stays in its optimizer's hue, on a lightness ramp from light
/// (smallest η) to dark (largest), so that the colour still names the
/// optimizer and the lightness orders the sweep.
/// Returns the group indices in order, and each group's colour (by index).
pub(crate) fn sweep_order(groups: &[(&str, Option<f64>)]) -> (Vec<usize>, Vec<RGBColor>) {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        let (oa, la) = groups[a];
        let (ob, lb) = groups[b];
        let lr = |l: Option<f64>| l.filter(|v| v.is_finite()).unwrap_or(f64::INFINITY);
        (optimizer_rank(oa), oa.trim().to_ascii_lowercase())
            .cmp(&(optimizer_rank(ob), ob.trim().to_ascii_lowercase()))
            .then(lr(la).total_cmp(&lr(lb)))
            .then(a.cmp(&b))
    });
    let key = |i: usize| groups[i].0.trim().to_ascii_lowercase();
    let mut colors = vec![RGBColor(0, 0, 0); groups.len()];
    for &i in &order {
        let same: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&j| key(j) == key(i))
            .collect();
        let pos = same.iter().position(|&j| j == i).unwrap_or(0);
        colors[i] = ramp(optimizer_color(groups[i].0), pos, same.len());
    }
    (order, colors)
}

/// Position `i` of `n` on a light-to-dark ramp of colour `c` (the colour
/// itself when alone, and in the middle of an odd ramp).
pub(crate) fn ramp(c: RGBColor, i: usize, n: usize) -> RGBColor {
    if n <= 1 {
        return c;
    }
    let t = i as f64 / (n - 1) as f64;
    let f = 0.9 * t - 0.45;
    let (target, amount) = if f < 0.0 { (255.0, -f) } else { (0.0, f) };
    let mix = |v: u8| (f64::from(v) * (1.0 - amount) + target * amount).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// The `i`-th shade of a colour: the colour itself, then alternately
/// darker and lighter.
pub(crate) fn shade(c: RGBColor, i: usize) -> RGBColor {
    if i == 0 {
        return c;
    }
    let amount = (0.3 * i.div_ceil(2) as f64).min(0.6);
    let target = if i % 2 == 1 { 0.0 } else { 255.0 };
    let mix = |v: u8| (f64::from(v) * (1.0 - amount) + target * amount).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Opacity of the min–max band drawn under a mean line (every figure).
pub(crate) const BAND_ALPHA: f64 = 0.2;

/// The closed outline of a band between two curves given in data order:
/// the upper curve forward, then the lower backward; None with fewer than
/// three points.
pub(crate) fn band_outline(
    mut upper: Vec<(f64, f64)>,
    mut lower: Vec<(f64, f64)>,
) -> Option<Vec<(f64, f64)>> {
    lower.reverse();
    upper.extend(lower);
    (upper.len() >= 3).then_some(upper)
}

/// A darker version of a colour, for text drawn in it.
pub(crate) fn darker(c: RGBColor) -> RGBColor {
    shade(c, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_fixed_and_distinct() {
        assert_eq!(optimizer_color("Adam"), optimizer_color("adam"));
        assert_eq!(optimizer_color("shampoo"), optimizer_color("shampoo"));
        let named: Vec<RGBColor> = NAMED.iter().map(|(_, c)| *c).collect();
        for (i, a) in named.iter().enumerate() {
            for b in &named[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(is_sgd_family("sgd") && is_sgd_family("momentum") && !is_sgd_family("adam"));
    }

    /// An lr sweep sorts by η within its optimizer and gets lighter-to-darker
    /// shades of the optimizer's colour (one hue); other optimizers keep
    /// their own colour and palette order.
    #[test]
    fn a_sweep_is_ordered_by_lr_on_one_hue() {
        let groups = [
            ("adam", Some(1e-3)),
            ("sgd", Some(0.1)),
            ("sgd", Some(0.01)),
            ("sgd", Some(0.03)),
        ];
        let (order, colors) = sweep_order(&groups);
        assert_eq!(order, [2, 3, 1, 0]);
        assert_eq!(colors[0], optimizer_color("adam"));
        assert_eq!(colors[3], optimizer_color("sgd"), "the middle of three");
        let luma =
            |c: RGBColor| 0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2);
        assert!(luma(colors[2]) > luma(colors[3]) && luma(colors[3]) > luma(colors[1]));
        // One hue: the shades are mixes of the colour with white or black,
        // so the blue channel stays the largest.
        for i in [1, 2, 3] {
            let c = colors[i];
            assert!(c.2 >= c.0 && c.2 >= c.1, "{c:?}");
        }
    }
}

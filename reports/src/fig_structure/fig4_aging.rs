//! Fig 4: aging of the top-k Hessian subspace, q(t_w, t_w + τ), against
//! the lag, the train loss, and the scaled lag τ/t_w^μ (the collapse).

use super::*;

pub(super) struct AgingCurve {
    pub(super) t_w: i64,
    pub(super) tau: Vec<f64>,
    /// Mean over the group's seeds, and the min–max band.
    pub(super) q: Vec<f64>,
    pub(super) lo: Vec<f64>,
    pub(super) hi: Vec<f64>,
    /// Per point: every seed's overlap row is trusted (both ends).
    pub(super) trusted: Vec<bool>,
    /// Per point: the mean over seeds of ln(train loss) at t = t_w + τ.
    pub(super) ln_loss: Vec<f64>,
}

impl AgingCurve {
    /// The points at the seeds' geometric-mean train loss at t instead of
    /// at τ (points without a loss dropped).
    pub(super) fn against_loss(&self, floor: Option<f64>) -> AgingCurve {
        let keep = kept_at_loss(&self.ln_loss, self.tau.len(), floor);
        let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        AgingCurve {
            t_w: self.t_w,
            tau: keep.iter().map(|&i| self.ln_loss[i].exp()).collect(),
            q: pick(&self.q),
            lo: pick(&self.lo),
            hi: pick(&self.hi),
            trusted: keep.iter().map(|&i| self.trusted[i]).collect(),
            ln_loss: pick(&self.ln_loss),
        }
    }
}

pub(super) struct AgingPanel {
    pub(super) title: String,
    pub(super) color: RGBColor,
    pub(super) seeds: usize,
    /// The most checkpoints a seed has: a waiting time needs 3 later ones.
    pub(super) checkpoints: usize,
    pub(super) curves: Vec<AgingCurve>,
    /// The collapse fit over every waiting time t_w > 0 (aging.rs): μ over
    /// the seeds and the regime; None without a fit.
    pub(super) fit: Option<(crate::findings::Summary, aging::Regime)>,
    /// Lines written under the panel, joined by " · " (the collapse fit).
    pub(super) note: Vec<String>,
}

pub(super) struct Aging {
    /// Against the lag τ, or against the train loss at t.
    pub(super) along: XAxis,
    /// Where a loss axis is cut (see `chart::loss_floor`).
    pub(super) loss_floor: Option<f64>,
    pub(super) panels: Vec<AgingPanel>,
    /// x is the scaled lag τ/t_w^μ, μ each panel's fitted exponent.
    pub(super) scaled: bool,
    /// The waiting times drawn (the same in every panel that has them).
    pub(super) t_ws: Vec<i64>,
    /// Some point drawn is untrusted, and every one is: the legend's note.
    pub(super) untrusted: (bool, bool),
}

/// Panels in a grid of at most 4 columns: (rows, columns).
pub(super) fn grid(n: usize) -> (usize, usize) {
    let n = n.max(1);
    let cols = match n {
        1..=4 => n,
        5 | 6 | 9 => 3,
        _ => 4,
    };
    (n.div_ceil(cols), cols)
}

/// The number of seeds averaged per setting, "3" or a range "2–3", when
/// some setting has several (None: nothing is averaged).
pub(super) fn seed_count(counts: impl Iterator<Item = usize>) -> Option<String> {
    let counts: Vec<usize> = counts.collect();
    let (lo, hi) = (*counts.iter().min()?, *counts.iter().max()?);
    (hi > 1).then(|| {
        if lo == hi {
            format!("{hi}")
        } else {
            format!("{lo}–{hi}")
        }
    })
}

/// Height of one row of grid panels.
pub(super) const GRID_ROW_H: u32 = 820;
/// Height of the note line under a panel (the collapse fit).
pub(super) const NOTE_H: i32 = 56;

impl Aging {
    pub(super) fn load(input: &ReportInput, groups: &[Group]) -> Result<Aging, ReportError> {
        // Per group: (t_w, t) → every seed's q, whether all are trusted,
        // and every seed's ln(train loss) at t.
        type Cell = (Vec<f64>, bool, Vec<f64>);
        type Cells = BTreeMap<(i64, i64), Cell>;
        let mut per_group: Vec<Cells> = Vec::new();
        let mut fits = Vec::new();
        for g in groups {
            let mut cells = Cells::new();
            let mut per_seed = Vec::new();
            for &run in &g.runs {
                let cols = [
                    ("t_w", Kind::Int),
                    ("t", Kind::Int),
                    ("subspace_overlap", Kind::Float),
                ];
                let (df, path) = hessian_rows(input, run, "metrics/overlap.arrow", &cols, |_| {
                    Ok(col("t").gt(col("t_w")))
                })?;
                let tw = i64s(&df, "t_w", &path)?;
                let t = i64s(&df, "t", &path)?;
                let q = f64s(&df, "subspace_overlap", &path)?;
                let ok = bools(&df, "trusted", &path)?;
                let clock = LossClock::load(input.runs[run].file("train.arrow")?)?;
                for i in 0..tw.len() {
                    let e = cells
                        .entry((tw[i], t[i]))
                        .or_insert((Vec::new(), true, Vec::new()));
                    if q[i].is_finite() {
                        e.0.push(q[i]);
                        e.2.push(clock.ln_at(t[i] as f64));
                    }
                    e.1 &= ok[i];
                }
                // This seed's trusted pairs, for the collapse fit.
                let pairs: BTreeMap<(i64, i64), f64> = (0..tw.len())
                    .filter(|&i| ok[i])
                    .map(|i| ((tw[i], t[i]), q[i]))
                    .collect();
                per_seed.push(aging::curves_of(&pairs, 0.0, f64::INFINITY));
            }
            per_group.push(cells);
            let fit = aging::fit_setting(&per_seed);
            fits.push(fit.fits.iter().any(Option::is_some).then(|| fit.verdict()));
        }
        // Waiting times with at least three later checkpoints in some group,
        // six of them spread in log(t_w + 1): the same ones in every panel.
        let mut cands: Vec<i64> = Vec::new();
        for cells in &per_group {
            let mut later: BTreeMap<i64, usize> = BTreeMap::new();
            for (w, _) in cells.keys() {
                *later.entry(*w).or_default() += 1;
            }
            cands.extend(later.into_iter().filter(|(_, n)| *n >= 3).map(|(w, _)| w));
        }
        cands.sort_unstable();
        cands.dedup();
        let t_ws = log_spread(&cands, 6);
        let panels: Vec<AgingPanel> = groups
            .iter()
            .zip(&per_group)
            .zip(fits)
            .map(|((g, cells), fit)| {
                let curves = t_ws
                    .iter()
                    .filter_map(|&w| {
                        let pts: Vec<(i64, &Cell)> = cells
                            .range((w, i64::MIN)..=(w, i64::MAX))
                            .filter(|(_, v)| !v.0.is_empty())
                            .map(|((_, t), v)| (*t, v))
                            .collect();
                        let stat = |f: fn(&[f64]) -> f64| -> Vec<f64> {
                            pts.iter().map(|(_, v)| f(&v.0)).collect()
                        };
                        (!pts.is_empty()).then(|| AgingCurve {
                            t_w: w,
                            tau: pts.iter().map(|(t, _)| (t - w) as f64).collect(),
                            q: stat(|v| v.iter().sum::<f64>() / v.len() as f64),
                            lo: stat(|v| v.iter().copied().fold(f64::INFINITY, f64::min)),
                            hi: stat(|v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                            trusted: pts.iter().map(|(_, v)| v.1).collect(),
                            // NaN when some seed has no loss at t.
                            ln_loss: pts
                                .iter()
                                .map(|(_, v)| v.2.iter().sum::<f64>() / v.2.len() as f64)
                                .collect(),
                        })
                    })
                    .collect();
                let mut steps: Vec<i64> = cells.keys().flat_map(|&(w, t)| [w, t]).collect();
                steps.sort_unstable();
                steps.dedup();
                AgingPanel {
                    title: g.label.clone(),
                    color: g.color,
                    seeds: g.runs.len(),
                    checkpoints: steps.len(),
                    curves,
                    fit,
                    note: Vec::new(),
                }
            })
            .collect();
        let untrusted = trust_flags(
            panels
                .iter()
                .flat_map(|p: &AgingPanel| &p.curves)
                .flat_map(|c| &c.trusted),
        );
        Ok(Aging {
            along: XAxis::Step,
            loss_floor: None,
            scaled: false,
            panels,
            t_ws,
            untrusted,
        })
    }

    /// The loss-axis variant: each curve at the train loss at t.
    pub(super) fn against_loss(&self) -> Aging {
        let floor = loss_floor(
            self.panels
                .iter()
                .flat_map(|p| &p.curves)
                .flat_map(|c| c.ln_loss.iter().map(|l| l.exp())),
        );
        Aging {
            along: XAxis::Loss,
            loss_floor: floor,
            scaled: false,
            panels: self
                .panels
                .iter()
                .map(|p| AgingPanel {
                    title: p.title.clone(),
                    color: p.color,
                    seeds: p.seeds,
                    checkpoints: p.checkpoints,
                    curves: p.curves.iter().map(|c| c.against_loss(floor)).collect(),
                    fit: p.fit.clone(),
                    note: p.note.clone(),
                })
                .collect(),
            t_ws: self.t_ws.clone(),
            untrusted: self.untrusted,
        }
    }

    /// The collapse variant: each panel's curves against τ/t_w^μ, μ the
    /// mean of its seeds' fitted exponents, the fit and its regime in the
    /// panel's title. Waiting time 0 has no scaled lag and is left out; a
    /// panel without a fit keeps no curve.
    pub(super) fn collapsed(&self) -> Aging {
        let panels = self
            .panels
            .iter()
            .map(|p| {
                let (note, curves) = match &p.fit {
                    Some((mu, regime)) if mu.mean.is_finite() => {
                        let m = mu.mean;
                        let ci = if mu.n >= 2 {
                            format!(" [{}, {}]", fmt2(mu.ci.0), fmt2(mu.ci.1))
                        } else {
                            String::new()
                        };
                        let curves = p
                            .curves
                            .iter()
                            .filter(|c| c.t_w > 0)
                            .map(|c| AgingCurve {
                                t_w: c.t_w,
                                tau: c.tau.iter().map(|t| t / (c.t_w as f64).powf(m)).collect(),
                                q: c.q.clone(),
                                lo: c.lo.clone(),
                                hi: c.hi.clone(),
                                trusted: c.trusted.clone(),
                                ln_loss: c.ln_loss.clone(),
                            })
                            .collect();
                        (
                            vec![format!("μ = {}{ci}", fmt2(m)), regime.as_str().to_string()],
                            curves,
                        )
                    }
                    _ => (vec!["no fit".to_string()], Vec::new()),
                };
                AgingPanel {
                    title: p.title.clone(),
                    color: p.color,
                    seeds: p.seeds,
                    checkpoints: p.checkpoints,
                    curves,
                    fit: p.fit.clone(),
                    note,
                }
            })
            .collect();
        Aging {
            along: XAxis::Step,
            loss_floor: None,
            scaled: true,
            panels,
            t_ws: self.t_ws.iter().copied().filter(|w| *w > 0).collect(),
            untrusted: self.untrusted,
        }
    }

    /// One legend for the figure: the waiting times (light to dark, in each
    /// panel's own colour; drawn here in grey), the band's meaning and the
    /// untrusted-points note.
    pub(super) fn legend(&self) -> Vec<Entry> {
        let n = self.t_ws.len();
        let mut e: Vec<Entry> = vec![Entry::note("waiting time:")];
        e.extend(self.t_ws.iter().enumerate().map(|(i, w)| {
            Entry::new(
                sequential(INK_GREY, lightness(i, n)),
                Sample::Line(LINE_W + 1),
                format!("t_w = {w}"),
            )
        }));
        if let Some(seeds) = self.seed_note() {
            e.push(Entry::note(seeds));
        }
        if self.along == XAxis::Loss {
            e.push(Entry::note(
                loss_note(self.panels.iter().any(|p| p.seeds > 1))
                    .replace("at the checkpoint", "at t, decreasing to the right"),
            ));
        }
        e.extend(self.loss_floor.map(|f| Entry::note(loss_cut_note(f))));
        e.extend(untrusted_entry(self.untrusted));
        e
    }

    /// "line: mean over 3 seeds · band: min–max" when some panel has
    /// several seeds (the count, or its range).
    pub(super) fn seed_note(&self) -> Option<String> {
        seed_count(self.panels.iter().map(|p| p.seeds))
            .map(|n| format!("line: mean over {n} seeds · band: min–max"))
    }

    pub(super) fn legend_h(&self) -> u32 {
        legend_layout(&self.legend()).height()
    }
}

/// A number with two decimals, a typeset minus for negatives.
pub(super) fn fmt2(v: f64) -> String {
    format!("{v:.2}").replace('-', "\u{2212}")
}

/// A neutral grey whose lightness ramp stands for the waiting times in the
/// legend.
pub(super) const INK_GREY: RGBColor = RGBColor(0x60, 0x60, 0x60);

/// The position of curve `i` of `n` on the light-to-dark ramp.
pub(super) fn lightness(i: usize, n: usize) -> f64 {
    if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    }
}

/// The largest font size (from `px` down to 26) at which `text` fits in
/// `width` pixels, and the text, shortened with "…" if even that is too wide.
pub(super) fn fitted_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    px: f64,
    width: i32,
) -> Result<(String, f64), String> {
    let fits = |t: &str, size: f64| -> Result<bool, String> {
        let (w, _) = area
            .estimate_text_size(t, &text_style(size, INK))
            .map_err(pe)?;
        Ok((w as i32) <= width)
    };
    let mut size = px;
    while size > 26.0 {
        if fits(text, size)? {
            return Ok((text.to_string(), size));
        }
        size -= 2.0;
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let t: String = chars[..keep].iter().collect::<String>() + "…";
        if fits(&t, size)? {
            return Ok((t, size));
        }
    }
    Ok(("…".into(), size))
}

impl Figure for Aging {
    fn height(&self) -> u32 {
        let (rows, _) = grid(self.panels.len());
        let note = if self.scaled { NOTE_H as u32 } else { 0 };
        90 + self.legend_h() + rows as u32 * (GRID_ROW_H + note)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (title, x_desc) = match self.along {
            XAxis::Step if self.scaled => (
                "Aging collapse: q(t_w, t_w + τ) against τ / t_w^μ",
                "scaled lag τ / t_w^μ",
            ),
            XAxis::Step => (
                "Aging of the top-k Hessian subspace: q(t_w, t_w + τ)",
                "lag τ (steps)",
            ),
            XAxis::Loss => (
                "Aging of the top-k Hessian subspace: q(t_w, t) against the train loss at t",
                "train loss at t",
            ),
        };
        let rest = headed(root, title, 90, 50)?;
        let (legend, body) = rest.split_vertically(self.legend_h());
        legend_layout(&self.legend()).draw(&legend, &self.legend())?;
        let taus = self
            .panels
            .iter()
            .flat_map(|p| p.curves.iter().flat_map(|c| c.tau.iter().copied()));
        let x = match self.along {
            XAxis::Step => {
                let (lo, hi) = finite_range(taus, true).unwrap_or((1.0, 1000.0));
                Axis::fit(Scale::Log, lo, hi, 0.03)
            }
            XAxis::Loss => {
                let (lo, hi) = finite_range(taus, true).unwrap_or((1e-3, 1.0));
                Axis::fit(Scale::Log, lo, hi, 0.03).reversed()
            }
        };
        // Narrow panels (3 or 4 columns): at most 4 labelled decades.
        let (rows, cols) = grid(self.panels.len());
        let x = for_columns(x, cols);
        let y = unit_axis();
        let cells = body.split_evenly((rows, cols));
        for (i, (cell, p)) in cells.iter().zip(&self.panels).enumerate() {
            // Scaled lags differ by orders of magnitude between panels:
            // each gets its own x range.
            let x = if self.scaled {
                let taus = p.curves.iter().flat_map(|c| c.tau.iter().copied());
                let (lo, hi) = finite_range(taus, true).unwrap_or((1e-3, 1.0));
                for_columns(Axis::fit(Scale::Log, lo, hi, 0.03), cols)
            } else {
                x.clone()
            };
            // The y axis is shared along a row: its title in the first column.
            let y_desc = match (i % cols == 0, self.along) {
                (false, _) => "",
                (true, XAxis::Step) => "q(t_w, t_w + τ)",
                (true, XAxis::Loss) => "q(t_w, t)",
            };
            // The collapse fit, in one line under the panel.
            let plot = if p.note.is_empty() {
                cell.clone()
            } else {
                with_foot(cell, &p.note.join(" · "))?
            };
            let cell = &plot;
            let mut chart = line_chart(cell, &p.title, &x, &y, x_desc, y_desc)?;
            let n = self.t_ws.len();
            let pts = |xs: &[f64], ys: &[f64]| -> Vec<(f64, f64)> {
                xs.iter()
                    .zip(ys)
                    .filter_map(|(&a, &b)| Some((x.t(a)?, y.t(b)?)))
                    .collect()
            };
            for c in &p.curves {
                let i = self.t_ws.iter().position(|w| *w == c.t_w).unwrap_or(0);
                let color = sequential(p.color, lightness(i, n));
                if p.seeds > 1 {
                    if let Some(poly) = band_outline(pts(&c.tau, &c.hi), pts(&c.tau, &c.lo)) {
                        chart
                            .draw_series(std::iter::once(Polygon::new(
                                poly,
                                color.mix(BAND_ALPHA).filled(),
                            )))
                            .map_err(pe)?;
                    }
                }
                let marked: Vec<((f64, f64), bool)> = c
                    .tau
                    .iter()
                    .zip(&c.q)
                    .zip(&c.trusted)
                    .filter_map(|((&a, &b), &ok)| Some(((x.t(a)?, y.t(b)?), ok)))
                    .collect();
                let line: Vec<(f64, f64)> = marked.iter().map(|m| m.0).collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(LINE_W)))
                    .map_err(pe)?;
                if line.len() <= 60 {
                    chart
                        .draw_series(
                            marked
                                .iter()
                                .filter(|m| m.1)
                                .map(|&(q, _)| Circle::new(q, 6, color.filled())),
                        )
                        .map_err(pe)?;
                }
                chart
                    .draw_series(
                        marked
                            .iter()
                            .filter(|m| !m.1)
                            .flat_map(|&(q, _)| hollow_marker(q, MARKER_R, color)),
                    )
                    .map_err(pe)?;
            }
            if p.curves.is_empty() {
                no_data(
                    &mut chart,
                    &x,
                    &y,
                    if p.checkpoints < 4 {
                        "too few checkpoints"
                    } else if self.scaled {
                        "too few waiting times to fit μ"
                    } else {
                        "no data"
                    },
                )?;
            }
        }
        Ok(())
    }
}

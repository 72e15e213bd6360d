"""An independent check of the findings stage, with numpy and scipy.

argv: request.json (from reports/tests/findings.rs):
  {"out": dir with findings.arrow and findings_tests.arrow,
   "runs": {run_id: run dir}, "settings": {setting: [run_id, ...]},
   "early_before": 0.2, "loss_levels": [...]}

Checks, and prints the largest differences as JSON; exits 1 on any above
1e-9 (relative):
- every row's n, mean, sd (ddof = 1) and 95% t interval from its values;
- every Welch test's t, df and two-sided p (scipy.stats.ttest_ind with
  equal_var=False) from the two rows it compares;
- the null's 5/50/95% quantiles (numpy's default, linear) from the run's
  null_localization.arrow;
- two measures recomputed from the raw metric files: the early-window
  displacement rate and the step where the loss first reaches L/L0 = 0.1;
- the aging collapse (window "all"), per seed from overlap.arrow: the
  residual at the reported μ and at μ = 0 recomputed with numpy, and no μ on
  a 0.01 grid over [0, 4] collapsing the curves better than the reported one.
"""
import json
import sys

import numpy as np
import pyarrow.ipc as ipc
from scipy import stats

req = json.load(open(sys.argv[1]))
read = lambda p: ipc.open_file(p).read_all().to_pylist()
rows = read(f"{req['out']}/findings.arrow")
tests = read(f"{req['out']}/findings_tests.arrow")
worst = {"summary": 0.0, "welch": 0.0, "quantile": 0.0, "recomputed": 0.0, "aging": 0.0}
fail = []


def rel(a, b):
    if a is None or b is None:
        return 0.0 if a is None and b is None else float("inf")
    if np.isnan(a) and np.isnan(b):
        return 0.0
    return abs(a - b) / max(abs(b), 1e-300)


def note(kind, d, what):
    worst[kind] = max(worst[kind], d)
    if not d <= 1e-9:
        fail.append(f"{what}: relative difference {d}")


by_key = {}
for r in rows:
    by_key[(r["setting"], r["measure"], r["window"])] = r
    v = np.asarray(r["values"], dtype=float)
    if r["n"] != len(v):
        fail.append(f"{r['setting']} {r['measure']} {r['window']}: n {r['n']} vs {len(v)} values")
    if len(v) < 2:
        continue
    what = f"{r['setting']} {r['measure']} {r['window']}"
    mean, sd = v.mean(), v.std(ddof=1)
    half = stats.t.ppf(0.975, len(v) - 1) * sd / np.sqrt(len(v))
    for got, want, name in [(r["mean"], mean, "mean"), (r["sd"], sd, "sd"),
                            (r["ci_lo"], mean - half, "ci_lo"), (r["ci_hi"], mean + half, "ci_hi")]:
        note("summary", rel(got, want), f"{what} {name}")

n_welch = 0
for t in tests:
    if t["statistic"].startswith("Welch"):
        if " vs " in t["window"]:
            wa, wb = t["window"].split(" vs ")
        else:
            wa = wb = t["window"]
        a = by_key.get((t["setting"], t["measure"], wa))
        b = by_key.get((t["reference"], t["measure"], wb))
        if a is None or b is None or len(a["values"]) < 2 or len(b["values"]) < 2:
            continue
        res = stats.ttest_ind(a["values"], b["values"], equal_var=False)
        what = f"claim {t['claim']} {t['setting']} vs {t['reference']} {t['window']}"
        note("welch", rel(t["t"], float(res.statistic)), what + " t")
        note("welch", rel(t["df"], float(res.df)), what + " df")
        note("welch", rel(t["p"], float(res.pvalue)), what + " p")
        n_welch += 1
if n_welch == 0:
    fail.append("no Welch test to check")

for setting, run_ids in req["settings"].items():
    first = req["runs"][run_ids[0]]
    null = [x for x in read(f"{first}/metrics/null_localization.arrow")
            if x["rank"] == 0 and x.get("trusted", True)]
    q = np.quantile([x["p_ipr"] for x in null], [0.05, 0.5, 0.95])
    r = by_key[(setting, "peak_p_ipr_v1", "peak")]
    for got, want, name in zip((r["null_q05"], r["null_q50"], r["null_q95"]), q, ("q05", "q50", "q95")):
        note("quantile", rel(got, float(want)), f"{setting} null {name}")

    # The early displacement rate, per seed, from displacement.arrow.
    early, at_level = [], []
    for rid in run_ids:
        d = req["runs"][rid]
        train = read(f"{d}/train.arrow")
        last = max(x["step"] for x in train)
        per_tw = {}
        for x in read(f"{d}/metrics/displacement.arrow"):
            if x["operator"] == "hessian" and x["consecutive"] and x.get("trusted", True) and x["per_step"] is not None:
                per_tw.setdefault(x["t_w"], []).append(x["per_step"])
        vals = [np.mean(v) for tw, v in per_tw.items() if tw < req["early_before"] * last]
        early.append(np.mean(vals))
        # The first step where L reaches 0.1 L0 (ln L linear in step).
        s = np.array([x["step"] for x in train], dtype=float)
        ln = np.log([x["train_loss"] for x in train])
        target = np.log(0.1) + ln[0]
        i = int(np.argmax(ln <= target))
        f = (ln[i - 1] - target) / (ln[i - 1] - ln[i])
        at_level.append(s[i - 1] + f * (s[i] - s[i - 1]))
    r = by_key[(setting, "displacement_rate", "early")]
    note("recomputed", rel(r["mean"], float(np.mean(early))), f"{setting} early displacement rate")
    r = by_key[(setting, "step", "L/L0=0.1")]
    note("recomputed", rel(r["mean"], float(np.mean(at_level))), f"{setting} step at L/L0 = 0.1")



def aging_curves(d):
    """q(t_w, t_w + tau) per t_w > 0 with >= 3 trusted lags (Hessian)."""
    by = {}
    for x in read(f"{d}/metrics/overlap.arrow"):
        if x["operator"] == "hessian" and x.get("trusted", True) and x["t"] > x["t_w"] > 0:
            by.setdefault(x["t_w"], []).append((x["t"] - x["t_w"], x["subspace_overlap"]))
    return [(tw, np.log([a for a, _ in sorted(v)]), np.array([b for _, b in sorted(v)]))
            for tw, v in sorted(by.items()) if len(v) >= 3]


def collapse(curves, mu):
    """Bhattacharjee-Seno: mean |dq| of every curve's points inside every
    other curve's ln-x range; and the fraction of possible pairs."""
    xs = [(lt - mu * np.log(tw), q) for tw, lt, q in curves]
    tot, n, possible = 0.0, 0, 0
    for p, (xp, qp) in enumerate(xs):
        for j, (xj, qj) in enumerate(xs):
            if j == p:
                continue
            possible += len(xj)
            m = (xj >= xp[0]) & (xj <= xp[-1])
            tot += np.abs(qj[m] - np.interp(xj[m], xp, qp)).sum()
            n += int(m.sum())
    return (tot / n, n / possible) if n else (np.nan, 0.0)


n_aging = 0
for setting, run_ids in req["settings"].items():
    mu_row = by_key.get((setting, "aging_mu", "all"))
    res_row = by_key.get((setting, "aging_residual", "all"))
    uns_row = by_key.get((setting, "aging_unscaled_residual", "all"))
    if mu_row is None:
        fail.append(f"{setting}: no aging_mu row")
        continue
    for rid, mu, res, uns in zip(mu_row["seeds"], mu_row["values"], res_row["values"], uns_row["values"]):
        curves = aging_curves(req["runs"][rid])
        r_at, _ = collapse(curves, mu)
        note("aging", rel(res, r_at), f"{rid} aging residual at mu = {mu}")
        note("aging", rel(uns, collapse(curves, 0.0)[0]), f"{rid} aging residual at mu = 0")
        grid = [collapse(curves, m) for m in np.arange(0, 401) * 0.01]
        best = min(r for r, o in grid if o >= 0.1)
        if best < res - 1e-12:
            fail.append(f"{rid}: a grid mu collapses better ({best}) than the reported mu = {mu} ({res})")
        n_aging += 1
if n_aging == 0:
    fail.append("no aging fit to check")

print(json.dumps({"worst": worst, "welch_tests": n_welch, "aging_fits": n_aging, "failures": fail[:20]}))
sys.exit(1 if fail else 0)

"""Numbers for the README's Findings: tests the three claims of the paper on
an eigentrace experiment's own outputs (out/<exp>/runs/*/metrics).

usage: python scripts/findings.py out/paper [--json]
Groups runs by their label (the part of the run id before "-lr"), averages
over seeds, and prints a markdown summary.
(a) SGD: the consecutive displacement decreases along training, and the aging
    curves slow down as t_w grows (q(t_w, t_w+τ) at fixed τ rises with t_w);
(b) Adam: the displacement stays higher than SGD's throughout;
(c) Adam's leading eigenvectors are more localized than SGD's: P·IPR above
    the null band, and 50%/90% of the mass on fewer parameters.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc

exp = Path(sys.argv[1])
rows = lambda p: ipc.open_file(p).read_all().to_pylist()
runs = defaultdict(list)
for r in sorted((exp / "runs").iterdir()):
    runs[r.name.split("-lr")[0]].append(r)

LAG = 250  # the linear checkpoint grid
out = {}
for label, dirs in runs.items():
    per_seed = []
    for d in dirs:
        # Only trusted pairs (converged and above the rounding level), and
        # per-vector displacement only where it is defined (isolated ranks).
        ok = lambda x: x.get("trusted", True)
        disp = [x for x in rows(d / "metrics/displacement.arrow")
                if x["operator"] == "hessian" and ok(x) and x["matched_displacement"] is not None]
        ov = [x for x in rows(d / "metrics/overlap.arrow") if x["operator"] == "hessian"]
        loc = [x for x in rows(d / "metrics/localization.arrow")
               if x["operator"] == "hessian" and x["rank"] == 0 and ok(x)]
        vals = [x for x in rows(d / "eigen/values.arrow") if x["operator"] == "hessian"]
        trusted_frac = np.mean([x.get("converged", True) and x.get("resolvable", True) for x in vals])
        band = rows(d / "metrics/null_band.arrow") if (d / "metrics/null_band.arrow").exists() else []
        steps = sorted({x["t_w"] for x in ov} | {x["t"] for x in ov})
        last = max(steps)
        # Displacement at a fixed lag on the linear grid, mean over the top-k.
        lagged = defaultdict(list)
        for x in disp:
            if x["t"] - x["t_w"] == LAG and x["t_w"] % LAG == 0:
                lagged[x["t_w"]].append(x["matched_displacement"])
        d_lag = {t: float(np.mean(v)) for t, v in sorted(lagged.items())}
        early = [v for t, v in d_lag.items() if t < last * 0.2]
        late = [v for t, v in d_lag.items() if t >= last * 0.6]
        # Aging: q(t_w, t_w + 1000) for t_w on the grid.
        q = {(x["t_w"], x["t"]): x["subspace_overlap"] for x in ov if ok(x)}
        aging = {tw: q.get((tw, tw + 1000)) for tw in (250, 1000, 2000, 3000)}
        # Localization late in training (the last 40% of checkpoints).
        late_loc = [x for x in loc if x["step"] >= last * 0.6]
        m = lambda v: float(np.mean(v)) if v else None
        p_ipr = m([x["p_ipr"] for x in late_loc])
        f50 = m([x["frac50"] for x in late_loc])
        f90 = m([x["frac90"] for x in late_loc])
        b0 = next((b for b in band if b["rank"] == 0), None)
        # Alignment with the top-k subspace late in training (trusted steps).
        al = [x for x in rows(d / "metrics/alignment.arrow") if ok(x) and x["step"] >= last * 0.6]
        nm = lambda c: float(np.nanmean([x[c] for x in al])) if al and c in al[0] else None
        per_seed.append(dict(
            align_grad=nm("grad_alignment"), align_train=nm("grad_alignment_train"),
            align_update=nm("update_alignment"),
            d_early=m(early), d_late=m(late), trusted=float(trusted_frac),
            aging=aging, p_ipr=p_ipr, frac50=f50, frac90=f90,
            null_p_ipr_max=b0["p_ipr_max"] if b0 else None, null_p_ipr_mean=b0["p_ipr_mean"] if b0 else None,
            null_frac50_min=b0["frac50_min"] if b0 else None,
        ))
    agg = {}
    for k in ("trusted", "d_early", "d_late", "p_ipr", "frac50", "frac90", "null_p_ipr_max", "null_p_ipr_mean", "null_frac50_min",
              "align_grad", "align_train", "align_update"):
        vals = [s[k] for s in per_seed if s[k] is not None]
        agg[k] = (float(np.mean(vals)), float(np.std(vals))) if vals else None  # ddof = 0 (issue 16)
    agg["aging"] = {tw: float(np.mean([s["aging"][tw] for s in per_seed if s["aging"][tw] is not None]))
                    for tw in (250, 1000, 2000, 3000)
                    if any(s["aging"][tw] is not None for s in per_seed)}
    out[label] = agg

if "--json" in sys.argv:
    print(json.dumps(out, indent=1))
    sys.exit(0)

f = lambda m: f"{m[0]:.3g} ± {m[1]:.2g}" if m else "–"
print(f"| optimizer | trusted pairs | D(t, t+{LAG}) early (t < 20%) | D late (t ≥ 60%) | late/early | q(t_w, t_w+1000) at t_w = 250 / 1000 / 2000 / 3000 | P·IPR(v₁) late | null P·IPR (mean / max) | frac50 late | frac90 late |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for label, a in out.items():
    ratio = a["d_late"][0] / a["d_early"][0] if a["d_late"] and a["d_early"] and a["d_early"][0] > 0 else float("nan")
    ag = " / ".join(f"{a['aging'].get(t, float('nan')):.3f}" for t in (250, 1000, 2000, 3000))
    null = f"{a['null_p_ipr_mean'][0]:.3g} / {a['null_p_ipr_max'][0]:.3g}" if a["null_p_ipr_max"] else "–"
    print(f"| {label} | {a['trusted'][0]:.0%} | {f(a['d_early'])} | {f(a['d_late'])} | {ratio:.2f} | {ag} | {f(a['p_ipr'])} | {null} | {f(a['frac50'])} | {f(a['frac90'])} |")

print()
print("| optimizer | ‖V_kᵀg‖²/‖g‖² late, g on the analysis set | g on the train split | the realized update |")
print("| --- | --- | --- | --- |")
for label, a in out.items():
    print(f"| {label} | {f(a['align_grad'])} | {f(a['align_train'])} | {f(a['align_update'])} |")

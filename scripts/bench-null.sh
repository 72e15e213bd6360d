#!/usr/bin/env bash
# What a looser `null.tol`, block Lanczos and a thick-restarted basis buy
# and cost. The null model's top-k at fresh initializations, where the
# spectrum has no outliers and Lanczos converges slowly, at a reference
# tolerance (the f32 default, 1e-4) and at looser ones, then at the
# reference tolerance with `hessian.block` 2 and 4 and with
# `hessian.max_basis` 30. Each replica is the same initialization in every
# variant, so each is compared with its own reference: the products, the eigenvalues, the
# top-k subspace (q = ‖VᵀV_ref‖²_F / k), and the localization the null band
# is made of (P·IPR = P Σ v⁴ per rank, and its mean over the replicas). JSON
# on stdout (`make bench BENCH=null` keeps it in bench/results/null.json).
#
#   scripts/bench-null.sh [--quick] [path/to/eigentrace]
#
# configs/mnist-scale.toml's null (784-512-512-10, P = 669,706, k = 10 on
# 1,024 rows, f32) with 4 replicas: about 15 minutes on 2 cores. --quick:
# configs/quick.toml's architecture (CI checks the output's form). Needs
# numpy and pyarrow: run it through scripts/with-libtorch.sh (make does).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/prologue.sh bench-null "$@"
"${EIGENTRACE_PYTHON:-python3}" - "$ET" "$T" "$quick" "$("$ET" --version)" "$PWD/scripts/bench" <<'PY'
import json, os, re, subprocess, sys
import numpy as np
import pyarrow.ipc as ipc
et, tmp, quick, version, lib = sys.argv[1:]
quick = quick == "true"
sys.path.insert(0, lib)
import provenance
from study import mlp_params, mlp_widths

base = open("configs/quick.toml" if quick else "configs/mnist-scale.toml").read()
REPLICAS = 4
REF = 1e-4
# (null.tol, hessian.block, hessian.max_basis): the reference first.
VARIANTS = [(t, 1, None) for t in [REF, 1e-3, 1e-2, 3e-2, 1e-1]]
VARIANTS += [(REF, 2, None), (REF, 4, None), (REF, 1, 30)]
# One optimizer and one step: the null does not depend on training, and
# the rest of the study is computed once and then cached.
text = re.sub(r"^steps = \d+", "steps = 1", base, count=1, flags=re.M)
text = re.sub(r"^checkpoints = .*$", "checkpoints = { at = [] }", text, count=1, flags=re.M)
text = re.sub(r"^epochs = .*\n", "", text, flags=re.M)
text = re.sub(r"\n\[\[optimizer\]\](?:\n(?!\[)[^\n]*)*", "", text)
text = re.sub(r"^\[hessian\]", '[[optimizer]]\nname = "sgd"\nlr = 0.01\n\n[hessian]', text, count=1, flags=re.M)
text = re.sub(r"\n\[null\](?:\n(?!\[)[^\n]*)*", "", text)
text = re.sub(r'^dtype = "f64"', 'dtype = "f32"', text, count=1, flags=re.M)
widths = mlp_widths(text)
P = mlp_params(widths)
k = int(re.search(r"^k = (\d+)", text, re.M).group(1))
store = os.path.join(tmp, "store")


def read(path):
    return ipc.open_file(path).read_all().to_pylist()


runs = {}
for var in VARIANTS:
    tol, block, max_basis = var
    cfg = os.path.join(tmp, f"null-{tol:g}-{block}-{max_basis}.toml")
    hess = f"\nblock = {block}" + (f"\nmax_basis = {max_basis}" if max_basis else "")
    body = re.sub(r"^\[hessian\]", "[hessian]" + hess, text, count=1, flags=re.M)
    open(cfg, "w").write(body.rstrip() + f"\n\n[null]\nreplicas = {REPLICAS}\ntol = {tol:g}\n")
    print(f"bench-null: P = {P:,}, k = {k}, {REPLICAS} replicas, null.tol = {tol:g}, "
          f"block {block}, max_basis {max_basis}", file=sys.stderr)
    out = os.path.join(tmp, "out")
    r = subprocess.run([et, "run", cfg, "--json", "--store", store, "--out", out],
                       check=True, capture_output=True, text=True)
    summary = json.loads(r.stdout)
    null = [s for s in summary["stages"] if s["id"].startswith("null")]
    assert len(null) == 1 and null[0]["status"] == "ran", null
    name = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
    vals = read(os.path.join(out, name, "null", "values.arrow"))
    vecs = read(os.path.join(out, name, "null", "vectors.arrow"))
    by = {}
    for v in vals:
        by.setdefault(v["replica"], {"values": {}, "hvps": v["hvps"], "converged": True})
        by[v["replica"]]["values"][v["rank"]] = v["eigenvalue"]
        by[v["replica"]]["converged"] &= v["converged"]
    for v in vecs:
        by[v["replica"]].setdefault("vectors", {})[v["rank"]] = np.asarray(v["vector"], dtype=np.float64)
    runs[var] = {"replicas": by}

ref = runs[VARIANTS[0]]["replicas"]
rows = []
for var in VARIANTS:
    tol, block, max_basis = var
    reps = runs[var]["replicas"]
    ev, q, pipr = [], [], []
    mean_pipr, mean_ref = np.zeros(k), np.zeros(k)
    for rep, x in reps.items():
        y = ref[rep]
        ranks = sorted(y["values"])
        lam1 = abs(y["values"][ranks[0]])
        ev.append(max(abs(x["values"][i] - y["values"][i]) / lam1 for i in ranks))
        V = np.stack([x["vectors"][i] / np.linalg.norm(x["vectors"][i]) for i in ranks], axis=1)
        W = np.stack([y["vectors"][i] / np.linalg.norm(y["vectors"][i]) for i in ranks], axis=1)
        q.append(float(np.sum((V.T @ W) ** 2) / len(ranks)))
        a = P * np.sum(V**4, axis=0)
        b = P * np.sum(W**4, axis=0)
        pipr.append(float(np.max(np.abs(a - b) / b)))
        mean_pipr += a / len(reps)
        mean_ref += b / len(reps)
    hvps = [x["hvps"] for x in reps.values()]
    rows.append({
        "tol": tol,
        "block": block,
        "max_basis": max_basis,
        "hvps_per_replica": float(np.mean(hvps)),
        "hvps_max": int(max(hvps)),
        "converged": all(x["converged"] for x in reps.values()),
        "eigenvalue_diff": float(max(ev)),
        "subspace_overlap_min": float(min(q)),
        "p_ipr_rel_diff_max": float(max(pipr)),
        "p_ipr_band_mean_rel_diff": float(np.max(np.abs(mean_pipr - mean_ref) / mean_ref)),
        "p_ipr_band_mean": float(np.mean(mean_pipr)),
    })
    print(f"bench-null: tol {tol:g}, block {block}, max_basis {max_basis}: {rows[-1]['hvps_per_replica']:.0f} products per replica, "
          f"q ≥ {rows[-1]['subspace_overlap_min']:.4f}", file=sys.stderr)
print(json.dumps({
    "bench": "null", "quick": quick,
    "command": "scripts/bench-null.sh" + (" --quick" if quick else ""),
    "date": provenance.today(),
    "machine": provenance.machine(eigentrace=version.split()[-1]),
    "widths": widths, "params": P, "k": k, "replicas": REPLICAS, "reference_tol": REF,
    "results": rows,
}, indent=1))
PY

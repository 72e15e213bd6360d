"""Recompute IPR, subspace overlap and displacement from an eigentrace run's
own eigen/vectors.arrow with numpy (an independent implementation, including
the matching: scipy's linear_sum_assignment), and compare with its metric
files, and each localization row's `trusted` against values.arrow's converged and
resolvable. argv: run_dir. Prints the largest differences as JSON; exits 1
above 1e-6 or on a wrong trust flag. Null displacements (vectors that are
not isolated) are skipped. With a null model, null_overlap.arrow's q and
Hungarian-matched displacement between replicas are recomputed from the
experiment's null/vectors.arrow, the null's trust flags are checked against
its null/values.arrow, and null_band.arrow's P·IPR band over the trusted
replicas, and its counts, are recomputed. The vectors are decoded here from the
file's own schema, in any `hessian.vector_dtype`: float32, float16, or
uint16 bfloat16 bits (item field metadata encoding = bfloat16).
"""
import os
import json
import sys

import numpy as np
import pyarrow.ipc as ipc
from scipy.optimize import linear_sum_assignment

run = sys.argv[1]
read = lambda name: ipc.open_file(f"{run}/{name}").read_all().to_pylist()


def vector_rows(path):
    """The rows of a vectors.arrow, each with its vector as float64."""
    t = ipc.open_file(path).read_all()
    col = t.column("vector").combine_chunks()
    item = t.schema.field("vector").type.value_field
    flat = col.flatten().to_numpy(zero_copy_only=False)
    if (item.metadata or {}).get(b"encoding") == b"bfloat16":
        assert flat.dtype == np.uint16, flat.dtype
        flat = (flat.astype(np.uint32) << 16).view(np.float32)
    else:
        assert flat.dtype in (np.float32, np.float16), flat.dtype
    flat = flat.astype(np.float64)
    offsets = col.offsets.to_numpy()
    rows = t.drop_columns(["vector"]).to_pylist()
    for i, r in enumerate(rows):
        r["vector"] = flat[offsets[i] : offsets[i + 1]]
    return rows


vecs = {}
for r in vector_rows(f"{run}/eigen/vectors.arrow"):
    v = r["vector"]
    vecs[(r["operator"], r["step"], r["rank"])] = v / np.linalg.norm(v)

# A pair is trusted when converged and resolvable (an absent column: true).
trust = {
    (r["operator"], r["step"], r["rank"]): r.get("converged", True) is True and r.get("resolvable", True) is True
    for r in read("eigen/values.arrow")
}
wrong_trust = 0

worst = {"ipr": 0.0, "p_ipr_rel": 0.0, "overlap": 0.0, "grassmann": 0.0, "matched": 0.0, "same_rank": 0.0}
for r in read("metrics/localization.arrow"):
    v = vecs[(r["operator"], r["step"], r["rank"])]
    wrong_trust += r["trusted"] != trust.get((r["operator"], r["step"], r["rank"]), False)
    ipr = float(np.sum(v**4))
    worst["ipr"] = max(worst["ipr"], abs(ipr - r["ipr"]))
    worst["p_ipr_rel"] = max(worst["p_ipr_rel"], abs(len(v) * ipr - r["p_ipr"]) / r["p_ipr"])


def basis(op, step):
    ranks = sorted(k[2] for k in vecs if k[0] == op and k[1] == step and k[2] >= 0)
    return np.stack([vecs[(op, step, k)] for k in ranks], axis=1)


for r in read("metrics/overlap.arrow"):
    a, b = basis(r["operator"], r["t_w"]), basis(r["operator"], r["t"])
    if r["operator"] == "preconditioned":
        # Parameter-space directions D^{-1/2}u: unit, not orthogonal. The
        # subspace measures compare the spans (orthonormalized bases).
        a, b = np.linalg.qr(a)[0], np.linalg.qr(b)[0]
    m = a.T @ b
    q = float(np.sum(m**2) / min(a.shape[1], b.shape[1]))
    s = np.clip(np.linalg.svd(m, compute_uv=False), 0.0, 1.0)
    g = float(np.sqrt(np.sum(np.arccos(s) ** 2)))
    worst["overlap"] = max(worst["overlap"], abs(q - r["subspace_overlap"]))
    worst["grassmann"] = max(worst["grassmann"], abs(g - r["grassmann"]))

matches = {}
for r in read("metrics/displacement.arrow"):
    key = (r["operator"], r["t_w"], r["t"])
    if key not in matches:
        a, b = basis(*key[:2]), basis(key[0], key[2])
        w = np.abs(a.T @ b)
        rows, cols = linear_sum_assignment(-w)
        matches[key] = (w, dict(zip(rows, cols)))
    w, pi = matches[key]
    i = r["rank"]
    # Null where the vector is not isolated (degenerate or the last rank).
    if r["matched_displacement"] is not None:
        worst["matched"] = max(worst["matched"], abs((1 - w[i, pi[i]]) - r["matched_displacement"]))
    if r["same_rank_displacement"] is not None:
        worst["same_rank"] = max(worst["same_rank"], abs((1 - w[i, i]) - r["same_rank_displacement"]))

# The null: q and the mean matched D between every pair of replicas.
null_pairs = 0
if os.path.exists(f"{run}/metrics/null_overlap.arrow"):
    worst["null_overlap"] = worst["null_matched"] = 0.0
    nv = {}
    for r in vector_rows(f"{run}/../../null/vectors.arrow"):
        if r["operator"] == "hessian" and r["rank"] >= 0:
            v = r["vector"]
            nv.setdefault(r["replica"], {})[r["rank"]] = v / np.linalg.norm(v)
    nb = {rep: np.stack([vs[k] for k in sorted(vs)], axis=1) for rep, vs in nv.items()}
    for r in read("metrics/null_overlap.arrow"):
        a, b = nb[r["replica_a"]], nb[r["replica_b"]]
        m = a.T @ b
        k = min(a.shape[1], b.shape[1])
        w = np.abs(m[:k, :k])
        rows, cols = linear_sum_assignment(-w)
        d = float(np.mean(1 - w[rows, cols]))
        worst["null_overlap"] = max(worst["null_overlap"], abs(float(np.sum(m**2) / k) - r["subspace_overlap"]))
        worst["null_matched"] = max(worst["null_matched"], abs(d - r["matched_displacement"]))
        null_pairs += 1
    # The null's trust, by its own values.arrow, and its band over the
    # trusted replicas, recomputed from its vectors.
    ntrust = {
        (r["replica"], r["rank"]): r.get("converged", True) is True and r.get("resolvable", True) is True
        for r in ipc.open_file(f"{run}/../../null/values.arrow").read_all().to_pylist()
        if r["operator"] == "hessian"
    }
    for r in read("metrics/null_localization.arrow"):
        wrong_trust += r["trusted"] != ntrust.get((r["replica"], r["rank"]), False)
    for r in read("metrics/null_overlap.arrow"):
        both = all(t for (rep, _), t in ntrust.items() if rep in (r["replica_a"], r["replica_b"]))
        wrong_trust += r["trusted"] != both
    worst["null_band_rel"] = 0.0
    replicas = {rep for rep, _ in ntrust}
    pipr = {}
    for r in vector_rows(f"{run}/../../null/vectors.arrow"):
        if r["operator"] == "hessian":
            v = r["vector"] / np.linalg.norm(r["vector"])
            pipr[(r["replica"], r["rank"])] = len(v) * float(np.sum(v**4))
    for r in read("metrics/null_band.arrow"):
        p = [x for (rep, rank), x in pipr.items() if rank == r["rank"] and ntrust[(rep, rank)]]
        wrong_trust += r["replicas"] != len(p) or r["untrusted"] != len(replicas) - len(p)
        if not p:
            # No trusted replica at this rank: no band (NaN reads as None).
            wrong_trust += any(r[c] is not None and r[c] == r[c] for c in ("p_ipr_min", "p_ipr_max"))
            continue
        for col, x in [("p_ipr_min", min(p)), ("p_ipr_mean", float(np.mean(p))), ("p_ipr_max", max(p))]:
            worst["null_band_rel"] = max(worst["null_band_rel"], abs(x - r[col]) / x)

print(json.dumps({**worst, "wrong_trust": wrong_trust, "null_pairs": null_pairs}))
sys.exit(0 if max(worst.values()) <= 1e-6 and wrong_trust == 0 else 1)

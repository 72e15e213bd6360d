"""Check an eigentrace run's GGN and empirical-Fisher eigenpairs, and its
Hessian/GGN subspace overlaps, against PyTorch: the model rebuilt from the
run's files alone, the dense matrices from torch.func's Jacobian of the
logits, LAPACK's eigh.

    G = (1/N) Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i     F = (1/N) Σ_i g_i g_iᵀ,
    g_i = J_iᵀ (p_i − e_{y_i}),                       H by torch.func.hessian.

argv: run_dir data.arrow analysis_size
Prints JSON: the worst relative eigenvalue error per operator, the worst
overlap error, and how many pairs and rows were checked. Exits 1 on a
failure.
"""
import json
import sys
import tomllib

import pyarrow.ipc as ipc
import torch
from safetensors.torch import load_file

torch.set_default_dtype(torch.float64)
run, data, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = tomllib.load(open(f"{run}/config.toml", "rb"))
pmap = ipc.open_file(f"{run}/param_map.arrow").read_all().to_pylist()
table = ipc.open_file(data).read_all()
split = table.column("split").to_pylist()
feats = table.column("features").to_pylist()
labels = table.column("label").to_pylist()
x = torch.tensor([f for f, s in zip(feats, split) if s == "train"][:m])
y = torch.tensor([l for l, s in zip(labels, split) if s == "train"][:m], dtype=torch.long)
act = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
       "softplus": torch.nn.functional.softplus}[cfg["model"]["activation"]]
blocks = {r["name"]: r for r in pmap}
layers = len(cfg["model"]["widths"]) - 1


def logits(theta):
    h = x
    for n in range(layers):
        w, b = blocks[f"layers.{n}.weight"], blocks[f"layers.{n}.bias"]
        W = theta[w["offset"]: w["offset"] + w["numel"]].view(*w["shape"])
        B = theta[b["offset"]: b["offset"] + b["numel"]]
        h = h @ W.T + B
        if n + 1 < layers:
            h = act(h)
    return h


def loss(theta):
    return torch.nn.functional.cross_entropy(logits(theta), y)


_dense_cache = {}


def dense_matrices(step):
    """H, G and F at a checkpoint, built once per step and shared by every
    check below."""
    if step not in _dense_cache:
        theta = load_file(f"{run}/checkpoints/step_{step:08d}.safetensors")["theta_f64"]
        n = x.shape[0]
        J = torch.func.jacrev(logits)(theta)  # [N, C, P]
        p = torch.softmax(logits(theta), -1)
        hz = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        G = torch.einsum("ncp,ncd,ndq->pq", J, hz, J) / n
        g = torch.einsum("ncp,nc->np", J, p - torch.nn.functional.one_hot(y, p.shape[1]))
        _dense_cache[step] = {"hessian": torch.func.hessian(loss)(theta), "ggn": G, "fisher": g.T @ g / n}
    return _dense_cache[step]


values = ipc.open_file(f"{run}/eigen/values.arrow").read_all().to_pylist()
vectors = ipc.open_file(f"{run}/eigen/vectors.arrow").read_all().to_pylist()
overlaps = ipc.open_file(f"{run}/metrics/operator_overlap.arrow").read_all().to_pylist()
steps = sorted({r["step"] for r in values if r["operator"] in ("ggn", "fisher")})
worst = {"ggn": 0.0, "fisher": 0.0}
checked, failures = 0, []
overlap_err, dense_overlap_err = 0.0, 0.0
for step in steps:
    dense = {}
    for name, A in dense_matrices(step).items():
        ev, evec = torch.linalg.eigh((A + A.T) / 2)
        dense[name] = (ev.flip(0), evec.flip(1))
    for r in values:
        if r["step"] != step or r["operator"] not in worst or r["rank"] < 0:
            continue
        truth = dense[r["operator"]][0][r["rank"]].item()
        if not (r["converged"] and r["resolvable"]):
            continue
        rel = abs(r["eigenvalue"] - truth) / abs(truth)
        worst[r["operator"]] = max(worst[r["operator"]], rel)
        checked += 1
        if rel > 1e-8:
            failures.append(f"step {step} {r['operator']} rank {r['rank']}: {r['eigenvalue']} vs {truth}")
    # The overlap from our own stored vectors (f32), and from the dense
    # eigenvectors (the same subspaces up to the f32 storage).
    ours = {}
    for r in vectors:
        if r["step"] == step and r["rank"] >= 0:
            v = torch.tensor(r["vector"])
            ours.setdefault(r["operator"], []).append((r["rank"], v / v.norm()))
    for row in overlaps:
        if row["step"] != step:
            continue
        a = torch.stack([v for _, v in sorted(ours["hessian"], key=lambda t: t[0])], 1)
        b = torch.stack([v for _, v in sorted(ours[row["other"]], key=lambda t: t[0])], 1)
        k = min(a.shape[1], b.shape[1])
        q = ((a.T @ b) ** 2).sum().item() / k
        overlap_err = max(overlap_err, abs(q - row["subspace_overlap"]))
        da = dense["hessian"][1][:, : a.shape[1]]
        db = dense[row["other"]][1][:, : b.shape[1]]
        qd = ((da.T @ db) ** 2).sum().item() / k
        def gapped(name, kk):
            ev = dense[name][0]
            return (ev[kk - 1] - ev[kk]).item() > 1e-3 * ev[0].item()

        # A subspace is defined where its last eigenvalue has a gap below it.
        if row["trusted"] and gapped("hessian", a.shape[1]) and gapped(row["other"], b.shape[1]):
            dense_overlap_err = max(dense_overlap_err, abs(qd - row["subspace_overlap"]))
        if abs(row["chance"] - b.shape[1] / a.shape[0]) > 1e-15:
            failures.append(f"step {step}: chance {row['chance']}")
if overlap_err > 1e-9:
    failures.append(f"overlap from our vectors: error {overlap_err}")
if dense_overlap_err > 1e-4:
    failures.append(f"overlap against the dense eigenvectors: error {dense_overlap_err}")
# eigen/trace.arrow (with [trace]): Hutch++ and Hutchinson against the dense
# traces, each within 4 of its own standard errors; the exact traces (σ = 0)
# to 1e-10; the layer blocks too.
trace_rows, trace_z, exact_rows, exact_err = 0, 0.0, 0, 0.0
try:
    traces = ipc.open_file(f"{run}/eigen/trace.arrow").read_all().to_pylist()
except FileNotFoundError:
    traces = []
for step in sorted({r["step"] for r in traces}):
    mats = dense_matrices(step)
    for r in traces:
        if r["step"] != step:
            continue
        d = torch.diagonal(mats[r["operator"]])
        if r["layer"] < 0:
            truth = d.sum().item()
        else:
            w, b = blocks[f"layers.{r['layer']}.weight"], blocks[f"layers.{r['layer']}.bias"]
            lo, hi = {"all": (w["offset"], b["offset"] + b["numel"]),
                      "weight": (w["offset"], w["offset"] + w["numel"]),
                      "bias": (b["offset"], b["offset"] + b["numel"])}[r["block"]]
            truth = d[lo:hi].sum().item()
        z = abs(r["trace"] - truth) / r["std_error"] if r["std_error"] > 0 else 0.0
        if r["method"] == "exact":
            exact_rows += 1
            exact_err = max(exact_err, abs(r["trace"] - truth) / abs(truth))
            if r["std_error"] != 0 or r["matvecs"] != 0:
                failures.append(f"exact trace row with σ {r['std_error']}, {r['matvecs']} products")
        if r["std_error"] == 0 and abs(r["trace"] - truth) > 1e-10 * abs(truth):
            z = float("inf")
        trace_rows += 1
        trace_z = max(trace_z, z)
        if z > 4:
            failures.append(f"trace step {step} {r['operator']} {r['method']} layer {r['layer']} {r['block']}: {r['trace']} vs {truth} (σ {r['std_error']})")
# eigen/density*.arrow (with [density]): each probe's weights sum to 1, the
# broadened density integrates to 1, and the largest node is the operator's
# λ₁ from values.arrow (Lanczos finds the spectrum's edge).
density_steps = 0
try:
    dens = ipc.open_file(f"{run}/eigen/density.arrow").read_all().to_pylist()
    nodes = ipc.open_file(f"{run}/eigen/density_nodes.arrow").read_all().to_pylist()
except FileNotFoundError:
    dens, nodes = [], []
lam1 = {(r["step"], r["operator"]): r["eigenvalue"] for r in values if r["rank"] == 0}
for key in sorted({(r["step"], r["operator"]) for r in dens}):
    density_steps += 1
    grid = [(r["lambda"], r["density"]) for r in dens if (r["step"], r["operator"]) == key]
    h = grid[1][0] - grid[0][0]
    integral = sum(d for _, d in grid) * h
    if abs(integral - 1) > 1e-3:
        failures.append(f"density {key}: integral {integral}")
    rule = [r for r in nodes if (r["step"], r["operator"]) == key]
    for pr in {r["probe"] for r in rule}:
        wsum = sum(r["weight"] for r in rule if r["probe"] == pr)
        if abs(wsum - 1) > 1e-10:
            failures.append(f"density {key} probe {pr}: weights sum to {wsum}")
    top = max(r["node"] for r in rule)
    if key in lam1 and abs(top - lam1[key]) > 1e-6 * abs(lam1[key]):
        failures.append(f"density {key}: top node {top} vs λ₁ {lam1[key]}")
# eigen/layer_values.arrow (hessian.layers): each layer's diagonal block's
# top-k against eigh of the dense block, 1e-8 where trusted.
layer_rows, layer_worst = 0, 0.0
try:
    lv = ipc.open_file(f"{run}/eigen/layer_values.arrow").read_all().to_pylist()
except FileNotFoundError:
    lv = []
for step in sorted({r["step"] for r in lv}):
    H = dense_matrices(step)["hessian"]
    for r in lv:
        if r["step"] != step:
            continue
        w, b = blocks[f"layers.{r['layer']}.weight"], blocks[f"layers.{r['layer']}.bias"]
        lo, hi = w["offset"], b["offset"] + b["numel"]
        ev = torch.linalg.eigvalsh(H[lo:hi, lo:hi]).flip(0)
        truth = ev[r["rank"]].item()
        layer_rows += 1
        if r["converged"] and r["resolvable"]:
            rel = abs(r["eigenvalue"] - truth) / abs(truth)
            layer_worst = max(layer_worst, rel)
            if rel > 1e-8:
                failures.append(f"layer {r['layer']} step {step} rank {r['rank']}: {r['eigenvalue']} vs {truth}")
print(json.dumps({"worst": worst, "layer_rows": layer_rows, "layer_worst": layer_worst, "density_steps": density_steps, "trace_rows": trace_rows, "trace_max_z": trace_z, "exact_rows": exact_rows, "exact_error": exact_err, "pairs": checked, "steps": len(steps),
                  "overlap_rows": len(overlaps), "overlap_err": overlap_err,
                  "dense_overlap_err": dense_overlap_err, "failures": failures}))
sys.exit(1 if failures else 0)

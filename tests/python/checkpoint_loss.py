"""Rebuild an eigentrace run's MLP in PyTorch from its files alone and
recompute the logged train loss at a checkpoint.

argv: run_dir data.arrow step
Prints JSON: {"loss_f32": ..., "loss_f64": ... or null}
"""
import json
import sys
import tomllib

import pyarrow.ipc as ipc
import torch
from safetensors.torch import load_file

run, data, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = tomllib.load(open(f"{run}/config.toml", "rb"))
pmap = ipc.open_file(f"{run}/param_map.arrow").read_all().to_pylist()
table = ipc.open_file(data).read_all()
ck = load_file(f"{run}/checkpoints/step_{step:08d}.safetensors")

split = table.column("split").to_pylist()
feats = table.column("features").to_pylist()
labels = table.column("label").to_pylist()
x = torch.tensor([f for f, s in zip(feats, split) if s == "train"], dtype=torch.float64)
y = torch.tensor([l for l, s in zip(labels, split) if s == "train"], dtype=torch.long)

act = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
       "softplus": torch.nn.functional.softplus}[cfg["model"]["activation"]]
widths = cfg["model"]["widths"]


def loss(theta):
    layers = []
    for i, o in zip(widths[:-1], widths[1:]):
        lin = torch.nn.Linear(i, o, dtype=torch.float64)
        layers.append(lin)
    params = {f"layers.{n}.{k}": getattr(lin, k) for n, lin in enumerate(layers) for k in ("weight", "bias")}
    with torch.no_grad():
        for row in pmap:
            block = theta[row["offset"] : row["offset"] + row["numel"]].view(*row["shape"])
            params[row["name"]].copy_(block.to(torch.float64))
        h = x
        for n, lin in enumerate(layers):
            h = lin(h)
            if n + 1 < len(layers):
                h = act(h)
        return torch.nn.functional.cross_entropy(h, y).item()


out = {"loss_f32": loss(ck["theta"]), "loss_f64": loss(ck["theta_f64"]) if "theta_f64" in ck else None}
print(json.dumps(out))

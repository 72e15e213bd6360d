"""torch.autograd's Hessian-vector product for eigentrace's HVP test.

argv: request.json output.json. The request names a checkpoint
(safetensors, tensor `theta`), the data.arrow, the widths and activation, the
analysis size M, and the vectors v (list of lists). Output: {"hv": [...]},
H·v of the mean cross-entropy over the first M train rows, in float32.
"""
import json
import sys

import pyarrow.ipc as ipc
import torch
from safetensors.torch import load_file

req = json.load(open(sys.argv[1]))
theta = load_file(req["checkpoint"])["theta"].to(torch.float32)
t = ipc.open_file(req["data"]).read_all()
split = t.column("split").to_pylist()
feats = [f for f, s in zip(t.column("features").to_pylist(), split) if s == "train"][: req["m"]]
labels = [l for l, s in zip(t.column("label").to_pylist(), split) if s == "train"][: req["m"]]
x = torch.tensor(feats, dtype=torch.float32)
y = torch.tensor(labels, dtype=torch.long)
widths = req["widths"]
act = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
       "softplus": torch.nn.functional.softplus}[req["activation"]]


def loss(th):
    h, off = x, 0
    for n, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        w = th[off : off + o * i].view(o, i)
        off += o * i
        b = th[off : off + o]
        off += o
        h = torch.nn.functional.linear(h, w, b)
        if n + 2 < len(widths):
            h = act(h)
    return torch.nn.functional.cross_entropy(h, y)


out = []
for v in req["v"]:
    _, hv = torch.autograd.functional.hvp(loss, theta, torch.tensor(v, dtype=torch.float32))
    out.append(hv.tolist())
json.dump({"hv": out}, open(sys.argv[2], "w"))

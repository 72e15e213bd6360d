"""The PyTorch reference for `eigentrace bench hessian`: scipy's eigsh (ARPACK
Lanczos) on a LinearOperator of torch.autograd Hessian-vector products, as the
edge-of-stability code computes the top of the spectrum.

argv: data.arrow theta.safetensors widths(comma) activation k tol threads
Prints JSON: {"seconds", "hvps", "eigenvalues"}
"""
import json
import sys
import time

import numpy as np
import pyarrow.ipc as ipc
import torch
from safetensors.torch import load_file
from scipy.sparse.linalg import LinearOperator, eigsh

data, ckpt, widths, act_name, k, tol, threads = sys.argv[1:8]
torch.set_num_threads(int(threads))
widths = [int(w) for w in widths.split(",")]
k, tol = int(k), float(tol)
t = ipc.open_file(data).read_all()
split = t.column("split").to_pylist()
x = torch.tensor([f for f, s in zip(t.column("features").to_pylist(), split) if s == "train"], dtype=torch.float64)
y = torch.tensor([l for l, s in zip(t.column("label").to_pylist(), split) if s == "train"], dtype=torch.long)
theta = load_file(ckpt)["theta_f64"].clone().requires_grad_(True)
act = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
       "softplus": torch.nn.functional.softplus}[act_name]


def loss_fn(th):
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


t0 = time.perf_counter()
grad = torch.autograd.grad(loss_fn(theta), theta, create_graph=True)[0]
count = [0]


def matvec(v):
    count[0] += 1
    vt = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
    hv = torch.autograd.grad(grad, theta, vt, retain_graph=True)[0]
    return hv.detach().numpy()


op = LinearOperator((theta.numel(), theta.numel()), matvec=matvec, dtype=np.float64)
vals = eigsh(op, k=k, which="LA", tol=tol, return_eigenvectors=False)
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "hvps": count[0], "eigenvalues": sorted(vals.tolist(), reverse=True)}))

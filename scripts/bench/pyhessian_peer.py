"""The PyHessian peer for `eigentrace bench pyhessian`: PyHessian 0.1 (Yao,
Gholami, Keutzer and Mahoney 2020), pip-installed into the benchmark venv,
run at its defaults on our checkpoint, beside the dense truth from PyTorch.

argv: data.arrow theta.safetensors widths(comma) activation threads seeds
Prints JSON:
  {"truth": {"eigenvalues": all P, ascending; "trace"},
   "setup_s": hessian(...) construction (the graph of the gradient), median,
   "eigenvalues" | "trace" | "density" | "trace_1000": [{"seed", "seconds", "hvps", ...}]}
Each timed call includes the construction of its `hessian` object, as a user
pays it once per checkpoint; eigentrace's side includes its own setup too.

PyHessian 0.1's density() calls torch.eig, removed from PyTorch in 2.0; it is
given torch.linalg.eigh (the tridiagonal T is symmetric), which returns the
same eigenpairs.
"""
import importlib.metadata
import json
import statistics
import sys
import time
import warnings

import pyarrow.ipc as ipc
import torch
from safetensors.torch import load_file

try:
    import pyhessian  # noqa: F401  (its __init__ shadows the module with the class)

    ph = sys.modules["pyhessian.hessian"]
except ImportError:
    sys.exit("pyhessian is not installed in this venv: run `make bench` (scripts/bootstrap-libtorch.sh installs it)")


def _eig(t, eigenvectors=True):
    vals, vecs = torch.linalg.eigh(t)
    return torch.stack([vals, torch.zeros_like(vals)], 1), vecs


torch.eig = _eig
# PyHessian builds its graph with loss.backward(create_graph=True); PyTorch
# warns about the reference cycle once per call.
warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")

data, ckpt, widths, act_name, threads, seeds = sys.argv[1:7]
torch.set_num_threads(int(threads))
torch.set_default_dtype(torch.float64)
widths = [int(w) for w in widths.split(",")]
seeds = [int(s) for s in seeds.split(",")]
t = ipc.open_file(data).read_all()
split = t.column("split").to_pylist()
x = torch.tensor([f for f, s in zip(t.column("features").to_pylist(), split) if s == "train"])
y = torch.tensor([l for l, s in zip(t.column("label").to_pylist(), split) if s == "train"], dtype=torch.long)
theta = load_file(ckpt)["theta_f64"].to(torch.float64)
act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "softplus": torch.nn.Softplus}[act_name]

# The model as a PyHessian user writes it: nn.Sequential, weights from θ
# (each layer's W row-major [out, in], then its b).
layers, off = [], 0
for n, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
    lin = torch.nn.Linear(i, o)
    with torch.no_grad():
        lin.weight.copy_(theta[off : off + o * i].view(o, i))
        off += o * i
        lin.bias.copy_(theta[off : off + o])
        off += o
    layers.append(lin)
    if n + 2 < len(widths):
        layers.append(act())
assert off == theta.numel(), "the checkpoint's θ does not match the widths"
model = torch.nn.Sequential(*layers)
criterion = torch.nn.CrossEntropyLoss()


# The truth: the dense Hessian of the same loss, from torch.func, in f64.
def loss_flat(th):
    h, o = x, 0
    for n, (i, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        w = th[o : o + w_out * i].view(w_out, i)
        o += w_out * i
        b = th[o : o + w_out]
        o += w_out
        h = torch.nn.functional.linear(h, w, b)
        if n + 2 < len(widths):
            h = act()(h)
    return torch.nn.functional.cross_entropy(h, y)


t_dense = time.perf_counter()
grad_fn = torch.func.grad(loss_flat)
dense = torch.func.jacrev(grad_fn, chunk_size=256)(theta)
dense = 0.5 * (dense + dense.T)
truth = torch.linalg.eigvalsh(dense)
print(f"pyhessian peer: dense H (P = {theta.numel()}) and its eigh in {time.perf_counter() - t_dense:.1f} s", file=sys.stderr)
# The same loss through the model (a check that both are one function).
with torch.no_grad():
    assert abs(criterion(model(x), y).item() - loss_flat(theta).item()) < 1e-12

# Count Hessian-vector products: PyHessian calls this one function.
count = [0]
_hvp = ph.hessian_vector_product


def counted(gradsH, params, v):
    count[0] += 1
    return _hvp(gradsH, params, v)


ph.hessian_vector_product = counted


def timed(seed, call):
    torch.manual_seed(seed)
    count[0] = 0
    t0 = time.perf_counter()
    h = ph.hessian(model, criterion, data=(x, y), cuda=False)
    out = call(h)
    secs = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return out, secs, count[0]


setup = []
for s in seeds:
    _, secs, _ = timed(s, lambda h: None)
    setup.append(secs)

result = {"truth": {"eigenvalues": truth.tolist(), "trace": torch.trace(dense).item()},
          "setup_s": statistics.median(setup), "pyhessian": importlib.metadata.version("pyhessian"),
          "eigenvalues": [], "trace": [], "density": []}
for s in seeds:
    (vals, _), secs, hvps = timed(s, lambda h: h.eigenvalues(top_n=10))
    result["eigenvalues"].append({"seed": s, "seconds": secs, "hvps": hvps, "values": [float(v) for v in vals]})
    samples, secs, hvps = timed(s, lambda h: h.trace())
    result["trace"].append({"seed": s, "seconds": secs, "hvps": hvps, "value": float(sum(samples) / len(samples))})
    (nodes, weights), secs, hvps = timed(s, lambda h: h.density())
    result["density"].append({"seed": s, "seconds": secs, "hvps": hvps,
                              "nodes": [[float(v) for v in r] for r in nodes],
                              "weights": [[float(v) for v in r] for r in weights]})
# trace() past its stopping rule (tol = 0: every one of maxIter probes), to
# show what Hutchinson's accuracy costs at 1000 probes; on five seeds.
result["trace_1000"] = []
for s in seeds[:5]:
    samples, secs, hvps = timed(s, lambda h: h.trace(maxIter=1000, tol=0.0))
    result["trace_1000"].append({"seed": s, "seconds": secs, "hvps": hvps, "value": float(sum(samples) / len(samples))})
print(json.dumps(result))

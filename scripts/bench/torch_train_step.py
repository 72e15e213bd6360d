"""PyTorch eager reference for `eigentrace bench train`: steps of an
nn.Linear MLP with torch.optim, timed the way a researcher's loop runs:
full-batch, or minibatches gathered by index from the rows each step.

argv: widths(comma) n_rows steps threads optimizer(adam|sgd) dtype(f32|f64) [batch (0: full)]
After the warm-up it prints "ready", then times one round of `steps` steps
for each "round" line on stdin, printing {"ms_per_step": ...} per round, so
that the Rust side can interleave its rounds with ours.
"""
import json
import sys
import time

import torch

widths = [int(w) for w in sys.argv[1].split(",")]
n, steps, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
opt_name, dtype = sys.argv[5], {"f32": torch.float32, "f64": torch.float64}[sys.argv[6]]
batch = int(sys.argv[7]) if len(sys.argv) > 7 else 0
torch.set_num_threads(threads)
torch.manual_seed(0)
layers = []
for i, o in zip(widths[:-1], widths[1:]):
    layers += [torch.nn.Linear(i, o, dtype=dtype), torch.nn.Tanh()]
model = torch.nn.Sequential(*layers[:-1])
x = torch.randn(n, widths[0], dtype=dtype)
y = torch.randint(0, widths[-1], (n,))
opt = torch.optim.Adam(model.parameters(), lr=1e-3) if opt_name == "adam" else torch.optim.SGD(model.parameters(), lr=0.1)


# The same fixed order of rows as the Rust side, walked `batch` at a time.
order = (torch.arange(n) * 7919) % n
cursor = 0


def step():
    global cursor
    if batch:
        if cursor + batch > n:
            cursor = 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        xb, yb = x[idx], y[idx]
    else:
        xb, yb = x, y
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()


for _ in range(max(10, steps // 10)):
    step()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "round":
        break
    t = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({"ms_per_step": (time.perf_counter() - t) / steps * 1e3}), flush=True)

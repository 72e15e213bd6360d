"""Reference trajectories from torch.optim (torch.optim.Muon included, and
the reference rule of Lion) for eigentrace's optimizer tests.

Input JSON: widths, activation, theta0 (flat, eigentrace's layout), x (rows),
y, steps, and optimizers (a list of eigentrace's resolved optimizer parameters).
Output JSON: thetas, one per optimizer: θ after `steps` full-batch steps, flat,
in the same layout.
Everything in float64.
"""
import json
import sys

import torch

torch.set_default_dtype(torch.float64)


def build(widths, activation, theta):
    layers, off = [], 0
    for i, o in zip(widths[:-1], widths[1:]):
        lin = torch.nn.Linear(i, o)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(theta[off : off + o * i]).view(o, i))
            off += o * i
            lin.bias.copy_(torch.tensor(theta[off : off + o]))
            off += o
        layers.append(lin)
    act = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu,
           "softplus": torch.nn.functional.softplus}[activation]

    def forward(x):
        h = x
        for n, lin in enumerate(layers):
            h = lin(h)
            if n + 1 < len(layers):
                h = act(h)
        return h

    params = [p for lin in layers for p in (lin.weight, lin.bias)]
    return forward, params


class Lion(torch.optim.Optimizer):
    """Chen et al. 2023, Algorithm 2 (as in github.com/lucidrains/lion-pytorch)."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                st = self.state[p]
                if "exp_avg" not in st:
                    st["exp_avg"] = torch.zeros_like(p)
                m = st["exp_avg"]
                p.mul_(1 - g["lr"] * g["weight_decay"])
                p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-g["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def newton_schulz_f64(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz without its bf16 cast
    (eigentrace runs Newton-Schulz in the run's dtype)."""
    a, b, c = ns_coefficients
    x = grad.T if grad.size(0) > grad.size(1) else grad
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        upd = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, upd, x, beta=a)
    return x.T if grad.size(0) > grad.size(1) else x


# torch.optim.Muon itself, with the float64 Newton-Schulz above.
torch.optim._muon._zeropower_via_newtonschulz = newton_schulz_f64


class Muon:
    """The reference recipe (MuonWithAuxAdam): torch.optim.Muon on the
    orthogonalized weight matrices (the hidden ones, or with matrices = "all"
    every one), torch.optim.AdamW without weight decay on everything else."""

    def __init__(self, params, o):
        weights = params[0::2]
        chosen = weights if o["matrices"] == "all" else weights[1:-1]
        ids = {id(p) for p in chosen}
        rest = [p for p in params if id(p) not in ids]
        self.opts = [torch.optim.AdamW(rest, lr=o["aux_lr"], betas=(o["beta1"], o["beta2"]),
                                       eps=o["eps"], weight_decay=0.0, foreach=False)]
        if chosen:
            self.opts.append(torch.optim.Muon(chosen, lr=o["lr"], weight_decay=o["weight_decay"],
                                              momentum=o["momentum"], nesterov=o["nesterov"],
                                              ns_steps=o["ns_steps"]))

    def zero_grad(self):
        for opt in self.opts:
            opt.zero_grad()

    def step(self):
        for opt in self.opts:
            opt.step()


def make_optimizer(params, o):
    name = o["name"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], dampening=o["dampening"],
                               nesterov=o["nesterov"], weight_decay=o["weight_decay"], foreach=False)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                   weight_decay=o["weight_decay"], amsgrad=o["amsgrad"], foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o["alpha"], eps=o["eps"],
                                   weight_decay=o["weight_decay"], momentum=o["momentum"],
                                   centered=o["centered"], foreach=False)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=o["lr"], lr_decay=o["lr_decay"], eps=o["eps"],
                                   weight_decay=o["weight_decay"], foreach=False)
    if name == "lion":
        return Lion(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"])
    if name == "muon":
        return Muon(params, o)
    raise SystemExit(f"unknown optimizer {name}")


def trajectory(inp, o):
    forward, params = build(inp["widths"], inp["activation"], inp["theta0"])
    x = torch.tensor(inp["x"])
    y = torch.tensor(inp["y"], dtype=torch.long)
    opt = make_optimizer(params, o)
    for _ in range(inp["steps"]):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in params]).tolist()


def main():
    inp = json.load(open(sys.argv[1]))
    thetas = [trajectory(inp, o) for o in inp["optimizers"]]
    json.dump({"thetas": thetas}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()

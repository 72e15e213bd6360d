"""Reference trajectories from torch.optim (and the reference rules of Lion
and Muon) for eigentrace's optimizer tests.

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


def newton_schulz(g, steps, eps=1e-7):
    """torch.optim._muon._zeropower_via_newtonschulz without the bf16 cast."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.T if g.size(0) > g.size(1) else g
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        upd = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, upd, x, beta=a)
    return x.T if g.size(0) > g.size(1) else x


class Muon(torch.optim.Optimizer):
    """torch.optim.Muon's update on 2-D params (NS in float64), and the
    reference MuonWithAuxAdam's AdamW on the others."""

    def __init__(self, params, o):
        super().__init__(params, dict(lr=o["lr"]))
        self.o = o

    @torch.no_grad()
    def step(self):
        o = self.o
        lr, wd, mu = o["lr"], o["weight_decay"], o["momentum"]
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state[p]
                if p.ndim == 2:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = torch.zeros_like(p)
                    buf = st["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - mu)
                    upd = p.grad.lerp(buf, mu) if o["nesterov"] else buf
                    upd = newton_schulz(upd, o["ns_steps"])
                    rows, cols = p.shape
                    adjusted = lr * max(1.0, rows / cols) ** 0.5
                    p.mul_(1 - lr * wd)
                    p.add_(upd, alpha=-adjusted)
                else:
                    if "step" not in st:
                        st["step"] = 0
                        st["exp_avg"] = torch.zeros_like(p)
                        st["exp_avg_sq"] = torch.zeros_like(p)
                    st["step"] += 1
                    t = st["step"]
                    b1, b2 = o["beta1"], o["beta2"]
                    st["exp_avg"].lerp_(p.grad, 1 - b1)
                    st["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    denom = (st["exp_avg_sq"].sqrt() / (1 - b2**t) ** 0.5) + o["eps"]
                    p.addcdiv_(st["exp_avg"], denom, value=-o["aux_lr"] / (1 - b1**t))


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

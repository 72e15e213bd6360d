"""High-precision reference for softmax cross-entropy and its derivatives.

argv: request.json output.json. Independent of torch and of eigentrace's
formulas: Python's `decimal` at `prec` significant digits (at least 50), the
textbook formulas (p = exp(z)/Σexp(z), δ = p − onehot, loss = log Σexp(z) −
z_c), derivatives by the chain rule on dual numbers a + bε (forward mode over
a hand-written backprop), so H·v is the ε part of ∇L(θ + εv). With `prec`
digits the textbook forms cancel at most log10(1/(1 − p_c)) of them, so a
request whose rows have 1 − p_c ≥ 1e-310 keeps prec − 310 digits.

Every input float is taken exactly (Decimal(float) is exact); every output is
rounded once to the nearest float.

Requests:
- {"mode": "rows", "prec": P, "rows": [{"z": [...], "y": c, "rz": [...]}]}
  → {"rows": [{"loss": ℓ, "grad": δ, "hv": R(δ), "one_minus_pc": 1 − p_c}]},
  per row (no mean over rows).
- {"mode": "net", "prec": P, "widths": [...], "activation": "tanh",
   "theta": [...], "x": [[...]], "y": [...], "v": [[...]]}
  → {"loss": mean loss, "grad": ∇L, "hv": [H·v for each v]}, for the MLP
  a_l = W_l h_{l-1} + b_l (W_l row-major [out, in], then b_l, layer by layer),
  h_l = σ(a_l) on the hidden layers, mean cross-entropy over the rows.
"""
import json
import sys
from decimal import Decimal, localcontext


class Dual:
    """a + b ε with ε² = 0, over Decimal."""

    __slots__ = ("a", "b")

    def __init__(self, a, b=Decimal(0)):
        self.a = a
        self.b = b

    @staticmethod
    def of(x):
        return x if isinstance(x, Dual) else Dual(x)

    def __add__(self, o):
        o = Dual.of(o)
        return Dual(self.a + o.a, self.b + o.b)

    __radd__ = __add__

    def __sub__(self, o):
        o = Dual.of(o)
        return Dual(self.a - o.a, self.b - o.b)

    def __rsub__(self, o):
        return Dual.of(o) - self

    def __neg__(self):
        return Dual(-self.a, -self.b)

    def __mul__(self, o):
        o = Dual.of(o)
        return Dual(self.a * o.a, self.a * o.b + self.b * o.a)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = Dual.of(o)
        q = self.a / o.a
        return Dual(q, (self.b - q * o.b) / o.a)

    def exp(self):
        e = self.a.exp()
        return Dual(e, e * self.b)

    def ln(self):
        return Dual(self.a.ln(), self.b / self.a)


def dsum(xs):
    acc = Dual(Decimal(0))
    for x in xs:
        acc = acc + x
    return acc


def softmax(z):
    e = [zi.exp() for zi in z]
    s = dsum(e)
    return [ei / s for ei in e], s


def tanh(x):
    # (e^{2x} − 1)/(e^{2x} + 1), for either sign without overflow
    if x.a < 0:
        return -tanh(-x)
    e = (-2 * x).exp()
    return (1 - e) / (1 + e)


def rows(req):
    out = []
    for r in req["rows"]:
        c = r["y"]
        z = [Dual(Decimal(a), Decimal(b)) for a, b in zip(r["z"], r["rz"])]
        p, s = softmax(z)
        loss = s.a.ln() - z[c].a
        grad = [pi - (1 if i == c else 0) for i, pi in enumerate(p)]
        out.append({
            "loss": float(loss),
            "grad": [float(g.a) for g in grad],
            "hv": [float(g.b) for g in grad],
            "one_minus_pc": float(1 - p[c].a),
        })
    return {"rows": out}


def net(req):
    widths = req["widths"]
    assert req["activation"] == "tanh", "the reference knows tanh"
    theta0 = [Decimal(t) for t in req["theta"]]
    xs = [[Decimal(a) for a in row] for row in req["x"]]
    ys = req["y"]
    n = len(xs)
    layers = len(widths) - 1

    def grad_at(theta):
        """(mean loss, ∇L) at θ (Dual entries), by backprop."""
        ws, bs, off = [], [], 0
        for i, o in zip(widths[:-1], widths[1:]):
            ws.append([[theta[off + r * i + k] for k in range(i)] for r in range(o)])
            off += o * i
            bs.append([theta[off + r] for r in range(o)])
            off += o
        gw = [[[Dual(Decimal(0))] * len(row) for row in w] for w in ws]
        gb = [[Dual(Decimal(0))] * len(b) for b in bs]
        loss = Decimal(0)
        for x, c in zip(xs, ys):
            hs = [[Dual(v) for v in x]]
            for l in range(layers):
                a = [dsum(w * h for w, h in zip(ws[l][r], hs[-1])) + bs[l][r]
                     for r in range(widths[l + 1])]
                hs.append([tanh(v) for v in a] if l + 1 < layers else a)
            z = hs[-1]
            p, s = softmax(z)
            loss += s.a.ln() - z[c].a
            delta = [(pi - (1 if i == c else 0)) / n for i, pi in enumerate(p)]
            for l in reversed(range(layers)):
                h = hs[l]
                for r in range(widths[l + 1]):
                    gb[l][r] = gb[l][r] + delta[r]
                    for k in range(widths[l]):
                        gw[l][r][k] = gw[l][r][k] + delta[r] * h[k]
                if l > 0:
                    delta = [dsum(ws[l][r][k] * delta[r] for r in range(widths[l + 1]))
                             * (1 - h[k] * h[k]) for k in range(widths[l])]
        flat = []
        for l in range(layers):
            for row in gw[l]:
                flat.extend(row)
            flat.extend(gb[l])
        return loss / n, flat

    loss, g = grad_at([Dual(t) for t in theta0])
    hvs = []
    for v in req["v"]:
        _, gv = grad_at([Dual(t, Decimal(b)) for t, b in zip(theta0, v)])
        hvs.append([float(e.b) for e in gv])
    return {"loss": float(loss), "grad": [float(e.a) for e in g], "hv": hvs}


def main():
    req = json.load(open(sys.argv[1]))
    prec = int(req.get("prec", 800))
    assert prec >= 50
    with localcontext() as ctx:
        ctx.prec = prec
        ctx.Emin = -999999
        ctx.Emax = 999999
        res = rows(req) if req["mode"] == "rows" else net(req)
    json.dump(res, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()

//! Hessian-matrix products by Pearlmutter's R-operator, written out layer by
//! layer for the MLP with softmax cross-entropy: H·V for a block of b
//! directions in one pass, the b directions batched into the matmuls.
//!
//! Pearlmutter 1994, "Fast exact multiplication by the Hessian". With
//! a_l = h_{l-1} W_lᵀ + b_l, h_l = σ(a_l), logits z = a_L, δ_L = (softmax(z) − y)/N:
//!
//! ```text
//! R(a_l) = R(h_{l-1}) W_lᵀ + h_{l-1} dW_lᵀ + db_l          R(h_0) = 0
//! R(h_l) = σ'(a_l) ⊙ R(a_l)
//! R(δ_L) = (p ⊙ (R(z) − ⟨p, R(z)⟩)) / N                   p = softmax(z), per row
//! R(∇W_l) = R(δ_l)ᵀ h_{l-1} + δ_lᵀ R(h_{l-1})             R(∇b_l) = Σ_rows R(δ_l)
//! R(δ_{l-1}) = (R(δ_l) W_l + δ_l dW_l) ⊙ σ'(a_{l-1}) + (δ_l W_l) ⊙ σ''(a_{l-1}) ⊙ R(a_{l-1})
//! ```
//! and H·v = R(∇θ). Checked against autograd's double backprop in the tests.
//!
//! The softmax terms are written so that nothing cancels when a row's
//! probability of its top class rounds towards 1 (a saturated classifier):
//! with c the row's label, δ_j = p_j for j ≠ c and δ_c = −Σ_{j≠c} p_j (every
//! p_j straight from the max-shifted logits); with a the row's argmax,
//! R(p)_j = p_j((R(z_j) − R(z_a)) − Σ_{k≠a} p_k (R(z_k) − R(z_a))) for j ≠ a
//! and R(p)_a = −Σ_{j≠a} R(p)_j. (R(δ) = R(p) whatever the label, and on a
//! correctly classified row a = c.) The textbook forms above lose every digit
//! of the target entries once 1 − p_c is below ε; these keep 1e-12 relative
//! down to 1 − p_c = 1e-300 (`tests/stable_xent.rs`).

use crate::mlp::ActivationExt;
use stages::hessian::Operator;
use stages::mlp::{Activation, Arch, ParamBlock};
use tch::{Kind, Tensor};

/// σ''(z), given z and h = σ(z).
fn second_derivative(act: Activation, z: &Tensor, h: &Tensor) -> Tensor {
    match act {
        Activation::Tanh => h * (h * h - 1.0) * 2.0,
        Activation::Relu => z.zeros_like(),
        Activation::Softplus => {
            let s = z.sigmoid();
            &s * (1.0 - &s)
        }
        Activation::Gelu => {
            // d²/dz² [z Φ(z)] = φ(z) (2 − z²)
            let phi = (z * z * -0.5).exp() * (1.0 / (2.0 * std::f64::consts::PI).sqrt());
            phi * (2.0 - z * z)
        }
    }
}

/// Softmax cross-entropy's first-order terms for logits `z` [N, C] and labels
/// `y` [N], without cancellation at any margin: (δ = ∂ℓ_row/∂z with
/// δ_c = −Σ_{j≠c} p_j; softmax(z) with each row's argmax entry zeroed; the
/// argmax, [N, 1]). δ is per row (not divided by N).
pub fn softmax_xent_parts(z: &Tensor, y: &Tensor) -> (Tensor, Tensor, Tensor) {
    // softmax shifts by the row maximum: every off-target p_j = exp(z_j − max)/S
    // carries its own relative precision, however small.
    let p = z.softmax(-1, z.kind());
    let rows = y.size()[0];
    let zeros = Tensor::zeros([rows, 1], (z.kind(), z.device()));
    let y1 = y.unsqueeze(1);
    let mut delta = p.copy();
    let _ = delta.scatter_(1, &y1, &zeros);
    let off = delta.sum_dim_intlist([1i64].as_slice(), true, z.kind());
    let _ = delta.scatter_(1, &y1, &off.neg());
    let pivot = z.argmax(1, true);
    let mut p_off = p;
    let _ = p_off.scatter_(1, &pivot, &zeros);
    (delta, p_off, pivot)
}

/// R(p) for R(z) of shape [b, N, C] (or [N, C]), given [`softmax_xent_parts`]'s
/// `p_off` and `pivot`: for j ≠ a, R(p)_j = p_j (u_j − Σ_{k≠a} p_k u_k) with
/// u = R(z) − R(z_a), and R(p)_a = −Σ_{j≠a} R(p)_j. That is R(δ) per row.
pub fn softmax_r(p_off: &Tensor, pivot: &Tensor, r_z: &Tensor) -> Tensor {
    let kind = r_z.kind();
    let mut shape = r_z.size();
    *shape.last_mut().expect("R(z) has a class dimension") = 1;
    let idx = pivot.expand(shape.as_slice(), false);
    let u = r_z - r_z.gather(-1, &idx, false);
    let s = (&u * p_off).sum_dim_intlist([-1i64].as_slice(), true, kind);
    let mut r = (u - s) * p_off;
    let r_pivot = r.sum_dim_intlist([-1i64].as_slice(), true, kind).neg();
    let _ = r.scatter_(-1, &idx, &r_pivot);
    r
}

/// A block of directions' entries for one weight matrix: [b, out, in].
fn view_w(t: &Tensor, blk: &ParamBlock) -> Tensor {
    t.narrow(-1, blk.offset as i64, blk.numel as i64).view([
        -1,
        blk.shape[0] as i64,
        blk.shape[1] as i64,
    ])
}

/// The forward state at one θ on fixed rows, reused by every product.
pub struct RopOperator {
    arch: Arch,
    /// θ's blocks, computed once for every product.
    blocks: Vec<ParamBlock>,
    theta: Tensor,
    /// h_0 = x, h_1, …, h_{L-1} (inputs of each layer).
    hs: Vec<Tensor>,
    /// σ'(a_l) and σ''(a_l) for the hidden layers.
    d1: Vec<Tensor>,
    d2: Vec<Tensor>,
    /// δ_l for every layer (δ_L first computed, then backwards).
    deltas: Vec<Tensor>,
    /// (δ_l W_l) ⊙ σ''(a_{l−1}) for l ≥ 1 (at index l − 1): the residual
    /// term's factor, the same for every product, so computed once here
    /// (its GEMM, N × out × in, was a seventh GEMM of every product).
    back_d2: Vec<Tensor>,
    /// softmax(z) with each row's argmax entry set to 0, [N, C].
    p_off: Tensor,
    /// Each row's argmax, [N, 1] (the pivot of R(δ), see the module doc).
    pivot: Tensor,
    n: f64,
    pub products: usize,
}

impl RopOperator {
    pub fn new(arch: &Arch, theta: &Tensor, x: &Tensor, y: &Tensor) -> RopOperator {
        tch::no_grad(|| {
            let blocks = arch.param_map();
            let layers = arch.layers();
            let mut hs = vec![x.shallow_clone()];
            let (mut d1, mut d2) = (Vec::new(), Vec::new());
            let mut logits = None;
            for l in 0..layers {
                let (w, b) = (&blocks[2 * l], &blocks[2 * l + 1]);
                let wt = theta
                    .narrow(0, w.offset as i64, w.numel as i64)
                    .view([w.shape[0] as i64, w.shape[1] as i64]);
                let bt = theta.narrow(0, b.offset as i64, b.numel as i64);
                let a = bt.addmm(&hs[l], &wt.tr());
                if l + 1 < layers {
                    let h = arch.activation.apply(&a);
                    d1.push(arch.activation.derivative(&a, &h));
                    d2.push(second_derivative(arch.activation, &a, &h));
                    hs.push(h);
                } else {
                    logits = Some(a);
                }
            }
            let z = logits.expect("at least one layer");
            let n = x.size()[0] as f64;
            let (delta, p_off, pivot) = softmax_xent_parts(&z, y);
            let delta = delta / n;
            let mut deltas: Vec<Tensor> = (0..layers).map(|_| Tensor::new()).collect();
            let mut back_d2: Vec<Tensor> = (1..layers).map(|_| Tensor::new()).collect();
            deltas[layers - 1] = delta;
            for l in (1..layers).rev() {
                let w = &blocks[2 * l];
                let wt = theta
                    .narrow(0, w.offset as i64, w.numel as i64)
                    .view([w.shape[0] as i64, w.shape[1] as i64]);
                let back = deltas[l].mm(&wt);
                back_d2[l - 1] = &back * &d2[l - 1];
                deltas[l - 1] = back * &d1[l - 1];
            }
            RopOperator {
                arch: arch.clone(),
                blocks,
                theta: theta.shallow_clone(),
                hs,
                d1,
                d2,
                deltas,
                back_d2,
                p_off,
                pivot,
                n,
                products: 0,
            }
        })
    }

    /// H·V for V of shape [b, P]; returns [b, P].
    pub fn apply_block(&mut self, v: &Tensor) -> Tensor {
        self.apply_operator(Operator::Hessian, v)
    }

    /// A·V for V of shape [b, P], A the Hessian, its generalized
    /// Gauss–Newton part or the empirical Fisher (docs/science.md §3):
    ///
    /// - `Hessian`: the R-operator of the module doc.
    /// - `Ggn`: G = Jᵀ H_z J, J = ∂z/∂θ, H_z the cross-entropy's Hessian in
    ///   the logits (PSD). J·V is the forward R-pass, H_z·(J·V) is R(δ_L),
    ///   and Jᵀ is plain backpropagation through the network linearized at
    ///   θ: the R-operator without the terms that carry δ_l (the residual
    ///   Σ_i Σ_c ∂ℓ_i/∂z_ic ∇²z_ic / N, which is H − G).
    /// - `Fisher`: F = (1/N) Σ_i g_i g_iᵀ, g_i = ∇ℓ_i the per-row gradient.
    ///   g_i = N·(δ_{l,i} ⊗ h_{l-1,i}) per layer (δ already carries 1/N), so
    ///   s_i = g_iᵀv = N Σ_l ⟨δ_{l,i}, h_{l-1,i} dW_lᵀ + db_l⟩ and
    ///   F·v = (1/N) Σ_i s_i g_i: two passes over the rows' matmuls, no
    ///   per-row gradient ever stored.
    pub fn apply_operator(&mut self, op: Operator, v: &Tensor) -> Tensor {
        tch::no_grad(|| {
            self.products += v.size()[0] as usize;
            match op {
                Operator::Fisher => self.fisher(v),
                Operator::Hessian => self.rop(v, true),
                Operator::Ggn => self.rop(v, false),
            }
        })
    }

    fn w_of(&self, l: usize) -> Tensor {
        let w = &self.blocks[2 * l];
        self.theta
            .narrow(0, w.offset as i64, w.numel as i64)
            .view([w.shape[0] as i64, w.shape[1] as i64])
    }

    /// The R-operator; without `residual`, only its Gauss–Newton part.
    fn rop(&self, v: &Tensor, residual: bool) -> Tensor {
        let b = v.size()[0];
        let blocks = &self.blocks;
        let layers = self.arch.layers();
        // Forward R-pass. r_h: [b, N, width] (None for h_0, where R(h_0) = 0).
        let mut r_hs: Vec<Option<Tensor>> = vec![None];
        let mut r_as: Vec<Tensor> = Vec::new();
        for l in 0..layers {
            let (wb, bb) = (&blocks[2 * l], &blocks[2 * l + 1]);
            let dw = view_w(v, wb); // [b, out, in]
            let db = v.narrow(1, bb.offset as i64, bb.numel as i64).unsqueeze(1); // [b, 1, out]
                                                                                  // h_{l-1} dW_lᵀ: [N, in] × [b, in, out] → [b, N, out]
            let mut r_a = self.hs[l].matmul(&dw.transpose(1, 2)) + db;
            if let Some(rh) = &r_hs[l] {
                r_a += rh.matmul(&self.w_of(l).tr());
            }
            if l + 1 < layers {
                r_hs.push(Some(&r_a * &self.d1[l]));
            }
            r_as.push(r_a);
        }
        // R(δ_L) = R(p) / N, pivoted on each row's argmax (module doc).
        let mut r_delta = softmax_r(&self.p_off, &self.pivot, &r_as[layers - 1]) / self.n;
        let p_total = v.size()[1];
        let out = Tensor::zeros([b, p_total], (v.kind(), v.device()));
        for l in (0..layers).rev() {
            let (wb, bb) = (&blocks[2 * l], &blocks[2 * l + 1]);
            // R(∇W_l) = R(δ_l)ᵀ h_{l-1} + δ_lᵀ R(h_{l-1}) : [b, out, in]
            let mut gw = r_delta.transpose(1, 2).matmul(&self.hs[l]);
            if let (true, Some(rh)) = (residual, &r_hs[l]) {
                gw += self.deltas[l].tr().matmul(rh);
            }
            out.narrow(1, wb.offset as i64, wb.numel as i64)
                .copy_(&gw.reshape([b, -1]));
            let gb = r_delta.sum_dim_intlist([1i64].as_slice(), false, r_delta.kind());
            out.narrow(1, bb.offset as i64, bb.numel as i64).copy_(&gb);
            if l > 0 {
                let w = self.w_of(l);
                if residual {
                    // (R(δ_l) W_l + δ_l dW_l) ⊙ σ'(a_{l-1}) + (δ_l W_l) ⊙ σ''(a_{l-1}) ⊙ R(a_{l-1})
                    let dw = view_w(v, wb);
                    let back = r_delta.matmul(&w) + self.deltas[l].matmul(&dw);
                    r_delta = back * &self.d1[l - 1] + &self.back_d2[l - 1] * &r_as[l - 1];
                } else {
                    r_delta = r_delta.matmul(&w) * &self.d1[l - 1];
                }
            }
        }
        out
    }

    /// F·V for the empirical Fisher (see [`Self::apply_operator`]).
    fn fisher(&self, v: &Tensor) -> Tensor {
        let b = v.size()[0];
        let blocks = &self.blocks;
        let layers = self.arch.layers();
        // s[b, N] = Σ_l Σ_out δ_l ⊙ (h_{l-1} dW_lᵀ + db_l), times N.
        let mut s: Option<Tensor> = None;
        for l in 0..layers {
            let (wb, bb) = (&blocks[2 * l], &blocks[2 * l + 1]);
            let dw = view_w(v, wb);
            let db = v.narrow(1, bb.offset as i64, bb.numel as i64).unsqueeze(1);
            let lin = self.hs[l].matmul(&dw.transpose(1, 2)) + db; // [b, N, out]
            let part = (lin * &self.deltas[l]).sum_dim_intlist([-1i64].as_slice(), false, v.kind());
            s = Some(match s {
                Some(acc) => acc + part,
                None => part,
            });
        }
        let s = s.expect("at least one layer") * self.n; // g_iᵀv, [b, N]
        let s = s.unsqueeze(-1); // [b, N, 1]
        let out = Tensor::zeros([b, v.size()[1]], (v.kind(), v.device()));
        for l in 0..layers {
            let (wb, bb) = (&blocks[2 * l], &blocks[2 * l + 1]);
            // (1/N) Σ_i s_i g_i = Σ_i s_i δ_{l,i} h_{l-1,i}ᵀ (δ carries 1/N, g_i has N).
            let sd = &s * &self.deltas[l]; // [b, N, out]
            let gw = sd.transpose(1, 2).matmul(&self.hs[l]); // [b, out, in]
            out.narrow(1, wb.offset as i64, wb.numel as i64)
                .copy_(&gw.reshape([b, -1]));
            let gb = sd.sum_dim_intlist([1i64].as_slice(), false, v.kind());
            out.narrow(1, bb.offset as i64, bb.numel as i64).copy_(&gb);
        }
        out
    }

    /// The exact diagonal of the operator, [P], without a single product
    /// (docs/science.md §4b).
    ///
    /// - Hessian and GGN: each row's curvature in the pre-activations a_l,
    ///   M_l = ∂²(ℓ_i/N)/∂a_l², backpropagated from the logits'
    ///   M_L = (diag(p) − ppᵀ)/N by
    ///   M_{l-1} = D W_lᵀ M_l W_l D + diag(e_{l-1}), D = diag(σ'(a_{l-1})),
    ///   e_{l-1} = σ''(a_{l-1}) ⊙ δ_l W_l (the Hessian backpropagation of
    ///   Dangel, Harmeling and Hennig 2020; the GGN has no e). a_l is linear
    ///   in W_l, so ∂²/∂W_l[o,j]² = Σ_i M_l[o,o] h_{l-1}[j]² and
    ///   ∂²/∂b_l[o]² = Σ_i M_l[o,o].
    ///
    ///   M_l is carried in two parts. The Gauss–Newton part is BᵀB with B
    ///   [C, width] per row: diag(p) − ppᵀ = AᵀA, A = diag(√p)(I − 1pᵀ), and
    ///   B_{l-1} = B_l W_l D: C columns, never a width × width matrix. The
    ///   residual part (the e terms, Hessian only) is a diagonal until it
    ///   crosses a layer, and is formed as a full matrix only where a later
    ///   layer needs more than its diagonal (networks of three or more
    ///   hidden layers).
    /// - Fisher: diag F = (1/N) Σ_i g_i², with g_i = N δ_{l,i} ⊗ h_{l-1,i}.
    ///
    /// Rows go `chunk` at a time (the full residual takes chunk × width²).
    pub fn diagonal(&self, op: Operator, chunk: usize) -> Tensor {
        tch::no_grad(|| {
            let layers = self.arch.layers();
            let kind = self.theta.kind();
            let out = Tensor::zeros([self.theta.size()[0]], (kind, self.theta.device()));
            let add = |l: usize, dw: &Tensor, db: &Tensor| {
                let (wb, bb) = (&self.blocks[2 * l], &self.blocks[2 * l + 1]);
                let mut w = out.narrow(0, wb.offset as i64, wb.numel as i64);
                w += dw.reshape([-1]);
                let mut b = out.narrow(0, bb.offset as i64, bb.numel as i64);
                b += db;
            };
            if op == Operator::Fisher {
                for l in 0..layers {
                    let d2 = self.deltas[l].square();
                    let dw = d2.tr().mm(&self.hs[l].square()) * self.n;
                    let db = d2.sum_dim_intlist([0i64].as_slice(), false, kind) * self.n;
                    add(l, &dw, &db);
                }
                return out;
            }
            /// The residual part of M_l for a chunk of rows.
            enum Residual {
                None,
                Diag(Tensor),
                Full(Tensor),
            }
            let rows = self.hs[0].size()[0];
            let chunk = chunk.max(1) as i64;
            let mut r0 = 0;
            while r0 < rows {
                let c = chunk.min(rows - r0);
                // A = diag(√p)(I − 1pᵀ), with p rebuilt from p_off and the
                // pivot a: p_a = 1 − s and (I − 1pᵀ)_aa = s, s = Σ_{j≠a} p_j,
                // so that nothing cancels on a saturated row.
                let p_off = self.p_off.narrow(0, r0, c);
                let pivot = self.pivot.narrow(0, r0, c);
                let s = p_off.sum_dim_intlist([1i64].as_slice(), true, kind);
                let p = p_off.scatter(1, &pivot, &(s.neg() + 1.0));
                let classes = p.size()[1];
                let q: Tensor = p_off.neg() + 1.0;
                let q = q.scatter(1, &pivot, &s);
                let a = p.unsqueeze(1).neg().repeat([1, classes, 1]);
                a.diagonal(0, -2, -1).copy_(&q);
                // B [c, C, width]: M^G = BᵀB per row.
                let mut b = p.sqrt().unsqueeze(2) * a / self.n.sqrt();
                let mut res = Residual::None;
                for l in (0..layers).rev() {
                    let mut dm = b.square().sum_dim_intlist([1i64].as_slice(), false, kind);
                    match &res {
                        Residual::None => {}
                        Residual::Diag(e) => dm += e,
                        Residual::Full(f) => dm += f.diagonal(0, -2, -1),
                    }
                    let h = self.hs[l].narrow(0, r0, c);
                    add(
                        l,
                        &dm.tr().mm(&h.square()),
                        &dm.sum_dim_intlist([0i64].as_slice(), false, kind),
                    );
                    if l == 0 {
                        break;
                    }
                    let w = self.w_of(l);
                    let (out_w, in_w) = (w.size()[0], w.size()[1]);
                    let d = self.d1[l - 1].narrow(0, r0, c);
                    // B ← B W D, one GEMM over every row and column.
                    b = b
                        .reshape([c * classes, out_w])
                        .mm(&w)
                        .view([c, classes, in_w])
                        * d.unsqueeze(1);
                    if op != Operator::Hessian {
                        continue;
                    }
                    // D Wᵀ R W D: only its diagonal when layer l−1 is the
                    // last (nothing crosses another layer after it).
                    let last = l == 1;
                    let dd = d.unsqueeze(2) * d.unsqueeze(1);
                    res = match res {
                        Residual::None => Residual::None,
                        Residual::Diag(e) if last => Residual::Diag(e.mm(&w.square()) * d.square()),
                        Residual::Full(f) if last => {
                            let fw = f.reshape([c * out_w, out_w]).mm(&w).view([c, out_w, in_w]);
                            Residual::Diag(
                                (fw * &w).sum_dim_intlist([1i64].as_slice(), false, kind)
                                    * d.square(),
                            )
                        }
                        Residual::Diag(e) => {
                            // Wᵀ diag(e) W = (diag(e) W)ᵀ W
                            let ew = e.unsqueeze(2) * &w; // [c, out, in]
                            let wew = ew
                                .transpose(1, 2)
                                .contiguous()
                                .view([c * in_w, out_w])
                                .mm(&w);
                            Residual::Full(wew.view([c, in_w, in_w]) * dd)
                        }
                        Residual::Full(f) => {
                            // Wᵀ F W = (F W)ᵀ W, F symmetric.
                            let fw = f.reshape([c * out_w, out_w]).mm(&w).view([c, out_w, in_w]);
                            let wfw = fw
                                .transpose(1, 2)
                                .contiguous()
                                .view([c * in_w, out_w])
                                .mm(&w);
                            Residual::Full(wfw.view([c, in_w, in_w]) * dd)
                        }
                    };
                    // + diag(σ''(a_{l-1}) ⊙ δ_l W_l)
                    let e_new =
                        self.deltas[l].narrow(0, r0, c).mm(&w) * self.d2[l - 1].narrow(0, r0, c);
                    res = match res {
                        Residual::None => Residual::Diag(e_new),
                        Residual::Diag(e) => Residual::Diag(e + e_new),
                        Residual::Full(f) => Residual::Full(f + e_new.diag_embed(0, -2, -1)),
                    };
                }
                r0 += c;
            }
            out
        })
    }

    /// H·v for one vector [P].
    pub fn apply_tensor(&mut self, v: &Tensor) -> Tensor {
        self.apply_block(&v.unsqueeze(0)).squeeze_dim(0)
    }

    pub fn kind(&self) -> Kind {
        self.theta.kind()
    }

    /// H·X for the vectors `xs`, in one block product, into `ys`.
    pub fn apply_vecs(&mut self, xs: &[Vec<f64>], ys: &mut [Vec<f64>]) {
        self.apply_operator_vecs(Operator::Hessian, xs, ys)
    }

    /// A·X for the operator `op` (see [`Self::apply_operator`]), in one
    /// block product, into `ys`.
    pub fn apply_operator_vecs(&mut self, op: Operator, xs: &[Vec<f64>], ys: &mut [Vec<f64>]) {
        if xs.is_empty() {
            return;
        }
        let flat: Vec<f64> = xs.iter().flatten().copied().collect();
        let v = Tensor::from_slice(&flat)
            .view([xs.len() as i64, -1])
            .to_kind(self.kind())
            .to_device(self.theta.device());
        let hv = crate::train::tensor_f64(&self.apply_operator(op, &v));
        for (y, row) in ys.iter_mut().zip(hv.chunks(xs[0].len())) {
            y.copy_from_slice(row);
        }
    }

    /// H·v on f64 slices (the Lanczos interface).
    pub fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        let vt = Tensor::from_slice(v)
            .to_kind(self.kind())
            .to_device(self.theta.device());
        let hv = self.apply_tensor(&vt);
        out.copy_from_slice(&crate::train::tensor_f64(&hv));
    }
}

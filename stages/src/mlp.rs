//! The MLP over one flat parameter vector θ.
//!
//! Layout (the `param_map.arrow` contract): layer by layer, each weight
//! `[out, in]` row-major as PyTorch's nn.Linear stores it, then its bias. The
//! activation follows every layer but the last; the loss is the mean
//! cross-entropy of the softmax of the final logits.

use crate::arrow_io::{col_i64, col_str, list_i64, write_batch};
use crate::error::StageResult;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
    Gelu,
    Softplus,
}

/// How θ is initialized.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Init {
    /// nn.Linear's default: W and b ~ U(-1/√fan_in, 1/√fan_in)
    /// (kaiming_uniform with a = √5 reduces to this bound).
    TorchDefault,
    /// W ~ N(0, std²), b = 0.
    Normal { std: f64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// Input dim, hidden widths…, number of classes.
    pub widths: Vec<usize>,
    pub activation: Activation,
}

/// One weight or bias block of θ.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamBlock {
    pub name: String,
    pub layer: usize,
    pub is_weight: bool,
    pub offset: usize,
    pub numel: usize,
    pub shape: Vec<usize>,
}

impl Arch {
    pub fn layers(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    /// The blocks of θ in flat order.
    pub fn param_map(&self) -> Vec<ParamBlock> {
        let mut out = Vec::new();
        let mut off = 0;
        for l in 0..self.layers() {
            let (i, o) = (self.widths[l], self.widths[l + 1]);
            out.push(ParamBlock {
                name: format!("layers.{l}.weight"),
                layer: l,
                is_weight: true,
                offset: off,
                numel: o * i,
                shape: vec![o, i],
            });
            off += o * i;
            out.push(ParamBlock {
                name: format!("layers.{l}.bias"),
                layer: l,
                is_weight: false,
                offset: off,
                numel: o,
                shape: vec![o],
            });
            off += o;
        }
        out
    }

    pub fn num_params(&self) -> usize {
        (0..self.layers())
            .map(|l| self.widths[l + 1] * (self.widths[l] + 1))
            .sum()
    }

    /// Initial θ, deterministic in `seed`.
    pub fn init(&self, init: Init, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A stream of its own, so the init never aliases a dataset with the same seed.
        rng.set_stream(0x1a17);
        let mut theta = vec![0f64; self.num_params()];
        for b in self.param_map() {
            let fan_in = self.widths[b.layer] as f64;
            let slice = &mut theta[b.offset..b.offset + b.numel];
            match init {
                Init::TorchDefault => {
                    let bound = 1.0 / fan_in.sqrt();
                    let u = Uniform::new(-bound, bound).expect("bound > 0");
                    for v in slice.iter_mut() {
                        *v = u.sample(&mut rng);
                    }
                }
                Init::Normal { std } => {
                    if b.is_weight {
                        for v in slice.iter_mut() {
                            let z: f64 = StandardNormal.sample(&mut rng);
                            *v = std * z;
                        }
                    }
                }
            }
        }
        theta
    }
}

/// Write `param_map.arrow`: name, offset, numel, shape, plus layer and kind.
pub fn write_param_map(arch: &Arch, path: &Path) -> StageResult<()> {
    let blocks = arch.param_map();
    let names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
    let kinds: Vec<&str> = blocks
        .iter()
        .map(|b| if b.is_weight { "weight" } else { "bias" })
        .collect();
    write_batch(
        path,
        vec![
            ("name", col_str(&names)),
            (
                "offset",
                col_i64(blocks.iter().map(|b| b.offset as i64).collect()),
            ),
            (
                "numel",
                col_i64(blocks.iter().map(|b| b.numel as i64).collect()),
            ),
            (
                "shape",
                list_i64(
                    &blocks
                        .iter()
                        .map(|b| b.shape.iter().map(|&s| s as i64).collect())
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "layer",
                col_i64(blocks.iter().map(|b| b.layer as i64).collect()),
            ),
            ("kind", col_str(&kinds)),
        ],
        false,
    )
}

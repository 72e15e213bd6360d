//! Datasets: generated deterministically from their parameters, split into
//! train and test, standardized with train statistics, written as `data.arrow`.
//!
//! Row order in `data.arrow`: the train rows, then the test rows. The analysis
//! set of the Hessian is the first M train rows in this order.

use crate::arrow_io::{col_i64, col_str, write_batch, Table};
use crate::error::{fmt_err, StageError, StageResult};
use arrow::array::{Array, FixedSizeListArray, Float32Array};
use arrow::datatypes::{DataType, Field};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// C isotropic unit-variance Gaussians in D dims, means at distance ~ separation·√2.
    GaussianMixture,
}

fn d_classes() -> usize {
    4
}
fn d_dim() -> usize {
    8
}
fn d_samples() -> usize {
    1000
}
fn d_separation() -> f64 {
    3.0
}
fn d_test_fraction() -> f64 {
    0.2
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    pub kind: DatasetKind,
    #[serde(default = "d_classes")]
    pub classes: usize,
    #[serde(default = "d_dim")]
    pub dim: usize,
    #[serde(default = "d_samples")]
    pub samples: usize,
    #[serde(default = "d_separation")]
    pub separation: f64,
    #[serde(default = "d_test_fraction")]
    pub test_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

impl DatasetParams {
    /// Range checks, with the field named.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("dataset.{f}"), m.to_string()));
        if self.classes < 2 {
            return bad("classes", "must be at least 2");
        }
        if self.dim == 0 {
            return bad("dim", "must be at least 1");
        }
        if self.samples < 2 * self.classes {
            return bad("samples", "must be at least 2 × classes");
        }
        if !(self.separation.is_finite() && self.separation >= 0.0) {
            return bad("separation", "must be a finite number ≥ 0");
        }
        if !(self.test_fraction >= 0.0 && self.test_fraction < 1.0) {
            return bad("test_fraction", "must be in [0, 1)");
        }
        Ok(())
    }
}

/// A dataset in memory: row-major f32 features, i64 labels, train/test flags.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub dim: usize,
    pub classes: usize,
    pub features: Vec<f32>,
    pub labels: Vec<i64>,
    pub is_train: Vec<bool>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Rows of one split, in stored order: (features, labels).
    pub fn split(&self, train: bool) -> (Vec<f32>, Vec<i64>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..self.len() {
            if self.is_train[i] == train {
                x.extend_from_slice(&self.features[i * self.dim..(i + 1) * self.dim]);
                y.push(self.labels[i]);
            }
        }
        (x, y)
    }
}

/// Generate the dataset described by `p` (deterministic in `p`).
pub fn generate(p: &DatasetParams) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (c, d, n) = (p.classes, p.dim, p.samples);
    // Class means: random directions scaled to norm `separation`.
    let mut means = vec![0f64; c * d];
    for k in 0..c {
        let z: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for j in 0..d {
            means[k * d + j] = p.separation * z[j] / norm;
        }
    }
    // Balanced labels in a seeded random order.
    let mut labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    labels.shuffle(&mut rng);
    let mut x = vec![0f64; n * d];
    for i in 0..n {
        let k = labels[i] as usize;
        for j in 0..d {
            let e: f64 = StandardNormal.sample(&mut rng);
            x[i * d + j] = means[k * d + j] + e;
        }
    }
    let n_test = ((n as f64) * p.test_fraction).round() as usize;
    let n_train = n - n_test;
    finish(x, labels, d, c, n_train)
}

/// Standardize with the statistics of the first `n_train` rows (the train
/// split), and lay out train rows first.
fn finish(mut x: Vec<f64>, labels: Vec<i64>, d: usize, c: usize, n_train: usize) -> Dataset {
    let n = labels.len();
    for j in 0..d {
        let mean = (0..n_train).map(|i| x[i * d + j]).sum::<f64>() / n_train as f64;
        let var = (0..n_train)
            .map(|i| (x[i * d + j] - mean).powi(2))
            .sum::<f64>()
            / n_train as f64;
        let sd = if var > 1e-24 { var.sqrt() } else { 1.0 };
        for i in 0..n {
            x[i * d + j] = (x[i * d + j] - mean) / sd;
        }
    }
    Dataset {
        dim: d,
        classes: c,
        features: x.iter().map(|&v| v as f32).collect(),
        labels,
        is_train: (0..n).map(|i| i < n_train).collect(),
    }
}

/// Write `data.arrow`: `features` (fixed-size list of f32), `label` (i64), `split` (utf8).
pub fn write(ds: &Dataset, path: &Path) -> StageResult<()> {
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    let values = Arc::new(Float32Array::from(ds.features.clone()));
    let features = FixedSizeListArray::try_new(field, ds.dim as i32, values, None)
        .map_err(|e| fmt_err(path, e))?;
    let split: Vec<&str> = ds
        .is_train
        .iter()
        .map(|&t| if t { "train" } else { "test" })
        .collect();
    write_batch(
        path,
        vec![
            ("features", Arc::new(features)),
            ("label", col_i64(ds.labels.clone())),
            ("split", col_str(&split)),
        ],
        false,
    )
}

/// Read a `data.arrow` written by [`write`] (or by a user, to the same contract).
pub fn read(path: &Path) -> StageResult<Dataset> {
    let t = Table::open(path)?;
    let f = t.fixed_list("features")?;
    let dim = f.value_length() as usize;
    let values = f
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| fmt_err(path, "column `features` must hold float32"))?;
    let labels: Vec<i64> = t.i64("label")?.values().to_vec();
    let split = t.str("split")?;
    let mut is_train = Vec::with_capacity(labels.len());
    for i in 0..split.len() {
        match split.value(i) {
            "train" => is_train.push(true),
            "test" => is_train.push(false),
            other => {
                return Err(fmt_err(
                    path,
                    format!("row {i}: split `{other}` is neither train nor test"),
                ))
            }
        }
    }
    let classes = labels
        .iter()
        .copied()
        .max()
        .map(|m| m as usize + 1)
        .unwrap_or(0);
    if labels.iter().any(|&l| l < 0) {
        return Err(fmt_err(path, "negative label"));
    }
    if !is_train.iter().any(|&t| t) {
        return Err(StageError::Format {
            path: path.into(),
            msg: "no train rows".into(),
        });
    }
    Ok(Dataset {
        dim,
        classes,
        features: values.values()[..labels.len() * dim].to_vec(),
        labels,
        is_train,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DatasetParams {
        DatasetParams {
            kind: DatasetKind::GaussianMixture,
            classes: 3,
            dim: 5,
            samples: 300,
            separation: 2.0,
            test_fraction: 0.2,
            seed: 7,
        }
    }

    #[test]
    fn deterministic_balanced_and_standardized() {
        let a = generate(&params());
        let b = generate(&params());
        assert_eq!(a.features, b.features);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.is_train.iter().filter(|&&t| t).count(), 240);
        for k in 0..3 {
            assert_eq!(a.labels.iter().filter(|&&l| l == k).count(), 100);
        }
        let (x, _) = a.split(true);
        for j in 0..5 {
            let col: Vec<f64> = (0..240).map(|i| x[i * 5 + j] as f64).collect();
            let m = col.iter().sum::<f64>() / 240.0;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / 240.0;
            assert!(m.abs() < 1e-5, "mean {m}");
            assert!((v - 1.0).abs() < 1e-4, "var {v}");
        }
        let mut other = params();
        other.seed = 8;
        assert_ne!(generate(&other).features, a.features);
    }

    #[test]
    fn arrow_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.arrow");
        let a = generate(&params());
        write(&a, &p).unwrap();
        let b = read(&p).unwrap();
        assert_eq!(a.features, b.features);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.is_train, b.is_train);
        assert_eq!(b.dim, 5);
        assert_eq!(b.classes, 3);
    }
}

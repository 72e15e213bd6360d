//! Datasets: generated deterministically from their parameters, or read from
//! shipped (digits) or user-supplied (IDX) files; split into train and test,
//! standardized with train statistics, written as `data.arrow`.
//!
//! Row order in `data.arrow`: the train rows, then the test rows. The analysis
//! set of the Hessian is the first M train rows in this order.
//!
//! # Kinds and their config fields (`[dataset]`)
//!
//! Every kind takes `test_fraction` (default 0.2) and `seed` (default 0). The
//! last `round(n · test_fraction)` rows (n = rows after any subset) are the
//! test split. Features are scaled with train-split statistics (`scale`):
//! `standardize` (the default) divides each centred feature by its
//! (population) sd, floored at `std_floor` (default 0: a feature constant on
//! the train split keeps the scale 1; it is only centred); `unit` divides
//! every feature by the train split's largest |x|; `minmax` maps each
//! feature to [0, 1]. A field that does not apply to the kind is an error
//! naming it. `shuffle_labels = true` (default false) permutes the train
//! split's labels with ChaCha8(seed) stream 7 after the rows are built: the
//! trained null (a network fitting labels unrelated to its inputs); the
//! features, the split and the test labels are unchanged.
//!
//! - `gaussian_mixture`: `classes` (4), `dim` (8), `samples` (1000),
//!   `separation` (3.0). C isotropic unit-variance Gaussians in D dims whose
//!   means are random directions of norm `separation`; balanced labels in a
//!   seeded random order. (Unchanged since code version 1.)
//! - `spirals`: `classes` (4 arms), `samples` (1000), `noise` (0.05), `dim`
//!   (2; above 2 the spirals are lifted). Arm k of C: a point draws
//!   r ~ U[0, 1) and sits at radius r, angle 2πk/C + 2πr (one full turn), so
//!   at any angle neighbouring arms are 1/C apart in radius (0.25 for 4
//!   arms). Isotropic Gaussian noise of standard deviation `noise` is added
//!   to every coordinate; 0.05 keeps neighbouring arms 2.5σ from their
//!   midline (nearly separable, yet far from linearly separable). For
//!   dim D > 2 the clean 2-D point p is mapped to Q p, with Q a D×2 matrix of
//!   orthonormal columns (Gram–Schmidt of a D×2 standard-normal matrix drawn
//!   column by column), and the noise is added to all D coordinates, so the
//!   noise is isotropic in R^D and the spirals span a random plane. Labels
//!   are balanced (row i has label i mod C, then a seeded shuffle). Random
//!   streams of ChaCha8(seed): stream 0 the label shuffle and then r row by
//!   row, stream 1 the noise (row-major), stream 2 Q; so `noise` and `dim`
//!   do not change which clean points are drawn.
//! - `teacher`: `classes` (4), `dim` (8), `samples` (1000), `teacher_widths`
//!   (the hidden widths, default `[32]`; a single integer means one hidden
//!   layer, `[]` a linear teacher). x ~ N(0, I_dim), drawn row-major from
//!   ChaCha8(seed) stream 0. The teacher has layer sizes
//!   [dim, teacher_widths…, classes], no biases, tanh after every hidden
//!   layer and none on the logits; its weights come from stream 1, layer by
//!   layer, each W of shape [out, in] row-major with entries z / √in,
//!   z ~ N(0, 1). The label is the argmax of the logits (the first on a tie),
//!   computed in f64 with each dot product summed in input order. Classes
//!   are not balanced: their shares are whatever the teacher gives.
//! - `digits`: the UCI 8×8 handwritten digits (1797 rows, 64 pixel counts
//!   0..16, 10 classes), embedded from `data/digits/digits.csv.gz` (see its
//!   README for provenance and license). `subset` (default all): the number
//!   of rows. The rows are permuted by a seeded shuffle (ChaCha8(seed)) and
//!   the first `subset` kept. `dim` and `classes` are implied (64, 10); if
//!   given they must agree.
//! - `idx`: MNIST-format files supplied by the user. `path` (required): a
//!   directory, relative to the config's directory (the caller's
//!   `base_dir`), holding `train-images-idx3-ubyte` and
//!   `train-labels-idx1-ubyte` (or `train-images.idx3-ubyte` /
//!   `train-labels.idx1-ubyte`), each optionally gzipped with a `.gz`
//!   suffix. Features are pixel / 255, flattened row-major (dim = rows ×
//!   cols); classes = max label + 1 over the whole file. `subset` (default
//!   all) as for digits. `dim` and `classes`, if given, must agree with the
//!   files.

use crate::arrow_io::{col_i64, col_str, write_batch, Table};
use crate::error::{fmt_err, ParamError, StageError, StageResult};
use arrow_array::{Array, FixedSizeListArray, Float32Array};
use arrow_schema::{DataType, Field};
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Deserializer, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What the dataset is, with the fields that only one kind has.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetKind {
    /// C isotropic unit-variance Gaussians in D dims, means at distance ~ separation·√2.
    GaussianMixture,
    /// C spiral arms, optionally lifted to D dims (see the module docs).
    Spirals { noise: f64 },
    /// Gaussian inputs labelled by a random tanh MLP.
    Teacher { teacher_widths: Vec<usize> },
    /// The embedded UCI 8×8 digits; `subset` rows (default all 1797).
    Digits { subset: Option<usize> },
    /// MNIST-format IDX files in the directory `path` (relative to the base directory).
    Idx { path: String, subset: Option<usize> },
}

impl DatasetKind {
    /// The config name: `gaussian_mixture`, `spirals`, `teacher`, `digits`, `idx`.
    pub fn name(&self) -> &'static str {
        self.wire().name()
    }
    fn wire(&self) -> KindName {
        match self {
            DatasetKind::GaussianMixture => KindName::GaussianMixture,
            DatasetKind::Spirals { .. } => KindName::Spirals,
            DatasetKind::Teacher { .. } => KindName::Teacher,
            DatasetKind::Digits { .. } => KindName::Digits,
            DatasetKind::Idx { .. } => KindName::Idx,
        }
    }
    /// Generated from the parameters alone (no files).
    pub fn is_generated(&self) -> bool {
        matches!(
            self,
            DatasetKind::GaussianMixture
                | DatasetKind::Spirals { .. }
                | DatasetKind::Teacher { .. }
        )
    }
}

/// How features are scaled, with statistics of the train split only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureScale {
    /// Per feature (x − mean)/sd, sd floored at `std_floor` (a constant
    /// feature keeps the scale 1 when the floor is 0). The default.
    #[default]
    Standardize,
    /// One global scale: x / max |x| over the train split and every feature
    /// (no centring; the digits' counts 0…16 become 0…1).
    Unit,
    /// Per feature (x − min)/(max − min) to [0, 1] (a constant feature → 0).
    Minmax,
}

impl FeatureScale {
    pub fn name(self) -> &'static str {
        match self {
            FeatureScale::Standardize => "standardize",
            FeatureScale::Unit => "unit",
            FeatureScale::Minmax => "minmax",
        }
    }
}

/// The `[dataset]` parameters. Serialized flat (`kind = "spirals"`,
/// `noise = 0.05`, …) through a wire form that denies unknown fields and
/// omits what does not apply to the kind, so a `gaussian_mixture` serializes
/// exactly as before the other kinds existed.
///
/// `classes`, `dim` and `samples` hold the resolved values for the generated
/// kinds. For `digits`, `classes`/`dim` hold what was given (default 10/64;
/// [`DatasetParams::shape`] checks them); for `idx`, 0 means "from the
/// files". `samples` is unused (0) for `digits` and `idx` (see `subset`), and
/// `separation` is unused except by `gaussian_mixture`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawParams", into = "RawParams")]
pub struct DatasetParams {
    pub kind: DatasetKind,
    pub classes: usize,
    pub dim: usize,
    pub samples: usize,
    pub separation: f64,
    pub test_fraction: f64,
    pub seed: u64,
    /// Feature scaling (`scale`; default `standardize`).
    pub scale: FeatureScale,
    /// With `standardize`: the smallest sd a feature is divided by (0: a
    /// constant feature keeps the scale 1, as before this field existed).
    pub std_floor: f64,
    /// Permute the train split's labels (`shuffle_labels`; default false):
    /// the trained null, a network fitting labels unrelated to its inputs.
    pub shuffle_labels: bool,
}

const D_CLASSES: usize = 4;
const D_DIM: usize = 8;
const D_SPIRAL_DIM: usize = 2;
const D_SAMPLES: usize = 1000;
const D_SEPARATION: f64 = 3.0;
const D_TEST_FRACTION: f64 = 0.2;
/// Default spiral noise (standard deviation, in units of the outer radius 1).
pub const D_SPIRAL_NOISE: f64 = 0.05;
/// Default hidden widths of the teacher.
pub const D_TEACHER_WIDTHS: [usize; 1] = [32];
/// The most rows a generated dataset may have.
pub const MAX_SAMPLES: usize = 100_000_000;
/// The most classes.
pub const MAX_CLASSES: usize = 100_000;
/// The most features per row (and the widest teacher layer).
pub const MAX_DIM: usize = 1_000_000;
/// The most hidden layers of a teacher.
pub const MAX_TEACHER_LAYERS: usize = 100;
/// Rows, pixels and classes of the embedded digits.
pub const DIGITS_ROWS: usize = 1797;
pub const DIGITS_DIM: usize = 64;
pub const DIGITS_CLASSES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    GaussianMixture,
    Spirals,
    Teacher,
    Digits,
    Idx,
}

impl KindName {
    fn name(self) -> &'static str {
        match self {
            KindName::GaussianMixture => "gaussian_mixture",
            KindName::Spirals => "spirals",
            KindName::Teacher => "teacher",
            KindName::Digits => "digits",
            KindName::Idx => "idx",
        }
    }
}

/// The wire form of [`DatasetParams`]: every field optional, unknown fields denied.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    kind: KindName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    separation: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    noise: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "widths_de"
    )]
    teacher_widths: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subset: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    test_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Omitted when `standardize`, so that existing configs keep their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<FeatureScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std_floor: Option<f64>,
    /// Omitted when false, so that existing configs keep their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shuffle_labels: Option<bool>,
}

/// `teacher_widths`: a list of widths, or one integer for one hidden layer.
fn widths_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of hidden widths like [32, 32], or one width")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(vec![v as usize])
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            usize::try_from(v)
                .map(|w| vec![w])
                .map_err(|_| E::custom("a width must be ≥ 0"))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(w) = a.next_element::<usize>()? {
                out.push(w);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V).map(Some)
}

const FIELDS_OF: [(KindName, &[&str]); 5] = [
    (
        KindName::GaussianMixture,
        &["classes", "dim", "samples", "separation"],
    ),
    (KindName::Spirals, &["classes", "dim", "samples", "noise"]),
    (
        KindName::Teacher,
        &["classes", "dim", "samples", "teacher_widths"],
    ),
    (KindName::Digits, &["classes", "dim", "subset"]),
    (KindName::Idx, &["classes", "dim", "path", "subset"]),
];

impl TryFrom<RawParams> for DatasetParams {
    type Error = String;
    fn try_from(r: RawParams) -> Result<Self, String> {
        let name = r.kind.name();
        let allowed = FIELDS_OF.iter().find(|f| f.0 == r.kind).unwrap().1;
        let given = [
            ("classes", r.classes.is_some()),
            ("dim", r.dim.is_some()),
            ("samples", r.samples.is_some()),
            ("separation", r.separation.is_some()),
            ("noise", r.noise.is_some()),
            ("teacher_widths", r.teacher_widths.is_some()),
            ("path", r.path.is_some()),
            ("subset", r.subset.is_some()),
        ];
        for (field, is_given) in given {
            if is_given && !allowed.contains(&field) {
                let hint = if field == "samples" {
                    " (use `subset` to take fewer rows)"
                } else {
                    ""
                };
                return Err(format!(
                    "dataset.{field} does not apply to kind = \"{name}\"{hint}; remove it (the fields of {name}: {}, test_fraction, seed)",
                    allowed.join(", ")
                ));
            }
        }
        let kind = match r.kind {
            KindName::GaussianMixture => DatasetKind::GaussianMixture,
            KindName::Spirals => DatasetKind::Spirals {
                noise: r.noise.unwrap_or(D_SPIRAL_NOISE),
            },
            KindName::Teacher => DatasetKind::Teacher {
                teacher_widths: r
                    .teacher_widths
                    .unwrap_or_else(|| D_TEACHER_WIDTHS.to_vec()),
            },
            KindName::Digits => DatasetKind::Digits { subset: r.subset },
            KindName::Idx => DatasetKind::Idx {
                path: r.path.ok_or_else(|| {
                    format!("dataset.path is required for kind = \"idx\": {IDX_FIX}")
                })?,
                subset: r.subset,
            },
        };
        let (classes, dim, samples) = match r.kind {
            KindName::GaussianMixture | KindName::Teacher => (D_CLASSES, D_DIM, D_SAMPLES),
            KindName::Spirals => (D_CLASSES, D_SPIRAL_DIM, D_SAMPLES),
            KindName::Digits => (DIGITS_CLASSES, DIGITS_DIM, 0),
            KindName::Idx => (0, 0, 0),
        };
        Ok(DatasetParams {
            kind,
            classes: r.classes.unwrap_or(classes),
            dim: r.dim.unwrap_or(dim),
            samples: r.samples.unwrap_or(samples),
            separation: r.separation.unwrap_or(D_SEPARATION),
            test_fraction: r.test_fraction.unwrap_or(D_TEST_FRACTION),
            seed: r.seed.unwrap_or(0),
            scale: r.scale.unwrap_or_default(),
            std_floor: r.std_floor.unwrap_or(0.0),
            shuffle_labels: r.shuffle_labels.unwrap_or(false),
        })
    }
}

impl From<DatasetParams> for RawParams {
    fn from(p: DatasetParams) -> Self {
        let generated = p.kind.is_generated();
        let shaped = |v: usize| (generated || v != 0).then_some(v);
        let (mut noise, mut teacher_widths, mut path, mut subset) = (None, None, None, None);
        match &p.kind {
            DatasetKind::GaussianMixture => {}
            DatasetKind::Spirals { noise: n } => noise = Some(*n),
            DatasetKind::Teacher { teacher_widths: w } => teacher_widths = Some(w.clone()),
            DatasetKind::Digits { subset: s } => subset = *s,
            DatasetKind::Idx { path: d, subset: s } => {
                path = Some(d.clone());
                subset = *s;
            }
        }
        RawParams {
            kind: p.kind.wire(),
            classes: shaped(p.classes),
            dim: shaped(p.dim),
            samples: generated.then_some(p.samples),
            separation: (p.kind == DatasetKind::GaussianMixture).then_some(p.separation),
            noise,
            teacher_widths,
            path,
            subset,
            test_fraction: Some(p.test_fraction),
            seed: Some(p.seed),
            scale: (p.scale != FeatureScale::Standardize).then_some(p.scale),
            std_floor: (p.std_floor != 0.0).then_some(p.std_floor),
            shuffle_labels: p.shuffle_labels.then_some(true),
        }
    }
}

/// The size of a dataset, known without generating it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetShape {
    /// Features per row (the model's input width).
    pub dim: usize,
    /// Classes (the model's output width).
    pub classes: usize,
    /// Rows in all (after any subset).
    pub samples: usize,
    /// Rows of the train split.
    pub train: usize,
}

/// Train rows out of `n`: the last `round(n · test_fraction)` rows are the test split.
fn n_train(n: usize, test_fraction: f64) -> usize {
    n - ((n as f64) * test_fraction).round() as usize
}

impl DatasetParams {
    /// Range checks and the shape, without generating. For `idx` this reads
    /// the files' headers (and the labels) under `base_dir` (the directory
    /// `path` is relative to). Errors are (field, message with the fix), the
    /// field like `dataset.path`.
    pub fn shape(&self, base_dir: &Path) -> Result<DatasetShape, ParamError> {
        let bad = |f: &str, m: String| Err(ParamError::new(format!("dataset.{f}"), m));
        let (dim, classes, samples) = match &self.kind {
            DatasetKind::GaussianMixture
            | DatasetKind::Spirals { .. }
            | DatasetKind::Teacher { .. } => {
                if !(2..=MAX_CLASSES).contains(&self.classes) {
                    return bad(
                        "classes",
                        format!("must be in 2..={MAX_CLASSES}, got {}", self.classes),
                    );
                }
                if self.dim > MAX_DIM {
                    return bad("dim", format!("must be in 1..={MAX_DIM}, got {}", self.dim));
                }
                if self.samples > MAX_SAMPLES {
                    return bad(
                        "samples",
                        format!(
                            "must be in {}..={MAX_SAMPLES} (2 × classes and up), got {}",
                            2 * self.classes,
                            self.samples
                        ),
                    );
                }
                let spirals = matches!(self.kind, DatasetKind::Spirals { .. });
                if spirals && self.dim < 2 {
                    return bad(
                        "dim",
                        format!("must be in 2..={MAX_DIM} (2 = the plane of the spirals; more lifts them), got {}", self.dim),
                    );
                }
                if self.dim == 0 {
                    return bad("dim", format!("must be in 1..={MAX_DIM}, got 0"));
                }
                if self.samples < 2 * self.classes {
                    return bad(
                        "samples",
                        format!(
                            "must be in {}..={MAX_SAMPLES} (at least 2 × classes), got {}",
                            2 * self.classes,
                            self.samples
                        ),
                    );
                }
                match &self.kind {
                    DatasetKind::Spirals { noise } if !(noise.is_finite() && *noise >= 0.0) => {
                        return bad("noise", "must be a finite number ≥ 0".into());
                    }
                    DatasetKind::Teacher { teacher_widths }
                        if teacher_widths.len() > MAX_TEACHER_LAYERS =>
                    {
                        return bad(
                            "teacher_widths",
                            format!(
                                "gives {} hidden layers; at most {MAX_TEACHER_LAYERS}",
                                teacher_widths.len()
                            ),
                        );
                    }
                    DatasetKind::Teacher { teacher_widths }
                        if teacher_widths.iter().any(|w| !(1..=MAX_DIM).contains(w)) =>
                    {
                        return bad(
                            "teacher_widths",
                            format!("every hidden width must be in 1..={MAX_DIM} (give [] for a linear teacher)"),
                        );
                    }
                    _ => {}
                }
                (self.dim, self.classes, self.samples)
            }
            DatasetKind::Digits { subset } => {
                if self.classes != DIGITS_CLASSES {
                    return bad("classes", format!("the digits have {DIGITS_CLASSES} classes; set dataset.classes = {DIGITS_CLASSES} or remove it"));
                }
                if self.dim != DIGITS_DIM {
                    return bad("dim", format!("the digits have {DIGITS_DIM} features (8×8 pixels); set dataset.dim = {DIGITS_DIM} or remove it"));
                }
                let n = check_subset(*subset, DIGITS_ROWS, "the digits have")?;
                (DIGITS_DIM, DIGITS_CLASSES, n)
            }
            DatasetKind::Idx { path, subset } => {
                let pr = idx_probe(base_dir, path)?;
                let dim = pr.rows * pr.cols;
                if self.dim != 0 && self.dim != dim {
                    return bad("dim", format!("the images in {} are {}×{} = {dim} pixels; set dataset.dim = {dim} or remove it", pr.images.display(), pr.rows, pr.cols));
                }
                if self.classes != 0 && self.classes != pr.classes {
                    return bad("classes", format!("the labels in {} give {} classes (max label + 1); set dataset.classes = {} or remove it", pr.labels.display(), pr.classes, pr.classes));
                }
                let n = check_subset(*subset, pr.n, "the IDX files hold")?;
                (dim, pr.classes, n)
            }
        };
        if self.kind == DatasetKind::GaussianMixture
            && !(self.separation.is_finite() && self.separation >= 0.0)
        {
            return bad("separation", "must be a finite number ≥ 0".into());
        }
        if !(self.test_fraction >= 0.0 && self.test_fraction < 1.0) {
            return bad("test_fraction", "must be in [0, 1)".into());
        }
        if !(self.std_floor.is_finite() && self.std_floor >= 0.0) {
            return bad("std_floor", "must be a finite number ≥ 0".into());
        }
        if self.std_floor != 0.0 && self.scale != FeatureScale::Standardize {
            return bad(
                "std_floor",
                format!(
                    "applies to scale = \"standardize\" only, not \"{}\"; remove it",
                    self.scale.name()
                ),
            );
        }
        let train = n_train(samples, self.test_fraction);
        if train == 0 {
            return bad(
                "test_fraction",
                format!("leaves no train rows out of {samples}; lower it"),
            );
        }
        Ok(DatasetShape {
            dim,
            classes,
            samples,
            train,
        })
    }

    /// Range checks, with the field named (the checks of [`Self::shape`],
    /// with paths relative to the current directory).
    pub fn validate(&self) -> Result<(), ParamError> {
        self.shape(Path::new(".")).map(|_| ())
    }

    /// The files the dataset is read from, resolved under `base_dir`: the
    /// IDX images and labels for `idx`, nothing for the other kinds (the
    /// digits are part of the binary). A caller that caches by parameters
    /// should hash these too.
    pub fn input_files(&self, base_dir: &Path) -> Result<Vec<PathBuf>, ParamError> {
        match &self.kind {
            DatasetKind::Idx { path, .. } => {
                let pr = idx_probe(base_dir, path)?;
                Ok(vec![pr.images, pr.labels])
            }
            _ => Ok(Vec::new()),
        }
    }
}

fn check_subset(subset: Option<usize>, n: usize, what: &str) -> Result<usize, ParamError> {
    match subset {
        None => Ok(n),
        Some(m) if (2..=n).contains(&m) => Ok(m),
        Some(m) => Err(ParamError::new(
            "dataset.subset",
            format!("{m} is out of range: {what} {n} rows; give 2..={n}, or omit it for all"),
        )),
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

/// Rows before standardization: the first `n_train` are the train split.
struct Rows {
    x: Vec<f64>,
    labels: Vec<i64>,
    dim: usize,
    classes: usize,
    n_train: usize,
}

/// Generate the dataset described by `p` (deterministic in `p`), without
/// range checks. For `digits` and `idx` this is [`load`] with paths relative
/// to the current directory, and it panics on an error; prefer [`load`].
pub fn generate(p: &DatasetParams) -> Dataset {
    match build(p, Path::new(".")) {
        Ok(r) => finish(r, p.scale, p.std_floor),
        Err(e) => panic!("dataset: {e}"),
    }
}

/// Check `p` ([`DatasetParams::shape`]) and produce its dataset: any kind,
/// standardized, train rows first. `base_dir` resolves `idx`'s `path`; the
/// other kinds ignore it.
pub fn load(p: &DatasetParams, base_dir: &Path) -> StageResult<Dataset> {
    p.shape(base_dir)?;
    let r = build(p, base_dir)?;
    Ok(finish(r, p.scale, p.std_floor))
}

/// As [`load`], but without standardization: the rows as generated or read
/// (pixels / 255 for `idx`, counts 0..16 for `digits`), in the same order and
/// split. For inspection and tests; `data.arrow` holds [`load`]'s values.
pub fn load_raw(p: &DatasetParams, base_dir: &Path) -> StageResult<Dataset> {
    p.shape(base_dir)?;
    let r = build(p, base_dir)?;
    let n = r.labels.len();
    Ok(Dataset {
        dim: r.dim,
        classes: r.classes,
        features: r.x.iter().map(|&v| v as f32).collect(),
        labels: r.labels,
        is_train: (0..n).map(|i| i < r.n_train).collect(),
    })
}

/// The rows of `p`, with the train split's labels permuted when
/// `shuffle_labels` is set: a seeded shuffle, ChaCha8(seed) stream 7 (no
/// kind draws from it), so features, split and test labels are unchanged.
fn build(p: &DatasetParams, base_dir: &Path) -> StageResult<Rows> {
    let mut r = build_rows(p, base_dir)?;
    if p.shuffle_labels {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        rng.set_stream(SHUFFLE_LABELS_STREAM);
        r.labels[..r.n_train].shuffle(&mut rng);
    }
    Ok(r)
}

/// The random stream of the label shuffle (`shuffle_labels`).
const SHUFFLE_LABELS_STREAM: u64 = 7;

fn build_rows(p: &DatasetParams, base_dir: &Path) -> StageResult<Rows> {
    match &p.kind {
        DatasetKind::GaussianMixture => Ok(gaussian_mixture(p)),
        DatasetKind::Spirals { noise } => Ok(spirals(p, *noise)),
        DatasetKind::Teacher { teacher_widths } => Ok(teacher(p, teacher_widths)),
        DatasetKind::Digits { subset } => digits(p, *subset),
        DatasetKind::Idx { path, subset } => idx(p, base_dir, path, *subset),
    }
}

fn gaussian_mixture(p: &DatasetParams) -> Rows {
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
    Rows {
        x,
        labels,
        dim: d,
        classes: c,
        n_train: n_train(n, p.test_fraction),
    }
}

fn stream(seed: u64, s: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(s);
    rng
}

fn spirals(p: &DatasetParams, noise: f64) -> Rows {
    let (c, d, n) = (p.classes, p.dim, p.samples);
    let mut rng = stream(p.seed, 0);
    let mut noise_rng = stream(p.seed, 1);
    // The lift: Gram–Schmidt on a D×2 standard-normal matrix, column by column.
    let lift = (d > 2).then(|| {
        let mut lift_rng = stream(p.seed, 2);
        let g: Vec<f64> = (0..2 * d)
            .map(|_| StandardNormal.sample(&mut lift_rng))
            .collect();
        let (a, b) = g.split_at(d);
        let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        let q0: Vec<f64> = a.iter().map(|v| v / na).collect();
        let dot: f64 = b.iter().zip(&q0).map(|(u, v)| u * v).sum();
        let w: Vec<f64> = b.iter().zip(&q0).map(|(u, v)| u - dot * v).collect();
        let nw = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        let q1: Vec<f64> = w.iter().map(|v| v / nw).collect();
        (q0, q1)
    });
    let mut labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    labels.shuffle(&mut rng);
    let tau = std::f64::consts::TAU;
    let mut x = vec![0f64; n * d];
    for i in 0..n {
        let k = labels[i] as f64;
        let r: f64 = rng.random();
        let angle = tau * k / c as f64 + tau * r;
        let (a, b) = (r * angle.cos(), r * angle.sin());
        let row = &mut x[i * d..(i + 1) * d];
        match &lift {
            None => {
                row[0] = a;
                row[1] = b;
            }
            Some((q0, q1)) => {
                for j in 0..d {
                    row[j] = q0[j] * a + q1[j] * b;
                }
            }
        }
        for v in row.iter_mut() {
            let z: f64 = StandardNormal.sample(&mut noise_rng);
            *v += noise * z;
        }
    }
    Rows {
        x,
        labels,
        dim: d,
        classes: c,
        n_train: n_train(n, p.test_fraction),
    }
}

fn teacher(p: &DatasetParams, widths: &[usize]) -> Rows {
    let (c, d, n) = (p.classes, p.dim, p.samples);
    let mut sizes = vec![d];
    sizes.extend_from_slice(widths);
    sizes.push(c);
    let mut wrng = stream(p.seed, 1);
    let layers: Vec<Vec<f64>> = sizes
        .windows(2)
        .map(|io| {
            let scale = (io[0] as f64).sqrt();
            (0..io[0] * io[1])
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut wrng);
                    z / scale
                })
                .collect()
        })
        .collect();
    let mut rng = stream(p.seed, 0);
    let x: Vec<f64> = (0..n * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let labels = (0..n)
        .map(|i| {
            let mut h = x[i * d..(i + 1) * d].to_vec();
            for (l, w) in layers.iter().enumerate() {
                let fan_in = sizes[l];
                let mut out: Vec<f64> = (0..sizes[l + 1])
                    .map(|o| {
                        let row = &w[o * fan_in..(o + 1) * fan_in];
                        row.iter().zip(&h).fold(0.0, |s, (a, b)| s + a * b)
                    })
                    .collect();
                if l + 1 < layers.len() {
                    out.iter_mut().for_each(|v| *v = v.tanh());
                }
                h = out;
            }
            let mut best = 0;
            for (k, &v) in h.iter().enumerate() {
                if v > h[best] {
                    best = k;
                }
            }
            best as i64
        })
        .collect();
    Rows {
        x,
        labels,
        dim: d,
        classes: c,
        n_train: n_train(n, p.test_fraction),
    }
}

/// Row indices: a seeded permutation of 0..n, cut to `subset`.
fn subset_order(n: usize, subset: Option<usize>, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate(subset.unwrap_or(n).min(n));
    order
}

static DIGITS_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Pixels (row-major, one byte each) and labels.
type Table8 = (Vec<u8>, Vec<i64>);

/// The embedded digits, parsed once: (pixels, row-major 1797×64, labels).
fn digits_table() -> StageResult<&'static Table8> {
    static TABLE: OnceLock<Result<Table8, String>> = OnceLock::new();
    TABLE
        .get_or_init(parse_digits)
        .as_ref()
        .map_err(|e| StageError::Other(format!("embedded data/digits/digits.csv.gz: {e}")))
}

fn parse_digits() -> Result<Table8, String> {
    let mut text = String::new();
    GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    let mut pixels = Vec::with_capacity(DIGITS_ROWS * DIGITS_DIM);
    let mut labels = Vec::with_capacity(DIGITS_ROWS);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != DIGITS_DIM + 1 {
            return Err(format!(
                "line {}: {} columns, expected 65",
                i + 1,
                cells.len()
            ));
        }
        for (j, cell) in cells.iter().enumerate() {
            let v: f64 = cell
                .trim()
                .parse()
                .map_err(|_| format!("line {}: `{cell}` is not a number", i + 1))?;
            let max = if j < DIGITS_DIM { 16.0 } else { 9.0 };
            if !(v.fract() == 0.0 && (0.0..=max).contains(&v)) {
                return Err(format!("line {}: {v} out of range 0..={max}", i + 1));
            }
            if j < DIGITS_DIM {
                pixels.push(v as u8);
            } else {
                labels.push(v as i64);
            }
        }
    }
    if labels.len() != DIGITS_ROWS {
        return Err(format!("{} rows, expected {DIGITS_ROWS}", labels.len()));
    }
    Ok((pixels, labels))
}

fn digits(p: &DatasetParams, subset: Option<usize>) -> StageResult<Rows> {
    let (pixels, all_labels) = digits_table()?;
    let order = subset_order(DIGITS_ROWS, subset, p.seed);
    let d = DIGITS_DIM;
    let x = order
        .iter()
        .flat_map(|&i| pixels[i * d..(i + 1) * d].iter().map(|&v| v as f64))
        .collect();
    let labels: Vec<i64> = order.iter().map(|&i| all_labels[i]).collect();
    Ok(Rows {
        x,
        n_train: n_train(labels.len(), p.test_fraction),
        labels,
        dim: d,
        classes: DIGITS_CLASSES,
    })
}

const IDX_FIX: &str = "set dataset.path to the directory (relative to the config file) holding \
train-images-idx3-ubyte and train-labels-idx1-ubyte, the MNIST or Fashion-MNIST train files \
(optionally gzipped, with a .gz suffix)";

/// What the headers of a pair of IDX files say.
struct IdxProbe {
    images: PathBuf,
    labels: PathBuf,
    n: usize,
    rows: usize,
    cols: usize,
    classes: usize,
}

/// The file for one of the two IDX names: plain or `.gz`, hyphen or dot spelling.
fn idx_find(dir: &Path, names: [&str; 2]) -> Result<PathBuf, ParamError> {
    for name in names {
        for suffix in ["", ".gz"] {
            let p = dir.join(format!("{name}{suffix}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(ParamError::new(
        "dataset.path",
        format!(
            "{}: not found (nor {}.gz, nor {}[.gz]); {IDX_FIX}",
            dir.join(names[0]).display(),
            names[0],
            names[1]
        ),
    ))
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Parse an IDX header from the start of `bytes`: (dims, header length).
fn idx_header(bytes: &[u8], ndim: u8) -> Result<(Vec<usize>, usize), String> {
    let redownload = "the file is truncated or not an IDX file; download it again";
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        return Err("is gzip-compressed but not named .gz: add the .gz suffix or gunzip it".into());
    }
    if bytes.len() < 4 {
        return Err(format!(
            "too short for an IDX header ({} bytes); {redownload}",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x}{:02x}{:02x}{:02x}; {redownload}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX data type 0x{:02x}: only unsigned bytes (0x08), as in MNIST, are supported",
            bytes[2]
        ));
    }
    if bytes[3] != ndim {
        return Err(format!(
            "has {} dimensions, expected {ndim} (are the images and labels files swapped?)",
            bytes[3]
        ));
    }
    let len = 4 + 4 * ndim as usize;
    if bytes.len() < len {
        return Err(format!(
            "too short for an IDX header ({} bytes); {redownload}",
            bytes.len()
        ));
    }
    let dims = (0..ndim as usize)
        .map(|k| u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().unwrap()) as usize)
        .collect();
    Ok((dims, len))
}

/// Read a whole IDX file (gunzipping `.gz`), checking its header and length:
/// (dims, data bytes). Errors name the file.
fn idx_read(path: &Path, ndim: u8) -> Result<(Vec<usize>, Vec<u8>), (PathBuf, String)> {
    let fail = |m: String| (path.to_path_buf(), m);
    let raw = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let bytes = if is_gz(path) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                fail(format!(
                    "cannot decompress ({e}): the file is corrupt or truncated; download it again"
                ))
            })?;
        out
    } else {
        raw
    };
    let (dims, head) = idx_header(&bytes, ndim).map_err(fail)?;
    let want: usize = dims.iter().product();
    let have = bytes.len() - head;
    if have < want {
        return Err(fail(format!(
            "truncated: {have} data bytes, the header ({}) needs {want}; download it again",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("×")
        )));
    }
    if have > want {
        return Err(fail(format!(
            "malformed: {} bytes after the {want} the header describes; download it again",
            have - want
        )));
    }
    Ok((dims, bytes[head..].to_vec()))
}

/// Find and check the IDX pair under `base_dir/path`: the labels are read in
/// full; of the images only the header (and, uncompressed, the file size).
fn idx_probe(base_dir: &Path, path: &str) -> Result<IdxProbe, ParamError> {
    let field = || "dataset.path".to_string();
    let dir = base_dir.join(path);
    if !dir.is_dir() {
        return Err(ParamError::new(
            field(),
            format!(
                "{}: no such directory (dataset.path = {path:?}, relative to {}); {IDX_FIX}",
                dir.display(),
                base_dir.display()
            ),
        ));
    }
    let images = idx_find(&dir, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"])?;
    let labels = idx_find(&dir, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])?;
    let at = |p: &Path, m: String| ParamError::new(field(), format!("{}: {m}", p.display()));
    let (ldims, lab) = idx_read(&labels, 1).map_err(|(p, m)| at(&p, m))?;
    // Images: the header only.
    let mut head = Vec::with_capacity(16);
    let file =
        std::fs::File::open(&images).map_err(|e| at(&images, format!("cannot read: {e}")))?;
    let size = file.metadata().map(|m| m.len() as u128).ok();
    let reader: Box<dyn Read> = if is_gz(&images) {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    reader.take(16).read_to_end(&mut head).map_err(|e| {
        at(
            &images,
            format!("cannot read ({e}): the file is corrupt or truncated; download it again"),
        )
    })?;
    let (idims, hlen) = idx_header(&head, 3).map_err(|m| at(&images, m))?;
    let (n, rows, cols) = (idims[0], idims[1], idims[2]);
    if !is_gz(&images) {
        let want = hlen as u128 + n as u128 * rows as u128 * cols as u128;
        match size {
            Some(s) if s < want => {
                return Err(at(&images, format!("truncated: {s} bytes, the header ({n}×{rows}×{cols}) needs {want}; download it again")));
            }
            Some(s) if s > want => {
                return Err(at(&images, format!("malformed: {s} bytes, the header ({n}×{rows}×{cols}) describes {want}; download it again")));
            }
            _ => {}
        }
    }
    if ldims[0] != n {
        return Err(at(
            &labels,
            format!(
                "{} labels for {n} images in {}; the two files must come from the same set",
                ldims[0],
                images.display()
            ),
        ));
    }
    if rows as u64 * cols as u64 > MAX_DIM as u64 {
        return Err(at(
            &images,
            format!("images of {rows}×{cols} pixels: at most {MAX_DIM} features per row"),
        ));
    }
    if n == 0 || rows * cols == 0 {
        return Err(at(&images, "holds no pixels".into()));
    }
    let classes = lab.iter().copied().max().unwrap_or(0) as usize + 1;
    if classes < 2 {
        return Err(at(
            &labels,
            "every label is 0: need at least 2 classes".into(),
        ));
    }
    Ok(IdxProbe {
        images,
        labels,
        n,
        rows,
        cols,
        classes,
    })
}

fn idx(p: &DatasetParams, base_dir: &Path, path: &str, subset: Option<usize>) -> StageResult<Rows> {
    let pr = idx_probe(base_dir, path)?;
    let (_, pixels) = idx_read(&pr.images, 3).map_err(|(p, m)| fmt_err(p, m))?;
    let (_, lab) = idx_read(&pr.labels, 1).map_err(|(p, m)| fmt_err(p, m))?;
    let d = pr.rows * pr.cols;
    let order = subset_order(pr.n, subset, p.seed);
    let x = order
        .iter()
        .flat_map(|&i| pixels[i * d..(i + 1) * d].iter().map(|&v| v as f64 / 255.0))
        .collect();
    let labels: Vec<i64> = order.iter().map(|&i| lab[i] as i64).collect();
    Ok(Rows {
        x,
        n_train: n_train(labels.len(), p.test_fraction),
        labels,
        dim: d,
        classes: pr.classes,
    })
}

/// Standardize with the statistics of the first `n_train` rows (the train
/// split), and lay out train rows first.
/// Scale the features with train-split statistics (see [`FeatureScale`]).
fn finish(r: Rows, scale: FeatureScale, std_floor: f64) -> Dataset {
    let Rows {
        mut x,
        labels,
        dim: d,
        classes: c,
        n_train,
    } = r;
    let n = labels.len();
    match scale {
        FeatureScale::Standardize => {
            for j in 0..d {
                let mean = (0..n_train).map(|i| x[i * d + j]).sum::<f64>() / n_train as f64;
                let var = (0..n_train)
                    .map(|i| (x[i * d + j] - mean).powi(2))
                    .sum::<f64>()
                    / n_train as f64;
                let sd = if var > 1e-24 { var.sqrt() } else { 1.0 };
                let sd = if std_floor > 0.0 {
                    var.sqrt().max(std_floor)
                } else {
                    sd
                };
                for i in 0..n {
                    x[i * d + j] = (x[i * d + j] - mean) / sd;
                }
            }
        }
        FeatureScale::Unit => {
            let m = x[..n_train * d].iter().fold(0f64, |m, v| m.max(v.abs()));
            let m = if m > 0.0 { m } else { 1.0 };
            for v in &mut x {
                *v /= m;
            }
        }
        FeatureScale::Minmax => {
            for j in 0..d {
                let (lo, hi) = (0..n_train)
                    .map(|i| x[i * d + j])
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                let span = hi - lo;
                for i in 0..n {
                    x[i * d + j] = if span > 0.0 {
                        (x[i * d + j] - lo) / span
                    } else {
                        0.0
                    };
                }
            }
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
            scale: Default::default(),
            std_floor: 0.0,
            shuffle_labels: false,
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

    #[test]
    fn gaussian_mixture_serializes_as_before() {
        let json = serde_json::to_string(&params()).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"gaussian_mixture","classes":3,"dim":5,"samples":300,"separation":2.0,"test_fraction":0.2,"seed":7}"#
        );
        let back: DatasetParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, params());
    }

    #[test]
    fn defaults_per_kind_and_round_trip() {
        let parse = |t: &str| toml::from_str::<DatasetParams>(t);
        let g = parse(r#"kind = "gaussian_mixture""#).unwrap();
        assert_eq!(
            (g.classes, g.dim, g.samples, g.separation),
            (4, 8, 1000, 3.0)
        );
        assert_eq!((g.test_fraction, g.seed), (0.2, 0));
        let s = parse(r#"kind = "spirals""#).unwrap();
        assert_eq!((s.classes, s.dim, s.samples), (4, 2, 1000));
        assert_eq!(s.kind, DatasetKind::Spirals { noise: 0.05 });
        let t = parse("kind = \"teacher\"\nteacher_widths = 16").unwrap();
        assert_eq!(
            t.kind,
            DatasetKind::Teacher {
                teacher_widths: vec![16]
            }
        );
        let d = parse("kind = \"digits\"\nsubset = 300").unwrap();
        assert_eq!((d.classes, d.dim), (10, 64));
        let i = parse("kind = \"idx\"\npath = \"mnist\"").unwrap();
        assert_eq!((i.classes, i.dim, i.samples), (0, 0, 0));
        for p in [g, s, t, d, i] {
            let v = serde_json::to_value(&p).unwrap();
            let back: DatasetParams = serde_json::from_value(v).unwrap();
            assert_eq!(back, p);
            let text = toml::to_string(&p).unwrap();
            assert_eq!(parse(&text).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn fields_of_other_kinds_are_errors() {
        let err = |t: &str| toml::from_str::<DatasetParams>(t).unwrap_err().to_string();
        assert!(err("kind = \"spirals\"\nseparation = 1.0").contains("dataset.separation"));
        assert!(err("kind = \"gaussian_mixture\"\nnoise = 0.1").contains("dataset.noise"));
        assert!(err("kind = \"digits\"\nsamples = 10").contains("subset"));
        assert!(err("kind = \"idx\"").contains("dataset.path"));
        assert!(err("kind = \"spirals\"\nbogus = 1").contains("bogus"));
    }

    #[test]
    fn embedded_digits_parse() {
        let (pixels, labels) = digits_table().unwrap();
        assert_eq!(pixels.len(), DIGITS_ROWS * DIGITS_DIM);
        assert_eq!(labels.len(), DIGITS_ROWS);
        assert_eq!(&pixels[..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
        assert_eq!(labels[..3], [0, 1, 2]);
    }
}

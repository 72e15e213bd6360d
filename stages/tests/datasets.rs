//! Datasets: determinism, shapes, standardization, the embedded digits, user
//! IDX files (plain and gzipped) and their errors, spirals' geometry, and the
//! teacher's labels recomputed from the documented construction.

use flate2::write::GzEncoder;
use flate2::Compression;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use stages::dataset::{
    generate, load, load_raw, write, Dataset, DatasetKind, DatasetParams, DatasetShape,
};
use std::io::{Read, Write};
use std::path::Path;

fn parse(text: &str) -> DatasetParams {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn here() -> &'static Path {
    Path::new(".")
}

/// One dataset of each kind (IDX under `idx_base`/mnist).
fn every_kind(seed: u64) -> Vec<DatasetParams> {
    vec![
        parse(&format!("kind = \"gaussian_mixture\"\nclasses = 3\ndim = 5\nsamples = 300\nseed = {seed}")),
        parse(&format!("kind = \"spirals\"\nclasses = 3\nsamples = 300\nseed = {seed}")),
        parse(&format!("kind = \"spirals\"\nclasses = 3\ndim = 6\nsamples = 300\nnoise = 0.1\nseed = {seed}")),
        parse(&format!("kind = \"teacher\"\nclasses = 3\ndim = 5\nsamples = 300\nteacher_widths = [16, 8]\nseed = {seed}")),
        parse(&format!("kind = \"digits\"\nsubset = 400\nseed = {seed}")),
        parse(&format!("kind = \"idx\"\npath = \"mnist\"\nseed = {seed}")),
    ]
}

fn bytes_of(ds: &Dataset, dir: &Path, name: &str) -> Vec<u8> {
    let p = dir.join(name);
    write(ds, &p).unwrap();
    std::fs::read(p).unwrap()
}

fn train_stats(ds: &Dataset, j: usize) -> (f64, f64) {
    let (x, y) = ds.split(true);
    let n = y.len() as f64;
    let col: Vec<f64> = (0..y.len()).map(|i| x[i * ds.dim + j] as f64).collect();
    let m = col.iter().sum::<f64>() / n;
    let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / n;
    (m, v)
}

// ---------------------------------------------------------------- IDX files

const N_IMG: usize = 50;
const ROWS: usize = 4;
const COLS: usize = 4;

/// Image i: pixel 0 is always 0 (a constant feature), pixel 1 is i (so a row
/// can be traced back), the rest a fixed pattern; label i mod 10.
fn pixel(i: usize, k: usize) -> u8 {
    match k {
        0 => 0,
        1 => i as u8,
        _ => ((i * 37 + k * 11) % 256) as u8,
    }
}

fn idx_images() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [N_IMG, ROWS, COLS] {
        b.extend_from_slice(&(d as u32).to_be_bytes());
    }
    for i in 0..N_IMG {
        for k in 0..ROWS * COLS {
            b.push(pixel(i, k));
        }
    }
    b
}

fn idx_labels() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&(N_IMG as u32).to_be_bytes());
    b.extend((0..N_IMG).map(|i| (i % 10) as u8));
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A base dir with `mnist/` holding the IDX pair, plain or gzipped.
fn idx_dir(gzipped: bool) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    let (img, lab) = (idx_images(), idx_labels());
    if gzipped {
        std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz(&img)).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(&lab)).unwrap();
    } else {
        std::fs::write(dir.join("train-images-idx3-ubyte"), img).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), lab).unwrap();
    }
    base
}

// ---------------------------------------------------------------- tests

#[test]
fn every_kind_is_deterministic_and_seed_dependent() {
    let base = idx_dir(false);
    let out = tempfile::tempdir().unwrap();
    for (a, b) in every_kind(1).iter().zip(every_kind(2)) {
        let name = a.kind.name();
        let x = bytes_of(&load(a, base.path()).unwrap(), out.path(), "a.arrow");
        let y = bytes_of(&load(a, base.path()).unwrap(), out.path(), "b.arrow");
        assert!(x == y, "{name}: same params, different bytes");
        let z = bytes_of(&load(&b, base.path()).unwrap(), out.path(), "c.arrow");
        assert!(x != z, "{name}: another seed, same bytes");
        if a.kind.is_generated() {
            let g = bytes_of(&generate(a), out.path(), "g.arrow");
            assert!(g == x, "{name}: generate and load differ");
        }
    }
}

#[test]
fn shapes_match_and_train_split_is_standardized() {
    let base = idx_dir(true);
    for p in every_kind(3) {
        let name = p.kind.name();
        let s = p.shape(base.path()).unwrap();
        let ds = load(&p, base.path()).unwrap();
        let raw = load_raw(&p, base.path()).unwrap();
        let train = ds.is_train.iter().filter(|&&t| t).count();
        assert_eq!(
            s,
            DatasetShape {
                dim: ds.dim,
                classes: ds.classes,
                samples: ds.len(),
                train
            },
            "{name}"
        );
        assert_eq!(ds.features.len(), ds.len() * ds.dim);
        assert_eq!(train, s.samples - (s.samples as f64 * 0.2).round() as usize);
        assert!(
            ds.is_train[..train].iter().all(|&t| t),
            "{name}: train rows first"
        );
        assert!(ds
            .labels
            .iter()
            .all(|&l| l >= 0 && (l as usize) < s.classes));
        assert_eq!(raw.labels, ds.labels);
        assert_eq!(raw.is_train, ds.is_train);
        for j in 0..ds.dim {
            let (rm, rv) = train_stats(&raw, j);
            let (m, v) = train_stats(&ds, j);
            if rv < 1e-12 {
                // Constant on the train split: centred, scale 1.
                assert!(m.abs() < 1e-6 && v < 1e-12, "{name} feature {j}: {m} {v}");
            } else {
                assert!(m.abs() < 1e-5, "{name} feature {j}: mean {m}");
                assert!((v - 1.0).abs() < 1e-4, "{name} feature {j}: var {v}");
                // Standardized = (raw − train mean) / train sd, test rows included.
                for i in 0..ds.len() {
                    let want = (raw.features[i * ds.dim + j] as f64 - rm) / rv.sqrt();
                    let got = ds.features[i * ds.dim + j] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{name}");
                }
            }
        }
    }
}

#[test]
fn balanced_classes_for_mixture_and_spirals() {
    for p in &every_kind(4)[..3] {
        let ds = generate(p);
        for k in 0..3 {
            assert_eq!(
                ds.labels.iter().filter(|&&l| l == k).count(),
                100,
                "{:?}",
                p.kind
            );
        }
    }
}

/// The gaussian mixture as it was before the other kinds (code version 1),
/// frozen here: the bytes of existing results must not change.
fn gaussian_mixture_v1(
    c: usize,
    d: usize,
    n: usize,
    sep: f64,
    tf: f64,
    seed: u64,
) -> (Vec<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means = vec![0f64; c * d];
    for k in 0..c {
        let z: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for j in 0..d {
            means[k * d + j] = sep * z[j] / norm;
        }
    }
    let mut labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    labels.shuffle(&mut rng);
    let mut x = vec![0f64; n * d];
    for i in 0..n {
        for j in 0..d {
            let e: f64 = StandardNormal.sample(&mut rng);
            x[i * d + j] = means[labels[i] as usize * d + j] + e;
        }
    }
    let n_train = n - ((n as f64) * tf).round() as usize;
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
    (x.iter().map(|&v| v as f32).collect(), labels)
}

#[test]
fn gaussian_mixture_unchanged() {
    for (c, d, n, sep, tf, seed) in [(4, 8, 800, 2.5, 0.25, 0), (3, 5, 300, 2.0, 0.2, 7)] {
        let p = DatasetParams {
            kind: DatasetKind::GaussianMixture,
            classes: c,
            dim: d,
            samples: n,
            separation: sep,
            test_fraction: tf,
            seed,
            scale: Default::default(),
            std_floor: 0.0,
            shuffle_labels: false,
        };
        let ds = generate(&p);
        let (x, y) = gaussian_mixture_v1(c, d, n, sep, tf, seed);
        assert!(ds.features == x && ds.labels == y);
    }
    // The serialized form (part of every stage key) is unchanged too.
    let p = parse("kind = \"gaussian_mixture\"");
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"kind":"gaussian_mixture","classes":4,"dim":8,"samples":1000,"separation":3.0,"test_fraction":0.2,"seed":0}"#
    );
}

const UCI_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

/// The shipped CSV, read independently: rows of 64 pixels + label.
fn digits_csv() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits/digits.csv.gz");
    let gzbytes = std::fs::read(&path).unwrap();
    assert!(gzbytes.len() < 200 * 1024);
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gzbytes[..])
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| l.split(',').map(|v| v.parse::<u8>().unwrap()).collect())
        .collect()
}

#[test]
fn digits_full_and_subsets() {
    let p = parse("kind = \"digits\"");
    let s = p.shape(here()).unwrap();
    assert_eq!(
        s,
        DatasetShape {
            dim: 64,
            classes: 10,
            samples: 1797,
            train: 1438
        }
    );
    let raw = load_raw(&p, here()).unwrap();
    assert_eq!((raw.len(), raw.dim, raw.classes), (1797, 64, 10));
    for (k, &want) in UCI_COUNTS.iter().enumerate() {
        assert_eq!(
            raw.labels.iter().filter(|&&l| l == k as i64).count(),
            want,
            "digit {k}"
        );
    }
    // The rows are the CSV's rows, permuted.
    let mut ours: Vec<Vec<u8>> = (0..raw.len())
        .map(|i| {
            let mut r: Vec<u8> = raw.features[i * 64..(i + 1) * 64]
                .iter()
                .map(|&v| v as u8)
                .collect();
            r.push(raw.labels[i] as u8);
            r
        })
        .collect();
    let mut csv = digits_csv();
    assert_eq!(csv.len(), 1797);
    assert!(csv.iter().all(|r| r.len() == 65));
    ours.sort();
    csv.sort();
    assert!(ours == csv);
    assert!(raw
        .features
        .iter()
        .all(|&v| v.fract() == 0.0 && (0.0..=16.0).contains(&v)));

    for (m, train) in [(100, 80), (1000, 800), (1797, 1438)] {
        let p = parse(&format!("kind = \"digits\"\nsubset = {m}\nseed = 5"));
        let ds = load(&p, here()).unwrap();
        assert_eq!(ds.len(), m);
        assert_eq!(p.shape(here()).unwrap().samples, m);
        assert_eq!(ds.is_train.iter().filter(|&&t| t).count(), train);
        assert_eq!(ds.classes, 10);
    }
    // A smaller subset is a prefix of a larger one with the same seed.
    let a = load_raw(&parse("kind = \"digits\"\nsubset = 50\nseed = 5"), here()).unwrap();
    let b = load_raw(&parse("kind = \"digits\"\nsubset = 500\nseed = 5"), here()).unwrap();
    assert_eq!(a.labels[..], b.labels[..50]);

    // dim / classes are implied; a disagreeing value names the field.
    assert!(parse("kind = \"digits\"\ndim = 64\nclasses = 10")
        .shape(here())
        .is_ok());
    let e = parse("kind = \"digits\"\ndim = 8")
        .shape(here())
        .unwrap_err();
    assert_eq!(e.field, "dataset.dim");
    let e = parse("kind = \"digits\"\nclasses = 4")
        .shape(here())
        .unwrap_err();
    assert_eq!(e.field, "dataset.classes");
    for bad in [0, 1, 1798] {
        let e = parse(&format!("kind = \"digits\"\nsubset = {bad}"))
            .shape(here())
            .unwrap_err();
        assert_eq!(e.field, "dataset.subset");
        assert!(e.msg.contains("1797"), "{}", e.msg);
    }
}

#[test]
fn idx_plain_and_gz_load_the_pixels() {
    let mut seen = Vec::new();
    for gzipped in [false, true] {
        let base = idx_dir(gzipped);
        let p = parse("kind = \"idx\"\npath = \"mnist\"\ntest_fraction = 0.2\nseed = 9");
        let s = p.shape(base.path()).unwrap();
        assert_eq!(
            s,
            DatasetShape {
                dim: 16,
                classes: 10,
                samples: 50,
                train: 40
            }
        );
        let raw = load_raw(&p, base.path()).unwrap();
        assert_eq!((raw.len(), raw.dim, raw.classes), (50, 16, 10));
        let mut ids: Vec<usize> = Vec::new();
        for r in 0..raw.len() {
            let row = &raw.features[r * 16..(r + 1) * 16];
            let i = (row[1] * 255.0).round() as usize;
            ids.push(i);
            assert_eq!(raw.labels[r], (i % 10) as i64);
            for (k, &v) in row.iter().enumerate() {
                assert_eq!(
                    v,
                    (pixel(i, k) as f64 / 255.0) as f32,
                    "image {i} pixel {k}"
                );
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "every image once");
        // An absolute path works whatever the base.
        let abs = base.path().join("mnist");
        let q = parse(&format!(
            "kind = \"idx\"\npath = {:?}\nseed = 9",
            abs.to_str().unwrap()
        ));
        assert_eq!(load_raw(&q, Path::new("/")).unwrap().features, raw.features);
        assert_eq!(q.input_files(here()).unwrap().len(), 2);
        // Subsets.
        let sub = parse("kind = \"idx\"\npath = \"mnist\"\nsubset = 20\nseed = 9");
        let ds = load(&sub, base.path()).unwrap();
        assert_eq!(ds.len(), 20);
        assert_eq!(ds.is_train.iter().filter(|&&t| t).count(), 16);
        assert_eq!(ds.classes, 10);
        // dim / classes agreeing with the files are fine; others name the field.
        let ok = parse("kind = \"idx\"\npath = \"mnist\"\ndim = 16\nclasses = 10");
        assert!(ok.shape(base.path()).is_ok());
        let e = parse("kind = \"idx\"\npath = \"mnist\"\ndim = 784")
            .shape(base.path())
            .unwrap_err();
        assert_eq!(e.field, "dataset.dim");
        let e = parse("kind = \"idx\"\npath = \"mnist\"\nsubset = 51")
            .shape(base.path())
            .unwrap_err();
        assert_eq!(e.field, "dataset.subset");
        seen.push(load(&p, base.path()).unwrap().features);
    }
    assert!(
        seen[0] == seen[1],
        "plain and gzipped files give the same data"
    );
}

#[test]
fn idx_errors_name_the_file_and_the_fix() {
    let p = parse("kind = \"idx\"\npath = \"mnist\"");
    // Missing directory.
    let empty = tempfile::tempdir().unwrap();
    let stages::error::ParamError { field, msg } = p.shape(empty.path()).unwrap_err();
    assert_eq!(field, "dataset.path");
    assert!(
        msg.contains("mnist") && msg.contains("no such directory"),
        "{msg}"
    );
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    let e = load(&p, empty.path()).unwrap_err().to_string();
    assert!(e.contains("dataset.path") && e.contains("mnist"), "{e}");

    // Missing labels file.
    let base = idx_dir(false);
    let dir = base.path().join("mnist");
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
    let stages::error::ParamError { field, msg } = p.shape(base.path()).unwrap_err();
    assert_eq!(field, "dataset.path");
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.contains("not found"),
        "{msg}"
    );

    // Truncated images, plain: found by shape() from the size.
    let base = idx_dir(false);
    let images = base.path().join("mnist/train-images-idx3-ubyte");
    let full = idx_images();
    std::fs::write(&images, &full[..full.len() - 7]).unwrap();
    let stages::error::ParamError { field, msg } = p.shape(base.path()).unwrap_err();
    assert_eq!(field, "dataset.path");
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );
    // Header cut short.
    std::fs::write(&images, &full[..10]).unwrap();
    let msg = p.shape(base.path()).unwrap_err().msg;
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("too short"),
        "{msg}"
    );
    // Not IDX at all.
    std::fs::write(&images, b"hello, world, this is text").unwrap();
    let msg = p.shape(base.path()).unwrap_err().msg;
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("magic"),
        "{msg}"
    );
    // Gzipped under the plain name.
    std::fs::write(&images, gz(&full)).unwrap();
    let msg = p.shape(base.path()).unwrap_err().msg;
    assert!(msg.contains("gzip"), "{msg}");
    // Labels count disagreeing with the images.
    std::fs::write(&images, &full).unwrap();
    let mut lab = idx_labels();
    lab[7] = 49;
    lab.pop();
    std::fs::write(base.path().join("mnist/train-labels-idx1-ubyte"), &lab).unwrap();
    let msg = p.shape(base.path()).unwrap_err().msg;
    assert!(
        msg.contains("train-labels-idx1-ubyte") && msg.contains("49 labels"),
        "{msg}"
    );

    // Truncated images, gzipped: the data is cut (shape() reads only the
    // header of a .gz), so load() finds it and names the file.
    let base = idx_dir(true);
    let images = base.path().join("mnist/train-images-idx3-ubyte.gz");
    std::fs::write(&images, gz(&full[..full.len() - 5])).unwrap();
    assert!(p.shape(base.path()).is_ok());
    let e = load(&p, base.path()).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );
    // The gzip stream itself cut short.
    let z = gz(&full);
    std::fs::write(&images, &z[..z.len() / 2]).unwrap();
    let e = load(&p, base.path()).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("download it again"),
        "{e}"
    );
}

#[test]
fn spirals_lie_on_their_arms_without_noise() {
    let tau = std::f64::consts::TAU;
    let p2 = parse("kind = \"spirals\"\nclasses = 3\nsamples = 600\nnoise = 0.0\nseed = 11");
    let raw = load_raw(&p2, here()).unwrap();
    assert_eq!(raw.dim, 2);
    for i in 0..raw.len() {
        let (a, b) = (raw.features[2 * i] as f64, raw.features[2 * i + 1] as f64);
        let r = (a * a + b * b).sqrt();
        assert!(r < 1.0);
        if r < 1e-3 {
            continue;
        }
        let want = tau * raw.labels[i] as f64 / 3.0 + tau * r;
        let diff = (b.atan2(a) - want).rem_euclid(tau);
        let diff = diff.min(tau - diff);
        assert!(diff < 1e-4 / r, "row {i}: r {r}, off by {diff} rad");
    }
    // Lifted to 7 dims: the same clean points in a random plane, so every
    // inner product is preserved.
    let p7 =
        parse("kind = \"spirals\"\nclasses = 3\ndim = 7\nsamples = 600\nnoise = 0.0\nseed = 11");
    let lifted = load_raw(&p7, here()).unwrap();
    assert_eq!(lifted.dim, 7);
    assert_eq!(lifted.labels, raw.labels);
    let dot = |ds: &Dataset, i: usize, j: usize| -> f64 {
        let d = ds.dim;
        (0..d)
            .map(|k| ds.features[i * d + k] as f64 * ds.features[j * d + k] as f64)
            .sum()
    };
    for i in (0..600).step_by(7) {
        for j in (0..600).step_by(13) {
            assert!((dot(&raw, i, j) - dot(&lifted, i, j)).abs() < 1e-5);
        }
    }
    // Noise moves the points but not their labels or clean positions' order.
    let noisy = load_raw(
        &parse("kind = \"spirals\"\nclasses = 3\nsamples = 600\nnoise = 0.05\nseed = 11"),
        here(),
    )
    .unwrap();
    assert_eq!(noisy.labels, raw.labels);
    let moved: f64 = (0..1200)
        .map(|k| (noisy.features[k] - raw.features[k]).powi(2) as f64)
        .sum::<f64>()
        / 1200.0;
    assert!(
        (moved.sqrt() - 0.05).abs() < 0.01,
        "noise sd {}",
        moved.sqrt()
    );
    let e = parse("kind = \"spirals\"\ndim = 1")
        .shape(here())
        .unwrap_err();
    assert_eq!(e.field, "dataset.dim");
    let e = parse("kind = \"spirals\"\nnoise = -1.0")
        .shape(here())
        .unwrap_err();
    assert_eq!(e.field, "dataset.noise");
}

/// The teacher, rebuilt from its documentation: x ~ N(0, I) from ChaCha8(seed)
/// stream 0; weights from stream 1, W [out, in] row-major, z / √in; no
/// biases; tanh on hidden layers; argmax (first on ties).
fn teacher_labels(
    dim: usize,
    hidden: &[usize],
    classes: usize,
    n: usize,
    seed: u64,
) -> (Vec<f64>, Vec<i64>) {
    let mut sizes = vec![dim];
    sizes.extend_from_slice(hidden);
    sizes.push(classes);
    let mut wr = ChaCha8Rng::seed_from_u64(seed);
    wr.set_stream(1);
    let mut ws = Vec::new();
    for l in 0..sizes.len() - 1 {
        let w: Vec<f64> = (0..sizes[l] * sizes[l + 1])
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut wr);
                z / (sizes[l] as f64).sqrt()
            })
            .collect();
        ws.push(w);
    }
    let mut xr = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n * dim)
        .map(|_| StandardNormal.sample(&mut xr))
        .collect();
    let mut labels = Vec::new();
    for i in 0..n {
        let mut h = x[i * dim..(i + 1) * dim].to_vec();
        for (l, w) in ws.iter().enumerate() {
            let mut out = vec![0.0; sizes[l + 1]];
            for (o, v) in out.iter_mut().enumerate() {
                let mut s = 0.0;
                for (k, hk) in h.iter().enumerate() {
                    s += w[o * sizes[l] + k] * hk;
                }
                *v = if l + 1 < ws.len() { s.tanh() } else { s };
            }
            h = out;
        }
        let mut best = 0;
        for (k, &v) in h.iter().enumerate().skip(1) {
            if v > h[best] {
                best = k;
            }
        }
        labels.push(best as i64);
    }
    (x, labels)
}

#[test]
fn teacher_labels_are_the_teachers_argmax() {
    for (hidden, spec) in [(vec![16, 8], "[16, 8]"), (vec![32], "32"), (vec![], "[]")] {
        let p = parse(&format!("kind = \"teacher\"\nclasses = 4\ndim = 6\nsamples = 800\nteacher_widths = {spec}\nseed = 13"));
        let raw = load_raw(&p, here()).unwrap();
        let (x, labels) = teacher_labels(6, &hidden, 4, 800, 13);
        assert_eq!(raw.labels, labels, "teacher_widths = {spec}");
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        assert!(raw.features == xf);
        for k in 0..4 {
            let count = labels.iter().filter(|&&l| l == k).count();
            assert!(count > 40, "{spec}: class {k} has {count} rows");
        }
    }
    let e = parse("kind = \"teacher\"\nteacher_widths = [8, 0]")
        .shape(here())
        .unwrap_err();
    assert_eq!(e.field, "dataset.teacher_widths");
}

/// `scale`: each option against its definition, recomputed from the raw
/// digits (`load_raw`) on the train split; `std_floor` bounds |z|; a default
/// config serializes exactly as before the option existed (its key is
/// unchanged); and misuse names the field and the fix.
#[test]
fn feature_scales_follow_their_definitions() {
    let raw = load_raw(&parse("kind = \"digits\""), here()).unwrap();
    let (d, n_train) = (raw.dim, raw.is_train.iter().filter(|&&t| t).count());
    let rawv = |i: usize, j: usize| f64::from(raw.features[i * d + j]);
    let col = |j: usize| (0..n_train).map(move |i| rawv(i, j));

    // unit: one global scale, the train split's largest |x| (16 for digits).
    let unit = load(&parse("kind = \"digits\"\nscale = \"unit\""), here()).unwrap();
    let m = (0..d).flat_map(col).fold(0f64, |a, v| a.max(v.abs()));
    assert_eq!(m, 16.0);
    for (i, v) in unit.features.iter().enumerate() {
        assert!((f64::from(*v) - f64::from(raw.features[i]) / m).abs() < 1e-6);
    }

    // minmax: per feature to [0, 1] on the train split; constant → 0.
    let mm = load(&parse("kind = \"digits\"\nscale = \"minmax\""), here()).unwrap();
    for j in 0..d {
        let (lo, hi) = col(j).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        for i in 0..raw.labels.len() {
            let want = if hi > lo {
                (rawv(i, j) - lo) / (hi - lo)
            } else {
                0.0
            };
            assert!(
                (f64::from(mm.features[i * d + j]) - want).abs() < 1e-6,
                "({i}, {j})"
            );
        }
    }

    // standardize: the near-constant pixels give z up to ~42; a floor of 1
    // (count units) bounds |z| by (16 − 0)/1.
    let z_max = |ds: &Dataset| ds.features.iter().fold(0f32, |a, v| a.max(v.abs()));
    let plain = load(&parse("kind = \"digits\""), here()).unwrap();
    assert!(z_max(&plain) > 30.0, "max |z| {}", z_max(&plain));
    let floored = load(&parse("kind = \"digits\"\nstd_floor = 1.0"), here()).unwrap();
    assert!(
        z_max(&floored) <= 16.0 + 1e-4,
        "max |z| {}",
        z_max(&floored)
    );
    // The floor only touches features whose sd is below it.
    for j in 0..d {
        let (mean, var) = train_stats(&raw, j);
        let sd_f = var.sqrt().max(1.0);
        for i in 0..n_train {
            let want = (rawv(i, j) - mean) / sd_f;
            assert!((f64::from(floored.features[i * d + j]) - want).abs() < 1e-4);
        }
    }

    // The default serializes without the new fields: existing keys stand.
    let json = serde_json::to_string(&parse("kind = \"digits\"")).unwrap();
    assert!(
        !json.contains("scale") && !json.contains("std_floor"),
        "{json}"
    );
    let json = serde_json::to_string(&parse("kind = \"digits\"\nscale = \"unit\"")).unwrap();
    assert!(json.contains("\"scale\":\"unit\""), "{json}");

    // Misuse.
    let err = parse("kind = \"digits\"\nscale = \"unit\"\nstd_floor = 1.0")
        .shape(here())
        .unwrap_err();
    assert_eq!(err.field, "dataset.std_floor");
    assert!(
        err.msg.contains("standardize") && err.msg.contains("remove it"),
        "{}",
        err.msg
    );
    let err = parse("kind = \"digits\"\nstd_floor = -1.0")
        .shape(here())
        .unwrap_err();
    assert_eq!(err.field, "dataset.std_floor");
    assert!(toml::from_str::<DatasetParams>("kind = \"digits\"\nscale = \"zscore\"").is_err());
}

/// `shuffle_labels`: the train split's labels are a seeded permutation of
/// the originals (the same class counts, most rows changed), while the
/// features, the split and the test labels stay; the default keeps the
/// config's keys.
#[test]
fn shuffle_labels_permutes_the_train_labels_only() {
    let base = "kind = \"gaussian_mixture\"\nclasses = 4\nsamples = 400\nseed = 3";
    let a = load(&parse(base), here()).unwrap();
    let b = load(&parse(&format!("{base}\nshuffle_labels = true")), here()).unwrap();
    let again = load(&parse(&format!("{base}\nshuffle_labels = true")), here()).unwrap();
    assert_eq!(a.features, b.features);
    assert_eq!(a.is_train, b.is_train);
    assert_eq!(b.labels, again.labels, "deterministic in the seed");
    let n_train = a.is_train.iter().filter(|t| **t).count();
    assert_eq!(a.labels[n_train..], b.labels[n_train..], "test labels kept");
    let count = |l: &[i64]| {
        let mut c = [0usize; 4];
        for &y in l {
            c[y as usize] += 1;
        }
        c
    };
    assert_eq!(count(&a.labels[..n_train]), count(&b.labels[..n_train]));
    let changed = (0..n_train).filter(|&i| a.labels[i] != b.labels[i]).count();
    // A random permutation of 4 balanced classes changes about 3/4 of them.
    assert!(
        changed as f64 > 0.6 * n_train as f64,
        "{changed} of {n_train} changed"
    );
    // Another seed, another permutation.
    let c = load(
        &parse("kind = \"gaussian_mixture\"\nclasses = 4\nsamples = 400\nseed = 4\nshuffle_labels = true"),
        here(),
    )
    .unwrap();
    assert_ne!(b.labels, c.labels);
    // The default serializes without the key.
    let json = serde_json::to_string(&parse(base)).unwrap();
    assert!(!json.contains("shuffle_labels"), "{json}");
    let json = serde_json::to_string(&parse(&format!("{base}\nshuffle_labels = true"))).unwrap();
    assert!(json.contains("\"shuffle_labels\":true"), "{json}");
}

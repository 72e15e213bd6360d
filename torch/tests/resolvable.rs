//! The rounding level of the Hessian operator, and the `resolvable` flag it
//! decides: an eigenvalue well inside what f64 resolves is resolvable, one
//! at a checkpoint whose curvature has underflowed is not, and f32's level
//! sits where f32's precision says it should, against f64's.

use stages::dataset::{generate, DatasetKind, DatasetParams};
use stages::lanczos::{lanczos, LanczosOptions, Which};
use stages::mlp::{Activation, Arch, Init};
use stages_torch::hessian::{analysis_set, rounding_level, Hvp};
use tch::{Device, Kind};

fn setup() -> (Arch, Vec<f64>, stages::dataset::Dataset) {
    let ds = generate(&DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes: 3,
        dim: 4,
        samples: 160,
        separation: 3.0,
        test_fraction: 0.25,
        seed: 5,
        scale: Default::default(),
        std_floor: 0.0,
        shuffle_labels: false,
    });
    let arch = Arch {
        widths: vec![4, 12, 3],
        activation: Activation::Tanh,
    };
    let theta = arch.init(Init::TorchDefault, 2);
    (arch, theta, ds)
}

/// (top eigenvalue, rounding level) of H at θ in `kind`.
fn top_and_level(
    arch: &Arch,
    theta: &[f64],
    ds: &stages::dataset::Dataset,
    kind: Kind,
) -> (f64, f64) {
    let (x, y) = analysis_set(ds, None, kind, Device::Cpu).unwrap();
    let n = arch.num_params();
    let mut op = Hvp::new(arch, theta, &x, &y, kind, Device::Cpu, None);
    let mut apply = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| op.apply_block(xs, ys);
    let level = rounding_level(n, 7, &mut apply);
    let r = lanczos(
        n,
        &mut apply,
        &LanczosOptions {
            k: 3,
            which: Which::Largest,
            tol: 1e-8,
            abs_tol: level,
            max_iter: n,
            seed: 1,
            block: 1,
            f32_basis: false,
        },
        None,
    );
    (r.pairs[0].value, level)
}

#[test]
fn the_rounding_level_separates_resolved_curvature_from_noise() {
    let (arch, theta, ds) = setup();
    let (l64, lev64) = top_and_level(&arch, &theta, &ds, Kind::Double);
    let (l32, lev32) = top_and_level(&arch, &theta, &ds, Kind::Float);
    // At initialization the curvature is O(0.1–1): resolved by far in f64,
    // where the level is a few hundred ulps of λ₁ at most, and resolved in
    // f32 too, with a level between f32's ulp and 1e-3 of λ₁.
    assert!(
        lev64 > 0.0 && lev64 < 1e-12 * l64,
        "f64: level {lev64:e}, λ₁ {l64}"
    );
    assert!(
        lev32 > 1e-8 * l32 && lev32 < 1e-3 * l32,
        "f32: level {lev32:e}, λ₁ {l32}"
    );
    assert!(lev32 > 1e5 * lev64, "f32 {lev32:e} vs f64 {lev64:e}");
    assert!(
        (l32 - l64).abs() < 10.0 * lev32.max(1e-6 * l64),
        "{l32} vs {l64}"
    );

    // An operator whose small curvature is computed as the difference of
    // two large ones, (B + C)v − Cv with ‖C‖ = 1e10 and B = 1e-6·I, as the
    // softmax's p − onehot was at saturation: in f64 the intermediate's
    // rounding (~1e-6) swamps B, and λ = 1e-6 must come out unresolvable,
    // while the same B computed directly is resolved. (A B so small that
    // B + C rounds to C gives exact zeros: λ = 0, unresolvable as well.)
    let n = 50;
    let c: Vec<f64> = (0..n).map(|i| 1e10 * (1.0 + i as f64 / n as f64)).collect();
    let mut cancelling = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            for i in 0..n {
                let big = (1e-6 + c[i]) * x[i];
                y[i] = big - c[i] * x[i];
            }
        }
    };
    let lev = rounding_level(n, 3, &mut cancelling);
    assert!(
        lev > 1e-6,
        "the cancellation's noise was not seen: level {lev:e}"
    );
    let mut direct = |xs: &[Vec<f64>], ys: &mut [Vec<f64>]| {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            for i in 0..n {
                y[i] = 1e-6 * x[i];
            }
        }
    };
    let lev = rounding_level(n, 3, &mut direct);
    assert!(lev < 1e-18, "a cleanly computed 1e-6·I: level {lev:e}");
}

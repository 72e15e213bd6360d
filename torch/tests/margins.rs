//! train.arrow's margin columns: log(p_c / max_{j≠c} p_j) per train row,
//! summarized as min, 1st percentile and median, against the same margins
//! computed another way (from log-softmax probabilities, row by row).

use stages::dataset::{generate, DatasetKind, DatasetParams};
use stages::mlp::{Activation, Arch, Init};
use stages_torch::mlp::ArchExt;
use stages_torch::train::margin_summary;
use tch::{Device, Kind, Tensor};

#[test]
fn margins_match_log_probability_ratios() {
    let ds = generate(&DatasetParams {
        kind: DatasetKind::GaussianMixture,
        classes: 4,
        dim: 5,
        samples: 300,
        separation: 3.0,
        test_fraction: 0.2,
        seed: 4,
        scale: Default::default(),
        std_floor: 0.0,
        shuffle_labels: false,
    });
    let (x, y) = ds.split(true);
    let n = y.len();
    let xt = Tensor::from_slice(&x)
        .view([n as i64, 5])
        .to_kind(Kind::Double);
    let yt = Tensor::from_slice(&y);
    let arch = Arch {
        widths: vec![5, 16, 4],
        activation: Activation::Tanh,
    };
    let theta = Tensor::from_slice(&arch.init(Init::TorchDefault, 3)) * 4.0;
    let got = margin_summary(&arch, &theta, &xt, &yt);
    // Another way: log p from log_softmax, then log p_c − max_{j≠c} log p_j.
    let lp = arch
        .forward(&theta, &xt)
        .log_softmax(1, Kind::Double)
        .to_device(Device::Cpu);
    let lp: Vec<Vec<f64>> = (0..n as i64)
        .map(|i| Vec::<f64>::try_from(lp.get(i)).unwrap())
        .collect();
    let mut m: Vec<f64> = lp
        .iter()
        .zip(&y)
        .map(|(row, &c)| {
            let c = c as usize;
            let best = (0..row.len())
                .filter(|&j| j != c)
                .map(|j| row[j])
                .fold(f64::NEG_INFINITY, f64::max);
            row[c] - best
        })
        .collect();
    m.sort_by(|a, b| a.total_cmp(b));
    let want = [m[0], m[(n - 1) / 100], m[(n - 1) / 2]];
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
    // Some rows are misclassified at this θ: the minimum is negative.
    assert!(got[0] < 0.0 && got[2] > got[0], "{got:?}");
}

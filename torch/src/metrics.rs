//! The metrics stage's one heavy product, the Gram matrix of every
//! checkpoint's eigenvectors, on libtorch's BLAS; the rest is `stages::metrics`.

use nalgebra::DMatrix;
use tch::{Device, Kind, Tensor};

/// G = VᵀV in f64 over the upper block triangle, by panels of ≥ 256 rows
/// against every column from the panel's first on: close to half the flops
/// of the full product, in GEMMs big enough to run near the BLAS's peak.
pub fn gram(cols: &[&Vec<f64>], offs: &[usize]) -> DMatrix<f64> {
    let m = cols.len();
    let p = cols[0].len();
    let mut flat = Vec::with_capacity(m * p);
    for c in cols {
        flat.extend_from_slice(c);
    }
    let v = Tensor::from_slice(&flat).view([m as i64, p as i64]);
    drop(flat);
    let mut g = DMatrix::<f64>::zeros(m, m);
    // Panel boundaries: block starts, at least 256 rows apart.
    let mut panels = vec![0usize];
    for &o in offs.iter().skip(1) {
        if o - panels.last().unwrap() >= 256 {
            panels.push(o);
        }
    }
    for (bi, &start) in panels.iter().enumerate() {
        let end = panels.get(bi + 1).copied().unwrap_or(m);
        let rows = v.narrow(0, start as i64, (end - start) as i64);
        let rest = v.narrow(0, start as i64, (m - start) as i64);
        let block = rows
            .matmul(&rest.tr())
            .to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .contiguous();
        let vals = Vec::<f64>::try_from(&block.view([-1])).expect("f64 block");
        let w = m - start;
        for i in 0..end - start {
            for j in 0..w {
                g[(start + i, start + j)] = vals[i * w + j];
            }
        }
    }
    g
}

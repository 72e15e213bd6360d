//! The metrics stage's one heavy product, the Gram matrix of every
//! checkpoint's eigenvectors, on libtorch's BLAS; the rest is `stages::metrics`.

use nalgebra::DMatrix;
use tch::{Device, Kind, Tensor};

/// Entries of θ per slice of the inner dimension (see [`gram`]).
const SLICE: usize = 8192;

/// G = VᵀV in f64 over the upper block triangle, by panels of ≥ 256 rows
/// against every column from the panel's first on: close to half the flops
/// of the full product, in GEMMs big enough to run near the BLAS's peak.
///
/// The result does not depend on the thread count (a run with `-j 2` must
/// store the same bytes as one with `-j 1`, and a Slurm job with 4 cores as a
/// laptop with 2): a multithreaded BLAS splits the long inner dimension (P)
/// between its threads and so sums in an order that depends on their number.
/// So P is cut into fixed slices of [`SLICE`] entries, each slice's product
/// runs on one thread (the slices are spread over the threads), and the
/// partial products are added in slice order.
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
    let slices: Vec<(i64, i64)> = (0..p)
        .step_by(SLICE)
        .map(|s| (s as i64, (SLICE.min(p - s)) as i64))
        .collect();
    let threads = tch::get_num_threads().max(1) as usize;
    // One BLAS thread per product; our threads take the slices.
    tch::set_num_threads(1);
    for (bi, &start) in panels.iter().enumerate() {
        let end = panels.get(bi + 1).copied().unwrap_or(m);
        let rows = v.narrow(0, start as i64, (end - start) as i64);
        let rest = v.narrow(0, start as i64, (m - start) as i64);
        let parts: Vec<Vec<(usize, Tensor)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.min(slices.len()))
                .map(|t| {
                    let (rows, rest) = (rows.shallow_clone(), rest.shallow_clone());
                    let slices = &slices;
                    scope.spawn(move || {
                        (t..slices.len())
                            .step_by(threads)
                            .map(|i| {
                                let (s, len) = slices[i];
                                let a = rows.narrow(1, s, len);
                                let b = rest.narrow(1, s, len);
                                (i, a.matmul(&b.tr()))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a Gram slice thread panicked"))
                .collect()
        });
        let mut by_slice: Vec<Option<Tensor>> = (0..slices.len()).map(|_| None).collect();
        for (i, t) in parts.into_iter().flatten() {
            by_slice[i] = Some(t);
        }
        let mut block = by_slice[0].take().expect("slice 0");
        for t in by_slice.into_iter().skip(1) {
            block += t.expect("every slice");
        }
        let block = block
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
    tch::set_num_threads(threads as i32);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_is_exact_and_independent_of_the_thread_count() {
        // P spans several slices and a ragged last one.
        let (m, p) = (300usize, 2 * SLICE + 1234);
        let mut state = 7u64;
        let cols: Vec<Vec<f64>> = (0..m)
            .map(|_| {
                (0..p)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&Vec<f64>> = cols.iter().collect();
        let offs: Vec<usize> = (0..m).step_by(10).collect();
        let mut results = Vec::new();
        for t in [1, 2, 3] {
            tch::set_num_threads(t);
            results.push(gram(&refs, &offs));
            assert_eq!(tch::get_num_threads(), t, "the thread count is restored");
        }
        assert_eq!(results[0], results[1], "1 vs 2 threads");
        assert_eq!(results[0], results[2], "1 vs 3 threads");
        // Against a plain dot product on the upper triangle.
        for (i, j) in [(0usize, 0usize), (5, 299), (257, 260), (100, 100)] {
            let d: f64 = cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum();
            assert!((results[0][(i, j)] - d).abs() <= 1e-12 * d.abs().max(1.0));
        }
    }
}

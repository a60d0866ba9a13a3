//! Reproducible pseudo-random points for the OT tests: one 64-bit LCG (Knuth's MMIX constants),
//! its top 53 bits as a uniform value in [0, 1).

/// The next uniform value of the sequence held in `seed`.
pub(crate) fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

/// `len` uniform values in [0, 1) from `seed`.
pub(crate) fn uniform(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..len).map(|_| lcg(&mut s)).collect()
}

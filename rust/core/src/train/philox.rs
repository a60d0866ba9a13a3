//! Philox4x32-10 (Salmon, Moraes, Dror and Shaw, SC 2011) and the uniform streams built on it.
//!
//! The layout matches the xp reference `python/lorainne/train/_philox.py` bit for bit: key =
//! the 64-bit seed (low word first); block `b` of stream `s` has the counter
//! `(b mod 2^32, b div 2^32, s, 0)`. float32 element `e` keeps the top 24 bits of word `e mod 4`
//! of block `e div 4`; float64 element `e` joins 27 + 26 bits of words `2(e mod 2)` and
//! `2(e mod 2) + 1` of block `e div 2`. The integer `i` becomes
//! `(i - 2^(bits-1)) * (sqrt(3) / 2^(bits-1))`: uniform on [-sqrt(3), sqrt(3)).

use faer::Par;
use rayon::prelude::*;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
const ROUNDS: usize = 10;
/// Elements per parallel task (a multiple of 4, so tasks start on block boundaries).
const CHUNK: usize = 1 << 14;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// The ten-round Philox4x32 bijection of `counter` under `key`.
#[inline]
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..ROUNDS {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        if round + 1 < ROUNDS {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
    }
    c
}

#[inline]
fn block(seed: u64, stream: u32, index: u64) -> [u32; 4] {
    philox4x32(
        [index as u32, (index >> 32) as u32, stream, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

fn fill_f32(seed: u64, stream: u32, first: usize, out: &mut [f32]) {
    let scale = (3.0f64.sqrt() / f64::from(1u32 << 23)) as f32;
    let half = 1i32 << 23;
    for (offset, chunk) in out.chunks_mut(4).enumerate() {
        let words = block(seed, stream, ((first / 4) + offset) as u64);
        for (x, w) in chunk.iter_mut().zip(words) {
            *x = (((w >> 8) as i32) - half) as f32 * scale;
        }
    }
}

fn fill_f64(seed: u64, stream: u32, first: usize, out: &mut [f64]) {
    let scale = 3.0f64.sqrt() / (1u64 << 52) as f64;
    let half = 1i64 << 52;
    for (offset, chunk) in out.chunks_mut(2).enumerate() {
        let w = block(seed, stream, ((first / 2) + offset) as u64);
        for (j, x) in chunk.iter_mut().enumerate() {
            let bits = (u64::from(w[2 * j] >> 5) << 26) | u64::from(w[2 * j + 1] >> 6);
            *x = (bits as i64 - half) as f64 * scale;
        }
    }
}

/// `size` float32 values of stream `stream` of `seed`, uniform on [-sqrt(3), sqrt(3)).
pub fn uniform_f32(seed: u64, stream: u32, size: usize, par: Par) -> Vec<f32> {
    let mut out = vec![0f32; size];
    match par {
        Par::Seq => fill_f32(seed, stream, 0, &mut out),
        Par::Rayon(_) => out
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| fill_f32(seed, stream, i * CHUNK, chunk)),
    }
    out
}

/// `size` float64 values of stream `stream` of `seed`, uniform on [-sqrt(3), sqrt(3)).
pub fn uniform_f64(seed: u64, stream: u32, size: usize, par: Par) -> Vec<f64> {
    let mut out = vec![0f64; size];
    match par {
        Par::Seq => fill_f64(seed, stream, 0, &mut out),
        Par::Rayon(_) => out
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| fill_f64(seed, stream, i * CHUNK, chunk)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_of_random123() {
        assert_eq!(
            philox4x32([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn parallel_equals_sequential_and_prefixes_agree() {
        let n = 3 * CHUNK + 7;
        let seq = uniform_f32(42, 1, n, Par::Seq);
        let par = crate::parallel::run(Some(2), |p| uniform_f32(42, 1, n, p)).unwrap();
        assert_eq!(seq, par);
        assert_eq!(&uniform_f32(42, 1, 5, Par::Seq)[..], &seq[..5]);
        let seq = uniform_f64(7, 0, n, Par::Seq);
        let par = crate::parallel::run(Some(2), |p| uniform_f64(7, 0, n, p)).unwrap();
        assert_eq!(seq, par);
    }

    #[test]
    fn values_are_centred_with_unit_variance() {
        let x = uniform_f64(1, 0, 200_000, Par::Seq);
        let bound = 3.0f64.sqrt();
        assert!(x.iter().all(|v| (-bound..bound).contains(v)));
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01);
    }
}

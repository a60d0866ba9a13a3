//! Kernels of `lorainne.train`: the Philox4x32-10 counter-based generator behind NOLA's
//! reproducible bases. The QR of DLRT's augmented bases runs on `randomized`'s Householder QR.

pub mod philox;

pub use philox::{philox4x32, uniform_f32, uniform_f64};

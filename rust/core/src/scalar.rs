//! The two floating-point types every kernel is generic over (`Scalar`), and the real and complex
//! types of the QR / randomized SVD kernels (`Field`).

use faer::traits::{ComplexField, RealField};
use faer::{c32, c64};
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Scalar:
    RealField
    + Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    /// Unit roundoff (half the machine epsilon).
    const UNIT_ROUNDOFF: Self;
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
    fn is_nan(self) -> bool;
}

macro_rules! impl_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const UNIT_ROUNDOFF: Self = <$t>::EPSILON / 2.0;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_scalar!(f32);
impl_scalar!(f64);

/// An element type of the QR and randomized SVD kernels, real or complex: f32, f64, c32, c64.
/// The arithmetic is faer's (`faer::traits::math_utils`); `Real` is the type of norms and
/// singular values.
pub trait Field:
    ComplexField<Real: Scalar>
    + Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
    + 'static
{
    /// The double-precision type with the same structure (f32 -> f64, c32 -> c64).
    type Wide: Field;
    /// Single precision (its Householder QR runs in `Wide`).
    const IS_SINGLE: bool;
    fn widen(self) -> Self::Wide;
    fn narrow(wide: Self::Wide) -> Self;
}

macro_rules! impl_field {
    ($t:ty, $wide:ty, $single:expr, |$x:ident| $widen:expr, |$w:ident| $narrow:expr) => {
        impl Field for $t {
            type Wide = $wide;
            const IS_SINGLE: bool = $single;
            #[inline]
            fn widen(self) -> $wide {
                let $x = self;
                $widen
            }
            #[inline]
            fn narrow(wide: $wide) -> Self {
                let $w = wide;
                $narrow
            }
        }
    };
}

impl_field!(f64, f64, false, |x| x, |w| w);
impl_field!(f32, f64, true, |x| x as f64, |w| w as f32);
impl_field!(c64, c64, false, |x| x, |w| w);
impl_field!(
    c32,
    c64,
    true,
    |x| c64::new(x.re as f64, x.im as f64),
    |w| c32::new(w.re as f32, w.im as f32)
);

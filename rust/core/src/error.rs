//! The error type of every kernel. The binding crate maps each variant to a Python exception.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An argument has a value the kernel cannot work with (maps to `ValueError`).
    InvalidArgument { name: &'static str, message: String },
    /// A factorization failed in a way no fallback could repair (maps to `LinAlgError`-like `ValueError`).
    NumericalBreakdown(String),
    /// The thread pool could not be built (maps to `RuntimeError`).
    ThreadPool(String),
    /// An allocation sized by the input cannot succeed (maps to `MemoryError`): returned
    /// instead of letting the allocator abort the process.
    OutOfMemory { what: String, bytes: u128 },
    /// The caller raised the kernel's [`crate::interrupt::Interrupt`] (maps to the pending
    /// `KeyboardInterrupt`); the kernel stopped between iterations and returned no result.
    Interrupted,
}

impl Error {
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument { name, message } => write!(f, "{name}: {message}"),
            Error::NumericalBreakdown(message) => write!(f, "numerical breakdown: {message}"),
            Error::ThreadPool(message) => write!(f, "thread pool: {message}"),
            Error::OutOfMemory { what, bytes } => write!(
                f,
                "{what} needs {bytes} bytes ({:.3} GiB), which cannot be allocated",
                *bytes as f64 / (1u64 << 30) as f64
            ),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks that `count` values of `T` can be allocated (`None`: the count overflowed `usize`) by a
/// `try_reserve` probe freed at once: where the size comes from the input (a rank, a shape),
/// the caller gets `Error::OutOfMemory` naming the size instead of an aborted process.
pub fn check_alloc<T>(count: Option<usize>, what: &str) -> Result<()> {
    let bytes = count.map(|c| c as u128 * std::mem::size_of::<T>() as u128);
    let fail = || Error::OutOfMemory {
        what: what.to_string(),
        bytes: bytes.unwrap_or(u128::MAX),
    };
    let count = count.ok_or_else(fail)?;
    // Beyond the 48-bit address space of today's CPUs no allocation can succeed; below it the probe
    // asks the allocator (black_box: an unused allocation may otherwise be optimized away).
    if bytes.is_some_and(|b| b > MAX_ADDRESSABLE_BYTES) {
        return Err(fail());
    }
    let mut probe: Vec<T> = Vec::new();
    probe.try_reserve_exact(count).map_err(|_| fail())?;
    std::hint::black_box(&probe);
    Ok(())
}

/// 2^48 bytes (256 TiB): the virtual address space of x86-64 and AArch64 with 4-level page tables.
const MAX_ADDRESSABLE_BYTES: u128 = 1 << 48;

/// A vector of `len` copies of `value`, or `Error::OutOfMemory` (see [`check_alloc`]).
pub fn try_filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    check_alloc::<T>(Some(len), what)?;
    let mut out: Vec<T> = Vec::new();
    out.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        what: what.to_string(),
        bytes: len as u128 * std::mem::size_of::<T>() as u128,
    })?;
    out.resize(len, value);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_allocations_are_errors() {
        let huge = check_alloc::<f64>(Some(usize::MAX / 16), "test");
        assert!(matches!(huge, Err(Error::OutOfMemory { .. })));
        assert!(matches!(
            check_alloc::<f64>(None, "test"),
            Err(Error::OutOfMemory { .. })
        ));
        assert!(check_alloc::<f64>(Some(1000), "test").is_ok());
        assert!(try_filled(usize::MAX / 16, 0.0f64, "test").is_err());
        assert_eq!(try_filled(3, 1.0f64, "test").unwrap(), vec![1.0; 3]);
    }
}

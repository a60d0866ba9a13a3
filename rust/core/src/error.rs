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
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

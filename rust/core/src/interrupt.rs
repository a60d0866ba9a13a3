//! Cooperative interruption of long kernels (Ctrl-C in Python).
//!
//! A caller that may want to stop a kernel early owns an [`Interrupt`] and passes it by reference;
//! the kernel calls [`Interrupt::check`] between iterations (a sweep, a power iteration, a
//! Sinkhorn iteration, a Lanczos or Chebyshev step) and returns [`Error::Interrupted`] once the
//! flag is raised. Raising it is a relaxed atomic store, so any thread may do it at any time, and
//! checking costs one atomic load. A kernel that stops this way returns no partial result.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// A stop flag shared between a kernel and whoever may ask it to stop.
#[derive(Debug, Default)]
pub struct Interrupt {
    raised: AtomicBool,
}

impl Interrupt {
    /// A flag not raised yet.
    pub const fn new() -> Self {
        Interrupt {
            raised: AtomicBool::new(false),
        }
    }

    /// Asks the kernel to stop at its next check.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Relaxed);
    }

    /// Whether [`Interrupt::raise`] was called.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }

    /// `Err(Error::Interrupted)` once raised: `interrupt.check()?` between iterations.
    pub fn check(&self) -> Result<()> {
        if self.is_raised() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// An interrupt that nobody raises, for callers (tests, benches) that never stop a kernel.
pub static NEVER: Interrupt = Interrupt::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_fails_once_raised() {
        let flag = Interrupt::new();
        assert!(flag.check().is_ok());
        flag.raise();
        assert_eq!(flag.check(), Err(Error::Interrupted));
        assert!(NEVER.check().is_ok());
    }
}

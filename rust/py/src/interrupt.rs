//! Ctrl-C during a long kernel.
//!
//! Python runs signal handlers only on the main thread, between bytecodes; a kernel running with
//! the GIL released (and its loop on a rayon worker) never gives it the chance. [`interruptible`]
//! therefore runs the kernel on a helper thread while the calling thread waits with the GIL
//! released, waking every [`POLL`] to re-acquire the GIL briefly and run
//! `Python::check_signals`. When a handler raises (Ctrl-C: `KeyboardInterrupt`), the kernel's
//! [`Interrupt`] is raised, the kernel stops at its next check (between iterations, returning no
//! result) and the handler's exception is returned. Only the thread that started the call checks
//! for signals, at most once per [`POLL`].

use lorainne_core::Interrupt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How often the waiting thread looks for a pending signal.
pub const POLL: Duration = Duration::from_millis(50);

/// Stack of the helper thread: that of a main thread, where the kernels ran before.
const STACK_BYTES: usize = 8 << 20;

/// Runs `kernel` (given the call's [`Interrupt`]) on a helper thread and waits for it, checking
/// for Python signals every [`POLL`]; see the module documentation.
pub fn interruptible<R: Send>(
    py: Python<'_>,
    kernel: impl FnOnce(&Interrupt) -> PyResult<R> + Send,
) -> PyResult<R> {
    let interrupt = Interrupt::new();
    let mut pending: Option<PyErr> = None;
    let outcome = std::thread::scope(|scope| -> PyResult<R> {
        let (sender, mut receiver) = sync_channel::<PyResult<R>>(1);
        let flag = &interrupt;
        let worker = std::thread::Builder::new()
            .name("lorainne-call".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, move || {
                // the receiver outlives the worker: the send cannot fail
                let _ = sender.send(kernel(flag));
            })
            .map_err(|e| {
                PyRuntimeError::new_err(format!("could not start a kernel thread: {e}"))
            })?;
        let received = loop {
            let (next, back) = py.detach(move || wait(receiver));
            receiver = back;
            match next {
                Ok(result) => break Some(result),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    if pending.is_none() {
                        if let Err(error) = py.check_signals() {
                            pending = Some(error);
                            interrupt.raise();
                        }
                    }
                }
            }
        };
        let joined = py.detach(move || worker.join());
        match (received, joined) {
            (Some(result), Ok(())) => result,
            _ => Err(PyRuntimeError::new_err(
                "internal error in a lorainne kernel thread (please report)",
            )),
        }
    });
    match pending {
        Some(error) => Err(error),
        None => outcome,
    }
}

fn wait<R>(receiver: Receiver<R>) -> (Result<R, RecvTimeoutError>, Receiver<R>) {
    (receiver.recv_timeout(POLL), receiver)
}

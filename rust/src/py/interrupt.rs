//! Ctrl-C while the core works with the GIL released. Python's own SIGINT handler only sets a
//! flag that the interpreter reads between bytecodes, which never run while the core computes;
//! so for the duration of a call into the core (`Watch`) a handler of ours is chained in front
//! of Python's: it sets the core's interrupt flag (`exec::request_interrupt`, one atomic store)
//! and calls Python's handler, which records the signal as usual. The core's loops see the
//! flag within milliseconds and return `LmmError::Interrupted`; the boundary then runs Python's
//! signal handlers (`Python::check_signals`), which raise `KeyboardInterrupt` (or whatever the
//! user's handler does), and clears the flag (`interrupted_error`).
//!
//! The handler is installed only when SIGINT has a handler that is a function (Python's): with
//! `SIG_IGN` ctrl-C stays ignored and with `SIG_DFL` it keeps killing the process. Nested and
//! concurrent calls share one installation (a count under a mutex); the last one out restores
//! the previous disposition, unless someone else replaced ours meanwhile. Other platforms
//! than Unix keep the check between Python calls only.

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

use crate::exec;

/// `KeyboardInterrupt` for an interrupted core call: Python's handlers run first (a pending
/// SIGINT raises `KeyboardInterrupt` through them); the core's flag is cleared.
pub fn interrupted_error() -> PyErr {
    exec::clear_interrupt();
    Python::attach(|py| match py.check_signals() {
        Err(e) => e,
        Ok(()) => PyKeyboardInterrupt::new_err("interrupted"),
    })
}

#[cfg(unix)]
mod unix {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use crate::exec;

    /// The handler found when ours was installed: its address and its flags.
    static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(0);
    static PREVIOUS_FLAGS: AtomicUsize = AtomicUsize::new(0);

    /// Calls into the core under way, and the disposition to restore when the last one ends.
    struct State {
        depth: usize,
        previous: Option<libc::sigaction>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        depth: 0,
        previous: None,
    });

    extern "C" fn on_sigint(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        exec::request_interrupt();
        let handler = PREVIOUS_HANDLER.load(Ordering::Relaxed);
        let flags = PREVIOUS_FLAGS.load(Ordering::Relaxed);
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN || handler == 0 {
            return;
        }
        if flags & (libc::SA_SIGINFO as usize) != 0 {
            // SAFETY: `handler` is the `sa_sigaction` of the disposition we replaced, which had
            // SA_SIGINFO set, so it has this signature; the kernel's arguments are passed on.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            f(sig, info, ctx);
        } else {
            // SAFETY: `handler` is the `sa_handler` of the disposition we replaced (a function,
            // neither SIG_DFL nor SIG_IGN, checked above), which takes the signal number.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
        }
    }

    /// Installs the handler if this is the first call under way and SIGINT has a function as
    /// its handler; returns whether this call counts (and must call `leave`).
    pub fn enter() -> bool {
        let mut state = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.depth > 0 {
            state.depth += 1;
            return true;
        }
        // SAFETY: sigaction with a null new action only reads the current one into `old`,
        // a zeroed (valid) sigaction struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &raw mut old) } != 0 {
            return false;
        }
        if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
            return false;
        }
        PREVIOUS_HANDLER.store(old.sa_sigaction, Ordering::Relaxed);
        PREVIOUS_FLAGS.store(old.sa_flags as usize, Ordering::Relaxed);
        // SAFETY: a zeroed sigaction is valid; we fill the handler, its flags and an empty mask.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigint as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `new.sa_mask` is a valid sigset_t owned here.
        unsafe { libc::sigemptyset(&raw mut new.sa_mask) };
        exec::clear_interrupt();
        // SAFETY: both pointers are to valid sigaction structs; `on_sigint` only does
        // async-signal-safe work (atomic loads and stores, the previous handler, itself
        // async-signal-safe as Python's is).
        if unsafe { libc::sigaction(libc::SIGINT, &raw const new, std::ptr::null_mut()) } != 0 {
            return false;
        }
        state.previous = Some(old);
        state.depth = 1;
        true
    }

    /// Ends a call that `enter` counted; the last one restores the previous disposition.
    pub fn leave() {
        let mut state = STATE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.depth -= 1;
        if state.depth > 0 {
            return;
        }
        if let Some(old) = state.previous.take() {
            // SAFETY: reading the current disposition into a zeroed struct.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &raw mut current) };
            if current.sa_sigaction == on_sigint as *const () as usize {
                // SAFETY: `old` is the disposition sigaction gave us in `enter`.
                unsafe { libc::sigaction(libc::SIGINT, &raw const old, std::ptr::null_mut()) };
            }
        }
    }
}

/// A call into the core during which ctrl-C sets the core's interrupt flag (see the module's
/// documentation); dropping it ends the call.
pub struct Watch {
    counted: bool,
}

impl Watch {
    pub fn new() -> Watch {
        #[cfg(unix)]
        let counted = unix::enter();
        #[cfg(not(unix))]
        let counted = false;
        Watch { counted }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.counted {
            unix::leave();
        }
    }
}

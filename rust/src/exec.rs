//! The execution handle: how many threads one fit may use, passed down from the caller.
//!
//! Every parallel step of a fit takes its threads from an `Exec` (as faer's `Par` is passed to
//! each of its kernels): the spinning team of the supernodal factor (`linalg::team`), the rayon
//! pool of the cross-product pass and of the symbolic step, and the pairs of serial evaluations
//! of the convergence check. Nothing below reads an environment variable. `threads = 1` runs
//! everything on the calling thread and gives the same numbers to the last bit as any other
//! count: the parallel steps split work so that no sum depends on the number of threads.
//!
//! Teams and rayon pools are cached per thread count for the life of the process, so that many
//! consecutive fits start no new threads (a team's helpers park when idle).
//!
//! Interrupts: one process-wide flag that a signal handler sets (`request_interrupt`, from the
//! Python layer's SIGINT handler) and that long loops read with one relaxed atomic load
//! (`interrupted`, `check_interrupt`): between the optimiser's evaluations, between the pieces
//! of the cross-product pass and between the supernodes of a factorisation. Work that sees it
//! stops with `LmmError::Interrupted`; the caller clears it (`clear_interrupt`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{LmmError, Result};
use crate::linalg::team::Team;

/// Set when the work in progress should stop (see the module's documentation).
static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Asks the work in progress to stop; async-signal-safe (one atomic store).
pub fn request_interrupt() {
    INTERRUPT.store(true, Ordering::Relaxed);
}

/// Forgets an interrupt request.
pub fn clear_interrupt() {
    INTERRUPT.store(false, Ordering::Relaxed);
}

/// True when an interrupt was requested and not cleared.
#[inline]
pub fn interrupted() -> bool {
    INTERRUPT.load(Ordering::Relaxed)
}

/// `Err(LmmError::Interrupted)` when an interrupt was requested.
#[inline]
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(LmmError::Interrupted)
    } else {
        Ok(())
    }
}

/// The threads a fit may use: a team (spinning, for the numeric factor) and a rayon pool (for
/// coarse parallel passes), both of the same size. Cheap to clone.
#[derive(Clone)]
pub struct Exec {
    threads: usize,
    team: Arc<Team>,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Exec {
    /// A handle for `threads` threads; 0 means every core the process may use.
    pub fn new(threads: usize) -> Exec {
        let threads = if threads == 0 {
            Exec::schedule_width()
        } else {
            threads
        };
        if threads == 1 {
            return Exec::serial();
        }
        Exec {
            threads,
            team: cached_team(threads),
            pool: cached_pool(threads),
        }
    }

    /// Everything on the calling thread.
    pub fn serial() -> Exec {
        Exec {
            threads: 1,
            team: cached_team(1),
            pool: cached_pool(1),
        }
    }

    /// Number of threads, at least 1.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How many threads a schedule whose layout decides the order of floating-point sums
    /// (the supernodal factor's) is laid out for: the machine's cores, whatever this handle's
    /// number of threads. The team then runs that schedule with as many threads as it has
    /// (one: in turn), so every `threads` gives the same values to the last bit.
    pub fn schedule_width() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// The spinning team of this many threads (the caller is thread 0).
    pub fn team(&self) -> &Team {
        &self.team
    }

    /// Runs `f` with rayon's parallel iterators, `rayon::join` and faer's `Par::rayon(0)` using
    /// this handle's threads (a serial handle installs a pool of one thread, so they run in turn).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

fn cached_team(threads: usize) -> Arc<Team> {
    static TEAMS: OnceLock<Mutex<HashMap<usize, Arc<Team>>>> = OnceLock::new();
    let mut teams = TEAMS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(
        teams
            .entry(threads)
            .or_insert_with(|| Arc::new(Team::new(threads))),
    )
}

/// A rayon pool of `threads` threads, or `None` when one cannot be started (then the work runs
/// in whatever pool the caller is in, which changes no value: see the module's documentation).
fn cached_pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = pools.get(&threads) {
        return Some(Arc::clone(p));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("multilevel-pool-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    pools.insert(threads, Arc::clone(&pool));
    Some(pool)
}

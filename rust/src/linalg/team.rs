//! A team of threads that stay awake through the many short parallel steps of one numeric
//! factorisation.
//!
//! The supernodal factor of a crossed model (`supernodal.rs`) splits every evaluation into a few
//! dozen steps of tens to hundreds of microseconds each (independent subtrees, the column chunks
//! of each top supernode, the blocks of its dense factor), separated by barriers. Through rayon,
//! every step costs a wake-up of a sleeping worker, and on this project's two-core machine a
//! `rayon::join` of two 20-microsecond tasks took 80 to 180 microseconds once the other worker
//! had been idle for 50 microseconds or more. So the team's helpers, once started, spin between
//! steps; they park only after `IDLE_SPIN` without work (between fits, not between the
//! evaluations of one fit, which follow each other within microseconds).
//!
//! `Team::run(job)` runs `job(&ctx)` on the calling thread (`ctx.tid() == 0`) and on every
//! helper at once and returns when all have finished. Inside a job, `ctx.barrier()` waits for
//! the others and `ctx.for_each_dynamic(n, f)` hands out `f(0)..f(n - 1)` one at a time to
//! whichever thread is free, then waits for the others. A job must reach the same sequence of
//! barriers on every thread. A second caller while the team is busy (two fits at once from
//! different Python threads) gets a one-thread context instead of waiting.
//!
//! Dropping a team stops its helpers: they see a stop request with the next epoch (a parked
//! helper is woken for it) and return, and the drop joins them, so no thread, stack or buffer
//! of the team outlives it. A drop cannot meet a job in progress (`run` borrows the team), and a
//! job that panicked has been waited for by `run`, so every helper is between jobs and the join
//! ends within one wake-up.
//!
//! Teams are made and cached by the execution handle (`exec.rs`), one per thread count, for the
//! life of the process (the cache is never dropped: at exit the parked helpers end with the
//! process, and no destructor waits for them); nothing here chooses a number of threads.
//! MixedModels.jl stays single-threaded here; CHOLMOD (lme4) parallelises only inside BLAS.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a helper spins for the next job before it parks.
const IDLE_SPIN: Duration = Duration::from_millis(2);

/// Spins of a waiting thread between checks of the clock (or yields, at a barrier).
const SPINS_PER_CHECK: u32 = 256;

type Job = dyn Fn(&Ctx) + Sync;

/// A job's pointer with its lifetime erased. `run` does not return before every helper has
/// finished with it, so the pointer never outlives the closure.
#[derive(Clone, Copy)]
struct JobPtr(*const Job);

// SAFETY: the job is `Sync` (so it may be called from any thread), and the pointer is only
// dereferenced while `run` keeps the job alive (it waits for every helper to finish with it).
unsafe impl Send for JobPtr {}
// SAFETY: as for `Send`: sharing the pointer only lets other threads call the `Sync` job while
// `run` keeps it alive.
unsafe impl Sync for JobPtr {}

struct Shared {
    n_threads: usize,
    /// Incremented by `run` to publish a job.
    epoch: AtomicUsize,
    job: UnsafeCell<Option<JobPtr>>,
    /// Helpers that have finished the current job.
    finished: AtomicUsize,
    /// A thread of the current job panicked: barriers stop waiting, `run` re-raises.
    panicked: AtomicBool,
    /// Threads arrived at the current barrier, and the number of barriers passed.
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// Counters of `for_each_dynamic`, used alternately (see there).
    counters: [AtomicUsize; 2],
    /// Set by `Team::drop` before its last epoch: helpers return instead of running a job.
    stop: AtomicBool,
    /// Helpers parked on `wake` (they re-check `epoch` under the lock).
    parked: Mutex<usize>,
    wake: Condvar,
}

impl Shared {
    fn new(n_threads: usize) -> Self {
        Shared {
            n_threads,
            epoch: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            finished: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            counters: [AtomicUsize::new(0), AtomicUsize::new(0)],
            stop: AtomicBool::new(false),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        }
    }

    /// Starts a new epoch (a job, or the stop request) and wakes the parked helpers. A helper
    /// counts itself in `parked` and re-checks `epoch` under the lock before it waits, so it
    /// either sees the new epoch or is waiting when `notify_all` runs.
    fn publish(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let parked = self
            .parked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *parked > 0 {
            self.wake.notify_all();
        }
    }
}

// SAFETY: `job` is written only by the thread holding `Team::busy`, before the epoch is
// published (Release), and read by helpers after they observe the new epoch (Acquire).
unsafe impl Sync for Shared {}

/// The context of one thread inside a job.
pub struct Ctx<'a> {
    shared: Option<&'a Shared>,
    tid: usize,
    n_threads: usize,
    /// Calls of `for_each_dynamic` so far (the same on every thread).
    rounds: std::cell::Cell<usize>,
}

impl Ctx<'_> {
    /// The context of a job run on the calling thread alone.
    pub fn single() -> Ctx<'static> {
        Ctx {
            shared: None,
            tid: 0,
            n_threads: 1,
            rounds: std::cell::Cell::new(0),
        }
    }

    /// The context of thread `tid` of the team's current job.
    fn member(sh: &Shared, tid: usize) -> Ctx<'_> {
        Ctx {
            shared: Some(sh),
            tid,
            n_threads: sh.n_threads,
            rounds: std::cell::Cell::new(0),
        }
    }

    /// This thread's index, 0 for the caller of `run`.
    pub fn tid(&self) -> usize {
        self.tid
    }

    /// Threads in the job.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Waits until every thread of the job has reached this barrier.
    pub fn barrier(&self) {
        let Some(sh) = self.shared else { return };
        if self.n_threads == 1 {
            return;
        }
        let generation = sh.generation.load(Ordering::Acquire);
        if sh.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n_threads {
            sh.arrived.store(0, Ordering::Relaxed);
            sh.generation.store(generation + 1, Ordering::Release);
            return;
        }
        spin_until(|| {
            assert!(
                !sh.panicked.load(Ordering::Relaxed),
                "another thread of the team panicked"
            );
            sh.generation.load(Ordering::Acquire) != generation
        });
    }

    /// Calls `f(i)` for every i in `0..n`, each once, on whichever thread takes it first; then
    /// waits for the other threads (a barrier).
    pub fn for_each_dynamic(&self, n: usize, mut f: impl FnMut(usize)) {
        let Some(sh) = self.shared.filter(|_| self.n_threads > 1) else {
            (0..n).for_each(f);
            return;
        };
        // Counter r % 2 serves this round; the other one was last used in the previous round,
        // which every thread has left (its closing barrier), so it can be reset for the next.
        let r = self.rounds.get();
        self.rounds.set(r + 1);
        let counter = &sh.counters[r % 2];
        loop {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            f(i);
        }
        if self.tid == 0 {
            sh.counters[(r + 1) % 2].store(0, Ordering::Relaxed);
        }
        self.barrier();
    }
}

/// The helpers and the lock that lets one job run at a time.
pub struct Team {
    shared: Arc<Shared>,
    busy: Mutex<()>,
    /// The helpers' threads, joined by `drop`.
    helpers: Vec<std::thread::JoinHandle<()>>,
}

impl Team {
    /// A team of `n_threads` threads: the caller of `run` and `n_threads - 1` helpers.
    pub fn new(n_threads: usize) -> Team {
        let n_threads = n_threads.max(1);
        let mut team = Team {
            shared: Arc::new(Shared::new(n_threads)),
            busy: Mutex::new(()),
            helpers: Vec::with_capacity(n_threads - 1),
        };
        for tid in 1..n_threads {
            let sh = Arc::clone(&team.shared);
            let spawned = std::thread::Builder::new()
                .name(format!("multilevel-team-{tid}"))
                .spawn(move || helper(&sh, tid));
            let Ok(handle) = spawned else {
                // A thread that could not start: the team would wait for it forever. The drop
                // stops the helpers that did start.
                drop(team);
                return Team::new(1);
            };
            team.helpers.push(handle);
        }
        team
    }

    /// Threads of the team.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `job` on every thread of the team (see the module's documentation); a panic in any
    /// thread is raised again here once all have stopped.
    pub fn run<F: Fn(&Ctx) + Sync>(&self, job: F) {
        let sh = &*self.shared;
        let guard = match self.busy.try_lock() {
            Ok(g) if sh.n_threads > 1 => g,
            _ => {
                job(&Ctx::single());
                return;
            }
        };
        let dyn_job: &(dyn Fn(&Ctx) + Sync + '_) = &job;
        // SAFETY: the lifetime is erased only for the helpers, which finish with the job before
        // this function returns (it waits for `finished` below, even after a panic).
        let ptr: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(&Ctx) + Sync + '_), &'static Job>(dyn_job) };
        // SAFETY: no helper reads `job` until the new epoch is published below.
        unsafe { *sh.job.get() = Some(JobPtr(ptr)) };
        sh.finished.store(0, Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        // A job that panicked may have left a barrier or a counter half used.
        sh.arrived.store(0, Ordering::Relaxed);
        for c in &sh.counters {
            c.store(0, Ordering::Relaxed);
        }
        sh.publish();
        let ctx = Ctx::member(sh, 0);
        let result = catch_unwind(AssertUnwindSafe(|| job(&ctx)));
        if result.is_err() {
            sh.panicked.store(true, Ordering::Relaxed);
        }
        spin_until(|| sh.finished.load(Ordering::Acquire) >= sh.n_threads - 1);
        // SAFETY: every helper has finished with the job.
        unsafe { *sh.job.get() = None };
        let panicked = sh.panicked.load(Ordering::Relaxed);
        drop(guard);
        if let Err(payload) = result {
            resume_unwind(payload);
        }
        assert!(!panicked, "a thread of the team panicked");
    }
}

impl Drop for Team {
    /// Stops the helpers and waits for them (see the module's documentation).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.publish();
        for handle in self.helpers.drain(..) {
            // A helper catches the panics of jobs, so it ends normally; should one not, its
            // panic has already been reported by `run` and there is nothing left to free.
            let _ = handle.join();
        }
    }
}

/// Spins until `done()`, yielding now and then: another thread of the job may have been
/// descheduled (more runnable threads than cores).
fn spin_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CHECK) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A helper's loop: wait for a new epoch (spinning, then parked), run the job, report; return
/// when the epoch is the team's stop request.
fn helper(sh: &Shared, tid: usize) {
    let mut seen = 0usize;
    loop {
        let mut idle = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = sh.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            spins += 1;
            if !spins.is_multiple_of(SPINS_PER_CHECK) {
                std::hint::spin_loop();
                continue;
            }
            if idle.elapsed() < IDLE_SPIN {
                continue;
            }
            let mut parked = sh
                .parked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *parked += 1;
            while sh.epoch.load(Ordering::SeqCst) == seen {
                parked = sh
                    .wake
                    .wait(parked)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *parked -= 1;
            idle = Instant::now();
        }
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: `run` wrote the job before publishing this epoch and keeps it alive until
        // `finished` counts this helper.
        let job = unsafe { *sh.job.get() };
        if let Some(JobPtr(ptr)) = job {
            let ctx = Ctx::member(sh, tid);
            // SAFETY: see above.
            let job = unsafe { &*ptr };
            if catch_unwind(AssertUnwindSafe(|| job(&ctx))).is_err() {
                sh.panicked.store(true, Ordering::Relaxed);
            }
        }
        sh.finished.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_item_once_and_barriers_order_the_phases() {
        let team = Team::new(3);
        for _ in 0..50 {
            let hits: Vec<AtomicU64> = (0..1000).map(|_| AtomicU64::new(0)).collect();
            let sum = AtomicU64::new(0);
            team.run(|ctx| {
                ctx.for_each_dynamic(1000, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                // After the closing barrier every item is done, on every thread.
                let done: u64 = hits.iter().map(|h| h.load(Ordering::Relaxed)).sum();
                assert_eq!(done, 1000);
                ctx.for_each_dynamic(10, |i| {
                    sum.fetch_add(i as u64, Ordering::Relaxed);
                });
                ctx.barrier();
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            assert_eq!(sum.load(Ordering::Relaxed), 45);
        }
    }

    #[test]
    fn helpers_wake_after_parking() {
        let team = Team::new(2);
        let count = AtomicUsize::new(0);
        team.run(|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(IDLE_SPIN * 3);
        team.run(|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_panic_in_a_helper_reaches_the_caller() {
        let team = Team::new(2);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.run(|ctx| {
                assert!(ctx.tid() != 1, "helper fails");
                ctx.barrier();
            });
        }));
        assert!(result.is_err());
        // The team still works afterwards.
        let count = AtomicUsize::new(0);
        team.run(|ctx| {
            ctx.barrier();
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    /// The kernel's id of the calling thread (its entry in /proc/self/task).
    #[cfg(target_os = "linux")]
    fn kernel_tid() -> String {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        link.file_name()
            .expect("a task id")
            .to_string_lossy()
            .into_owned()
    }

    #[cfg(target_os = "linux")]
    fn task_exists(tid: &str) -> bool {
        std::path::Path::new("/proc/self/task").join(tid).exists()
    }

    /// Many teams made and dropped, in each state a helper can be in when its team goes (spinning
    /// after a job, parked, after a panicked job, never given a job): every helper thread is gone
    /// once the drop returns (allowing the kernel a moment to remove a joined task from /proc).
    #[cfg(target_os = "linux")]
    #[test]
    fn dropping_a_team_ends_its_threads() {
        let mut all = Vec::new();
        for round in 0..120 {
            let team = Team::new(3);
            let tids = Mutex::new(Vec::new());
            let record = |ctx: &Ctx| {
                if ctx.tid() > 0 {
                    tids.lock().unwrap().push(kernel_tid());
                }
            };
            match round % 4 {
                0 => team.run(record),
                1 => {
                    team.run(record);
                    std::thread::sleep(IDLE_SPIN * 3);
                }
                2 => {
                    team.run(record);
                    let failed = catch_unwind(AssertUnwindSafe(|| {
                        team.run(|ctx| {
                            assert!(ctx.tid() != 2, "helper fails");
                            ctx.barrier();
                        });
                    }));
                    assert!(failed.is_err());
                }
                _ => {
                    // Never given a job (its helpers cannot be asked their ids): the drop returns.
                    drop(team);
                    continue;
                }
            }
            let tids = tids.into_inner().unwrap();
            assert_eq!(tids.len(), 2);
            assert!(tids.iter().all(|t| task_exists(t)));
            drop(team);
            all.extend(tids);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while all.iter().any(|t| task_exists(t)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let alive: Vec<&String> = all.iter().filter(|t| task_exists(t)).collect();
        assert!(alive.is_empty(), "helper threads still running: {alive:?}");
    }
}

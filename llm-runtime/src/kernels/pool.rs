//! A fixed thread pool for splitting one product across cores (hosted targets only).
//!
//! Decode issues dozens of small products per token, so spawning threads per product would cost
//! more than the work; workers stay alive, spin briefly on a generation counter (the next
//! product usually follows within microseconds), then sleep on a condition variable. Running a
//! job allocates nothing.
//!
//! Jobs share their work out dynamically (callers hand out chunks through an atomic counter),
//! and a job only waits for the workers that actually joined it: on a loaded machine a worker
//! that is not scheduled in time is simply left out, instead of stalling the product until the
//! scheduler gets round to it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before sleeping.
const SPIN: Duration = Duration::from_micros(200);

type Job = dyn Fn(usize) + Sync;

/// Set in `Shared::joined` once the caller stops admitting workers to the current job.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// A job pointer with its lifetime erased; only dereferenced while `Pool::run` is on the stack.
#[derive(Clone, Copy)]
struct JobPtr(*const Job);

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for JobPtr {}

struct Shared {
    job: Mutex<Option<JobPtr>>,
    generation: AtomicU64,
    /// [`CLOSED`] | the number of workers that joined the current job.
    joined: AtomicUsize,
    /// Workers that joined the current job and finished it.
    done: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    wake: Mutex<()>,
    wake_cv: Condvar,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises `run` calls from clones of the same `Kernels` on different threads.
    run_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// A pool of `threads` (the caller's thread plus `threads - 1` workers).
    pub(crate) fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicU64::new(0),
            joined: AtomicUsize::new(CLOSED),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("q8-kernel-{i}"))
                    .spawn(move || worker(&s, i))
                    .expect("spawning a kernel worker thread")
            })
            .collect();
        Pool {
            shared,
            workers,
            run_lock: Mutex::new(()),
        }
    }

    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(0)` on this thread and `f(i)` for worker `i` (`1 <= i < threads()`) on each
    /// worker that picks the job up before `f(0)` returns; returns when all those calls have
    /// returned. A worker may be left out (it was not scheduled in time) and, rarely, may call
    /// `f(i)` twice, never concurrently with itself: `f` must share its work dynamically (e.g.
    /// chunks claimed through an atomic counter) so that `f(0)` alone finishes whatever is left.
    /// Panics (after all calls finished) if one of them panicked.
    pub(crate) fn run<'a>(&self, f: &'a (dyn Fn(usize) + Sync + 'a)) {
        let _serial = lock(&self.run_lock);
        let s = &*self.shared;
        // SAFETY: this only erases the lifetime; the pointer is dereferenced by workers solely
        // between joining the job (possible only until `f(0)` returns and the job is closed)
        // and counting themselves done, and this function does not return before every worker
        // that joined is done.
        let ptr: *const Job =
            unsafe { core::mem::transmute::<&'a (dyn Fn(usize) + Sync + 'a), &'static Job>(f) };
        *lock(&s.job) = Some(JobPtr(ptr));
        s.done.store(0, Ordering::SeqCst);
        s.joined.store(0, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&s.wake);
            s.wake_cv.notify_all();
        }
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        let joined = s.joined.fetch_or(CLOSED, Ordering::SeqCst) & !CLOSED;
        let start = Instant::now();
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != joined {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        *lock(&s.job) = None;
        if let Err(p) = own {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a kernel worker thread panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        {
            let _g = lock(&s.wake);
            s.wake_cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin first, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.generation.load(Ordering::Acquire) != seen {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                let mut g = lock(&s.wake);
                while s.generation.load(Ordering::SeqCst) == seen {
                    g = s.wake_cv.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                drop(g);
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            core::hint::spin_loop();
        }
        seen = s.generation.load(Ordering::Acquire);
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        if !join(s) {
            continue;
        }
        let job = *lock(&s.job);
        if let Some(JobPtr(f)) = job {
            // SAFETY: `run` published this pointer before opening the job and keeps the closure
            // alive until every worker that joined has counted itself done, after this call.
            let f = unsafe { &*f };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(index))).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
        }
        s.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// Joins the current job unless the caller has closed it (then there is nothing left to do).
fn join(s: &Shared) -> bool {
    let mut cur = s.joined.load(Ordering::SeqCst);
    loop {
        if cur & CLOSED != 0 {
            return false;
        }
        match s
            .joined
            .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

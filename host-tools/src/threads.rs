//! core's [`Workers`] on host threads: a pool that stays alive between jobs, so handing a
//! matrix's rows to the other cores costs microseconds, not a thread spawn.
//!
//! Each job is cut into [`SHARES_PER_THREAD`] shares per thread, claimed one at a time by
//! whichever thread is free — the caller included — so a thread that the OS does not run
//! for a while (a machine shared with other work) delays nobody: the others take its
//! shares. Which thread computes a row never changes its bits.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use picogpt_core::Workers;

/// Shares each job is cut into per thread: small enough to balance, large enough that
/// claiming one costs nothing next to computing it.
pub const SHARES_PER_THREAD: usize = 4;

/// How long an idle thread polls for the next job before it sleeps: about the gap between
/// two matrices of a forward pass (layer norm, attention), far less than a token.
const SPIN: Duration = Duration::from_micros(200);

/// A job as the threads see it: the caller's closure with its lifetime erased. It is only
/// called by threads that entered the job while it was published, and `run` does not return
/// before all of them have left.
type JobRef = &'static (dyn Fn(usize) + Sync);

/// The published job, guarded by the lock.
struct Published {
    job: Option<JobRef>,
    epoch: u64,
}

/// What the caller and the pool's threads share.
struct Shared {
    published: Mutex<Published>,
    wake: Condvar,
    /// The published epoch, for threads polling without the lock.
    epoch: AtomicU64,
    /// Next share to claim, and the job's number of shares.
    next: AtomicUsize,
    shares: AtomicUsize,
    /// Threads inside the current job.
    active: AtomicUsize,
    /// Threads asleep on `wake`.
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims and runs shares of `job` until none is left.
    fn work(&self, job: &(dyn Fn(usize) + Sync)) {
        let shares = self.shares.load(Ordering::Acquire);
        loop {
            let share = self.next.fetch_add(1, Ordering::AcqRel);
            if share >= shares {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| job(share))).is_err() {
                self.panicked.store(true, Ordering::Release);
            }
        }
    }
}

/// The calling thread plus `threads − 1` pool threads, sharing each job.
pub struct ThreadPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool of `threads` threads in all (the caller and `threads − 1` more).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            published: Mutex::new(Published { job: None, epoch: 0 }),
            wake: Condvar::new(),
            epoch: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            shares: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut handles = Vec::new();
        for index in 1..threads.max(1) {
            let shared = Arc::clone(&shared);
            let name = format!("worker-{index}");
            handles.push(std::thread::Builder::new().name(name).spawn(move || serve(&shared))?);
        }
        Ok(Self { shared, threads: handles })
    }

    /// Threads computing, the caller included.
    pub fn threads(&self) -> usize {
        self.threads.len() + 1
    }

    /// The machine's cores available to this process.
    pub fn available() -> usize {
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }
}

/// A pool thread: wait for each new job, enter it while it is published, work, leave.
fn serve(shared: &Shared) {
    let mut seen = 0;
    loop {
        let started = Instant::now();
        while shared.epoch.load(Ordering::Acquire) == seen {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            if started.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let guard = shared.lock();
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let idle = |p: &mut Published| p.epoch == seen && !shared.stop.load(Ordering::SeqCst);
            drop(shared.wake.wait_while(guard, idle).unwrap_or_else(|e| e.into_inner()));
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        let job = {
            let published = shared.lock();
            seen = published.epoch;
            let Some(job) = published.job else { continue };
            shared.active.fetch_add(1, Ordering::AcqRel);
            job
        };
        shared.work(job);
        shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Workers for ThreadPool {
    fn count(&self) -> usize {
        if self.threads.is_empty() { 1 } else { self.threads() * SHARES_PER_THREAD }
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        if self.threads.is_empty() {
            job(0);
            return;
        }
        let shared = &*self.shared;
        // SAFETY: the lifetime is erased only until this call returns, and it returns only
        // after withdrawing the job and waiting for every thread that entered it to leave.
        let erased: JobRef = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), JobRef>(job) };
        {
            let mut published = shared.lock();
            shared.next.store(0, Ordering::Release);
            shared.shares.store(self.count(), Ordering::Release);
            published.job = Some(erased);
            published.epoch += 1;
            shared.epoch.store(published.epoch, Ordering::Release);
            if shared.sleepers.load(Ordering::SeqCst) > 0 {
                shared.wake.notify_all();
            }
        }
        shared.work(job);
        shared.lock().job = None;
        let started = Instant::now();
        while shared.active.load(Ordering::Acquire) != 0 {
            if started.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        assert!(!shared.panicked.load(Ordering::Acquire), "a worker thread panicked");
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _published = self.shared.lock();
            self.shared.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_share_runs_exactly_once() {
        let mut pool = ThreadPool::new(3).unwrap();
        assert_eq!(pool.count(), 3 * SHARES_PER_THREAD);
        for round in 0..300u64 {
            let hits: Vec<AtomicU64> = (0..pool.count()).map(|_| AtomicU64::new(0)).collect();
            pool.run(&|share| {
                hits[share].fetch_add(round + 1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1));
        }
    }

    #[test]
    fn threads_wake_up_after_sleeping_and_one_thread_is_the_caller() {
        let mut pool = ThreadPool::new(2).unwrap();
        std::thread::sleep(SPIN * 5);
        let total = AtomicU64::new(0);
        pool.run(&|share| {
            total.fetch_add(share as u64 + 1, Ordering::Relaxed);
        });
        let n = pool.count() as u64;
        assert_eq!(total.load(Ordering::Relaxed), n * (n + 1) / 2);
        let mut alone = ThreadPool::new(1).unwrap();
        let caller = std::thread::current().id();
        alone.run(&|_| assert_eq!(std::thread::current().id(), caller));
        assert_eq!(alone.count(), 1);
    }
}

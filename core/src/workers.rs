//! Splitting each matrix's rows between workers: host threads, or the RP2350's two cores.
//!
//! The forward pass hands every streamed run of a matrix (a chunk of it, or the whole tensor
//! when the storage lends it in place) to [`Workers::run`] with a job that computes worker
//! `i`'s share of the run's rows. Each row is computed entirely by one worker, with the same
//! operations in the same order whoever runs it, and the rows are independent, so the output
//! is bit-identical for any number of workers. GELU, element by element, is split the same
//! way; everything else (layer norms, attention, the activations' coding, the sink) stays on
//! the caller.

use core::marker::PhantomData;

/// Runs one job on several workers at once.
///
/// # On two cores (the Pico 2)
///
/// Core 0 runs the model and calls `run`. An implementation passes `job` — a
/// `&(dyn Fn(usize) + Sync)`, two words — to core 1 (the SIO FIFO carries it as a pointer
/// to the pair), calls `job(0)` itself, then waits for core 1 to say it is done. Core 1 loops:
/// wait for a job, call `job(1)`, signal done. The job only reads shared weights and inputs
/// and writes disjoint outputs, so it needs no lock; core 0 may serve USB between runs.
///
/// `run` must not return before every worker has returned from `job`: the job borrows the
/// forward pass's buffers.
pub trait Workers {
    /// Workers that take part, the caller included (at least 1; 0 counts as 1).
    fn count(&self) -> usize;

    /// Calls `job(i)` once for every `i` in `0..self.count()`, at the same time or not, and
    /// returns when all calls have returned. `job(0)` should run on the caller.
    fn run(&mut self, job: &(dyn Fn(usize) + Sync));
}

/// The caller alone: what [`crate::Model::forward`] uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneWorker;

impl Workers for OneWorker {
    fn count(&self) -> usize {
        1
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        job(0);
    }
}

impl<W: Workers + ?Sized> Workers for &mut W {
    fn count(&self) -> usize {
        (**self).count()
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        (**self).run(job);
    }
}

/// Worker `worker`'s share of `items` when `workers` split them into contiguous ranges of
/// (nearly) equal length, in order.
pub(crate) fn share(items: usize, workers: usize, worker: usize) -> core::ops::Range<usize> {
    let workers = workers.max(1);
    (items * worker / workers)..(items * (worker + 1) / workers)
}

/// A mutable slice that several workers write at indices no two of them share.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _slice: PhantomData<&'a mut [T]>,
}

// SAFETY: a `Disjoint` is only written and read through `set` and `get`, whose callers
// promise that no two workers touch the same index during one job; the slice itself is
// borrowed mutably for `'a`, so nothing else touches it meanwhile.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T: Copy> Disjoint<'a, T> {
    /// Shares `slice` between the workers of one job.
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        Self { ptr: slice.as_mut_ptr(), len: slice.len(), _slice: PhantomData }
    }

    /// Writes `value` at `index` (ignored out of bounds).
    ///
    /// # Safety
    /// No other worker reads or writes `index` during the same job.
    pub(crate) unsafe fn set(&self, index: usize, value: T) {
        if index < self.len {
            // SAFETY: in bounds of the borrowed slice; exclusive by the caller's promise.
            unsafe { self.ptr.add(index).write(value) }
        }
    }

    /// The `len` values from `start` (`None` out of bounds), to write directly.
    ///
    /// # Safety
    /// No other worker reads or writes any of them while the slice lives.
    #[allow(clippy::mut_from_ref)] // Exclusive by the caller's promise, as with `set`.
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> Option<&mut [T]> {
        let end = start.checked_add(len)?;
        // SAFETY: in bounds of the borrowed slice; exclusive by the caller's promise.
        (end <= self.len)
            .then(|| unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), len) })
    }

    /// Reads the value at `index` (`None` out of bounds).
    ///
    /// # Safety
    /// No other worker writes `index` during the same job.
    pub(crate) unsafe fn get(&self, index: usize) -> Option<T> {
        // SAFETY: in bounds of the borrowed slice; not written concurrently by the promise.
        (index < self.len).then(|| unsafe { self.ptr.add(index).read() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once_in_order() {
        for items in [0, 1, 5, 12, 100] {
            for workers in 1..5 {
                let ranges: std::vec::Vec<_> =
                    (0..workers).map(|w| share(items, workers, w)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[workers - 1].end, items);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                    assert!(pair[1].len() <= pair[0].len() + 1);
                }
            }
        }
    }

    #[test]
    fn one_worker_runs_the_job_once_as_worker_zero() {
        let seen = core::sync::atomic::AtomicUsize::new(usize::MAX);
        let job = |i: usize| {
            seen.store(i, core::sync::atomic::Ordering::Relaxed);
        };
        OneWorker.run(&job);
        assert_eq!(seen.load(core::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(OneWorker.count(), 1);
    }
}

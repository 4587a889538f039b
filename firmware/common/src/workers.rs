//! Every matrix's rows split between two processors that share memory (the RP2350's cores),
//! through one job slot; and the same two-way split run in turn on one processor.
//!
//! core's forward pass hands each streamed run of a matrix to [`Workers::run`] with a job
//! computing worker `i`'s share of the rows (`picogpt_core::workers`): each row is computed
//! whole by one worker, in the same order whoever runs it, so the bits never depend on who
//! computed what. Here the caller (the core running the model) posts the job in a
//! [`JobSlot`], wakes the helper (the other core), computes share 0 itself, and waits until
//! the helper has computed share 1 and handed the slot back. The helper's side is
//! [`JobSlot::serve`], called whenever it is woken; between jobs it does its own work (the
//! Pico 2's core 0 serves USB).
//!
//! The job borrows the caller's stack (the forward pass's buffers), so the slot's protocol
//! is what keeps it sound: a job is posted only by the one [`Pair`] the slot lends at a
//! time, and [`Pair::run`] does not return, even when unwinding, before the helper has
//! returned from it.
#![allow(unsafe_code)]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use picogpt_core::Workers;

/// A job as core's forward pass hands it to its workers.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// No job in the slot.
const IDLE: u8 = 0;
/// A job posted, not yet taken by the helper.
const POSTED: u8 = 1;
/// The helper is running the job's share 1.
const TAKEN: u8 = 2;

/// The meeting point of a caller and a helper: one job at a time, share 1 for the helper.
pub struct JobSlot {
    /// [`IDLE`], [`POSTED`] or [`TAKEN`].
    state: AtomicU8,
    /// While posted or taken: the address of the caller's [`Job`] (a reference on its
    /// stack, live until the state is idle again).
    job: AtomicPtr<()>,
    /// Whether a [`Pair`] is lent.
    lent: AtomicBool,
}

impl Default for JobSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl JobSlot {
    /// An idle slot, lending no pair (a `static`'s initializer).
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            job: AtomicPtr::new(ptr::null_mut()),
            lent: AtomicBool::new(false),
        }
    }

    /// The caller's two workers over this slot, or `None` while another pair is lent.
    /// `wake` tells the helper a job was posted (an SEV, an executor's signal); `wait` is
    /// what the caller does while the helper finishes (a WFE, a spin).
    pub fn pair<K: FnMut(), T: FnMut()>(&self, wake: K, wait: T) -> Option<Pair<'_, K, T>> {
        let free = self.lent.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed);
        free.is_ok().then_some(Pair { slot: self, wake, wait })
    }

    /// The helper's side: runs the posted job's share 1, then hands the slot back; `false`
    /// when no job was posted. The caller waits meanwhile, so the helper should wake it
    /// (an SEV) after a `true`.
    pub fn serve(&self) -> bool {
        let taken =
            self.state.compare_exchange(POSTED, TAKEN, Ordering::Acquire, Ordering::Relaxed);
        if taken.is_err() {
            return false;
        }
        // Idle again when the share returns, or unwinds: the caller may then go on.
        let _handback = Handback(&self.state);
        let at = self.job.load(Ordering::Relaxed).cast::<Job<'_>>();
        // SAFETY: `at` was stored before POSTED was released (acquired above) by the lent
        // pair's `run`, and is the address of a `Job` on that call's stack; `run` neither
        // returns nor unwinds before the state is idle again (`_handback`), so the reference
        // and everything the job borrows outlive this call.
        let job = unsafe { *at };
        job(1);
        true
    }

    /// Takes back a posted job the helper has not taken, waits (with `wait`) while it runs
    /// one, and lends pairs again: for a caller that lost its pair without dropping it (the
    /// Pico 2's core 1 restarting on a fresh stack after a fault).
    ///
    /// # Safety
    /// No pair of this slot may be in use, nor be used again.
    pub unsafe fn recover(&self, mut wait: impl FnMut()) {
        let _ = self.state.compare_exchange(POSTED, IDLE, Ordering::AcqRel, Ordering::Relaxed);
        while self.state.load(Ordering::Acquire) != IDLE {
            wait();
        }
        self.lent.store(false, Ordering::Release);
    }
}

/// Sets the slot idle when dropped: the helper's share has returned (or unwound).
struct Handback<'a>(&'a AtomicU8);

impl Drop for Handback<'_> {
    fn drop(&mut self) {
        self.0.store(IDLE, Ordering::Release);
    }
}

/// Two workers: the caller (share 0) and the helper serving the slot (share 1).
pub struct Pair<'s, K: FnMut(), T: FnMut()> {
    slot: &'s JobSlot,
    wake: K,
    wait: T,
}

impl<K: FnMut(), T: FnMut()> Pair<'_, K, T> {
    /// Waits until the helper has handed the slot back.
    fn settle(&mut self) {
        while self.slot.state.load(Ordering::Acquire) != IDLE {
            (self.wait)();
        }
    }
}

/// Waits for the helper when dropped, so that `run` cannot unwind past a running share.
struct Settle<'p, 's, K: FnMut(), T: FnMut()>(&'p mut Pair<'s, K, T>);

impl<K: FnMut(), T: FnMut()> Drop for Settle<'_, '_, K, T> {
    fn drop(&mut self) {
        self.0.settle();
    }
}

impl<K: FnMut(), T: FnMut()> Workers for Pair<'_, K, T> {
    fn count(&self) -> usize {
        2
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        let posted: Job<'_> = job;
        let at = ptr::from_ref(&posted).cast_mut().cast::<()>();
        // The slot is idle: this pair is the only one, and each run settles before returning.
        self.slot.job.store(at, Ordering::Relaxed);
        self.slot.state.store(POSTED, Ordering::Release);
        let settle = Settle(self);
        (settle.0.wake)();
        job(0);
        drop(settle);
    }
}

impl<K: FnMut(), T: FnMut()> Drop for Pair<'_, K, T> {
    fn drop(&mut self) {
        self.slot.lent.store(false, Ordering::Release);
    }
}

/// `count` workers run one after another on the caller: the split a multi-core board makes,
/// on one core, so a single-core target prints what the split gives (the same bits as one
/// worker, by core's construction).
#[derive(Clone, Copy, Debug)]
pub struct InTurn(pub usize);

impl Workers for InTurn {
    fn count(&self) -> usize {
        self.0.max(1)
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        (0..self.count()).for_each(job);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::sync::atomic::AtomicUsize;
    use std::thread;
    use std::vec::Vec;

    use super::*;

    /// A helper thread serving `slot` until `stop`; returns how many shares it ran.
    fn helper<'s>(
        scope: &'s thread::Scope<'s, '_>,
        slot: &'s JobSlot,
        stop: &'s AtomicBool,
    ) -> thread::ScopedJoinHandle<'s, usize> {
        scope.spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Acquire) {
                if slot.serve() {
                    served += 1;
                } else {
                    thread::yield_now();
                }
            }
            served
        })
    }

    #[test]
    fn both_shares_run_once_on_two_threads_and_the_rows_are_the_split_ones() {
        let slot = JobSlot::new();
        let stop = AtomicBool::new(false);
        let wakes = AtomicUsize::new(0);
        let jobs = 500;
        thread::scope(|scope| {
            let helper = helper(scope, &slot, &stop);
            let wake = || {
                wakes.fetch_add(1, Ordering::Relaxed);
            };
            let mut pair = slot.pair(wake, thread::yield_now).unwrap();
            assert_eq!(pair.count(), 2);
            for n in 0..jobs {
                // Each share writes its half of the rows, as core's forward pass does.
                let rows: Vec<AtomicUsize> = (0..n % 17 + 1).map(|_| AtomicUsize::new(0)).collect();
                let who: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
                pair.run(&|w| {
                    who[w].fetch_add(1, Ordering::Relaxed);
                    let (len, count) = (rows.len(), 2);
                    for row in &rows[len * w / count..len * (w + 1) / count] {
                        row.store(n * 1000 + w + 1, Ordering::Relaxed);
                    }
                    if w == 1 {
                        // A slow helper: the caller must wait for it.
                        for _ in 0..n % 5 {
                            thread::yield_now();
                        }
                    }
                });
                // Returned only after both shares: every row is written, by its share.
                assert_eq!(
                    who.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>(),
                    [1, 1]
                );
                let len = rows.len();
                for (i, row) in rows.iter().enumerate() {
                    let share = if i < len / 2 { 1 } else { 2 };
                    assert_eq!(row.load(Ordering::Relaxed), n * 1000 + share, "job {n} row {i}");
                }
            }
            drop(pair);
            stop.store(true, Ordering::Release);
            assert_eq!(helper.join().unwrap(), jobs);
        });
        assert_eq!(wakes.load(Ordering::Relaxed), jobs);
    }

    #[test]
    fn one_pair_at_a_time() {
        let slot = JobSlot::new();
        let first = slot.pair(|| {}, || {}).unwrap();
        assert!(slot.pair(|| {}, || {}).is_none());
        drop(first);
        assert!(slot.pair(|| {}, || {}).is_some());
    }

    #[test]
    fn nothing_posted_nothing_served() {
        let slot = JobSlot::new();
        assert!(!slot.serve());
    }

    #[test]
    fn recovery_takes_back_an_untaken_job_and_lends_again() {
        let slot = JobSlot::new();
        let pair = slot.pair(|| {}, || {}).unwrap();
        // A caller that posted and vanished: its pair forgotten, its job never taken.
        let never = |_: usize| unreachable!("a job taken back is not run");
        let posted: Job<'_> = &never;
        slot.job.store(ptr::from_ref(&posted).cast_mut().cast(), Ordering::Relaxed);
        slot.state.store(POSTED, Ordering::Release);
        core::mem::forget(pair);
        // SAFETY: the only pair is forgotten.
        unsafe { slot.recover(|| {}) };
        assert!(!slot.serve());
        assert!(slot.pair(|| {}, || {}).is_some());
    }

    #[test]
    fn in_turn_runs_every_share_in_order() {
        let order = std::sync::Mutex::new(Vec::new());
        InTurn(3).run(&|w| order.lock().unwrap().push(w));
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(InTurn(0).count(), 1);
    }
}

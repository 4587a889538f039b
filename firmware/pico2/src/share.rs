//! Core 0's share of the model's work: every matrix's rows are split between the two cores
//! (picogpt-board's `workers`). Core 1 runs the model and posts each streamed run's job in
//! [`SLOT`], rings [`POSTED`], computes the first half of the rows and waits (WFE) for the
//! second; core 0's [`serve_rows`] task computes that half between its USB tasks and wakes
//! core 1 (SEV).
//!
//! Why core 1 keeps the model and core 0 helps, not the reverse: core 1's loop, stack and
//! fault recovery stay as they were, and core 0's executor already sleeps in WFE between USB
//! events, so a job is one more task to wake. A job is one streamed run of one matrix (at
//! most the 16 KiB window from the card, about 0.5 ms per core and position on the f32 path;
//! a whole tensor of the small flash pack read in place), and the task yields to USB after
//! each; USB's own interrupt only wakes its tasks. Each row is
//! computed whole by one core, in core's fixed order, so the bits are the one-core bits.

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use picogpt_board::workers::{JobSlot, Pair};

/// Where core 1 posts a job's share for core 0.
pub static SLOT: JobSlot = JobSlot::new();

/// Rung by core 1 after posting a job; wakes [`serve_rows`] on core 0.
static POSTED: Signal<CriticalSectionRawMutex, ()> = Signal::new();

/// Tells core 0 a job was posted.
fn ring() {
    POSTED.signal(());
}

/// Core 1 and core 0 as workers: ring core 0, wait in WFE.
pub type Cores = Pair<'static, fn(), fn()>;

/// Core 1's two workers: itself and core 0 (`None` if lent already, as it is only once).
pub fn workers() -> Option<Cores> {
    SLOT.pair(ring as fn(), cortex_m::asm::wfe as fn())
}

/// Core 0: computes the second half of every job core 1 posts, yielding to the USB tasks
/// after each.
#[embassy_executor::task]
pub async fn serve_rows() -> ! {
    loop {
        POSTED.wait().await;
        while SLOT.serve() {
            // Core 1 waits in WFE for the slot to come back.
            cortex_m::asm::sev();
            embassy_futures::yield_now().await;
        }
    }
}

/// After a fault on core 1: takes back a job core 0 has not started, and waits while it
/// runs one (it reads core 1's old stack), so core 1 may reuse that stack and the slot.
pub fn recover() {
    // SAFETY: the pair lived in the faulted call's frames, which are gone and never resumed.
    unsafe { SLOT.recover(cortex_m::asm::wfe) };
}

//! What a storage's bus carried: SD commands and bytes, for the per-token figures a board
//! prints (`sd per token: …`). Storages without such a bus report nothing.

use core::ops::{Add, Sub};

use picogpt_core::SliceStorage;

/// Commands and bytes a card's bus has carried (since start-up, or over a span).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Commands sent (every CMD and ACMD, CMD12 included).
    pub commands: u64,
    /// Multi-block reads started (CMD18).
    pub multi_reads: u64,
    /// Single-block reads (CMD17).
    pub single_reads: u64,
    /// Writes started (CMD24 and CMD25).
    pub writes: u64,
    /// Blocks read.
    pub blocks_read: u64,
    /// Blocks written.
    pub blocks_written: u64,
    /// Bytes clocked either way: commands, responses, tokens, CRCs, idle bytes and data.
    pub bus_bytes: u64,
}

impl Sub for Traffic {
    type Output = Traffic;

    /// What was carried between two readings.
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            commands: self.commands.saturating_sub(earlier.commands),
            multi_reads: self.multi_reads.saturating_sub(earlier.multi_reads),
            single_reads: self.single_reads.saturating_sub(earlier.single_reads),
            writes: self.writes.saturating_sub(earlier.writes),
            blocks_read: self.blocks_read.saturating_sub(earlier.blocks_read),
            blocks_written: self.blocks_written.saturating_sub(earlier.blocks_written),
            bus_bytes: self.bus_bytes.saturating_sub(earlier.bus_bytes),
        }
    }
}

impl Add for Traffic {
    type Output = Traffic;

    /// Two spans together.
    fn add(self, other: Traffic) -> Traffic {
        Traffic {
            commands: self.commands + other.commands,
            multi_reads: self.multi_reads + other.multi_reads,
            single_reads: self.single_reads + other.single_reads,
            writes: self.writes + other.writes,
            blocks_read: self.blocks_read + other.blocks_read,
            blocks_written: self.blocks_written + other.blocks_written,
            bus_bytes: self.bus_bytes + other.bus_bytes,
        }
    }
}

impl Traffic {
    /// The mean of a span over `n` passes (`None` for no pass).
    pub fn per(&self, n: u64) -> Option<Traffic> {
        let div = |v: u64| v.checked_div(n);
        Some(Traffic {
            commands: div(self.commands)?,
            multi_reads: div(self.multi_reads)?,
            single_reads: div(self.single_reads)?,
            writes: div(self.writes)?,
            blocks_read: div(self.blocks_read)?,
            blocks_written: div(self.blocks_written)?,
            bus_bytes: div(self.bus_bytes)?,
        })
    }
}

/// A storage that can say what its bus has carried so far.
pub trait Metered {
    /// The totals so far; the default is none at all (no bus to speak of).
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

impl Metered for SliceStorage<'_> {}

impl<T: Metered + ?Sized> Metered for &mut T {
    fn traffic(&self) -> Traffic {
        (**self).traffic()
    }
}

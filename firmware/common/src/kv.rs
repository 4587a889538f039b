//! The KV cache of one generation: all in RAM when the context fits, otherwise its first
//! positions in RAM and the rest spilled to writable storage (core's [`TieredKv`] over a
//! [`StorageKv`]): `KV.BIN` on an SD card, a host file under QEMU. Where the split falls is
//! [`crate::budget`]'s business.

use core::convert::Infallible;
use core::fmt;

use picogpt_core::kv::{KvRangeError, StorageKvError, TieredKvError};
pub use picogpt_core::kv::{bytes_per_position, positions_in};
use picogpt_core::{KvCache, RamKv, Storage, StorageKv, StorageMut, TieredKv};

/// The error of a [`BoardKv`] whose spill storage fails with `E`.
pub type KvError<E> = TieredKvError<KvRangeError, StorageKvError<E>>;

/// The error of the storage a [`Spill`] provides.
pub type SpillStorageError<P> = <<P as Spill>::Storage as Storage>::Error;

/// Where the KV positions that do not fit the RAM go.
pub trait Spill {
    /// The writable storage it provides.
    type Storage: StorageMut;

    /// Where it is, for the `kv:` line: `sd`, `host`.
    fn medium(&self) -> &'static str;

    /// What it is called there, for the `kv:` line: `KV.BIN`, a host path.
    fn name(&self) -> &str;

    /// Whether there is storage to spill to, or what to do instead (the hint of the error
    /// when a context does not fit the RAM).
    fn available(&self) -> Result<(), &'static str>;

    /// Storage holding at least `bytes` from offset 0, opened (and grown) only now, when a
    /// generation needs it.
    fn open(&mut self, bytes: u64) -> Result<Self::Storage, SpillError<SpillStorageError<Self>>>;
}

/// Why a [`Spill`] gives no storage.
#[derive(Debug, PartialEq, Eq)]
pub enum SpillError<E> {
    /// There is none here; the hint says how to get one, or what to do instead.
    Unavailable {
        /// `give --kv-file PATH`, say.
        hint: &'static str,
    },
    /// The file would be larger than its file system allows.
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// Bytes it would need.
        bytes: u64,
    },
    /// The storage failed while being opened or grown.
    Storage {
        /// What the file is.
        what: &'static str,
        /// Its error.
        error: E,
    },
}

impl<E: fmt::Display> fmt::Display for SpillError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable { hint } => write!(f, "no storage for the KV cache: {hint}"),
            Self::TooLarge { what, bytes } => {
                write!(f, "{what} would be {bytes} bytes, more than a file can hold here")
            }
            Self::Storage { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

/// No writable storage: every context must fit the RAM.
pub struct NoSpill {
    /// What the error says to do instead.
    pub hint: &'static str,
}

impl Spill for NoSpill {
    type Storage = NoStorage;

    fn medium(&self) -> &'static str {
        "no storage"
    }

    fn name(&self) -> &str {
        "none"
    }

    fn available(&self) -> Result<(), &'static str> {
        Err(self.hint)
    }

    fn open(&mut self, _bytes: u64) -> Result<NoStorage, SpillError<Infallible>> {
        Err(SpillError::Unavailable { hint: self.hint })
    }
}

/// Storage that cannot exist: what [`NoSpill`] provides.
#[derive(Debug)]
pub enum NoStorage {}

impl Storage for NoStorage {
    type Error = Infallible;

    fn read_at(&mut self, _offset: u64, _buf: &mut [u8]) -> Result<usize, Infallible> {
        match *self {}
    }

    fn size(&mut self) -> Result<u64, Infallible> {
        match *self {}
    }
}

impl StorageMut for NoStorage {
    fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> Result<(), Infallible> {
        match *self {}
    }
}

/// A board's KV cache: RAM only, or RAM then spill storage.
pub enum BoardKv<'a, P> {
    /// Every position in RAM.
    Ram(RamKv<'a>),
    /// The first positions in RAM, the rest in storage.
    Spilled(TieredKv<RamKv<'a>, StorageKv<'a, P>>),
}

impl<P: StorageMut> KvCache for BoardKv<'_, P> {
    type Error = KvError<P::Error>;

    fn positions(&self) -> usize {
        match self {
            Self::Ram(ram) => ram.positions(),
            Self::Spilled(tiers) => tiers.positions(),
        }
    }

    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), Self::Error> {
        match self {
            Self::Ram(ram) => ram.store(layer, pos, k, v).map_err(TieredKvError::Ram),
            Self::Spilled(tiers) => tiers.store(layer, pos, k, v),
        }
    }

    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), Self::Error> {
        match self {
            Self::Ram(ram) => ram.load(layer, pos, k, v).map_err(TieredKvError::Ram),
            Self::Spilled(tiers) => tiers.load(layer, pos, k, v),
        }
    }
}

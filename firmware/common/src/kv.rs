//! The KV cache of one generation: all in RAM when the context fits, otherwise its first
//! positions in RAM and the rest spilled to writable storage (core's [`TieredKv`] over a
//! [`StorageKv`]): `KV.BIN` on an SD card, a host file under QEMU.

use core::convert::Infallible;
use core::fmt;

use picogpt_core::kv::{self, KvRangeError, StorageKvError, TieredKvError};
use picogpt_core::{
    Error, KvCache, KvFormat, ModelConfig, RamKv, Storage, StorageKv, StorageMut, TieredKv,
};

use crate::failure::Failure;

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

/// Where [`place`] put the positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Positions in RAM.
    pub ram: usize,
    /// Bytes per position.
    pub position_bytes: usize,
    /// Positions in spill storage.
    pub spilled: usize,
}

/// A board's KV cache over `P`'s storage, and where its positions are.
pub type Placed<'a, P> = (BoardKv<'a, <P as Spill>::Storage>, Placement);

/// A KV cache of `needed` positions in `format`: in `ram` if they fit, else as many as fit
/// there (after a one-record buffer for the spill) and the rest in storage from `spill`.
pub fn place<'a, SE, P: Spill>(
    cfg: &ModelConfig,
    format: KvFormat,
    ram: &'a mut [u8],
    needed: usize,
    spill: &mut P,
) -> Result<Placed<'a, P>, Failure<SE, SpillStorageError<P>>> {
    let position_bytes = kv::bytes_per_position(cfg, format);
    let in_ram = kv::positions_in(cfg, format, ram.len());
    if in_ram >= needed {
        let placement = Placement { ram: in_ram, position_bytes, spilled: 0 };
        return Ok((BoardKv::Ram(RamKv::new(cfg, format, ram)), placement));
    }
    let short = |hint| Failure::KvCache { needed, positions: in_ram, position_bytes, hint };
    let record = StorageKv::<P::Storage>::buffer_bytes(cfg, format);
    let Some((buf, rest)) = ram.split_at_mut_checked(record) else {
        return Err(short("the RAM cannot even buffer one record of a spilled cache"));
    };
    let ram = RamKv::new(cfg, format, rest);
    let spilled = needed - ram.positions();
    let bytes = spilled as u64 * position_bytes as u64;
    let storage = spill.open(bytes).map_err(|e| match e {
        SpillError::Unavailable { hint } => short(hint),
        e => Failure::Spill(e),
    })?;
    let given = buf.len();
    let disk = StorageKv::new(cfg, format, storage, 0, spilled, buf).map_err(|_| {
        Failure::Core(Error::BufferTooSmall { what: "KV record buffer", needed: record, given })
    })?;
    let placement = Placement { ram: ram.positions(), position_bytes, spilled };
    Ok((BoardKv::Spilled(TieredKv::new(ram, disk)), placement))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn config() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_ctx: 64,
            vocab_size: 100,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// Spill storage in a vector, as a file that grows to what is asked.
    struct VecFile(Vec<u8>);

    impl Storage for VecFile {
        type Error = Infallible;

        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Infallible> {
            let at = (offset as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - at);
            buf[..n].copy_from_slice(&self.0[at..at + n]);
            Ok(n)
        }

        fn size(&mut self) -> Result<u64, Infallible> {
            Ok(self.0.len() as u64)
        }
    }

    impl StorageMut for VecFile {
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Infallible> {
            let at = offset as usize;
            self.0[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
    }

    struct VecSpill;

    impl Spill for VecSpill {
        type Storage = VecFile;

        fn medium(&self) -> &'static str {
            "test"
        }

        fn name(&self) -> &str {
            "vec"
        }

        fn open(&mut self, bytes: u64) -> Result<VecFile, SpillError<Infallible>> {
            Ok(VecFile(vec![0; bytes as usize]))
        }
    }

    #[test]
    fn a_context_that_fits_stays_in_ram() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let (kv, placement) =
            place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 10, &mut VecSpill)
                .unwrap_or_else(|_| panic!("placement failed"));
        assert!(matches!(kv, BoardKv::Ram(_)));
        assert_eq!(placement, Placement { ram: 10, position_bytes: 1024, spilled: 0 });
    }

    #[test]
    fn the_rest_spills_and_reads_back_exactly() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let (mut kv, placement) =
            place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 30, &mut VecSpill)
                .unwrap_or_else(|_| panic!("placement failed"));
        // One position's worth of RAM became the spill's record buffer.
        assert_eq!(placement, Placement { ram: 9, position_bytes: 1024, spilled: 21 });
        assert_eq!(kv.positions(), 30);
        let row = |pos: usize| -> Vec<f32> { (0..64).map(|i| (pos * 64 + i) as f32).collect() };
        for pos in 0..30 {
            kv.store(1, pos, &row(pos), &row(pos + 100)).unwrap();
        }
        let (mut k, mut v) = (vec![0.0; 64], vec![0.0; 64]);
        for pos in 0..30 {
            kv.load(1, pos, &mut k, &mut v).unwrap();
            assert_eq!((&k, &v), (&row(pos), &row(pos + 100)), "position {pos}");
        }
    }

    #[test]
    fn without_spill_storage_the_error_names_the_positions() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let mut none = NoSpill { hint: "shorten the prompt" };
        let Err(failure) = place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 30, &mut none)
        else {
            panic!("placement without spill storage succeeded");
        };
        let mut line = std::string::String::new();
        fmt::write(&mut line, format_args!("{failure}")).unwrap();
        assert_eq!(
            line,
            "30 positions needed, the KV cache in RAM holds 10 (1024 bytes each): shorten the \
             prompt"
        );
    }
}

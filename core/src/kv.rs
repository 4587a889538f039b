//! The attention KV cache: a trait, and an implementation over a caller's RAM buffer.

use core::fmt;

use crate::config::ModelConfig;
use crate::kernels::{decode_f16, decode_f32};
use crate::quant::{encode_f16, encode_f32, encode_int8_groups};
use crate::storage::Storage;

/// Keys and values of past positions, one row of `n_embd` each per layer and position.
///
/// The forward pass stores a position's rows before any query reads them, so a cache that
/// rounds (f16, int8) is read back exactly as it was stored, on every target.
pub trait KvCache {
    /// The cache's own failure (a storage-backed cache's I/O error, say).
    type Error: fmt::Debug + fmt::Display;

    /// Positions the cache can hold.
    fn positions(&self) -> usize;

    /// Stores the key and value rows of `layer` at `pos`.
    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), Self::Error>;

    /// Loads the key and value rows of `layer` at `pos` into `k` and `v`.
    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), Self::Error>;
}

/// Element format of a [`RamKv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvFormat {
    /// 4 bytes per value, exact.
    F32,
    /// 2 bytes per value.
    F16,
    /// 1 byte per value plus one f32 scale per head and row.
    Int8,
}

/// A [`RamKv`] access outside what it was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KvRangeError {
    /// Layer asked for.
    pub layer: usize,
    /// Position asked for.
    pub pos: usize,
    /// Row length given.
    pub row: usize,
}

impl fmt::Display for KvRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KV access outside the cache: layer {}, position {}, row of {}",
            self.layer, self.pos, self.row
        )
    }
}

impl core::error::Error for KvRangeError {}

/// Where and how a cache stores (layer, position) records: key row, then value row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Records {
    format: KvFormat,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    positions: usize,
}

impl Records {
    fn new(config: &ModelConfig, format: KvFormat, positions: usize) -> Self {
        Self {
            format,
            n_layer: config.n_layer as usize,
            n_embd: config.embd(),
            n_head: config.n_head as usize,
            positions,
        }
    }

    /// Bytes of one key (or value) row with its scales.
    fn half(&self) -> usize {
        match self.format {
            KvFormat::F32 => 4 * self.n_embd,
            KvFormat::F16 => 2 * self.n_embd,
            KvFormat::Int8 => self.n_embd + 4 * self.n_head,
        }
    }

    /// Byte offset of (layer, pos)'s record, checked against the cache and the row length.
    fn offset(&self, layer: usize, pos: usize, row: usize) -> Result<usize, KvRangeError> {
        if layer >= self.n_layer || pos >= self.positions || row != self.n_embd {
            return Err(KvRangeError { layer, pos, row });
        }
        Ok((layer * self.positions + pos) * 2 * self.half())
    }

    /// Encodes a key and a value row into one record.
    fn encode(&self, k: &[f32], v: &[f32], out: &mut [u8]) {
        let (k_out, v_out) = out.split_at_mut(self.half());
        write_row(self.format, self.n_head, k, k_out);
        write_row(self.format, self.n_head, v, v_out);
    }

    /// Decodes one record into a key and a value row.
    fn decode(&self, record: &[u8], k: &mut [f32], v: &mut [f32]) {
        let (k_in, v_in) = record.split_at(self.half());
        read_row(self.format, self.n_head, k_in, k);
        read_row(self.format, self.n_head, v_in, v);
    }
}

/// Bytes one position takes across all layers (keys and values).
pub fn bytes_per_position(config: &ModelConfig, format: KvFormat) -> usize {
    config.n_layer as usize * 2 * Records::new(config, format, 0).half()
}

/// How many positions a cache of `format` holds in `bytes` (at most `n_ctx`): what a RAM
/// budget leaves for the cache once the workspace is carved.
pub fn positions_in(config: &ModelConfig, format: KvFormat, bytes: usize) -> usize {
    (bytes / bytes_per_position(config, format).max(1)).min(config.n_ctx as usize)
}

/// A KV cache in a caller-provided byte buffer.
pub struct RamKv<'a> {
    mem: &'a mut [u8],
    records: Records,
}

impl<'a> RamKv<'a> {
    /// Bytes one position takes across all layers (keys and values).
    pub fn bytes_per_position(config: &ModelConfig, format: KvFormat) -> usize {
        bytes_per_position(config, format)
    }

    /// A cache holding as many positions as fit `mem` (at most `n_ctx`).
    pub fn new(config: &ModelConfig, format: KvFormat, mem: &'a mut [u8]) -> Self {
        let positions = positions_in(config, format, mem.len());
        Self { mem, records: Records::new(config, format, positions) }
    }

    /// Element format.
    pub fn format(&self) -> KvFormat {
        self.records.format
    }
}

fn write_row(format: KvFormat, n_head: usize, row: &[f32], out: &mut [u8]) {
    match format {
        KvFormat::F32 => encode_f32(row, out),
        KvFormat::F16 => encode_f16(row, out),
        KvFormat::Int8 => {
            let (scale_bytes, q_bytes) = out.split_at_mut(4 * n_head);
            let head = row.len() / n_head;
            for ((part, sb), qb) in row
                .chunks_exact(head)
                .zip(scale_bytes.chunks_exact_mut(4))
                .zip(q_bytes.chunks_exact_mut(head))
            {
                let mut scale = [0.0f32];
                encode_int8_groups(part, head, &mut scale, bytemuck::cast_slice_mut(qb));
                sb.copy_from_slice(&scale[0].to_le_bytes());
            }
        }
    }
}

fn read_row(format: KvFormat, n_head: usize, bytes: &[u8], row: &mut [f32]) {
    match format {
        KvFormat::F32 => decode_f32(bytes, row),
        KvFormat::F16 => decode_f16(bytes, row),
        KvFormat::Int8 => {
            let (scale_bytes, q_bytes) = bytes.split_at(4 * n_head);
            let head = row.len() / n_head;
            for ((part, sb), qb) in row
                .chunks_exact_mut(head)
                .zip(scale_bytes.chunks_exact(4))
                .zip(q_bytes.chunks_exact(head))
            {
                let s = f32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]);
                for (o, &q) in part.iter_mut().zip(qb) {
                    *o = s * f32::from(q as i8);
                }
            }
        }
    }
}

/// Checks that a key and a value row have the same length.
fn same_rows(layer: usize, pos: usize, k: usize, v: usize) -> Result<(), KvRangeError> {
    if k == v { Ok(()) } else { Err(KvRangeError { layer, pos, row: v }) }
}

impl KvCache for RamKv<'_> {
    type Error = KvRangeError;

    fn positions(&self) -> usize {
        self.records.positions
    }

    fn store(
        &mut self,
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvRangeError> {
        same_rows(layer, pos, k.len(), v.len())?;
        let at = self.records.offset(layer, pos, k.len())?;
        let len = 2 * self.records.half();
        self.records.encode(k, v, &mut self.mem[at..at + len]);
        Ok(())
    }

    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), KvRangeError> {
        same_rows(layer, pos, k.len(), v.len())?;
        let at = self.records.offset(layer, pos, k.len())?;
        let len = 2 * self.records.half();
        self.records.decode(&self.mem[at..at + len], k, v);
        Ok(())
    }
}

/// Writable storage: a preallocated file on the SD card, a host file.
pub trait StorageMut: Storage {
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Self::Error>;
}

/// Why a [`StorageKv`] access failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StorageKvError<E> {
    /// Outside the cache.
    Range(KvRangeError),
    /// The storage failed at this offset.
    Io {
        /// The storage's error.
        error: E,
        /// Offset of the record.
        offset: u64,
    },
    /// The storage ended inside a record (the cache file is smaller than its positions).
    Eof {
        /// Offset of the record.
        offset: u64,
    },
}

impl<E: fmt::Display> fmt::Display for StorageKvError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range(e) => write!(f, "{e}"),
            Self::Io { error, offset } => write!(f, "KV storage at offset {offset}: {error}"),
            Self::Eof { offset } => write!(f, "KV storage ends inside the record at {offset}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for StorageKvError<E> {}

/// A KV cache in writable storage, for contexts that outgrow RAM: each record is written
/// once and read back through a one-record buffer of the caller's.
pub struct StorageKv<'a, S> {
    storage: S,
    base: u64,
    buf: &'a mut [u8],
    records: Records,
}

impl<'a, S: StorageMut> StorageKv<'a, S> {
    /// Bytes of the record buffer a `StorageKv` needs.
    pub fn buffer_bytes(config: &ModelConfig, format: KvFormat) -> usize {
        2 * Records::new(config, format, 0).half()
    }

    /// A cache of `positions` positions at `base` in `storage` (which must hold
    /// `positions × bytes_per_position` bytes from there), with `buf` of
    /// [`Self::buffer_bytes`] bytes.
    pub fn new(
        config: &ModelConfig,
        format: KvFormat,
        storage: S,
        base: u64,
        positions: usize,
        buf: &'a mut [u8],
    ) -> Result<Self, KvRangeError> {
        let records = Records::new(config, format, positions.min(config.n_ctx as usize));
        if buf.len() < 2 * records.half() {
            return Err(KvRangeError { layer: 0, pos: 0, row: buf.len() });
        }
        Ok(Self { storage, base, buf, records })
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

impl<S: StorageMut> KvCache for StorageKv<'_, S> {
    type Error = StorageKvError<S::Error>;

    fn positions(&self) -> usize {
        self.records.positions
    }

    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), Self::Error> {
        same_rows(layer, pos, k.len(), v.len()).map_err(StorageKvError::Range)?;
        let at = self.records.offset(layer, pos, k.len()).map_err(StorageKvError::Range)?;
        let offset = self.base + at as u64;
        let record = &mut self.buf[..2 * self.records.half()];
        self.records.encode(k, v, record);
        self.storage.write_at(offset, record).map_err(|error| StorageKvError::Io { error, offset })
    }

    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), Self::Error> {
        same_rows(layer, pos, k.len(), v.len()).map_err(StorageKvError::Range)?;
        let at = self.records.offset(layer, pos, k.len()).map_err(StorageKvError::Range)?;
        let offset = self.base + at as u64;
        let record = &mut self.buf[..2 * self.records.half()];
        let mut done = 0;
        while done < record.len() {
            let n = self
                .storage
                .read_at(offset + done as u64, &mut record[done..])
                .map_err(|error| StorageKvError::Io { error, offset })?;
            if n == 0 {
                return Err(StorageKvError::Eof { offset });
            }
            done += n;
        }
        self.records.decode(record, k, v);
        Ok(())
    }
}

/// Why a [`TieredKv`] access failed.
#[derive(Debug, PartialEq, Eq)]
pub enum TieredKvError<A, B> {
    /// The RAM tier failed.
    Ram(A),
    /// The spill tier failed.
    Spill(B),
}

impl<A: fmt::Display, B: fmt::Display> fmt::Display for TieredKvError<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ram(e) => write!(f, "RAM KV cache: {e}"),
            Self::Spill(e) => write!(f, "spilled KV cache: {e}"),
        }
    }
}

impl<A: fmt::Debug + fmt::Display, B: fmt::Debug + fmt::Display> core::error::Error
    for TieredKvError<A, B>
{
}

/// The first positions in a RAM cache, the rest in a second (storage-backed) one: what a
/// board with a fixed SRAM budget does when the context outgrows it.
pub struct TieredKv<A, B> {
    ram: A,
    spill: B,
}

impl<A: KvCache, B: KvCache> TieredKv<A, B> {
    /// Positions `0..ram.positions()` go to `ram`, the following ones to `spill`.
    pub fn new(ram: A, spill: B) -> Self {
        Self { ram, spill }
    }

    /// Positions held in RAM.
    pub fn ram_positions(&self) -> usize {
        self.ram.positions()
    }

    /// The two tiers.
    pub fn into_parts(self) -> (A, B) {
        (self.ram, self.spill)
    }
}

impl<A: KvCache, B: KvCache> KvCache for TieredKv<A, B> {
    type Error = TieredKvError<A::Error, B::Error>;

    fn positions(&self) -> usize {
        self.ram.positions() + self.spill.positions()
    }

    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), Self::Error> {
        match pos.checked_sub(self.ram.positions()) {
            None => self.ram.store(layer, pos, k, v).map_err(TieredKvError::Ram),
            Some(p) => self.spill.store(layer, p, k, v).map_err(TieredKvError::Spill),
        }
    }

    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), Self::Error> {
        match pos.checked_sub(self.ram.positions()) {
            None => self.ram.load(layer, pos, k, v).map_err(TieredKvError::Ram),
            Some(p) => self.spill.load(layer, p, k, v).map_err(TieredKvError::Spill),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_ctx: 16,
            vocab_size: 100,
            layer_norm_epsilon: 1e-5,
        }
    }

    #[test]
    fn round_trips_each_format_within_its_precision() {
        let cfg = tiny();
        let k: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.37).collect();
        let v: Vec<f32> = (0..64).map(|i| (i as f32).sin() * 3.0).collect();
        for (format, tol) in [(KvFormat::F32, 0.0), (KvFormat::F16, 1e-2), (KvFormat::Int8, 0.06)] {
            let mut mem = vec![0u8; 3 * RamKv::bytes_per_position(&cfg, format)];
            let mut kv = RamKv::new(&cfg, format, &mut mem);
            assert_eq!(kv.positions(), 3);
            kv.store(1, 2, &k, &v).unwrap();
            let (mut k2, mut v2) = (vec![0.0; 64], vec![0.0; 64]);
            kv.load(1, 2, &mut k2, &mut v2).unwrap();
            for (a, b) in k.iter().zip(&k2).chain(v.iter().zip(&v2)) {
                assert!((a - b).abs() <= tol, "{format:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn rejects_positions_beyond_capacity_and_wrong_rows() {
        let cfg = tiny();
        let mut mem = vec![0u8; RamKv::bytes_per_position(&cfg, KvFormat::F16)];
        let mut kv = RamKv::new(&cfg, KvFormat::F16, &mut mem);
        let row = [0.0f32; 64];
        assert_eq!(kv.store(0, 1, &row, &row), Err(KvRangeError { layer: 0, pos: 1, row: 64 }));
        assert_eq!(kv.store(2, 0, &row, &row), Err(KvRangeError { layer: 2, pos: 0, row: 64 }));
        assert!(kv.store(0, 0, &row[..32], &row[..32]).is_err());
    }

    /// A RAM disk standing in for a cache file.
    struct Disk(Vec<u8>);

    impl Storage for Disk {
        type Error = core::convert::Infallible;
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let start = (offset as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
        fn size(&mut self) -> Result<u64, Self::Error> {
            Ok(self.0.len() as u64)
        }
    }

    impl StorageMut for Disk {
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Self::Error> {
            self.0[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
            Ok(())
        }
    }

    #[test]
    fn storage_and_tiered_caches_read_back_what_ram_does() {
        let cfg = tiny();
        let row = |seed: usize| -> Vec<f32> {
            (0..64).map(|i| ((i * 7 + seed) % 23) as f32 - 11.0).collect()
        };
        for format in [KvFormat::F32, KvFormat::F16, KvFormat::Int8] {
            let per = bytes_per_position(&cfg, format);
            let mut ram_mem = vec![0u8; 6 * per];
            let mut ram = RamKv::new(&cfg, format, &mut ram_mem);
            let mut small_mem = vec![0u8; 2 * per];
            let mut buf = vec![0u8; StorageKv::<Disk>::buffer_bytes(&cfg, format)];
            let disk = Disk(vec![0u8; 100 + 4 * per]);
            let spill = StorageKv::new(&cfg, format, disk, 100, 4, &mut buf).unwrap();
            let mut tiered = TieredKv::new(RamKv::new(&cfg, format, &mut small_mem), spill);
            assert_eq!((tiered.positions(), tiered.ram_positions()), (6, 2));
            for pos in 0..6 {
                for layer in 0..2 {
                    let (k, v) = (row(pos * 2 + layer), row(pos * 3 + layer + 5));
                    ram.store(layer, pos, &k, &v).unwrap();
                    tiered.store(layer, pos, &k, &v).unwrap();
                }
            }
            for pos in 0..6 {
                let (mut k1, mut v1, mut k2, mut v2) =
                    (vec![0.0; 64], vec![0.0; 64], vec![0.0; 64], vec![0.0; 64]);
                ram.load(1, pos, &mut k1, &mut v1).unwrap();
                tiered.load(1, pos, &mut k2, &mut v2).unwrap();
                assert_eq!((k1, v1), (k2, v2), "{format:?} position {pos}");
            }
            let row0 = row(0);
            assert!(matches!(
                tiered.store(0, 6, &row0, &row0),
                Err(TieredKvError::Spill(StorageKvError::Range(_)))
            ));
        }
    }

    #[test]
    fn budgets_translate_into_positions() {
        let cfg = ModelConfig::GPT2_124M;
        assert_eq!(positions_in(&cfg, KvFormat::Int8, 400 * 1024), 400 * 1024 / 19_584);
        assert_eq!(positions_in(&cfg, KvFormat::F32, usize::MAX), 1024);
    }

    #[test]
    fn int8_position_costs_one_byte_per_value_plus_head_scales() {
        // GPT-2 124M: 12 layers x 2 x (768 + 12 x 4) = 19,584 bytes per position.
        assert_eq!(RamKv::bytes_per_position(&ModelConfig::GPT2_124M, KvFormat::Int8), 19_584);
    }
}

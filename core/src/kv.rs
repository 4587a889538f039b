//! The attention KV cache: a trait, and an implementation over a caller's RAM buffer.

use core::fmt;

use crate::config::ModelConfig;
use crate::kernels::{decode_f16, decode_f32};
use crate::quant::{encode_f16, encode_f32, encode_int8_groups};

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

/// A KV cache in a caller-provided byte buffer.
pub struct RamKv<'a> {
    mem: &'a mut [u8],
    format: KvFormat,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    positions: usize,
}

impl<'a> RamKv<'a> {
    /// Bytes one position takes across all layers (keys and values).
    pub fn bytes_per_position(config: &ModelConfig, format: KvFormat) -> usize {
        config.n_layer as usize * 2 * Self::half_record(config, format)
    }

    /// Bytes of one key (or value) row with its scales.
    fn half_record(config: &ModelConfig, format: KvFormat) -> usize {
        let d = config.embd();
        match format {
            KvFormat::F32 => 4 * d,
            KvFormat::F16 => 2 * d,
            KvFormat::Int8 => d + 4 * config.n_head as usize,
        }
    }

    /// A cache holding as many positions as fit `mem` (at most `n_ctx`).
    pub fn new(config: &ModelConfig, format: KvFormat, mem: &'a mut [u8]) -> Self {
        let per_position = Self::bytes_per_position(config, format).max(1);
        let positions = (mem.len() / per_position).min(config.n_ctx as usize);
        Self {
            mem,
            format,
            n_layer: config.n_layer as usize,
            n_embd: config.embd(),
            n_head: config.n_head as usize,
            positions,
        }
    }

    /// Element format.
    pub fn format(&self) -> KvFormat {
        self.format
    }

    /// The bytes of (layer, pos): key half then value half.
    fn record(&mut self, layer: usize, pos: usize, row: usize) -> Result<&mut [u8], KvRangeError> {
        if layer >= self.n_layer || pos >= self.positions || row != self.n_embd {
            return Err(KvRangeError { layer, pos, row });
        }
        let half = match self.format {
            KvFormat::F32 => 4 * self.n_embd,
            KvFormat::F16 => 2 * self.n_embd,
            KvFormat::Int8 => self.n_embd + 4 * self.n_head,
        };
        let start = (layer * self.positions + pos) * 2 * half;
        Ok(&mut self.mem[start..start + 2 * half])
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

impl KvCache for RamKv<'_> {
    type Error = KvRangeError;

    fn positions(&self) -> usize {
        self.positions
    }

    fn store(
        &mut self,
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), KvRangeError> {
        let (format, n_head) = (self.format, self.n_head);
        if v.len() != k.len() {
            return Err(KvRangeError { layer, pos, row: v.len() });
        }
        let rec = self.record(layer, pos, k.len())?;
        let (k_out, v_out) = rec.split_at_mut(rec.len() / 2);
        write_row(format, n_head, k, k_out);
        write_row(format, n_head, v, v_out);
        Ok(())
    }

    fn load(
        &mut self,
        layer: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<(), KvRangeError> {
        let (format, n_head) = (self.format, self.n_head);
        if v.len() != k.len() {
            return Err(KvRangeError { layer, pos, row: v.len() });
        }
        let rec = self.record(layer, pos, k.len())?;
        let (k_in, v_in) = rec.split_at(rec.len() / 2);
        read_row(format, n_head, k_in, k);
        read_row(format, n_head, v_in, v);
        Ok(())
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

    #[test]
    fn int8_position_costs_one_byte_per_value_plus_head_scales() {
        // GPT-2 124M: 12 layers x 2 x (768 + 12 x 4) = 19,584 bytes per position.
        assert_eq!(RamKv::bytes_per_position(&ModelConfig::GPT2_124M, KvFormat::Int8), 19_584);
    }
}

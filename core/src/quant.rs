//! Encoders for the stored number formats: the inverse of the decoders in [`crate::kernels`].
//!
//! The packer uses them for weights and the KV cache for its rows, so both round the same way.

use half::f16;

use crate::kernels::f16_to_f32;
use crate::kernels::int8::{Q_BLOCK, int8_block_offset};

/// Encodes `x` as little-endian f32 into `out` (`4 * x.len()` bytes).
pub fn encode_f32(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

/// Encodes `x` as little-endian f16 (round to nearest even) into `out` (`2 * x.len()` bytes).
pub fn encode_f16(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
    }
}

/// The f16 scale for a block whose largest magnitude is `amax`, as stored and as decoded.
fn int8_scale(amax: f32) -> (u16, f32) {
    let bits = f16::from_f32(amax / 127.0).min(f16::MAX).to_bits();
    (bits, f16_to_f32(bits))
}

/// Rounds `v / d` to the nearest int8 in -127..=127 (0 when `d` is 0).
fn int8_value(v: f32, d: f32) -> i8 {
    if d == 0.0 {
        return 0;
    }
    libm::roundf(v / d).clamp(-127.0, 127.0) as i8
}

/// Encodes one row `x` of int8 weights in the pair layout of [`crate::kernels::int8`]:
/// symmetric, one scale per `block` inputs (a multiple of 32 dividing the row; each 32-block
/// of a group stores the group's scale), `d = max|x| / 127` rounded to f16, `q = round(x / d)`.
/// `out` holds `int8_row_bytes(x.len())` bytes.
pub fn encode_int8(x: &[f32], block: usize, out: &mut [u8]) {
    let group = block.max(Q_BLOCK);
    for (g, xg) in x.chunks(group).enumerate() {
        let amax = xg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (bits, d) = int8_scale(amax);
        for (j, xb) in xg.chunks_exact(Q_BLOCK).enumerate() {
            let b = g * group / Q_BLOCK + j;
            let unit = int8_block_offset(b & !1);
            out[unit + 2 * (b & 1)..unit + 2 * (b & 1) + 2].copy_from_slice(&bits.to_le_bytes());
            let at = unit + 4 + (b & 1) * Q_BLOCK;
            for (o, &v) in out[at..at + Q_BLOCK].iter_mut().zip(xb) {
                *o = int8_value(v, d) as u8;
            }
        }
    }
    if (x.len() / Q_BLOCK) % 2 == 1 {
        let unit = int8_block_offset(x.len() / Q_BLOCK - 1);
        out[unit + 2..unit + 4].fill(0);
    }
}

/// Encodes `x` (a multiple of 32 long) as int4 blocks `{ f16 d; u8 q[16] }` as ggml's Q4_0:
/// `d = m / −8` for the element `m` of largest magnitude (so it maps to −8 exactly),
/// `q = round(x / d) + 8` clamped to 0..=15, element 2j in the low nibble of byte j.
pub fn encode_int4(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(18)) {
        let m = xb.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let bits = f16::from_f32(m / -8.0).to_bits();
        let d = f16_to_f32(bits);
        ob[..2].copy_from_slice(&bits.to_le_bytes());
        let nibble = |v: f32| -> u8 {
            if d == 0.0 { 8 } else { (libm::roundf(v / d) + 8.0).clamp(0.0, 15.0) as u8 }
        };
        for (j, o) in ob[2..].iter_mut().enumerate() {
            *o = nibble(xb[2 * j]) | (nibble(xb[2 * j + 1]) << 4);
        }
    }
}

/// Quantizes `x` to int8 with one f32 scale per `group` elements (the KV cache's per-head
/// scales), writing the scales to `scales` and the values to `q`.
pub fn encode_int8_groups(x: &[f32], group: usize, scales: &mut [f32], q: &mut [i8]) {
    for ((xg, s), qg) in x.chunks_exact(group).zip(scales.iter_mut()).zip(q.chunks_exact_mut(group))
    {
        let amax = xg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *s = amax / 127.0;
        for (o, &v) in qg.iter_mut().zip(xg) {
            *o = int8_value(v, *s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::int8_row_bytes;
    use crate::kernels::{decode_f16, decode_int8};

    #[test]
    fn int8_round_trip_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 29 % 64) as f32 - 31.5) * 0.173).collect();
        let mut bytes = vec![0u8; int8_row_bytes(64)];
        encode_int8(&x, 32, &mut bytes);
        let mut back = vec![0.0; 64];
        decode_int8(&bytes, &mut back);
        for (blk, (xb, bb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let d = f16_to_f32(u16::from_le_bytes([bytes[2 * blk], bytes[2 * blk + 1]]));
            for (a, b) in xb.iter().zip(bb) {
                assert!((a - b).abs() <= 0.5 * d + 1e-6, "{a} vs {b}, step {d}");
            }
        }
    }

    #[test]
    fn int4_round_trip_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 30.0) * 0.011).collect();
        let mut bytes = vec![0u8; 2 * 18];
        encode_int4(&x, &mut bytes);
        let mut back = vec![0.0; 64];
        crate::kernels::decode_int4(&bytes, &mut back);
        for (blk, (xb, bb)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let d = f16_to_f32(u16::from_le_bytes([bytes[18 * blk], bytes[18 * blk + 1]])).abs();
            for (a, b) in xb.iter().zip(bb) {
                assert!((a - b).abs() <= 0.5 * d + 1e-6, "{a} vs {b}, step {d}");
            }
        }
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let mut bytes = vec![0xffu8; int8_row_bytes(96)];
        encode_int8(&[0.0; 96], 32, &mut bytes);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn larger_blocks_share_one_scale_across_their_32_blocks() {
        let x: Vec<f32> = (0..128).map(|i| if i == 100 { 12.7 } else { 0.1 }).collect();
        let mut bytes = vec![0u8; int8_row_bytes(128)];
        encode_int8(&x, 128, &mut bytes);
        let scales: Vec<u16> = crate::kernels::int8::blocks(&bytes).map(|(d, _)| d).collect();
        assert_eq!(scales.len(), 4);
        assert!(scales.iter().all(|&d| d == scales[0]));
        assert_eq!(f16_to_f32(scales[0]), half::f16::from_f32(0.1).to_f32());
        let mut back = vec![0.0; 128];
        decode_int8(&bytes, &mut back);
        assert!((back[100] - 12.7).abs() < 0.05 && (back[0] - 0.1).abs() < 1e-3);
    }

    #[test]
    fn f16_round_trip_is_exact_for_representable_values() {
        let x = [0.5f32, -2.0, 65504.0, 6.1035156e-5];
        let mut bytes = [0u8; 8];
        encode_f16(&x, &mut bytes);
        let mut back = [0.0; 4];
        decode_f16(&bytes, &mut back);
        assert_eq!(back, x);
    }

    #[test]
    fn groups_get_their_own_scales() {
        let x = [1.0f32, -0.5, 100.0, 50.0];
        let mut scales = [0.0; 2];
        let mut q = [0i8; 4];
        encode_int8_groups(&x, 2, &mut scales, &mut q);
        assert_eq!(q, [127, -64, 127, 64]);
        assert_eq!(scales, [1.0 / 127.0, 100.0 / 127.0]);
    }
}

//! Encoders for the stored number formats: the inverse of the decoders in [`crate::kernels`].
//!
//! The packer uses them for weights and the KV cache for its rows, so both round the same way.

use half::f16;

use crate::kernels::affine::MAX_BLOCK;
use crate::kernels::f16_to_f32;
use crate::kernels::int8::{Q_BLOCK, int8_block_offset, stored_weight};

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
/// of a group stores the group's scale), `d = max|x| / 127` rounded to f16, `q = round(x / d)`
/// stored as [`stored_weight`] (even elements biased by 128).
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
            for (k, (o, &v)) in out[at..at + Q_BLOCK].iter_mut().zip(xb).enumerate() {
                *o = stored_weight(k, int8_value(v, d));
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

/// Candidate step sizes the scale-and-minimum search tries per block, around the min–max one.
const AFFINE_STEPS: usize = 24;

/// Refits of `d` and `m` to the best candidate's rounded values.
const AFFINE_REFITS: usize = 2;

/// Encodes one row `x` (a multiple of `block` long; `block` 32 or 64) as `bits`-bit
/// scale-and-minimum blocks ([`crate::kernels::affine`]), choosing each block's `d` and `m` to
/// minimize `Σ imp_k · (x_k − d·q_k − m)²`: `imp` weighs each input (the mean square of the
/// activations it meets, from calibration; all ones for plain least squares). For each
/// candidate step (the min–max range over `2^bits − 1 + t/4 − 3`), the values are rounded, `d`
/// and `m` refitted by weighted least squares, both rounded to f16 and the values rounded again
/// against them; the candidate with the least weighted error wins, and is refitted to its own
/// values while that helps. `out` holds `x.len() / block · block_bytes(bits, block)` bytes.
/// Returns the row's weighted squared error.
pub fn encode_affine(x: &[f32], imp: &[f32], bits: u32, block: usize, out: &mut [u8]) -> f64 {
    let size = crate::kernels::affine::block_bytes(bits, block);
    let mut total = 0.0f64;
    for ((xb, wb), ob) in
        x.chunks_exact(block).zip(imp.chunks_exact(block)).zip(out.chunks_exact_mut(size))
    {
        let fit = fit_affine_block(xb, wb, bits);
        ob[..2].copy_from_slice(&fit.d.to_le_bytes());
        ob[2..4].copy_from_slice(&fit.m.to_le_bytes());
        crate::kernels::affine::pack_values(&fit.q[..block], bits, &mut ob[4..]);
        total += fit.err;
    }
    total
}

/// One block's stored scale and minimum (f16 bits), values and weighted squared error.
struct AffineFit {
    d: u16,
    m: u16,
    q: [u8; MAX_BLOCK],
    err: f64,
}

/// The values of one block rounded against the decoded `d` and `m`, and the weighted error.
fn round_affine(x: &[f32], imp: &[f32], d: f32, m: f32, top: f32) -> ([u8; MAX_BLOCK], f64) {
    let mut q = [0u8; MAX_BLOCK];
    let mut err = 0.0f64;
    for (k, (&v, &w)) in x.iter().zip(imp).enumerate() {
        let qk = if d == 0.0 { 0.0 } else { libm::roundf((v - m) / d).clamp(0.0, top) };
        q[k] = qk as u8;
        let e = f64::from(v) - f64::from(d * qk + m);
        err += f64::from(w) * e * e;
    }
    (q, err)
}

/// The weighted least-squares `(d, m)` of `x ≈ d·q + m`, if the values are not all equal.
fn least_squares(x: &[f32], imp: &[f32], q: impl Iterator<Item = f32>) -> Option<(f32, f32)> {
    let (mut sw, mut sq, mut sqq, mut sx, mut sqx) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for ((&v, &w), q) in x.iter().zip(imp).zip(q) {
        let (w, v, q) = (f64::from(w), f64::from(v), f64::from(q));
        sw += w;
        sq += w * q;
        sqq += w * q * q;
        sx += w * v;
        sqx += w * q * v;
    }
    let det = sw * sqq - sq * sq;
    (det > 0.0).then(|| (((sw * sqx - sq * sx) / det) as f32, ((sqq * sx - sq * sqx) / det) as f32))
}

/// The best fit of one block (see [`encode_affine`]).
fn fit_affine_block(x: &[f32], imp: &[f32], bits: u32) -> AffineFit {
    let top = ((1u32 << bits) - 1) as f32;
    let lo = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
    let hi = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let try_pair = |d: f32, m: f32| {
        let (d, m) = (f16::from_f32(d).to_bits(), f16::from_f32(m).to_bits());
        let (q, err) = round_affine(x, imp, f16_to_f32(d), f16_to_f32(m), top);
        AffineFit { d, m, q, err }
    };
    let mut best = try_pair((hi - lo) / top, lo);
    if hi.partial_cmp(&lo) != Some(core::cmp::Ordering::Greater) || !best.err.is_finite() {
        return best;
    }
    for t in 0..=AFFINE_STEPS {
        let iscale = (top + t as f32 / 4.0 - 3.0) / (hi - lo);
        let rounded = x.iter().map(|&v| libm::roundf((v - lo) * iscale).clamp(0.0, top));
        if let Some((d, m)) = least_squares(x, imp, rounded) {
            let candidate = try_pair(d, m);
            if candidate.err < best.err {
                best = candidate;
            }
        }
    }
    for _ in 0..AFFINE_REFITS {
        let Some((d, m)) = least_squares(x, imp, best.q.iter().map(|&q| f32::from(q))) else {
            break;
        };
        let candidate = try_pair(d, m);
        if candidate.err >= best.err {
            break;
        }
        best = candidate;
    }
    best
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
    fn affine_round_trip_error_is_within_half_a_step_and_beats_min_max() {
        let mut seed = 9u64;
        let x: Vec<f32> = (0..256).map(|_| crate::kernels::tests::lcg(&mut seed) * 0.1).collect();
        let ones = vec![1.0f32; 256];
        for (bits, block) in [(4, 32), (5, 32), (6, 32), (4, 64), (5, 64), (6, 64)] {
            let size = crate::kernels::affine::block_bytes(bits, block);
            let mut bytes = vec![0u8; 256 / block * size];
            let err = encode_affine(&x, &ones, bits, block, &mut bytes);
            let mut back = vec![0.0; 256];
            crate::kernels::affine::decoder(bits, block)(&bytes, &mut back);
            let mut sq = 0.0f64;
            for (blk, (xb, bb)) in x.chunks(block).zip(back.chunks(block)).enumerate() {
                let word = |i: usize| {
                    u16::from_le_bytes([bytes[size * blk + i], bytes[size * blk + i + 1]])
                };
                let (d, m) = (f16_to_f32(word(0)), f16_to_f32(word(2)));
                let (lo, hi) = (
                    m.min(m + d * ((1 << bits) - 1) as f32),
                    m.max(m + d * ((1 << bits) - 1) as f32),
                );
                for (a, b) in xb.iter().zip(bb) {
                    // In range, the nearest level (at most half a step off); clipped, the end.
                    let bound = if (lo..=hi).contains(a) {
                        0.5 * d.abs() + 1e-4
                    } else {
                        (a - a.clamp(lo, hi)).abs() + 1e-4
                    };
                    assert!((a - b).abs() <= bound, "{bits}: {a} vs {b}, step {d}");
                    sq += f64::from(a - b).powi(2);
                }
            }
            assert!((sq - err).abs() <= 1e-9 + 1e-6 * sq, "{bits}: reported {err}, found {sq}");
            // Plain min–max rounding, for comparison.
            let mut naive = 0.0f64;
            for xb in x.chunks(block) {
                let lo = xb.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                let hi = xb.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let d = f16_to_f32(f16::from_f32((hi - lo) / ((1 << bits) - 1) as f32).to_bits());
                let m = f16_to_f32(f16::from_f32(lo).to_bits());
                naive += round_affine(xb, &ones[..block], d, m, ((1 << bits) - 1) as f32).1;
            }
            assert!(err <= naive, "{bits}: searched {err} vs min-max {naive}");
        }
    }

    #[test]
    fn affine_weights_favour_the_important_inputs() {
        let mut seed = 21u64;
        let x: Vec<f32> = (0..32).map(|_| crate::kernels::tests::lcg(&mut seed)).collect();
        let mut imp = vec![1.0f32; 32];
        imp[7] = 1e4;
        let mut plain = vec![0u8; 20];
        let mut weighted = vec![0u8; 20];
        encode_affine(&x, &[1.0; 32], 4, 32, &mut plain);
        encode_affine(&x, &imp, 4, 32, &mut weighted);
        let (mut a, mut b) = (vec![0.0; 32], vec![0.0; 32]);
        crate::kernels::affine::decode::<4, 32>(&plain, &mut a);
        crate::kernels::affine::decode::<4, 32>(&weighted, &mut b);
        assert!((b[7] - x[7]).abs() <= (a[7] - x[7]).abs(), "{} {} {}", x[7], a[7], b[7]);
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let mut bytes = vec![0xffu8; int8_row_bytes(96)];
        encode_int8(&[0.0; 96], 32, &mut bytes);
        // Scales 0, the single block's padding 0, weights 0: even ones stored as 128.
        let weight = |k: usize| if k.is_multiple_of(2) { 0x80 } else { 0 };
        let pair: Vec<u8> = [0u8; 4].into_iter().chain((0..64).map(weight)).collect();
        let single: Vec<u8> = [0u8; 4].into_iter().chain((0..32).map(weight)).collect();
        assert_eq!(bytes, [pair, single].concat());
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

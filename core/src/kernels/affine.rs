//! Scale-and-minimum weights of 4, 5 or 6 bits (q4m, q5m, q6m): the layout, the decoder and
//! the plain kernels.
//!
//! **Layout.** A block of 32 weights is `{ f16 d; f16 m; u8 lo[16]; u8 hi[4 · (bits − 4)] }`:
//! the low four bits of element `2j` in the low nibble of `lo[j]` and of element `2j + 1` in
//! its high nibble (as int4); for 5 bits, bit 4 of element `k` is bit `k % 8` of
//! `hi[k / 8]`; for 6 bits, bits 4–5 of element `k` are bits `2 · (k % 4)` and up of
//! `hi[k / 4]`. Blocks are 20, 24 and 28 bytes (4.5 + 0.5, 6 and 7 bits per weight), each a
//! multiple of 4 so every block of a row stays word-aligned on a Cortex-M33. The value of
//! element `k` is `d · q_k + m`, `q_k` in `0..2^bits`.
//!
//! **Sums.** Against f32 activations (the exact path), each block is decoded to its 32 f32
//! values, which meet the activations in the lane order of [`super`] (element `k` of the row's
//! piece to lane `k % 16`, a multiply then an add). Against 16-bit activations `a` with a
//! scale `s` per block (the int16 and int8 paths), the integer sums `Q = Σ q·a` and `A = Σ a`
//! are exact, and `acc += d · (s · Q) + m · (s · A)` block after block. Both orders are fixed
//! by the code, so every target gives the same bits.

use super::int8::{Q_BLOCK, act_position};
use super::{LANES, Lanes, f16_to_f32, le_u16};

/// Bytes of one block of 32 weights of `bits` bits.
pub const fn block_bytes(bits: u32) -> usize {
    4 + Q_BLOCK / 2 + 4 * (bits as usize - 4)
}

/// The 32 integers `q` (0..2^bits) of one block's packed bits (the block after `d` and `m`).
#[inline(always)]
pub fn values<const BITS: u32>(packed: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (j, &b) in packed[..16].iter().enumerate() {
        q[2 * j] = b & 0x0f;
        q[2 * j + 1] = b >> 4;
    }
    let hi = &packed[16..];
    match BITS {
        5 => {
            for (k, v) in q.iter_mut().enumerate() {
                *v |= ((hi[k / 8] >> (k % 8)) & 1) << 4;
            }
        }
        6 => {
            for (k, v) in q.iter_mut().enumerate() {
                *v |= ((hi[k / 4] >> (2 * (k % 4))) & 3) << 4;
            }
        }
        _ => {}
    }
    q
}

/// Packs 32 integers (each below 2^bits) into a block's bits after `d` and `m`: the inverse of
/// [`values`]. `out` holds `block_bytes(bits) − 4` bytes.
pub fn pack_values(q: &[u8; 32], bits: u32, out: &mut [u8]) {
    out.fill(0);
    for j in 0..16 {
        out[j] = (q[2 * j] & 0x0f) | ((q[2 * j + 1] & 0x0f) << 4);
    }
    for (k, &v) in q.iter().enumerate() {
        match bits {
            5 => out[16 + k / 8] |= ((v >> 4) & 1) << (k % 8),
            6 => out[16 + k / 4] |= ((v >> 4) & 3) << (2 * (k % 4)),
            _ => {}
        }
    }
}

/// The f32 values of one block: `d · q + m`.
#[inline(always)]
fn block_values<const BITS: u32>(blk: &[u8]) -> [f32; 32] {
    let (d, m) = (f16_to_f32(le_u16(blk, 0)), f16_to_f32(le_u16(blk, 1)));
    let q = values::<BITS>(&blk[4..]);
    let mut v = [0.0f32; 32];
    for (o, &qk) in v.iter_mut().zip(&q) {
        *o = d * f32::from(qk) + m;
    }
    v
}

/// Decodes whole blocks of `BITS`-bit weights into `out` (32 values per block).
pub fn decode<const BITS: u32>(w: &[u8], out: &mut [f32]) {
    for (blk, ob) in w.chunks_exact(block_bytes(BITS)).zip(out.chunks_exact_mut(Q_BLOCK)) {
        ob.copy_from_slice(&block_values::<BITS>(blk));
    }
}

/// `lanes += w · x` for whole blocks of `BITS`-bit weights against f32 activations
/// (`x.len()` a multiple of 32).
pub fn dot_f32<const BITS: u32>(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (blk, xb) in w.chunks_exact(block_bytes(BITS)).zip(x.chunks_exact(Q_BLOCK)) {
        let v = block_values::<BITS>(blk);
        for (vc, xc) in v.chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += vc[l] * xc[l];
            }
        }
    }
    *lanes = acc;
}

/// `acc += Σ_blocks d · (s · Σ q·a) + m · (s · Σ a)` for whole blocks of `BITS`-bit weights
/// against 16-bit activations (one per element, [`act_position`] order) with a scale per
/// block of 32, block after block.
pub fn dot_i16<const BITS: u32>(w: &[u8], a: &[i16], scales: &[f32], acc: &mut f32) {
    let mut total = *acc;
    for ((blk, ab), &s) in
        w.chunks_exact(block_bytes(BITS)).zip(a.chunks_exact(Q_BLOCK)).zip(scales)
    {
        let (d, m) = (f16_to_f32(le_u16(blk, 0)), f16_to_f32(le_u16(blk, 1)));
        let q = values::<BITS>(&blk[4..]);
        let (mut qsum, mut asum) = (0i32, 0i32);
        for (k, &qk) in q.iter().enumerate() {
            let ak = i32::from(ab[act_position(k)]);
            qsum += i32::from(qk) * ak;
            asum += ak;
        }
        total += d * (s * qsum as f32) + m * (s * asum as f32);
    }
    *acc = total;
}

/// The f32-activation kernel for `bits` (4, 5 or 6; others read as 4).
pub fn float_kernel(bits: u32) -> super::FloatDot {
    match bits {
        5 => dot_f32::<5>,
        6 => dot_f32::<6>,
        _ => dot_f32::<4>,
    }
}

/// The 16-bit-activation kernel for `bits` (4, 5 or 6; others read as 4).
pub fn int_kernel(bits: u32) -> super::Int16Dot {
    match bits {
        5 => dot_i16::<5>,
        6 => dot_i16::<6>,
        _ => dot_i16::<4>,
    }
}

/// The decoder for `bits` (4, 5 or 6; others read as 4).
pub fn decoder(bits: u32) -> fn(&[u8], &mut [f32]) {
    match bits {
        5 => decode::<5>,
        6 => decode::<6>,
        _ => decode::<4>,
    }
}

#[cfg(test)]
mod tests {
    use super::super::reduce;
    use super::super::tests::lcg;
    use super::*;

    fn random_blocks(bits: u32, n: usize, seed: &mut u64) -> Vec<u8> {
        let mut out = vec![0u8; n * block_bytes(bits)];
        for blk in out.chunks_exact_mut(block_bytes(bits)) {
            let d = half::f16::from_f32(0.01 + 0.05 * lcg(seed).abs()).to_bits();
            let m = half::f16::from_f32(-0.3 * lcg(seed)).to_bits();
            blk[..2].copy_from_slice(&d.to_le_bytes());
            blk[2..4].copy_from_slice(&m.to_le_bytes());
            let mut q = [0u8; 32];
            for v in &mut q {
                *v = ((lcg(seed) + 1.0) * 0.5 * (1 << bits) as f32) as u8 & ((1 << bits) - 1);
            }
            pack_values(&q, bits, &mut blk[4..]);
        }
        out
    }

    #[test]
    fn packing_round_trips_every_width() {
        for bits in 4..=6u32 {
            let mut q = [0u8; 32];
            for (k, v) in q.iter_mut().enumerate() {
                *v = ((k as u32 * 7 + bits) % (1 << bits)) as u8;
            }
            q[5] = (1 << bits) - 1;
            let mut packed = vec![0u8; block_bytes(bits) - 4];
            pack_values(&q, bits, &mut packed);
            let back = match bits {
                4 => values::<4>(&packed),
                5 => values::<5>(&packed),
                _ => values::<6>(&packed),
            };
            assert_eq!(back, q, "{bits} bits");
        }
    }

    /// The plain order written out element by element from the decoded values.
    fn twin_f32(bits: u32, w: &[u8], x: &[f32]) -> f32 {
        let mut dense = vec![0.0; x.len()];
        decoder(bits)(w, &mut dense);
        let mut lanes = [0.0f32; LANES];
        for (k, (a, b)) in dense.iter().zip(x).enumerate() {
            lanes[k % LANES] += a * b;
        }
        reduce(&lanes)
    }

    #[test]
    fn float_kernels_match_the_decoded_dot_bit_for_bit_across_pieces() {
        let mut seed = 11;
        for bits in 4..=6u32 {
            let w = random_blocks(bits, 4, &mut seed);
            let x: Vec<f32> = (0..128).map(|_| lcg(&mut seed)).collect();
            let mut lanes = [0.0; LANES];
            let half = 2 * block_bytes(bits);
            float_kernel(bits)(&w[..half], &x[..64], &mut lanes);
            float_kernel(bits)(&w[half..], &x[64..], &mut lanes);
            assert_eq!(reduce(&lanes).to_bits(), twin_f32(bits, &w, &x).to_bits(), "{bits}");
        }
    }

    #[test]
    fn integer_kernels_match_the_exact_sum_of_decoded_weights() {
        let mut seed = 17;
        for bits in 4..=6u32 {
            let w = random_blocks(bits, 3, &mut seed);
            let a: Vec<i16> = (0..96).map(|_| (lcg(&mut seed) * 32767.0) as i16).collect();
            let scales = [1e-4f32, 3e-5, 2e-4];
            let mut acc = 0.0;
            int_kernel(bits)(&w, &a, &scales, &mut acc);
            let mut dense = vec![0.0; 96];
            decoder(bits)(&w, &mut dense);
            let exact: f64 = (0..96)
                .map(|k| {
                    let s = f64::from(scales[k / 32]);
                    f64::from(dense[k]) * s * f64::from(a[act_position(k % 32) + k / 32 * 32])
                })
                .sum();
            assert!((f64::from(acc) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{bits}");
        }
    }
}

//! Scale-and-minimum weights of 4, 5 or 6 bits in blocks of 32 or 64 (q4m, q5m, q6m): the
//! layout, the decoder and the plain kernels.
//!
//! **Layout.** A block of `B` weights (32 or 64) is
//! `{ f16 d; f16 m; u8 lo[B / 2]; u8 hi[B / 8 · (bits − 4)] }`: the low four bits of element
//! `2j` in the low nibble of `lo[j]` and of element `2j + 1` in its high nibble (as int4); for
//! 5 bits, bit 4 of element `k` is bit `k % 8` of `hi[k / 8]`; for 6 bits, bits 4–5 of element
//! `k` are bits `2 · (k % 4)` and up of `hi[k / 4]`. Blocks of 32 are 20, 24 and 28 bytes
//! (5, 6 and 7 bits per weight), blocks of 64 are 36, 44 and 52 (4.5, 5.5 and 6.5): each a
//! multiple of 4, so every block of a row stays word-aligned on a Cortex-M33. The value of
//! element `k` is `d · q_k + m`, `q_k` in `0..2^bits`.
//!
//! **Sums.** Against f32 activations (the exact path), each block is decoded to its f32
//! values, which meet the activations in the lane order of [`super`] (element `k` of the row's
//! piece to lane `k % 16`, a multiply then an add). Against 16-bit activations `a` with a
//! scale `s` per 32 elements (the int16 and int8 paths), each 32-element half of a block gives
//! exact integer sums `Q = Σ q·a` and `A = Σ a`, and `acc += d · (s · Q) + m · (s · A)` half
//! after half, block after block. Both orders are fixed by the code, so every target gives
//! the same bits.

use super::int8::{Q_BLOCK, act_position};
use super::{LANES, Lanes, f16_to_f32, le_u16};

/// Largest block: 64 weights.
pub const MAX_BLOCK: usize = 64;

/// Bytes of one block of `block` weights of `bits` bits.
pub const fn block_bytes(bits: u32, block: usize) -> usize {
    4 + block / 2 + block / 8 * (bits as usize - 4)
}

/// The `BLOCK` integers `q` (0..2^bits) of one block's packed bits (after `d` and `m`); the
/// first `BLOCK` entries of the result are set.
#[inline(always)]
pub fn values<const BITS: u32, const BLOCK: usize>(packed: &[u8]) -> [u8; MAX_BLOCK] {
    let mut q = [0u8; MAX_BLOCK];
    for (j, &b) in packed[..BLOCK / 2].iter().enumerate() {
        q[2 * j] = b & 0x0f;
        q[2 * j + 1] = b >> 4;
    }
    let hi = &packed[BLOCK / 2..];
    match BITS {
        5 => {
            for (k, v) in q[..BLOCK].iter_mut().enumerate() {
                *v |= ((hi[k / 8] >> (k % 8)) & 1) << 4;
            }
        }
        6 => {
            for (k, v) in q[..BLOCK].iter_mut().enumerate() {
                *v |= ((hi[k / 4] >> (2 * (k % 4))) & 3) << 4;
            }
        }
        _ => {}
    }
    q
}

/// Packs `q` (each below 2^bits, 32 or 64 of them) into a block's bits after `d` and `m`: the
/// inverse of [`values`]. `out` holds `block_bytes(bits, q.len()) − 4` bytes.
pub fn pack_values(q: &[u8], bits: u32, out: &mut [u8]) {
    out.fill(0);
    let half = q.len() / 2;
    for j in 0..half {
        out[j] = (q[2 * j] & 0x0f) | ((q[2 * j + 1] & 0x0f) << 4);
    }
    for (k, &v) in q.iter().enumerate() {
        match bits {
            5 => out[half + k / 8] |= ((v >> 4) & 1) << (k % 8),
            6 => out[half + k / 4] |= ((v >> 4) & 3) << (2 * (k % 4)),
            _ => {}
        }
    }
}

/// The f32 values of one block: `d · q + m` (the first `BLOCK` entries).
#[inline(always)]
fn block_values<const BITS: u32, const BLOCK: usize>(blk: &[u8]) -> [f32; MAX_BLOCK] {
    let (d, m) = (f16_to_f32(le_u16(blk, 0)), f16_to_f32(le_u16(blk, 1)));
    let q = values::<BITS, BLOCK>(&blk[4..]);
    let mut v = [0.0f32; MAX_BLOCK];
    for (o, &qk) in v[..BLOCK].iter_mut().zip(&q[..BLOCK]) {
        *o = d * f32::from(qk) + m;
    }
    v
}

/// Decodes whole blocks into `out` (`BLOCK` values per block).
pub fn decode<const BITS: u32, const BLOCK: usize>(w: &[u8], out: &mut [f32]) {
    for (blk, ob) in w.chunks_exact(block_bytes(BITS, BLOCK)).zip(out.chunks_exact_mut(BLOCK)) {
        ob.copy_from_slice(&block_values::<BITS, BLOCK>(blk)[..BLOCK]);
    }
}

/// `lanes += w · x` for whole blocks against f32 activations (`x.len()` a multiple of
/// `BLOCK`).
pub fn dot_f32<const BITS: u32, const BLOCK: usize>(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (blk, xb) in w.chunks_exact(block_bytes(BITS, BLOCK)).zip(x.chunks_exact(BLOCK)) {
        let v = block_values::<BITS, BLOCK>(blk);
        for (vc, xc) in v[..BLOCK].chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += vc[l] * xc[l];
            }
        }
    }
    *lanes = acc;
}

/// `acc += Σ d · (s · Σ q·a) + m · (s · Σ a)` over each 32-element half of whole blocks against
/// 16-bit activations (one per element, [`act_position`] order within each 32) with a scale
/// `s` per 32, in order. Each half is unpacked into eight words of byte values first, which a
/// Cortex-M33 with the `dsp` feature sums with `SMLAD` (the int8 kernels' block loop).
pub fn dot_i16<const BITS: u32, const BLOCK: usize>(
    w: &[u8],
    a: &[i16],
    scales: &[f32],
    acc: &mut f32,
) {
    let mut total = *acc;
    let per = BLOCK / Q_BLOCK;
    for ((blk, ab), sb) in w
        .chunks_exact(block_bytes(BITS, BLOCK))
        .zip(a.chunks_exact(BLOCK))
        .zip(scales.chunks_exact(per))
    {
        let (d, m) = (f16_to_f32(le_u16(blk, 0)), f16_to_f32(le_u16(blk, 1)));
        for (h, (ah, &s)) in ab.chunks_exact(Q_BLOCK).zip(sb).enumerate() {
            let (qsum, asum) = word_sums(&half_words::<BITS, BLOCK>(&blk[4..], h), ah);
            total += d * (s * qsum as f32) + m * (s * asum as f32);
        }
    }
    *acc = total;
}

/// The 32 values of half `h` (elements `32h..32h + 32`) of one block's packed bits as bytes,
/// element `k` in byte `k % 4` of little-endian word `k / 4`.
#[inline(always)]
fn half_words<const BITS: u32, const BLOCK: usize>(packed: &[u8], h: usize) -> [u32; 8] {
    let lo = &packed[16 * h..16 * h + 16];
    let hi = &packed[BLOCK / 2..];
    let mut words = [0u32; 8];
    for (i, word) in words.iter_mut().enumerate() {
        let x = u32::from(lo[2 * i]) | (u32::from(lo[2 * i + 1]) << 8);
        let mut v = (x & 0xf) | ((x & 0xf0) << 4) | ((x & 0xf00) << 8) | ((x & 0xf000) << 12);
        match BITS {
            5 => {
                let b = (u32::from(hi[4 * h + i / 2]) >> (4 * (i % 2))) & 0xf;
                v |= ((b & 1) << 4) | ((b & 2) << 11) | ((b & 4) << 18) | ((b & 8) << 25);
            }
            6 => {
                let b = u32::from(hi[8 * h + i]);
                v |= ((b & 3) << 4) | ((b & 0xc) << 10) | ((b & 0x30) << 16) | ((b & 0xc0) << 22);
            }
            _ => {}
        }
        *word = v;
    }
    words
}

/// `(Σ q·a, Σ a)` over 32 byte values in words (see [`half_words`]) and their activations.
#[inline(always)]
fn word_sums(words: &[u32; 8], a: &[i16]) -> (i32, i32) {
    #[cfg(all(target_arch = "arm", feature = "dsp"))]
    if let Some(sums) = super::m33::isum_words(words, a) {
        return sums;
    }
    word_sums_plain(words, a)
}

/// The plain twin of [`word_sums`].
#[inline(always)]
fn word_sums_plain(words: &[u32; 8], a: &[i16]) -> (i32, i32) {
    let (mut qsum, mut asum) = (0i32, 0i32);
    for k in 0..Q_BLOCK {
        let q = ((words[k / 4] >> (8 * (k % 4))) & 0xff) as i32;
        let ak = i32::from(a[act_position(k)]);
        qsum += q * ak;
        asum += ak;
    }
    (qsum, asum)
}

/// Picks the instance of a generic kernel for `bits` (4, 5, 6) and `block` (32, 64); other
/// values read as 4 bits and 32.
macro_rules! instance {
    ($f:ident, $bits:expr, $block:expr) => {
        match ($bits, $block) {
            (5, 64) => $f::<5, 64>,
            (6, 64) => $f::<6, 64>,
            (4, 64) => $f::<4, 64>,
            (5, _) => $f::<5, 32>,
            (6, _) => $f::<6, 32>,
            _ => $f::<4, 32>,
        }
    };
}

/// The f32-activation kernel for `bits` and `block`.
pub fn float_kernel(bits: u32, block: usize) -> super::FloatDot {
    instance!(dot_f32, bits, block)
}

/// The 16-bit-activation kernel for `bits` and `block`.
pub fn int_kernel(bits: u32, block: usize) -> super::Int16Dot {
    instance!(dot_i16, bits, block)
}

/// The decoder for `bits` and `block`.
pub fn decoder(bits: u32, block: usize) -> fn(&[u8], &mut [f32]) {
    instance!(decode, bits, block)
}

#[cfg(test)]
mod tests {
    use super::super::reduce;
    use super::super::tests::lcg;
    use super::*;

    const SHAPES: [(u32, usize); 6] = [(4, 32), (5, 32), (6, 32), (4, 64), (5, 64), (6, 64)];

    fn random_blocks(bits: u32, block: usize, n: usize, seed: &mut u64) -> Vec<u8> {
        let size = block_bytes(bits, block);
        let mut out = vec![0u8; n * size];
        for blk in out.chunks_exact_mut(size) {
            let d = half::f16::from_f32(0.01 + 0.05 * lcg(seed).abs()).to_bits();
            let m = half::f16::from_f32(-0.3 * lcg(seed)).to_bits();
            blk[..2].copy_from_slice(&d.to_le_bytes());
            blk[2..4].copy_from_slice(&m.to_le_bytes());
            let q: Vec<u8> = (0..block)
                .map(|_| ((lcg(seed) + 1.0) * 0.5 * (1 << bits) as f32) as u8 & ((1 << bits) - 1))
                .collect();
            pack_values(&q, bits, &mut blk[4..]);
        }
        out
    }

    #[test]
    fn packing_round_trips_every_shape() {
        for (bits, block) in SHAPES {
            let mut q: Vec<u8> =
                (0..block).map(|k| ((k as u32 * 7 + bits) % (1 << bits)) as u8).collect();
            q[5] = (1 << bits) - 1;
            let mut blk = vec![0u8; block_bytes(bits, block)];
            pack_values(&q, bits, &mut blk[4..]);
            let mut back = vec![0.0; block];
            // With d = 1 and m = 0 the values are the integers.
            blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
            decoder(bits, block)(&blk, &mut back);
            let ints: Vec<u8> = back.iter().map(|&v| v as u8).collect();
            assert_eq!(ints, q, "{bits} bits, blocks of {block}");
        }
    }

    /// The plain order written out element by element from the decoded values.
    fn twin_f32(bits: u32, block: usize, w: &[u8], x: &[f32]) -> f32 {
        let mut dense = vec![0.0; x.len()];
        decoder(bits, block)(w, &mut dense);
        let mut lanes = [0.0f32; LANES];
        for (k, (a, b)) in dense.iter().zip(x).enumerate() {
            lanes[k % LANES] += a * b;
        }
        reduce(&lanes)
    }

    #[test]
    fn float_kernels_match_the_decoded_dot_bit_for_bit_across_pieces() {
        let mut seed = 11;
        for (bits, block) in SHAPES {
            let w = random_blocks(bits, block, 4, &mut seed);
            let x: Vec<f32> = (0..4 * block).map(|_| lcg(&mut seed)).collect();
            let mut lanes = [0.0; LANES];
            let half = 2 * block_bytes(bits, block);
            float_kernel(bits, block)(&w[..half], &x[..2 * block], &mut lanes);
            float_kernel(bits, block)(&w[half..], &x[2 * block..], &mut lanes);
            let twin = twin_f32(bits, block, &w, &x);
            assert_eq!(reduce(&lanes).to_bits(), twin.to_bits(), "{bits}, {block}");
        }
    }

    #[test]
    fn integer_kernels_match_the_exact_sum_of_decoded_weights() {
        let mut seed = 17;
        for (bits, block) in SHAPES {
            let w = random_blocks(bits, block, 2, &mut seed);
            let n = 2 * block;
            let a: Vec<i16> = (0..n).map(|_| (lcg(&mut seed) * 32767.0) as i16).collect();
            let scales: Vec<f32> = (0..n / 32).map(|i| 1e-4 / (i + 1) as f32).collect();
            let mut acc = 0.0;
            int_kernel(bits, block)(&w, &a, &scales, &mut acc);
            let mut dense = vec![0.0; n];
            decoder(bits, block)(&w, &mut dense);
            let exact: f64 = (0..n)
                .map(|k| {
                    let s = f64::from(scales[k / 32]);
                    f64::from(dense[k]) * s * f64::from(a[act_position(k % 32) + k / 32 * 32])
                })
                .sum();
            assert!((f64::from(acc) - exact).abs() < 1e-4 * exact.abs().max(1.0), "{bits}");
        }
    }
}

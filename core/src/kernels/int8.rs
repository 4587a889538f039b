//! int8 weights against integer-coded activations: the layout, the activation codes and the
//! plain kernels.
//!
//! **Weights.** A row of int8 weights is a run of *pairs* of blocks of 32,
//! `{ f16 d[2]; i8 q[64] }` (68 bytes), ended by one *single* block `{ f16 d; u16 0; i8 q[32] }`
//! (36 bytes) when the row has an odd number of blocks. Both are multiples of 4 bytes, so on a
//! Cortex-M33 every weight word is word-aligned (`LDM`), and each unit carries its own
//! scales, so a row can be cut between any two units. Block `j`'s value is `d_j · q`.
//! Weight `k` of a block is stored as the byte `q` when `k` is odd and `q + 128` (`q ^ 0x80`,
//! unsigned) when `k` is even ([`stored_weight`], [`weight_value`]): read as a halfword, each
//! pair of weights is then `(q_even + 128) + 256 · q_odd` exactly, which the Cortex-M33's
//! int8 path multiplies without unpacking (see [`code_for_int8`]).
//!
//! **Activations.** Each matrix input is coded per block of 32 elements, with one f32 scale
//! `s` per block ([`ActivationCode`]):
//! - [`ActivationCode::Split`] (the exact path): each element as a 31-bit fixed-point number
//!   `x ≈ s · (hi + lo / 2^15)` with `s` a power of two, `hi` in −2^15..2^15 and `lo` in
//!   0..2^15, both 16-bit. The representation error is below `2^-29 · max|x|` of the block,
//!   finer than f32's own rounding of the sum, so this path loses nothing to f32 arithmetic.
//! - [`ActivationCode::Int16`]: `q = round(x / s)` (ties to even), `s = max|x| / 32767`.
//! - [`ActivationCode::Int8`]: `q = round(x / s)`, `s = max|x| / 127` (W8A8, as llama.cpp's
//!   q8_0), stored as i16 like the others.
//!
//! For int8 weights ([`code_for_int8`]) each block starts with a *header*, `−128 · Σ` of the
//! block's even elements (one i32 per half): the Cortex-M DSP kernels (feature `dsp` on Arm)
//! start the block's integer sum from it, which cancels the even weights' bias; the other
//! kernels unbias the weights instead, but the header is there on every target so that a
//! workspace has one size everywhere (the host sizes the boards' RAM). On the DSP layout the
//! int8 code also stores each odd element `a_k` as `a_k − 256 · a_(k−1)`, so that one `SMLAD`
//! takes a raw weight halfword pair against the even elements and a second one the odd
//! weights against the odd slots.
//!
//! **Sums.** Per block, the integer sums are exact: `H = Σ w·hi`, `L = Σ w·lo` (split) or
//! `H = Σ w·q`; at most 32 · 127 · 2^15 < 2^31. Then, in f32, `t = H` (or
//! `t = H + L · 2^-15`, a multiply and an add), and `lanes[b % 4] += d · (s · t)` for block
//! `b` of the row. Everything before the f32 step may run in any order on any hardware.

use super::{BLOCK_LANES, Lanes, f16_to_f32, le_u16};

/// Weights per block, and activations per scale.
pub const Q_BLOCK: usize = 32;
/// Bytes of a pair of blocks: two f16 scales, then 64 weights.
pub const PAIR_BYTES: usize = 4 + 2 * Q_BLOCK;
/// Bytes of the single block an odd row ends with: a scale, two zero bytes, 32 weights.
pub const SINGLE_BYTES: usize = 4 + Q_BLOCK;

/// Whether activations take the Cortex-M DSP kernels' layout (feature `dsp` on Arm).
const DSP: bool = cfg!(all(target_arch = "arm", feature = "dsp"));

/// The stored byte of weight `q`, element `k` of its block: `q + 128` (unsigned) when `k` is
/// even, `q` when it is odd.
#[inline(always)]
pub const fn stored_weight(k: usize, q: i8) -> u8 {
    if k.is_multiple_of(2) { (q as u8) ^ 0x80 } else { q as u8 }
}

/// The weight a stored byte holds, element `k` of its block (the inverse of
/// [`stored_weight`]).
#[inline(always)]
pub const fn weight_value(k: usize, byte: u8) -> i32 {
    if k.is_multiple_of(2) { byte as i32 - 128 } else { byte as i8 as i32 }
}

/// Bytes of a row of `cols` int8 weights (`cols` a multiple of [`Q_BLOCK`]).
pub const fn int8_row_bytes(cols: usize) -> usize {
    let blocks = cols / Q_BLOCK;
    (blocks / 2) * PAIR_BYTES + (blocks % 2) * SINGLE_BYTES
}

/// Byte offset of block `block` within a row (a unit boundary when `block` is even, or the
/// last block of an odd row).
pub const fn int8_block_offset(block: usize) -> usize {
    (block / 2) * PAIR_BYTES + (block % 2) * SINGLE_BYTES
}

/// The blocks of whole int8 units `w`: each block's f16 scale bits and its 32 weights.
pub fn blocks(w: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    w.chunks(PAIR_BYTES).flat_map(|unit| {
        let n = if unit.len() == PAIR_BYTES { 2 } else { usize::from(unit.len() == SINGLE_BYTES) };
        (0..n).map(move |j| (le_u16(unit, j), &unit[4 + j * Q_BLOCK..4 + (j + 1) * Q_BLOCK]))
    })
}

/// Number of blocks in whole int8 units `w`.
pub fn block_count(w: &[u8]) -> usize {
    2 * (w.len() / PAIR_BYTES) + usize::from(w.len() % PAIR_BYTES == SINGLE_BYTES)
}

/// Decodes int8 units into `out` (32 values per block).
pub fn decode_int8(w: &[u8], out: &mut [f32]) {
    for ((d, q), ob) in blocks(w).zip(out.chunks_exact_mut(Q_BLOCK)) {
        let d = f16_to_f32(d);
        for (k, (o, &v)) in ob.iter_mut().zip(q).enumerate() {
            *o = d * weight_value(k, v) as f32;
        }
    }
}

/// How a matrix input is coded for the integer kernels (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationCode {
    /// 31-bit fixed point in two 16-bit halves per element: the exact path.
    Split,
    /// One 16-bit integer per element.
    Int16,
    /// One 8-bit integer per element (held as i16).
    Int8,
}

impl ActivationCode {
    /// i16 values stored per element.
    pub const fn halves(self) -> usize {
        match self {
            Self::Split => 2,
            Self::Int16 | Self::Int8 => 1,
        }
    }
}

/// i16 slots that start each block of activations coded for int8 weights: the block's
/// header, an i32 per half (see the module documentation).
pub const fn header_slots(code: ActivationCode) -> usize {
    2 * code.halves()
}

/// i16 slots per block of activations coded for int8 weights ([`code_for_int8`]): the
/// header, then `halves()` values per element.
pub const fn block_slots(code: ActivationCode) -> usize {
    header_slots(code) + Q_BLOCK * code.halves()
}

/// Where element `k` of a block sits among its block's one-per-element activations: the
/// Cortex-M DSP kernel (feature `dsp`) reads each group of four as the pairs (0, 2) and
/// (1, 3), matching what `SXTB16` extracts from four weight bytes; elsewhere the order is
/// natural. The integer sums, and so the results, are the same either way.
#[inline(always)]
pub const fn act_position(k: usize) -> usize {
    if cfg!(all(target_arch = "arm", feature = "dsp")) {
        (k & !3) | ((k & 1) << 1) | ((k >> 1) & 1)
    } else {
        k
    }
}

/// Where half `part` (0: `hi`, 1: `lo`) of element `k` sits among its block's 64 split
/// activations: `[hi × 32][lo × 32]` in natural order, or, for the DSP kernel, per group of
/// four elements the `hi` pairs then the `lo` pairs (one `LDM` feeds four `SMLAD`s).
#[inline(always)]
pub const fn split_position(k: usize, part: usize) -> usize {
    if cfg!(all(target_arch = "arm", feature = "dsp")) {
        2 * (k & !3) + 4 * part + (act_position(k) & 3)
    } else {
        part * Q_BLOCK + k
    }
}

/// Codes `x` (a multiple of [`Q_BLOCK`] long) for the integer kernels: `halves()` values per
/// element into `q`, one scale per block into `scales`.
///
/// Blocks holding an infinity or NaN get a NaN scale (so their dot products, like f32
/// arithmetic's, are not finite).
pub fn quantize_activations(code: ActivationCode, x: &[f32], q: &mut [i16], scales: &mut [f32]) {
    let per_block = Q_BLOCK * code.halves();
    for ((xb, qb), s) in
        x.chunks_exact(Q_BLOCK).zip(q.chunks_exact_mut(per_block)).zip(scales.iter_mut())
    {
        // The largest magnitude, as bits: beyond the largest finite value means an infinity
        // or a NaN somewhere in the block.
        let top_bits = xb.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
        if top_bits > f32::MAX.to_bits() {
            qb.fill(0);
            *s = f32::NAN;
            continue;
        }
        let amax = f32::from_bits(top_bits);
        match code {
            ActivationCode::Split => *s = split_block(xb, amax, qb),
            ActivationCode::Int16 => *s = round_block(xb, amax, qb, 32767.0),
            ActivationCode::Int8 => *s = round_block(xb, amax, qb, 127.0),
        }
    }
}

/// Codes `x` (a multiple of [`Q_BLOCK`] long) for the int8-weight kernels: as
/// [`quantize_activations`], each block in [`block_slots`] of `q` after its header, and on
/// the DSP layout [`ActivationCode::Int8`]'s odd slots (see the module documentation).
pub fn code_for_int8(code: ActivationCode, x: &[f32], q: &mut [i16], scales: &mut [f32]) {
    let (header, body) = (header_slots(code), Q_BLOCK * code.halves());
    for ((xb, qb), s) in
        x.chunks_exact(Q_BLOCK).zip(q.chunks_exact_mut(header + body)).zip(scales.iter_mut())
    {
        let (head, values) = qb.split_at_mut(header);
        quantize_activations(code, xb, values, core::slice::from_mut(s));
        fill_header(code, head, values);
    }
}

/// The header of one coded block (`values` in [`act_position`] or [`split_position`]
/// order), and on the DSP layout the int8 code's odd slots.
fn fill_header(code: ActivationCode, head: &mut [i16], values: &mut [i16]) {
    for (part, h) in head.chunks_exact_mut(2).enumerate() {
        let mut even = 0i32;
        for k in (0..Q_BLOCK).step_by(2) {
            even += i32::from(match code {
                ActivationCode::Split => values[split_position(k, part)],
                _ => values[act_position(k)],
            });
        }
        let bits = (-128 * even) as u32;
        h[0] = bits as u16 as i16;
        h[1] = (bits >> 16) as u16 as i16;
    }
    if DSP && code == ActivationCode::Int8 {
        for k in (1..Q_BLOCK).step_by(2) {
            let prev = values[act_position(k - 1)];
            values[act_position(k)] -= 256 * prev;
        }
    }
}

/// Element `k` of a block of int8-coded activations laid out by [`code_for_int8`] (`a`
/// without the header): the slot itself, or on the DSP layout an odd slot plus 256 times
/// its even neighbour.
#[inline(always)]
fn int8_element(a: &[i16], k: usize) -> i32 {
    let v = i32::from(a[act_position(k)]);
    if DSP && k % 2 == 1 { v + 256 * i32::from(a[act_position(k - 1)]) } else { v }
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2^22`: adding and
/// subtracting 1.5 · 2^23 leaves no bits below the units (two additions on every target).
#[inline(always)]
fn round_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// `q = round(x · top / max|x|)` (ties to even), in [`act_position`] order; returns the
/// scale.
fn round_block(x: &[f32], amax: f32, q: &mut [i16], top: f32) -> f32 {
    let inv = if amax > 0.0 { top / amax } else { 0.0 };
    for (k, &v) in x.iter().enumerate() {
        q[act_position(k)] = round_small((v * inv).clamp(-top, top)) as i16;
    }
    amax / top
}

/// The 31-bit fixed-point halves of one block, in [`split_position`] order; returns the
/// block's power-of-two scale.
fn split_block(x: &[f32], amax: f32, q: &mut [i16]) -> f32 {
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // max|x| < 2^e; blocks below 2^-111 keep only what 2^-111 resolves.
    let biased = ((amax.to_bits() >> 23) & 0xff) as i32;
    let e = (biased.max(1) - 126).max(-111);
    for (k, &v) in x.iter().enumerate() {
        let fixed = fixed_point(v, e);
        q[split_position(k, 0)] = (fixed >> 15) as i16;
        q[split_position(k, 1)] = (fixed & 0x7fff) as i16;
    }
    f32::from_bits(((e - 15 + 127) as u32) << 23)
}

/// `x · 2^(30 − e)` truncated toward zero, exactly, for finite `|x| < 2^e`.
#[inline]
fn fixed_point(x: f32, e: i32) -> i32 {
    let bits = x.to_bits();
    let biased = ((bits >> 23) & 0xff) as i32;
    let mantissa = (bits & 0x007f_ffff) | if biased > 0 { 0x0080_0000 } else { 0 };
    // x = mantissa · 2^(max(biased, 1) − 150).
    let shift = biased.max(1) - 120 - e;
    let magnitude = if shift >= 0 {
        (mantissa << shift.min(7)) as i32
    } else if shift > -32 {
        (mantissa >> -shift) as i32
    } else {
        0
    };
    if bits >> 31 == 1 { -magnitude } else { magnitude }
}

/// `Σ w·a` over one block: stored weights ([`weight_value`]), 16-bit activations in
/// [`act_position`] order (no header). The plain twin of every int16 kernel's inner loop.
#[inline(always)]
pub fn isum_plain(w: &[u8], a: &[i16]) -> i32 {
    let mut sum = 0i32;
    for k in 0..Q_BLOCK {
        sum += weight_value(k, w[k]) * i32::from(a[act_position(k)]);
    }
    sum
}

/// `Σ w·a` over one block of int8-coded activations ([`int8_element`], no header).
#[inline(always)]
pub fn isum_i8_plain(w: &[u8], a: &[i16]) -> i32 {
    let mut sum = 0i32;
    for (k, &byte) in w[..Q_BLOCK].iter().enumerate() {
        sum += weight_value(k, byte) * int8_element(a, k);
    }
    sum
}

/// `(Σ w·hi, Σ w·lo)` over one block of split activations ([`split_position`] order, no
/// header).
#[inline(always)]
pub fn isum_split_plain(w: &[u8], a: &[i16]) -> (i32, i32) {
    let (mut hi, mut lo) = (0i32, 0i32);
    for k in 0..Q_BLOCK {
        let v = weight_value(k, w[k]);
        hi += v * i32::from(a[split_position(k, 0)]);
        lo += v * i32::from(a[split_position(k, 1)]);
    }
    (hi, lo)
}

/// `t = H + L · 2^-15`: the split path's block sum in f32 (a multiply, then an add).
#[inline(always)]
pub fn split_sum(hi: i32, lo: i32) -> f32 {
    hi as f32 + lo as f32 * (1.0 / 32768.0)
}

/// Calls `f(b, scale_bits, weights)` for block `b` of whole int8 units `w` (a pair's two
/// blocks, then an odd row's single one), in order.
#[inline(always)]
fn for_blocks(w: &[u8], mut f: impl FnMut(usize, u16, &[u8; Q_BLOCK])) {
    let mut b = 0;
    let mut units = w.chunks_exact(PAIR_BYTES);
    for unit in &mut units {
        let (d0, d1) = (le_u16(unit, 0), le_u16(unit, 1));
        let (q0, q1) = unit[4..].split_at(Q_BLOCK);
        if let (Ok(q0), Ok(q1)) = (q0.try_into(), q1.try_into()) {
            f(b, d0, q0);
            f(b + 1, d1, q1);
        }
        b += 2;
    }
    let rest = units.remainder();
    if let Some(Ok(q)) = (rest.len() == SINGLE_BYTES).then(|| rest[4..].try_into()) {
        f(b, le_u16(rest, 0), q);
    }
}

/// The int16 path's plain kernel: `lanes[(block0 + b) % 4] += d_b · (s_b · H_b)` over the
/// blocks of units `w`, activations `a` ([`block_slots`] per block) and scales `s`.
pub fn dot_i8_i16(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    dot_blocks(ActivationCode::Int16, isum_plain, w, a, s, block0, lanes);
}

/// The int8 path's plain kernel: [`dot_i8_i16`] over int8-coded activations.
pub fn dot_i8_i8(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    dot_blocks(ActivationCode::Int8, isum_i8_plain, w, a, s, block0, lanes);
}

/// [`dot_i8_i16`] with the block sum `isum` over blocks of `code`.
#[inline(always)]
fn dot_blocks(
    code: ActivationCode,
    isum: fn(&[u8], &[i16]) -> i32,
    w: &[u8],
    a: &[i16],
    s: &[f32],
    block0: usize,
    lanes: &mut Lanes,
) {
    let (header, per_block) = (header_slots(code), block_slots(code));
    let n = block_count(w).min(s.len()).min(a.len() / per_block);
    for_blocks(w, |b, d, q| {
        if b < n {
            let t = isum(q, &a[b * per_block + header..(b + 1) * per_block]) as f32;
            lanes[(block0 + b) % BLOCK_LANES] += f16_to_f32(d) * (s[b] * t);
        }
    });
}

/// The exact path's plain kernel: as [`dot_i8_i16`] with `t_b = H_b + L_b · 2^-15` over
/// split activations.
pub fn dot_i8_split(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    let (header, per_block) =
        (header_slots(ActivationCode::Split), block_slots(ActivationCode::Split));
    let n = block_count(w).min(s.len()).min(a.len() / per_block);
    for_blocks(w, |b, d, q| {
        if b < n {
            let (hi, lo) = isum_split_plain(q, &a[b * per_block + header..(b + 1) * per_block]);
            lanes[(block0 + b) % BLOCK_LANES] += f16_to_f32(d) * (s[b] * split_sum(hi, lo));
        }
    });
}

/// Whole rows through a per-row kernel: what every [`super::IntRows`] computes.
#[inline(always)]
pub fn rows_with(
    dot: super::IntDot,
    w: &[u8],
    row_bytes: usize,
    weight_bytes: usize,
    a: &[i16],
    s: &[f32],
    out: &mut [f32],
) {
    for (row, o) in w.chunks(row_bytes.max(1)).zip(out) {
        let mut lanes = [0.0f32; super::LANES];
        dot(&row[..weight_bytes.min(row.len())], a, s, 0, &mut lanes);
        *o = super::reduce_blocks(&lanes);
    }
}

/// The plain [`super::IntRows`] of [`dot_i8_i16`].
pub fn rows_i8_i16(
    w: &[u8],
    row_bytes: usize,
    weight_bytes: usize,
    a: &[i16],
    s: &[f32],
    out: &mut [f32],
) {
    rows_with(dot_i8_i16, w, row_bytes, weight_bytes, a, s, out);
}

/// The plain [`super::IntRows`] of [`dot_i8_i8`].
pub fn rows_i8_i8(
    w: &[u8],
    row_bytes: usize,
    weight_bytes: usize,
    a: &[i16],
    s: &[f32],
    out: &mut [f32],
) {
    rows_with(dot_i8_i8, w, row_bytes, weight_bytes, a, s, out);
}

/// The plain [`super::IntRows`] of [`dot_i8_split`].
pub fn rows_i8_split(
    w: &[u8],
    row_bytes: usize,
    weight_bytes: usize,
    a: &[i16],
    s: &[f32],
    out: &mut [f32],
) {
    rows_with(dot_i8_split, w, row_bytes, weight_bytes, a, s, out);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::lcg;
    use super::super::{Kernels, LANES, reduce_blocks};
    use super::*;
    use crate::quant::encode_int8;

    /// `rows` rows of `cols` int8 weights (encoded with blocks of `block`) and their
    /// dequantized values.
    pub(crate) fn weights(
        rows: usize,
        cols: usize,
        block: usize,
        seed: u64,
    ) -> (Vec<u8>, Vec<f32>) {
        let mut seed = seed;
        let mut bytes = vec![0u8; rows * int8_row_bytes(cols)];
        let mut deq = vec![0.0f32; rows * cols];
        for (r, (dst, out)) in
            bytes.chunks_exact_mut(int8_row_bytes(cols)).zip(deq.chunks_exact_mut(cols)).enumerate()
        {
            let row: Vec<f32> = (0..cols)
                .map(|c| lcg(&mut seed) * (1.0 + (c % 7) as f32) * (r + 1) as f32)
                .collect();
            encode_int8(&row, block, dst);
            decode_int8(dst, out);
        }
        (bytes, deq)
    }

    /// Activations with a few large channels, like a layer-norm output.
    pub(crate) fn activations(n: usize, seed: u64) -> Vec<f32> {
        let mut seed = seed;
        (0..n).map(|i| lcg(&mut seed) * if i % 37 == 5 { 80.0 } else { 1.5 }).collect()
    }

    /// `x` coded for int8 weights: the activations and their scales.
    pub(crate) fn coded(code: ActivationCode, x: &[f32]) -> (Vec<i16>, Vec<f32>) {
        let mut q = vec![0i16; x.len() / Q_BLOCK * block_slots(code)];
        let mut s = vec![0.0f32; x.len() / Q_BLOCK];
        code_for_int8(code, x, &mut q, &mut s);
        (q, s)
    }

    /// One row through `kernel`, cut into pieces at the given block indices (even, as unit
    /// boundaries are), the lanes carried from piece to piece.
    pub(crate) fn row_dot(
        kernel: super::super::IntDot,
        w: &[u8],
        a: &[i16],
        s: &[f32],
        per: usize,
        cuts: &[usize],
    ) -> f32 {
        let blocks = s.len();
        let mut lanes = [0.0f32; LANES];
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < blocks));
        bounds.push(blocks);
        for pair in bounds.windows(2) {
            let (b0, b1) = (pair[0], pair[1]);
            let w = &w[int8_block_offset(b0)..int8_block_offset(b1)];
            kernel(w, &a[b0 * per..b1 * per], &s[b0..b1], b0, &mut lanes);
        }
        reduce_blocks(&lanes)
    }

    #[test]
    fn rows_are_pairs_then_a_single_block() {
        assert_eq!(int8_row_bytes(768), 12 * 68);
        assert_eq!(int8_row_bytes(1600), 25 * 68);
        assert_eq!(int8_row_bytes(96), 68 + 36);
        assert_eq!(block_count(&[0u8; 68 + 36]), 3);
        assert_eq!(blocks(&[0u8; 68 * 2]).count(), 4);
    }

    #[test]
    fn split_coding_is_finer_than_f32() {
        let x = activations(256, 3);
        let (q, s) = coded(ActivationCode::Split, &x);
        let per = block_slots(ActivationCode::Split);
        for (b, (xb, qb)) in x.chunks(32).zip(q.chunks(per)).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let qb = &qb[header_slots(ActivationCode::Split)..];
            for (k, &v) in xb.iter().enumerate() {
                let hi = f64::from(qb[split_position(k, 0)]);
                let lo = f64::from(qb[split_position(k, 1)]);
                assert!((0.0..32768.0).contains(&lo));
                let back = f64::from(s[b]) * (hi + lo / 32768.0);
                assert!((back - f64::from(v)).abs() <= f64::from(amax) * 2f64.powi(-29), "{v}");
            }
        }
    }

    #[test]
    fn every_path_matches_the_dequantized_dot() {
        let (cols, block) = (96, 32);
        let (w, deq) = weights(1, cols, block, 9);
        let x = activations(cols, 4);
        let exact: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let scale: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from((a * b).abs())).sum();
        for (code, kernel, tol) in [
            (ActivationCode::Split, Kernels::PORTABLE.dot_i8_split, 1e-6),
            (ActivationCode::Int16, Kernels::PORTABLE.dot_i8_i16, 1e-4),
            (ActivationCode::Int8, Kernels::PORTABLE.dot_i8_i8, 2e-2),
        ] {
            let (q, s) = coded(code, &x);
            let got = row_dot(kernel, &w, &q, &s, block_slots(code), &[]);
            assert!((f64::from(got) - exact).abs() <= tol * scale, "{code:?}: {got} vs {exact}");
        }
    }

    #[test]
    fn pieces_at_unit_boundaries_give_the_same_bits() {
        let (w, _) = weights(1, 640, 32, 2);
        let x = activations(640, 8);
        for code in [ActivationCode::Split, ActivationCode::Int16, ActivationCode::Int8] {
            let (q, s) = coded(code, &x);
            let kernel = match code {
                ActivationCode::Split => dot_i8_split as super::super::IntDot,
                ActivationCode::Int16 => dot_i8_i16,
                ActivationCode::Int8 => dot_i8_i8,
            };
            let per = block_slots(code);
            let whole = row_dot(kernel, &w, &q, &s, per, &[]);
            for cuts in [&[2][..], &[4, 6], &[2, 4, 6, 8, 10, 12, 14, 16, 18]] {
                let cut = row_dot(kernel, &w, &q, &s, per, cuts);
                assert_eq!(cut.to_bits(), whole.to_bits(), "{code:?} {cuts:?}");
            }
        }
    }

    #[test]
    fn non_finite_inputs_give_non_finite_sums() {
        let (w, _) = weights(1, 64, 32, 2);
        let mut x = activations(64, 1);
        x[40] = f32::INFINITY;
        let (q, s) = coded(ActivationCode::Split, &x);
        let per = block_slots(ActivationCode::Split);
        assert!(row_dot(dot_i8_split, &w, &q, &s, per, &[]).is_nan());
        assert!(s[0].is_finite() && s[1].is_nan());
    }

    #[test]
    fn stored_weights_read_back_and_pair_as_biased_halfwords() {
        for k in 0..4 {
            for q in -128..=127i8 {
                assert_eq!(weight_value(k, stored_weight(k, q)), i32::from(q), "k {k} q {q}");
            }
        }
        // A stored pair read as a signed halfword is (q0 + 128) + 256 · q1, exactly.
        for (q0, q1) in [(-127i8, -127i8), (-1, 0), (0, -1), (127, 127), (5, -9)] {
            let half = i16::from_le_bytes([stored_weight(0, q0), stored_weight(1, q1)]);
            assert_eq!(i32::from(half), i32::from(q0) + 128 + 256 * i32::from(q1));
        }
    }

    #[test]
    fn the_int8_code_reads_back_the_rounded_activations() {
        let x = activations(96, 5);
        let (q, s) = coded(ActivationCode::Int8, &x);
        let per = block_slots(ActivationCode::Int8);
        for (b, (xb, qb)) in x.chunks(32).zip(q.chunks(per)).enumerate() {
            let values = &qb[header_slots(ActivationCode::Int8)..];
            for (k, &v) in xb.iter().enumerate() {
                let back = int8_element(values, k);
                assert!(back.abs() <= 127);
                assert!((s[b] * back as f32 - v).abs() <= s[b] * 0.5001, "{v} vs {back}");
            }
        }
    }

    #[test]
    fn headers_cancel_the_even_weights_bias() {
        let (w, _) = weights(1, 128, 32, 6);
        let x = activations(128, 2);
        for code in [ActivationCode::Split, ActivationCode::Int16, ActivationCode::Int8] {
            let (q, _) = coded(code, &x);
            let per = block_slots(code);
            for (b, (_, qw)) in blocks(&w).enumerate() {
                let block = &q[b * per..(b + 1) * per];
                let (head, values) = block.split_at(header_slots(code));
                for part in 0..code.halves() {
                    let header =
                        (head[2 * part] as u16 as u32) | ((head[2 * part + 1] as u16 as u32) << 16);
                    // What the DSP kernels sum: even weights as stored (unsigned), from the header.
                    let mut biased = header as i32;
                    let mut plain = 0i32;
                    for k in 0..Q_BLOCK {
                        let a = match code {
                            ActivationCode::Split => i32::from(values[split_position(k, part)]),
                            ActivationCode::Int16 => i32::from(values[act_position(k)]),
                            ActivationCode::Int8 => int8_element(values, k),
                        };
                        let raw =
                            if k % 2 == 0 { i32::from(qw[k]) } else { i32::from(qw[k] as i8) };
                        biased += raw * a;
                        plain += weight_value(k, qw[k]) * a;
                    }
                    assert_eq!(biased, plain, "{code:?} block {b} half {part}");
                }
            }
        }
    }
}

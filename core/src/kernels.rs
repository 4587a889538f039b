//! Dot products over weight bytes, with one summation order on every target.
//!
//! Products are accumulated into [`LANES`] independent partial sums (element `i` goes to lane
//! `i % LANES`) and the lanes are added pairwise at the end. The order is fixed by the code,
//! not the compiler, so x86-64 and Cortex-M33 produce the same bits, while the host compiler
//! is still free to keep the lanes in vector registers. A row may arrive in several pieces
//! (chunk boundaries); carrying the lanes between pieces keeps the result independent of the
//! chunk size.

/// Partial sums per dot product.
pub const LANES: usize = 16;

/// The partial sums of one dot product in progress.
pub type Lanes = [f32; LANES];

/// Decodes an IEEE binary16 value, branch-free so loops over it vectorize.
///
/// Exact for every finite half; the non-finite halves (which packs never contain) map to
/// finite values of magnitude 65536–131008 instead of inf/NaN.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    const TWO_POW_112: f32 = 5.192_297e33;
    let bits = u32::from(bits);
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * TWO_POW_112;
    f32::from_bits(magnitude.to_bits() | ((bits & 0x8000) << 16))
}

#[inline(always)]
fn le_u16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

#[inline(always)]
fn le_f32(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Adds the lanes pairwise: (0+8, 1+9, …), then (0+4, …), down to one value.
#[inline]
pub fn reduce(lanes: &Lanes) -> f32 {
    let mut v = *lanes;
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            v[i] += v[i + width];
        }
        width /= 2;
    }
    v[0]
}

/// `lanes += w · x` for little-endian f32 weights (`w.len() == 4 * x.len()`, a multiple of
/// [`LANES`] elements).
pub fn dot_f32(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (wc, xc) in w.chunks_exact(4 * LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += le_f32(wc, l) * xc[l];
        }
    }
    *lanes = acc;
}

/// `lanes += w · x` for little-endian f16 weights (`w.len() == 2 * x.len()`).
pub fn dot_f16(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (wc, xc) in w.chunks_exact(2 * LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += f16_to_f32(le_u16(wc, l)) * xc[l];
        }
    }
    *lanes = acc;
}

/// `lanes += w · x` for int8 blocks `{ f16 d; i8 q[block] }`: each block's products are summed
/// into fresh lanes, which are then scaled by `d` and added.
pub fn dot_int8(w: &[u8], block: usize, x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (blk, xb) in w.chunks_exact(2 + block).zip(x.chunks_exact(block)) {
        let d = f16_to_f32(le_u16(blk, 0));
        let mut part = [0.0f32; LANES];
        for (qc, xc) in blk[2..].chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
            for l in 0..LANES {
                part[l] += f32::from(qc[l] as i8) * xc[l];
            }
        }
        for l in 0..LANES {
            acc[l] += d * part[l];
        }
    }
    *lanes = acc;
}

/// The 32 weights of an int4 block `{ f16 d; u8 q[16] }`, as integers −8..=7.
#[inline(always)]
fn int4_values(q: &[u8]) -> [i8; 32] {
    let mut v = [0i8; 32];
    for (j, &b) in q.iter().take(16).enumerate() {
        v[2 * j] = (b & 0x0f) as i8 - 8;
        v[2 * j + 1] = (b >> 4) as i8 - 8;
    }
    v
}

/// `lanes += w · x` for int4 blocks of 32 (`x.len()` a multiple of 32), in the same order as
/// [`dot_int8`]: fresh lanes per block, scaled by `d`.
pub fn dot_int4(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let mut acc = *lanes;
    for (blk, xb) in w.chunks_exact(2 + 16).zip(x.chunks_exact(32)) {
        let d = f16_to_f32(le_u16(blk, 0));
        let q = int4_values(&blk[2..]);
        let mut part = [0.0f32; LANES];
        for (qc, xc) in q.chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
            for l in 0..LANES {
                part[l] += f32::from(qc[l]) * xc[l];
            }
        }
        for l in 0..LANES {
            acc[l] += d * part[l];
        }
    }
    *lanes = acc;
}

/// `acc += Σ_blocks d · s · (w · q)` for int4 blocks against activations quantized by
/// [`quantize_q8`], in the order of [`dot_q8`].
pub fn dot_q4(w: &[u8], q: &[i16], scales: &[f32], acc: &mut f32) {
    let mut total = *acc;
    for ((blk, qb), &s) in w.chunks_exact(2 + 16).zip(q.chunks_exact(Q8_BLOCK)).zip(scales) {
        let d = f16_to_f32(le_u16(blk, 0));
        let values = int4_values(&blk[2..]);
        let mut isum = 0i32;
        for (k, &v) in values.iter().enumerate() {
            isum += i32::from(v) * i32::from(qb[q8_position(k)]);
        }
        total += d * (s * isum as f32);
    }
    *acc = total;
}

/// Decodes int4 blocks into `out` (a multiple of 32 long).
pub fn decode_int4(w: &[u8], out: &mut [f32]) {
    for (blk, ob) in w.chunks_exact(2 + 16).zip(out.chunks_exact_mut(32)) {
        let d = f16_to_f32(le_u16(blk, 0));
        for (o, v) in ob.iter_mut().zip(int4_values(&blk[2..])) {
            *o = d * f32::from(v);
        }
    }
}

/// Decodes f32 weights into `out` (`w.len() == 4 * out.len()`).
pub fn decode_f32(w: &[u8], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = le_f32(w, i);
    }
}

/// Decodes f16 weights into `out` (`w.len() == 2 * out.len()`).
pub fn decode_f16(w: &[u8], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = f16_to_f32(le_u16(w, i));
    }
}

/// Decodes int8 blocks into `out` (`out.len()` a multiple of `block`).
pub fn decode_int8(w: &[u8], block: usize, out: &mut [f32]) {
    for (blk, ob) in w.chunks_exact(2 + block).zip(out.chunks_exact_mut(block)) {
        let d = f16_to_f32(le_u16(blk, 0));
        for (o, &q) in ob.iter_mut().zip(&blk[2..]) {
            *o = d * f32::from(q as i8);
        }
    }
}

/// Elements per activation scale in the int8-activation path.
pub const Q8_BLOCK: usize = 32;

/// Quantizes activations `x` (a multiple of [`Q8_BLOCK`] long) to int8 with one f32 scale per
/// block (`scale = max|x| / 127`), for the integer kernel [`dot_q8`]. The values are stored
/// as i16 in the order the target's kernel reads them (see [`q8_position`]).
pub fn quantize_q8(x: &[f32], q: &mut [i16], scales: &mut [f32]) {
    for ((xb, qb), s) in
        x.chunks_exact(Q8_BLOCK).zip(q.chunks_exact_mut(Q8_BLOCK)).zip(scales.iter_mut())
    {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *s = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        for (k, &v) in xb.iter().enumerate() {
            qb[q8_position(k)] = libm::roundf(v * inv).clamp(-127.0, 127.0) as i16;
        }
    }
}

/// Where element `k` of a block sits in the quantized activations: the Cortex-M DSP kernel
/// (feature `dsp`) reads each group of four as the pairs (0, 2) and (1, 3), matching what
/// `SXTB16` extracts from four weight bytes; elsewhere the order is natural. The integer sums,
/// and so the results, are the same either way.
#[inline(always)]
pub const fn q8_position(k: usize) -> usize {
    if cfg!(all(target_arch = "arm", feature = "dsp")) {
        (k & !3) | ((k & 1) << 1) | ((k >> 1) & 1)
    } else {
        k
    }
}

/// `acc += Σ_blocks d · Σ_sub s_sub · (w_sub · q_sub)` for int8 weight blocks
/// `{ f16 d; i8 w[block] }` against activations quantized by [`quantize_q8`]: exact integer
/// dot products per 32 elements, then the scales in f32, block after block.
pub fn dot_q8(w: &[u8], block: usize, q: &[i16], scales: &[f32], acc: &mut f32) {
    if block == Q8_BLOCK {
        return dot_q8_32(w, q, scales, acc);
    }
    let mut total = *acc;
    for (blk, (qb, sb)) in w
        .chunks_exact(2 + block)
        .zip(q.chunks_exact(block).zip(scales.chunks_exact(block / Q8_BLOCK)))
    {
        let d = f16_to_f32(le_u16(blk, 0));
        let mut part = 0.0f32;
        for ((ws, qs), &s) in blk[2..].chunks_exact(Q8_BLOCK).zip(qb.chunks_exact(Q8_BLOCK)).zip(sb)
        {
            part += s * isum32(ws, qs) as f32;
        }
        total += d * part;
    }
    *acc = total;
}

/// [`dot_q8`] for weight blocks of 32, the default: the same operations (`0 + s·isum` is
/// `s·isum` exactly), without the inner loop over sub-blocks.
fn dot_q8_32(w: &[u8], q: &[i16], scales: &[f32], acc: &mut f32) {
    let mut total = *acc;
    for ((blk, qb), &s) in w.chunks_exact(2 + Q8_BLOCK).zip(q.chunks_exact(Q8_BLOCK)).zip(scales) {
        let d = f16_to_f32(le_u16(blk, 0));
        total += d * (s * isum32(&blk[2..], qb) as f32);
    }
    *acc = total;
}

/// Σ w·x over one block of 32 (weights as stored, activations in [`q8_position`] order).
#[cfg(not(all(target_arch = "arm", feature = "dsp")))]
#[inline(always)]
fn isum32(w: &[u8], x: &[i16]) -> i32 {
    isum32_plain(w, x)
}

/// The portable block dot product, and the reference the DSP kernel is tested against.
#[inline(always)]
pub fn isum32_plain(w: &[u8], x: &[i16]) -> i32 {
    let mut sum = 0i32;
    for k in 0..Q8_BLOCK {
        sum += i32::from(w[k] as i8) * i32::from(x[q8_position(k)]);
    }
    sum
}

/// Σ w·x over one block of 32 with the Cortex-M DSP extension: `SXTB16` splits four weight
/// bytes into two pairs of halfwords and `SMLAD` multiplies and adds a pair per instruction,
/// against activations already stored as those pairs (two per word).
#[cfg(all(target_arch = "arm", feature = "dsp"))]
#[inline(always)]
fn isum32(w: &[u8], x: &[i16]) -> i32 {
    let Ok(pairs) = bytemuck::try_cast_slice::<i16, u32>(x) else {
        return isum32_plain(w, x);
    };
    let mut sum = 0i32;
    for (w4, xp) in w.chunks_exact(4).zip(pairs.chunks_exact(2)) {
        let word = u32::from_le_bytes([w4[0], w4[1], w4[2], w4[3]]);
        // SAFETY: SXTB16 and SMLAD only read and write the named registers.
        unsafe {
            core::arch::asm!(
                "sxtb16 {lo}, {w}",
                "sxtb16 {hi}, {w}, ror #8",
                "smlad {s}, {lo}, {xe}, {s}",
                "smlad {s}, {hi}, {xo}, {s}",
                w = in(reg) word,
                xe = in(reg) xp[0],
                xo = in(reg) xp[1],
                lo = out(reg) _,
                hi = out(reg) _,
                s = inout(reg) sum,
                options(pure, nomem, nostack),
            );
        }
    }
    sum
}

/// Dot product of two f32 slices of equal length, in the lane order above.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let split = a.len() - a.len() % LANES;
    for (ac, bc) in a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ac[l] * bc[l];
        }
    }
    for (l, (x, y)) in a[split..].iter().zip(&b[split..]).enumerate() {
        acc[l] += x * y;
    }
    reduce(&acc)
}

/// Sum of a slice, in the lane order above.
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (i, &x) in a.iter().enumerate() {
        acc[i % LANES] += x;
    }
    reduce(&acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decode_matches_half_for_every_finite_value() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(f16_to_f32(bits).to_bits(), h.to_f32().to_bits(), "bits {bits:#06x}");
            } else {
                assert!(f16_to_f32(bits).is_finite());
            }
        }
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// The lane order, written out one element at a time.
    fn plain_lanes(products: impl Iterator<Item = f32>) -> f32 {
        let mut lanes = [0.0f32; LANES];
        for (i, p) in products.enumerate() {
            lanes[i % LANES] += p;
        }
        reduce(&lanes)
    }

    #[test]
    fn f32_kernel_matches_its_plain_twin_bit_for_bit() {
        let mut seed = 1;
        let w: Vec<f32> = (0..256).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..256).map(|_| lcg(&mut seed)).collect();
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut lanes = [0.0; LANES];
        // Two pieces, as across a chunk boundary.
        dot_f32(&bytes[..512], &x[..128], &mut lanes);
        dot_f32(&bytes[512..], &x[128..], &mut lanes);
        let twin = plain_lanes(w.iter().zip(&x).map(|(a, b)| a * b));
        assert_eq!(reduce(&lanes).to_bits(), twin.to_bits());
        let exact: f64 = w.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!((f64::from(twin) - exact).abs() < 1e-5);
    }

    #[test]
    fn int8_kernel_matches_dequantized_dot() {
        let mut seed = 7;
        let block = 32;
        let x: Vec<f32> = (0..128).map(|_| lcg(&mut seed) * 10.0).collect();
        let mut bytes = Vec::new();
        let mut deq = Vec::new();
        for b in 0..4 {
            let d = half::f16::from_f32(0.01 * (b + 1) as f32);
            bytes.extend_from_slice(&d.to_bits().to_le_bytes());
            for j in 0..block {
                let q = ((j as i32 * 37 + b * 11) % 255 - 127) as i8;
                bytes.push(q as u8);
                deq.push(d.to_f32() * f32::from(q));
            }
        }
        let mut lanes = [0.0; LANES];
        dot_int8(&bytes, block, &x, &mut lanes);
        let exact: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!((f64::from(reduce(&lanes)) - exact).abs() < 1e-3 * exact.abs().max(1.0));
        let mut decoded = vec![0.0; 128];
        decode_int8(&bytes, block, &mut decoded);
        assert_eq!(decoded, deq);
    }

    #[test]
    fn q8_kernel_matches_exact_integer_sums() {
        let mut seed = 11;
        let x: Vec<f32> = (0..64).map(|_| lcg(&mut seed) * 3.0).collect();
        let mut q = vec![0i16; 64];
        let mut scales = vec![0.0f32; 2];
        quantize_q8(&x, &mut q, &mut scales);
        let mut bytes = Vec::new();
        let mut expected = 0.0f32;
        for b in 0..2 {
            let d = half::f16::from_f32(0.02 * (b + 1) as f32);
            bytes.extend_from_slice(&d.to_bits().to_le_bytes());
            let mut isum = 0i32;
            for k in 0..32 {
                let w = ((k as i32 * 53 + b * 7) % 255 - 127) as i8;
                bytes.push(w as u8);
                isum += i32::from(w) * i32::from(q[b as usize * 32 + q8_position(k)]);
            }
            expected += d.to_f32() * (scales[b as usize] * isum as f32);
        }
        let mut acc = 0.0;
        dot_q8(&bytes, 32, &q, &scales, &mut acc);
        assert_eq!(acc.to_bits(), expected.to_bits());
        // And close to the float dot product of the dequantized weights with x.
        let mut lanes = [0.0; LANES];
        dot_int8(&bytes, 32, &x, &mut lanes);
        assert!((acc - reduce(&lanes)).abs() < 0.02 * reduce(&lanes).abs().max(1.0));
    }

    #[test]
    fn dot_handles_lengths_that_are_not_lane_multiples() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![2.0; 37];
        assert_eq!(dot(&a, &b), 2.0 * (0..37).sum::<i32>() as f32);
        assert_eq!(sum(&a), (0..37).sum::<i32>() as f32);
    }
}

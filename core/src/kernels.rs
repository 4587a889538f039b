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
    fn dot_handles_lengths_that_are_not_lane_multiples() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![2.0; 37];
        assert_eq!(dot(&a, &b), 2.0 * (0..37).sum::<i32>() as f32);
        assert_eq!(sum(&a), (0..37).sum::<i32>() as f32);
    }
}

//! The f32-arithmetic kernels (f32, f16 and int4 weights against f32 activations), int4
//! against integer activations, and the decoders of the float formats.

use super::int8::{Q_BLOCK, act_position};
use super::{LANES, Lanes, f16_to_f32, le_f32, le_u16};

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

/// The 32 weights of an int4 block `{ f16 d; u8 q[16] }`, as integers −8..=7.
#[inline(always)]
pub fn int4_values(q: &[u8]) -> [i8; 32] {
    let mut v = [0i8; 32];
    for (j, &b) in q.iter().take(16).enumerate() {
        v[2 * j] = (b & 0x0f) as i8 - 8;
        v[2 * j + 1] = (b >> 4) as i8 - 8;
    }
    v
}

/// `lanes += w · x` for int4 blocks of 32 (`x.len()` a multiple of 32): each block's
/// products are summed into fresh lanes, which are then scaled by `d` and added.
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

/// `acc += Σ_blocks d · (s · Σ w·q)` for int4 blocks against 16-bit activations (one per
/// element, [`act_position`] order) with a scale per block of 32, block after block.
pub fn dot_q4(w: &[u8], q: &[i16], scales: &[f32], acc: &mut f32) {
    let mut total = *acc;
    for ((blk, qb), &s) in w.chunks_exact(2 + 16).zip(q.chunks_exact(Q_BLOCK)).zip(scales) {
        let d = f16_to_f32(le_u16(blk, 0));
        let values = int4_values(&blk[2..]);
        let mut isum = 0i32;
        for (k, &v) in values.iter().enumerate() {
            isum += i32::from(v) * i32::from(qb[act_position(k)]);
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
    for (o, b) in out.iter_mut().zip(w.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Decodes f16 weights into `out` (`w.len() == 2 * out.len()`).
pub fn decode_f16(w: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(w.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

#[cfg(test)]
mod tests {
    use super::super::reduce;
    use super::super::tests::lcg;
    use super::*;

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
    fn int4_kernel_matches_the_dequantized_dot() {
        let mut seed = 5;
        let x: Vec<f32> = (0..64).map(|_| lcg(&mut seed)).collect();
        let dense: Vec<f32> = (0..64).map(|_| lcg(&mut seed)).collect();
        let mut bytes = vec![0u8; 36];
        crate::quant::encode_int4(&dense, &mut bytes);
        let mut deq = vec![0.0; 64];
        decode_int4(&bytes, &mut deq);
        let mut lanes = [0.0; LANES];
        dot_int4(&bytes, &x, &mut lanes);
        let exact: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!((f64::from(reduce(&lanes)) - exact).abs() < 1e-5);
    }
}

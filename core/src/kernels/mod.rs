//! Dot products over weight bytes, with one summation order on every target.
//!
//! **f32 arithmetic** (f32 and f16 weights, and int4 weights with f32 activations): products
//! are accumulated into [`LANES`] independent partial sums (element `i` goes to lane
//! `i % LANES`) with a separate multiply and add (never a fused multiply-add), and the lanes
//! are added pairwise at the end. The order is fixed by the code, not the compiler, so a SIMD
//! kernel of any width that keeps the lanes (AVX2: two registers of 8, AVX-512: one of 16)
//! gives the bits of the plain loop, and so do x86-64 and a Cortex-M33.
//!
//! **Integer arithmetic** (int8 weights, every activation path): each block of 32 weights meets
//! its 32 activations, quantized per block to 16-bit integers with an f32 scale, in an exact
//! i32 sum; only the per-block scaling is f32, block after block into four lanes
//! (`lanes[b % 4]` for block `b` of the row). Integer sums are the same in any order and at
//! any SIMD width, so the kernels may vectorize, reorder or use `SMLAD` freely. See
//! [`int8`] for the three activation paths (exact, 16-bit, 8-bit).
//!
//! A row may arrive in several pieces (chunk boundaries); carrying the lanes between pieces
//! keeps the result independent of the chunk size. [`Kernels`] is the table the forward pass
//! calls through: [`Kernels::native`] by default (the DSP kernels on a Cortex-M33 built with
//! the `dsp` feature, the plain ones elsewhere); the host picks SIMD kernels at run time
//! ([`x86::kernels`]). Every fast kernel has its plain twin here and is tested against it.

pub mod affine;
pub mod check;
mod float;
pub mod int8;
#[cfg(all(target_arch = "arm", feature = "dsp"))]
mod m33;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use float::{
    decode_f16, decode_f32, decode_int4, dot_f16, dot_f32, dot_int4, dot_q4, int4_values,
};
pub use int8::{
    ActivationCode, code_for_int8, decode_int8, dot_i8_i8, dot_i8_i16, dot_i8_split,
    quantize_activations,
};

/// Partial sums per dot product.
pub const LANES: usize = 16;

/// The partial sums of one dot product in progress (the integer kernels use the first
/// [`BLOCK_LANES`]).
pub type Lanes = [f32; LANES];

/// Lanes of the integer kernels' per-block sums: block `b` of a row goes to lane `b % 4`.
pub const BLOCK_LANES: usize = 4;

/// Decodes an IEEE binary16 value, exactly for all 65,536 of them (as x86's `VCVTPH2PS` and
/// the Cortex-M33's `VCVTB` do: infinities stay infinite, a NaN keeps its sign and payload
/// and becomes quiet), branch-free so loops over it vectorize.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    const TWO_POW_112: f32 = 5.192_297e33;
    let bits = u32::from(bits);
    let magnitude = bits & 0x7fff;
    let finite = (f32::from_bits(magnitude << 13) * TWO_POW_112).to_bits();
    let quiet = if bits & 0x3ff != 0 { 0x0040_0000 } else { 0 };
    let special = 0x7f80_0000 | ((bits & 0x3ff) << 13) | quiet;
    let value = if magnitude >= 0x7c00 { special } else { finite };
    f32::from_bits(value | ((bits & 0x8000) << 16))
}

/// Little-endian u16 number `i` of `b`.
#[inline(always)]
pub(crate) fn le_u16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// Little-endian f32 number `i` of `b`.
#[inline(always)]
pub(crate) fn le_f32(b: &[u8], i: usize) -> f32 {
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

/// Adds the integer kernels' block lanes pairwise: (0+2, 1+3), then the two.
#[inline]
pub fn reduce_blocks(lanes: &Lanes) -> f32 {
    (lanes[0] + lanes[2]) + (lanes[1] + lanes[3])
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

/// `lanes += w · x` over whole blocks of f32 or f16 weights (little-endian bytes).
pub type FloatDot = fn(w: &[u8], x: &[f32], lanes: &mut Lanes);

/// `lanes[(block0 + b) % 4] += d_b · (s_b · t_b)` over the blocks of int8 weight units `w`
/// against activations `a` coded for them ([`int8::code_for_int8`]) with per-block scales
/// `s` (see [`int8`]).
pub type IntDot = fn(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes);

/// `out[r] = ` the finished dot product of whole row `r` of int8 weights (rows `row_bytes`
/// apart, each starting with `weight_bytes` of units) against one position's coded
/// activations: the [`IntDot`] of each row from fresh lanes, then [`reduce_blocks`].
pub type IntRows =
    fn(w: &[u8], row_bytes: usize, weight_bytes: usize, a: &[i16], s: &[f32], out: &mut [f32]);

/// `acc += Σ_blocks` of whole blocks of 4- to 6-bit weights `w` against 16-bit activations
/// `a` (one per element) with per-block scales `s`, block after block (see [`affine`]).
pub type Int16Dot = fn(w: &[u8], a: &[i16], s: &[f32], acc: &mut f32);

/// The kernels a forward pass calls: one set of bits, several speeds.
///
/// Every table gives the same bits as [`Kernels::PORTABLE`]; only the instructions differ.
/// Tables with SIMD kernels come from [`x86::kernels`] (chosen by the host at run time from
/// the CPU's features) or, on a Cortex-M33 with the `dsp` feature, from [`Kernels::native`].
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// What the table uses, for reports (`portable`, `avx2+f16c`, `cortex-m33 dsp`, …).
    pub name: &'static str,
    /// f32 weights × f32 activations.
    pub dot_f32: FloatDot,
    /// f16 weights × f32 activations.
    pub dot_f16: FloatDot,
    /// int8 weights × 16-bit activations (the int16 path).
    pub dot_i8_i16: IntDot,
    /// int8 weights × 8-bit activations (the int8 path).
    pub dot_i8_i8: IntDot,
    /// int8 weights × activations split into two 16-bit halves (the exact path).
    pub dot_i8_split: IntDot,
    /// Whole rows of [`Self::dot_i8_i16`].
    pub rows_i8_i16: IntRows,
    /// Whole rows of [`Self::dot_i8_i8`].
    pub rows_i8_i8: IntRows,
    /// Whole rows of [`Self::dot_i8_split`].
    pub rows_i8_split: IntRows,
}

impl Kernels {
    /// The plain loops: the reference every other table is tested against.
    pub const PORTABLE: Self = Self {
        name: "portable",
        dot_f32: float::dot_f32,
        dot_f16: float::dot_f16,
        dot_i8_i16: int8::dot_i8_i16,
        dot_i8_i8: int8::dot_i8_i8,
        dot_i8_split: int8::dot_i8_split,
        rows_i8_i16: int8::rows_i8_i16,
        rows_i8_i8: int8::rows_i8_i8,
        rows_i8_split: int8::rows_i8_split,
    };

    /// The best kernels this build has without run-time detection: the Cortex-M DSP ones
    /// (`SXTB16`/`SMLAD`, `VCVTB`) with the `dsp` feature on Arm, else [`Self::PORTABLE`].
    pub const fn native() -> Self {
        #[cfg(all(target_arch = "arm", feature = "dsp"))]
        {
            m33::KERNELS
        }
        #[cfg(not(all(target_arch = "arm", feature = "dsp")))]
        {
            Self::PORTABLE
        }
    }
}

impl Default for Kernels {
    fn default() -> Self {
        Self::native()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn f16_decode_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            let ours = f16_to_f32(bits);
            if h.is_nan() {
                assert!(ours.is_nan(), "bits {bits:#06x}");
                assert_eq!(ours.to_bits() & 0x8000_0000, u32::from(bits & 0x8000) << 16);
                assert_eq!(ours.to_bits() & 0x0040_0000, 0x0040_0000, "quiet");
                assert_eq!((ours.to_bits() >> 13) & 0x1ff, u32::from(bits & 0x1ff), "payload");
            } else {
                assert_eq!(ours.to_bits(), h.to_f32().to_bits(), "bits {bits:#06x}");
            }
        }
    }

    /// A deterministic value in [-1, 1).
    pub(crate) fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn dot_handles_lengths_that_are_not_lane_multiples() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![2.0; 37];
        assert_eq!(dot(&a, &b), 2.0 * (0..37).sum::<i32>() as f32);
        assert_eq!(sum(&a), (0..37).sum::<i32>() as f32);
    }

    #[test]
    fn the_native_table_is_the_portable_one_off_arm() {
        #[cfg(not(all(target_arch = "arm", feature = "dsp")))]
        assert_eq!(Kernels::native().name, Kernels::PORTABLE.name);
        assert_eq!(Kernels::default().name, Kernels::native().name);
    }
}

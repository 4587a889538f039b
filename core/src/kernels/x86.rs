//! x86-64 SIMD kernels, chosen at run time by the host ([`kernels`]): the bits of the plain
//! ones, faster.
//!
//! - f32 and f16 weights: the 16 lanes of the plain kernel as two AVX2 registers (or one
//!   AVX-512 register), a multiply then an add (never FMA); f16 decoded by `VCVTPH2PS`
//!   (F16C), which converts every half exactly as [`super::f16_to_f32`] does.
//! - int8 weights: each block's 32 weights unbiased (`VPXOR`), widened to i16 and multiplied
//!   with `VPMADDWD` (exact i32 sums), eight blocks' sums gathered into one register, then
//!   the per-block f32 scaling of the plain kernel, eight blocks at a time, in the same order.
//!   The int8 path's activations are laid out as the int16 path's here, so it shares them.
//!
//! `core` cannot detect CPU features (that needs `std`), so the caller says which it has.

use core::arch::x86_64::*;

use super::int8::{ActivationCode, PAIR_BYTES, Q_BLOCK, block_count};
use super::{BLOCK_LANES, Kernels, LANES, Lanes, int8};

/// The CPU features the kernels can use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// AVX2 and F16C (x86-64-v3).
    pub avx2: bool,
    /// AVX-512 F, BW and VL, with AVX2 and F16C.
    pub avx512: bool,
}

impl Features {
    /// Every level the kernels distinguish that `self` allows, lowest first (the portable
    /// kernels are level 0): what tests run through.
    pub fn levels(self) -> impl Iterator<Item = Self> {
        let avx2 = Self { avx2: true, avx512: false };
        let avx512 = Self { avx2: true, avx512: true };
        [Self::default(), avx2, avx512]
            .into_iter()
            .filter(move |l| (!l.avx2 || self.avx2) && (!l.avx512 || (self.avx512 && self.avx2)))
    }
}

/// The fastest kernels `features` allow ([`Kernels::PORTABLE`] without AVX2).
///
/// # Safety
/// The CPU running the returned kernels must have every feature set in `features`
/// (`is_x86_feature_detected!("avx2")` and `"f16c"`; `"avx512f"`, `"avx512bw"` and
/// `"avx512vl"`).
pub unsafe fn kernels(features: Features) -> Kernels {
    match (features.avx2, features.avx512) {
        (true, true) => Kernels {
            name: "avx512 (f32, f16) + avx2 (int8)",
            dot_f32: dot_f32_avx512,
            dot_f16: dot_f16_avx512,
            dot_i8_i16: dot_i8_i16_avx2,
            dot_i8_i8: dot_i8_i16_avx2,
            dot_i8_split: dot_i8_split_avx2,
            rows_i8_i16: rows_i8_i16_avx2,
            rows_i8_i8: rows_i8_i16_avx2,
            rows_i8_split: rows_i8_split_avx2,
        },
        (true, false) => Kernels {
            name: "avx2+f16c",
            dot_f32: dot_f32_avx2,
            dot_f16: dot_f16_avx2,
            dot_i8_i16: dot_i8_i16_avx2,
            dot_i8_i8: dot_i8_i16_avx2,
            dot_i8_split: dot_i8_split_avx2,
            rows_i8_i16: rows_i8_i16_avx2,
            rows_i8_i8: rows_i8_i16_avx2,
            rows_i8_split: rows_i8_split_avx2,
        },
        _ => Kernels::PORTABLE,
    }
}

// The entry points below are safe `fn`s so they fit the table; each calls its
// `#[target_feature]` body, which is sound because such a table can only be built by the
// unsafe `kernels`, whose caller vouches for the features.

fn dot_f32_avx2(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { f32_avx2(w, x, lanes) }
}

fn dot_f16_avx2(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { f16_avx2(w, x, lanes) }
}

fn dot_f32_avx512(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { f32_avx512(w, x, lanes) }
}

fn dot_f16_avx512(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { f16_avx512(w, x, lanes) }
}

fn dot_i8_i16_avx2(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { int8_avx2::<false>(w, a, s, block0, lanes) }
}

fn dot_i8_split_avx2(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    // SAFETY: see above.
    unsafe { int8_avx2::<true>(w, a, s, block0, lanes) }
}

fn rows_i8_i16_avx2(w: &[u8], rb: usize, wb: usize, a: &[i16], s: &[f32], out: &mut [f32]) {
    int8::rows_with(dot_i8_i16_avx2, w, rb, wb, a, s, out);
}

fn rows_i8_split_avx2(w: &[u8], rb: usize, wb: usize, a: &[i16], s: &[f32], out: &mut [f32]) {
    int8::rows_with(dot_i8_split_avx2, w, rb, wb, a, s, out);
}

/// Elements both slices cover, in whole groups of [`LANES`].
fn groups(w_elems: usize, x: usize) -> usize {
    w_elems.min(x) / LANES
}

#[target_feature(enable = "avx2,f16c")]
fn f32_avx2(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let n = groups(w.len() / 4, x.len());
    // SAFETY: every load reads within the first `n` groups of `w` and `x`.
    unsafe {
        let (wp, xp) = (w.as_ptr().cast::<f32>(), x.as_ptr());
        let mut lo = _mm256_loadu_ps(lanes.as_ptr());
        let mut hi = _mm256_loadu_ps(lanes.as_ptr().add(8));
        for g in 0..n {
            let at = g * LANES;
            lo = _mm256_add_ps(
                lo,
                _mm256_mul_ps(_mm256_loadu_ps(wp.add(at)), _mm256_loadu_ps(xp.add(at))),
            );
            let (w8, x8) = (_mm256_loadu_ps(wp.add(at + 8)), _mm256_loadu_ps(xp.add(at + 8)));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(w8, x8));
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
    }
}

#[target_feature(enable = "avx2,f16c")]
fn f16_avx2(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let n = groups(w.len() / 2, x.len());
    // SAFETY: every load reads within the first `n` groups of `w` and `x`.
    unsafe {
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut lo = _mm256_loadu_ps(lanes.as_ptr());
        let mut hi = _mm256_loadu_ps(lanes.as_ptr().add(8));
        for g in 0..n {
            let at = g * LANES;
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * at).cast()));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * at + 16).cast()));
            lo = _mm256_add_ps(lo, _mm256_mul_ps(w0, _mm256_loadu_ps(xp.add(at))));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(w1, _mm256_loadu_ps(xp.add(at + 8))));
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
fn f32_avx512(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let n = groups(w.len() / 4, x.len());
    // SAFETY: every load reads within the first `n` groups of `w` and `x`.
    unsafe {
        let (wp, xp) = (w.as_ptr().cast::<f32>(), x.as_ptr());
        let mut acc = _mm512_loadu_ps(lanes.as_ptr());
        for g in 0..n {
            let at = g * LANES;
            acc = _mm512_add_ps(
                acc,
                _mm512_mul_ps(_mm512_loadu_ps(wp.add(at)), _mm512_loadu_ps(xp.add(at))),
            );
        }
        _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
fn f16_avx512(w: &[u8], x: &[f32], lanes: &mut Lanes) {
    let n = groups(w.len() / 2, x.len());
    // SAFETY: every load reads within the first `n` groups of `w` and `x`.
    unsafe {
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = _mm512_loadu_ps(lanes.as_ptr());
        for g in 0..n {
            let at = g * LANES;
            let w16 = _mm512_cvtph_ps(_mm256_loadu_si256(wp.add(2 * at).cast()));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(w16, _mm512_loadu_ps(xp.add(at))));
        }
        _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
    }
}

/// `Σ w·a` of one block as eight partial i32 sums (stored weights at `q`, their even bytes'
/// bias undone by one `XOR`; 16-bit activations at `a`; 32 of each).
///
/// # Safety
/// 32 bytes at `q` and 32 i16 at `a` are readable.
#[target_feature(enable = "avx2")]
unsafe fn block_partials(q: *const u8, a: *const i16) -> __m256i {
    // SAFETY: the caller's promise.
    unsafe {
        let bias = _mm_set1_epi16(0x0080);
        let w0 = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128(q.cast()), bias));
        let w1 = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128(q.add(16).cast()), bias));
        let p0 = _mm256_madd_epi16(w0, _mm256_loadu_si256(a.cast()));
        let p1 = _mm256_madd_epi16(w1, _mm256_loadu_si256(a.add(16).cast()));
        _mm256_add_epi32(p0, p1)
    }
}

/// The eight totals of eight vectors of eight partial sums, in order.
#[target_feature(enable = "avx2")]
fn totals8(v: [__m256i; 8]) -> __m256i {
    let t0 = _mm256_hadd_epi32(v[0], v[1]);
    let t1 = _mm256_hadd_epi32(v[2], v[3]);
    let t2 = _mm256_hadd_epi32(v[4], v[5]);
    let t3 = _mm256_hadd_epi32(v[6], v[7]);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    let lo = _mm256_permute2x128_si256::<0x20>(u0, u1);
    let hi = _mm256_permute2x128_si256::<0x31>(u0, u1);
    _mm256_add_epi32(lo, hi)
}

/// The four lanes seen from block phase 2 (`[l2, l3, l0, l1]`); its own inverse.
#[target_feature(enable = "avx2")]
fn rotate_half(v: __m128) -> __m128 {
    _mm_shuffle_ps::<0b01_00_11_10>(v, v)
}

/// The int8 kernels: [`int8::dot_i8_i16`] (`SPLIT = false`) and [`int8::dot_i8_split`]
/// (`SPLIT = true`), eight blocks (four pairs) at a time, the rest through the plain ones.
#[target_feature(enable = "avx2,f16c")]
fn int8_avx2<const SPLIT: bool>(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    let code = if SPLIT { ActivationCode::Split } else { ActivationCode::Int16 };
    let (header, per_block) = (int8::header_slots(code), int8::block_slots(code));
    let blocks = block_count(w).min(s.len()).min(a.len() / per_block);
    let batches = if block0.is_multiple_of(2) { blocks / 8 } else { 0 };
    let rotated = !block0.is_multiple_of(BLOCK_LANES);
    // SAFETY: batch `k` reads pairs 4k..4k+4 of `w` (whole pairs: the batch's eight blocks
    // are at most `blocks`, and an odd row's single block is its last), activations and
    // scales of blocks 8k..8k+8, all within the slices.
    unsafe {
        let mut acc = _mm_loadu_ps(lanes.as_ptr());
        if rotated {
            acc = rotate_half(acc);
        }
        for k in 0..batches {
            let unit = w.as_ptr().add(k * 4 * PAIR_BYTES);
            let act = a.as_ptr().add(k * 8 * per_block + header);
            let mut hi = [_mm256_setzero_si256(); 8];
            let mut lo = [_mm256_setzero_si256(); 8];
            for b in 0..8 {
                let q = unit.add((b / 2) * PAIR_BYTES + 4 + (b % 2) * Q_BLOCK);
                hi[b] = block_partials(q, act.add(b * per_block));
                if SPLIT {
                    lo[b] = block_partials(q, act.add(b * per_block + Q_BLOCK));
                }
            }
            let mut t = _mm256_cvtepi32_ps(totals8(hi));
            if SPLIT {
                let l = _mm256_cvtepi32_ps(totals8(lo));
                t = _mm256_add_ps(t, _mm256_mul_ps(l, _mm256_set1_ps(1.0 / 32768.0)));
            }
            let word = |p: usize| (unit.add(p * PAIR_BYTES).cast::<u32>().read_unaligned()) as i32;
            let scales = _mm_set_epi32(word(3), word(2), word(1), word(0));
            let d = _mm256_cvtph_ps(scales);
            let v = _mm256_mul_ps(d, _mm256_mul_ps(_mm256_loadu_ps(s.as_ptr().add(8 * k)), t));
            acc = _mm_add_ps(acc, _mm256_castps256_ps128(v));
            acc = _mm_add_ps(acc, _mm256_extractf128_ps::<1>(v));
        }
        if rotated {
            acc = rotate_half(acc);
        }
        _mm_storeu_ps(lanes.as_mut_ptr(), acc);
    }
    let done = 8 * batches;
    if done < blocks {
        let (w, a, s) = (&w[done / 2 * PAIR_BYTES..], &a[done * per_block..], &s[done..]);
        if SPLIT {
            int8::dot_i8_split(w, a, s, block0 + done, lanes);
        } else {
            int8::dot_i8_i16(w, a, s, block0 + done, lanes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::float;
    use super::super::int8::block_slots;
    use super::super::int8::tests::{activations, coded, row_dot, weights};
    use super::super::tests::lcg;
    use super::*;

    fn detected() -> Features {
        Features {
            avx2: std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c"),
            avx512: std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl"),
        }
    }

    /// Every table this machine can run, the portable one first.
    fn tables() -> std::vec::Vec<Kernels> {
        // SAFETY: the levels are those detected on this machine.
        detected().levels().map(|f| unsafe { kernels(f) }).collect()
    }

    #[test]
    fn float_kernels_match_the_plain_ones_bit_for_bit() {
        let mut seed = 3;
        for len in [16usize, 32, 48, 768, 3072] {
            let x: std::vec::Vec<f32> = (0..len).map(|_| lcg(&mut seed) * 4.0).collect();
            let w32: std::vec::Vec<u8> =
                (0..len).flat_map(|_| (lcg(&mut seed) * 3.0).to_le_bytes()).collect();
            // Every f16 bit pattern, NaNs and infinities included, cycled through the row.
            let w16: std::vec::Vec<u8> = (0..len)
                .flat_map(|i| ((i as u32 * 40503 + len as u32) as u16).to_le_bytes())
                .collect();
            let start: Lanes = core::array::from_fn(|l| l as f32 * 0.25);
            for table in tables() {
                for (w, kernel, plain) in [
                    (&w32, table.dot_f32, float::dot_f32 as super::super::FloatDot),
                    (&w16, table.dot_f16, float::dot_f16),
                ] {
                    let (mut fast, mut slow) = (start, start);
                    kernel(w, &x, &mut fast);
                    plain(w, &x, &mut slow);
                    let bits = |l: &Lanes| l.map(f32::to_bits);
                    assert_eq!(bits(&fast), bits(&slow), "{} len {len}", table.name);
                }
            }
        }
    }

    #[test]
    fn every_f16_converts_as_the_plain_decoder_does() {
        if !detected().avx2 {
            return;
        }
        for bits in 0..=u16::MAX {
            // SAFETY: F16C was detected.
            let fast = unsafe { convert(bits) };
            assert_eq!(fast.to_bits(), super::super::f16_to_f32(bits).to_bits(), "{bits:#06x}");
        }
    }

    #[target_feature(enable = "f16c")]
    fn convert(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
    }

    #[test]
    fn int8_kernels_match_the_plain_ones_bit_for_bit() {
        for (cols, block) in [(64, 32), (96, 32), (256, 32), (768, 64), (800, 32), (3072, 32)] {
            let (w, _) = weights(1, cols, block, cols as u64);
            let x = activations(cols, 7);
            let blocks = cols / Q_BLOCK;
            for code in [ActivationCode::Split, ActivationCode::Int16, ActivationCode::Int8] {
                let (q, s) = coded(code, &x);
                let pick = |t: &Kernels| match code {
                    ActivationCode::Split => t.dot_i8_split,
                    ActivationCode::Int16 => t.dot_i8_i16,
                    ActivationCode::Int8 => t.dot_i8_i8,
                };
                let per = block_slots(code);
                let plain = row_dot(pick(&Kernels::PORTABLE), &w, &q, &s, per, &[]);
                for table in tables() {
                    // Whole, and cut at every other pair (phases 0 and 2, short pieces).
                    let cuts: std::vec::Vec<usize> = (2..blocks).step_by(6).collect();
                    for cuts in [&[][..], &cuts, &[2], &[18]] {
                        let got = row_dot(pick(&table), &w, &q, &s, per, cuts);
                        assert_eq!(
                            got.to_bits(),
                            plain.to_bits(),
                            "{} {code:?} {cols} {cuts:?}",
                            table.name
                        );
                    }
                }
            }
        }
    }
}

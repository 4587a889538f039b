//! The fast kernels against their plain twins, on the target itself: what a board (or its
//! emulator) runs to prove its assembly gives the host's bits.

use super::int8::{
    ActivationCode, Q_BLOCK, act_position, block_slots, code_for_int8, header_slots,
    int8_row_bytes, stored_weight,
};
use super::{Kernels, LANES, Lanes, f16_to_f32, reduce_blocks};
use crate::quant::encode_int8;

/// Widest row checked (7 pairs and a single block, and every width below).
const COLS: usize = 480;
/// Rows per whole-rows call.
const ROWS: usize = 3;

/// A kernel that disagreed with its plain twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mismatch {
    /// Which kernel (`dot_i8_i16`, `rows_i8_split`, `f16`, …).
    pub kernel: &'static str,
    /// Inputs of the row (or the f16 bits, for `f16`).
    pub cols: usize,
    /// Block where the piece started.
    pub block0: usize,
    /// The fast kernel's bits.
    pub found: u32,
    /// The plain kernel's bits.
    pub expected: u32,
}

/// A deterministic value in [-1, 1).
fn noise(seed: &mut u32) -> f32 {
    *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
}

/// Checks `fast` against [`Kernels::PORTABLE`] on generated weights and activations: every
/// int8 kernel on rows of every width up to 480 inputs (odd block counts included), cut at
/// every pair boundary, and every f16 value through the scale decoder; returns the number
/// of comparisons, or the first mismatch.
pub fn check(fast: &Kernels) -> Result<usize, Mismatch> {
    let plain = Kernels::PORTABLE;
    let mut checked = 0;
    // Scales: every f16 bit pattern stored as a pair's scale word, through both kernels.
    checked += check_scales(fast)?;
    let mut seed = 7;
    let mut x = [0.0f32; COLS];
    for (i, v) in x.iter_mut().enumerate() {
        *v = noise(&mut seed) * if i % 37 == 5 { 60.0 } else { 1.5 };
    }
    let mut weights = [0u8; ROWS * int8_row_bytes(COLS)];
    let mut q = [0i16; COLS / Q_BLOCK * block_slots(ActivationCode::Split)];
    let mut s = [0.0f32; COLS / Q_BLOCK];
    for cols in (Q_BLOCK..=COLS).step_by(Q_BLOCK) {
        let row_bytes = int8_row_bytes(cols);
        for r in 0..ROWS {
            let mut row = [0.0f32; COLS];
            for v in &mut row[..cols] {
                *v = noise(&mut seed) * (1 + r) as f32;
            }
            encode_int8(&row[..cols], 32, &mut weights[r * row_bytes..(r + 1) * row_bytes]);
        }
        let w = &weights[..ROWS * row_bytes];
        for code in [ActivationCode::Split, ActivationCode::Int16, ActivationCode::Int8] {
            let per = block_slots(code);
            let (q, s) = (&mut q[..cols / Q_BLOCK * per], &mut s[..cols / Q_BLOCK]);
            code_for_int8(code, &x[..cols], q, s);
            let (dot, plain_dot, rows, plain_rows, names) = match code {
                ActivationCode::Split => (
                    fast.dot_i8_split,
                    plain.dot_i8_split,
                    fast.rows_i8_split,
                    plain.rows_i8_split,
                    ["dot_i8_split", "rows_i8_split"],
                ),
                ActivationCode::Int16 => (
                    fast.dot_i8_i16,
                    plain.dot_i8_i16,
                    fast.rows_i8_i16,
                    plain.rows_i8_i16,
                    ["dot_i8_i16", "rows_i8_i16"],
                ),
                ActivationCode::Int8 => (
                    fast.dot_i8_i8,
                    plain.dot_i8_i8,
                    fast.rows_i8_i8,
                    plain.rows_i8_i8,
                    ["dot_i8_i8", "rows_i8_i8"],
                ),
            };
            // Whole rows.
            let (mut got, mut want) = ([0.0f32; ROWS], [0.0f32; ROWS]);
            rows(w, row_bytes, row_bytes, q, s, &mut got);
            plain_rows(w, row_bytes, row_bytes, q, s, &mut want);
            for (g, e) in got.iter().zip(&want) {
                compare(names[1], cols, 0, *g, *e)?;
                checked += 1;
            }
            // A row cut at block `cut` (even), the lanes carried across.
            let blocks = cols / Q_BLOCK;
            for cut in (0..=blocks).step_by(2) {
                let at = super::int8::int8_block_offset(cut);
                let row = &w[..row_bytes];
                let piece = |k: super::IntDot, lanes: &mut Lanes| {
                    k(&row[..at], &q[..cut * per], &s[..cut], 0, lanes);
                    k(&row[at..], &q[cut * per..], &s[cut..], cut, lanes);
                };
                let (mut fl, mut pl) = (start_lanes(), start_lanes());
                piece(dot, &mut fl);
                piece(plain_dot, &mut pl);
                compare(names[0], cols, cut, reduce_blocks(&fl), reduce_blocks(&pl))?;
                checked += 1;
            }
        }
    }
    Ok(checked)
}

/// Lanes that already hold something, as when a piece continues a row.
fn start_lanes() -> Lanes {
    let mut lanes = [0.0f32; LANES];
    for (l, v) in lanes.iter_mut().enumerate() {
        *v = l as f32 * 0.125;
    }
    lanes
}

fn compare(
    kernel: &'static str,
    cols: usize,
    block0: usize,
    found: f32,
    expected: f32,
) -> Result<(), Mismatch> {
    let (found, expected) = (found.to_bits(), expected.to_bits());
    // NaNs may differ in payload between instruction sets; they are all NaN.
    let both_nan = f32::from_bits(found).is_nan() && f32::from_bits(expected).is_nan();
    if found == expected || both_nan {
        Ok(())
    } else {
        Err(Mismatch { kernel, cols, block0, found, expected })
    }
}

/// Every f16 bit pattern as both scales of a pair (zero weights but one, zero activations
/// but one, so each result is the decoded scale times a known integer, rounded once).
fn check_scales(fast: &Kernels) -> Result<usize, Mismatch> {
    let mut unit = [0u8; 2 * 34];
    for (k, b) in unit[4..].iter_mut().enumerate() {
        // Weight 0 of block 0 is 1, of block 1 is 2; the rest 0.
        let q = match k {
            0 => 1,
            Q_BLOCK => 2,
            _ => 0,
        };
        *b = stored_weight(k % Q_BLOCK, q);
    }
    // Activation 0 of each block is the block's only one, coded as 32767 (the int16 layout,
    // headers included); scales of 1.
    let mut a = [0i16; 2 * block_slots(ActivationCode::Int16)];
    let mut x = [0.0f32; 2 * Q_BLOCK];
    (x[0], x[Q_BLOCK]) = (3.0, 5.0);
    code_for_int8(ActivationCode::Int16, &x, &mut a, &mut [0.0; 2]);
    let first = header_slots(ActivationCode::Int16) + act_position(0);
    let top = a[first];
    let s = [1.0f32, 1.0];
    let mut checked = 0;
    for bits in (0..=u16::MAX).step_by(3) {
        let other = bits.wrapping_mul(40_503);
        unit[..2].copy_from_slice(&bits.to_le_bytes());
        unit[2..4].copy_from_slice(&other.to_le_bytes());
        let (mut fl, mut pl) = ([0.0f32; LANES], [0.0f32; LANES]);
        (fast.dot_i8_i16)(&unit, &a, &s, 0, &mut fl);
        (Kernels::PORTABLE.dot_i8_i16)(&unit, &a, &s, 0, &mut pl);
        for l in 0..2 {
            compare("f16", usize::from(bits), l, fl[l], pl[l])?;
        }
        // And the plain decoder is what the plain kernel used.
        compare("f16", usize::from(bits), 2, pl[0], f16_to_f32(bits) * f32::from(top))?;
        checked += 1;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_kernels_pass_and_a_wrong_kernel_fails() {
        assert!(check(&Kernels::native()).unwrap() > 1000);
        fn off_by_one(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
            super::super::int8::dot_i8_i16(w, a, s, block0, lanes);
            lanes[0] = f32::from_bits(lanes[0].to_bits() ^ 1);
        }
        let wrong = Kernels { dot_i8_i16: off_by_one, ..Kernels::PORTABLE };
        assert_eq!(check(&wrong).unwrap_err().kernel, "f16");
    }
}

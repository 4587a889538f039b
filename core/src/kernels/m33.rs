//! Cortex-M33 kernels (feature `dsp`): the integer paths in `SXTB16`/`SMLAD` inline assembly,
//! one pair of blocks per call, with the per-block f32 scaling in the same assembly.
//!
//! Per four weights (one word) on the int16 and exact paths: `UXTB16` takes the even weights
//! (stored `+ 128`, see [`super::int8`]), `SXTB16 ror 8` the odd ones, matching activations
//! stored as those pairs ([`super::int8::act_position`]), and `SMLAD` multiplies and adds a
//! pair per instruction (twice per pair of halves on the exact path, which has two 16-bit
//! halves per activation). Each block's sum starts from its header, `−128 · Σ` of the even
//! activations, which cancels the bias. The int8 path needs one instruction fewer per word:
//! its raw halfwords `(q0 + 128) + 256 · q1` meet the even activations in one `SMLAD`, the odd
//! weights (`SXTB16 ror 8`) the odd slots `a1 − 256 · a0` in another. Weights and activations
//! arrive four words per `LDM` (the pack's pairs of blocks keep every weight word-aligned),
//! each block's header in the first activation `LDM`. Each block's i32 sum then
//! goes through `VCVT`, the f16 scales through `VCVTB`/`VCVTT` (exact, as
//! [`super::f16_to_f32`]), and `VMUL`/`VMLA` — ARMv8-M's `VMLA.F32` rounds the product
//! before adding, so it gives the bits of the plain kernel's separate multiply and add.
//!
//! Anything the assembly does not take (a piece that is not word-aligned, which the pack
//! and the workspace never produce, and the single block an odd row ends with) goes through
//! the plain kernel.

use core::arch::asm;

use super::int8::{self, ActivationCode, PAIR_BYTES, Q_BLOCK, block_slots};
use super::{Kernels, Lanes, float};

/// The table [`Kernels::native`] gives with the `dsp` feature on Arm.
pub(super) const KERNELS: Kernels = Kernels {
    name: "cortex-m33 dsp",
    dot_f32: float::dot_f32,
    dot_f16: float::dot_f16,
    dot_i8_i16: dot_i8_i16,
    dot_i8_i8: dot_i8_i8,
    dot_i8_split: dot_i8_split,
    rows_i8_i16: rows_i8_i16,
    rows_i8_i8: rows_i8_i8,
    rows_i8_split: rows_i8_split,
};

/// Whole pairs the assembly may take, or `None` when the operands are not word-aligned
/// (the pack and the workspace never produce that) or the piece starts mid-pair.
fn pairs(w: &[u8], a: &[i16], s: &[f32], per_block: usize, block0: usize) -> Option<usize> {
    let aligned = w.as_ptr() as usize % 4 == 0 && a.as_ptr() as usize % 4 == 0;
    let n = (w.len() / PAIR_BYTES).min(s.len() / 2).min(a.len() / (2 * per_block));
    (aligned && block0 % 2 == 0).then_some(n)
}

/// One weight word (`$w`) against its two activation words (`$a0`, `$a1`), into `r2` (`r3`
/// is scratch): the even weights by `$even` (`uxtb16` for stored weights, `sxtb16` for
/// plain bytes), the odd ones by `sxtb16 ror 8`; the first product is `$op` with `$acc`:
/// `smuad` (no accumulator) starts the block's sum, `smlad` with `, r2` adds to it.
#[rustfmt::skip]
macro_rules! i16_word {
    ($even:literal, $op:literal, $acc:literal, $w:literal, $a0:literal, $a1:literal) => {
        concat!(
            $even, " r3, ", $w, "\n",
            $op, " r2, r3, ", $a0, $acc, "\n",
            "sxtb16 ", $w, ", ", $w, ", ror #8\n",
            "smlad r2, ", $w, ", ", $a1, ", r2\n",
        )
    };
}

/// One block of the int16 path: `r2 = Σ w·a` over 8 stored weight words (`r0`) and a header
/// and 16 activation words (`r1`), both pointers advanced; the header starts the sum.
macro_rules! i16_block {
    () => {
        concat!(
            "ldm r0!, {{r4, r5, r8, r9}}\n",
            "ldm r1!, {{r2, r10, r11, r12, lr}}\n",
            i16_word!("uxtb16", "smlad", ", r2", "r4", "r10", "r11"),
            i16_rest!("uxtb16"),
        )
    };
}

/// One block of plain signed bytes (no bias, no header): `r2 = Σ w·a` as `i16_block`.
macro_rules! byte_block {
    () => {
        concat!(
            "ldm r0!, {{r4, r5, r8, r9}}\n",
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i16_word!("sxtb16", "smuad", "", "r4", "r10", "r11"),
            i16_rest!("sxtb16"),
        )
    };
}

/// The seven weight words of a block after its first (`r4` against `r10, r11`): see
/// `i16_block`.
macro_rules! i16_rest {
    ($even:literal) => {
        concat!(
            i16_word!($even, "smlad", ", r2", "r5", "r12", "lr"),
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i16_word!($even, "smlad", ", r2", "r8", "r10", "r11"),
            i16_word!($even, "smlad", ", r2", "r9", "r12", "lr"),
            "ldm r0!, {{r4, r5, r8, r9}}\n",
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i16_word!($even, "smlad", ", r2", "r4", "r10", "r11"),
            i16_word!($even, "smlad", ", r2", "r5", "r12", "lr"),
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i16_word!($even, "smlad", ", r2", "r8", "r10", "r11"),
            i16_word!($even, "smlad", ", r2", "r9", "r12", "lr"),
        )
    };
}

/// One stored weight word (`$w`) of the int8 path against its even activations (`$a0`) and
/// odd slots (`$a1`), into `r2`: the raw halfwords, then the odd weights.
#[rustfmt::skip]
macro_rules! i8_word {
    ($w:literal, $a0:literal, $a1:literal) => {
        concat!(
            "smlad r2, ", $w, ", ", $a0, ", r2\n",
            "sxtb16 ", $w, ", ", $w, ", ror #8\n",
            "smlad r2, ", $w, ", ", $a1, ", r2\n",
        )
    };
}

/// One block of the int8 path: `r2 = Σ w·a` over 8 stored weight words (`r0`) and a header
/// and 16 activation words (`r1`), both pointers advanced; the header starts the sum.
macro_rules! i8_block {
    () => {
        concat!(
            "ldm r0!, {{r4, r5, r8, r9}}\n",
            "ldm r1!, {{r2, r10, r11, r12, lr}}\n",
            i8_word!("r4", "r10", "r11"),
            i8_word!("r5", "r12", "lr"),
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i8_word!("r8", "r10", "r11"),
            i8_word!("r9", "r12", "lr"),
            "ldm r0!, {{r4, r5, r8, r9}}\n",
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i8_word!("r4", "r10", "r11"),
            i8_word!("r5", "r12", "lr"),
            "ldm r1!, {{r10, r11, r12, lr}}\n",
            i8_word!("r8", "r10", "r11"),
            i8_word!("r9", "r12", "lr"),
        )
    };
}

/// One weight word (`$w`) against the `hi` and `lo` halves of its four activations
/// (`r9, r10` and `r11, r12`), into `r2` and `r3` (`r4` is scratch); `$hi` and `$lo` are the
/// first two products (`smuad` to start the sums, `smlad` to add).
#[rustfmt::skip]
macro_rules! split_word {
    ($hi:literal, $lo:literal, $w:literal) => {
        concat!(
            "uxtb16 r4, ", $w, "\n",
            $hi, "\n",
            $lo, "\n",
            "sxtb16 ", $w, ", ", $w, ", ror #8\n",
            "smlad r2, ", $w, ", r10, r2\n",
            "smlad r3, ", $w, ", r12, r3\n",
        )
    };
}

/// Two weight words of the exact path: `ldm` them, then each with its four activation words
/// (`$first`: the registers of the first activation `ldm`, `r2, r3` before the four when it
/// loads the block's headers); `$hi`, `$lo` are the first word's first products (see
/// `split_word`).
#[rustfmt::skip]
macro_rules! split_words {
    ($first:literal, $hi:literal, $lo:literal) => {
        concat!(
            "ldm r0!, {{r5, r8}}\n",
            "ldm r1!, {{", $first, "r9, r10, r11, r12}}\n",
            split_word!($hi, $lo, "r5"),
            "ldm r1!, {{r9, r10, r11, r12}}\n",
            split_word!("smlad r2, r4, r9, r2", "smlad r3, r4, r11, r3", "r8"),
        )
    };
}

/// One block of the exact path: `r2 = Σ w·hi`, `r3 = Σ w·lo`, from the block's headers.
#[rustfmt::skip]
macro_rules! split_block {
    () => {
        concat!(
            split_words!("r2, r3, ", "smlad r2, r4, r9, r2", "smlad r3, r4, r11, r3"),
            split_words!("", "smlad r2, r4, r9, r2", "smlad r3, r4, r11, r3"),
            split_words!("", "smlad r2, r4, r9, r2", "smlad r3, r4, r11, r3"),
            split_words!("", "smlad r2, r4, r9, r2", "smlad r3, r4, r11, r3"),
        )
    };
}

/// The f32 step of one pair whose block sums are in `s0` and `s1` (and the scales' word in
/// `s4`): `lane_a += d0 · (s_a · t0)`, `lane_b += d1 · (s_b · t1)`.
macro_rules! scale_pair {
    ($sa:literal, $sb:literal, $la:literal, $lb:literal) => {
        concat!(
            "vmul.f32 s0, ",
            $sa,
            ", s0\n",
            "vmul.f32 s1, ",
            $sb,
            ", s1\n",
            "vcvtb.f32.f16 s2, s4\n",
            "vcvtt.f32.f16 s3, s4\n",
            "vmla.f32 ",
            $la,
            ", s2, s0\n",
            "vmla.f32 ",
            $lb,
            ", s3, s1\n",
        )
    };
}

/// One pair of the int16 path (`$block`: `i16_block`) or the int8 path (`i8_block`) into
/// lanes `$la`, `$lb` with scales `$sa`, `$sb`.
macro_rules! int_pair {
    ($block:ident, $sa:literal, $sb:literal, $la:literal, $lb:literal) => {
        concat!(
            "vldmia r0!, {{s4}}\n",
            $block!(),
            "vmov s0, r2\n",
            $block!(),
            "vmov s1, r2\n",
            "vcvt.f32.s32 s0, s0\n",
            "vcvt.f32.s32 s1, s1\n",
            scale_pair!($sa, $sb, $la, $lb),
        )
    };
}

/// One pair of the int16 path (see `int_pair`).
macro_rules! i16_pair {
    ($($t:tt)*) => { int_pair!(i16_block, $($t)*) };
}

/// One pair of the int8 path (see `int_pair`).
macro_rules! i8_pair {
    ($($t:tt)*) => { int_pair!(i8_block, $($t)*) };
}

/// One pair of the exact path: block sums `t = H + L · 2^-15` (a fixed-point `VCVT` scales
/// `L` exactly), then the f32 step.
macro_rules! split_pair {
    ($sa:literal, $sb:literal, $la:literal, $lb:literal) => {
        concat!(
            "vldmia r0!, {{s4}}\n",
            split_block!(),
            "vmov s0, s1, r2, r3\n",
            split_block!(),
            "vmov s2, s3, r2, r3\n",
            "vcvt.f32.s32 s0, s0\n",
            "vcvt.f32.s32 s1, s1, #15\n",
            "vadd.f32 s0, s0, s1\n",
            "vcvt.f32.s32 s2, s2\n",
            "vcvt.f32.s32 s3, s3, #15\n",
            "vadd.f32 s1, s2, s3\n",
            scale_pair!($sa, $sb, $la, $lb),
        )
    };
}

/// Two pairs per iteration over `r0` (weights, up to the end in `s11`), `r1`
/// (activations), the scales at the pointer in `s9`, lanes in `s16..s19`.
macro_rules! pairs_loop {
    ($pair:ident) => {
        concat!(
            "vldmia r3, {{s16-s19}}\n",
            "vmov s9, s10, r2, r3\n",
            "vmov s11, r4\n",
            "2:\n",
            "vmov r3, s9\n",
            "vldmia r3!, {{s5-s8}}\n",
            "vmov s9, r3\n",
            $pair!("s5", "s6", "s16", "s17"),
            $pair!("s7", "s8", "s18", "s19"),
            "vmov r3, s11\n",
            "cmp r0, r3\n",
            "bne 2b\n",
            "vmov r3, s10\n",
            "vstmia r3, {{s16-s19}}\n",
        )
    };
}

/// One pair, its scales at `r2`, its two lanes at `r3`.
macro_rules! one_pair {
    ($pair:ident) => {
        concat!(
            "vldmia r2, {{s5, s6}}\n",
            "vldmia r3, {{s16, s17}}\n",
            "vmov s10, r3\n",
            $pair!("s5", "s6", "s16", "s17"),
            "vmov r3, s10\n",
            "vstmia r3, {{s16, s17}}\n",
        )
    };
}

/// Runs the assembly loops over `n` whole pairs starting at block `block0` (even): pairs
/// two at a time, then one; lane pair `(block0 / 2 + p) % 2` for pair `p`.
macro_rules! run_pairs {
    ($pair:ident, $w:expr, $a:expr, $s:expr, $n:expr, $block0:expr, $lanes:expr, $act_per_pair:expr) => {{
        let (w, a, s, n, lanes): (&[u8], &[i16], &[f32], usize, &mut Lanes) =
            ($w, $a, $s, $n, $lanes);
        // The first pair's lanes first.
        let first = ($block0 / 2) % 2;
        let mut rotated = [lanes[2 * first], lanes[2 * first + 1], lanes[2 - 2 * first], lanes[3 - 2 * first]];
        let twos = n / 2;
        // SAFETY: the loops read `n` pairs of `w` (68 bytes each), their activations and
        // scales, all within the slices (`pairs`) and word-aligned, and the four lanes of
        // `rotated`; they write only `rotated` and the registers they name.
        unsafe {
            if twos > 0 {
                let end = w.as_ptr().add(twos * 2 * PAIR_BYTES);
                asm!(
                    pairs_loop!($pair),
                    inout("r0") w.as_ptr() => _,
                    inout("r1") a.as_ptr() => _,
                    inout("r2") s.as_ptr() => _,
                    inout("r3") rotated.as_mut_ptr() => _,
                    inout("r4") end => _,
                    out("r5") _, out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    out("r12") _, out("lr") _,
                    out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _,
                    out("s5") _, out("s6") _, out("s7") _, out("s8") _, out("s9") _,
                    out("s10") _, out("s11") _,
                    out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                    options(nostack),
                );
            }
            if n % 2 == 1 {
                asm!(
                    one_pair!($pair),
                    inout("r0") w.as_ptr().add(twos * 2 * PAIR_BYTES) => _,
                    inout("r1") a.as_ptr().add(twos * 2 * $act_per_pair) => _,
                    inout("r2") s.as_ptr().add(twos * 4) => _,
                    inout("r3") rotated.as_mut_ptr() => _,
                    out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _,
                    out("r11") _, out("r12") _, out("lr") _,
                    out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _,
                    out("s5") _, out("s6") _, out("s10") _, out("s16") _, out("s17") _,
                    options(nostack),
                );
            }
        }
        lanes[2 * first] = rotated[0];
        lanes[2 * first + 1] = rotated[1];
        lanes[2 - 2 * first] = rotated[2];
        lanes[3 - 2 * first] = rotated[3];
    }};
}

/// Whole rows: per row, fresh lanes in `s16..s19`, pairs four at a time, then two, then one,
/// the lanes reduced as [`super::reduce_blocks`] does and stored. The pairs take every core
/// register the compiler lends, so the scale pointer and the end of the row's fours live in
/// `r6` and `r7` (saved on the stack around the loop), the rest of the loop state in FP
/// registers (`s9..s15`).
macro_rules! rows_loop {
    ($pair:ident) => {
        concat!(
            "push {{r6, r7}}\n",
            "vmov s9, s10, r1, r2\n",
            "vmov s11, s12, r3, r4\n",
            "vmov s13, s14, r5, r8\n",
            "vmov s15, r9\n",
            "3:\n",
            "vmov r1, r6, s9, s10\n",
            "movs r3, #0\n",
            "vmov s16, s17, r3, r3\n",
            "vmov s18, s19, r3, r3\n",
            "vmov r7, s14\n",
            "add r7, r0, r7\n",
            "cmp r0, r7\n",
            "beq 5f\n",
            "4:\n",
            "vldmia r6!, {{s22-s29}}\n",
            $pair!("s22", "s23", "s16", "s17"),
            $pair!("s24", "s25", "s18", "s19"),
            $pair!("s26", "s27", "s16", "s17"),
            $pair!("s28", "s29", "s18", "s19"),
            "cmp r0, r7\n",
            "bne 4b\n",
            "5:\n",
            "vmov r7, s15\n",
            "tst r7, #2\n",
            "beq 7f\n",
            "vldmia r6!, {{s22-s25}}\n",
            $pair!("s22", "s23", "s16", "s17"),
            $pair!("s24", "s25", "s18", "s19"),
            "7:\n",
            "tst r7, #1\n",
            "beq 6f\n",
            "vldmia r6, {{s22, s23}}\n",
            $pair!("s22", "s23", "s16", "s17"),
            "6:\n",
            "vadd.f32 s0, s16, s18\n",
            "vadd.f32 s1, s17, s19\n",
            "vadd.f32 s0, s0, s1\n",
            "vmov r3, s11\n",
            "vstmia r3!, {{s0}}\n",
            "vmov s11, r3\n",
            "vmov r3, s13\n",
            "add r0, r0, r3\n",
            "vmov r3, s12\n",
            "subs r3, #1\n",
            "vmov s12, r3\n",
            "bne 3b\n",
            "pop {{r6, r7}}\n",
        )
    };
}

/// Runs [`rows_loop`] over `rows` whole rows when the operands suit it (word-aligned, rows
/// of whole pairs); `false` when they do not.
macro_rules! run_rows {
    ($pair:ident, $w:expr, $row_bytes:expr, $weight_bytes:expr, $a:expr, $s:expr, $out:expr, $per_block:expr) => {{
        let (w, row_bytes, weight_bytes, a, s, out): (&[u8], usize, usize, &[i16], &[f32], &mut [f32]) =
            ($w, $row_bytes, $weight_bytes, $a, $s, $out);
        let pairs = weight_bytes / PAIR_BYTES;
        let rows = if row_bytes == 0 { 0 } else { (w.len() / row_bytes).min(out.len()) };
        let fits = weight_bytes == pairs * PAIR_BYTES
            && pairs > 0
            && row_bytes >= weight_bytes
            && row_bytes % 4 == 0
            && w.as_ptr() as usize % 4 == 0
            && a.as_ptr() as usize % 4 == 0
            && s.len() >= 2 * pairs
            && a.len() >= 2 * pairs * $per_block;
        if fits && rows > 0 {
            // SAFETY: `rows` whole rows of `w`, each `pairs` word-aligned pairs, the
            // activations and scales of `pairs` pairs, and `rows` outputs are in bounds; the
            // loop reads only those, writes only `out[..rows]` and the registers it names, and
            // keeps `r6` and `r7` on the stack while it uses them (restored before it ends).
            unsafe {
                asm!(
                    rows_loop!($pair),
                    inout("r0") w.as_ptr() => _,
                    inout("r1") a.as_ptr() => _,
                    inout("r2") s.as_ptr() => _,
                    inout("r3") out.as_mut_ptr() => _,
                    inout("r4") rows => _,
                    inout("r5") row_bytes - weight_bytes => _,
                    inout("r8") (pairs / 4) * 4 * PAIR_BYTES => _,
                    inout("r9") pairs % 4 => _,
                    out("r10") _, out("r11") _, out("r12") _, out("lr") _,
                    out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _,
                    out("s5") _, out("s6") _, out("s7") _, out("s8") _, out("s9") _,
                    out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _,
                    out("s15") _, out("s16") _, out("s17") _, out("s18") _, out("s19") _,
                    out("s22") _, out("s23") _, out("s24") _, out("s25") _, out("s26") _,
                    out("s27") _, out("s28") _, out("s29") _,
                );
            }
        }
        fits
    }};
}

/// Activation slots per block of the int16 path (header included).
const I16_SLOTS: usize = block_slots(ActivationCode::Int16);
/// Activation slots per block of the int8 path (header included).
const I8_SLOTS: usize = block_slots(ActivationCode::Int8);
/// Activation slots per block of the exact path (headers included).
const SPLIT_SLOTS: usize = block_slots(ActivationCode::Split);

/// [`int8::rows_i8_i16`] in one assembly loop.
pub(super) fn rows_i8_i16(w: &[u8], rb: usize, wb: usize, a: &[i16], s: &[f32], out: &mut [f32]) {
    if !run_rows!(i16_pair, w, rb, wb, a, s, out, I16_SLOTS) {
        int8::rows_with(dot_i8_i16, w, rb, wb, a, s, out);
    }
}

/// [`int8::rows_i8_i8`] in one assembly loop.
pub(super) fn rows_i8_i8(w: &[u8], rb: usize, wb: usize, a: &[i16], s: &[f32], out: &mut [f32]) {
    if !run_rows!(i8_pair, w, rb, wb, a, s, out, I8_SLOTS) {
        int8::rows_with(dot_i8_i8, w, rb, wb, a, s, out);
    }
}

/// [`int8::rows_i8_split`] in one assembly loop.
pub(super) fn rows_i8_split(w: &[u8], rb: usize, wb: usize, a: &[i16], s: &[f32], out: &mut [f32]) {
    if !run_rows!(split_pair, w, rb, wb, a, s, out, SPLIT_SLOTS) {
        int8::rows_with(dot_i8_split, w, rb, wb, a, s, out);
    }
}

/// [`int8::dot_i8_i16`] with `SMLAD`.
pub(super) fn dot_i8_i16(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    let Some(n) = pairs(w, a, s, I16_SLOTS, block0) else {
        return int8::dot_i8_i16(w, a, s, block0, lanes);
    };
    run_pairs!(i16_pair, w, a, s, n, block0, lanes, 2 * I16_SLOTS);
    let done = 2 * n;
    if done < s.len() {
        let (w, a, s) = (&w[n * PAIR_BYTES..], &a[done * I16_SLOTS..], &s[done..]);
        int8::dot_i8_i16(w, a, s, block0 + done, lanes);
    }
}

/// [`int8::dot_i8_i8`] with `SMLAD`: three instructions per weight word.
pub(super) fn dot_i8_i8(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    let Some(n) = pairs(w, a, s, I8_SLOTS, block0) else {
        return int8::dot_i8_i8(w, a, s, block0, lanes);
    };
    run_pairs!(i8_pair, w, a, s, n, block0, lanes, 2 * I8_SLOTS);
    let done = 2 * n;
    if done < s.len() {
        let (w, a, s) = (&w[n * PAIR_BYTES..], &a[done * I8_SLOTS..], &s[done..]);
        int8::dot_i8_i8(w, a, s, block0 + done, lanes);
    }
}

/// [`int8::dot_i8_split`] with `SMLAD`: per weight word, four `SMLAD`s against the `hi`
/// and `lo` halves of its four activations.
pub(super) fn dot_i8_split(w: &[u8], a: &[i16], s: &[f32], block0: usize, lanes: &mut Lanes) {
    let Some(n) = pairs(w, a, s, SPLIT_SLOTS, block0) else {
        return int8::dot_i8_split(w, a, s, block0, lanes);
    };
    run_pairs!(split_pair, w, a, s, n, block0, lanes, 2 * SPLIT_SLOTS);
    let done = 2 * n;
    if done < s.len() {
        let (w, a, s) = (&w[n * PAIR_BYTES..], &a[done * SPLIT_SLOTS..], &s[done..]);
        int8::dot_i8_split(w, a, s, block0 + done, lanes);
    }
}

/// `(Σ q·a, Σ a)` over 32 byte weights (natural order, four per word, each below 128, not
/// biased) and their activations ([`int8::act_position`] order, no header), with the int16
/// kernel's `SMLAD` block:
/// once against the weights, once against bytes of ones. `None` when `a` is short or not
/// word-aligned (the workspace never produces that).
pub(super) fn isum_words(w: &[u32; 8], a: &[i16]) -> Option<(i32, i32)> {
    const ONES: [u32; 8] = [0x0101_0101; 8];
    if a.len() < Q_BLOCK || a.as_ptr() as usize % 4 != 0 {
        return None;
    }
    // SAFETY: `a` is word-aligned and holds 32 activations (checked above).
    Some(unsafe { (block_sum(w, a), block_sum(&ONES, a)) })
}

/// `Σ w·a` over one block: 32 byte weights in `w`'s words against the first 32 of `a`.
///
/// # Safety
/// `a` must be word-aligned and at least 32 long.
unsafe fn block_sum(w: &[u32; 8], a: &[i16]) -> i32 {
    let sum: i32;
    // SAFETY: the block reads the 8 words behind `r0` (`w`) and the 16 words of `a` behind
    // `r1` (32 i16, word-aligned: the caller's contract), and writes only the registers named.
    unsafe {
        asm!(
            byte_block!(),
            inout("r0") w.as_ptr() => _,
            inout("r1") a.as_ptr() => _,
            out("r2") sum,
            out("r3") _, out("r4") _, out("r5") _, out("r8") _, out("r9") _, out("r10") _,
            out("r11") _, out("r12") _, out("lr") _,
            options(nostack, readonly),
        );
    }
    sum
}

//! Kernel throughput: `cargo bench -p picogpt-core --bench kernels`. Prints GMAC/s of each
//! dot-product kernel over a 768 × 3072 matrix (GPT-2 124M's `mlp.c_fc`), one input row, for
//! every kernel table this CPU runs.

use std::hint::black_box;
use std::time::Instant;

use picogpt_core::kernels::int8::{ActivationCode, block_slots, int8_row_bytes};
use picogpt_core::kernels::{Kernels, LANES, code_for_int8, reduce};

const ROWS: usize = 3072;
const COLS: usize = 768;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn time(name: &str, mut f: impl FnMut() -> f32) {
    f();
    let reps = 20;
    let t = Instant::now();
    let mut sink = 0.0;
    for _ in 0..reps {
        sink += f();
    }
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let gmacs = (ROWS * COLS) as f64 / secs / 1e9;
    println!("{name:<44} {:>8.3} ms  {gmacs:>6.2} GMAC/s  ({sink:.1})", secs * 1e3);
}

/// Every table this CPU can run.
fn tables() -> Vec<Kernels> {
    let mut tables = vec![Kernels::PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        use picogpt_core::kernels::x86::{Features, kernels};
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c");
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        // SAFETY: each table is built only when its features were detected.
        unsafe {
            if avx2 {
                tables.push(kernels(Features { avx2, avx512: false }));
            }
            if avx512 {
                tables.push(kernels(Features { avx2, avx512 }));
            }
        }
    }
    tables
}

fn main() {
    let mut seed = 1;
    let x: Vec<f32> = (0..COLS).map(|_| lcg(&mut seed)).collect();
    let f32_w: Vec<u8> = (0..ROWS * COLS).flat_map(|_| lcg(&mut seed).to_le_bytes()).collect();
    let f16_w: Vec<u8> = (0..ROWS * COLS)
        .flat_map(|_| half::f16::from_f32(lcg(&mut seed)).to_bits().to_le_bytes())
        .collect();
    let row_bytes = int8_row_bytes(COLS);
    let mut q8_w = vec![0u8; ROWS * row_bytes];
    for row in q8_w.chunks_exact_mut(row_bytes) {
        let dense: Vec<f32> = (0..COLS).map(|_| lcg(&mut seed)).collect();
        picogpt_core::quant::encode_int8(&dense, 32, row);
    }
    let coded = |code: ActivationCode| {
        let mut q = vec![0i16; COLS / 32 * block_slots(code)];
        let mut s = vec![0.0f32; COLS / 32];
        code_for_int8(code, &x, &mut q, &mut s);
        (q, s)
    };
    let (split_q, split_s) = coded(ActivationCode::Split);
    let (q16, s16) = coded(ActivationCode::Int16);
    let (q8, s8) = coded(ActivationCode::Int8);
    let mut out = vec![0.0f32; ROWS];
    for k in tables() {
        let name = |what: &str| format!("{what} [{}]", k.name);
        time(&name("f32 weights x f32"), || {
            let mut s = 0.0;
            for row in f32_w.chunks_exact(COLS * 4) {
                let mut lanes = [0.0; LANES];
                (k.dot_f32)(black_box(row), &x, &mut lanes);
                s += reduce(&lanes);
            }
            s
        });
        time(&name("f16 weights x f32"), || {
            let mut s = 0.0;
            for row in f16_w.chunks_exact(COLS * 2) {
                let mut lanes = [0.0; LANES];
                (k.dot_f16)(black_box(row), &x, &mut lanes);
                s += reduce(&lanes);
            }
            s
        });
        time(&name("int8 weights x f32 (exact, split)"), || {
            (k.rows_i8_split)(black_box(&q8_w), row_bytes, row_bytes, &split_q, &split_s, &mut out);
            out.iter().sum()
        });
        time(&name("int8 weights x int16"), || {
            (k.rows_i8_i16)(black_box(&q8_w), row_bytes, row_bytes, &q16, &s16, &mut out);
            out.iter().sum()
        });
        time(&name("int8 weights x int8"), || {
            (k.rows_i8_i8)(black_box(&q8_w), row_bytes, row_bytes, &q8, &s8, &mut out);
            out.iter().sum()
        });
    }
}

//! Kernel throughput: `cargo bench -p picogpt-core --bench kernels`. Prints GMAC/s of each
//! dot-product kernel over a 768 × 3072 matrix (GPT-2 124M's `mlp.c_fc`), one input row.

use std::hint::black_box;
use std::time::Instant;

use picogpt_core::kernels::{LANES, dot_f16, dot_f32, dot_int8, dot_q8, quantize_q8, reduce};

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
    println!("{name:<28} {:>8.3} ms  {gmacs:>6.2} GMAC/s  ({sink:.1})", secs * 1e3);
}

fn main() {
    let mut seed = 1;
    let x: Vec<f32> = (0..COLS).map(|_| lcg(&mut seed)).collect();
    let f32_w: Vec<u8> = (0..ROWS * COLS).flat_map(|_| lcg(&mut seed).to_le_bytes()).collect();
    let f16_w: Vec<u8> = (0..ROWS * COLS)
        .flat_map(|_| half::f16::from_f32(lcg(&mut seed)).to_bits().to_le_bytes())
        .collect();
    let mut q8_w = vec![0u8; ROWS * COLS / 32 * 34];
    let dense: Vec<f32> = (0..ROWS * COLS).map(|_| lcg(&mut seed)).collect();
    picogpt_core::quant::encode_int8(&dense, 32, &mut q8_w);
    let mut q = vec![0i16; COLS];
    let mut scales = vec![0.0f32; COLS / 32];
    quantize_q8(&x, &mut q, &mut scales);

    time("f32 weights x f32", || {
        let mut s = 0.0;
        for row in f32_w.chunks_exact(COLS * 4) {
            let mut lanes = [0.0; LANES];
            dot_f32(black_box(row), &x, &mut lanes);
            s += reduce(&lanes);
        }
        s
    });
    time("f16 weights x f32", || {
        let mut s = 0.0;
        for row in f16_w.chunks_exact(COLS * 2) {
            let mut lanes = [0.0; LANES];
            dot_f16(black_box(row), &x, &mut lanes);
            s += reduce(&lanes);
        }
        s
    });
    time("int8 weights x f32", || {
        let mut s = 0.0;
        for row in q8_w.chunks_exact(COLS / 32 * 34) {
            let mut lanes = [0.0; LANES];
            dot_int8(black_box(row), 32, &x, &mut lanes);
            s += reduce(&lanes);
        }
        s
    });
    time("int8 weights x int8 (q8)", || {
        let mut s = 0.0;
        for row in q8_w.chunks_exact(COLS / 32 * 34) {
            let mut acc = 0.0;
            dot_q8(black_box(row), 32, &q, &scales, &mut acc);
            s += acc;
        }
        s
    });
}

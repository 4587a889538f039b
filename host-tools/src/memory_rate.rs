//! How fast this machine streams memory: the floor under a decode token, which reads every
//! weight once.
//!
//! A plain read loop over a buffer far larger than the caches, summed so the reads cannot be
//! skipped, split into one contiguous part per thread (as `run --threads` splits a matrix's
//! rows). `bench` prints the rate beside its table and divides each pack's bytes per token by
//! it: no kernel can decode faster than that.

use std::time::Instant;

/// Bytes the probe streams per pass: well past any last-level cache of this machine kind.
pub const PROBE_BYTES: usize = 512 << 20;

/// The best of `repeats` passes over a fresh `bytes`-byte buffer read by `threads` threads at
/// once, in bytes per second.
pub fn streaming_read_rate(bytes: usize, threads: usize, repeats: usize) -> f64 {
    let words = vec![1u64; (bytes / 8).max(threads.max(1) * 8)];
    let part = words.len().div_ceil(threads.max(1));
    let mut best = 0.0f64;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> =
                words.chunks(part).map(|chunk| scope.spawn(move || sum(chunk))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0, u64::wrapping_add)
        });
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(total);
        best = best.max((words.len() * 8) as f64 / secs);
    }
    best
}

/// The wrapping sum of `words`, in eight independent lanes so the loop is bound by the reads.
fn sum(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (lane, &w) in lanes.iter_mut().zip(c) {
            *lane = lane.wrapping_add(w);
        }
    }
    let rest = chunks.remainder().iter().fold(0u64, |a, &w| a.wrapping_add(w));
    lanes.iter().fold(rest, |a, &l| a.wrapping_add(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_every_word_and_reports_a_rate() {
        assert_eq!(sum(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 55);
        assert_eq!(sum(&[u64::MAX, 2]), 1);
        for threads in [1, 2, 3] {
            let rate = streaming_read_rate(1 << 20, threads, 2);
            assert!(rate.is_finite() && rate > 0.0, "{threads} threads: {rate}");
        }
    }
}

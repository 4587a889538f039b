//! Choosing the next token: greedy (picoGPT's), or sampling with temperature, top-k and
//! top-p, in one pass over the logits and O(K) memory.
//!
//! Sampling uses the Gumbel-max trick: adding independent Gumbel noise `g_i` to `logit_i / T`
//! and taking the arg-max draws token `i` with probability `softmax(logit / T)_i`, exactly.
//! The noise comes from a counter-based generator keyed by (seed, step, token), so a seed gives
//! the same text on every target and no random state has to be carried.
//!
//! Exactness: with neither top-k nor top-p the draw is over the whole vocabulary and exact.
//! Top-k is exact for `k ≤ K`. Top-p is exact when its nucleus holds at most `K` tokens (the
//! usual case: GPT-2's nucleus at p = 0.9 rarely exceeds a few dozen); otherwise the draw is
//! restricted to the `K` most likely tokens and [`Choice::truncated`] says so. `K` is the
//! picker's const parameter ([`CANDIDATES`] by default, 512 bytes of RAM).

use crate::logits::{Candidate, LogitSink, TopK};

/// Candidates a [`Picker`] keeps by default.
pub const CANDIDATES: usize = 64;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Sampling {
    /// The most likely token (lowest id on ties), as picoGPT does.
    Greedy,
    /// A random draw.
    Random(RandomSampling),
}

/// Parameters of a random draw.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RandomSampling {
    /// Divides the logits; must be positive and finite, else the choice is greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: no limit).
    pub top_k: u32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`
    /// (1.0 or more: no limit).
    pub top_p: f32,
    /// Seed of the noise: the same seed gives the same draws.
    pub seed: u64,
}

/// The token chosen for one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Choice {
    /// The token.
    pub token: u32,
    /// The draw was limited to the `K` kept candidates although top-k or top-p asked for more.
    pub truncated: bool,
}

/// A [`LogitSink`] that keeps what one step needs to choose and to print its top candidates.
#[derive(Clone, Debug)]
pub struct Picker<const K: usize = CANDIDATES> {
    top: TopK<K>,
    sampling: Sampling,
    step: u64,
    inv_temperature: f32,
    /// Running max and Σ exp(logit/T − max) of the tempered logits.
    tempered: (f32, f32),
    /// Best (token, logit/T + noise) over the whole vocabulary.
    race: Option<(u32, f32)>,
}

impl<const K: usize> Picker<K> {
    /// A picker for generation step `step` (0 for the prompt's pass, then 1, 2, …).
    pub fn new(sampling: Sampling, step: u64) -> Self {
        let sampling = match sampling {
            Sampling::Random(r) if r.temperature > 0.0 && r.temperature.is_finite() => sampling,
            _ => Sampling::Greedy,
        };
        let inv_temperature = match sampling {
            Sampling::Random(r) => 1.0 / r.temperature,
            Sampling::Greedy => 1.0,
        };
        Self {
            top: TopK::new(),
            sampling,
            step,
            inv_temperature,
            tempered: (f32::NEG_INFINITY, 0.0),
            race: None,
        }
    }

    /// The `N` best candidates with their softmax probabilities (at temperature 1).
    pub fn candidates<const N: usize>(&self) -> heapless::Vec<Candidate, N> {
        self.top.candidates().into_iter().take(N).collect()
    }

    /// The token this step draws.
    pub fn choose(&self) -> Choice {
        let best = self.top.argmax().unwrap_or(0);
        let Sampling::Random(r) = self.sampling else {
            return Choice { token: best, truncated: false };
        };
        let limit_p = r.top_p < 1.0;
        if r.top_k == 0 && !limit_p {
            let token = self.race.map_or(best, |(t, _)| t);
            return Choice { token, truncated: false };
        }
        let kept = self.top.candidates();
        let mut limit = kept.len();
        let mut truncated = false;
        if r.top_k > 0 {
            truncated = r.top_k as usize > K;
            limit = limit.min(r.top_k as usize);
        }
        if limit_p {
            let (max, sum) = self.tempered;
            let mut mass = 0.0f32;
            let nucleus = kept[..limit].iter().position(|c| {
                mass += libm::expf(c.logit * self.inv_temperature - max) / sum;
                mass >= r.top_p
            });
            match nucleus {
                Some(last) => limit = last + 1,
                None => truncated |= limit == K && (r.top_k == 0 || r.top_k as usize > K),
            }
        }
        let mut winner = (best, f32::NEG_INFINITY);
        for c in &kept[..limit] {
            let key = c.logit * self.inv_temperature + gumbel(r.seed, self.step, c.token);
            if key > winner.1 {
                winner = (c.token, key);
            }
        }
        Choice { token: winner.0, truncated }
    }
}

impl<const K: usize> LogitSink for Picker<K> {
    fn accept(&mut self, token: u32, logit: f32) {
        self.top.accept(token, logit);
        let Sampling::Random(r) = self.sampling else { return };
        let scaled = logit * self.inv_temperature;
        let (max, sum) = &mut self.tempered;
        if scaled > *max {
            *sum = *sum * libm::expf(*max - scaled) + 1.0;
            *max = scaled;
        } else {
            *sum += libm::expf(scaled - *max);
        }
        if r.top_k == 0 && r.top_p >= 1.0 {
            let key = scaled + gumbel(r.seed, self.step, token);
            if self.race.is_none_or(|(_, best)| key > best) {
                self.race = Some((token, key));
            }
        }
    }
}

/// Standard Gumbel noise for (seed, step, token), from SplitMix64's finalizer.
fn gumbel(seed: u64, step: u64, token: u32) -> f32 {
    let mut z = seed
        ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(token).wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // A uniform in (0, 1), never 0 or 1: 24 random bits plus half a step.
    let u = ((z >> 40) as f32 + 0.5) * (1.0 / 16_777_216.0);
    -libm::logf(-libm::logf(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick<const K: usize>(logits: &[f32], sampling: Sampling, step: u64) -> Choice {
        let mut p = Picker::<K>::new(sampling, step);
        for (i, &l) in logits.iter().enumerate() {
            p.accept(i as u32, l);
        }
        p.choose()
    }

    fn random(temperature: f32, top_k: u32, top_p: f32, seed: u64) -> Sampling {
        Sampling::Random(RandomSampling { temperature, top_k, top_p, seed })
    }

    #[test]
    fn greedy_takes_the_arg_max() {
        let logits = [0.1, 3.0, 2.0, 3.0];
        assert_eq!(pick::<4>(&logits, Sampling::Greedy, 0).token, 1);
        assert_eq!(pick::<4>(&logits, random(0.0, 0, 1.0, 1), 0).token, 1, "T = 0 is greedy");
    }

    /// Draw frequencies over many steps match the softmax.
    #[test]
    fn draws_follow_the_tempered_softmax() {
        let logits = [1.0f32, 2.0, 0.0, 1.5];
        for (temperature, top_k) in [(1.0f32, 0u32), (0.7, 0), (1.0, 4)] {
            let z: f32 = logits.iter().map(|l| (l / temperature).exp()).sum();
            let mut counts = [0u32; 4];
            let n = 40_000;
            for step in 0..n {
                let c = pick::<4>(&logits, random(temperature, top_k, 1.0, 7), step);
                counts[c.token as usize] += 1;
            }
            for (i, &l) in logits.iter().enumerate() {
                let expected = (l / temperature).exp() / z;
                let seen = counts[i] as f32 / n as f32;
                assert!(
                    (seen - expected).abs() < 0.01,
                    "T {temperature} k {top_k} token {i}: {seen} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let logits = [5.0f32, 4.0, 0.0, -1.0, 3.9];
        for step in 0..2000 {
            let k = pick::<5>(&logits, random(1.0, 2, 1.0, 3), step).token;
            assert!(k == 0 || k == 1, "top-2 drew {k}");
            // softmax: 0.56, 0.21, ~0, ~0, 0.19 → p = 0.7 keeps tokens 0 and 1.
            let p = pick::<5>(&logits, random(1.0, 0, 0.7, 3), step).token;
            assert!(p == 0 || p == 1, "top-p drew {p}");
        }
    }

    #[test]
    fn a_nucleus_beyond_k_is_reported_as_truncated() {
        let flat = [0.0f32; 100];
        let c = pick::<8>(&flat, random(1.0, 0, 0.9, 1), 0);
        assert!(c.truncated && c.token < 8);
        assert!(pick::<8>(&flat, random(1.0, 100, 1.0, 1), 0).truncated);
        assert!(!pick::<8>(&flat, random(1.0, 0, 1.0, 1), 0).truncated);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_does_not() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32) * 0.05).collect();
        let draw = |seed| -> Vec<u32> {
            (0..32).map(|s| pick::<64>(&logits, random(1.0, 0, 0.95, seed), s).token).collect()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }
}

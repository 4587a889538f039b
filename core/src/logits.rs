//! Consuming the LM head's logits as they stream out, without a vocabulary-sized buffer.

/// Receives each token's logit, in increasing token order.
pub trait LogitSink {
    /// One logit.
    fn accept(&mut self, token: u32, logit: f32);
}

/// One of the best next tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Candidate {
    /// Token id.
    pub token: u32,
    /// Raw logit.
    pub logit: f32,
    /// Softmax probability over the whole vocabulary.
    pub prob: f32,
}

/// The `K` largest logits and the softmax normalizer, kept in O(K) memory.
///
/// The normalizer is a running sum of `exp(logit − max)`, rescaled whenever the maximum
/// grows, so probabilities are exact softmax values computed in one pass. Ties keep the
/// lower token id first, as NumPy's `argmax` does.
#[derive(Clone, Debug)]
pub struct TopK<const K: usize> {
    best: heapless::Vec<(u32, f32), K>,
    max: f32,
    sum: f32,
}

impl<const K: usize> Default for TopK<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const K: usize> TopK<K> {
    /// An empty tracker.
    pub const fn new() -> Self {
        Self { best: heapless::Vec::new(), max: f32::NEG_INFINITY, sum: 0.0 }
    }

    /// The best token so far (`None` before any logit).
    pub fn argmax(&self) -> Option<u32> {
        self.best.first().map(|&(t, _)| t)
    }

    /// The best candidates, best first, with their probabilities.
    pub fn candidates(&self) -> heapless::Vec<Candidate, K> {
        self.best
            .iter()
            .map(|&(token, logit)| Candidate {
                token,
                logit,
                prob: libm::expf(logit - self.max) / self.sum,
            })
            .collect()
    }

    /// Largest logit seen.
    pub fn max_logit(&self) -> f32 {
        self.max
    }

    /// Σ exp(logit − max) over every logit seen.
    pub fn normalizer(&self) -> f32 {
        self.sum
    }
}

impl<const K: usize> LogitSink for TopK<K> {
    fn accept(&mut self, token: u32, logit: f32) {
        if logit > self.max {
            self.sum = self.sum * libm::expf(self.max - logit) + 1.0;
            self.max = logit;
        } else {
            self.sum += libm::expf(logit - self.max);
        }
        let beats_last = self.best.last().is_none_or(|&(_, l)| logit > l);
        if self.best.is_full() && !beats_last {
            return;
        }
        if self.best.is_full() {
            self.best.pop();
        }
        let at = self.best.iter().position(|&(_, l)| logit > l).unwrap_or(self.best.len());
        // Cannot fail: an element was popped above if the vector was full.
        let _ = self.best.insert(at, (token, logit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_three_with_exact_softmax() {
        let logits = [1.0f32, 5.0, -2.0, 5.0, 3.0, 4.5];
        let mut top = TopK::<3>::new();
        for (i, &l) in logits.iter().enumerate() {
            top.accept(i as u32, l);
        }
        let c = top.candidates();
        let ids: Vec<u32> = c.iter().map(|c| c.token).collect();
        assert_eq!(ids, [1, 3, 5]);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for cand in &c {
            let exact = f64::from(cand.logit).exp() / z;
            assert!((f64::from(cand.prob) - exact).abs() < 1e-6);
        }
        assert_eq!(top.argmax(), Some(1));
    }

    #[test]
    fn empty_tracker_has_no_argmax() {
        assert_eq!(TopK::<3>::new().argmax(), None);
    }
}

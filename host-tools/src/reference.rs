//! An independent, plain `f32` GPT-2: the yardstick `picogpt-core` is tested against.
//!
//! Written straight from picoGPT's `gpt2.py` and the paper, sharing no code with `core`.
//! Names follow the checkpoint tree and every step carries its shape. The only departure
//! from picoGPT is a key/value cache ([`Session`]) so that decoding does not recompute the
//! whole sequence at every step; a sequence fed at once and the same sequence fed token by
//! token go through identical arithmetic per row.

use thiserror::Error;

use crate::weights::{Gpt2Weights, LayerWeights, WeightsError};

/// Why the reference cannot run a request.
#[derive(Debug, Error, PartialEq)]
pub enum ReferenceError {
    /// A token id is not below `vocab_size`.
    #[error("token {token} at index {index} is out of range: vocab_size is {vocab_size}")]
    TokenOutOfRange {
        /// Index of the token in the sequence handed over.
        index: usize,
        /// The token id.
        token: u32,
        /// `vocab_size`.
        vocab_size: u32,
    },
    /// The sequence would run past the last position the model has.
    #[error("a sequence of {len} tokens exceeds n_ctx {n_ctx}")]
    TooLong {
        /// Length the request needs.
        len: usize,
        /// `n_ctx`.
        n_ctx: u32,
    },
    /// Generation needs at least one prompt token.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The weights do not match their config.
    #[error("invalid weights: {0}")]
    Weights(#[from] WeightsError),
}

/// GPT-2's tanh approximation of GELU ("gelu_new").
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// Softmax in place over one row, subtracting the maximum first for stability.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = (*v - max).exp();
    }
    let sum: f32 = x.iter().sum();
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Layer norm of every row: `g * (x - mean) / sqrt(var + eps) + b`, biased variance.
pub fn layer_norm(x: &[f32], g: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let n_embd = g.len();
    let mut out = Vec::with_capacity(x.len()); // [n_seq, n_embd]
    for row in x.chunks_exact(n_embd) {
        let mean = row.iter().sum::<f32>() / n_embd as f32;
        let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n_embd as f32;
        let inv_std = 1.0 / (variance + eps).sqrt();
        out.extend(row.iter().zip(g).zip(b).map(|((v, g), b)| g * (v - mean) * inv_std + b));
    }
    out
}

/// HF `Conv1D`: `x @ w + b` with `x` `[n_seq, n_in]`, `w` `[n_in, n_out]`, `b` `[n_out]`.
///
/// Loop order keeps the innermost loop a contiguous `out_row += a * w_row` that the compiler
/// vectorises; rows are taken a few at a time so each weight row is reused from cache.
pub fn linear(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    const ROWS: usize = 8;
    let n_out = b.len();
    let n_in = w.len() / n_out;
    let n_seq = x.len() / n_in;
    let mut out = b.repeat(n_seq); // [n_seq, n_out]
    for (xs, outs) in x.chunks(ROWS * n_in).zip(out.chunks_mut(ROWS * n_out)) {
        for (i, w_row) in w.chunks_exact(n_out).enumerate() {
            for (x_row, out_row) in xs.chunks_exact(n_in).zip(outs.chunks_exact_mut(n_out)) {
                let a = x_row[i];
                for (o, w) in out_row.iter_mut().zip(w_row) {
                    *o += a * w;
                }
            }
        }
    }
    out
}

/// Dot product with eight independent partial sums, so it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for (x, y) in a8.iter().zip(b8) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Keys and values of every position one block has seen.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    /// `[n_past, n_embd]`, heads side by side.
    k: Vec<f32>,
    /// `[n_past, n_embd]`.
    v: Vec<f32>,
}

/// Causal multi-head self-attention of the new rows `x` over themselves and the cached past.
///
/// `x` is the output of `ln_1`; the new keys and values are appended to `cache`.
pub fn mha(x: &[f32], attn: &LayerWeights, n_head: usize, cache: &mut LayerCache) -> Vec<f32> {
    // [n_seq, n_embd] -> [n_seq, n_embd]
    linear(&attend(x, attn, n_head, cache), &attn.attn_c_proj_weight, &attn.attn_c_proj_bias)
}

/// The heads' outputs side by side, before `attn.c_proj`: [`mha`] without its projection.
pub fn attend(x: &[f32], attn: &LayerWeights, n_head: usize, cache: &mut LayerCache) -> Vec<f32> {
    let n_embd = attn.attn_c_proj_bias.len();
    let head = n_embd / n_head;
    let n_seq = x.len() / n_embd;
    // [n_seq, n_embd] -> [n_seq, 3*n_embd]
    let qkv = linear(x, &attn.c_attn_weight, &attn.c_attn_bias);
    let mut q = Vec::with_capacity(n_seq * n_embd); // [n_seq, n_embd]
    for row in qkv.chunks_exact(3 * n_embd) {
        q.extend_from_slice(&row[..n_embd]);
        cache.k.extend_from_slice(&row[n_embd..2 * n_embd]);
        cache.v.extend_from_slice(&row[2 * n_embd..]);
    }
    let n_past = cache.k.len() / n_embd - n_seq;
    let scale = 1.0 / (head as f32).sqrt();
    let mut out = vec![0.0; n_seq * n_embd]; // [n_seq, n_embd]
    let mut weights = Vec::with_capacity(n_past + n_seq); // [n_keys]
    for (s, (q_row, out_row)) in
        q.chunks_exact(n_embd).zip(out.chunks_exact_mut(n_embd)).enumerate()
    {
        let n_keys = n_past + s + 1; // causal: position n_past+s sees keys 0..=n_past+s
        // h: first channel of each head's slice of a row
        for h in (0..n_embd).step_by(head) {
            // q @ k.T / sqrt(head): [head] x [n_keys, head] -> [n_keys]
            weights.clear();
            let keys = cache.k.chunks_exact(n_embd).take(n_keys);
            weights.extend(keys.map(|k_row| dot(&q_row[h..h + head], &k_row[h..h + head]) * scale));
            softmax(&mut weights);
            // weights @ v: [n_keys] x [n_keys, head] -> [head]
            let out_head = &mut out_row[h..h + head];
            for (w, v_row) in weights.iter().zip(cache.v.chunks_exact(n_embd)) {
                for (o, v) in out_head.iter_mut().zip(&v_row[h..h + head]) {
                    *o += w * v;
                }
            }
        }
    }
    out
}

/// Position-wise feed-forward network; `x` is the output of `ln_2`.
pub fn ffn(x: &[f32], mlp: &LayerWeights) -> Vec<f32> {
    // [n_seq, n_embd] -> [n_seq, 4*n_embd]
    let mut a = linear(x, &mlp.c_fc_weight, &mlp.c_fc_bias);
    for v in &mut a {
        *v = gelu(*v);
    }
    // [n_seq, 4*n_embd] -> [n_seq, n_embd]
    linear(&a, &mlp.mlp_c_proj_weight, &mlp.mlp_c_proj_bias)
}

/// One pre-norm transformer block applied to the residual stream `x` `[n_seq, n_embd]`.
pub fn transformer_block(
    x: &mut [f32],
    layer: &LayerWeights,
    n_head: usize,
    eps: f32,
    cache: &mut LayerCache,
) {
    // [n_seq, n_embd] -> [n_seq, n_embd]
    let attn = mha(&layer_norm(x, &layer.ln_1_weight, &layer.ln_1_bias, eps), layer, n_head, cache);
    for (x, a) in x.iter_mut().zip(&attn) {
        *x += a;
    }
    // [n_seq, n_embd] -> [n_seq, n_embd]
    let mlp = ffn(&layer_norm(x, &layer.ln_2_weight, &layer.ln_2_bias, eps), layer);
    for (x, m) in x.iter_mut().zip(&mlp) {
        *x += m;
    }
}

/// Token plus position embeddings of `tokens` placed at positions `start..`.
pub fn embed(
    weights: &Gpt2Weights,
    tokens: &[u32],
    start: usize,
) -> Result<Vec<f32>, ReferenceError> {
    let config = &weights.config;
    let n_embd = config.embd();
    if start + tokens.len() > config.n_ctx as usize {
        return Err(ReferenceError::TooLong { len: start + tokens.len(), n_ctx: config.n_ctx });
    }
    let mut x = Vec::with_capacity(tokens.len() * n_embd); // [n_seq, n_embd]
    for (index, &token) in tokens.iter().enumerate() {
        if token >= config.vocab_size {
            return Err(ReferenceError::TokenOutOfRange {
                index,
                token,
                vocab_size: config.vocab_size,
            });
        }
        let wte = &weights.wte[token as usize * n_embd..][..n_embd];
        let wpe = &weights.wpe[(start + index) * n_embd..][..n_embd];
        x.extend(wte.iter().zip(wpe).map(|(t, p)| t + p));
    }
    Ok(x)
}

/// Final layer norm and tied LM head: `ln_f(x) @ wte.T`, `[n_seq, n_embd] -> [n_seq, vocab]`.
pub fn lm_head(weights: &Gpt2Weights, x: &[f32]) -> Vec<f32> {
    let config = &weights.config;
    let n_embd = config.embd();
    let h = layer_norm(x, &weights.ln_f_weight, &weights.ln_f_bias, config.layer_norm_epsilon);
    let n_seq = h.len() / n_embd;
    let vocab = config.vocab_size as usize;
    let mut logits = vec![0.0; n_seq * vocab]; // [n_seq, vocab]
    for (v, wte_row) in weights.wte.chunks_exact(n_embd).enumerate() {
        for (s, h_row) in h.chunks_exact(n_embd).enumerate() {
            logits[s * vocab + v] = dot(h_row, wte_row);
        }
    }
    logits
}

/// A model plus the key/value cache of the tokens fed so far.
#[derive(Clone, Debug)]
pub struct Session<'w> {
    weights: &'w Gpt2Weights,
    caches: Vec<LayerCache>,
    n_past: usize,
}

impl<'w> Session<'w> {
    /// An empty context over `weights`, which are checked once here.
    pub fn new(weights: &'w Gpt2Weights) -> Result<Self, ReferenceError> {
        weights.validate()?;
        Ok(Self { weights, caches: vec![LayerCache::default(); weights.layers.len()], n_past: 0 })
    }

    /// Number of tokens fed so far.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Feeds `tokens` after those already seen and returns their residual stream after the
    /// last block (before `ln_f`), `[n_seq, n_embd]`.
    pub fn residual(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ReferenceError> {
        let config = &self.weights.config;
        let mut x = embed(self.weights, tokens, self.n_past)?; // [n_seq, n_embd]
        for (layer, cache) in self.weights.layers.iter().zip(&mut self.caches) {
            transformer_block(
                &mut x,
                layer,
                config.n_head as usize,
                config.layer_norm_epsilon,
                cache,
            );
        }
        self.n_past += tokens.len();
        Ok(x)
    }

    /// Feeds `tokens` and returns the logits of every one of them, `[n_seq, vocab]`.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ReferenceError> {
        let x = self.residual(tokens)?;
        Ok(lm_head(self.weights, &x))
    }
}

/// Logits at every position of `tokens`, one `[vocab]` row each, as picoGPT computes them.
pub fn forward(weights: &Gpt2Weights, tokens: &[u32]) -> Result<Vec<Vec<f32>>, ReferenceError> {
    let logits = Session::new(weights)?.logits(tokens)?;
    Ok(logits.chunks_exact(weights.config.vocab_size as usize).map(<[f32]>::to_vec).collect())
}

/// A token with its logit and its probability under the full softmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub token: u32,
    /// Its logit.
    pub logit: f32,
    /// Its softmax probability over the whole vocabulary, computed in `f64`.
    pub prob: f64,
}

/// One greedy decoding step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The token chosen: the largest logit, lowest id on ties.
    pub token: u32,
    /// The three best candidates, best first (fewer if the vocabulary is smaller).
    pub top3: Vec<Candidate>,
}

/// The result of [`greedy`].
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// One entry per generated token.
    pub steps: Vec<Step>,
    /// Full logits `[vocab]` of the first step (the last prompt position); the same vector as
    /// `all_logits[0]`, kept apart because it is what most comparisons start from.
    pub first_logits: Vec<f32>,
    /// Full logits `[vocab]` of every step.
    pub all_logits: Vec<Vec<f32>>,
}

impl Generation {
    /// The generated tokens in order.
    pub fn tokens(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.token).collect()
    }
}

/// Greedy decoding: feeds `prompt`, then `n` times picks the arg-max token and feeds it back.
pub fn greedy(
    weights: &Gpt2Weights,
    prompt: &[u32],
    n: usize,
) -> Result<Generation, ReferenceError> {
    let Some(&last) = prompt.last() else {
        return Err(ReferenceError::EmptyPrompt);
    };
    // The last generated token is never fed back.
    let len = prompt.len() + n.saturating_sub(1);
    if len > weights.config.n_ctx as usize {
        return Err(ReferenceError::TooLong { len, n_ctx: weights.config.n_ctx });
    }
    let mut session = Session::new(weights)?;
    let n_embd = weights.config.embd();
    let residual = session.residual(prompt)?; // [n_prompt, n_embd]
    let mut logits = lm_head(weights, &residual[residual.len() - n_embd..]); // [vocab]
    let mut steps = Vec::with_capacity(n);
    let mut all_logits = Vec::with_capacity(n);
    let mut token = last;
    for i in 0..n {
        if i > 0 {
            logits = session.logits(&[token])?;
        }
        let top3 = top3(&logits);
        token = top3[0].token;
        steps.push(Step { token, top3 });
        all_logits.push(logits.clone());
    }
    let first_logits = all_logits.first().cloned().unwrap_or_default();
    Ok(Generation { steps, first_logits, all_logits })
}

/// The three largest logits (lowest id first among equals) with full-softmax probabilities.
fn top3(logits: &[f32]) -> Vec<Candidate> {
    let better = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)).is_gt();
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(4);
    for (token, &logit) in (0u32..).zip(logits) {
        let item = (token, logit);
        let at = best.iter().position(|b| better(&item, b)).unwrap_or(best.len());
        if at < 3 {
            best.insert(at, item);
            best.truncate(3);
        }
    }
    let max = best.first().map_or(0.0, |b| f64::from(b.1));
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    best.into_iter()
        .map(|(token, logit)| Candidate {
            token,
            logit,
            prob: (f64::from(logit) - max).exp() / sum,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use picogpt_core::ModelConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    use super::*;

    fn config() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 32,
            n_head: 4,
            n_ctx: 16,
            vocab_size: 40,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// Weights with every value drawn from N(0, 0.3²) and layer-norm gains around 1.
    fn random_weights(config: ModelConfig, seed: u64) -> Gpt2Weights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = Gpt2Weights::zeros(config);
        for (spec, data) in w.tensors_mut() {
            let offset = if spec.name.ends_with("ln_1.weight")
                || spec.name.ends_with("ln_2.weight")
                || spec.name == "ln_f.weight"
            {
                1.0
            } else {
                0.0
            };
            for v in data.iter_mut() {
                let z: f32 = StandardNormal.sample(&mut rng);
                *v = offset + 0.3 * z;
            }
        }
        w
    }

    fn close(a: f32, b: f64, rel: f64) -> bool {
        (f64::from(a) - b).abs() <= rel * (1.0 + b.abs())
    }

    #[test]
    fn gelu_softmax_and_layer_norm_match_known_values() {
        for (x, want) in
            [(0.0, 0.0), (1.0, 0.841_191_990_6), (-1.0, -0.158_808_009_4), (3.0, 2.996_362_607_9)]
        {
            assert!(close(gelu(x), want, 1e-6), "gelu({x}) = {}", gelu(x));
        }
        let mut p = [1.0, 2.0, 3.0];
        softmax(&mut p);
        for (got, want) in p.iter().zip([0.090_030_573, 0.244_728_471, 0.665_240_956]) {
            assert!(close(*got, want, 1e-6));
        }
        let mut big = [1000.0, 1000.0, -1000.0];
        softmax(&mut big);
        assert_eq!(big, [0.5, 0.5, 0.0]);
        let y = layer_norm(
            &[1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0],
            &[1.0, 1.0, 2.0, 1.0],
            &[0.0, 0.0, 0.0, 1.0],
            1e-5,
        );
        // Row 1: mean 2.5, biased variance 1.25. Row 2: constant, so just the bias.
        let s = 1.0 / (1.25f64 + 1e-5).sqrt();
        for (got, want) in
            y.iter().zip([-1.5 * s, -0.5 * s, 2.0 * 0.5 * s, 1.5 * s + 1.0, 0.0, 0.0, 0.0, 1.0])
        {
            assert!(close(*got, want, 1e-6), "{got} vs {want}");
        }
    }

    #[test]
    fn linear_is_x_times_w_plus_b() {
        // x [2, 3] @ w [3, 2] + b [2]
        let x = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
        let w = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let b = [10.0, 20.0];
        assert_eq!(linear(&x, &w, &b), vec![14.0, 25.0, 9.0, 20.5]);
    }

    /// With zero block matrices and gains, the blocks only add their `c_proj` biases, so
    /// logits = ln_f(wte[t] + wpe[p] + Σ biases) @ wte.T, computed here in f64.
    #[test]
    fn zero_blocks_reduce_to_embedding_plus_biases() {
        let config = config();
        let mut w = random_weights(config, 1);
        let n_embd = config.embd();
        for layer in &mut w.layers {
            let attn_bias = layer.attn_c_proj_bias.clone();
            let mlp_bias = layer.mlp_c_proj_bias.clone();
            *layer = LayerWeights::zeros(&config);
            layer.attn_c_proj_bias = attn_bias;
            layer.mlp_c_proj_bias = mlp_bias;
        }
        let tokens = [3, 39, 0, 17, 17];
        let logits = forward(&w, &tokens).unwrap();
        for (p, &t) in tokens.iter().enumerate() {
            let x: Vec<f64> = (0..n_embd)
                .map(|c| {
                    let biases: f64 = w
                        .layers
                        .iter()
                        .map(|l| f64::from(l.attn_c_proj_bias[c]) + f64::from(l.mlp_c_proj_bias[c]))
                        .sum();
                    f64::from(w.wte[t as usize * n_embd + c])
                        + f64::from(w.wpe[p * n_embd + c])
                        + biases
                })
                .collect();
            let mean = x.iter().sum::<f64>() / n_embd as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n_embd as f64;
            let h: Vec<f64> = (0..n_embd)
                .map(|c| {
                    f64::from(w.ln_f_weight[c]) * (x[c] - mean) / (var + 1e-5).sqrt()
                        + f64::from(w.ln_f_bias[c])
                })
                .collect();
            for (v, row) in w.wte.chunks_exact(n_embd).enumerate() {
                let want: f64 = row.iter().zip(&h).map(|(e, h)| f64::from(*e) * h).sum();
                assert!(
                    close(logits[p][v], want, 1e-5),
                    "position {p} token {v}: {} vs {want}",
                    logits[p][v]
                );
            }
        }
    }

    #[test]
    fn later_tokens_do_not_change_earlier_logits() {
        let w = random_weights(config(), 2);
        let a = forward(&w, &[5, 6, 7, 8, 9, 10]).unwrap();
        let b = forward(&w, &[5, 6, 7, 8, 30, 31]).unwrap();
        assert_eq!(a[..4], b[..4]);
        assert_ne!(a[4], b[4]);
    }

    #[test]
    fn incremental_decoding_matches_full_recompute() {
        let w = random_weights(config(), 3);
        let prompt = [1, 2, 3, 4, 5];
        let generation = greedy(&w, &prompt, 6).unwrap();
        assert_eq!(generation.first_logits, generation.all_logits[0]);
        let tokens = generation.tokens();
        for (k, step_logits) in generation.all_logits.iter().enumerate() {
            let sequence: Vec<u32> = prompt.iter().chain(&tokens[..k]).copied().collect();
            let full = forward(&w, &sequence).unwrap();
            let last = full.last().unwrap();
            let scale = last.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in step_logits.iter().zip(last) {
                assert!((a - b).abs() <= 1e-5 * scale, "step {k}: {a} vs {b}");
            }
            let step = &generation.steps[k];
            let best = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(step.token, step.top3[0].token);
            assert_eq!(step.top3[0].logit, best);
        }
    }

    #[test]
    fn top3_breaks_ties_by_lowest_id_and_uses_the_full_softmax() {
        let top = top3(&[1.0, 3.0, 3.0, 2.0, 0.0]);
        let ids: Vec<u32> = top.iter().map(|c| c.token).collect();
        assert_eq!(ids, [1, 2, 3]);
        let z: f64 = [1.0f64, 3.0, 3.0, 2.0, 0.0].iter().map(|l| l.exp()).sum();
        assert!((top[0].prob - 3.0f64.exp() / z).abs() < 1e-12);
        assert!((top[2].prob - 2.0f64.exp() / z).abs() < 1e-12);
        assert_eq!(top3(&[0.5]).len(), 1);
    }

    #[test]
    fn rejects_bad_tokens_lengths_and_weights() {
        let mut w = random_weights(config(), 4);
        let err = forward(&w, &[1, 40]).unwrap_err();
        assert_eq!(err, ReferenceError::TokenOutOfRange { index: 1, token: 40, vocab_size: 40 });
        assert!(err.to_string().contains("40") && err.to_string().contains("index 1"));
        let err = forward(&w, &[0; 17]).unwrap_err();
        assert_eq!(err.to_string(), "a sequence of 17 tokens exceeds n_ctx 16");
        // 12 prompt tokens + 5 steps feeds 16 tokens: fits; 6 steps would feed 17.
        assert!(greedy(&w, &[0; 12], 5).is_ok());
        assert_eq!(
            greedy(&w, &[0; 12], 6).unwrap_err(),
            ReferenceError::TooLong { len: 17, n_ctx: 16 }
        );
        assert_eq!(greedy(&w, &[], 3).unwrap_err(), ReferenceError::EmptyPrompt);
        w.layers[0].c_fc_weight.pop();
        assert!(matches!(
            forward(&w, &[1]),
            Err(ReferenceError::Weights(WeightsError::Length { .. }))
        ));
    }

    /// Speed on the 124M shape (synthetic weights): a 10-token prompt and 8 greedy steps.
    /// Ignored by default (0.5 GB of weights); run with
    /// `cargo test -p host-tools --release -- --ignored reference`.
    #[test]
    #[ignore]
    fn gpt2_124m_greedy_takes_seconds() {
        let w = crate::synth::synthesize(ModelConfig::GPT2_124M, 1).unwrap();
        let prompt: Vec<u32> = (0..10).map(|i| i * 5003 + 11).collect();
        let start = std::time::Instant::now();
        let generation = greedy(&w, &prompt, 8).unwrap();
        let elapsed = start.elapsed();
        eprintln!("124M: 10-token prompt + 8 steps in {elapsed:.2?}: {:?}", generation.tokens());
        assert!(elapsed.as_secs_f32() < 5.0, "{elapsed:?}");
    }
}

//! Prompt-lookup speculative decoding: several tokens per pass over the weights, the same text.
//!
//! A board's time per token is the time of one pass over the weights, and a pass over a few
//! positions costs about what a pass over one does. So before each pass, [`draft`] guesses the
//! next tokens by finding the context's last n-gram earlier in the context (the prompt and
//! what was generated) and copying what followed it; [`crate::Model::forward_each`] then runs
//! the last chosen token and the draft in one pass, with one [`LogitSink`] per position; and
//! [`accepted`] keeps the draft tokens the model itself would have chosen. The pass always
//! yields at least the model's own next token, so it never yields fewer tokens than plain
//! decoding; KV positions written for rejected draft tokens are simply overwritten by the next
//! pass, as a retried step overwrites them.
//!
//! **The text is the text of plain decoding.** The logits of each position of a pass are bit
//! for bit those of a one-token pass at that position, and each position is chosen by the sink
//! plain decoding would use at that step ([`crate::TopK`]'s arg-max, or a
//! [`crate::Picker`] made for that step number). Greedy output is therefore identical to plain
//! greedy output, top-3 lines and logits included.
//!
//! **Sampling follows the standard acceptance rule.** The picker draws with the Gumbel-max
//! trick from noise keyed by (seed, step, token). A drafted token `d` is accepted when that
//! draw is `d`, which happens with exactly the target probability `p(d)`; when it is not, the
//! draw is the arg-max over the other tokens, distributed as the target distribution without
//! `d`, renormalized. That is the speculative acceptance rule for a deterministic draft
//! (accept with probability `p(d)`, else sample from `p` with `d` removed), with the noise
//! shared with plain decoding — so the same seed also gives the same text with and without a
//! draft, on every target.

use core::fmt;

use crate::logits::{LogitSink, TopK};
use crate::sample::Picker;

/// Draft tokens per pass when the user does not say (`host-tools run --speculate`, and the
/// boards' request line): a pass over 5 positions costs about what a pass over 1 does.
pub const DEFAULT_SPECULATE: usize = 4;

/// Most draft tokens per pass anyone may ask for (a verifying pass holds one position more).
pub const MAX_SPECULATE: usize = 32;

/// How drafts are looked up. All bounds are the caller's, so a draft needs no memory beyond
/// its output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DraftSpec {
    /// Longest n-gram matched (tried first).
    pub max_ngram: usize,
    /// Shortest n-gram matched.
    pub min_ngram: usize,
    /// How far back the match is looked for: the last `window` tokens of the context.
    pub window: usize,
}

impl DraftSpec {
    /// Matches of 3, then 2, then 1 token over the last 1024 tokens (GPT-2's whole context).
    pub const DEFAULT: Self = Self { max_ngram: 3, min_ngram: 1, window: 1024 };
}

/// The context a draft is looked up in: the prompt followed by the generated tokens, kept in
/// two buffers as boards keep them.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The prompt's tokens.
    pub prompt: &'a [u32],
    /// The tokens generated so far.
    pub generated: &'a [u32],
}

impl Context<'_> {
    /// Tokens in the context.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.generated.len()
    }

    /// Whether the context has no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i` of the context (`i < len()`).
    fn at(&self, i: usize) -> u32 {
        match i.checked_sub(self.prompt.len()) {
            None => self.prompt[i],
            Some(j) => self.generated[j],
        }
    }
}

/// Fills `out` (up to its length) with the tokens that followed the most recent earlier
/// occurrence of the context's last n-gram, trying the longest n-gram first; returns how many
/// were drafted (0: no match, or `out` is empty).
///
/// A match close to the end continues into the draft itself, so a loop of period `p` drafts
/// its next `out.len()` tokens, not only the `p` the context shows.
pub fn draft(context: Context<'_>, spec: &DraftSpec, out: &mut [u32]) -> usize {
    let len = context.len();
    if out.is_empty() || spec.min_ngram == 0 {
        return 0;
    }
    for n in (spec.min_ngram..=spec.max_ngram).rev() {
        // An earlier occurrence needs at least one token between its end and the context's.
        if len < n + 1 {
            continue;
        }
        let earliest = len.saturating_sub(spec.window);
        let is_match = |s: usize| (0..n).all(|k| context.at(s + k) == context.at(len - n + k));
        if let Some(s) = (earliest..len - n).rev().find(|&s| is_match(s)) {
            for j in 0..out.len() {
                let from = s + n + j;
                out[j] = if from < len { context.at(from) } else { out[from - len] };
            }
            return out.len();
        }
    }
    0
}

/// Fills the input of a verifying pass: `last` (the latest chosen token) in `input[0]`, then
/// a [`draft`] of at most `room` tokens after it; returns how many were drafted, so the pass
/// runs `input[..=drafted]` and [`accepted`] checks `input[1..=drafted]`. An empty `input`
/// drafts nothing and holds nothing.
pub fn pass_input(
    context: Context<'_>,
    last: u32,
    spec: &DraftSpec,
    room: usize,
    input: &mut [u32],
) -> usize {
    let Some((first, rest)) = input.split_first_mut() else { return 0 };
    *first = last;
    let room = room.min(rest.len());
    draft(context, spec, &mut rest[..room])
}

/// A sink that knows which token its position chooses: what a draft token is checked against.
pub trait Choose: LogitSink {
    /// The token chosen from the logits received.
    fn chosen(&self) -> u32;
}

impl<const K: usize> Choose for TopK<K> {
    fn chosen(&self) -> u32 {
        self.argmax().unwrap_or(0)
    }
}

impl<const K: usize> Choose for Picker<K> {
    fn chosen(&self) -> u32 {
        self.choose().token
    }
}

/// How many tokens of `draft` the model accepts: `choices[j]` holds the logits of the
/// position that fed `draft[j - 1]` (position 0 fed the last chosen token), so `draft[j]`
/// stands while `choices[j]` chooses it. The pass yields the choices of positions
/// `0..=accepted`.
pub fn accepted<C: Choose>(choices: &[C], draft: &[u32]) -> usize {
    choices.iter().zip(draft).take_while(|(c, d)| c.chosen() == **d).count()
}

/// Passes over the weights and what the drafts gained: what a generation reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Passes {
    /// Passes over the weights, the prompt's included.
    pub weight_passes: usize,
    /// Passes after the prompt's that verified a draft.
    pub drafts: usize,
    /// Draft tokens proposed.
    pub drafted_tokens: usize,
    /// Draft tokens accepted: tokens that cost no pass of their own.
    pub accepted_tokens: usize,
}

impl Passes {
    /// Counts one pass that verified `drafted` tokens and accepted `accepted` of them
    /// (`prompt`: the prompt's pass, which verifies nothing).
    pub fn count(&mut self, drafted: usize, accepted: usize, prompt: bool) {
        self.weight_passes += 1;
        if !prompt && drafted > 0 {
            self.drafts += 1;
            self.drafted_tokens += drafted;
            self.accepted_tokens += accepted;
        }
    }

    /// The summary line every target prints after a generation of `tokens` tokens that
    /// verified a draft (without its newline): `9 weight passes for 24 tokens: 15 of 20
    /// drafted tokens accepted`. Writes nothing when no pass verified a draft.
    pub fn write_summary<W: fmt::Write>(&self, out: &mut W, tokens: usize) -> fmt::Result {
        if self.drafts == 0 {
            return Ok(());
        }
        write!(
            out,
            "{} weight passes for {tokens} tokens: {} of {} drafted tokens accepted",
            self.weight_passes, self.accepted_tokens, self.drafted_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drafted(prompt: &[u32], generated: &[u32], spec: &DraftSpec, k: usize) -> Vec<u32> {
        let mut out = vec![0; k];
        let n = draft(Context { prompt, generated }, spec, &mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn copies_what_followed_the_last_trigram() {
        let prompt = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3];
        assert_eq!(drafted(&prompt, &[], &DraftSpec::DEFAULT, 3), [4, 5, 9]);
        // The same context split between prompt and generated tokens.
        assert_eq!(drafted(&prompt[..6], &prompt[6..], &DraftSpec::DEFAULT, 3), [4, 5, 9]);
    }

    #[test]
    fn prefers_the_most_recent_match_and_the_longest_ngram() {
        // "7 8" occurs twice; the later one was followed by 6. The trigram "5 7 8" occurs
        // once, followed by 1, and wins over the more recent bigram.
        let ctx = [5, 7, 8, 1, 0, 7, 8, 6, 0, 5, 7, 8];
        assert_eq!(drafted(&ctx, &[], &DraftSpec::DEFAULT, 1), [1]);
        // With bigrams only, the more recent "7 8", followed by 6, wins.
        let bigrams = DraftSpec { max_ngram: 2, ..DraftSpec::DEFAULT };
        assert_eq!(drafted(&ctx, &[], &bigrams, 1), [6]);
    }

    #[test]
    fn a_pass_input_is_the_last_token_then_the_draft_within_room_and_buffer() {
        let context = Context { prompt: &[1, 2, 3, 1, 2], generated: &[3] };
        let mut input = [0; 4];
        let n = pass_input(context, 3, &DraftSpec::DEFAULT, 2, &mut input);
        assert_eq!((n, &input[..=n]), (2, &[3, 1, 2][..]));
        // More room than the buffer holds: the buffer bounds the draft.
        let n = pass_input(context, 3, &DraftSpec::DEFAULT, 9, &mut input);
        assert_eq!((n, &input[..=n]), (3, &[3, 1, 2, 3][..]));
        assert_eq!(pass_input(context, 3, &DraftSpec::DEFAULT, 2, &mut []), 0);
    }

    #[test]
    fn a_loop_drafts_past_the_end_of_the_context() {
        let ctx = [4, 1, 2, 1, 2, 1, 2];
        assert_eq!(drafted(&ctx, &[], &DraftSpec::DEFAULT, 5), [1, 2, 1, 2, 1]);
        assert_eq!(drafted(&[3, 3, 3, 3], &[], &DraftSpec::DEFAULT, 4), [3, 3, 3, 3]);
    }

    #[test]
    fn no_match_no_draft() {
        assert!(drafted(&[1, 2, 3, 4], &[], &DraftSpec::DEFAULT, 4).is_empty());
        assert!(drafted(&[1], &[], &DraftSpec::DEFAULT, 4).is_empty());
        assert!(drafted(&[1, 1], &[], &DraftSpec::DEFAULT, 0).is_empty());
        // Outside the window.
        let narrow = DraftSpec { window: 3, ..DraftSpec::DEFAULT };
        assert!(drafted(&[1, 2, 9, 9, 9, 1], &[], &narrow, 2).is_empty());
        assert_eq!(drafted(&[1, 2, 9, 9, 9, 1], &[], &DraftSpec::DEFAULT, 2), [2, 9]);
    }

    fn top(logits: &[f32]) -> TopK<3> {
        let mut t = TopK::new();
        for (i, &l) in logits.iter().enumerate() {
            t.accept(i as u32, l);
        }
        t
    }

    #[test]
    fn counts_passes_and_summarizes_only_verified_drafts() {
        let mut passes = Passes::default();
        passes.count(0, 0, true);
        passes.count(0, 0, false);
        let mut line = String::new();
        passes.write_summary(&mut line, 2).unwrap();
        assert_eq!(line, "");
        passes.count(4, 3, false);
        passes.write_summary(&mut line, 6).unwrap();
        assert_eq!(line, "3 weight passes for 6 tokens: 3 of 4 drafted tokens accepted");
    }

    #[test]
    fn accepts_the_prefix_the_model_agrees_with() {
        let choices = [top(&[0.0, 1.0, 0.0]), top(&[2.0, 0.0, 0.0]), top(&[0.0, 0.0, 3.0])];
        assert_eq!(accepted(&choices, &[1, 0]), 2);
        assert_eq!(accepted(&choices, &[1, 1]), 1);
        assert_eq!(accepted(&choices, &[2, 0]), 0);
        assert_eq!(accepted(&choices[..1], &[]), 0);
    }

    /// With sampling, a drafted token is accepted with its target probability, and the
    /// token drawn instead of a rejected one follows the target distribution without it.
    #[test]
    fn sampled_acceptance_follows_the_speculative_rule() {
        use crate::sample::{RandomSampling, Sampling};
        let logits = [1.0f32, 2.0, 0.0, 1.5];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let p: Vec<f32> = logits.iter().map(|l| l.exp() / z).collect();
        let sampling =
            Sampling::Random(RandomSampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 5 });
        let drafted = 1u32;
        let (mut accepted_count, mut instead) = (0u32, [0u32; 4]);
        let n = 40_000;
        for step in 0..n {
            let mut picker = Picker::<4>::new(sampling, step);
            for (i, &l) in logits.iter().enumerate() {
                picker.accept(i as u32, l);
            }
            if accepted(core::slice::from_ref(&picker), &[drafted]) == 1 {
                accepted_count += 1;
            } else {
                instead[picker.chosen() as usize] += 1;
            }
        }
        let rate = accepted_count as f32 / n as f32;
        assert!((rate - p[1]).abs() < 0.01, "accepted {rate}, p(d) {}", p[1]);
        let rejected = (n as u32 - accepted_count) as f32;
        for (i, &count) in instead.iter().enumerate() {
            let expected = if i == 1 { 0.0 } else { p[i] / (1.0 - p[1]) };
            let seen = count as f32 / rejected;
            assert!((seen - expected).abs() < 0.015, "token {i}: {seen} vs {expected}");
        }
    }
}

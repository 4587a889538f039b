//! A request's RAM, split when the request comes: core's workspace for as many prompt
//! positions per weight pass as the RAM allows, and the KV cache in the rest, its positions
//! beyond what fits spilled to storage (core's [`TieredKv`] over a [`StorageKv`]).
//!
//! The split is made per request over one arena rather than by a heap: a request holds
//! exactly two buffers for exactly its own lifetime, so carving them from the front and the
//! back of the arena gives what an allocator would, with no fragmentation, no per-allocation
//! headers and no allocator code.
//!
//! Prompt positions are worth more than KV positions in RAM: every pass reads all the weights
//! (132 MB for GPT-2 124M int8, some 42 s over SPI), while a spilled position costs one record
//! read per layer and token (19.6 KB at int8). So the batch is chosen first, the fewest passes
//! the prompt can take, and the smallest batch giving them; the KV cache gets the rest.
//!
//! A pass verifying a speculative draft of `k` tokens ([`picogpt_core::speculate`]) holds
//! `k + 1` positions, and every token it accepts saves a whole pass: so the batch is then
//! widened to `k + 1` when the RAM holds that workspace beside the KV cache's floor, else as
//! far as it does, and the draft is cut to fit ([`verify_batch`]). The text is the same for
//! any draft length; only the passes differ, and the board says how many tokens it drafts.

use picogpt_core::{
    Error, KvCache, KvFormat, ModelConfig, RamKv, StorageKv, TieredKv, Workspace, WorkspaceSpec,
    layout::Layout,
};

use crate::failure::Failure;
use crate::kv::{self, BoardKv, Spill, SpillError, SpillStorageError};
use crate::request::Request;

/// The board's RAM for one request.
pub struct Memory<'a> {
    /// The arena split between core's workspace and the KV cache (f32 words, so the
    /// workspace needs no alignment fix-up).
    pub ram: &'a mut [f32],
    /// Token ids of an encoded text prompt ([`crate::MAX_PROMPT`]).
    pub tokens: &'a mut [u32],
    /// BPE merge state while a text prompt is encoded ([`crate::BPE_SCRATCH_WORDS`]).
    pub bpe: &'a mut [u32],
}

impl Memory<'_> {
    /// The same buffers, lent for one request.
    pub fn reborrow(&mut self) -> Memory<'_> {
        Memory { ram: &mut *self.ram, tokens: &mut *self.tokens, bpe: &mut *self.bpe }
    }
}

/// The prompt positions per pass that need the fewest passes for `prompt` positions, and of
/// those the smallest, whose workspace (`workspace(batch)` bytes) and `kv_floor` bytes of KV
/// cache fit `ram` bytes; at most `max_batch`. `None` when not even batch 1 fits.
pub fn choose_batch(
    prompt: usize,
    max_batch: usize,
    ram: usize,
    kv_floor: usize,
    workspace: impl Fn(usize) -> usize,
) -> Option<usize> {
    let prompt = prompt.max(1);
    (1..=prompt)
        .map(|passes| prompt.div_ceil(passes))
        .filter(|&batch| batch <= max_batch.max(1))
        .find(|&batch| workspace(batch).saturating_add(kv_floor) <= ram)
}

/// The batch a request needs when its prompt takes `prompt_batch` positions per pass and
/// each later pass verifies up to `speculate` draft tokens: `speculate + 1`, or the largest
/// batch below it that `fits`, and never less than `prompt_batch` (which fits).
pub fn verify_batch(prompt_batch: usize, speculate: usize, fits: impl Fn(usize) -> bool) -> usize {
    let wanted = speculate.saturating_add(1);
    (prompt_batch + 1..=wanted).take_while(|&batch| fits(batch)).last().unwrap_or(prompt_batch)
}

/// The longest draft `request` can use: its `speculate`, but never more than the `n - 2`
/// tokens the first verifying pass may still add (the prompt's pass yields the first token,
/// the verified token the next).
pub fn useful_draft(request: &Request<'_>) -> usize {
    request.speculate.min(request.n.saturating_sub(2))
}

/// Where the KV cache's positions went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Positions in RAM.
    pub ram: usize,
    /// Bytes per position.
    pub position_bytes: usize,
    /// Positions in spill storage.
    pub spilled: usize,
}

/// A request's workspace, KV cache and where its positions are.
pub struct Split<'a, P: Spill> {
    /// Core's workspace spec: the batch and the read size.
    pub spec: WorkspaceSpec,
    /// Draft tokens per pass the batch holds: the request's ([`useful_draft`]), or fewer if
    /// the RAM is short.
    pub speculate: usize,
    /// The workspace's words.
    pub workspace: &'a mut [f32],
    /// The KV cache.
    pub kv: BoardKv<'a, P::Storage>,
    /// Where its positions are.
    pub placement: Placement,
    /// Bytes of RAM the KV cache got.
    pub kv_ram: usize,
}

/// Splits `ram` for a request of `prompt` positions needing `needed` in all: the batch by
/// [`choose_batch`] widened for the draft by [`verify_batch`], the workspace in front, the
/// KV cache behind it, spilling to `spill`.
pub fn split<'a, SE, P: Spill>(
    layout: &Layout,
    ram: &'a mut [f32],
    prompt: usize,
    needed: usize,
    request: &Request<'_>,
    spill: &mut P,
) -> Result<Split<'a, P>, Failure<SE, SpillStorageError<P>>> {
    let cfg = layout.config();
    let position_bytes = kv::bytes_per_position(cfg, request.kv);
    let all_positions = needed.saturating_mul(position_bytes);
    let record = StorageKv::<P::Storage>::buffer_bytes(cfg, request.kv);
    let kv_floor = match spill.available() {
        Ok(()) => all_positions.min(record),
        Err(_) => all_positions,
    };
    let bytes = |batch| Workspace::bytes(layout, &spec(batch, request));
    let ram_bytes = 4 * ram.len();
    let Some(batch) = choose_batch(prompt, request.max_batch, ram_bytes, kv_floor, bytes) else {
        let needed_ws = bytes(1);
        if needed_ws > ram_bytes {
            return Err(Failure::Workspace { needed: needed_ws, available: ram_bytes });
        }
        let positions = kv::positions_in(cfg, request.kv, ram_bytes - needed_ws);
        let hint = spill.available().err().unwrap_or("shorten the prompt or -n");
        return Err(Failure::KvCache { needed, positions, position_bytes, hint });
    };
    let fits = |batch| bytes(batch).saturating_add(kv_floor) <= ram_bytes;
    let batch = verify_batch(batch, useful_draft(request), fits);
    let speculate = useful_draft(request).min(batch - 1);
    let spec = spec(batch, request);
    let (workspace, rest) = ram.split_at_mut(Workspace::words(layout, &spec));
    let kv_bytes: &mut [u8] = bytemuck::cast_slice_mut(rest);
    let kv_ram = kv_bytes.len();
    let (kv, placement) = place(cfg, request.kv, kv_bytes, needed, spill)?;
    Ok(Split { spec, speculate, workspace, kv, placement, kv_ram })
}

/// The workspace spec of `request` at `batch`.
fn spec(batch: usize, request: &Request<'_>) -> WorkspaceSpec {
    WorkspaceSpec::new(batch, request.chunk_bytes).with_activations(request.activations)
}

/// A board's KV cache over `P`'s storage, and where its positions are.
pub type Placed<'a, P> = (BoardKv<'a, <P as Spill>::Storage>, Placement);

/// A KV cache of `needed` positions in `format`: in `ram` if they fit, else as many as fit
/// there (after a one-record buffer for the spill) and the rest in storage from `spill`.
pub fn place<'a, SE, P: Spill>(
    cfg: &ModelConfig,
    format: KvFormat,
    ram: &'a mut [u8],
    needed: usize,
    spill: &mut P,
) -> Result<Placed<'a, P>, Failure<SE, SpillStorageError<P>>> {
    let position_bytes = kv::bytes_per_position(cfg, format);
    let in_ram = kv::positions_in(cfg, format, ram.len());
    if in_ram >= needed {
        let placement = Placement { ram: in_ram, position_bytes, spilled: 0 };
        return Ok((BoardKv::Ram(RamKv::new(cfg, format, ram)), placement));
    }
    let short = |hint| Failure::KvCache { needed, positions: in_ram, position_bytes, hint };
    let record = StorageKv::<P::Storage>::buffer_bytes(cfg, format);
    let Some((buf, rest)) = ram.split_at_mut_checked(record) else {
        return Err(short("the RAM cannot even buffer one record of a spilled cache"));
    };
    let ram = RamKv::new(cfg, format, rest);
    let spilled = needed - ram.positions();
    let bytes = spilled as u64 * position_bytes as u64;
    let storage = spill.open(bytes).map_err(|e| match e {
        SpillError::Unavailable { hint } => short(hint),
        e => Failure::Spill(e),
    })?;
    let given = buf.len();
    let disk = StorageKv::new(cfg, format, storage, 0, spilled, buf).map_err(|_| {
        Failure::Core(Error::BufferTooSmall { what: "KV record buffer", needed: record, given })
    })?;
    let placement = Placement { ram: ram.positions(), position_bytes, spilled };
    Ok((BoardKv::Spilled(TieredKv::new(ram, disk)), placement))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use core::convert::Infallible;
    use core::fmt;

    use picogpt_core::{Storage, StorageMut};

    use super::*;
    use crate::kv::NoSpill;

    #[test]
    fn the_fewest_passes_come_first_then_the_smallest_batch() {
        // 10 KB per batch position, 1 KB besides: 10 positions need 101 KB.
        let ws = |b: usize| 1_000 + 10_000 * b;
        assert_eq!(choose_batch(10, 256, 101_000, 0, ws), Some(10));
        // 100 KB: two passes of 5.
        assert_eq!(choose_batch(10, 256, 100_000, 0, ws), Some(5));
        // The KV cache's floor counts: 3 passes (4, 3, 3) leave room for it.
        assert_eq!(choose_batch(10, 256, 60_000, 15_000, ws), Some(4));
        // A batch limit, and batch 1 when nothing else fits.
        assert_eq!(choose_batch(10, 3, 1_000_000, 0, ws), Some(3));
        assert_eq!(choose_batch(10, 256, 11_000, 0, ws), Some(1));
        assert_eq!(choose_batch(10, 256, 10_999, 0, ws), None);
    }

    #[test]
    fn the_batch_widens_for_the_draft_as_far_as_the_ram_allows() {
        let fits_up_to = |most: usize| move |b: usize| b <= most;
        assert_eq!(verify_batch(1, 4, fits_up_to(100)), 5);
        assert_eq!(verify_batch(1, 4, fits_up_to(3)), 3);
        // A prompt batch wider than the draft needs stays; no draft keeps the prompt's.
        assert_eq!(verify_batch(8, 4, fits_up_to(100)), 8);
        assert_eq!(verify_batch(2, 0, fits_up_to(100)), 2);
        assert_eq!(verify_batch(1, 4, fits_up_to(1)), 1);
    }

    fn config() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_ctx: 64,
            vocab_size: 100,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// Spill storage in a vector, as a file that grows to what is asked.
    struct VecFile(Vec<u8>);

    impl Storage for VecFile {
        type Error = Infallible;

        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Infallible> {
            let at = (offset as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - at);
            buf[..n].copy_from_slice(&self.0[at..at + n]);
            Ok(n)
        }

        fn size(&mut self) -> Result<u64, Infallible> {
            Ok(self.0.len() as u64)
        }
    }

    impl StorageMut for VecFile {
        fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Infallible> {
            let at = offset as usize;
            self.0[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
    }

    struct VecSpill;

    impl Spill for VecSpill {
        type Storage = VecFile;

        fn medium(&self) -> &'static str {
            "test"
        }

        fn name(&self) -> &str {
            "vec"
        }

        fn available(&self) -> Result<(), &'static str> {
            Ok(())
        }

        fn open(&mut self, bytes: u64) -> Result<VecFile, SpillError<Infallible>> {
            Ok(VecFile(vec![0; bytes as usize]))
        }
    }

    #[test]
    fn a_context_that_fits_stays_in_ram() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let (kv, placement) =
            place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 10, &mut VecSpill)
                .unwrap_or_else(|_| panic!("placement failed"));
        assert!(matches!(kv, BoardKv::Ram(_)));
        assert_eq!(placement, Placement { ram: 10, position_bytes: 1024, spilled: 0 });
    }

    #[test]
    fn the_rest_spills_and_reads_back_exactly() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let (mut kv, placement) =
            place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 30, &mut VecSpill)
                .unwrap_or_else(|_| panic!("placement failed"));
        // One position's worth of RAM became the spill's record buffer.
        assert_eq!(placement, Placement { ram: 9, position_bytes: 1024, spilled: 21 });
        assert_eq!(kv.positions(), 30);
        let row = |pos: usize| -> Vec<f32> { (0..64).map(|i| (pos * 64 + i) as f32).collect() };
        for pos in 0..30 {
            kv.store(1, pos, &row(pos), &row(pos + 100)).unwrap();
        }
        let (mut k, mut v) = (vec![0.0; 64], vec![0.0; 64]);
        for pos in 0..30 {
            kv.load(1, pos, &mut k, &mut v).unwrap();
            assert_eq!((&k, &v), (&row(pos), &row(pos + 100)), "position {pos}");
        }
    }

    #[test]
    fn without_spill_storage_the_error_names_the_positions() {
        let cfg = config();
        let mut ram = vec![0u8; 10 * kv::bytes_per_position(&cfg, KvFormat::F32)];
        let mut none = NoSpill { hint: "shorten the prompt" };
        let Err(failure) = place::<Infallible, _>(&cfg, KvFormat::F32, &mut ram, 30, &mut none)
        else {
            panic!("placement without spill storage succeeded");
        };
        let mut line = std::string::String::new();
        fmt::write(&mut line, format_args!("{failure}")).unwrap();
        assert_eq!(
            line,
            "30 positions needed, the KV cache in RAM holds 10 (1024 bytes each): shorten the \
             prompt"
        );
    }
}

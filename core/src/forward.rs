//! The GPT-2 forward pass over streamed weights (picoGPT's `gpt2()`, one chunk at a time).
//!
//! A call handles up to `batch` positions per pass over the weights: every weight chunk that
//! is read is applied to all of them before the next one is read. Each chunk's rows are
//! split between the caller's [`Workers`].

use crate::config::ModelConfig;
use crate::error::Error;
use crate::format::{DType, TensorFormat, TensorId, TensorKind};
use crate::gelu::gelu;
use crate::kernels::int8::{ActivationCode, Q_BLOCK, block_slots};
use crate::kernels::{
    Kernels, LANES, Lanes, affine, code_for_int8, decode_f16, decode_f32, decode_int4, decode_int8,
    dot, dot_int4, dot_q4, quantize_activations, reduce, reduce_blocks, sum,
};
use crate::kv::KvCache;
use crate::layout::Layout;
use crate::logits::LogitSink;
use crate::model::{Model, table_crc};
use crate::storage::Storage;
use crate::stream::{Source, TensorStream};
use crate::workers::{Disjoint, OneWorker, Workers, share};
use crate::workspace::{ActBuffers, Activations, Scratch, Workspace};

impl<S: Storage> Model<S> {
    /// Runs `tokens` at positions `start..` through the model, storing their keys and values
    /// in `kv`, and streams the logits of the last position into `sink`.
    ///
    /// All checks on the request (context, vocabulary, buffers) happen before any weight is
    /// read. On error the positions of this call may be half written in `kv`; calling again
    /// with the same arguments overwrites them, so a failed step can simply be retried.
    pub fn forward<K: KvCache, L: LogitSink>(
        &mut self,
        ws: &mut Workspace<'_>,
        kv: &mut K,
        tokens: &[u32],
        start: usize,
        sink: &mut L,
    ) -> Result<(), Error<S::Error, K::Error>> {
        self.forward_with(ws, kv, tokens, start, sink, &mut OneWorker)
    }

    /// [`Self::forward`] with every matrix's rows split between `workers` (host threads, a
    /// second core): the same bits for any number of workers.
    pub fn forward_with<K: KvCache, L: LogitSink>(
        &mut self,
        ws: &mut Workspace<'_>,
        kv: &mut K,
        tokens: &[u32],
        start: usize,
        sink: &mut L,
        workers: &mut dyn Workers,
    ) -> Result<(), Error<S::Error, K::Error>> {
        self.check_request(ws, kv, tokens, start)?;
        let batch = ws.batch();
        for (i, group) in tokens.chunks(batch).enumerate() {
            self.pass(ws, kv, group, start + i * batch, workers)?;
        }
        let last = (tokens.len() - 1) % batch;
        self.lm_head(ws, last, core::slice::from_mut(sink), workers)
    }

    /// Runs `tokens` at positions `start..` in one pass over the weights, as
    /// [`Self::forward`] does, and streams the logits of every position `i` into `sinks[i]`
    /// (the LM head reads `wte` once for all of them). This is what verifying a speculative
    /// draft needs ([`crate::speculate`]): each position's logits are bit for bit those a
    /// one-token [`Self::forward`] at that position gives.
    ///
    /// `tokens` must fit one pass (at most the workspace's batch), with one sink per token.
    pub fn forward_each<K: KvCache, L: LogitSink>(
        &mut self,
        ws: &mut Workspace<'_>,
        kv: &mut K,
        tokens: &[u32],
        start: usize,
        sinks: &mut [L],
    ) -> Result<(), Error<S::Error, K::Error>> {
        self.forward_each_with(ws, kv, tokens, start, sinks, &mut OneWorker)
    }

    /// [`Self::forward_each`] with every matrix's rows split between `workers`.
    pub fn forward_each_with<K: KvCache, L: LogitSink>(
        &mut self,
        ws: &mut Workspace<'_>,
        kv: &mut K,
        tokens: &[u32],
        start: usize,
        sinks: &mut [L],
        workers: &mut dyn Workers,
    ) -> Result<(), Error<S::Error, K::Error>> {
        self.check_request(ws, kv, tokens, start)?;
        if tokens.len() > ws.batch() {
            let (needed, given) = (tokens.len(), ws.batch());
            return Err(Error::BufferTooSmall { what: "workspace batch", needed, given });
        }
        if sinks.len() != tokens.len() {
            return Err(Error::ShapeMismatch { what: "logit sinks (one per token)" });
        }
        self.pass(ws, kv, tokens, start, workers)?;
        self.lm_head(ws, 0, sinks, workers)
    }

    /// The checks of a request (context, vocabulary, buffers), made before any weight is read.
    fn check_request<K: KvCache>(
        &self,
        ws: &Workspace<'_>,
        kv: &K,
        tokens: &[u32],
        start: usize,
    ) -> Result<(), Error<S::Error, K::Error>> {
        let cfg = *self.layout.config();
        if !ws.fits(&self.layout) {
            return Err(Error::ShapeMismatch { what: "workspace" });
        }
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        let end = start.saturating_add(tokens.len());
        let n_ctx = cfg.n_ctx as usize;
        if end > n_ctx {
            return Err(Error::ContextFull { needed: end, available: n_ctx, limit: "n_ctx" });
        }
        if end > kv.positions() {
            let available = kv.positions();
            return Err(Error::ContextFull { needed: end, available, limit: "KV cache" });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t >= cfg.vocab_size) {
            return Err(Error::TokenOutOfRange { token, vocab: cfg.vocab_size });
        }
        Ok(())
    }

    /// The weight-reading context of a pass, over the workspace's scratch buffers.
    fn ctx<'a>(
        &'a mut self,
        scratch: &'a mut Scratch<'_>,
        workers: &'a mut dyn Workers,
    ) -> Ctx<'a, S> {
        Ctx {
            weights: Weights {
                src: &mut self.src,
                layout: &self.layout,
                verify: self.verify,
                chunk: scratch.chunk,
                chunk_bytes: scratch.chunk_bytes,
            },
            kernels: self.kernels,
            workers,
            carry: scratch.lanes,
            activations: scratch.activations,
            q8: scratch.q8,
            q8_scales: scratch.q8_scales,
        }
    }

    /// One pass over the weights for positions `pos0..pos0 + tokens.len()`.
    fn pass<K: KvCache>(
        &mut self,
        ws: &mut Workspace<'_>,
        kv: &mut K,
        tokens: &[u32],
        pos0: usize,
        workers: &mut dyn Workers,
    ) -> Result<(), Error<S::Error, K::Error>> {
        use TensorKind::*;
        let cfg = *self.layout.config();
        let (d, n) = (cfg.embd(), tokens.len());
        let ActBuffers { x, xn, big, stats, kv_row } = &mut ws.act;
        let (x, xn, big) = (&mut x[..n * d], &mut xn[..n * d], &mut big[..n * 4 * d]);
        let mut ctx = self.ctx(&mut ws.scratch, workers);
        // [n, n_embd] <- wte[token] + wpe[pos]
        for (i, &token) in tokens.iter().enumerate() {
            let (xi, tmp) = (&mut x[i * d..(i + 1) * d], &mut xn[i * d..(i + 1) * d]);
            ctx.weights.read_row(Wte, token as usize, xi)?;
            ctx.weights.read_row(Wpe, pos0 + i, tmp)?;
            for (a, b) in xi.iter_mut().zip(tmp.iter()) {
                *a += *b;
            }
        }
        for layer in 0..cfg.n_layer as u16 {
            let id = |kind| TensorId::layer(layer, kind);
            let l = usize::from(layer);
            // [n, n_embd] -> [n, 3*n_embd]: q | k | v
            ctx.layernorm(id(Ln1Weight), id(Ln1Bias), x, xn, d, cfg.layer_norm_epsilon)?;
            ctx.linear(id(CAttnWeight), id(CAttnBias), xn, d, big, 4 * d)?;
            for i in 0..n {
                let qkv = &big[i * 4 * d..i * 4 * d + 3 * d];
                let pos = pos0 + i;
                kv.store(l, pos, &qkv[d..2 * d], &qkv[2 * d..]).map_err(|source| Error::Kv {
                    source,
                    layer: l,
                    pos,
                })?;
            }
            // [n, 3*n_embd] -> [n, n_embd]: causal multi-head attention over the cache
            attention(&cfg, kv, l, pos0, big, xn, stats, kv_row)?;
            // [n, n_embd] -> [n, n_embd], added to the residual stream
            ctx.linear(id(AttnCProjWeight), id(AttnCProjBias), xn, d, big, 4 * d)?;
            add_rows(x, d, big, 4 * d);
            // [n, n_embd] -> [n, 4*n_embd] -> [n, n_embd], added to the residual stream
            ctx.layernorm(id(Ln2Weight), id(Ln2Bias), x, xn, d, cfg.layer_norm_epsilon)?;
            ctx.linear(id(CFcWeight), id(CFcBias), xn, d, big, 4 * d)?;
            gelu_shared(&mut *ctx.workers, big);
            ctx.linear(id(MlpCProjWeight), id(MlpCProjBias), big, 4 * d, xn, d)?;
            add_rows(x, d, xn, d);
        }
        Ok(())
    }

    /// Final layer norm of positions `first..first + sinks.len()` of the pass and the tied LM
    /// head, streamed over `wte` once for all of them.
    fn lm_head<L: LogitSink, KE>(
        &mut self,
        ws: &mut Workspace<'_>,
        first: usize,
        sinks: &mut [L],
        workers: &mut dyn Workers,
    ) -> Result<(), Error<S::Error, KE>> {
        let cfg = *self.layout.config();
        let (d, n) = (cfg.embd(), sinks.len());
        let ActBuffers { x, xn, big, .. } = &mut ws.act;
        let mut ctx = self.ctx(&mut ws.scratch, workers);
        let h = &mut xn[..n * d];
        let (ln_w, ln_b) = (TensorKind::LnFWeight, TensorKind::LnFBias);
        let (ln_w, ln_b) = (TensorId::global(ln_w), TensorId::global(ln_b));
        // [n, n_embd] -> [n, n_embd]
        let rows = &x[first * d..(first + n) * d];
        ctx.layernorm(ln_w, ln_b, rows, h, d, cfg.layer_norm_epsilon)?;
        // [n, n_embd] -> [n, n_vocab], a run of logits at a time, fed to the sinks in id order
        let (masked, logits) = big[..n * 4 * d].split_at_mut(n * d);
        ctx.logits(h, masked, logits, sinks)
    }
}

/// What every weight read needs: the storage, the layout and the chunk buffer.
struct Weights<'a, S> {
    src: &'a mut Source<S>,
    layout: &'a Layout,
    verify: bool,
    chunk: &'a mut [u8],
    chunk_bytes: usize,
}

/// The weight-reading steps of a pass: weights, kernels and workers, plus the lanes of rows
/// cut by a chunk's end and the coded matrix inputs of the integer paths.
struct Ctx<'a, S> {
    weights: Weights<'a, S>,
    kernels: Kernels,
    workers: &'a mut dyn Workers,
    carry: &'a mut [Lanes],
    activations: Activations,
    q8: &'a mut [i16],
    q8_scales: &'a mut [f32],
}

impl<S: Storage> Weights<'_, S> {
    /// Streams all of tensor `id`, CRC-checked when verification is on.
    fn tensor<KE>(&mut self, id: TensorId) -> Result<TensorStream<'_, S>, Error<S::Error, KE>> {
        let crc = if self.verify { Some(self.table_crc(id)?) } else { None };
        let (offset, len) = (self.layout.offset(id), self.layout.expected_entry(id).len);
        let stream = TensorStream::new(
            &mut *self.src,
            &mut *self.chunk,
            self.chunk_bytes,
            id,
            offset,
            len,
            crc,
        );
        // The pass reads tensors in file order, so the next one is what follows.
        let index = self.layout.index_of(id) + 1;
        Ok(if index < self.layout.tensor_count() {
            let next = self.layout.expected_entry(self.layout.id_at(index));
            stream.followed_by(next.offset, next.len.min(self.chunk_bytes as u64) as usize)
        } else {
            stream
        })
    }

    fn table_crc<KE>(&mut self, id: TensorId) -> Result<u32, Error<S::Error, KE>> {
        table_crc(self.src, self.layout, id)
    }

    /// Decodes row `row` of a global matrix (`wte` or `wpe`) into `out`.
    fn read_row<KE>(
        &mut self,
        kind: TensorKind,
        row: usize,
        out: &mut [f32],
    ) -> Result<(), Error<S::Error, KE>> {
        let id = TensorId::global(kind);
        let format = self.layout.format(id);
        let shape = RowShape::new(format, self.layout.shape(kind).1);
        let offset = self.layout.offset(id) + (row * shape.bytes) as u64;
        let outliers = &self.layout.quant().lm_head_outliers;
        let mut stream = TensorStream::new(
            &mut *self.src,
            &mut *self.chunk,
            self.chunk_bytes,
            id,
            offset,
            shape.bytes as u64,
            None,
        );
        let mut at = 0;
        while at < shape.bytes {
            let run = stream.take_cut(shape.segment(at), |ready| shape.cut(at, ready, 1))?;
            let end = at + run.len();
            if at < shape.weights {
                let weights_end = end.min(shape.weights);
                let (c0, c1) = (shape.col(at), shape.col(weights_end));
                decode(&format, &run[..weights_end - at], &mut out[c0..c1]);
            }
            if end > shape.weights {
                let extras = &run[shape.weights.max(at) - at..];
                for (e, &channel) in extras.chunks_exact(4).zip(outliers) {
                    out[usize::from(channel)] = f32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                }
            }
            at = end;
        }
        Ok(())
    }

    /// Applies `f(row, vector)` to each of the `n` rows of `x` (`stride` apart) with the f32
    /// vector tensor `id`: `row[c] = f(row[c], vector[c])`, a run of the vector at a time.
    fn apply_vector<KE>(
        &mut self,
        id: TensorId,
        x: &mut [f32],
        n: usize,
        stride: usize,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<(), Error<S::Error, KE>> {
        let cols = self.layout.shape(id.kind).1;
        let mut stream = self.tensor(id)?;
        let mut index = 0;
        while index < cols {
            let run = stream.take(4, cols - index)?;
            let len = run.len() / 4;
            for i in 0..n {
                let row = &mut x[i * stride + index..i * stride + index + len];
                for (v, b) in row.iter_mut().zip(run.chunks_exact(4)) {
                    *v = f(*v, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            index += len;
        }
        stream.finish()
    }
}

impl<S: Storage> Ctx<'_, S> {
    /// `out[i] = (x[i] − mean) / sqrt(var + eps) · weight + bias` for each row of `x`.
    fn layernorm<KE>(
        &mut self,
        weight: TensorId,
        bias: TensorId,
        x: &[f32],
        out: &mut [f32],
        d: usize,
        eps: f32,
    ) -> Result<(), Error<S::Error, KE>> {
        for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let mean = sum(xi) / d as f32;
            for (o, &v) in oi.iter_mut().zip(xi) {
                *o = v - mean;
            }
            let var = dot(oi, oi) / d as f32;
            let rstd = 1.0 / libm::sqrtf(var + eps);
            for o in oi.iter_mut() {
                *o *= rstd;
            }
        }
        let n = out.len() / d;
        self.weights.apply_vector(weight, out, n, d, |v, g| v * g)?;
        self.weights.apply_vector(bias, out, n, d, |v, b| v + b)
    }

    /// `out[i] = input[i] · Wᵀ + b` for each of the `n` rows (row strides given).
    fn linear<KE>(
        &mut self,
        weight: TensorId,
        bias: TensorId,
        input: &[f32],
        in_stride: usize,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), Error<S::Error, KE>> {
        let n = input.len() / in_stride;
        let (rows, cols) = self.weights.layout.shape(weight.kind);
        let format = self.weights.layout.format(weight);
        let Self { weights, kernels, workers, carry, activations, q8, q8_scales } = self;
        let ops = prepare(&format, *activations, kernels, input, in_stride, n, cols, q8, q8_scales);
        let shape = RowShape::new(format, cols);
        let job = RowJob { ops, shape, n, out_stride, extras: None };
        let mut stream = weights.tensor(weight)?.in_rows(shape.bytes);
        let plan = RunPlan { rows, max_rows: rows, base_per_run: false };
        stream_rows(
            &mut stream,
            &mut **workers,
            &mut carry[..2 * n],
            &job,
            plan,
            out,
            |_, _, _| Ok(()),
        )?;
        stream.finish()?;
        self.weights.apply_vector(bias, out, n, out_stride, |v, b| v + b)
    }

    /// Streams the tied LM head: logit of token t at position i = wte[t] · h[i], fed to
    /// `sinks[i]` in id order (`h` holds one row of n_embd per sink). `masked` is scratch for
    /// `h` without its outlier channels (which must be left out of the activations' coding:
    /// they are multiplied exactly, from the row's f32 extras), and `logits` holds one run's
    /// logits, position after position, before they go to the sinks.
    fn logits<L: LogitSink, KE>(
        &mut self,
        h: &[f32],
        masked: &mut [f32],
        logits: &mut [f32],
        sinks: &mut [L],
    ) -> Result<(), Error<S::Error, KE>> {
        let id = TensorId::global(TensorKind::Wte);
        let layout = self.weights.layout;
        let (rows, cols) = layout.shape(TensorKind::Wte);
        let n = sinks.len();
        let format = layout.format(id);
        let outliers = &layout.quant().lm_head_outliers;
        masked.copy_from_slice(h);
        if format.extras > 0 {
            for row in masked.chunks_exact_mut(cols) {
                for &c in outliers {
                    row[usize::from(c)] = 0.0;
                }
            }
        }
        let Self { weights, kernels, workers, carry, activations, q8, q8_scales } = self;
        let ops = prepare(&format, *activations, kernels, masked, cols, n, cols, q8, q8_scales);
        let extras = (format.extras > 0).then_some(Extras { channels: outliers, h, cols });
        let max_rows = logits.len() / n;
        let shape = RowShape::new(format, cols);
        let job = RowJob { ops, shape, n, out_stride: max_rows, extras };
        let mut stream = weights.tensor(id)?.in_rows(shape.bytes);
        let plan = RunPlan { rows, max_rows, base_per_run: true };
        stream_rows(
            &mut stream,
            &mut **workers,
            &mut carry[..2 * n],
            &job,
            plan,
            logits,
            |first, finished, out| {
                for (i, sink) in sinks.iter_mut().enumerate() {
                    let run = &out[i * max_rows..i * max_rows + finished];
                    for (token, &logit) in (first as u32..).zip(run) {
                        if !logit.is_finite() {
                            return Err(Error::NonFinite { token });
                        }
                        sink.accept(token, logit);
                    }
                }
                Ok(())
            },
        )?;
        stream.finish()
    }
}

/// How a matrix row's bytes divide: the units it may be cut between, then its extras.
#[derive(Clone, Copy, Debug)]
struct RowShape {
    format: TensorFormat,
    cols: usize,
    /// Bytes of the row's weights.
    weights: usize,
    /// Bytes of the row, extras included.
    bytes: usize,
}

impl RowShape {
    fn new(format: TensorFormat, cols: usize) -> Self {
        Self { format, cols, weights: format.weight_bytes(cols), bytes: format.row_bytes(cols) }
    }

    /// Bytes of the segment starting at row offset `at` (a unit boundary): a unit, the
    /// single block an odd int8 row ends with, or the extras.
    fn segment(&self, at: usize) -> usize {
        if at >= self.weights {
            self.bytes - at
        } else {
            (self.weights - at).min(self.format.unit_bytes())
        }
    }

    /// The column at row offset `at` (a unit boundary).
    fn col(&self, at: usize) -> usize {
        if at >= self.weights {
            self.cols
        } else {
            at / self.format.unit_bytes() * self.format.unit_elems()
        }
    }

    /// How many of `ready` bytes from row offset `at` to take: up to a segment boundary,
    /// touching at most `max_rows` rows.
    fn cut(&self, at: usize, ready: usize, max_rows: usize) -> usize {
        let to_row_end = self.bytes - at;
        if ready < to_row_end {
            return self.cut_in_row(at, ready);
        }
        let whole = ((ready - to_row_end) / self.bytes).min(max_rows.saturating_sub(1));
        let taken = to_row_end + whole * self.bytes;
        if whole + 1 < max_rows { taken + self.cut_in_row(0, ready - taken) } else { taken }
    }

    /// Bytes up to the last unit boundary within `ready` bytes from `at`, short of the row's
    /// end (extras are never cut).
    fn cut_in_row(&self, at: usize, ready: usize) -> usize {
        let end = at + ready;
        if end >= self.weights {
            return self.weights.saturating_sub(at);
        }
        let unit = self.format.unit_bytes();
        (end / unit * unit).saturating_sub(at)
    }
}

/// A matrix's inputs as its kernel reads them.
#[derive(Clone, Copy)]
enum Operands<'a> {
    /// Rows of f32 activations `stride` apart, against f32, f16 or int4 weights.
    Float { x: &'a [f32], stride: usize, dot: crate::kernels::FloatDot },
    /// Rows of `cols` activations coded for int8 weights (`slots` values per block of 32, a
    /// scale per block), through `dot` (a piece of a row) or `rows` (whole rows).
    Int8 {
        q: &'a [i16],
        scales: &'a [f32],
        cols: usize,
        slots: usize,
        dot: crate::kernels::IntDot,
        rows: crate::kernels::IntRows,
    },
    /// Rows of `cols` 16-bit activations (a scale per 32) against int4 or q4m–q6m weights,
    /// through `dot`.
    Int4 { q: &'a [i16], scales: &'a [f32], cols: usize, dot: crate::kernels::Int16Dot },
}

/// The LM head's outlier channels, multiplied exactly from each row's f32 extras.
#[derive(Clone, Copy)]
struct Extras<'a> {
    channels: &'a [u16],
    /// The unmasked final layer-norm output, a row of `cols` per position.
    h: &'a [f32],
    cols: usize,
}

/// Everything a worker needs to compute rows of one matrix.
struct RowJob<'a> {
    ops: Operands<'a>,
    shape: RowShape,
    /// Positions (input rows).
    n: usize,
    /// Distance between positions in the output.
    out_stride: usize,
    extras: Option<Extras<'a>>,
}

impl RowJob<'_> {
    /// `lanes += w · input[i]` for the columns from row offset `at` that `w` (whole units)
    /// covers.
    fn dot(&self, i: usize, at: usize, w: &[u8], lanes: &mut Lanes) {
        let c0 = self.shape.col(at);
        let c1 = self.shape.col(at + w.len());
        match self.ops {
            Operands::Float { x, stride, dot } => {
                dot(w, &x[i * stride + c0..i * stride + c1], lanes)
            }
            Operands::Int8 { q, scales, cols, slots, dot, .. } => {
                let (b0, b1) = ((i * cols + c0) / Q_BLOCK, (i * cols + c1) / Q_BLOCK);
                dot(w, &q[b0 * slots..b1 * slots], &scales[b0..b1], c0 / Q_BLOCK, lanes);
            }
            Operands::Int4 { q, scales, cols, dot } => {
                let (a0, a1) = (i * cols + c0, i * cols + c1);
                dot(w, &q[a0..a1], &scales[a0 / Q_BLOCK..a1 / Q_BLOCK], &mut lanes[0]);
            }
        }
    }

    /// Lanes the row's kernel uses (the rest stay 0).
    fn lanes_used(&self) -> usize {
        match self.ops {
            Operands::Float { .. } => LANES,
            Operands::Int8 { .. } => crate::kernels::BLOCK_LANES,
            Operands::Int4 { .. } => 1,
        }
    }

    /// The dot product a row's lanes add up to.
    fn reduce(&self, lanes: &Lanes) -> f32 {
        match self.ops {
            Operands::Float { .. } => reduce(lanes),
            Operands::Int8 { .. } => reduce_blocks(lanes),
            Operands::Int4 { .. } => lanes[0],
        }
    }

    /// `value` plus position `i`'s outlier channels' products from a row's `extras` bytes.
    fn with_extras(&self, i: usize, value: f32, extras: &[u8]) -> f32 {
        let Some(Extras { channels, h, cols }) = self.extras else { return value };
        let h = &h[i * cols..(i + 1) * cols];
        let mut side = 0.0f32;
        for (e, &channel) in extras.chunks_exact(4).zip(channels) {
            side += f32::from_le_bytes([e[0], e[1], e[2], e[3]]) * h[usize::from(channel)];
        }
        value + side
    }

    /// The finished values of whole rows `w` (`out[r]` for row `r`) at position `i`.
    fn rows(&self, i: usize, w: &[u8], out: &mut [f32]) {
        let (row_bytes, weights) = (self.shape.bytes, self.shape.weights);
        match self.ops {
            Operands::Int8 { q, scales, cols, slots, rows, .. } => {
                let blocks = cols / Q_BLOCK;
                let a = &q[i * blocks * slots..(i + 1) * blocks * slots];
                let s = &scales[i * blocks..(i + 1) * blocks];
                rows(w, row_bytes, weights, a, s, out);
            }
            _ => {
                for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
                    let mut lanes = [0.0; LANES];
                    self.dot(i, 0, &row[..weights], &mut lanes);
                    *o = self.reduce(&lanes);
                }
            }
        }
        if self.extras.is_some() {
            for (row, o) in w.chunks_exact(row_bytes).zip(out.iter_mut()) {
                *o = self.with_extras(i, *o, &row[weights..]);
            }
        }
    }
}

/// Which rows a matrix streams and how its runs map to the output.
#[derive(Clone, Copy)]
struct RunPlan {
    rows: usize,
    /// Most rows one run touches.
    max_rows: usize,
    /// Whether the output holds one run (row `r` of a run starting at row `r0` goes to
    /// `out[r − r0]`, handed to `after` when the run is done) or the whole matrix (`out[r]`).
    base_per_run: bool,
}

/// Streams the rows of a matrix run by run, each run's rows split between `workers`, and
/// calls `after(first_row, rows, out)` when a run has finished `rows` rows (when
/// `base_per_run`: position `i`'s values are `out[i * out_stride..][..rows]`).
///
/// A run's pieces are its rows: the first may continue a row cut by the previous run (its
/// lanes come from one half of `carry`), the last may be cut (its lanes go to the other).
fn stream_rows<S: Storage, KE>(
    stream: &mut TensorStream<'_, S>,
    workers: &mut dyn Workers,
    carry: &mut [Lanes],
    job: &RowJob<'_>,
    plan: RunPlan,
    out: &mut [f32],
    mut after: impl FnMut(usize, usize, &[f32]) -> Result<(), Error<S::Error, KE>>,
) -> Result<(), Error<S::Error, KE>> {
    let (shape, n) = (job.shape, job.n);
    let (mut row, mut at, mut parity) = (0usize, 0usize, 0usize);
    while row < plan.rows {
        let max_rows = plan.max_rows.min(plan.rows - row);
        let run = stream.take_cut(shape.segment(at), |ready| shape.cut(at, ready, max_rows))?;
        let first = (shape.bytes - at).min(run.len());
        let pieces = 1 + (run.len() - first).div_ceil(shape.bytes);
        let cut_last = (at + run.len()) % shape.bytes != 0;
        let base = if plan.base_per_run { row } else { 0 };
        let (row0, at0, count) = (row, at, workers.count());
        let (carry_in, carry_out) = (parity * n, (1 - parity) * n);
        {
            let (lanes_d, out_d) =
                (Disjoint::new(carry.as_flattened_mut()), Disjoint::new(&mut *out));
            let used = job.lanes_used();
            let piece = |p: usize| {
                let (r, start, offset) = if p == 0 {
                    (row0, at0, 0)
                } else {
                    (row0 + p, 0, first + (p - 1) * shape.bytes)
                };
                let len = if p == 0 { first } else { (run.len() - offset).min(shape.bytes) };
                let bytes = &run[offset..offset + len];
                let (weights_end, end) = ((start + len).min(shape.weights), start + len);
                for i in 0..n {
                    let mut lanes = [0.0; LANES];
                    if start > 0 {
                        for (l, lane) in lanes[..used].iter_mut().enumerate() {
                            // SAFETY: the carried row is the run's first piece and the cut
                            // one its last; each piece belongs to one worker, and the two use
                            // different halves of `carry`.
                            *lane =
                                unsafe { lanes_d.get((carry_in + i) * LANES + l) }.unwrap_or(0.0);
                        }
                    }
                    if start < shape.weights {
                        job.dot(i, start, &bytes[..weights_end - start], &mut lanes);
                    }
                    if end == shape.bytes {
                        let value = job.reduce(&lanes);
                        let value = job.with_extras(i, value, &bytes[weights_end - start..]);
                        // SAFETY: output (row, position) is written by its row's worker only.
                        unsafe { out_d.set(i * job.out_stride + r - base, value) };
                    } else {
                        for (l, &lane) in lanes[..used].iter().enumerate() {
                            // SAFETY: as above; only the cut piece writes this half.
                            unsafe { lanes_d.set((carry_out + i) * LANES + l, lane) };
                        }
                    }
                }
            };
            // Whole rows (all but a continued first and a cut last piece) go to the rows
            // kernel together, per position.
            let whole = usize::from(at0 > 0)..pieces - usize::from(cut_last);
            let offset = |p: usize| if p == 0 { 0 } else { first + (p - 1) * shape.bytes };
            let rows = |batch: core::ops::Range<usize>| {
                let bytes =
                    &run[offset(batch.start)..offset(batch.start) + batch.len() * shape.bytes];
                for i in 0..n {
                    let at = i * job.out_stride + row0 + batch.start - base;
                    // SAFETY: these rows' outputs belong to this worker's share only.
                    if let Some(out) = unsafe { out_d.slice(at, batch.len()) } {
                        job.rows(i, bytes, out);
                    }
                }
            };
            workers.run(&|w| {
                let mine = share(pieces, count, w);
                let (b0, b1) = (mine.start.max(whole.start), mine.end.min(whole.end));
                if b0 < b1 {
                    for p in mine.start..b0 {
                        piece(p);
                    }
                    rows(b0..b1);
                    for p in b1..mine.end {
                        piece(p);
                    }
                } else {
                    for p in mine {
                        piece(p);
                    }
                }
            });
        }
        let finished = pieces - usize::from(cut_last);
        if plan.base_per_run {
            after(row0, finished, out)?;
        }
        at = (at + run.len()) % shape.bytes;
        row += finished;
        if cut_last {
            parity = 1 - parity;
        }
    }
    Ok(())
}

/// The matrix input as `format`'s kernel reads it: coded into the integer buffers for int8
/// weights (every path) and int4 weights (integer paths), else the f32 rows as they are.
#[allow(clippy::too_many_arguments)]
fn prepare<'a>(
    format: &TensorFormat,
    activations: Activations,
    kernels: &Kernels,
    x: &'a [f32],
    stride: usize,
    n: usize,
    cols: usize,
    q8: &'a mut [i16],
    q8_scales: &'a mut [f32],
) -> Operands<'a> {
    let code = match (format.dtype, activations) {
        (DType::F32, _) => return Operands::Float { x, stride, dot: kernels.dot_f32 },
        (DType::F16, _) => return Operands::Float { x, stride, dot: kernels.dot_f16 },
        (DType::Int4, Activations::F32) => return Operands::Float { x, stride, dot: dot_int4 },
        (DType::Q4M | DType::Q5M | DType::Q6M, Activations::F32) => {
            let bits = format.dtype.affine_bits().unwrap_or(4);
            let dot = affine::float_kernel(bits, format.block as usize);
            return Operands::Float { x, stride, dot };
        }
        _ => activations.code(),
    };
    let int8 = format.dtype == DType::Int8;
    let (blocks, slots) = (cols / Q_BLOCK, if int8 { block_slots(code) } else { Q_BLOCK });
    for i in 0..n {
        let q = &mut q8[i * blocks * slots..(i + 1) * blocks * slots];
        let s = &mut q8_scales[i * blocks..(i + 1) * blocks];
        let x = &x[i * stride..i * stride + cols];
        if int8 {
            code_for_int8(code, x, q, s);
        } else {
            quantize_activations(code, x, q, s);
        }
    }
    let (q, scales) = (&*q8, &*q8_scales);
    match (format.dtype, code) {
        (DType::Int8, ActivationCode::Split) => Operands::Int8 {
            q,
            scales,
            cols,
            slots,
            dot: kernels.dot_i8_split,
            rows: kernels.rows_i8_split,
        },
        (DType::Int8, ActivationCode::Int16) => Operands::Int8 {
            q,
            scales,
            cols,
            slots,
            dot: kernels.dot_i8_i16,
            rows: kernels.rows_i8_i16,
        },
        (DType::Int8, ActivationCode::Int8) => Operands::Int8 {
            q,
            scales,
            cols,
            slots,
            dot: kernels.dot_i8_i8,
            rows: kernels.rows_i8_i8,
        },
        (DType::Int4, _) => Operands::Int4 { q, scales, cols, dot: dot_q4 },
        (dtype, _) => {
            let bits = dtype.affine_bits().unwrap_or(4);
            Operands::Int4 { q, scales, cols, dot: affine::int_kernel(bits, format.block as usize) }
        }
    }
}

/// Decodes a run of whole units in `format` into `out`.
fn decode(format: &TensorFormat, w: &[u8], out: &mut [f32]) {
    match format.dtype {
        DType::F32 => decode_f32(w, out),
        DType::F16 => decode_f16(w, out),
        DType::Int8 => decode_int8(w, out),
        DType::Int4 => decode_int4(w, out),
        DType::Q4M | DType::Q5M | DType::Q6M => {
            affine::decoder(format.dtype.affine_bits().unwrap_or(4), format.block as usize)(w, out)
        }
    }
}

/// `x[i] += y[i]` for each row (`x` rows of `d`, `y` rows of stride `y_stride`).
fn add_rows(x: &mut [f32], d: usize, y: &[f32], y_stride: usize) {
    for (xi, yi) in x.chunks_exact_mut(d).zip(y.chunks(y_stride)) {
        for (a, b) in xi.iter_mut().zip(yi) {
            *a += *b;
        }
    }
}

/// GELU in place, the elements split between `workers` (element by element: the same bits
/// for any split).
fn gelu_shared(workers: &mut dyn Workers, x: &mut [f32]) {
    let (len, count) = (x.len(), workers.count());
    let shared = Disjoint::new(x);
    workers.run(&|w| {
        let range = share(len, count, w);
        // SAFETY: the workers' ranges are disjoint (`share`).
        if let Some(part) = unsafe { shared.slice(range.start, range.len()) } {
            gelu(part);
        }
    });
}

/// Causal multi-head attention of the `n` queries in `qkv` (rows of stride 4·n_embd) at
/// positions `pos0..pos0 + n` over every cached position up to each query's own.
///
/// Each cached key/value row is loaded once and applied to all queries that may see it; the
/// softmax runs online (running max and sum per query and head), so no scores buffer of
/// context length is needed.
#[allow(clippy::too_many_arguments)]
fn attention<K: KvCache, SE>(
    cfg: &ModelConfig,
    kv: &mut K,
    layer: usize,
    pos0: usize,
    qkv: &[f32],
    out: &mut [f32],
    stats: &mut [f32],
    kv_row: &mut [f32],
) -> Result<(), Error<SE, K::Error>> {
    let (d, n_head, hs) = (cfg.embd(), cfg.n_head as usize, cfg.head_size());
    let n = out.len() / d;
    let sqrt_hs = libm::sqrtf(hs as f32);
    out.fill(0.0);
    for st in stats[..2 * n * n_head].chunks_exact_mut(2) {
        st[0] = f32::NEG_INFINITY;
        st[1] = 0.0;
    }
    let (k_row, v_row) = kv_row.split_at_mut(d);
    for t in 0..pos0 + n {
        kv.load(layer, t, k_row, v_row).map_err(|source| Error::Kv { source, layer, pos: t })?;
        for i in t.saturating_sub(pos0)..n {
            let q = &qkv[i * 4 * d..i * 4 * d + d];
            for h in 0..n_head {
                let head = h * hs..(h + 1) * hs;
                let score = dot(&q[head.clone()], &k_row[head.clone()]) / sqrt_hs;
                let st = &mut stats[2 * (i * n_head + h)..2 * (i * n_head + h) + 2];
                let o = &mut out[i * d + h * hs..i * d + (h + 1) * hs];
                let v = &v_row[head];
                if score > st[0] {
                    let c = libm::expf(st[0] - score);
                    st[0] = score;
                    st[1] = st[1] * c + 1.0;
                    for (a, &b) in o.iter_mut().zip(v) {
                        *a = *a * c + b;
                    }
                } else {
                    let p = libm::expf(score - st[0]);
                    st[1] += p;
                    for (a, &b) in o.iter_mut().zip(v) {
                        *a += p * b;
                    }
                }
            }
        }
    }
    for (i, oi) in out.chunks_exact_mut(d).enumerate() {
        for (h, oh) in oi.chunks_exact_mut(hs).enumerate() {
            let total = stats[2 * (i * n_head + h) + 1];
            for a in oh.iter_mut() {
                *a /= total;
            }
        }
    }
    Ok(())
}

//! The GPT-2 forward pass over streamed weights (picoGPT's `gpt2()`, one chunk at a time).
//!
//! A call handles up to `batch` positions per pass over the weights: every weight chunk that
//! is read is applied to all of them before the next one is read.

use crate::config::ModelConfig;
use crate::error::Error;
use crate::format::{DType, TensorFormat, TensorId, TensorKind};
use crate::kernels::{
    LANES, Lanes, Q8_BLOCK, decode_f16, decode_f32, decode_int4, decode_int8, dot, dot_f16,
    dot_f32, dot_int4, dot_int8, dot_q4, dot_q8, f16_to_f32, quantize_q8, reduce, sum,
};
use crate::kv::KvCache;
use crate::layout::Layout;
use crate::logits::LogitSink;
use crate::model::{Model, table_crc};
use crate::storage::Storage;
use crate::stream::{Source, TensorStream};
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
        let batch = ws.batch();
        for (i, group) in tokens.chunks(batch).enumerate() {
            self.pass(ws, kv, group, start + i * batch)?;
        }
        self.lm_head(ws, (tokens.len() - 1) % batch, sink)
    }

    /// The weight-reading context of a pass, over the workspace's scratch buffers.
    fn ctx<'a>(&'a mut self, scratch: &'a mut Scratch<'_>) -> Ctx<'a, S> {
        Ctx {
            weights: Weights {
                src: &mut self.src,
                layout: &self.layout,
                verify: self.verify,
                chunk: scratch.chunk,
                chunk_bytes: scratch.chunk_bytes,
            },
            lanes: scratch.lanes,
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
    ) -> Result<(), Error<S::Error, K::Error>> {
        use TensorKind::*;
        let cfg = *self.layout.config();
        let (d, n) = (cfg.embd(), tokens.len());
        let ActBuffers { x, xn, big, stats, kv_row } = &mut ws.act;
        let (x, xn, big) = (&mut x[..n * d], &mut xn[..n * d], &mut big[..n * 4 * d]);
        let mut ctx = self.ctx(&mut ws.scratch);
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
            gelu(big);
            ctx.linear(id(MlpCProjWeight), id(MlpCProjBias), big, 4 * d, xn, d)?;
            add_rows(x, d, xn, d);
        }
        Ok(())
    }

    /// Final layer norm of position `last` and the tied LM head, streamed over `wte`.
    fn lm_head<L: LogitSink, KE>(
        &mut self,
        ws: &mut Workspace<'_>,
        last: usize,
        sink: &mut L,
    ) -> Result<(), Error<S::Error, KE>> {
        let cfg = *self.layout.config();
        let d = cfg.embd();
        let ActBuffers { x, xn, big, .. } = &mut ws.act;
        let mut ctx = self.ctx(&mut ws.scratch);
        let h = &mut xn[..d];
        let (ln_w, ln_b) = (TensorKind::LnFWeight, TensorKind::LnFBias);
        let (ln_w, ln_b) = (TensorId::global(ln_w), TensorId::global(ln_b));
        // [n_embd] -> [n_embd]
        ctx.layernorm(ln_w, ln_b, &x[last * d..(last + 1) * d], h, d, cfg.layer_norm_epsilon)?;
        // [n_embd] -> [n_vocab], one logit at a time
        ctx.logits(h, &mut big[..d], sink)
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

/// The weight-reading steps of a pass: weights plus the per-row partial sums and the
/// quantized matrix inputs of the int8 path.
struct Ctx<'a, S> {
    weights: Weights<'a, S>,
    lanes: &'a mut [Lanes],
    activations: Activations,
    q8: &'a mut [i16],
    q8_scales: &'a mut [f32],
}

/// The inputs of a matrix product, as its kernel reads them.
enum Input<'a> {
    /// Rows of f32, `stride` apart.
    F32 { x: &'a [f32], stride: usize },
    /// Rows of `cols` int8 values (as i16) with a scale per 32.
    Q8 { q: &'a [i16], scales: &'a [f32], cols: usize },
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
        let cols = self.layout.shape(kind).1;
        let row_bytes = format.row_bytes(cols);
        let offset = self.layout.offset(id) + (row * row_bytes) as u64;
        let outliers = &self.layout.quant().lm_head_outliers;
        let mut stream = TensorStream::new(
            &mut *self.src,
            &mut *self.chunk,
            self.chunk_bytes,
            id,
            offset,
            row_bytes as u64,
            None,
        );
        let (unit, unit_elems) = (format.block_bytes(), format.block as usize);
        let mut col = 0;
        while col < cols {
            let run = stream.take(unit, (cols - col) / unit_elems)?;
            let k = run.len() / unit * unit_elems;
            decode(&format, run, &mut out[col..col + k]);
            col += k;
        }
        if format.extras > 0 {
            let extras = stream.take(2 * format.extras as usize, 1)?;
            for (e, &channel) in extras.chunks_exact(2).zip(outliers) {
                out[usize::from(channel)] = f16_to_f32(u16::from_le_bytes([e[0], e[1]]));
            }
        }
        Ok(())
    }

    /// Calls `f(index, value)` for each element of an f32 vector tensor.
    fn for_each_value<KE>(
        &mut self,
        id: TensorId,
        mut f: impl FnMut(usize, f32),
    ) -> Result<(), Error<S::Error, KE>> {
        let cols = self.layout.shape(id.kind).1;
        let mut stream = self.tensor(id)?;
        let mut index = 0;
        while index < cols {
            let run = stream.take(4, cols - index)?;
            for b in run.chunks_exact(4) {
                f(index, f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                index += 1;
            }
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
        self.weights.for_each_value(weight, |c, g| {
            for i in 0..n {
                out[i * d + c] *= g;
            }
        })?;
        self.weights.for_each_value(bias, |c, b| {
            for i in 0..n {
                out[i * d + c] += b;
            }
        })
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
        let Self { weights, lanes, activations, q8, q8_scales } = self;
        let input = prepare(&format, *activations, input, in_stride, n, cols, q8, q8_scales);
        let lanes = &mut lanes[..n];
        let mut stream = weights.tensor(weight)?;
        for r in 0..rows {
            row_dots(&mut stream, &format, cols, &input, lanes)?;
            for (i, acc) in lanes.iter().enumerate() {
                out[i * out_stride + r] = reduce(acc);
            }
        }
        stream.finish()?;
        self.weights.for_each_value(bias, |c, b| {
            for i in 0..n {
                out[i * out_stride + c] += b;
            }
        })
    }

    /// Streams the tied LM head: logit of token t = wte[t] · h, fed to `sink` in id order.
    /// `masked` is scratch for `h` without its outlier channels (which the int8 path must
    /// leave out of the activation scales: they are multiplied exactly, from the row's f16
    /// extras).
    fn logits<L: LogitSink, KE>(
        &mut self,
        h: &[f32],
        masked: &mut [f32],
        sink: &mut L,
    ) -> Result<(), Error<S::Error, KE>> {
        let id = TensorId::global(TensorKind::Wte);
        let layout = self.weights.layout;
        let (rows, cols) = layout.shape(TensorKind::Wte);
        let format = layout.format(id);
        let extras = 2 * format.extras as usize;
        let outliers = &layout.quant().lm_head_outliers;
        masked.copy_from_slice(h);
        if extras > 0 {
            for &c in outliers {
                masked[usize::from(c)] = 0.0;
            }
        }
        let Self { weights, lanes, activations, q8, q8_scales } = self;
        let input = prepare(&format, *activations, masked, cols, 1, cols, q8, q8_scales);
        let acc = &mut lanes[..1];
        let mut stream = weights.tensor(id)?;
        for token in 0..rows as u32 {
            row_dots(&mut stream, &format, cols, &input, acc)?;
            let mut logit = reduce(&acc[0]);
            if extras > 0 {
                let run = stream.take(extras, 1)?;
                let mut side = 0.0f32;
                for (e, &channel) in run.chunks_exact(2).zip(outliers) {
                    side += f16_to_f32(u16::from_le_bytes([e[0], e[1]])) * h[usize::from(channel)];
                }
                logit += side;
            }
            if !logit.is_finite() {
                return Err(Error::NonFinite { token });
            }
            sink.accept(token, logit);
        }
        stream.finish()
    }
}

/// The matrix input as the kernel for `format` reads it: quantized into the int8 buffers
/// on the int8 path, else the f32 rows as they are.
#[allow(clippy::too_many_arguments)]
fn prepare<'a>(
    format: &TensorFormat,
    activations: Activations,
    x: &'a [f32],
    stride: usize,
    n: usize,
    cols: usize,
    q8: &'a mut [i16],
    q8_scales: &'a mut [f32],
) -> Input<'a> {
    let integer = matches!(format.dtype, DType::Int8 | DType::Int4);
    if !integer || activations != Activations::Int8 {
        return Input::F32 { x, stride };
    }
    for i in 0..n {
        let (q, s) = (&mut q8[i * cols..(i + 1) * cols], &mut q8_scales[i * cols / Q8_BLOCK..]);
        quantize_q8(&x[i * stride..i * stride + cols], q, s);
    }
    Input::Q8 { q: q8, scales: q8_scales, cols }
}

/// One weight row against each input position: its partial sums land in `lanes`.
fn row_dots<S: Storage, KE>(
    stream: &mut TensorStream<'_, S>,
    format: &TensorFormat,
    cols: usize,
    input: &Input<'_>,
    lanes: &mut [Lanes],
) -> Result<(), Error<S::Error, KE>> {
    lanes.fill([0.0; LANES]);
    let (unit, unit_elems) = (format.block_bytes(), format.block as usize);
    let mut col = 0;
    while col < cols {
        let run = stream.take(unit, (cols - col) / unit_elems)?;
        let k = run.len() / unit * unit_elems;
        for (i, acc) in lanes.iter_mut().enumerate() {
            match *input {
                Input::F32 { x, stride } => {
                    dot_run(format, run, &x[i * stride + col..i * stride + col + k], acc);
                }
                Input::Q8 { q, scales, cols } => {
                    let at = i * cols + col;
                    let (q, s) = (&q[at..at + k], &scales[at / Q8_BLOCK..(at + k) / Q8_BLOCK]);
                    if format.dtype == DType::Int4 {
                        dot_q4(run, q, s, &mut acc[0]);
                    } else {
                        dot_q8(run, format.block as usize, q, s, &mut acc[0]);
                    }
                }
            }
        }
        col += k;
    }
    Ok(())
}

/// `lanes += w · x` for a run of whole blocks in `format`.
fn dot_run(format: &TensorFormat, w: &[u8], x: &[f32], lanes: &mut Lanes) {
    match format.dtype {
        DType::F32 => dot_f32(w, x, lanes),
        DType::F16 => dot_f16(w, x, lanes),
        DType::Int8 => dot_int8(w, format.block as usize, x, lanes),
        DType::Int4 => dot_int4(w, x, lanes),
    }
}

/// Decodes a run of whole blocks in `format` into `out`.
fn decode(format: &TensorFormat, w: &[u8], out: &mut [f32]) {
    match format.dtype {
        DType::F32 => decode_f32(w, out),
        DType::F16 => decode_f16(w, out),
        DType::Int8 => decode_int8(w, format.block as usize, out),
        DType::Int4 => decode_int4(w, out),
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

/// GPT-2's tanh approximation of GELU, in place.
fn gelu(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + libm::tanhf(SQRT_2_OVER_PI * (u + 0.044_715 * u * u * u)));
    }
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

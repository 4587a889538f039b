//! The forward pass's working memory, carved from one caller-provided buffer.

use crate::error::Error;
use crate::kernels::int8::{ActivationCode, Q_BLOCK, block_slots};
use crate::kernels::{LANES, Lanes};
use crate::layout::Layout;

/// How the activations meet int8 (and int4) weights; f32 and f16 weights always multiply
/// f32 activations in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activations {
    /// The exact path. Against int8 weights each matrix input is coded per block of 32 as
    /// 31-bit fixed point (two 16-bit halves) and multiplied in exact integer sums, which is
    /// at least as accurate as f32 arithmetic; int4 weights are dequantized and multiplied in
    /// f32.
    F32,
    /// Activations rounded to 16-bit integers per block of 32, one integer pass (`SMLAD` on a
    /// Cortex-M33): the exact path's quality within what `eval` can measure, at the cost of
    /// the int8 path on the boards.
    Int16,
    /// Activations rounded to 8-bit integers per block of 32 (W8A8, as llama.cpp's q8_0): a
    /// quarter fewer instructions than [`Self::Int16`] on a Cortex-M33 (three per four
    /// weights, not four) and a measurable loss of quality.
    Int8,
}

impl Activations {
    /// Every path, exact first.
    pub const ALL: [Self; 3] = [Self::F32, Self::Int16, Self::Int8];

    /// `f32`, `int16` or `int8`: the name on command lines and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int16 => "int16",
            Self::Int8 => "int8",
        }
    }

    /// The path called `name` (see [`Self::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// How the inputs of int8 matrices are coded on this path.
    pub const fn code(self) -> ActivationCode {
        match self {
            Self::F32 => ActivationCode::Split,
            Self::Int16 => ActivationCode::Int16,
            Self::Int8 => ActivationCode::Int8,
        }
    }

    /// i16 slots per block of 32 matrix inputs this path stores for `layout`'s matrices (0
    /// when none of them is integer-coded on it).
    fn slots(self, layout: &Layout) -> usize {
        let (int8, int4) = layout.integer_matrices();
        match self {
            Self::F32 if int8 => block_slots(ActivationCode::Split),
            Self::Int16 | Self::Int8 if int8 => block_slots(self.code()),
            Self::Int16 | Self::Int8 if int4 => Q_BLOCK,
            _ => 0,
        }
    }
}

/// How much work the caller's memory must support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WorkspaceSpec {
    /// Positions processed per pass over the weights (prompt tokens share one pass).
    pub batch: usize,
    /// Bytes per storage read; a multiple of 512 keeps SD reads sector-aligned.
    pub chunk_bytes: usize,
    /// Kernel path for int8 weights.
    pub activations: Activations,
}

impl WorkspaceSpec {
    /// `batch` positions per pass, `chunk_bytes` per read, exact f32 activations.
    pub const fn new(batch: usize, chunk_bytes: usize) -> Self {
        Self { batch, chunk_bytes, activations: Activations::F32 }
    }

    /// The same spec with another activation path.
    pub const fn with_activations(self, activations: Activations) -> Self {
        Self { activations, ..self }
    }
}

/// The dimensions a workspace was carved for, to check it against a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dims {
    n_embd: usize,
    n_head: usize,
    batch: usize,
    chunk: usize,
    spill: usize,
    activations: Activations,
    /// i16 slots per block of 32 coded matrix inputs.
    slots: usize,
}

impl Dims {
    fn of(layout: &Layout, spec: &WorkspaceSpec) -> Self {
        let config = layout.config();
        Self {
            n_embd: config.embd(),
            n_head: config.n_head as usize,
            batch: spec.batch,
            chunk: spec.chunk_bytes,
            spill: layout.max_unit_bytes(),
            activations: spec.activations,
            slots: spec.activations.slots(layout),
        }
    }

    /// f32 words of each region, in carving order.
    fn regions(&self) -> [usize; 9] {
        let (b, d) = (self.batch, self.n_embd);
        let coded = usize::from(self.slots > 0);
        [
            b * d,
            b * d,
            b * 4 * d,
            b * 2 * self.n_head,
            2 * d,
            2 * b * LANES,
            self.slots * b * (4 * d / Q_BLOCK) / 2,
            coded * b * 4 * d / Q_BLOCK,
            (self.chunk + self.spill).div_ceil(4),
        ]
    }

    fn words(&self) -> usize {
        self.regions().iter().sum()
    }
}

/// Buffers of one forward pass.
pub struct Workspace<'a> {
    dims: Dims,
    pub(crate) act: ActBuffers<'a>,
    pub(crate) scratch: Scratch<'a>,
}

/// Activation buffers; shapes are (batch, …).
pub(crate) struct ActBuffers<'a> {
    /// (batch, n_embd) residual stream.
    pub(crate) x: &'a mut [f32],
    /// (batch, n_embd) layer-norm output, then attention output, then MLP output.
    pub(crate) xn: &'a mut [f32],
    /// (batch, 4·n_embd) q|k|v, then projections, then the MLP hidden layer.
    pub(crate) big: &'a mut [f32],
    /// (batch, n_head, 2) running max and sum of the attention softmax.
    pub(crate) stats: &'a mut [f32],
    /// (2, n_embd) one cached key row and value row.
    pub(crate) kv_row: &'a mut [f32],
}

/// Buffers the weight-reading steps use.
pub(crate) struct Scratch<'a> {
    /// (2, batch) partial sums of the rows a chunk cuts: the one continued, the one begun.
    pub(crate) lanes: &'a mut [Lanes],
    /// Kernel path for int8 weights.
    pub(crate) activations: Activations,
    /// (batch, 4·n_embd / 32, slots) the current matrix input coded for the integer kernels.
    pub(crate) q8: &'a mut [i16],
    /// (batch, 4·n_embd / 32) its per-block scales.
    pub(crate) q8_scales: &'a mut [f32],
    /// (chunk + largest block) weight bytes.
    pub(crate) chunk: &'a mut [u8],
    /// Bytes per storage read.
    pub(crate) chunk_bytes: usize,
}

impl<'a> Workspace<'a> {
    /// f32 words a workspace for this layout and spec needs.
    pub fn words(layout: &Layout, spec: &WorkspaceSpec) -> usize {
        Dims::of(layout, spec).words()
    }

    /// Bytes a workspace for this layout and spec needs: the forward pass's whole working
    /// memory apart from the KV cache.
    pub fn bytes(layout: &Layout, spec: &WorkspaceSpec) -> usize {
        4 * Self::words(layout, spec)
    }

    /// Carves a workspace out of `mem`, which must hold [`Self::words`] words.
    pub fn new<SE, KE>(
        layout: &Layout,
        spec: &WorkspaceSpec,
        mem: &'a mut [f32],
    ) -> Result<Self, Error<SE, KE>> {
        let dims = Dims::of(layout, spec);
        if spec.batch == 0 {
            return Err(Error::BufferTooSmall { what: "workspace batch", needed: 1, given: 0 });
        }
        if dims.chunk < dims.spill {
            let (needed, given) = (dims.spill, dims.chunk);
            return Err(Error::BufferTooSmall { what: "chunk buffer", needed, given });
        }
        let needed = dims.words();
        if mem.len() < needed {
            let (needed, given) = (4 * needed, 4 * mem.len());
            return Err(Error::BufferTooSmall { what: "workspace", needed, given });
        }
        let [x, xn, big, stats, kv_row, lanes, q8, q8_scales, chunk] = dims.regions();
        let (x_buf, rest) = mem.split_at_mut(x);
        let (xn_buf, rest) = rest.split_at_mut(xn);
        let (big_buf, rest) = rest.split_at_mut(big);
        let (stats_buf, rest) = rest.split_at_mut(stats);
        let (kv_buf, rest) = rest.split_at_mut(kv_row);
        let (lanes_buf, rest) = rest.split_at_mut(lanes);
        let (q8_buf, rest) = rest.split_at_mut(q8);
        let (q8_scales_buf, rest) = rest.split_at_mut(q8_scales);
        let chunk_words = &mut rest[..chunk];
        let chunk_bytes = dims.chunk + dims.spill;
        Ok(Self {
            dims,
            act: ActBuffers {
                x: x_buf,
                xn: xn_buf,
                big: big_buf,
                stats: stats_buf,
                kv_row: kv_buf,
            },
            scratch: Scratch {
                lanes: lanes_buf.as_chunks_mut::<LANES>().0,
                activations: spec.activations,
                q8: bytemuck::cast_slice_mut::<f32, i16>(q8_buf),
                q8_scales: q8_scales_buf,
                chunk: &mut bytemuck::cast_slice_mut::<f32, u8>(chunk_words)[..chunk_bytes],
                chunk_bytes: dims.chunk,
            },
        })
    }

    /// Positions per weight pass.
    pub fn batch(&self) -> usize {
        self.dims.batch
    }

    /// Whether this workspace was carved for `layout` (with any batch and chunk size).
    pub(crate) fn fits(&self, layout: &Layout) -> bool {
        let config = layout.config();
        self.dims.n_embd == config.embd()
            && self.dims.n_head == config.n_head as usize
            && self.dims.spill >= layout.max_unit_bytes()
            && self.dims.slots >= self.dims.activations.slots(layout)
    }
}

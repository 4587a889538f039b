//! GPT-2 weights as plain `f32` vectors, laid out exactly like the Hugging Face checkpoint.
//!
//! Every matrix is row-major with the shape the checkpoint gives it; the projection matrices
//! are HF `Conv1D` weights, `[in, out]`, applied as `x @ W + b`.

use picogpt_core::{ConfigError, ModelConfig};
use thiserror::Error;

/// Names of a block's tensors inside `h.{i}.`, in the order Hugging Face stores them.
pub const LAYER_TENSOR_NAMES: [&str; 12] = [
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
];

/// One transformer block (`h.{i}`).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    /// `ln_1.weight` `[n_embd]`: gain of the layer norm in front of attention.
    pub ln_1_weight: Vec<f32>,
    /// `ln_1.bias` `[n_embd]`.
    pub ln_1_bias: Vec<f32>,
    /// `attn.c_attn.weight` `[n_embd, 3*n_embd]`: query, key and value projections side by side.
    pub c_attn_weight: Vec<f32>,
    /// `attn.c_attn.bias` `[3*n_embd]`.
    pub c_attn_bias: Vec<f32>,
    /// `attn.c_proj.weight` `[n_embd, n_embd]`: attention output projection.
    pub attn_c_proj_weight: Vec<f32>,
    /// `attn.c_proj.bias` `[n_embd]`.
    pub attn_c_proj_bias: Vec<f32>,
    /// `ln_2.weight` `[n_embd]`: gain of the layer norm in front of the MLP.
    pub ln_2_weight: Vec<f32>,
    /// `ln_2.bias` `[n_embd]`.
    pub ln_2_bias: Vec<f32>,
    /// `mlp.c_fc.weight` `[n_embd, 4*n_embd]`: MLP up projection.
    pub c_fc_weight: Vec<f32>,
    /// `mlp.c_fc.bias` `[4*n_embd]`.
    pub c_fc_bias: Vec<f32>,
    /// `mlp.c_proj.weight` `[4*n_embd, n_embd]`: MLP down projection.
    pub mlp_c_proj_weight: Vec<f32>,
    /// `mlp.c_proj.bias` `[n_embd]`.
    pub mlp_c_proj_bias: Vec<f32>,
}

/// A whole GPT-2 with a tied LM head (`lm_head.weight` is `wte`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Weights {
    /// The shape every tensor below follows.
    pub config: ModelConfig,
    /// `wte.weight` `[vocab_size, n_embd]`: token embeddings, also the LM head.
    pub wte: Vec<f32>,
    /// `wpe.weight` `[n_ctx, n_embd]`: position embeddings.
    pub wpe: Vec<f32>,
    /// `h.0` … `h.{n_layer-1}`.
    pub layers: Vec<LayerWeights>,
    /// `ln_f.weight` `[n_embd]`: gain of the final layer norm.
    pub ln_f_weight: Vec<f32>,
    /// `ln_f.bias` `[n_embd]`.
    pub ln_f_bias: Vec<f32>,
}

/// A tensor's checkpoint name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Hugging Face name without the optional `transformer.` prefix, e.g. `h.3.ln_1.weight`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Number of elements the shape holds.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor of a [`Gpt2Weights`], borrowed, with its name and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef<'a> {
    /// Name and shape.
    pub spec: TensorSpec,
    /// The values, row-major.
    pub data: &'a [f32],
}

/// Why a [`Gpt2Weights`] is inconsistent with its own config.
#[derive(Debug, Error, PartialEq)]
pub enum WeightsError {
    /// The config itself is unusable.
    #[error("invalid model config: {0}")]
    Config(ConfigError),
    /// `layers.len()` differs from `config.n_layer`.
    #[error("expected {expected} layers (n_layer), found {found}")]
    LayerCount {
        /// `n_layer`.
        expected: usize,
        /// `layers.len()`.
        found: usize,
    },
    /// A tensor holds the wrong number of values for its shape.
    #[error("tensor {tensor}: expected {expected} values for shape {shape:?}, found {found}")]
    Length {
        /// Tensor name.
        tensor: String,
        /// Shape the config implies.
        shape: Vec<usize>,
        /// Element count of that shape.
        expected: usize,
        /// Values present.
        found: usize,
    },
}

/// Shapes of a block's tensors, in [`LAYER_TENSOR_NAMES`] order.
pub fn layer_tensor_shapes(config: &ModelConfig) -> [Vec<usize>; 12] {
    let d = config.embd();
    let h = config.hidden();
    [
        vec![d],
        vec![d],
        vec![d, 3 * d],
        vec![3 * d],
        vec![d, d],
        vec![d],
        vec![d],
        vec![d],
        vec![d, h],
        vec![h],
        vec![h, d],
        vec![d],
    ]
}

/// Every tensor of a model with this config, in canonical order: `wte`, `wpe`, each block's
/// tensors in [`LAYER_TENSOR_NAMES`] order, `ln_f.weight`, `ln_f.bias`.
pub fn tensor_specs(config: &ModelConfig) -> Vec<TensorSpec> {
    specs_for_layers(config, config.n_layer as usize)
}

fn specs_for_layers(config: &ModelConfig, n_layer: usize) -> Vec<TensorSpec> {
    let d = config.embd();
    let spec = |name: String, shape: Vec<usize>| TensorSpec { name, shape };
    let mut specs = vec![
        spec("wte.weight".into(), vec![config.vocab_size as usize, d]),
        spec("wpe.weight".into(), vec![config.n_ctx as usize, d]),
    ];
    let shapes = layer_tensor_shapes(config);
    for i in 0..n_layer {
        for (name, shape) in LAYER_TENSOR_NAMES.iter().zip(&shapes) {
            specs.push(spec(format!("h.{i}.{name}"), shape.clone()));
        }
    }
    specs.push(spec("ln_f.weight".into(), vec![d]));
    specs.push(spec("ln_f.bias".into(), vec![d]));
    specs
}

impl LayerWeights {
    /// A block whose every tensor is zero, sized for `config`.
    pub fn zeros(config: &ModelConfig) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = layer_tensor_shapes(config).map(zeros_for);
        Self {
            ln_1_weight: a,
            ln_1_bias: b,
            c_attn_weight: c,
            c_attn_bias: d,
            attn_c_proj_weight: e,
            attn_c_proj_bias: f,
            ln_2_weight: g,
            ln_2_bias: h,
            c_fc_weight: i,
            c_fc_bias: j,
            mlp_c_proj_weight: k,
            mlp_c_proj_bias: l,
        }
    }

    /// The tensors in [`LAYER_TENSOR_NAMES`] order.
    fn fields(&self) -> [&Vec<f32>; 12] {
        [
            &self.ln_1_weight,
            &self.ln_1_bias,
            &self.c_attn_weight,
            &self.c_attn_bias,
            &self.attn_c_proj_weight,
            &self.attn_c_proj_bias,
            &self.ln_2_weight,
            &self.ln_2_bias,
            &self.c_fc_weight,
            &self.c_fc_bias,
            &self.mlp_c_proj_weight,
            &self.mlp_c_proj_bias,
        ]
    }

    /// The tensors in [`LAYER_TENSOR_NAMES`] order, mutably.
    fn fields_mut(&mut self) -> [&mut Vec<f32>; 12] {
        [
            &mut self.ln_1_weight,
            &mut self.ln_1_bias,
            &mut self.c_attn_weight,
            &mut self.c_attn_bias,
            &mut self.attn_c_proj_weight,
            &mut self.attn_c_proj_bias,
            &mut self.ln_2_weight,
            &mut self.ln_2_bias,
            &mut self.c_fc_weight,
            &mut self.c_fc_bias,
            &mut self.mlp_c_proj_weight,
            &mut self.mlp_c_proj_bias,
        ]
    }
}

fn zeros_for(shape: Vec<usize>) -> Vec<f32> {
    vec![0.0; shape.iter().product()]
}

impl Gpt2Weights {
    /// A model whose every tensor is zero, sized for `config`; loaders and generators fill it
    /// through [`Gpt2Weights::tensors_mut`].
    pub fn zeros(config: ModelConfig) -> Self {
        let d = config.embd();
        Self {
            config,
            wte: vec![0.0; config.vocab_size as usize * d],
            wpe: vec![0.0; config.n_ctx as usize * d],
            layers: (0..config.n_layer).map(|_| LayerWeights::zeros(&config)).collect(),
            ln_f_weight: vec![0.0; d],
            ln_f_bias: vec![0.0; d],
        }
    }

    /// Every tensor with its name and the shape the config gives it, in [`tensor_specs`]
    /// order; names cover the layers actually present.
    pub fn tensors(&self) -> Vec<TensorRef<'_>> {
        let mut data: Vec<&Vec<f32>> = vec![&self.wte, &self.wpe];
        data.extend(self.layers.iter().flat_map(LayerWeights::fields));
        data.extend([&self.ln_f_weight, &self.ln_f_bias]);
        specs_for_layers(&self.config, self.layers.len())
            .into_iter()
            .zip(data)
            .map(|(spec, data)| TensorRef { spec, data })
            .collect()
    }

    /// Like [`Gpt2Weights::tensors`], but handing out the vectors themselves so they can be
    /// filled or replaced.
    pub fn tensors_mut(&mut self) -> Vec<(TensorSpec, &mut Vec<f32>)> {
        let specs = specs_for_layers(&self.config, self.layers.len());
        let mut data: Vec<&mut Vec<f32>> = vec![&mut self.wte, &mut self.wpe];
        data.extend(self.layers.iter_mut().flat_map(LayerWeights::fields_mut));
        data.extend([&mut self.ln_f_weight, &mut self.ln_f_bias]);
        specs.into_iter().zip(data).collect()
    }

    /// Checks the config and that every tensor holds exactly the values its shape implies, so
    /// code indexing the vectors cannot go out of bounds.
    pub fn validate(&self) -> Result<(), WeightsError> {
        self.config.validate().map_err(WeightsError::Config)?;
        let expected = self.config.n_layer as usize;
        if self.layers.len() != expected {
            return Err(WeightsError::LayerCount { expected, found: self.layers.len() });
        }
        for t in self.tensors() {
            if t.data.len() != t.spec.len() {
                return Err(WeightsError::Length {
                    expected: t.spec.len(),
                    found: t.data.len(),
                    tensor: t.spec.name,
                    shape: t.spec.shape,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_ctx: 32,
            vocab_size: 96,
            layer_norm_epsilon: 1e-5,
        }
    }

    #[test]
    fn canonical_order_and_shapes() {
        let w = Gpt2Weights::zeros(tiny());
        let names: Vec<_> = w.tensors().into_iter().map(|t| t.spec.name).collect();
        assert_eq!(names.len(), 2 + 2 * 12 + 2);
        assert_eq!(&names[..4], ["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.ln_1.bias"]);
        assert_eq!(names[13], "h.0.mlp.c_proj.bias");
        assert_eq!(names[14], "h.1.ln_1.weight");
        assert_eq!(&names[26..], ["ln_f.weight", "ln_f.bias"]);
        let specs = tensor_specs(&tiny());
        assert_eq!(specs[4].shape, vec![64, 192]);
        assert_eq!(specs[10].shape, vec![64, 256]);
        assert_eq!(specs[12].shape, vec![256, 64]);
        assert_eq!(w.validate(), Ok(()));
    }

    #[test]
    fn tensors_mut_reaches_the_named_field() {
        let mut w = Gpt2Weights::zeros(tiny());
        for (spec, data) in w.tensors_mut() {
            if spec.name == "h.1.attn.c_proj.bias" {
                data[3] = 7.0;
            }
        }
        assert_eq!(w.layers[1].attn_c_proj_bias[3], 7.0);
    }

    #[test]
    fn validate_names_the_short_tensor() {
        let mut w = Gpt2Weights::zeros(tiny());
        w.layers[1].c_fc_bias.pop();
        let err = w.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor h.1.mlp.c_fc.bias: expected 256 values for shape [256], found 255"
        );
        w.layers.pop();
        assert_eq!(w.validate(), Err(WeightsError::LayerCount { expected: 2, found: 1 }));
    }
}

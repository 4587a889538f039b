//! Reading and writing GPT-2 checkpoints in the Hugging Face layout: a folder holding
//! `config.json` and `model.safetensors`.
//!
//! The reader is strict, like ggml's loader: every tensor must be present with exactly the
//! shape the config implies, and any name it does not know is an error rather than being
//! skipped. The only tolerated extras are what the hub file really carries: the causal-mask
//! buffers `h.{i}.attn.bias` / `h.{i}.attn.masked_bias`, a `transformer.` prefix, and a
//! `lm_head.weight` equal to `wte.weight`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use picogpt_core::{ConfigError, ModelConfig};
use safetensors::tensor::{SafeTensorError, TensorView, View};
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::partial::PartialFolder;
use crate::weights::{Gpt2Weights, LAYER_TENSOR_NAMES, TensorSpec, WeightsError, tensor_specs};

/// Name of the hyper-parameter file inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// Name of the tensor file inside a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// Prefix `GPT2LMHeadModel` puts in front of every transformer tensor name.
const PREFIX: &str = "transformer.";
/// Name of the (tied) output projection.
const LM_HEAD: &str = "lm_head.weight";
/// Per-block buffers of the hub file that are not weights: the causal mask and its fill value.
const IGNORED_LAYER_BUFFERS: [&str; 2] = ["attn.bias", "attn.masked_bias"];

/// Why a checkpoint cannot be read or written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// A file or folder could not be read, written or renamed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// `config.json` is not valid JSON (or not an object).
    #[error("{}: invalid JSON: {source}", .path.display())]
    ConfigJson {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A `config.json` field is missing or has the wrong type.
    #[error("{}: field {field}: expected {expected}, found {found}", .path.display())]
    ConfigField {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What the field should hold.
        expected: &'static str,
        /// What it holds (`missing` when absent).
        found: String,
    },
    /// `n_positions` and `n_ctx` are both given and disagree.
    #[error("{}: n_positions {n_positions} differs from n_ctx {n_ctx}", .path.display())]
    ContextMismatch {
        /// The config file.
        path: PathBuf,
        /// `n_positions`.
        n_positions: u32,
        /// `n_ctx`.
        n_ctx: u32,
    },
    /// The config parses but describes an unusable model.
    #[error("{}: {reason}", .path.display())]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What `ModelConfig::validate` rejected.
        reason: ConfigError,
    },
    /// The safetensors container itself is malformed, or could not be written.
    #[error("{}: safetensors: {source}", .path.display())]
    Safetensors {
        /// The tensor file.
        path: PathBuf,
        /// The library's error.
        source: SafeTensorError,
    },
    /// A tensor the config requires is absent.
    #[error("{}: missing tensor {tensor}", .path.display())]
    MissingTensor {
        /// The tensor file.
        path: PathBuf,
        /// Canonical name of the absent tensor.
        tensor: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("{}: tensor {tensor}: expected shape {expected:?}, found {found:?}", .path.display())]
    WrongShape {
        /// The tensor file.
        path: PathBuf,
        /// Name as stored.
        tensor: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape stored.
        found: Vec<usize>,
    },
    /// The file holds a tensor that is not part of GPT-2.
    #[error("{}: unknown tensor {tensor}", .path.display())]
    UnknownTensor {
        /// The tensor file.
        path: PathBuf,
        /// Name as stored.
        tensor: String,
    },
    /// The same tensor is stored twice (with and without the `transformer.` prefix).
    #[error("{}: tensor {tensor} is stored twice", .path.display())]
    DuplicateTensor {
        /// The tensor file.
        path: PathBuf,
        /// Canonical name.
        tensor: String,
    },
    /// A block tensor names a layer the config does not have.
    #[error("{}: tensor {tensor}: layer {layer} but n_layer is {n_layer}", .path.display())]
    LayerOutOfRange {
        /// The tensor file.
        path: PathBuf,
        /// Name as stored.
        tensor: String,
        /// The layer index in the name.
        layer: usize,
        /// `n_layer` from the config.
        n_layer: u32,
    },
    /// A tensor is stored in a type other than F32, F16 or BF16.
    #[error("{}: tensor {tensor}: expected dtype F32, F16 or BF16, found {dtype}", .path.display())]
    UnsupportedDtype {
        /// The tensor file.
        path: PathBuf,
        /// Name as stored.
        tensor: String,
        /// The stored type.
        dtype: String,
    },
    /// A tensor holds NaN or an infinity.
    #[error("{}: tensor {tensor}: non-finite value {value} at flat index {index}", .path.display())]
    NonFinite {
        /// The tensor file.
        path: PathBuf,
        /// Name as stored.
        tensor: String,
        /// Row-major index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// `lm_head.weight` is present but is not a copy of `wte.weight`; only tied heads are
    /// supported.
    #[error(
        "{}: lm_head.weight differs from wte.weight at flat index {index}: {lm_head} vs {wte}",
        .path.display()
    )]
    UntiedLmHead {
        /// The tensor file.
        path: PathBuf,
        /// Row-major index of the first difference.
        index: usize,
        /// `lm_head.weight` there.
        lm_head: f32,
        /// `wte.weight` there.
        wte: f32,
    },
    /// [`write()`] was handed weights inconsistent with their own config.
    #[error("{}: refusing to write: {source}", .path.display())]
    InvalidWeights {
        /// The destination folder.
        path: PathBuf,
        /// The inconsistency.
        source: WeightsError,
    },
}

/// The element types a checkpoint may hold; [`write()`] stores every tensor in one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit IEEE float, exact.
    #[default]
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
}

/// How [`write()`] lays out the checkpoint, so tests can produce every variant the reader must
/// accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Element type of every tensor.
    pub dtype: Dtype,
    /// Prefix every transformer tensor with `transformer.`, as `GPT2LMHeadModel` saves it.
    pub transformer_prefix: bool,
    /// Also write the causal masks `h.{i}.attn.bias` `[1, 1, n_ctx, n_ctx]` (lower-triangular
    /// ones) that the hub file carries.
    pub attn_bias_buffers: bool,
    /// Also write `lm_head.weight` as a copy of `wte.weight`.
    pub lm_head: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dtype: Dtype::F32,
            transformer_prefix: false,
            attn_bias_buffers: true,
            lm_head: false,
        }
    }
}

/// Reads `config.json` and `model.safetensors` from `dir`, converting every tensor to `f32`.
pub fn load(dir: &Path) -> Result<Gpt2Weights, CheckpointError> {
    let config = read_config(&dir.join(CONFIG_FILE))?;
    let path = dir.join(MODEL_FILE);
    let file = File::open(&path).map_err(|source| io_error(&path, source))?;
    // SAFETY: the map is only read while `file` stays open; like every mmap-based loader we
    // rely on nobody truncating the checkpoint underneath us.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|source| io_error(&path, source))?;
    parse_tensors(&path, config, &mmap)
}

/// Checks and converts the bytes of a `model.safetensors` for `config`, as [`load`] does
/// after reading the config (`path` names the file in errors). Separate so the import path
/// can be fuzzed without a file.
pub fn parse_tensors(
    path: &Path,
    config: ModelConfig,
    bytes: &[u8],
) -> Result<Gpt2Weights, CheckpointError> {
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|source| CheckpointError::Safetensors { path: path.into(), source })?;
    read_tensors(path, config, &tensors)
}

/// Parses the fields of an HF GPT-2 `config.json` that shape the model.
fn read_config(path: &Path) -> Result<ModelConfig, CheckpointError> {
    let text = fs::read(path).map_err(|source| io_error(path, source))?;
    let value: Value = serde_json::from_slice(&text)
        .map_err(|source| CheckpointError::ConfigJson { path: path.into(), source })?;
    let Value::Object(fields) = value else {
        return Err(field_error(path, "(top level)", "a JSON object", Some(&value)));
    };
    let n_ctx = match (opt_u32(path, &fields, "n_positions")?, opt_u32(path, &fields, "n_ctx")?) {
        (Some(n_positions), Some(n_ctx)) if n_positions != n_ctx => {
            return Err(CheckpointError::ContextMismatch { path: path.into(), n_positions, n_ctx });
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            let expected = "an unsigned 32-bit integer";
            return Err(field_error(path, "n_positions (or n_ctx)", expected, None));
        }
    };
    let layer_norm_epsilon = match fields.get("layer_norm_epsilon") {
        None => 1e-5,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| field_error(path, "layer_norm_epsilon", "a number", Some(v)))?
            as f32,
    };
    let config = ModelConfig {
        n_layer: req_u32(path, &fields, "n_layer")?,
        n_embd: req_u32(path, &fields, "n_embd")?,
        n_head: req_u32(path, &fields, "n_head")?,
        n_ctx,
        vocab_size: req_u32(path, &fields, "vocab_size")?,
        layer_norm_epsilon,
    };
    config
        .validate()
        .map_err(|reason| CheckpointError::InvalidConfig { path: path.into(), reason })?;
    Ok(config)
}

fn opt_u32(
    path: &Path,
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u32>, CheckpointError> {
    fields
        .get(field)
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| field_error(path, field, "an unsigned 32-bit integer", Some(v)))
        })
        .transpose()
}

fn req_u32(
    path: &Path,
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<u32, CheckpointError> {
    opt_u32(path, fields, field)?
        .ok_or_else(|| field_error(path, field, "an unsigned 32-bit integer", None))
}

fn field_error(
    path: &Path,
    field: &'static str,
    expected: &'static str,
    found: Option<&Value>,
) -> CheckpointError {
    let found = found.map_or_else(|| "missing".to_owned(), Value::to_string);
    CheckpointError::ConfigField { path: path.into(), field, expected, found }
}

fn io_error(path: &Path, source: io::Error) -> CheckpointError {
    CheckpointError::Io { path: path.into(), source }
}

/// What a stored tensor name stands for.
enum Role {
    /// Index into [`tensor_specs`].
    Weight(usize),
    /// The tied output projection.
    LmHead,
    /// A non-weight buffer to skip.
    Ignored,
}

/// Maps stored names to their role, rejecting unknown names and out-of-range layers.
struct Names {
    index: HashMap<String, usize>,
    n_layer: u32,
}

impl Names {
    fn new(specs: &[TensorSpec], n_layer: u32) -> Self {
        let index = specs.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        Self { index, n_layer }
    }

    fn classify(&self, path: &Path, stored: &str) -> Result<Role, CheckpointError> {
        if stored == LM_HEAD {
            return Ok(Role::LmHead);
        }
        let name = stored.strip_prefix(PREFIX).unwrap_or(stored);
        let unknown =
            || CheckpointError::UnknownTensor { path: path.into(), tensor: stored.into() };
        let Some(rest) = name.strip_prefix("h.") else {
            return self.index.get(name).map(|&i| Role::Weight(i)).ok_or_else(unknown);
        };
        let (layer, suffix) = rest.split_once('.').ok_or_else(unknown)?;
        let layer: usize = match layer.parse() {
            Ok(l) if format!("{l}") == layer => l,
            _ => return Err(unknown()),
        };
        let is_weight = LAYER_TENSOR_NAMES.contains(&suffix);
        if !is_weight && !IGNORED_LAYER_BUFFERS.contains(&suffix) {
            return Err(unknown());
        }
        if layer >= self.n_layer as usize {
            return Err(CheckpointError::LayerOutOfRange {
                path: path.into(),
                tensor: stored.into(),
                layer,
                n_layer: self.n_layer,
            });
        }
        if !is_weight {
            return Ok(Role::Ignored);
        }
        self.index.get(name).map(|&i| Role::Weight(i)).ok_or_else(unknown)
    }
}

/// Checks and converts every tensor of an opened safetensors file.
fn read_tensors(
    path: &Path,
    config: ModelConfig,
    file: &safetensors::SafeTensors<'_>,
) -> Result<Gpt2Weights, CheckpointError> {
    let mut weights = Gpt2Weights::zeros(config);
    let specs = tensor_specs(&config);
    let names = Names::new(&specs, config.n_layer);
    let mut loaded: Vec<Option<Vec<f32>>> = vec![None; specs.len()];
    let mut lm_head = None;
    let mut stored: Vec<(&str, TensorView<'_>)> = file.iter().collect();
    stored.sort_by_key(|(name, _)| *name);
    for (name, view) in stored {
        let (slot, expected) = match names.classify(path, name)? {
            Role::Ignored => continue,
            Role::LmHead => (&mut lm_head, &specs[0].shape),
            Role::Weight(i) => (&mut loaded[i], &specs[i].shape),
        };
        if slot.is_some() {
            let tensor = name.strip_prefix(PREFIX).unwrap_or(name).to_owned();
            return Err(CheckpointError::DuplicateTensor { path: path.into(), tensor });
        }
        *slot = Some(decode(path, name, &view, expected)?);
    }
    for ((spec, dest), data) in weights.tensors_mut().into_iter().zip(loaded) {
        *dest = data.ok_or_else(|| CheckpointError::MissingTensor {
            path: path.into(),
            tensor: spec.name.clone(),
        })?;
    }
    if let Some(head) = lm_head
        && let Some(index) = head.iter().zip(&weights.wte).position(|(h, w)| h != w)
    {
        return Err(CheckpointError::UntiedLmHead {
            path: path.into(),
            index,
            lm_head: head[index],
            wte: weights.wte[index],
        });
    }
    Ok(weights)
}

/// Checks one tensor's type, shape and values and converts it to `f32`.
fn decode(
    path: &Path,
    name: &str,
    view: &TensorView<'_>,
    expected: &[usize],
) -> Result<Vec<f32>, CheckpointError> {
    let dtype = match view.dtype() {
        safetensors::Dtype::F32 => Dtype::F32,
        safetensors::Dtype::F16 => Dtype::F16,
        safetensors::Dtype::BF16 => Dtype::BF16,
        other => {
            return Err(CheckpointError::UnsupportedDtype {
                path: path.into(),
                tensor: name.into(),
                dtype: format!("{other:?}"),
            });
        }
    };
    if view.shape() != expected {
        return Err(CheckpointError::WrongShape {
            path: path.into(),
            tensor: name.into(),
            expected: expected.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    let bytes = view.data();
    let values: Vec<f32> = match dtype {
        Dtype::F32 => bytes.as_chunks::<4>().0.iter().map(|b| f32::from_le_bytes(*b)).collect(),
        Dtype::F16 => {
            bytes.as_chunks::<2>().0.iter().map(|b| half::f16::from_le_bytes(*b).to_f32()).collect()
        }
        Dtype::BF16 => bytes
            .as_chunks::<2>()
            .0
            .iter()
            .map(|b| half::bf16::from_le_bytes(*b).to_f32())
            .collect(),
    };
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(CheckpointError::NonFinite {
            path: path.into(),
            tensor: name.into(),
            index,
            value: values[index],
        });
    }
    Ok(values)
}

/// Writes `weights` to `dir` (created if needed) as `config.json` + `model.safetensors`.
///
/// Both files are first written into a hidden [`PartialFolder`] inside `dir` and then renamed
/// over their final names, so a failure or an interruption part-way leaves any previous
/// checkpoint untouched and no half-written file behind.
pub fn write(
    dir: &Path,
    weights: &Gpt2Weights,
    opts: &WriteOptions,
) -> Result<(), CheckpointError> {
    weights
        .validate()
        .map_err(|source| CheckpointError::InvalidWeights { path: dir.into(), source })?;
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let staging =
        PartialFolder::create(&dir.join(MODEL_FILE)).map_err(|source| io_error(dir, source))?;

    let model_tmp = staging.path().join(MODEL_FILE);
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(encoded_tensors(weights, opts), Some(metadata), &model_tmp)
        .map_err(|source| CheckpointError::Safetensors { path: dir.join(MODEL_FILE), source })?;

    let config_tmp = staging.path().join(CONFIG_FILE);
    let config_text = serde_json::to_string_pretty(&config_json(&weights.config))
        .map_err(|source| CheckpointError::ConfigJson { path: dir.join(CONFIG_FILE), source })?;
    fs::write(&config_tmp, config_text + "\n").map_err(|source| io_error(&config_tmp, source))?;

    for name in [MODEL_FILE, CONFIG_FILE] {
        let to = dir.join(name);
        staging.move_out(name, &to).map_err(|source| io_error(&to, source))?;
    }
    Ok(())
}

/// `config.json` in the style of the hub's `gpt2` file.
fn config_json(config: &ModelConfig) -> Value {
    // Via the shortest decimal form, so 1e-5f32 is written as 1e-5 rather than 9.99999974e-6.
    let eps = config.layer_norm_epsilon;
    let eps = eps.to_string().parse::<f64>().unwrap_or(f64::from(eps));
    json!({
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "layer_norm_epsilon": eps,
        "model_type": "gpt2",
        "n_ctx": config.n_ctx,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "n_layer": config.n_layer,
        "n_positions": config.n_ctx,
        "vocab_size": config.vocab_size,
    })
}

/// Every tensor to store, named per `opts`, each encoded only when the writer asks for it.
fn encoded_tensors<'a>(
    weights: &'a Gpt2Weights,
    opts: &WriteOptions,
) -> Vec<(String, Encoded<'a>)> {
    let prefix = if opts.transformer_prefix { PREFIX } else { "" };
    let dtype = opts.dtype;
    let mut out: Vec<(String, Encoded<'a>)> = weights
        .tensors()
        .into_iter()
        .map(|t| {
            let name = format!("{prefix}{}", t.spec.name);
            (name, Encoded { dtype, shape: t.spec.shape, source: Source::Values(t.data) })
        })
        .collect();
    if opts.attn_bias_buffers {
        let n_ctx = weights.config.n_ctx as usize;
        for i in 0..weights.layers.len() {
            let mask = Encoded {
                dtype,
                shape: vec![1, 1, n_ctx, n_ctx],
                source: Source::CausalMask(n_ctx),
            };
            out.push((format!("{prefix}h.{i}.attn.bias"), mask));
        }
    }
    if opts.lm_head {
        let shape = vec![weights.config.vocab_size as usize, weights.config.embd()];
        out.push((
            LM_HEAD.to_owned(),
            Encoded { dtype, shape, source: Source::Values(&weights.wte) },
        ));
    }
    out
}

/// Where an [`Encoded`] tensor's values come from.
enum Source<'a> {
    /// Weights, row-major.
    Values(&'a [f32]),
    /// An `n × n` lower-triangular matrix of ones.
    CausalMask(usize),
}

/// A tensor converted to bytes lazily, so only one tensor's bytes exist at a time.
struct Encoded<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    source: Source<'a>,
}

impl Encoded<'_> {
    fn values(&self) -> Box<dyn Iterator<Item = f32> + '_> {
        match self.source {
            Source::Values(v) => Box::new(v.iter().copied()),
            Source::CausalMask(n) => {
                Box::new((0..n * n).map(move |k| if k % n <= k / n { 1.0 } else { 0.0 }))
            }
        }
    }

    fn n_values(&self) -> usize {
        match self.source {
            Source::Values(v) => v.len(),
            Source::CausalMask(n) => n * n,
        }
    }
}

impl View for Encoded<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self.dtype {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F16 => safetensors::Dtype::F16,
            Dtype::BF16 => safetensors::Dtype::BF16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let values = self.values();
        let bytes: Vec<u8> = match self.dtype {
            Dtype::F32 => values.flat_map(f32::to_le_bytes).collect(),
            Dtype::F16 => values.flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect(),
            Dtype::BF16 => values.flat_map(|v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        };
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        let width = match self.dtype {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        };
        self.n_values() * width
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};
    use safetensors::SafeTensors;
    use tempfile::TempDir;

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

    /// Distinct N(0, 1) values in every tensor, so a swapped or skipped tensor shows.
    fn weights() -> Gpt2Weights {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut w = Gpt2Weights::zeros(tiny());
        for (_, data) in w.tensors_mut() {
            data.iter_mut().for_each(|v| *v = StandardNormal.sample(&mut rng));
        }
        w
    }

    fn written(opts: &WriteOptions) -> (TempDir, Gpt2Weights) {
        let dir = TempDir::new().unwrap();
        let w = weights();
        write(dir.path(), &w, opts).unwrap();
        (dir, w)
    }

    /// A stored tensor: dtype, shape, raw bytes.
    type Raw = (safetensors::Dtype, Vec<usize>, Vec<u8>);

    /// Rewrites `model.safetensors` after `edit` has changed its tensors.
    fn rewrite(dir: &Path, edit: impl FnOnce(&mut BTreeMap<String, Raw>)) {
        let path = dir.join(MODEL_FILE);
        let bytes = fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: BTreeMap<String, Raw> = file
            .iter()
            .map(|(n, v)| (n.to_owned(), (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
            .collect();
        edit(&mut tensors);
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn edit_config(dir: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
        let path = dir.join(CONFIG_FILE);
        let mut value: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(value.as_object_mut().unwrap());
        fs::write(&path, value.to_string()).unwrap();
    }

    fn stored_names(dir: &Path) -> Vec<String> {
        let bytes = fs::read(dir.join(MODEL_FILE)).unwrap();
        let mut names: Vec<String> = SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn f32_round_trip_is_exact_and_leaves_only_the_two_files() {
        let (dir, w) = written(&WriteOptions::default());
        assert_eq!(load(dir.path()).unwrap(), w);
        let mut files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, [CONFIG_FILE, MODEL_FILE]);
        let config: Value =
            serde_json::from_slice(&fs::read(dir.path().join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config["model_type"], "gpt2");
        assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
        assert_eq!(config["activation_function"], "gelu_new");
        assert_eq!(config["layer_norm_epsilon"], 1e-5);
        assert_eq!(
            (config["n_positions"].as_u64(), config["n_ctx"].as_u64()),
            (Some(32), Some(32))
        );
        let bytes = fs::read(dir.path().join(MODEL_FILE)).unwrap();
        let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
        // Writing again over an existing checkpoint works too.
        write(dir.path(), &w, &WriteOptions::default()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), w);
    }

    #[test]
    fn half_precision_round_trips_within_rounding() {
        for (dtype, rel) in [(Dtype::F16, 1.0 / 2048.0), (Dtype::BF16, 1.0 / 256.0)] {
            let (dir, w) = written(&WriteOptions { dtype, ..WriteOptions::default() });
            let loaded = load(dir.path()).unwrap();
            for (a, b) in loaded.tensors().iter().zip(w.tensors()) {
                for (x, y) in a.data.iter().zip(b.data) {
                    // Relative rounding for normal numbers, an absolute floor for f16 subnormals.
                    assert!(
                        (x - y).abs() <= rel * y.abs() + 1e-7,
                        "{dtype:?} {}: {x} vs {y}",
                        a.spec.name
                    );
                }
            }
        }
    }

    #[test]
    fn accepts_prefix_masks_and_tied_head_as_the_hub_stores_them() {
        let opts = WriteOptions {
            transformer_prefix: true,
            attn_bias_buffers: true,
            lm_head: true,
            ..Default::default()
        };
        let (dir, w) = written(&opts);
        let names = stored_names(dir.path());
        for name in [
            "lm_head.weight",
            "transformer.h.1.attn.bias",
            "transformer.h.1.attn.c_attn.bias",
            "transformer.wte.weight",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not written");
        }
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded, w);
        // The real bias next to the mask buffer is loaded, not skipped.
        assert_eq!(loaded.layers[1].c_attn_bias, w.layers[1].c_attn_bias);
        let bytes = fs::read(dir.path().join(MODEL_FILE)).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mask = file.tensor("transformer.h.0.attn.bias").unwrap();
        assert_eq!(mask.shape(), [1, 1, 32, 32]);
        let ones: Vec<f32> = mask
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!((ones[32], ones[33], ones[34]), (1.0, 1.0, 0.0));
    }

    #[test]
    fn ignores_masked_bias_buffers() {
        let (dir, w) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.insert(
                "h.0.attn.masked_bias".into(),
                (safetensors::Dtype::F32, vec![], f32_bytes(&[-1e4])),
            );
        });
        assert_eq!(load(dir.path()).unwrap(), w);
    }

    #[test]
    fn rejects_untied_lm_head() {
        let (dir, _) = written(&WriteOptions { lm_head: true, ..Default::default() });
        rewrite(dir.path(), |t| {
            let head = t.get_mut("lm_head.weight").unwrap();
            head.2[4 * 70] ^= 0x01;
        });
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::UntiedLmHead { index: 70, .. }), "{err}");
        assert!(
            err.to_string().contains("lm_head.weight differs from wte.weight at flat index 70"),
            "{err}"
        );
    }

    #[test]
    fn missing_tensor_is_named() {
        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.remove("h.1.ln_2.bias");
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::MissingTensor { tensor, .. } if tensor == "h.1.ln_2.bias"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("missing tensor h.1.ln_2.bias") && msg.contains(MODEL_FILE), "{msg}");
    }

    #[test]
    fn wrong_shape_names_tensor_and_both_shapes() {
        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| t.get_mut("h.0.mlp.c_fc.weight").unwrap().1 = vec![256, 64]);
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::WrongShape { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("tensor h.0.mlp.c_fc.weight: expected shape [64, 256], found [256, 64]"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_names_and_layers_are_rejected() {
        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.insert(
                "h.0.attn.c_attn.scale".into(),
                (safetensors::Dtype::F32, vec![1], f32_bytes(&[1.0])),
            );
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::UnknownTensor { tensor, .. } if tensor == "h.0.attn.c_attn.scale")
        );
        assert!(err.to_string().contains("unknown tensor h.0.attn.c_attn.scale"));

        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.insert(
                "h.2.ln_1.weight".into(),
                (safetensors::Dtype::F32, vec![64], f32_bytes(&[1.0; 64])),
            );
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::LayerOutOfRange { layer: 2, n_layer: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("tensor h.2.ln_1.weight: layer 2 but n_layer is 2"));
    }

    #[test]
    fn duplicate_dtype_and_non_finite_problems_are_named() {
        let (dir, w) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.insert(
                "transformer.ln_f.bias".into(),
                (safetensors::Dtype::F32, vec![64], f32_bytes(&w.ln_f_bias)),
            );
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::DuplicateTensor { tensor, .. } if tensor == "ln_f.bias"),
            "{err}"
        );

        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            t.insert(
                "wpe.weight".into(),
                (safetensors::Dtype::F64, vec![32, 64], vec![0; 32 * 64 * 8]),
            );
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("tensor wpe.weight: expected dtype F32, F16 or BF16, found F64"),
            "{err}"
        );

        let (dir, _) = written(&WriteOptions::default());
        rewrite(dir.path(), |t| {
            let bias = t.get_mut("h.1.attn.c_attn.bias").unwrap();
            bias.2[4 * 5..4 * 6].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::NonFinite { index: 5, .. }), "{err}");
        assert!(
            err.to_string()
                .contains("tensor h.1.attn.c_attn.bias: non-finite value NaN at flat index 5")
        );
    }

    #[test]
    fn config_problems_are_reported() {
        let (dir, _) = written(&WriteOptions::default());
        edit_config(dir.path(), |c| {
            c.insert("n_ctx".into(), json!(64));
        });
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::ContextMismatch { n_positions: 32, n_ctx: 64, .. }));
        assert!(err.to_string().contains("n_positions 32 differs from n_ctx 64"), "{err}");

        let (dir, _) = written(&WriteOptions::default());
        edit_config(dir.path(), |c| {
            c.insert("n_head".into(), json!(5));
        });
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            CheckpointError::InvalidConfig { reason: ConfigError::HeadsDontDivide { .. }, .. }
        ));
        assert!(err.to_string().contains("n_embd 64 is not divisible by n_head 5"), "{err}");

        let (dir, _) = written(&WriteOptions::default());
        edit_config(dir.path(), |c| {
            c.remove("vocab_size");
        });
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("field vocab_size: expected an unsigned 32-bit integer, found missing")
        );
    }

    /// The hub's `gpt2/config.json` carries many more fields, `n_ctx` equal to
    /// `n_positions`, and may lack `layer_norm_epsilon` in older exports.
    #[test]
    fn reads_hub_style_config() {
        let (dir, w) = written(&WriteOptions::default());
        edit_config(dir.path(), |c| {
            c.remove("layer_norm_epsilon");
            c.remove("n_positions");
            for (k, v) in [
                ("bos_token_id", json!(50256)),
                ("resid_pdrop", json!(0.1)),
                ("task_specific_params", json!({"text-generation": {"do_sample": true}})),
            ] {
                c.insert(k.into(), v);
            }
        });
        assert_eq!(load(dir.path()).unwrap(), w);
    }

    #[test]
    fn refuses_to_write_inconsistent_weights() {
        let dir = TempDir::new().unwrap();
        let mut w = weights();
        w.ln_f_bias.push(0.0);
        let err = write(dir.path(), &w, &WriteOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("tensor ln_f.bias: expected 64 values for shape [64], found 65"),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! `host-tools pack`.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;
use host_tools::checkpoint;
use host_tools::compact::COMPACT_BUDGET;
use host_tools::guard::{self, Output};
use host_tools::pack::{PackOptions, PackSummary, pack};
use host_tools::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use picogpt_core::format::{FormatOverride, NO_LAYER};
use picogpt_core::{MatrixFormat, TensorId, TensorKind};

#[derive(clap::Args)]
pub struct Args {
    /// Folder with config.json and model.safetensors (and optionally vocab.json + merges.txt).
    model_dir: PathBuf,
    /// Output file (`run --model_size` looks for `<folder>/model-<quant>.pgpt`).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Weight format.
    #[arg(long, value_enum, default_value_t = QuantArg::Int8)]
    quant: QuantArg,
    /// int8 block size along the input dimension (a multiple of 32 dividing n_embd; 0 = one
    /// scale per row; default 32): of every matrix with --quant int8, of those --keep-int8
    /// keeps with --quant int4.
    #[arg(long)]
    block: Option<u32>,
    /// Quantize an int8 LM head's outlier input channels like the rest (for comparison only).
    #[arg(long)]
    no_outliers: bool,
    /// Leave the tokenizer sections out (the pack then runs with token ids only).
    #[arg(long)]
    no_tokenizer: bool,
    /// Matrices an int4 pack keeps in int8, comma-separated: `wte` (the default: the LM head
    /// loses too much in int4), a kind for every block (`mlp.c_proj`), or one block's
    /// (`h.0.mlp.c_fc`); `none` keeps nothing.
    #[arg(long, value_delimiter = ',')]
    keep_int8: Option<Vec<String>>,
}

/// The default int8 block: 32 inputs per scale.
pub const INT8_BLOCK: u32 = 32;

/// Weight formats `pack` offers.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantArg {
    Int8,
    Int4,
    F16,
    F32,
    /// 4-bit scale-and-minimum blocks of 32, calibrated (every matrix, the LM head included).
    Q4m,
    /// 5-bit scale-and-minimum blocks of 32, calibrated.
    Q5m,
    /// 6-bit scale-and-minimum blocks of 32, calibrated.
    Q6m,
    /// q4m, q5m or q6m in blocks of 32 or 64 per matrix, chosen from calibration for at most
    /// 0.68 × int8's matrix bytes (prints the table it chose).
    Compact,
}

impl QuantArg {
    /// `int8`, `f16` or `f32`, as in the pack's file name `model-<quant>.pgpt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Int4 => "int4",
            Self::F16 => "f16",
            Self::F32 => "f32",
            Self::Q4m => "q4m",
            Self::Q5m => "q5m",
            Self::Q6m => "q6m",
            Self::Compact => "compact",
        }
    }

    /// The pack options of this format alone (int8 with `block` inputs per scale).
    pub fn options(self, block: u32) -> PackOptions {
        match self {
            Self::Compact => PackOptions::compact(COMPACT_BUDGET),
            Self::Q4m | Self::Q5m | Self::Q6m => PackOptions::new(self.matrices(block), false),
            _ => PackOptions::new(self.matrices(block), true),
        }
    }

    /// The matrix format, with `block` inputs per int8 scale.
    pub fn matrices(self, block: u32) -> MatrixFormat {
        match self {
            Self::F32 => MatrixFormat::F32,
            Self::F16 => MatrixFormat::F16,
            Self::Int8 => MatrixFormat::Int8 { block },
            Self::Int4 => MatrixFormat::Int4,
            Self::Q4m | Self::Compact => MatrixFormat::Affine { bits: 4, block: 32 },
            Self::Q5m => MatrixFormat::Affine { bits: 5, block: 32 },
            Self::Q6m => MatrixFormat::Affine { bits: 6, block: 32 },
        }
    }
}

pub fn main(args: Args) -> Result<()> {
    let opts = options(&args)?;
    guard::checkpoint_folder(&args.model_dir)?;
    let usual = args.model_dir.join(format!("model-{}.pgpt", args.quant.name()));
    let usual = format!("-o {}", usual.display());
    let Some(out) = &args.out else {
        bail!("give the pack's file name with -o: {}", guard::did_you_mean(usual));
    };
    let output = Output::pack("-o", out).instead(guard::did_you_mean(usual));
    guard::check_outputs(&[output], &guard::checkpoint_files(&args.model_dir))?;
    let summary = pack_folder(&args.model_dir, out, &opts, !args.no_tokenizer)?;
    print_summary(out, &summary);
    Ok(())
}

/// The pack options the flags ask for; a flag that would change nothing for this `--quant`
/// is an error rather than silently ignored.
fn options(args: &Args) -> Result<PackOptions> {
    let block = args.block.unwrap_or(INT8_BLOCK);
    let keep: Vec<&str> = match &args.keep_int8 {
        Some(names) if args.quant != QuantArg::Int4 => bail!(
            "--keep-int8 {}: only int4 packs keep matrices in int8 (with --quant {quant} every \
             matrix is {quant} already): add --quant int4 or leave --keep-int8 out",
            names.join(","),
            quant = args.quant.name()
        ),
        Some(names) => names.iter().map(String::as_str).filter(|&n| n != "none").collect(),
        None if args.quant == QuantArg::Int4 => vec!["wte"],
        None => Vec::new(),
    };
    let has_int8 = args.quant == QuantArg::Int8 || !keep.is_empty();
    if let Some(block) = args.block.filter(|_| !has_int8) {
        bail!(
            "--block {block}: a --quant {} pack{} has no int8 matrices to block: leave --block \
             out",
            args.quant.name(),
            if args.quant == QuantArg::Int4 { " that keeps nothing in int8" } else { "" }
        );
    }
    if matches!(args.quant, QuantArg::Q4m | QuantArg::Q5m | QuantArg::Q6m | QuantArg::Compact) {
        return Ok(args.quant.options(block));
    }
    let int8_lm_head = args.quant == QuantArg::Int8 || keep.contains(&"wte");
    if args.no_outliers && !int8_lm_head {
        bail!(
            "--no-outliers changes only an int8 LM head (--quant int8, or int4 keeping wte in \
             int8), and this pack's is not: leave --no-outliers out"
        );
    }
    let matrices = args.quant.matrices(block);
    let mut opts = PackOptions::new(matrices, !args.no_outliers);
    if matrices == MatrixFormat::Int4 {
        opts.overrides =
            keep.iter().map(|name| int8_override(name, block)).collect::<Result<_>>()?;
    }
    Ok(opts)
}

/// Packs the checkpoint folder `model_dir` into `out` with a progress bar, taking the
/// tokenizer from the folder (or tiktoken's GPT-2) unless `with_tokenizer` is false: what
/// `pack` does, and what `run --model_size` does on first use.
pub fn pack_folder(
    model_dir: &Path,
    out: &Path,
    opts: &PackOptions,
    with_tokenizer: bool,
) -> Result<PackSummary> {
    let weights = checkpoint::load(model_dir)?;
    let tokenizer = if with_tokenizer {
        Tokenizer::for_pack(model_dir, weights.config.vocab_size)?
    } else {
        None
    };
    if tokenizer.is_none() {
        println!("no tokenizer in the pack: it runs with token ids only");
    }
    let bar = ProgressBar::new(0)
        .with_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {wide_msg}")?);
    let summary = pack(&weights, tokenizer.as_ref(), opts, out, |done, total, tensor| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(tensor.to_string());
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

/// A `--keep-int8` entry as a format override: `wte`, a block matrix kind (every block), or
/// `h.N.` and a kind.
fn int8_override(name: &str, block: u32) -> Result<FormatOverride> {
    let format = MatrixFormat::Int8 { block };
    if name == "wte" {
        return Ok(FormatOverride { kind: TensorKind::Wte, layer: NO_LAYER, format });
    }
    let (layer, kind_name) = match name.strip_prefix("h.").and_then(|rest| rest.split_once('.')) {
        Some((n, kind)) => (n.parse::<u16>().map_err(|_| anyhow!("bad block in {name:?}"))?, kind),
        None => (NO_LAYER, name),
    };
    let kind = [
        TensorKind::CAttnWeight,
        TensorKind::AttnCProjWeight,
        TensorKind::CFcWeight,
        TensorKind::MlpCProjWeight,
    ]
    .into_iter()
    .find(|k| k.hf_name().strip_suffix(".weight") == Some(kind_name))
    .ok_or_else(|| {
        anyhow!("--keep-int8 {name:?}: not wte, attn.c_attn, attn.c_proj, mlp.c_fc or mlp.c_proj")
    })?;
    Ok(FormatOverride { kind, layer, format })
}

fn print_summary(out: &Path, s: &PackSummary) {
    if !s.compact.is_empty() {
        print_compact(s);
    }
    println!("packed {} as {}", out.display(), s.quant.matrices);
    for o in &s.quant.overrides {
        let every =
            if o.layer == NO_LAYER && o.kind != TensorKind::Wte { " (every block)" } else { "" };
        println!("{}{every} kept as {}", TensorId { layer: o.layer, kind: o.kind }, o.format);
    }
    if !s.quant.lm_head_outliers.is_empty() {
        println!("LM-head outlier channels kept in f16: {:?}", s.quant.lm_head_outliers.as_slice());
    }
    println!(
        "{:<28} {:>14} {:>8} {:>12} {:>10}",
        "tensors", "bytes", "vs f32", "max |err|", "rel RMS"
    );
    for k in &s.kinds {
        println!(
            "{:<28} {:>14} {:>7.1}% {:>12.3e} {:>10.2e}",
            k.name,
            k.bytes,
            100.0 * k.bytes as f64 / k.f32_bytes as f64,
            k.max_abs_error,
            k.rel_rms_error
        );
    }
    println!(
        "{:<28} {:>14} {:>7.1}%   (file, with manifest, tokenizer and alignment)",
        "total",
        s.file_bytes,
        100.0 * s.file_bytes as f64 / s.f32_bytes() as f64
    );
}

/// The table the `compact` preset chose from.
fn print_compact(s: &PackSummary) {
    use host_tools::compact::SHAPES;
    let calibration = match s.calibration_positions {
        0 => "no calibration text (plain least squares)".to_owned(),
        n => format!("{n} positions of {}", host_tools::calibrate::CALIBRATION_NAME),
    };
    println!("compact: formats chosen from the weighted error in each shape ({calibration})");
    print!("{:<24} {:>9} {:>12} {:>8}", "matrix", "format", "bytes", "vs int8");
    for (bits, block) in SHAPES {
        print!(" {:>9}", format!("q{bits}m/{block}"));
    }
    println!();
    for c in &s.compact {
        let (bits, block) = SHAPES[c.shape];
        print!(
            "{:<24} {:>9} {:>12} {:>7.1}%",
            c.id.to_string(),
            format!("q{bits}m/{block}"),
            c.chosen_bytes(),
            100.0 * c.chosen_bytes() as f64 / c.int8_bytes as f64,
        );
        for loss in c.loss {
            print!(" {:>9}", if loss.is_finite() { format!("{loss:.2e}") } else { "-".into() });
        }
        println!();
    }
    let (bytes, int8): (u64, u64) =
        s.compact.iter().fold((0, 0), |(a, b), c| (a + c.chosen_bytes(), b + c.int8_bytes));
    println!(
        "{:<24} {:>9} {:>12} {:>7.1}%   (loss per shape: weighted squared error / weighted signal)",
        "matrices",
        "",
        bytes,
        100.0 * bytes as f64 / int8 as f64
    );
}

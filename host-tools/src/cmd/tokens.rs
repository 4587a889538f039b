//! `host-tools encode` and `host-tools decode`: the host tokenizer, or core's over a pack.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use host_tools::file_storage::FileStorage;
use host_tools::guard;
use host_tools::tokenizer::Tokenizer;
use picogpt_core::Model;
use picogpt_core::utf8::Utf8Stream;

use super::{TokenIds, join};

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// The text.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Encode this file's text instead (UTF-8), e.g. a training corpus.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Use core's on-device encoder over this pack's tokenizer sections.
    #[arg(long, conflicts_with = "model_dir")]
    pack: Option<PathBuf>,
    /// Use this checkpoint folder's vocab.json + merges.txt.
    #[arg(long)]
    model_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Token ids, separated by commas and/or spaces (`464,3290`, `"464, 3290"`).
    #[arg(required = true, value_parser = super::token_ids)]
    ids: Vec<TokenIds>,
    /// Use core's on-device decoder over this pack's tokenizer sections.
    #[arg(long, conflicts_with = "model_dir")]
    pack: Option<PathBuf>,
    /// Use this checkpoint folder's vocab.json + merges.txt.
    #[arg(long)]
    model_dir: Option<PathBuf>,
}

/// The folder's `vocab.json` + `merges.txt` (which must be there), or GPT-2's own.
fn host_tokenizer(model_dir: Option<&Path>) -> Result<Tokenizer> {
    Ok(match model_dir {
        Some(dir) => {
            guard::tokenizer_folder(dir)?;
            Tokenizer::from_hf_files(dir)?
        }
        None => Tokenizer::gpt2()?,
    })
}

/// The pack, which must carry a tokenizer.
fn with_tokenizer(pack: &Path) -> Result<Model<FileStorage>> {
    let model = super::open_pack(pack)?;
    if model.tokenizer().is_none() {
        bail!(
            "{} has no tokenizer sections (it was packed with --no-tokenizer or a vocabulary \
             that is not GPT-2's): leave out --pack to use GPT-2's tokenizer",
            pack.display()
        );
    }
    Ok(model)
}

pub fn encode(args: EncodeArgs) -> Result<()> {
    let text = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?
        }
        (None, None) => return Err(anyhow!("give a text or --file")),
    };
    let ids = match &args.pack {
        Some(pack) => {
            let mut model = with_tokenizer(pack)?;
            let mut scratch = vec![0u32; 2 * text.len() + 2];
            let mut out = vec![0u32; text.len()];
            let n = model
                .encode(text.as_bytes(), &mut scratch, &mut out)
                .map_err(|e| anyhow!("{}: {e}", pack.display()))?;
            out.truncate(n);
            out
        }
        None => host_tokenizer(args.model_dir.as_deref())?.encode(&text),
    };
    println!("{}", join(&ids));
    Ok(())
}

pub fn decode(args: DecodeArgs) -> Result<()> {
    let ids: Vec<u32> = args.ids.iter().flat_map(|list| list.0.iter().copied()).collect();
    let bytes = match &args.pack {
        Some(pack) => {
            let mut model = with_tokenizer(pack)?;
            let mut bytes = Vec::new();
            let mut buf = [0u8; picogpt_core::format::MAX_TOKEN_BYTES as usize];
            for &id in &ids {
                let token = model
                    .token_bytes(id, &mut buf)
                    .map_err(|e| anyhow!("{}: {e}", pack.display()))?;
                bytes.extend_from_slice(token);
            }
            bytes
        }
        None => {
            let tokenizer = host_tokenizer(args.model_dir.as_deref())?;
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= tokenizer.len()) {
                return Err(anyhow!(
                    "token {bad} is outside the vocabulary of {}",
                    tokenizer.len()
                ));
            }
            tokenizer.decode(&ids)
        }
    };
    let mut text = String::new();
    let mut stream = Utf8Stream::new();
    stream.push(&bytes, &mut |s| text.push_str(s));
    stream.finish(&mut |s| text.push_str(s));
    println!("{text}");
    Ok(())
}

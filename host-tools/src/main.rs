//! `host-tools`: synthesize, pack, reference and run GPT-2 on the desktop.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "host-tools", version, about = "GPT-2 for microcontrollers: the desktop side")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic GPT-2 checkpoint (config.json, model.safetensors and, for GPT-2's
    /// vocabulary size, vocab.json + merges.txt) in the Hugging Face layout. Default: 124M.
    Synth(cmd::synth::Args),
    /// Quantize a Hugging Face GPT-2 checkpoint folder into one packed file.
    Pack(cmd::pack::Args),
    /// Greedy-decode with the independent plain-f32 reference implementation.
    Reference(cmd::reference::Args),
    /// Generate with core over a packed file, read chunk by chunk as a board would.
    Run(cmd::run::Args),
    /// Describe a packed file and the memory core needs to run it.
    Info(cmd::info::Args),
    /// Print the GPT-2 token ids of a text, comma-separated.
    Encode(cmd::tokens::EncodeArgs),
    /// Print the text of comma-separated GPT-2 token ids.
    Decode(cmd::tokens::DecodeArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Synth(args) => cmd::synth::main(args),
        Command::Pack(args) => cmd::pack::main(args),
        Command::Reference(args) => cmd::reference::main(args),
        Command::Run(args) => cmd::run::main(args),
        Command::Info(args) => cmd::info::main(args),
        Command::Encode(args) => cmd::tokens::encode(args),
        Command::Decode(args) => cmd::tokens::decode(args),
    }
}

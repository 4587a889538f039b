//! `host-tools`: synthesize, pack, reference and run GPT-2 on the desktop.

#[macro_use]
mod stdout;
mod cmd;
mod stop;

use std::io::IsTerminal;
use std::process::ExitCode;

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
    /// Check every CRC of a packed file (manifest, tensors, tokenizer sections); the first
    /// mismatch is named and the exit status is non-zero.
    Verify(cmd::verify::Args),
    /// Compare packs with the f32 reference over a text: perplexity, KL divergence, top-1
    /// and top-3 agreement, largest logit error.
    Eval(cmd::eval::Args),
    /// Time core on the GPT-2 124M shape per pack and kernel path (synthesizes it if needed).
    Bench(cmd::bench::Args),
    /// Print the GPT-2 token ids of a text, comma-separated.
    Encode(cmd::tokens::EncodeArgs),
    /// Print the text of comma-separated GPT-2 token ids.
    Decode(cmd::tokens::DecodeArgs),
    /// Download GPT-2's checkpoint (config.json, model.safetensors, vocab.json, merges.txt)
    /// from the Hugging Face hub into <models_dir>/<size>/, resuming and verifying.
    Download(cmd::download::Args),
    /// Convert a firmware ELF and/or a pack into a UF2 for a Pico 2's USB drive (BOOTSEL).
    Uf2(cmd::uf2::Args),
    /// Check that a pack fits an ESP32-C6's flash after its firmware; print the espflash
    /// command that writes it there.
    FlashPack(cmd::flash_pack::Args),
}

/// Runs the command and prints a failure as one line, without a backtrace: every error's
/// message already names what failed and why. Ctrl-C and SIGTERM leave no unfinished file.
fn main() -> ExitCode {
    restore_sigpipe();
    stop::on_signals();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error: clap prints it on stderr and exits with status 2.
        Err(e) if e.use_stderr() => e.exit(),
        // `--help` or `--version`: stdout, through the same checks as every command's output.
        Err(e) => {
            let text = e.render();
            if std::io::stdout().is_terminal() {
                print!("{}", text.ansi());
            } else {
                print!("{text}");
            }
            stdout::flush();
            return ExitCode::SUCCESS;
        }
    };
    let result = run(cli.command);
    stdout::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Synth(args) => cmd::synth::main(args),
        Command::Pack(args) => cmd::pack::main(args),
        Command::Reference(args) => cmd::reference::main(args),
        Command::Run(args) => cmd::run::main(args),
        Command::Info(args) => cmd::info::main(args),
        Command::Verify(args) => cmd::verify::main(args),
        Command::Eval(args) => cmd::eval::main(args),
        Command::Bench(args) => cmd::bench::main(args),
        Command::Encode(args) => cmd::tokens::encode(args),
        Command::Decode(args) => cmd::tokens::decode(args),
        Command::Download(args) => cmd::download::main(args),
        Command::Uf2(args) => cmd::uf2::main(args),
        Command::FlashPack(args) => cmd::flash_pack::main(args),
    }
}

/// Lets `host-tools … | head` end quietly, as other command-line tools do: Rust ignores
/// SIGPIPE, which turns a closed pipe into a panic in `println!`.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#!/usr/bin/env python3
"""Trains a tiny GPT-2 on the King James Bible on the CPU and writes it as host-tools reads it.

The model is GPT-2's architecture (pre-norm blocks, tanh-GELU MLP of 4x width, learned
positions, LM head tied to the token embedding) with GPT-2's own tokenizer (byte-level BPE,
50257 tokens: tiktoken's r50k_base, here through `host-tools encode --file`, which core's
tokenizer equals). It is far smaller than GPT-2 and knows only the one book it was trained on.

Corpus: the King James Version (1611, public domain), as Debian's `bible-kjv` prints it
(`bible -l0 Genesis1:1-Revelation22:21`). Verse numbers and chapter headings are dropped; each
chapter becomes one paragraph, paragraphs are separated by a blank line.

Split, by chapter (1,189 chapters):
  held-out test  the Book of Ruth (4 chapters): never trained on and never used to choose
                 anything; its first verses (as many as fit --n-ctx tokens) are the eval
                 passage written with --passage-out.
  validation     every 30th of the other chapters (index % 30 == 15): watched during training.
  train          the rest.

Output (the Hugging Face hub layout of openai-community/gpt2): config.json and
model.safetensors with `wte`, `wpe`, `h.{i}.*`, `ln_f` (no `transformer.` prefix, no
`lm_head.weight`: the head is tied), the causal-mask buffers `h.{i}.attn.bias` (bool, as
current transformers registers them) and Conv1D weights stored [in, out]; weights in f16 by
default. Beside them: train-log.txt (every logged loss) and training.json (corpus, split,
seed, settings, wall time, threads, final losses measured on the weights as written).

Usage (from the repository root, after `cargo build --release -p host-tools`; the
requirements are in scripts/train-tiny-requirements.txt, outside the project's build and CI):

  python3 scripts/train-tiny.py --out weights/kjv-4x128 --n-layer 4 --n-embd 128 --n-head 4 \\
      --n-ctx 256 --steps 1200 --seed 1 --passage-out data/kjv-ruth-1.txt

(weights/README.md has the commands of both shipped models and what they measured.) Tokens
that never occur in the training text share one embedding row: see `Gpt2` and the
`vocabulary` entry of training.json.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

VOCAB = 50257
BIBLE_RANGE = "Genesis1:1-Revelation22:21"
TEST_BOOK = "Ruth"
VALIDATION_EVERY = 30
VALIDATION_OFFSET = 15


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-ctx", type=int, default=256, help="positions (also the training length)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8, help="sequences of --n-ctx tokens per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=55.0,
                   help="stop early (and say so) when training has taken this long")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--dtype", choices=["f16", "f32"], default="f16", help="stored weight type")
    p.add_argument("--autocast", choices=["bf16", "none"], default="bf16",
                   help="matrix products of the training steps in bfloat16 (evaluation is f32)")
    p.add_argument("--host-tools", type=Path, default=Path("target/release/host-tools"))
    p.add_argument("--passage-out", type=Path, help="write the held-out eval passage here")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Corpus


def bible_text():
    """The whole KJV as (book, chapter, [verse texts]) in canon order."""
    out = subprocess.run(
        ["bible", "-l0", "-m", "8192", BIBLE_RANGE], check=True, capture_output=True, text=True
    ).stdout
    chapters, current = [], None
    for line in out.splitlines():
        if not line.strip():
            continue
        verse = re.fullmatch(r"\s+(\d+) (.*)", line)
        if verse:
            if current is None:
                sys.exit(f"verse before any chapter heading: {line!r}")
            current[2].append(verse.group(2).strip())
            continue
        heading = re.fullmatch(r"(\S.*) (\d+)", line)
        if not heading:
            sys.exit(f"unexpected line from `bible`: {line!r}")
        current = (heading.group(1), int(heading.group(2)), [])
        chapters.append(current)
    verses = sum(len(c[2]) for c in chapters)
    if len(chapters) != 1189 or verses != 31102:
        sys.exit(f"`bible` gave {len(chapters)} chapters and {verses} verses, expected 1189 and 31102")
    return chapters


def package_version(name):
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def split(chapters):
    """Chapter indices of (train, validation, test)."""
    test = [i for i, c in enumerate(chapters) if c[0] == TEST_BOOK]
    rest = [i for i, c in enumerate(chapters) if c[0] != TEST_BOOK]
    validation = [i for k, i in enumerate(rest) if k % VALIDATION_EVERY == VALIDATION_OFFSET]
    train = [i for k, i in enumerate(rest) if k % VALIDATION_EVERY != VALIDATION_OFFSET]
    return train, validation, test


def paragraph(chapter):
    return " ".join(chapter[2])


def encode(host_tools, text):
    """GPT-2 token ids of `text` through the project's tokenizer (tiktoken's r50k_base)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        out = subprocess.run(
            [str(host_tools), "encode", "--file", path], check=True, capture_output=True, text=True
        ).stdout.strip()
    finally:
        os.unlink(path)
    return [int(t) for t in out.split(",")] if out else []


def passage(chapters, test, host_tools, n_ctx):
    """The first verses of the held-out book's first chapter that fit n_ctx tokens."""
    verses = chapters[test[0]][2]
    text = ""
    for k in range(1, len(verses) + 1):
        candidate = " ".join(verses[:k]) + "\n"
        if len(encode(host_tools, candidate)) > n_ctx:
            break
        text = candidate
    return text


# ---------------------------------------------------------------------------------------------
# Model: GPT-2, with parameters named and shaped as the hub file stores them


class Gpt2(torch.nn.Module):
    """GPT-2 whose token-embedding rows for tokens absent from the training text are one
    shared vector (see `vocabulary` in training.json): every other parameter is GPT-2's."""

    def __init__(self, n_layer, n_embd, n_head, n_ctx, seen_ids):
        super().__init__()
        self.n_layer, self.n_embd, self.n_head, self.n_ctx = n_layer, n_embd, n_head, n_ctx
        self.register_buffer("seen_ids", torch.tensor(seen_ids, dtype=torch.int64))
        compact = torch.full((VOCAB,), len(seen_ids), dtype=torch.int64)
        compact[self.seen_ids] = torch.arange(len(seen_ids))
        self.register_buffer("compact_of", compact)
        # log of how many vocabulary rows the shared row stands for, added to its logit.
        bias = torch.zeros(len(seen_ids) + 1)
        bias[-1] = math.log(VOCAB - len(seen_ids))
        self.register_buffer("compact_bias", bias)
        self.params = torch.nn.ParameterDict()
        std = 0.02
        proj_std = std / math.sqrt(2 * n_layer)  # GPT-2's scaling of residual projections

        def add(name, shape, init):
            t = torch.empty(shape)
            if init == "zeros":
                t.zero_()
            elif init == "ones":
                t.fill_(1.0)
            else:
                t.normal_(0.0, init)
            # ParameterDict keys may not contain '.'
            self.params[name.replace(".", "/")] = torch.nn.Parameter(t)

        add("wte.seen", (len(seen_ids), n_embd), std)
        add("wte.unseen", (1, n_embd), std)
        add("wpe.weight", (n_ctx, n_embd), 0.01)
        for i in range(n_layer):
            h = f"h.{i}."
            add(h + "ln_1.weight", (n_embd,), "ones")
            add(h + "ln_1.bias", (n_embd,), "zeros")
            add(h + "attn.c_attn.weight", (n_embd, 3 * n_embd), std)
            add(h + "attn.c_attn.bias", (3 * n_embd,), "zeros")
            add(h + "attn.c_proj.weight", (n_embd, n_embd), proj_std)
            add(h + "attn.c_proj.bias", (n_embd,), "zeros")
            add(h + "ln_2.weight", (n_embd,), "ones")
            add(h + "ln_2.bias", (n_embd,), "zeros")
            add(h + "mlp.c_fc.weight", (n_embd, 4 * n_embd), std)
            add(h + "mlp.c_fc.bias", (4 * n_embd,), "zeros")
            add(h + "mlp.c_proj.weight", (4 * n_embd, n_embd), proj_std)
            add(h + "mlp.c_proj.bias", (n_embd,), "zeros")
        add("ln_f.weight", (n_embd,), "ones")
        add("ln_f.bias", (n_embd,), "zeros")

    def p(self, name):
        return self.params[name.replace(".", "/")]

    def wte(self):
        """The full [50257, n_embd] token embedding (and tied LM head) the model stands for."""
        table = self.p("wte.unseen").expand(VOCAB, self.n_embd).clone()
        table[self.seen_ids] = self.p("wte.seen")
        return table

    def named_weights(self):
        """Every tensor of the checkpoint, by its hub name."""
        weights = {"wte.weight": self.wte()}
        weights.update({k.replace("/", "."): v for k, v in self.params.items() if not k.startswith("wte/")})
        return weights

    def forward(self, idx, full=True):
        """Logits for token ids `idx` [B, T]: over the whole vocabulary, or (full=False, for
        training) over the seen tokens plus one column for all unseen ones together, whose
        log-sum-exp equals the full vocabulary's exactly."""
        B, T = idx.shape
        C, H = self.n_embd, self.n_head
        if full:
            table = self.wte()
        else:
            table = torch.cat([self.p("wte.seen"), self.p("wte.unseen")])
            idx = self.compact_of[idx]
        x = table[idx] + self.p("wpe.weight")[:T]
        for i in range(self.n_layer):
            h = f"h.{i}."
            a = F.layer_norm(x, (C,), self.p(h + "ln_1.weight"), self.p(h + "ln_1.bias"), 1e-5)
            qkv = a @ self.p(h + "attn.c_attn.weight") + self.p(h + "attn.c_attn.bias")
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in qkv.split(C, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y.transpose(1, 2).reshape(B, T, C)
            x = x + y @ self.p(h + "attn.c_proj.weight") + self.p(h + "attn.c_proj.bias")
            m = F.layer_norm(x, (C,), self.p(h + "ln_2.weight"), self.p(h + "ln_2.bias"), 1e-5)
            m = F.gelu(m @ self.p(h + "mlp.c_fc.weight") + self.p(h + "mlp.c_fc.bias"), approximate="tanh")
            x = x + m @ self.p(h + "mlp.c_proj.weight") + self.p(h + "mlp.c_proj.bias")
        x = F.layer_norm(x, (C,), self.p("ln_f.weight"), self.p("ln_f.bias"), 1e-5)
        logits = x @ table.T
        return logits if full else logits + self.compact_bias


def mean_loss(model, tokens, n_ctx, batch=8):
    """Mean next-token loss (nats) over `tokens`, read in non-overlapping windows of n_ctx + 1
    tokens (each window's first token is context only); the tail shorter than 2 is dropped."""
    windows = [tokens[s : s + n_ctx + 1] for s in range(0, len(tokens) - 1, n_ctx)]
    windows = [w for w in windows if len(w) >= 2]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for w in windows:
            t = torch.tensor(w).unsqueeze(0)
            logits = model(t[:, :-1])
            loss = F.cross_entropy(logits.view(-1, VOCAB), t[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += t.shape[1] - 1
    model.train()
    return total / count


# ---------------------------------------------------------------------------------------------
# Output


def write_checkpoint(model, out, dtype):
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_layer": model.n_layer,
        "n_embd": model.n_embd,
        "n_head": model.n_head,
        "n_positions": model.n_ctx,
        "n_ctx": model.n_ctx,
        "vocab_size": VOCAB,
        "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
        "torch_dtype": "float16" if dtype == torch.float16 else "float32",
    }
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.named_weights().items()}
    mask = torch.tril(torch.ones(model.n_ctx, model.n_ctx, dtype=torch.bool)).view(1, 1, model.n_ctx, model.n_ctx)
    for i in range(model.n_layer):
        tensors[f"h.{i}.attn.bias"] = mask.clone()
    tmp = out / "model.safetensors.partial"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main():
    args = parse_args()
    if not args.host_tools.exists():
        sys.exit(f"{args.host_tools} not found: run `cargo build --release -p host-tools` first")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    chapters = bible_text()
    train_ix, val_ix, test_ix = split(chapters)
    texts = {
        name: "\n\n".join(paragraph(chapters[i]) for i in ix) + "\n"
        for name, ix in [("train", train_ix), ("validation", val_ix), ("test", test_ix)]
    }
    corpus_sha = hashlib.sha256("\n\n".join(paragraph(c) for c in chapters).encode()).hexdigest()
    tokens = {name: encode(args.host_tools, text) for name, text in texts.items()}
    heldout = passage(chapters, test_ix, args.host_tools, args.n_ctx)
    heldout_tokens = encode(args.host_tools, heldout)
    if args.passage_out:
        args.passage_out.write_text(heldout)

    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train-log.txt"
    log = open(log_path, "w")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"corpus: King James Bible from Debian bible-kjv-text {package_version('bible-kjv-text')}, "
        f"{len(chapters)} chapters, sha256 of the text {corpus_sha}")
    for name in ["train", "validation", "test"]:
        n = {"train": train_ix, "validation": val_ix, "test": test_ix}[name]
        say(f"{name}: {len(n)} chapters, {len(texts[name])} characters, {len(tokens[name])} tokens")
    say(f"held-out eval passage: {TEST_BOOK} 1, first {len(heldout_tokens)} tokens' worth of verses")

    seen_ids = sorted(set(tokens["train"]))
    say(f"vocabulary: {len(seen_ids)} of the {VOCAB} GPT-2 tokens occur in the training text; "
        f"the other {VOCAB - len(seen_ids)} share one embedding row")
    model = Gpt2(args.n_layer, args.n_embd, args.n_head, args.n_ctx, seen_ids)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    say(f"model: {args.n_layer} layers x {args.n_embd}, {args.n_head} heads, n_ctx {args.n_ctx}, "
        f"{n_params} parameters; seed {args.seed}, {args.threads} threads, torch {torch.__version__}")
    say(f"training: {args.steps} steps x {args.batch} x {args.n_ctx} tokens, AdamW lr {args.lr} "
        f"(warm-up {args.warmup}, cosine to 10%), betas (0.9, 0.95), weight decay {args.weight_decay}")

    train = np.array(tokens["train"], dtype=np.int64)
    val_probe = tokens["validation"][: 16 * args.n_ctx + 1]
    started = time.time()
    running, seen = 0.0, 0
    history = []
    steps_done = args.steps
    for step in range(args.steps):
        if time.time() - started > 60 * args.max_minutes:
            steps_done = step
            say(f"stopped at the time limit ({args.max_minutes} minutes) after {step} steps")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = rng.integers(0, len(train) - args.n_ctx - 1, size=args.batch)
        batch = torch.from_numpy(np.stack([train[s : s + args.n_ctx + 1] for s in starts]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            logits = model(batch[:, :-1], full=False)
        targets = model.compact_of[batch[:, 1:]].reshape(-1)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        seen += 1
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            elapsed = time.time() - started
            line = f"step {step + 1:5d}  train loss {running / seen:.4f}  lr {lr_at(step):.2e}  {elapsed:7.1f} s"
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                v = mean_loss(model, val_probe, args.n_ctx)
                line += f"  validation (first {len(val_probe) - 1} tokens) {v:.4f}"
                history.append({"step": step + 1, "train": running / seen, "validation_probe": v})
            say(line)
            running, seen = 0.0, 0
    wall = time.time() - started

    # Final figures on the weights exactly as stored.
    dtype = torch.float16 if args.dtype == "f16" else torch.float32
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    final = {
        "train_sample": mean_loss(model, tokens["train"][: 64 * args.n_ctx + 1], args.n_ctx),
        "validation": mean_loss(model, tokens["validation"], args.n_ctx),
        "test": mean_loss(model, tokens["test"], args.n_ctx),
        "passage": mean_loss(model, heldout_tokens, args.n_ctx),
    }
    say(f"done in {wall:.0f} s of training ({wall / max(1, steps_done):.2f} s/step)")
    say(f"final losses on the stored {args.dtype} weights (nats/token): " +
        ", ".join(f"{k} {v:.4f} (perplexity {math.exp(v):.2f})" for k, v in final.items()))
    write_checkpoint(model, args.out, dtype)
    meta = {
        "vocabulary": {
            "seen_in_training_text": len(seen_ids),
            "sharing_one_row": VOCAB - len(seen_ids),
            "why": "tokens that never occur in the training text get no signal but the softmax's "
                   "push-down, the same for all of them; they share one trained embedding row, and "
                   "the training loss adds ln(count) to that row's logit, so it is exactly the "
                   "full-vocabulary cross-entropy at a quarter of the cost of the LM head",
        },
        "model": {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head,
                  "n_ctx": args.n_ctx, "vocab_size": VOCAB, "parameters": n_params,
                  "stored_dtype": args.dtype},
        "corpus": {
            "text": "King James Version of the Bible (1611), public domain",
            "source": f"Debian package bible-kjv-text {package_version('bible-kjv-text')}, "
                      f"printed by `bible -l0 -m 8192 {BIBLE_RANGE}` (bible-kjv {package_version('bible-kjv')})",
            "preparation": "verse numbers and chapter headings dropped; one paragraph per chapter "
                           "(verses joined by a space); paragraphs separated by a blank line",
            "sha256_of_prepared_text": corpus_sha,
            "tokenizer": "GPT-2 byte-level BPE (tiktoken r50k_base, 50257 tokens) via host-tools encode",
        },
        "split": {
            "test": f"the Book of {TEST_BOOK} ({len(test_ix)} chapters, {len(tokens['test'])} tokens): "
                    "held out entirely",
            "validation": f"every {VALIDATION_EVERY}th other chapter (index % {VALIDATION_EVERY} == "
                          f"{VALIDATION_OFFSET}): {len(val_ix)} chapters, {len(tokens['validation'])} tokens",
            "train": f"{len(train_ix)} chapters, {len(tokens['train'])} tokens",
            "eval_passage": f"{TEST_BOOK} 1, its first verses within n_ctx: {len(heldout_tokens)} tokens",
        },
        "training": {
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "seed": args.seed, "steps": steps_done, "steps_planned": args.steps, "batch": args.batch, "sequence": args.n_ctx,
            "tokens_seen": steps_done * args.batch * args.n_ctx, "lr": args.lr,
            "warmup": args.warmup, "weight_decay": args.weight_decay,
            "autocast": args.autocast, "threads": args.threads, "wall_seconds": round(wall, 1),
            "machine": " ".join(filter(None, [platform.machine(), platform.processor()]))
                       + f" ({os.cpu_count()} CPUs, shared)",
            "torch": torch.__version__,
        },
        "losses": {"history": history, "final_on_stored_weights": final},
    }
    (args.out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    say(f"wrote {args.out}/config.json, model.safetensors, training.json, train-log.txt")


if __name__ == "__main__":
    main()

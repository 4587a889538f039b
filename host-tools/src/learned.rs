//! The learned checkpoints shipped in `weights/`: small GPT-2s trained here on the King James
//! Bible by `scripts/train-tiny.py` (see `weights/README.md`). They are what the demo runs,
//! what `eval` reads by default and what the tests judge the formats on; they are not
//! OpenAI's GPT-2.

/// The 4 × 128 model (f16 checkpoint): the demo's, `eval`'s default and the tests'.
pub const KJV_4X128_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../weights/kjv-4x128");

/// The 4 × 32 model whose int4 pack, tokenizer included, fits the Pico 2's 3 MiB of flash.
pub const KJV_4X32_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../weights/kjv-4x32");

/// The first verses of Ruth 1 (238 tokens): the held-out passage `eval` reads by default. The
/// Book of Ruth was left out of both models' training text.
pub const KJV_PASSAGE: &str = include_str!("../../data/kjv-ruth-1.txt");

/// Where the eval passage comes from, as `eval` names it.
pub const KJV_PASSAGE_NAME: &str = "data/kjv-ruth-1.txt (Ruth 1, held out of training)";

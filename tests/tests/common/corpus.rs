//! A deterministic corpus of varied strings for tokenizer tests: prose and code, accents,
//! CJK, emoji, digits, runs of spaces, newlines and tabs, GPT-2's contractions, and text that
//! merges across many ranks.

const FRAGMENTS: &[&str] = &[
    "Alan Turing theorized that computers would one day become",
    "the most powerful machines on the planet.",
    "It's",
    "it's",
    "I'm",
    "you're",
    "we've",
    "they'll",
    "she'd",
    "don't",
    "IT'S",
    "O'Neil",
    "rock 'n' roll",
    "'tis",
    "''quoted''",
    "fn main() { println!(\"hello\"); }",
    "for (int i = 0; i < n; ++i) x[i] += y[i];",
    "def f(x):\n    return x ** 2\n",
    "<html><body class=\"x\">&amp;</body></html>",
    "https://example.com/path?q=1&r=two#frag",
    "naïve café résumé façade Ångström",
    "Zürich Straße Œuvre",
    "señor piñata",
    "東京は日本の首都です。",
    "北京欢迎你",
    "한국어 문장",
    "Привет, мир!",
    "Γειά σου κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "🙂",
    "🚀🚀🚀",
    "👩‍👩‍👧‍👦",
    "🇫🇷🇩🇪",
    "✓ ✗ → ← ∑ ∫ √ ∞",
    "0",
    "42",
    "3.14159",
    "1,234,567",
    "2026-11-25",
    "12:30:45",
    "0x7fff_ffff",
    "1e-5",
    "٣٤٥",
    "Ⅻ",
    "½ ¾",
    "²³",
    " ",
    "  ",
    "   ",
    "    ",
    "\t",
    "\t\t",
    "\n",
    "\n\n",
    "\n\n\n",
    "\r\n",
    " \n ",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "----------------------------------------",
    "!!!!!!!!",
    "........",
    "================",
    "____init____",
    "antidisestablishmentarianism",
    "SolidGoldMagikarp",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit",
    "He said: \"Well... I'm not sure.\"",
    "(parenthetical) [bracketed] {braced}",
    "e-mail: someone@example.org",
    "$100.00 + 20% = €120,00",
    "#hashtag @mention",
    "C++ C# F# .NET Node.js",
    "   leading spaces",
    "trailing spaces   ",
    "mixed\t \ttabs",
];

/// `count` strings, deterministic: single fragments first, then random joins of 1–6
/// fragments with random separators.
pub fn corpus(count: usize) -> Vec<String> {
    let separators = ["", " ", "  ", "\n", "\t", ", ", " — ", "\n\n", "   "];
    let mut out: Vec<String> = FRAGMENTS.iter().map(|s| s.to_string()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    while out.len() < count {
        let parts = 1 + next(6);
        let mut s = String::new();
        for i in 0..parts {
            if i > 0 {
                s.push_str(separators[next(separators.len())]);
            }
            s.push_str(FRAGMENTS[next(FRAGMENTS.len())]);
        }
        out.push(s);
    }
    out
}

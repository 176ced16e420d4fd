//! CLIP's byte-level BPE tokenizer, reproducing open_clip's `SimpleTokenizer` (open_clip 3.3.0,
//! default `clean="lower"`) id for id, so that prompts embed exactly as they do in Python.
//!
//! Three parts: `clean` does open_clip's text cleaning (ftfy's fixes, HTML entities through
//! `html`, whitespace, lower-casing, NFC), `bpe` pre-tokenizes with open_clip's regex and
//! applies the merges, `vocab` loads the 48 894 merges of `bpe_simple_vocab_16e6.txt.gz`.
//! `tests/tokenizer_parity.rs` checks the result against open_clip itself.
//!
//! Besides the ftfy gaps `clean` lists, Unicode versions can make us diverge, only for
//! characters assigned in Unicode 15 or later: Python 3.11 lower-cases and normalizes by
//! Unicode 14.0 while Rust's `to_lowercase` and `unicode-normalization` follow newer versions
//! (~55 newer case pairs: U+1C89, U+A7CB.., Garay U+10D50..; newer combining marks such as
//! U+0897 that NFC reorders, see `tests/unicode_parity.rs`), and Python's `regex` already
//! classes Unicode 17.0 letters as `\p{L}` where the `regex` crate still treats them as symbols.

mod bpe;
mod clean;
mod html;
pub mod vocab;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

use clean::Cleaner;
use vocab::Vocab;

pub const CONTEXT_LENGTH: usize = 77;
pub const START_OF_TEXT: i64 = 49406;
pub const END_OF_TEXT: i64 = 49407;

/// Beyond this many cached words the cache is dropped, so tokenizing a huge corpus cannot
/// grow memory without bound (open_clip's cache is unbounded, which changes nothing but RAM).
const CACHE_LIMIT: usize = 100_000;

#[derive(Debug)]
pub enum TokenizeError {
    TooLong { text: String, tokens: usize, max: usize },
}

impl fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizeError::TooLong { text, tokens, max } => write!(
                f,
                "text {text:?} is {tokens} tokens, over the {max}-token context; \
                 shorten it or pass --truncate"
            ),
        }
    }
}

impl std::error::Error for TokenizeError {}

/// Tokenizer with a per-instance BPE cache; the vocabulary and regexes are built once per
/// process and shared, so `Tokenizer::new()` is cheap after the first call.
pub struct Tokenizer {
    shared: &'static Shared,
    cache: Mutex<HashMap<String, Vec<i64>>>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("merges", &self.shared.vocab.merges.len()).finish_non_exhaustive()
    }
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    pub fn new() -> Tokenizer {
        static SHARED: OnceLock<Shared> = OnceLock::new();
        let shared = SHARED.get_or_init(|| Shared {
            vocab: Vocab::load(),
            pretokenize: bpe::pretokenizer(),
            cleaner: Cleaner::new(),
        });
        Tokenizer { shared, cache: Mutex::new(HashMap::new()) }
    }

    /// BPE ids of the cleaned text, without start/end tokens (open_clip's `encode`).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let cleaned = self.shared.cleaner.clean(text);
        let mut ids = Vec::new();
        // A panic elsewhere while holding the lock leaves a still-consistent map, so a
        // poisoned lock is safe to reuse.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for word in self.shared.pretokenize.find_iter(&cleaned) {
            let word = word.as_str();
            if let Some(hit) = cache.get(word) {
                ids.extend_from_slice(hit);
                continue;
            }
            let word_ids = bpe::encode_word(&self.shared.vocab, word);
            ids.extend_from_slice(&word_ids);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.to_owned(), word_ids);
        }
        ids
    }

    /// [start] + encode(text) + [end], zero-padded to context_length. Over-long text: when
    /// `truncate` is true cut to context_length keeping END_OF_TEXT as last id (as open_clip);
    /// else Err(TokenizeError::TooLong { text (shortened for display), tokens, max }).
    ///
    /// A context_length of 0 leaves no room at all: truncation then yields an empty vector.
    pub fn tokenize(&self, text: &str, context_length: usize, truncate: bool) -> Result<Vec<i64>, TokenizeError> {
        let mut ids = Vec::with_capacity(context_length.max(2));
        ids.push(START_OF_TEXT);
        ids.extend(self.encode(text));
        ids.push(END_OF_TEXT);
        if ids.len() > context_length {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    text: shorten_for_display(text, 40),
                    tokens: ids.len(),
                    max: context_length,
                });
            }
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = END_OF_TEXT;
            }
        }
        ids.resize(context_length, 0);
        Ok(ids)
    }
}

fn shorten_for_display(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Everything built once per process from the embedded vocabulary and tables; immutable.
struct Shared {
    vocab: Vocab,
    pretokenize: Regex,
    cleaner: Cleaner,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected ids below were computed once with open_clip 3.3.0 (`SimpleTokenizer().encode`
    // and `open_clip.tokenize`), an independent reference for this implementation.
    #[test]
    fn known_ids_from_open_clip() {
        let tok = Tokenizer::new();
        assert_eq!(tok.encode("a photo of a dog."), [320, 1125, 539, 320, 1929, 269]);
        assert_eq!(tok.encode("Hello, World!"), [3306, 267, 1002, 256]);
        // Curly apostrophe and a double-decoded entity, both undone by the cleaning.
        assert_eq!(tok.encode("it’s a café &amp; bar"), [585, 568, 320, 15304, 261, 2411]);
        // Full-width letters and the "ﬂ" ligature.
        assert_eq!(tok.encode("ＬＯＵＤ ﬂower"), [7464, 4055]);
        assert_eq!(tok.encode("<start_of_text>x"), [49406, 343]);
        assert!(tok.encode("").is_empty());
    }

    #[test]
    fn tokenize_pads_with_zeros() {
        let tok = Tokenizer::new();
        let ids = tok.tokenize("a photo of a dog.", CONTEXT_LENGTH, false).unwrap();
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!(ids[..8], [49406, 320, 1125, 539, 320, 1929, 269, 49407]);
        assert!(ids[8..].iter().all(|&id| id == 0));
        let empty = tok.tokenize("", CONTEXT_LENGTH, false).unwrap();
        assert_eq!(empty[..3], [START_OF_TEXT, END_OF_TEXT, 0]);
    }

    #[test]
    fn too_long_is_an_error_unless_truncating() {
        let tok = Tokenizer::new();
        // 86 BPE ids according to open_clip; truncation ends [.., 1070, 1070, 49407].
        let long = format!("a photo of a {}big dog", "very ".repeat(80));
        assert_eq!(tok.encode(&long).len(), 86);
        let err = tok.tokenize(&long, CONTEXT_LENGTH, false).unwrap_err();
        let TokenizeError::TooLong { text, tokens, max } = &err;
        assert_eq!((*tokens, *max), (88, CONTEXT_LENGTH));
        assert!(text.ends_with('…') && text.chars().count() == 41, "{text}");
        let message = err.to_string();
        assert!(message.contains("88 tokens") && !message.contains('\n'), "{message}");

        let ids = tok.tokenize(&long, CONTEXT_LENGTH, true).unwrap();
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!(ids[..4], [49406, 320, 1125, 539]);
        assert_eq!(ids[74..], [1070, 1070, 49407]);

        // Exactly full still fits; small contexts never panic.
        let fit = tok.tokenize("a photo of a dog.", 8, false).unwrap();
        assert_eq!(fit.last(), Some(&END_OF_TEXT));
        assert_eq!(tok.tokenize("dog", 1, true).unwrap(), [END_OF_TEXT]);
        assert!(tok.tokenize("dog", 0, true).unwrap().is_empty());
        assert!(tok.tokenize("dog", 0, false).is_err());
    }

    #[test]
    fn odd_input_does_not_panic() {
        let tok = Tokenizer::new();
        for text in ["\u{0}", "\u{345}", "&#0;&#xD800;&#99999999999;", "👩‍👩‍👧 🇯🇵", "&", "&#;"] {
            let ids = tok.tokenize(text, CONTEXT_LENGTH, true).unwrap();
            assert_eq!(ids.len(), CONTEXT_LENGTH);
        }
    }
}

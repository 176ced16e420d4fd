//! Byte-level BPE: open_clip's pre-tokenizing regex, and `SimpleTokenizer.bpe` with its
//! encoder lookup for one pre-token.

use regex::Regex;

use super::vocab::{Vocab, WORD_END_OFFSET};
use super::{END_OF_TEXT, START_OF_TEXT};

/// open_clip's pattern, compiled with IGNORECASE. Only the literals are made case-insensitive
/// here: with IGNORECASE Python's `regex` leaves the letter and number classes as they are but
/// drops U+0345 (whose case partner ι is a letter) from the "other" class, so that character
/// matches no alternative at all.
pub(super) fn pretokenizer() -> Regex {
    Regex::new(r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+")
        .expect("valid regex")
}

/// Vocabulary ids of one pre-token: its UTF-8 bytes as symbols (the last one word-final),
/// merged by lowest rank until no known pair remains.
pub(super) fn encode_word(vocab: &Vocab, word: &str) -> Vec<i64> {
    match word {
        "<start_of_text>" => return vec![START_OF_TEXT],
        "<end_of_text>" => return vec![END_OF_TEXT],
        _ => {}
    }
    let bytes = word.as_bytes();
    let Some((&last, init)) = bytes.split_last() else {
        return Vec::new();
    };
    let mut symbols: Vec<u32> = init.iter().map(|&b| vocab.byte_ids[b as usize]).collect();
    symbols.push(vocab.byte_ids[last as usize] + WORD_END_OFFSET);

    while symbols.len() > 1 {
        let best = symbols
            .windows(2)
            .filter_map(|pair| vocab.merges.get(&(pair[0], pair[1])).map(|&m| (m, pair)))
            .min_by_key(|&((rank, _), _)| rank);
        let Some(((_, merged), pair)) = best else {
            break;
        };
        let (left, right) = (pair[0], pair[1]);
        // Merge every occurrence, scanning left to right without overlap.
        let mut next = Vec::with_capacity(symbols.len());
        let mut i = 0;
        while i < symbols.len() {
            if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                next.push(merged);
                i += 2;
            } else {
                next.push(symbols[i]);
                i += 1;
            }
        }
        symbols = next;
    }
    symbols.into_iter().map(i64::from).collect()
}

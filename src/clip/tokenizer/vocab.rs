//! CLIP's BPE vocabulary: the byte symbols and the merge ranks of the embedded
//! `bpe_simple_vocab_16e6.txt.gz`, laid out as open_clip's `SimpleTokenizer` numbers them.

use std::collections::HashMap;
use std::io::Read;

use super::START_OF_TEXT;

const VOCAB_GZ: &[u8] = include_bytes!("../../../assets/bpe_simple_vocab_16e6.txt.gz");
/// open_clip keeps the merges on lines 1..=48894 of the file (`[1 : 49152-256-2+1]`); the
/// vocabulary is 256 byte symbols, the same with `</w>`, one symbol per merge, 2 specials.
const NUM_MERGES: usize = 49152 - 256 - 2;
/// Ids 0..512 are the byte symbols (plain, then with `</w>`); merge `i` creates id 512 + i.
const FIRST_MERGE_ID: u32 = 512;
/// Id of a byte's word-final form (`</w>`) relative to its plain form.
pub(super) const WORD_END_OFFSET: u32 = 256;

pub(super) struct Vocab {
    /// Vocabulary id of each byte's symbol (without `</w>`; add WORD_END_OFFSET for the
    /// word-final form).
    pub(super) byte_ids: [u32; 256],
    /// (left id, right id) -> (merge rank, id of the merged symbol).
    pub(super) merges: HashMap<(u32, u32), (u32, u32)>,
}

impl Vocab {
    /// Parse the embedded file; it ships with the binary, so a failure here is a build bug.
    pub(super) fn load() -> Vocab {
        let tables = BpeTables::embedded();
        let symbol_ids: HashMap<&str, u32> =
            tables.symbols.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
        let mut byte_ids = [0u32; 256];
        for (i, &b) in tables.byte_order.iter().enumerate() {
            byte_ids[b as usize] = i as u32;
        }
        let mut merges = HashMap::with_capacity(NUM_MERGES);
        for (rank, (left, right)) in tables.merges.iter().enumerate() {
            let merged_id = FIRST_MERGE_ID + rank as u32;
            merges.insert((symbol_ids[left.as_str()], symbol_ids[right.as_str()]), (rank as u32, merged_id));
        }
        assert_eq!(FIRST_MERGE_ID as usize + merges.len(), START_OF_TEXT as usize, "vocabulary size");
        Vocab { byte_ids, merges }
    }
}

/// The embedded BPE file as tables: every symbol in id order (the two special tokens last) and
/// the merges in rank order. The tokenizer and the Hugging Face tokenizer files
/// (`vocab.json`, `merges.txt`) that `export` writes are both made from it.
pub struct BpeTables {
    /// Symbol of each id: 256 byte symbols, the same with `</w>`, one per merge, then
    /// `<|startoftext|>` and `<|endoftext|>`.
    pub symbols: Vec<String>,
    pub merges: Vec<(String, String)>,
    /// The byte each of the first 256 ids stands for.
    byte_order: Vec<u8>,
}

impl BpeTables {
    pub fn embedded() -> BpeTables {
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .expect("embedded BPE vocabulary is valid gzip'd UTF-8");

        // The vocabulary's first 256 entries follow the order of GPT-2's byte->unicode table:
        // printable Latin-1 bytes first (mapped to themselves), then the rest shifted to
        // U+0100.. so that no symbol is whitespace or a control character.
        let mut byte_order: Vec<u8> = (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut byte_chars: Vec<char> = byte_order.iter().map(|&b| char::from(b)).collect();
        let mut shifted = 0u32;
        for b in 0..=255u8 {
            if !byte_order.contains(&b) {
                byte_order.push(b);
                byte_chars.push(char::from_u32(256 + shifted).expect("valid code point"));
                shifted += 1;
            }
        }
        let mut symbols: Vec<String> = byte_chars.iter().map(|c| c.to_string()).collect();
        symbols.extend(byte_chars.iter().map(|c| format!("{c}</w>")));
        debug_assert_eq!(symbols.len() as u32, WORD_END_OFFSET * 2);
        let mut merges = Vec::with_capacity(NUM_MERGES);
        for (rank, line) in text.split('\n').skip(1).take(NUM_MERGES).enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(left), Some(right)) = (parts.next(), parts.next()) else {
                panic!("malformed merge line {}: {line:?}", rank + 2);
            };
            symbols.push(format!("{left}{right}"));
            merges.push((left.to_string(), right.to_string()));
        }
        symbols.push("<|startoftext|>".into());
        symbols.push("<|endoftext|>".into());
        BpeTables { symbols, merges, byte_order }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_number_symbols_as_open_clip() {
        let t = BpeTables::embedded();
        assert_eq!(t.symbols.len(), 49408);
        assert_eq!(t.merges.len(), NUM_MERGES);
        // open_clip's encoder: id 320 is "a</w>", 1125 "photo</w>" (from `known_ids_from_open_clip`).
        assert_eq!(t.symbols[320], "a</w>");
        assert_eq!(t.symbols[1125], "photo</w>");
        assert_eq!(t.symbols[START_OF_TEXT as usize], "<|startoftext|>");
        assert_eq!(t.symbols[49407], "<|endoftext|>");
    }
}

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
        let mut byte_ids = [0u32; 256];
        let mut symbol_ids: HashMap<String, u32> = HashMap::with_capacity(NUM_MERGES + 512);
        for (i, (&b, &c)) in byte_order.iter().zip(&byte_chars).enumerate() {
            byte_ids[b as usize] = i as u32;
            symbol_ids.insert(c.to_string(), i as u32);
            symbol_ids.insert(format!("{c}</w>"), i as u32 + WORD_END_OFFSET);
        }

        let mut merges = HashMap::with_capacity(NUM_MERGES);
        for (rank, line) in text.split('\n').skip(1).take(NUM_MERGES).enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(left), Some(right)) = (parts.next(), parts.next()) else {
                panic!("malformed merge line {}: {line:?}", rank + 2);
            };
            let merged_id = FIRST_MERGE_ID + rank as u32;
            let left_id = symbol_ids[left];
            let right_id = symbol_ids[right];
            symbol_ids.insert(format!("{left}{right}"), merged_id);
            merges.insert((left_id, right_id), (rank as u32, merged_id));
        }
        assert_eq!(FIRST_MERGE_ID as usize + merges.len(), START_OF_TEXT as usize, "vocabulary size");
        Vocab { byte_ids, merges }
    }
}

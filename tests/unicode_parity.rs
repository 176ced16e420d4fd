//! The tokenizer's cleaning normalizes with the `unicode-normalization` crate (NFC, and NFKC
//! for ftfy's width table) where open_clip uses Python's `unicodedata`. Both follow Unicode, but
//! possibly different versions of it: this compares NFC, NFD, NFKC and the canonical combining
//! class of every code point against Python (tests/ref_unicode.py), and requires agreement on
//! every code point Python assigns. Code points only the crate's newer Unicode assigns are
//! counted and printed, not compared: there the two may differ.

mod common;

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::canonical_combining_class;

#[derive(serde::Deserialize)]
struct Reference {
    unidata_version: String,
    unassigned: Vec<(u32, u32)>,
    changed: Vec<(u32, String, String, String, u8)>,
}

fn forms(c: char) -> (String, String, String, u8) {
    let s = c.to_string();
    (s.nfc().collect(), s.nfd().collect(), s.nfkc().collect(), canonical_combining_class(c))
}

#[test]
fn normalization_matches_python_on_every_code_point_python_assigns() {
    let reference: Reference = serde_json::from_str(&common::run_reference("ref_unicode.py", &[])).expect("JSON");
    assert!(reference.changed.len() > 5000, "only {} non-trivial code points", reference.changed.len());
    let changed: HashMap<u32, (String, String, String, u8)> =
        reference.changed.into_iter().map(|(cp, nfc, nfd, nfkc, ccc)| (cp, (nfc, nfd, nfkc, ccc))).collect();
    // Sorted, disjoint ranges: the last one starting at or before cp is the only candidate.
    let unassigned = |cp: u32| {
        let i = reference.unassigned.partition_point(|&(lo, _)| lo <= cp);
        i > 0 && reference.unassigned[i - 1].1 >= cp
    };

    let mut mismatches = Vec::new();
    let mut newer = Vec::new();
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let cp = c as u32;
        let ours = forms(c);
        let identity = (c.to_string(), c.to_string(), c.to_string(), 0);
        let want = match changed.get(&cp) {
            Some(python) => python.clone(),
            None if unassigned(cp) => {
                if ours != identity {
                    newer.push((c, ours));
                }
                continue;
            }
            None => identity,
        };
        if ours != want {
            mismatches.push(format!("U+{cp:04X}: python {want:?}, crate {ours:?}"));
        }
    }
    println!(
        "Python's Unicode {}, unicode-normalization's {:?}: {} code points unassigned in Python \
         that the crate normalizes or gives a combining class: {} changed by NFC alone, {} by NFD, \
         {} by NFKC, {} with a combining class",
        reference.unidata_version,
        unicode_normalization::UNICODE_VERSION,
        newer.len(),
        newer.iter().filter(|(c, ours)| ours.0 != c.to_string()).count(),
        newer.iter().filter(|(c, ours)| ours.1 != c.to_string()).count(),
        newer.iter().filter(|(c, ours)| ours.2 != c.to_string()).count(),
        newer.iter().filter(|(_, ours)| ours.3 != 0).count(),
    );
    assert!(
        mismatches.is_empty(),
        "{} code points normalize differently from Python:\n{}",
        mismatches.len(),
        mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

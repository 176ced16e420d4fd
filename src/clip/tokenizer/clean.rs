//! open_clip's text cleaning (`_clean_lower`): `ftfy.fix_text`, `html.unescape` twice,
//! whitespace collapse, lower-casing.
//!
//! Checked against ftfy 6.3.1, whose `fix_text` defaults are: HTML unescaping ("auto"),
//! terminal escapes removed, `fix_encoding`, C1 controls, Latin ligatures, character width,
//! quotes, line breaks, surrogates, control characters, then `unicodedata.normalize("NFC")`.
//! The NFC, and the NFKC that ftfy's width table is built from, are `unicode-normalization`'s;
//! `tests/unicode_parity.rs` checks them against Python's `unicodedata`, which only differs for
//! characters that Python's Unicode version does not yet assign.

use std::collections::HashMap;

use regex::Regex;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::html::{Html, windows_1252_c1};

pub(super) struct Cleaner {
    html: Html,
    terminal_escape: Regex,
    /// ftfy's `WIDTH_MAP`: U+3000 to a space, U+FF01..U+FFEF to their NFKC forms.
    width_map: HashMap<char, String>,
}

impl Cleaner {
    pub(super) fn new() -> Cleaner {
        let mut width_map: HashMap<char, String> = HashMap::from([('\u{3000}', " ".to_owned())]);
        for c in '\u{FF01}'..='\u{FFEF}' {
            let alternate: String = c.to_string().nfkc().collect();
            if alternate != c.to_string() {
                width_map.insert(c, alternate);
            }
        }
        Cleaner {
            html: Html::new(),
            terminal_escape: Regex::new(r"\x1B\[(?:\d|;)*[a-zA-Z]").expect("valid regex"),
            width_map,
        }
    }

    /// open_clip's `_clean_lower`: ftfy, `html.unescape` twice, whitespace collapse, lower.
    pub(super) fn clean(&self, text: &str) -> String {
        let fixed = self.ftfy_fix_text(text);
        let unescaped = self.html.unescape(&self.html.unescape(&fixed));
        let mut collapsed = String::with_capacity(unescaped.len());
        for word in unescaped.split(is_python_space).filter(|w| !w.is_empty()) {
            if !collapsed.is_empty() {
                collapsed.push(' ');
            }
            collapsed.push_str(word);
        }
        // Rust's lower-casing matches Python's str.lower (full mappings, so 'İ' -> "i̇", and
        // the Final_Sigma rule); only characters whose case differs between the two Unicode
        // versions (Python 3.11 ships 14.0) can disagree.
        collapsed.to_lowercase()
    }

    /// `ftfy.fix_text` with its default configuration, minus the mojibake detection.
    ///
    /// Covered: HTML entity decoding (ftfy's own rules, and switched off from the first line
    /// containing '<' on, as ftfy does), C1 control characters read as Windows-1252, Latin
    /// ligatures (ﬁ, ĳ, ǆ...), full-/half-width forms, curly quotes, line breaks, ANSI terminal
    /// escapes, control characters, NFC normalization, all repeated per line until nothing
    /// changes.
    ///
    /// Not covered: `fix_encoding` (mojibake such as "cafÃ©" -> "café", with its
    /// `restore_byte_a0`, `replace_lossy_sequences` and `decode_inconsistent_utf8` sub-steps),
    /// which needs ftfy's badness heuristics; text that does not look like mojibake is left
    /// alone by ftfy too. Named entities are limited to those in `html.rs`. Surrogate repair
    /// cannot apply to Rust strings.
    fn ftfy_fix_text(&self, text: &str) -> String {
        // ftfy fixes segments ending at each newline, capped at a million code points.
        const MAX_SEGMENT_CHARS: usize = 1_000_000;
        let mut out = String::with_capacity(text.len());
        let mut unescape_html = true;
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if let Some((cap, _)) = rest[..end].char_indices().nth(MAX_SEGMENT_CHARS) {
                end = cap;
            }
            let (segment, tail) = rest.split_at(end);
            if segment.contains('<') {
                unescape_html = false;
            }
            out.push_str(&self.ftfy_fix_segment(segment, unescape_html));
            rest = tail;
        }
        out
    }

    fn ftfy_fix_segment(&self, segment: &str, unescape_html: bool) -> String {
        // ftfy loops until a fixed point; each step only shrinks or maps the text, so a
        // handful of rounds suffice and the cap is only a guard against a bug here.
        let mut text = segment.to_owned();
        for _ in 0..64 {
            let before = text.clone();
            if unescape_html {
                text = self.html.ftfy_unescape(&text);
            }
            text = text.chars().map(fix_c1_control).collect();
            text = fix_latin_ligatures(&text);
            text = self.fix_character_width(&text);
            text = text.chars().map(uncurl_quote).collect();
            text = fix_line_breaks(&text);
            text = self.terminal_escape.replace_all(&text, "").into_owned();
            text.retain(|c| !is_ftfy_control_char(c));
            if is_nfc_quick(text.chars()) != IsNormalized::Yes {
                text = text.nfc().collect();
            }
            if text == before {
                break;
            }
        }
        text
    }

    fn fix_character_width(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match self.width_map.get(&c) {
                Some(alternate) => out.push_str(alternate),
                None => out.push(c),
            }
        }
        out
    }
}

/// Python's `str.isspace`, which `str.split()` uses: Unicode White_Space plus the
/// information separators U+001C..U+001F (Rust's `char::is_whitespace` lacks those).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

fn fix_c1_control(c: char) -> char {
    if ('\u{80}'..='\u{9F}').contains(&c) { windows_1252_c1(c as u32) } else { c }
}

/// ftfy's `LIGATURES` table (its own choice, not NFKC: ﬅ stays "ſt").
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let replacement = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(replacement);
    }
    out
}

fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2BC}' | '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        _ => c,
    }
}

fn fix_line_breaks(text: &str) -> String {
    if !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
        return text.to_owned();
    }
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `remove_control_chars`: C0 controls other than tab/newline/form feed/CR, DEL,
/// deprecated Arabic format controls, BOM and interlinear annotation/object replacement.
fn is_ftfy_control_char(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are what open_clip 3.3.0's `_clean_lower` returns for each input.
    #[test]
    fn cleaning_steps() {
        let s = Cleaner::new();
        // ftfy drops the U+001F control character before whitespace is collapsed.
        assert_eq!(s.clean("  A\tb\n\nC\u{1F}d\u{3000}e\u{A0}"), "a b cd e");
        assert_eq!(s.clean("&amp;amp;lt; &copy2024 this&not that"), "< ©2024 this¬ that");
        assert_eq!(s.clean("P&EACUTE;REZ &#8217; &#x27;"), "pérez ' '");
        assert_eq!(s.clean("cafe\u{301} \u{1100}\u{1161}\u{11A8}"), "café 각");
        assert_eq!(s.clean("ΟΔΥΣΣΕΥΣ"), "οδυσσευς");
        assert_eq!(s.clean("\u{1B}[31mred\u{1B}[0m \u{93}q\u{94}"), "red \"q\"");
        // CJK compatibility ideographs (NFC maps them) and half-width kana with a voicing mark.
        assert_eq!(s.clean("\u{F900}\u{2F800} \u{FF76}\u{FF9E}"), "\u{8C48}\u{4E3D} \u{30AC}");
        assert_eq!(s.clean("\u{FB05}"), "\u{17F}t");
    }
}

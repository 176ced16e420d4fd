//! HTML character references, decoded the two ways open_clip's cleaning does: Python's
//! `html.unescape` (run twice after ftfy) and ftfy's own stricter `unescape_html`.

use std::collections::HashMap;

use regex::Regex;

pub(super) struct Html {
    charref: Regex,
    ftfy_entity: Regex,
    /// Entity name (no `&`/`;`) -> (value, also valid without the semicolon).
    html5: HashMap<&'static str, (char, bool)>,
    /// ftfy's own entity table: semicolon entities plus upper-cased spellings of them.
    ftfy_entities: HashMap<String, String>,
}

impl Html {
    pub(super) fn new() -> Html {
        let mut html = Html {
            charref: Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)").expect("valid regex"),
            ftfy_entity: Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid regex"),
            html5: NAMED_ENTITIES.iter().map(|&(name, value, legacy)| (name, (value, legacy))).collect(),
            ftfy_entities: HashMap::new(),
        };
        html.ftfy_entities = html.build_ftfy_entities();
        html
    }

    /// ftfy decodes every semicolon-terminated HTML5 entity, plus the upper-cased spelling of
    /// all-lower-case names (`&EACUTE;` -> `É`) where that spelling is not itself something
    /// `html.unescape` would decode.
    fn build_ftfy_entities(&self) -> HashMap<String, String> {
        let mut table = HashMap::new();
        for &(name, value, _) in NAMED_ENTITIES {
            table.insert(name.to_owned(), value.to_string());
            if name.bytes().all(|b| !b.is_ascii_uppercase()) {
                let upper = name.to_ascii_uppercase();
                let entity = format!("&{upper};");
                if self.unescape(&entity) == entity {
                    table.insert(upper, value.to_uppercase().collect());
                }
            }
        }
        table
    }

    /// ftfy's `unescape_html`: only semicolon-terminated entities, to avoid decoding text such
    /// as "this&not that"; numeric references only where they consume their semicolon.
    pub(super) fn ftfy_unescape(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_owned();
        }
        self.ftfy_entity
            .replace_all(text, |caps: &regex::Captures| {
                let entity = &caps[0];
                let name = &entity[1..entity.len() - 1];
                if let Some(value) = self.ftfy_entities.get(name) {
                    return value.clone();
                }
                if entity.starts_with("&#") {
                    let decoded = self.unescape(entity);
                    if !decoded.contains(';') {
                        return decoded;
                    }
                }
                entity.to_owned()
            })
            .into_owned()
    }

    /// Python's `html.unescape` (HTML5 rules, including legacy names without semicolon such
    /// as "&amp" and their longest-prefix matching: "&copy2024" -> "©2024").
    pub(super) fn unescape(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_owned();
        }
        self.charref
            .replace_all(text, |caps: &regex::Captures| {
                let reference = &caps[1];
                if let Some(number) = reference.strip_prefix('#') {
                    let number = number.trim_end_matches(';');
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => parse_saturating(hex, 16),
                        None => parse_saturating(number, 10),
                    };
                    return numeric_charref(code);
                }
                let (name, has_semicolon) = match reference.strip_suffix(';') {
                    Some(name) => (name, true),
                    None => (reference, false),
                };
                if let Some(&(value, legacy)) = self.html5.get(name)
                    && (has_semicolon || legacy)
                {
                    return value.to_string();
                }
                // Longest proper prefix (at least 2 characters) that is a legacy name.
                let cuts: Vec<usize> = reference.char_indices().map(|(i, _)| i).skip(2).collect();
                for &cut in cuts.iter().rev() {
                    if let Some(&(value, true)) = self.html5.get(&reference[..cut]) {
                        return format!("{value}{}", &reference[cut..]);
                    }
                }
                format!("&{reference}")
            })
            .into_owned()
    }
}

fn parse_saturating(digits: &str, radix: u32) -> u32 {
    digits.chars().fold(0u32, |acc, d| {
        let d = d.to_digit(radix).unwrap_or(0);
        acc.saturating_mul(radix).saturating_add(d)
    })
}

/// Numeric character reference per `html.unescape`: the Windows-1252 reading of C1 code
/// points, U+FFFD for NUL/surrogates/out-of-range, and nothing for other invalid code points.
fn numeric_charref(code: u32) -> String {
    if code == 0 {
        return '\u{FFFD}'.to_string();
    }
    if code == 0x0D {
        return '\r'.to_string();
    }
    if (0x80..=0x9F).contains(&code) {
        return windows_1252_c1(code).to_string();
    }
    let invalid = (0x01..=0x08).contains(&code)
        || (0x0E..=0x1F).contains(&code)
        || (0x7F..=0x9F).contains(&code)
        || (0xFDD0..=0xFDEF).contains(&code)
        || code == 0x0B
        || (code <= 0x10FFFF && (code & 0xFFFE) == 0xFFFE);
    match char::from_u32(code) {
        None => '\u{FFFD}'.to_string(),
        Some(_) if invalid => String::new(),
        Some(c) => c.to_string(),
    }
}

/// What byte 0x80..0x9F means in Windows-1252; the five bytes it leaves undefined stay as
/// the C1 control (as Python's "sloppy-windows-1252" and `html.unescape` do).
pub(super) fn windows_1252_c1(code: u32) -> char {
    const TABLE: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
    ];
    TABLE[(code - 0x80) as usize]
}

// Data, generated once from Python 3.11's `html.entities.html5`, restricted to HTML 4's
// names, `apos`, the names of ASCII characters, and any upper-case names ftfy's upper-casing
// rule must see; the flag marks names `html.unescape` also accepts without a semicolon (all
// 106 such names). Other HTML5 names (`&hearts;` is in, `&starf;` is not) stay undecoded
// where open_clip would decode them.
#[rustfmt::skip]
const NAMED_ENTITIES: &[(&str, char, bool)] = &[
    ("AElig", 'Æ', true), ("AMP", '&', true), ("Aacute", 'Á', true), ("Acirc", 'Â', true),
    ("Agrave", 'À', true), ("Alpha", 'Α', false), ("Aring", 'Å', true), ("Atilde", 'Ã', true),
    ("Auml", 'Ä', true), ("Beta", 'Β', false), ("COPY", '©', true), ("Ccedil", 'Ç', true),
    ("Chi", 'Χ', false), ("Dagger", '‡', false), ("Delta", 'Δ', false),
    ("DiacriticalGrave", '`', false), ("ETH", 'Ð', true), ("Eacute", 'É', true),
    ("Ecirc", 'Ê', true), ("Egrave", 'È', true), ("Epsilon", 'Ε', false), ("Eta", 'Η', false),
    ("Euml", 'Ë', true), ("GT", '>', true), ("Gamma", 'Γ', false), ("Hat", '^', false),
    ("Iacute", 'Í', true), ("Icirc", 'Î', true), ("Igrave", 'Ì', true), ("Iota", 'Ι', false),
    ("Iuml", 'Ï', true), ("Kappa", 'Κ', false), ("LT", '<', true), ("Lambda", 'Λ', false),
    ("Mu", 'Μ', false), ("NewLine", '\u{a}', false), ("Ntilde", 'Ñ', true), ("Nu", 'Ν', false),
    ("OElig", 'Œ', false), ("Oacute", 'Ó', true), ("Ocirc", 'Ô', true), ("Ograve", 'Ò', true),
    ("Omega", 'Ω', false), ("Omicron", 'Ο', false), ("Oslash", 'Ø', true), ("Otilde", 'Õ', true),
    ("Ouml", 'Ö', true), ("Phi", 'Φ', false), ("Pi", 'Π', false), ("Prime", '″', false),
    ("Psi", 'Ψ', false), ("QUOT", '"', true), ("REG", '®', true), ("Rho", 'Ρ', false),
    ("Scaron", 'Š', false), ("Sigma", 'Σ', false), ("THORN", 'Þ', true), ("TRADE", '™', false),
    ("Tab", '\u{9}', false), ("Tau", 'Τ', false), ("Theta", 'Θ', false), ("Uacute", 'Ú', true),
    ("Ucirc", 'Û', true), ("Ugrave", 'Ù', true), ("UnderBar", '_', false),
    ("Upsilon", 'Υ', false), ("Uuml", 'Ü', true), ("VerticalLine", '|', false),
    ("Xi", 'Ξ', false), ("Yacute", 'Ý', true), ("Yuml", 'Ÿ', false), ("Zeta", 'Ζ', false),
    ("aacute", 'á', true), ("acirc", 'â', true), ("acute", '´', true), ("aelig", 'æ', true),
    ("agrave", 'à', true), ("alefsym", 'ℵ', false), ("alpha", 'α', false), ("amp", '&', true),
    ("and", '∧', false), ("ang", '∠', false), ("apos", '\'', false), ("aring", 'å', true),
    ("ast", '*', false), ("asymp", '≈', false), ("atilde", 'ã', true), ("auml", 'ä', true),
    ("bdquo", '„', false), ("beta", 'β', false), ("brvbar", '¦', true), ("bsol", '\\', false),
    ("bull", '•', false), ("cap", '∩', false), ("ccedil", 'ç', true), ("cedil", '¸', true),
    ("cent", '¢', true), ("chi", 'χ', false), ("circ", '\u{2c6}', false), ("clubs", '♣', false),
    ("colon", ':', false), ("comma", ',', false), ("commat", '@', false), ("cong", '≅', false),
    ("copy", '©', true), ("crarr", '↵', false), ("cup", '∪', false), ("curren", '¤', true),
    ("dArr", '⇓', false), ("dagger", '†', false), ("darr", '↓', false), ("deg", '°', true),
    ("delta", 'δ', false), ("diams", '♦', false), ("divide", '÷', true), ("dollar", '$', false),
    ("eacute", 'é', true), ("ecirc", 'ê', true), ("egrave", 'è', true), ("empty", '∅', false),
    ("emsp", '\u{2003}', false), ("ensp", '\u{2002}', false), ("epsilon", 'ε', false),
    ("equals", '=', false), ("equiv", '≡', false), ("eta", 'η', false), ("eth", 'ð', true),
    ("euml", 'ë', true), ("euro", '€', false), ("excl", '!', false), ("exist", '∃', false),
    ("fnof", 'ƒ', false), ("forall", '∀', false), ("frac12", '½', true), ("frac14", '¼', true),
    ("frac34", '¾', true), ("frasl", '⁄', false), ("gamma", 'γ', false), ("ge", '≥', false),
    ("grave", '`', false), ("gt", '>', true), ("hArr", '⇔', false), ("harr", '↔', false),
    ("hearts", '♥', false), ("hellip", '…', false), ("iacute", 'í', true), ("icirc", 'î', true),
    ("iexcl", '¡', true), ("igrave", 'ì', true), ("image", 'ℑ', false), ("infin", '∞', false),
    ("int", '∫', false), ("iota", 'ι', false), ("iquest", '¿', true), ("isin", '∈', false),
    ("iuml", 'ï', true), ("kappa", 'κ', false), ("lArr", '⇐', false), ("lambda", 'λ', false),
    ("lang", '⟨', false), ("laquo", '«', true), ("larr", '←', false), ("lbrace", '{', false),
    ("lbrack", '[', false), ("lceil", '⌈', false), ("lcub", '{', false), ("ldquo", '“', false),
    ("le", '≤', false), ("lfloor", '⌊', false), ("lowast", '∗', false), ("lowbar", '_', false),
    ("loz", '◊', false), ("lpar", '(', false), ("lrm", '\u{200e}', false), ("lsaquo", '‹', false),
    ("lsqb", '[', false), ("lsquo", '‘', false), ("lt", '<', true), ("macr", '¯', true),
    ("mdash", '—', false), ("micro", 'µ', true), ("midast", '*', false), ("middot", '·', true),
    ("minus", '−', false), ("mu", 'μ', false), ("nabla", '∇', false), ("nbsp", '\u{a0}', true),
    ("ndash", '–', false), ("ne", '≠', false), ("ni", '∋', false), ("not", '¬', true),
    ("notin", '∉', false), ("nsub", '⊄', false), ("ntilde", 'ñ', true), ("nu", 'ν', false),
    ("num", '#', false), ("oacute", 'ó', true), ("ocirc", 'ô', true), ("oelig", 'œ', false),
    ("ograve", 'ò', true), ("oline", '‾', false), ("omega", 'ω', false), ("omicron", 'ο', false),
    ("oplus", '⊕', false), ("or", '∨', false), ("ordf", 'ª', true), ("ordm", 'º', true),
    ("oslash", 'ø', true), ("otilde", 'õ', true), ("otimes", '⊗', false), ("ouml", 'ö', true),
    ("para", '¶', true), ("part", '∂', false), ("percnt", '%', false), ("period", '.', false),
    ("permil", '‰', false), ("perp", '⊥', false), ("phi", 'φ', false), ("pi", 'π', false),
    ("piv", 'ϖ', false), ("plus", '+', false), ("plusmn", '±', true), ("pound", '£', true),
    ("prime", '′', false), ("prod", '∏', false), ("prop", '∝', false), ("psi", 'ψ', false),
    ("quest", '?', false), ("quot", '"', true), ("rArr", '⇒', false), ("radic", '√', false),
    ("rang", '⟩', false), ("raquo", '»', true), ("rarr", '→', false), ("rbrace", '}', false),
    ("rbrack", ']', false), ("rceil", '⌉', false), ("rcub", '}', false), ("rdquo", '”', false),
    ("real", 'ℜ', false), ("reg", '®', true), ("rfloor", '⌋', false), ("rho", 'ρ', false),
    ("rlm", '\u{200f}', false), ("rpar", ')', false), ("rsaquo", '›', false),
    ("rsqb", ']', false), ("rsquo", '’', false), ("sbquo", '‚', false), ("scaron", 'š', false),
    ("sdot", '⋅', false), ("sect", '§', true), ("semi", ';', false), ("shy", '\u{ad}', true),
    ("sigma", 'σ', false), ("sigmaf", 'ς', false), ("sim", '∼', false), ("sol", '/', false),
    ("spades", '♠', false), ("sub", '⊂', false), ("sube", '⊆', false), ("sum", '∑', false),
    ("sup", '⊃', false), ("sup1", '¹', true), ("sup2", '²', true), ("sup3", '³', true),
    ("supe", '⊇', false), ("szlig", 'ß', true), ("tau", 'τ', false), ("there4", '∴', false),
    ("theta", 'θ', false), ("thetasym", 'ϑ', false), ("thinsp", '\u{2009}', false),
    ("thorn", 'þ', true), ("tilde", '˜', false), ("times", '×', true), ("trade", '™', false),
    ("uArr", '⇑', false), ("uacute", 'ú', true), ("uarr", '↑', false), ("ucirc", 'û', true),
    ("ugrave", 'ù', true), ("uml", '¨', true), ("upsih", 'ϒ', false), ("upsilon", 'υ', false),
    ("uuml", 'ü', true), ("verbar", '|', false), ("vert", '|', false), ("weierp", '℘', false),
    ("xi", 'ξ', false), ("yacute", 'ý', true), ("yen", '¥', true), ("yuml", 'ÿ', true),
    ("zeta", 'ζ', false), ("zwj", '\u{200d}', false), ("zwnj", '\u{200c}', false),
];

//! `${NAME}` in a pipeline file's strings: where data and weights live differs per machine,
//! what the experiment is does not.

/// `text` with every `${NAME}` replaced by `lookup(NAME)`, and `${NAME:-fallback}` by the
/// fallback where NAME is unset or empty (as in the shell). A `$` not followed by `{` stays.
/// An unset or empty variable without a fallback is an error naming it: an empty root would
/// silently mean the current folder.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in \"{text}\""))?;
        let (name, fallback) = match after[..end].split_once(":-") {
            Some((name, fallback)) => (name, Some(fallback)),
            None => (&after[..end], None),
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`${{{name}}}` is not an environment variable name"));
        }
        match (lookup(name), fallback) {
            (Some(value), _) if !value.is_empty() => out.push_str(&value),
            (_, Some(fallback)) if !fallback.is_empty() => out.push_str(fallback),
            _ => return Err(format!("environment variable {name} is not set; export {name}=... before running")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/data".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_names_what_is_missing() {
        assert_eq!(expand("${DATA}/caltech", &env).unwrap(), "/data/caltech");
        assert_eq!(expand("a$b ${DATA}${DATA}", &env).unwrap(), "a$b /data/data");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert!(expand("${WEIGHTS}", &env).unwrap_err().contains("WEIGHTS is not set"));
        assert!(expand("${EMPTY}", &env).unwrap_err().contains("EMPTY is not set"));
        assert!(expand("${DATA", &env).unwrap_err().contains("closing"));
        assert!(expand("${1X}", &env).unwrap_err().contains("not an environment variable name"));
        assert_eq!(expand("${DATA:-/usr}/x", &env).unwrap(), "/data/x");
        assert_eq!(expand("${NOPE:-/usr/share}/x", &env).unwrap(), "/usr/share/x");
        assert_eq!(expand("${EMPTY:-/d}", &env).unwrap(), "/d");
        assert!(expand("${NOPE:-}", &env).unwrap_err().contains("NOPE is not set"));
    }
}

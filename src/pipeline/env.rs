//! `${NAME}` in a pipeline file's strings: where data and weights live differs per machine,
//! what the experiment is does not.

/// `text` with every `${NAME}` replaced by `lookup(NAME)`. A `$` not followed by `{` stays.
/// An unset or empty variable is an error naming it: an empty root would silently mean the
/// current folder.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in \"{text}\""))?;
        let name = &after[..end];
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`${{{name}}}` is not an environment variable name"));
        }
        match lookup(name) {
            Some(value) if !value.is_empty() => out.push_str(&value),
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
    }
}

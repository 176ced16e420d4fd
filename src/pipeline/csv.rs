//! The small CSV tables the runner reads (an eval's metrics.csv, results.csv for `gc`) and
//! writes (results.csv, summary.csv): RFC 4180 quoting, written whole or not at all.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut records = parse(&text).with_context(|| format!("{}: not a CSV file", path.display()))?.into_iter();
        let header = records.next().unwrap_or_default();
        let rows: Vec<Vec<String>> = records.collect();
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != header.len()) {
            bail!("{}: row {} has {} fields, the header {}", path.display(), i + 2, row.len(), header.len());
        }
        Ok(Table { header, rows })
    }

    /// Replace `path` with this table: write a temp file beside it, flush it to disk, rename.
    /// A kill leaves the old file or the new one, never a part; the temp file's name holds the
    /// pid so concurrent runs writing the same folder do not share one.
    pub fn write_atomically(&self, path: &Path) -> Result<()> {
        let name = path.file_name().context("a table is written to a file")?.to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| -> Result<()> {
            let mut file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
            let text = self.to_text();
            let (head, tail) = text.as_bytes().split_at(text.len() / 2);
            file.write_all(head)?;
            crate::crash_point::reached("table-write");
            file.write_all(tail)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot replace", path.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for record in std::iter::once(&self.header).chain(&self.rows) {
            let fields: Vec<String> = record.iter().map(|f| quote(f)).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Records of `text`; quoted fields may hold commas, doubled quotes and newlines.
fn parse(text: &str) -> Result<Vec<Vec<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        bail!("a quoted field is not closed");
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_awkward_fields() {
        let table = Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["x,y".into(), "say \"hi\"".into()], vec!["".into(), "two\nlines".into()]],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        table.write_atomically(&path).unwrap();
        assert_eq!(Table::read(&path).unwrap(), table);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
        std::fs::write(&path, "a,b\n1\n").unwrap();
        assert!(Table::read(&path).unwrap_err().to_string().contains("row 2 has 1 fields"));
    }
}

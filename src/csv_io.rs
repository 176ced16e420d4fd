//! Every CSV file the tool reads or writes goes through here, on the `csv` crate: a field is
//! quoted when it holds `,`, `"`, `\r` or `\n` (RFC 4180, quotes doubled), lines end in `\n`.
//!
//! Files with fixed columns (an eval's metrics.csv and per_class.csv, training logs,
//! report.csv) are rows of a struct, serialised by serde. Files whose columns depend on the run
//! (results.csv, summary.csv) are a [`Table`] of strings.
//!
//! Numbers are written in Rust's shortest round-trip form through [`shortest`] (`1`, `0.25`,
//! `0.0000001`), not serde's (`1.0`, `1e-7`), so files keep the bytes they always had.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fsutil::write_atomically;

/// A CSV file held as strings: a header and rows of the same length.
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
        let mut reader = reader(path)?;
        let header: Vec<String> = reader.headers().with_context(|| not_csv(path))?.iter().map(str::to_string).collect();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| not_csv(path))?;
            if record.len() != header.len() {
                bail!("{}: row {} has {} fields, the header {}", path.display(), i + 2, record.len(), header.len());
            }
            rows.push(record.iter().map(str::to_string).collect());
        }
        Ok(Table { header, rows })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut writer = writer();
        writer.write_record(&self.header)?;
        for row in &self.rows {
            writer.write_record(row)?;
        }
        finish(writer)
    }

    /// Replace `path` with this table, whole or not at all. (Written in two halves around the
    /// `table-write` crash point, so the crash tests can kill a run mid-write.)
    pub fn write_atomically(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomically_with(path, |tmp| {
            let mut file = std::fs::File::create(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            file.write_all(head).with_context(|| format!("{}: cannot write", tmp.display()))?;
            crate::crash_point::reached("table-write");
            file.write_all(tail).with_context(|| format!("{}: cannot write", tmp.display()))
        })
    }
}

/// `header` then one line per row. The header is written even for no rows, and must name the
/// row struct's fields in order: a mismatch is a bug this reports rather than a file whose
/// columns lie.
pub fn rows_to_bytes<T: Serialize>(header: &[&str], rows: &[T]) -> Result<Vec<u8>> {
    let mut writer = writer();
    writer.write_record(header)?;
    for row in rows {
        writer.serialize(row)?;
    }
    let bytes = finish(writer)?;
    if let Some(first) = rows.first() {
        let mut named = csv::WriterBuilder::new().has_headers(true).from_writer(Vec::new());
        named.serialize(first)?;
        let named = finish(named)?;
        let line = |b: &[u8]| b.split(|&c| c == b'\n').next().map(<[u8]>::to_vec).unwrap_or_default();
        if line(&named) != line(&bytes) {
            bail!(
                "CSV columns {:?} do not match the row's fields {:?}",
                header,
                String::from_utf8_lossy(&line(&named))
            );
        }
    }
    Ok(bytes)
}

/// Write rows into a stage's temp dir (the store publishes the whole dir atomically). The header
/// is flushed before the `stage-output` crash point, so the crash tests can kill a stage with
/// part of its output written.
pub fn write_rows<T: Serialize>(path: &Path, header: &[&str], rows: &[T]) -> Result<()> {
    let bytes = rows_to_bytes(header, rows)?;
    let header_end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
    let mut file = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(&bytes[..header_end]).with_context(|| format!("{}: cannot write", path.display()))?;
    file.flush()?;
    crate::crash_point::reached("stage-output");
    file.write_all(&bytes[header_end..]).with_context(|| format!("{}: cannot write", path.display()))
}

/// Write rows outside the store: whole or not at all.
pub fn write_rows_atomically<T: Serialize>(path: &Path, header: &[&str], rows: &[T]) -> Result<()> {
    write_atomically(path, &rows_to_bytes(header, rows)?)
}

/// Every row of `path`, matched to `T`'s fields by the header's column names.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut reader = reader(path)?;
    reader.deserialize().map(|row| row.with_context(|| not_csv(path))).collect()
}

/// serde `serialize_with` for an `f64` column: Rust's shortest round-trip `Display`.
pub fn shortest<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(x)
}

/// [`shortest`] for an optional column; `None` is an empty field.
pub fn shortest_opt<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.collect_str(x),
        None => s.serialize_str(""),
    }
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new())
}

fn finish(writer: csv::Writer<Vec<u8>>) -> Result<Vec<u8>> {
    writer.into_inner().map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error()))
}

fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    // Row lengths are checked by the callers, which say which row is short.
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(file))
}

fn not_csv(path: &Path) -> String {
    format!("{}: not a CSV file", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn tables_write_and_read_back_awkward_fields() {
        let table = Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["".into(), "two\nlines".into()],
                vec!["cr\r".into(), "plain".into()],
            ],
        };
        let text = String::from_utf8(table.to_bytes().unwrap()).unwrap();
        // Written out by hand: quoted only where RFC 4180 needs it.
        assert_eq!(text, "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n,\"two\nlines\"\n\"cr\r\",plain\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        table.write_atomically(&path).unwrap();
        assert_eq!(Table::read(&path).unwrap(), table);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
        std::fs::write(&path, "a,b\n1\n").unwrap();
        assert!(Table::read(&path).unwrap_err().to_string().contains("row 2 has 1 fields"));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Row {
        name: String,
        #[serde(serialize_with = "shortest")]
        x: f64,
        #[serde(serialize_with = "shortest_opt")]
        y: Option<f64>,
    }

    #[test]
    fn rows_keep_rust_number_formatting_and_round_trip() {
        let rows = [Row { name: "a".into(), x: 1.0, y: None }, Row { name: "b,c".into(), x: 1e-7, y: Some(0.25) }];
        let bytes = rows_to_bytes(&["name", "x", "y"], &rows).unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), "name,x,y\na,1,\n\"b,c\",0.0000001,0.25\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_rows::<Row>(&path).unwrap(), rows);
        assert_eq!(rows_to_bytes::<Row>(&["name", "x", "y"], &[]).unwrap(), b"name,x,y\n");
        let wrong = rows_to_bytes(&["name", "y", "x"], &rows).unwrap_err().to_string();
        assert!(wrong.contains("do not match"), "{wrong}");
    }
}

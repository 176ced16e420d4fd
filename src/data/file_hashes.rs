//! blake3 of the files a split uses, hashed in parallel and remembered by (absolute path, size,
//! modification time) in a JSON cache file, so a second run over 100k images reads none of them.
//! Like make and git, this trusts that a file whose size and mtime are unchanged is unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, anyhow};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fsutil::{hash_file, write_atomically};

const CACHE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_s: i64,
    mtime_ns: u32,
    blake3: String,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: BTreeMap<String, Entry>,
}

/// Hashes in the order of the input paths, and how many came from the cache.
#[derive(Clone, Debug)]
pub struct Hashes {
    pub blake3: Vec<String>,
    pub cache_hits: usize,
    pub hashed: usize,
}

/// The default cache file: `$XDG_CACHE_HOME/clip-ast/file-hashes.json`, else
/// `~/.cache/clip-ast/file-hashes.json`.
pub fn default_cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("clip-ast").join("file-hashes.json"))
}

fn stamp(path: &Path) -> Result<(String, u64, i64, u32)> {
    let abs = path.canonicalize().with_context(|| format!("{}: cannot open", path.display()))?;
    let meta = std::fs::metadata(&abs).with_context(|| format!("{}: cannot stat", path.display()))?;
    let (secs, nanos) = match meta.modified()?.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(before) => (-(before.duration().as_secs() as i64), before.duration().subsec_nanos()),
    };
    let key = abs.to_str().ok_or_else(|| anyhow!("{}: path is not UTF-8", abs.display()))?.to_owned();
    Ok((key, meta.len(), secs, nanos))
}

/// How every cache file this tool writes begins (`CacheFile`'s first field; serde_json writes
/// fields in order, with no space).
const CACHE_PREFIX: &[u8] = b"{\"version\":";

/// Whether `path` may be written as the hash cache: it is absent, empty, or a cache this tool
/// wrote (recognised by its first bytes, so a large cache is not read twice). Anything else, a
/// typo for `/etc/passwd` or someone's notes, is an error and stays as it is.
pub fn check_cache_file(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.with_context(|| format!("hash cache {}: cannot open", path.display()))?,
    };
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(anyhow!("hash cache {} is a folder; --hash-cache names a file", path.display()));
    }
    let mut head = Vec::with_capacity(CACHE_PREFIX.len());
    file.by_ref()
        .take(CACHE_PREFIX.len() as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("hash cache {}: cannot read", path.display()))?;
    if head.is_empty() || head == CACHE_PREFIX {
        return Ok(());
    }
    Err(anyhow!(
        "hash cache {} exists and is not a clip-ast hash cache; it is left as it is: pass --hash-cache a new file",
        path.display()
    ))
}

fn load_cache(path: &Path) -> BTreeMap<String, Entry> {
    // A missing, unreadable or outdated cache is only a slower run.
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
        .filter(|c| c.version == CACHE_VERSION)
        .map(|c| c.files)
        .unwrap_or_default()
}

/// Hash `paths` (duplicates allowed), consulting and then updating the cache file if given.
/// Every file that cannot be read is listed in the one error.
pub fn hash_files(paths: &[PathBuf], cache_path: Option<&Path>) -> Result<Hashes> {
    if let Some(cache_path) = cache_path {
        check_cache_file(cache_path)?;
    }
    let (out, fresh) = lookup(paths, cache_path)?;
    if let Some(cache_path) = cache_path.filter(|_| out.hashed > 0) {
        save_cache(cache_path, fresh)?;
    }
    Ok(out)
}

/// The files of `paths` that no longer hash to `expected` (same order): (index, blake3 now).
/// A file whose size and mtime the cache knows costs a stat. Hashes computed here are saved to
/// the cache where it can be written and is a hash cache: one that cannot only makes the next
/// check slower, and a file that is not a cache is never written over.
pub fn changed(paths: &[PathBuf], expected: &[&str], cache_path: Option<&Path>) -> Result<Vec<(usize, String)>> {
    let cache_path = cache_path.filter(|p| check_cache_file(p).is_ok());
    let (out, fresh) = lookup(paths, cache_path)?;
    if let Some(cache_path) = cache_path.filter(|_| out.hashed > 0) {
        let _ = save_cache(cache_path, fresh);
    }
    Ok(out.blake3.into_iter().enumerate().filter(|(i, hash)| expected.get(*i) != Some(&hash.as_str())).collect())
}

/// Each path's hash, from the cache where its size and mtime match, and the entries to save.
fn lookup(paths: &[PathBuf], cache_path: Option<&Path>) -> Result<(Hashes, BTreeMap<String, Entry>)> {
    let cache = cache_path.map(load_cache).unwrap_or_default();
    let results: Vec<Result<(String, Entry, bool)>> = paths
        .par_iter()
        .map(|path| {
            let (key, size, mtime_s, mtime_ns) = stamp(path)?;
            if let Some(hit) =
                cache.get(&key).filter(|e| e.size == size && e.mtime_s == mtime_s && e.mtime_ns == mtime_ns)
            {
                return Ok((key, hit.clone(), true));
            }
            let blake3 = hash_file(path)?;
            Ok((key, Entry { size, mtime_s, mtime_ns, blake3 }, false))
        })
        .collect();
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))).collect();
    if !errors.is_empty() {
        return Err(anyhow!("{} file(s) could not be hashed: {}", errors.len(), errors.join("; ")));
    }
    let mut out = Hashes { blake3: Vec::with_capacity(paths.len()), cache_hits: 0, hashed: 0 };
    let mut fresh = BTreeMap::new();
    for (key, entry, hit) in results.into_iter().map(|r| r.expect("errors handled above")) {
        if hit {
            out.cache_hits += 1;
        } else {
            out.hashed += 1;
        }
        out.blake3.push(entry.blake3.clone());
        fresh.insert(key, entry);
    }
    Ok((out, fresh))
}

/// Merge `fresh` into whatever the cache file holds now (another run may have added entries)
/// and replace it atomically.
fn save_cache(path: &Path, fresh: BTreeMap<String, Entry>) -> Result<()> {
    // Again just before the write: the file may have been replaced since the run began.
    check_cache_file(path)?;
    let mut files = load_cache(path);
    files.extend(fresh);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create hash cache folder", dir.display()))?;
    let bytes = serde_json::to_vec(&CacheFile { version: CACHE_VERSION, files })?;
    write_atomically(path, &bytes).context("cannot save the hash cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_run_hits_the_cache_and_edits_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("{i}.bin"))).collect();
        for (i, f) in files.iter().enumerate() {
            std::fs::write(f, vec![i as u8; 1000 + i]).unwrap();
        }
        let cache = dir.path().join("cache/hashes.json");
        let first = hash_files(&files, Some(&cache)).unwrap();
        assert_eq!((first.cache_hits, first.hashed), (0, 3));
        assert_eq!(first.blake3[1], blake3::hash(&[1u8; 1001]).to_hex().to_string());
        let second = hash_files(&files, Some(&cache)).unwrap();
        assert_eq!((second.cache_hits, second.hashed), (3, 0));
        assert_eq!(second.blake3, first.blake3);
        std::fs::write(&files[2], b"changed").unwrap();
        let third = hash_files(&files, Some(&cache)).unwrap();
        assert_eq!((third.cache_hits, third.hashed), (2, 1));
        assert_eq!(third.blake3[2], blake3::hash(b"changed").to_hex().to_string());
    }

    #[test]
    fn changed_names_the_files_whose_hash_moved() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("{i}.png"))).collect();
        for f in &files {
            std::fs::write(f, b"same").unwrap();
        }
        let cache = dir.path().join("hashes.json");
        let recorded = hash_files(&files, Some(&cache)).unwrap().blake3;
        let expected: Vec<&str> = recorded.iter().map(String::as_str).collect();
        assert!(changed(&files, &expected, Some(&cache)).unwrap().is_empty());
        std::fs::write(&files[1], b"another image").unwrap();
        let now = blake3::hash(b"another image").to_hex().to_string();
        assert_eq!(changed(&files, &expected, Some(&cache)).unwrap(), [(1, now)]);
        // A cache that cannot be written is no error for a check.
        assert_eq!(changed(&files, &expected, Some(dir.path())).unwrap().len(), 1);
    }

    #[test]
    fn unreadable_files_are_all_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = [dir.path().join("a.jpg"), dir.path().join("b.jpg")];
        let e = format!("{:#}", hash_files(&missing, None).unwrap_err());
        assert!(e.starts_with("2 file(s)") && e.contains("a.jpg") && e.contains("b.jpg"), "{e}");
    }

    #[test]
    fn only_a_hash_cache_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("0.png");
        std::fs::write(&image, b"pixels").unwrap();
        let victim = dir.path().join("notes.txt");
        for text in [&b"important notes\n"[..], b"{\"version\" : 1}", b"\x00\x01binary"] {
            std::fs::write(&victim, text).unwrap();
            let e = hash_files(std::slice::from_ref(&image), Some(&victim)).unwrap_err().to_string();
            assert!(e.contains("notes.txt exists and is not a clip-ast hash cache"), "{e}");
            assert_eq!(std::fs::read(&victim).unwrap(), text, "left as it was");
        }
        let e = check_cache_file(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("is a folder; --hash-cache names a file"), "{e}");
        // Absent, empty, or written by this tool: used and replaced.
        let cache = dir.path().join("cache.json");
        for setup in [None, Some(&b""[..])] {
            let _ = std::fs::remove_file(&cache);
            if let Some(bytes) = setup {
                std::fs::write(&cache, bytes).unwrap();
            }
            hash_files(std::slice::from_ref(&image), Some(&cache)).unwrap();
            assert!(std::fs::read(&cache).unwrap().starts_with(CACHE_PREFIX));
            let again = hash_files(std::slice::from_ref(&image), Some(&cache)).unwrap();
            assert_eq!(again.cache_hits, 1);
        }
    }
}

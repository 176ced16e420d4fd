//! Reads what CoOp caches with `pickle.dump(..., protocol=HIGHEST_PROTOCOL)`: a dict of lists
//! of Dassl `Datum` objects (`split_fewshot/shot_K-seed_S.pkl`, ImageNet's `preprocessed.pkl`).
//!
//! The unpickling is `serde-pickle`'s. It never imports or constructs a class: an instance made
//! by `NEWOBJ` + `BUILD` comes back as the state `BUILD` gave it (for a plain class, its
//! `__dict__`), and a class reference left over in the data reads as `None`, so reading a
//! pickle runs no code.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_pickle::{DeOptions, HashableValue, Value};

use super::split_file::Datum;

/// A Dassl `Datum` as pickled: the image path is whatever absolute path CoOp saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickledDatum {
    pub impath: String,
    pub label: usize,
    pub classname: String,
}

impl PickledDatum {
    pub fn to_datum(&self, impath: String) -> Datum {
        Datum { impath, label: self.label, classname: self.classname.clone() }
    }
}

/// Read a pickle holding `{name: [Datum, ...], ...}`; entries that are not lists are skipped.
pub fn read_datum_lists(path: &Path) -> Result<BTreeMap<String, Vec<PickledDatum>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let value = loads(&bytes).map_err(|e| anyhow!("{}: cannot unpickle ({e})", path.display()))?;
    datum_lists(&value).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Unpickle `bytes`, objects read as their state (see the module comment).
fn loads(bytes: &[u8]) -> serde_pickle::Result<Value> {
    // keep_restore_state: an object without BUILD keeps its constructor arguments rather than
    // becoming an empty dict, so an error message can show what it was.
    serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state().replace_unresolved_globals())
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::I64(_) | Value::Int(_) => "int",
        Value::F64(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::FrozenSet(_) => "frozenset",
        Value::Dict(_) => "dict",
    }
}

fn datum_lists(value: &Value) -> Result<BTreeMap<String, Vec<PickledDatum>>> {
    let Value::Dict(dict) = value else { bail!("holds a {}, not a dict of Datum lists", describe(value)) };
    let mut out = BTreeMap::new();
    for (key, list) in dict {
        let (HashableValue::String(key), Value::List(list)) = (key, list) else {
            continue;
        };
        let items = list
            .iter()
            .enumerate()
            .map(|(i, item)| datum(item).map_err(|e| anyhow!("{key}[{i}]: {e}")))
            .collect::<Result<Vec<_>>>()?;
        out.insert(key.clone(), items);
    }
    Ok(out)
}

/// Dassl keeps the fields as `_impath`, `_label`, ... behind properties; other Datum-like
/// classes use the plain names. A class with `__slots__` pickles its state as
/// `(dict, slots)`; the dict is the part read here.
fn datum(item: &Value) -> Result<PickledDatum> {
    let state = match item {
        Value::Tuple(parts) => parts.first().unwrap_or(item),
        _ => item,
    };
    let Value::Dict(fields) = state else {
        bail!("found a Python {} where a Datum object (its attribute dict) belongs", describe(item))
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| matches!(k, HashableValue::String(k) if k.trim_start_matches('_') == name))
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("Datum without `{name}`"))
    };
    let (impath, label, classname) = (field("impath")?, field("label")?, field("classname")?);
    match (impath, label, classname) {
        (Value::String(impath), Value::I64(label), Value::String(classname)) if *label >= 0 => {
            Ok(PickledDatum { impath: impath.clone(), label: *label as usize, classname: classname.clone() })
        }
        _ => bail!(
            "Datum fields are {}, {}, {}; expected str impath, non-negative int label, str classname",
            describe(impath),
            describe(label),
            describe(classname)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_protocol_2_pickle() {
        // pickle.dumps({"a": [1, -2, 300, 2**40], "b": (None, True, 1.5)}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01\x8a\x06\x00\x00\x00\x00\x00\x01eX\x01\x00\x00\x00bq\x03N\x88G?\xf8\x00\x00\x00\x00\x00\x00\x87q\x04u.";
        let Value::Dict(d) = loads(bytes).unwrap() else { panic!() };
        let Value::List(l) = &d[&HashableValue::String("a".into())] else { panic!() };
        let ints: Vec<i64> = l.iter().map(|v| if let Value::I64(i) = v { *i } else { panic!("{v:?}") }).collect();
        assert_eq!(ints, [1, -2, 300, 1 << 40]);
        let Value::Tuple(t) = &d[&HashableValue::String("b".into())] else { panic!() };
        assert!(matches!(t[..], [Value::None, Value::Bool(true), Value::F64(f)] if f == 1.5));
    }

    #[test]
    fn an_object_reads_as_its_state() {
        // class D: pass; d = D(); d._impath, d._label, d._classname = "/x/a.jpg", 3, "cat"
        // pickle.dumps({"train": [d], "n": 1}, protocol=4), module renamed to "m".
        let bytes = b"\x80\x04\x95[\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05train\x94]\x94\x8c\x01m\x94\x8c\x01D\x94\x93\x94)\x81\x94}\x94(\x8c\x07_impath\x94\x8c\x08/x/a.jpg\x94\x8c\x06_label\x94K\x03\x8c\n_classname\x94\x8c\x03cat\x94uba\x8c\x01n\x94K\x01u.";
        let lists = datum_lists(&loads(bytes).unwrap()).unwrap();
        let want = PickledDatum { impath: "/x/a.jpg".into(), label: 3, classname: "cat".into() };
        assert_eq!(lists.keys().collect::<Vec<_>>(), ["train"]);
        assert_eq!(lists["train"], [want]);
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = loads(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").unwrap_err().to_string();
        assert!(e.contains("EOF"), "{e}");
        // {"train": [5]}
        let e = datum_lists(&loads(b"\x80\x02}q\x00X\x05\x00\x00\x00trainq\x01]q\x02K\x05as.").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("train[0]: found a Python int"), "{e}");
    }
}

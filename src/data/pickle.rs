//! Just enough of Python's unpickler (protocols 2–5) to read what CoOp caches with
//! `pickle.dump(..., protocol=HIGHEST_PROTOCOL)`: a dict of lists of Dassl `Datum` objects
//! (`split_fewshot/shot_K-seed_S.pkl`, ImageNet's `preprocessed.pkl`). Objects are never
//! constructed: a class reference is kept as its (module, name) and the object's `__dict__`
//! as plain data, so reading a pickle runs no code.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};

use super::split_file::Datum;

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<RefCell<Vec<Value>>>),
    Tuple(Rc<Vec<Value>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A class or function named by `GLOBAL` / `STACK_GLOBAL`.
    Global(Rc<(String, String)>),
    /// An instance: its class, constructor arguments and the state `BUILD` gave it.
    Object(Rc<RefCell<Object>>),
}

#[derive(Debug)]
pub struct Object {
    pub class: Value,
    pub args: Value,
    pub state: Option<Value>,
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        if let Value::Str(s) = self { Some(s) } else { None }
    }

    fn describe(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class",
            Value::Object(_) => "object",
        }
    }
}

/// Unpickle `bytes` into a [`Value`].
pub fn loads(bytes: &[u8]) -> Result<Value> {
    Machine { input: bytes, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.input.len()).ok_or_else(|| anyhow!("data ends early"))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.input[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("unterminated text argument"))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| anyhow!("stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| anyhow!("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| anyhow!("no MARK on the stack"))?;
        if mark > self.stack.len() {
            bail!("MARK above the stack top");
        }
        Ok(self.stack.split_off(mark))
    }

    fn string(&mut self, len: usize) -> Result<Value> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| anyhow!("string is not UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    fn len_u32(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| anyhow!("length overflows"))
    }

    fn memo_put(&mut self, index: usize) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: usize) -> Result<()> {
        let v = self.memo.get(&index).cloned().ok_or_else(|| anyhow!("memo entry {index} missing"))?;
        self.stack.push(v);
        Ok(())
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            self.step(op).map_err(|e| anyhow!("opcode 0x{op:02x} at byte {at}: {e}"))?;
            if op == b'.' {
                return self.pop();
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if !(2..=5).contains(&proto) {
                    bail!("pickle protocol {proto} is not supported (2 to 5 are)");
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint only
            }
            b'.' => {}
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => self.stack.push(self.top()?.clone()),
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' | b'K' | b'M' => {
                let v = match op {
                    b'J' => i64::from(i32::from_le_bytes(self.le()?)),
                    b'K' => i64::from(self.u8()?),
                    _ => i64::from(u16::from_le_bytes(self.le()?)),
                };
                self.stack.push(Value::Int(v));
            }
            0x8a => {
                let n = usize::from(self.u8()?);
                let v = long_from_le(self.take(n)?)?;
                self.stack.push(Value::Int(v));
            }
            0x8b => {
                let n = self.len_u32()?;
                let v = long_from_le(self.take(n)?)?;
                self.stack.push(Value::Int(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.le()?);
                self.stack.push(Value::Float(v));
            }
            0x8c => {
                let n = usize::from(self.u8()?);
                let v = self.string(n)?;
                self.stack.push(v);
            }
            b'X' => {
                let n = self.len_u32()?;
                let v = self.string(n)?;
                self.stack.push(v);
            }
            0x8d => {
                let n = self.len_u64()?;
                let v = self.string(n)?;
                self.stack.push(v);
            }
            b'C' | b'B' | 0x8e | b'U' | b'T' => {
                let n = match op {
                    b'C' | b'U' => usize::from(self.u8()?),
                    b'B' | b'T' => self.len_u32()?,
                    _ => self.len_u64()?,
                };
                let bytes = self.take(n)?;
                // Python 2 `str` (U, T) holds text in practice; keep it as a string if it is one.
                let v = match (op, std::str::from_utf8(bytes)) {
                    (b'U' | b'T', Ok(s)) => Value::Str(s.into()),
                    _ => Value::Bytes(bytes.into()),
                };
                self.stack.push(v);
            }
            b']' => self.stack.push(Value::List(Default::default())),
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'a' => {
                let v = self.pop()?;
                self.list_extend(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.list_extend(items)?;
            }
            b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if self.stack.len() < n {
                    bail!("stack underflow");
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            b'}' => self.stack.push(Value::Dict(Default::default())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.dict_extend(vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.dict_extend(pairs(items)?)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                    bail!("STACK_GLOBAL needs two strings");
                };
                self.stack.push(Value::Global(Rc::new((module.to_owned(), name.to_owned()))));
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                self.stack.push(Value::Object(Rc::new(RefCell::new(Object { class, args, state: None }))));
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                self.stack.push(Value::Object(Rc::new(RefCell::new(Object { class, args, state: None }))));
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()? {
                    Value::Object(obj) => obj.borrow_mut().state = Some(state),
                    other => bail!("BUILD on a {}", other.describe()),
                }
            }
            0x94 => {
                let index = self.memo.len();
                self.memo_put(index)?;
            }
            b'q' => {
                let i = usize::from(self.u8()?);
                self.memo_put(i)?;
            }
            b'r' => {
                let i = self.len_u32()?;
                self.memo_put(i)?;
            }
            b'p' => {
                let i = self.line()?.trim().parse().map_err(|_| anyhow!("bad PUT index"))?;
                self.memo_put(i)?;
            }
            b'h' => {
                let i = usize::from(self.u8()?);
                self.memo_get(i)?;
            }
            b'j' => {
                let i = self.len_u32()?;
                self.memo_get(i)?;
            }
            b'g' => {
                let i = self.line()?.trim().parse().map_err(|_| anyhow!("bad GET index"))?;
                self.memo_get(i)?;
            }
            _ => bail!("not supported by this reader (it handles dicts, lists and plain objects)"),
        }
        Ok(())
    }

    fn list_extend(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(list) => {
                list.borrow_mut().extend(items);
                Ok(())
            }
            other => bail!("APPEND to a {}", other.describe()),
        }
    }

    fn dict_extend(&mut self, items: Vec<(Value, Value)>) -> Result<()> {
        match self.top()? {
            Value::Dict(dict) => {
                dict.borrow_mut().extend(items);
                Ok(())
            }
            other => bail!("SETITEM on a {}", other.describe()),
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("odd number of dict items");
    }
    let mut it = items.into_iter();
    Ok(std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect())
}

/// Python's two's-complement little-endian `long` encoding, for values that fit an i64.
fn long_from_le(bytes: &[u8]) -> Result<i64> {
    if bytes.is_empty() {
        return Ok(0);
    }
    if bytes.len() > 8 {
        bail!("integer wider than 64 bits");
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(buf))
}

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

fn datum_lists(value: &Value) -> Result<BTreeMap<String, Vec<PickledDatum>>> {
    let Value::Dict(dict) = value else { bail!("holds a {}, not a dict of Datum lists", value.describe()) };
    let mut out = BTreeMap::new();
    for (key, list) in dict.borrow().iter() {
        let (Some(key), Value::List(list)) = (key.as_str(), list) else {
            continue;
        };
        let items = list
            .borrow()
            .iter()
            .enumerate()
            .map(|(i, item)| datum(item).map_err(|e| anyhow!("{key}[{i}]: {e}")))
            .collect::<Result<Vec<_>>>()?;
        out.insert(key.to_owned(), items);
    }
    Ok(out)
}

/// Dassl keeps the fields as `_impath`, `_label`, ... behind properties; other Datum-like
/// classes use the plain names.
fn datum(item: &Value) -> Result<PickledDatum> {
    let Value::Object(obj) = item else { bail!("a {}, not a Datum object", item.describe()) };
    let obj = obj.borrow();
    let state = match &obj.state {
        Some(Value::Tuple(t)) => t.first().cloned(),
        other => other.clone(),
    };
    let Some(Value::Dict(fields)) = state else { bail!("object without an attribute dict") };
    let fields = fields.borrow();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.as_str().is_some_and(|k| k.trim_start_matches('_') == name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("Datum without `{name}`"))
    };
    let impath = field("impath")?;
    let label = field("label")?;
    let classname = field("classname")?;
    match (impath.as_str(), &label, classname.as_str()) {
        (Some(impath), Value::Int(label), Some(classname)) if *label >= 0 => {
            Ok(PickledDatum { impath: impath.to_owned(), label: *label as usize, classname: classname.to_owned() })
        }
        _ => bail!(
            "Datum fields are {}, {}, {}; expected str impath, non-negative int label, str classname",
            impath.describe(),
            label.describe(),
            classname.describe()
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
        let d = d.borrow();
        let Value::List(l) = &d[0].1 else { panic!() };
        let ints: Vec<i64> = l.borrow().iter().map(|v| if let Value::Int(i) = v { *i } else { panic!() }).collect();
        assert_eq!(ints, [1, -2, 300, 1 << 40]);
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        assert!(matches!(t[..], [Value::None, Value::Bool(true), Value::Float(f)] if f == 1.5));
    }

    #[test]
    fn errors_say_where() {
        let e = loads(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").unwrap_err().to_string();
        assert!(e.contains("data ends early"), "{e}");
        let e = loads(b"\x80\x01.").unwrap_err().to_string();
        assert!(e.contains("protocol 1"), "{e}");
    }
}

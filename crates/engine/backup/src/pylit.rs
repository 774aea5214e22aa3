//! The subset of Python literal syntax barman writes into `backup.info` (`repr()` of strings,
//! ints, tuples, lists, dicts, `None`, booleans, floats) and reads back with
//! `ast.literal_eval`.

/// A Python literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// `[...]`
    List(Vec<PyValue>),
    /// `(...)`
    Tuple(Vec<PyValue>),
    /// `{k: v, ...}`
    Dict(Vec<(PyValue, PyValue)>),
}

/// Why a value is not a supported Python literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Python literal at offset {offset}: {reason}")]
pub struct PyLitError {
    /// Where parsing stopped.
    pub offset: usize,
    /// What was expected.
    pub reason: &'static str,
}

/// Python's `repr()` of a string.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a value.
pub fn repr(v: &PyValue) -> String {
    let join = |items: &[PyValue]| items.iter().map(repr).collect::<Vec<_>>().join(", ");
    match v {
        PyValue::None => "None".into(),
        PyValue::Bool(true) => "True".into(),
        PyValue::Bool(false) => "False".into(),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => format!("{f:?}"),
        PyValue::Str(s) => repr_str(s),
        PyValue::List(items) => format!("[{}]", join(items)),
        PyValue::Tuple(items) if items.len() == 1 => format!("({},)", repr(&items[0])),
        PyValue::Tuple(items) => format!("({})", join(items)),
        PyValue::Dict(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", repr(k), repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Parses a Python literal.
pub fn parse(text: &str) -> Result<PyValue, PyLitError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> PyLitError {
        PyLitError {
            offset: self.i,
            reason,
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Result<PyValue, PyLitError> {
        self.ws();
        match self.peek() {
            Some(b'\'') | Some(b'"') => self.string().map(PyValue::Str),
            Some(b'[') => self.seq(b']').map(PyValue::List),
            Some(b'(') => self.seq(b')').map(PyValue::Tuple),
            Some(b'{') => self.dict(),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => {
                for (word, v) in [
                    ("None", PyValue::None),
                    ("True", PyValue::Bool(true)),
                    ("False", PyValue::Bool(false)),
                ] {
                    if self.text[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("expected a value"))
            }
            None => Err(self.err("unexpected end")),
        }
    }

    fn number(&mut self) -> Result<PyValue, PyLitError> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = &self.text[start..self.i];
        if let Ok(i) = t.parse::<i64>() {
            return Ok(PyValue::Int(i));
        }
        t.parse::<f64>()
            .map(PyValue::Float)
            .map_err(|_| self.err("bad number"))
    }

    fn string(&mut self) -> Result<String, PyLitError> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.i..];
            let c = rest
                .chars()
                .next()
                .ok_or_else(|| self.err("unterminated string"))?;
            self.i += c.len_utf8();
            if c as u32 == u32::from(quote) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
            self.i += 1;
            match e {
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'0' => out.push('\0'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'\n' => {}
                b'x' | b'u' | b'U' => {
                    let n = match e {
                        b'x' => 2,
                        b'u' => 4,
                        _ => 8,
                    };
                    let hex = self
                        .text
                        .get(self.i..self.i + n)
                        .ok_or_else(|| self.err("short escape"))?;
                    let code =
                        u32::from_str_radix(hex, 16).map_err(|_| self.err("bad hex escape"))?;
                    out.push(char::from_u32(code).ok_or_else(|| self.err("bad code point"))?);
                    self.i += n;
                }
                _ => return Err(self.err("unsupported escape")),
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Vec<PyValue>, PyLitError> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn dict(&mut self) -> Result<PyValue, PyLitError> {
        self.i += 1;
        let mut pairs = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(PyValue::Dict(pairs));
            }
            let k = self.value()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            let v = self.value()?;
            pairs.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_like_python() {
        assert_eq!(repr_str("abc"), "'abc'");
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(
            repr_str("START WAL LOCATION: 0/2000028\nLABEL: x\t\\"),
            "'START WAL LOCATION: 0/2000028\\nLABEL: x\\t\\\\'"
        );
        for s in ["", "a'b\"c", "line\nnext\r\t\\ é", "\x01\x7f"] {
            assert_eq!(parse(&repr_str(s)).unwrap(), PyValue::Str(s.to_string()));
        }
    }

    #[test]
    fn containers() {
        let v = parse("[('fake_tbs', 16384, '/fake_tmp/tbs'), ('t2', 2, \"/x\")]").unwrap();
        assert_eq!(
            repr(&v),
            "[('fake_tbs', 16384, '/fake_tmp/tbs'), ('t2', 2, '/x')]"
        );
        let d = parse("{'copy_time': 1.5, 'n': -3, 'ok': True, 'x': None}").unwrap();
        assert_eq!(
            repr(&d),
            "{'copy_time': 1.5, 'n': -3, 'ok': True, 'x': None}"
        );
        assert!(parse("[1, 2").is_err());
        assert!(parse("'abc").is_err());
        assert!(parse("1 2").is_err());
    }
}

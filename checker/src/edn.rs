//! A small EDN reader: enough of the format for Jepsen and Knossos
//! histories (maps, vectors, lists, sets, keywords, symbols, strings,
//! numbers, nil, booleans, characters, tagged literals, comments, `#_`).

#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Without the leading colon.
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// Looks up a keyword key in a map.
    pub fn get(&self, keyword: &str) -> Option<&Edn> {
        match self {
            Edn::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(s) if s == keyword))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Edn::Keyword(k) => Some(k),
            _ => None,
        }
    }
}

/// Nesting deeper than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 128;

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, String> {
        Err(msg.into())
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.pos < self.s.len() && self.s[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.s.len()
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' | b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}'
                | b'"' | b';' => break,
                _ => self.pos += 1,
            }
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.s.get(self.pos) {
                None => {
                    return self.err(format!(
                        "unterminated collection: expected `{}`",
                        close as char
                    ))
                }
                Some(&c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(b')' | b']' | b'}') => {
                    return self.err(format!("unexpected `{}`", self.s[self.pos] as char));
                }
                Some(_) => {
                    if let Some(v) = self.value(depth + 1)? {
                        items.push(v);
                    }
                }
            }
        }
    }

    /// Reads one form; `None` for a discarded `#_` form.
    fn value(&mut self, depth: usize) -> Result<Option<Edn>, String> {
        if depth > MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else {
            return self.err("unexpected end of input");
        };
        let v = match c {
            b'(' => {
                self.pos += 1;
                Edn::List(self.seq(b')', depth)?)
            }
            b'[' => {
                self.pos += 1;
                Edn::Vector(self.seq(b']', depth)?)
            }
            b'{' => {
                self.pos += 1;
                let items = self.seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return self.err("map has an odd number of forms");
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Edn::Map(pairs)
            }
            b'"' => Edn::Str(self.string()?),
            b'#' => {
                self.pos += 1;
                match self.s.get(self.pos) {
                    Some(b'{') => {
                        self.pos += 1;
                        Edn::Set(self.seq(b'}', depth)?)
                    }
                    Some(b'_') => {
                        self.pos += 1;
                        self.value(depth + 1)?;
                        return Ok(None);
                    }
                    _ => {
                        // A tagged literal: keep the value, drop the tag.
                        let tag = self.token();
                        if tag.is_empty() {
                            return self.err("`#` must be followed by a tag, `{` or `_`");
                        }
                        match self.value(depth + 1)? {
                            Some(v) => v,
                            None => return self.err(format!("tag #{tag} has no value")),
                        }
                    }
                }
            }
            b'\\' => {
                self.pos += 1;
                let t = self.token();
                let ch = match t {
                    "newline" => "\n".to_string(),
                    "space" => " ".to_string(),
                    "tab" => "\t".to_string(),
                    "" => {
                        // `\(` and friends: a single delimiter character.
                        let c = self.s.get(self.pos).copied().unwrap_or(b' ');
                        self.pos += 1;
                        (c as char).to_string()
                    }
                    other => other.to_string(),
                };
                Edn::Str(ch)
            }
            b')' | b']' | b'}' => return self.err(format!("unexpected `{}`", c as char)),
            _ => {
                let t = self.token();
                if t.is_empty() {
                    return self.err(format!("unexpected character {:?}", c as char));
                }
                atom(t)?
            }
        };
        Ok(Some(v))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return self.err("unterminated string");
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "string is not valid UTF-8".to_string())
    }
}

fn atom(t: &str) -> Result<Edn, String> {
    Ok(match t {
        "nil" => Edn::Nil,
        "true" => Edn::Bool(true),
        "false" => Edn::Bool(false),
        _ if t.starts_with(':') => {
            if t.len() == 1 {
                return Err("empty keyword `:`".into());
            }
            Edn::Keyword(t[1..].to_string())
        }
        _ => {
            let first = t.as_bytes()[0];
            let numeric = first.is_ascii_digit()
                || ((first == b'-' || first == b'+')
                    && t.len() > 1
                    && t.as_bytes()[1].is_ascii_digit());
            if numeric {
                let body = t.trim_end_matches(['N', 'M']);
                if let Ok(i) = body.parse::<i64>() {
                    Edn::Int(i)
                } else if let Ok(f) = body.parse::<f64>() {
                    Edn::Float(f)
                } else {
                    return Err(format!("bad number {t:?}"));
                }
            } else {
                Edn::Symbol(t.to_string())
            }
        }
    })
}

/// Parses exactly one form; trailing content is an error.
pub fn parse_one(text: &str) -> Result<Edn, String> {
    let mut r = Reader {
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let v = loop {
        match r.value(0)? {
            Some(v) => break v,
            None => continue,
        }
    };
    if !r.at_end() {
        return Err(format!("unexpected text after the value at byte {}", r.pos));
    }
    Ok(v)
}

/// Parses every top-level form, each with the line it starts on. Errors
/// carry the line where reading failed.
pub fn parse_all(text: &str) -> Result<Vec<(usize, Edn)>, (usize, String)> {
    let mut r = Reader {
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while !r.at_end() {
        let line = r.line;
        match r.value(0) {
            Ok(Some(v)) => out.push((line, v)),
            Ok(None) => {}
            Err(e) => return Err((r.line, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jepsen_op_maps() {
        let v =
            parse_one(r#"{:type :invoke, :f :cas, :value [1 2], :process 3, :time 12N}"#).unwrap();
        assert_eq!(v.get("f"), Some(&Edn::Keyword("cas".into())));
        assert_eq!(
            v.get("value"),
            Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)]))
        );
        assert_eq!(v.get("time"), Some(&Edn::Int(12)));
    }

    #[test]
    fn errors_instead_of_panicking() {
        for bad in [
            "{:a", "[1 2", "\"abc", "{:a}", ")", "#", "{:a 1 :b", "[[[[", ":",
        ] {
            assert!(parse_one(bad).is_err(), "{bad} should fail");
        }
        let deep = "[".repeat(10_000);
        assert!(parse_one(&deep).is_err());
    }
}

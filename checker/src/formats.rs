//! History readers: faultline JSONL, Porcupine's etcd and kv logs, and
//! Jepsen/Knossos `history.edn`. Every reader returns events with their
//! source line; malformed input is an error naming file, line and reason.

use serde_json::{Map, Number, Value};
use std::str::FromStr;

use crate::edn::{self, Edn};
use crate::error::{CheckError, Located};
use crate::history::{Event, EventType, LinedEvent, Process};
use crate::models::ModelKind;

/// Longest line any reader accepts: a line past this is malformed input,
/// not something to buffer without bound.
pub const MAX_LINE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    PorcupineEtcd,
    PorcupineKv,
    JepsenEdn,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "porcupine-etcd" | "etcd" => Ok(Format::PorcupineEtcd),
            "porcupine-kv" | "kv" => Ok(Format::PorcupineKv),
            "jepsen-edn" | "edn" => Ok(Format::JepsenEdn),
            other => Err(format!(
                "unknown format {other:?} (expected jsonl, porcupine-etcd, porcupine-kv or jepsen-edn)"
            )),
        }
    }
}

impl Format {
    /// Guesses the format from the name and the first non-empty line.
    pub fn detect(path: &str, text: &str) -> Format {
        if path.ends_with(".edn") {
            return Format::JepsenEdn;
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if first.starts_with("INFO") || first.contains("jepsen.util") {
            Format::PorcupineEtcd
        } else if first.starts_with("{:process") {
            Format::PorcupineKv
        } else if first.starts_with("{:") || first.starts_with("[{:") || first.starts_with('[') {
            Format::JepsenEdn
        } else {
            Format::Jsonl
        }
    }

    /// The model a format's histories are checked against unless told.
    pub fn default_model(self) -> ModelKind {
        match self {
            Format::Jsonl => ModelKind::LinKv,
            Format::PorcupineEtcd => ModelKind::Register,
            Format::PorcupineKv => ModelKind::KvString,
            Format::JepsenEdn => ModelKind::Register,
        }
    }
}

pub fn parse(file: &str, text: &str, format: Format) -> Result<Vec<LinedEvent>, CheckError> {
    match format {
        Format::Jsonl => parse_jsonl(file, text),
        Format::PorcupineEtcd => parse_etcd(file, text),
        Format::PorcupineKv => parse_kv(file, text),
        Format::JepsenEdn => parse_edn(file, text),
    }
}

fn perr(file: &str, line: usize, msg: impl Into<String>) -> CheckError {
    CheckError::Parse(Located::new(file, line, msg))
}

fn check_len(file: &str, n: usize, line: &str) -> Result<(), CheckError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(perr(
            file,
            n,
            format!(
                "line is {} bytes, over the {} byte limit",
                line.len(),
                MAX_LINE_BYTES
            ),
        ));
    }
    Ok(())
}

/// faultline history.jsonl. A final line without a newline that does not
/// parse is the torn tail of a killed writer and is ignored; anywhere else a
/// bad line is an error.
pub fn parse_jsonl(file: &str, text: &str) -> Result<Vec<LinedEvent>, CheckError> {
    let mut out = Vec::new();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let total = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        check_len(file, n, line)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(ev) => out.push((n, ev)),
            Err(_) if torn_tail && n == total => break,
            Err(e) => return Err(perr(file, n, format!("not a history event: {e}"))),
        }
    }
    Ok(out)
}

fn event(
    index: usize,
    time: u64,
    process: u64,
    kind: EventType,
    f: &str,
    key: Option<Value>,
    value: Value,
) -> Event {
    Event {
        index: index as u64,
        time,
        process: Process::Client(process),
        kind,
        f: f.to_string(),
        key,
        value,
        extra: Map::new(),
    }
}

fn kind_of(s: &str) -> Option<EventType> {
    match s {
        ":invoke" => Some(EventType::Invoke),
        ":ok" => Some(EventType::Ok),
        ":fail" => Some(EventType::Fail),
        ":info" => Some(EventType::Info),
        _ => None,
    }
}

/// Porcupine's etcd logs: `INFO  jepsen.util - P :type :f value`. Times
/// are line numbers (the format records order only).
pub fn parse_etcd(file: &str, text: &str) -> Result<Vec<LinedEvent>, CheckError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        check_len(file, n, line)?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.split_once("jepsen.util -").map(|(_, r)| r) else {
            return Err(perr(
                file,
                n,
                "expected `INFO jepsen.util - PROCESS :TYPE :F VALUE`",
            ));
        };
        let mut fields = rest.split_whitespace();
        let (Some(p), Some(t), Some(f)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(perr(
                file,
                n,
                "expected PROCESS :TYPE :F VALUE after `jepsen.util -`",
            ));
        };
        let value_text = fields.collect::<Vec<_>>().join(" ");
        let process: u64 = p
            .parse()
            .map_err(|_| perr(file, n, format!("process {p:?} is not a number")))?;
        let kind = kind_of(t).ok_or_else(|| perr(file, n, format!("unknown type {t:?}")))?;
        let f = f
            .strip_prefix(':')
            .ok_or_else(|| perr(file, n, format!("f {f:?} is not a keyword")))?;
        if !matches!(f, "read" | "write" | "cas") {
            return Err(perr(
                file,
                n,
                format!("unknown f {f:?} (expected :read, :write or :cas)"),
            ));
        }
        let value = match value_text.as_str() {
            "nil" | ":timed-out" | "" => Value::Null,
            v => edn_to_json(
                &edn::parse_one(v).map_err(|e| perr(file, n, format!("value {v:?}: {e}")))?,
            )
            .map_err(|e| perr(file, n, e))?,
        };
        // A timed-out read says nothing: it completes as info (unknown).
        let kind = if kind == EventType::Fail && value_text == ":timed-out" {
            EventType::Info
        } else {
            kind
        };
        out.push((n, event(out.len(), n as u64, process, kind, f, None, value)));
    }
    Ok(out)
}

/// Porcupine's kv logs: one flat EDN map per line.
pub fn parse_kv(file: &str, text: &str) -> Result<Vec<LinedEvent>, CheckError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        check_len(file, n, line)?;
        if line.trim().is_empty() {
            continue;
        }
        let form = edn::parse_one(line).map_err(|e| perr(file, n, e))?;
        out.push((n, edn_event(file, n, out.len(), &form, false)?));
    }
    Ok(out)
}

/// Jepsen / Knossos `history.edn`: a sequence of op maps (optionally inside
/// one vector). `jepsen.independent` values `[k v]` are split into key and
/// value when the history looks independent.
pub fn parse_edn(file: &str, text: &str) -> Result<Vec<LinedEvent>, CheckError> {
    let forms = edn::parse_all(text).map_err(|(line, e)| perr(file, line, e))?;
    let mut maps: Vec<(usize, Edn)> = Vec::new();
    for (line, form) in forms {
        match form {
            Edn::Vector(items) | Edn::List(items) => {
                maps.extend(items.into_iter().map(|f| (line, f)));
            }
            other => maps.push((line, other)),
        }
    }
    let independent = maps.iter().any(|(_, m)| {
        let f = m.get("f").and_then(Edn::as_keyword);
        let v = m.get("value");
        matches!((f, v), (Some("read" | "write"), Some(Edn::Vector(items))) if items.len() == 2)
    });
    let mut out = Vec::new();
    for (line, m) in maps {
        if let Some(ev) = edn_event_opt(file, line, out.len(), &m, independent)? {
            out.push((line, ev));
        }
    }
    Ok(out)
}

fn edn_event(
    file: &str,
    line: usize,
    index: usize,
    form: &Edn,
    independent: bool,
) -> Result<Event, CheckError> {
    edn_event_opt(file, line, index, form, independent)?
        .ok_or_else(|| perr(file, line, "op map has no client :process"))
}

/// `None` for nemesis and other non-client ops.
fn edn_event_opt(
    file: &str,
    line: usize,
    index: usize,
    form: &Edn,
    independent: bool,
) -> Result<Option<Event>, CheckError> {
    let Edn::Map(_) = form else {
        return Err(perr(
            file,
            line,
            "expected an op map like {:type :invoke, :f :read, :process 0, ...}",
        ));
    };
    let process = match form.get("process") {
        Some(Edn::Int(p)) if *p >= 0 => *p as u64,
        Some(Edn::Keyword(_)) | None => return Ok(None),
        Some(other) => {
            return Err(perr(
                file,
                line,
                format!(":process {other:?} is not a client number"),
            ))
        }
    };
    let t = form
        .get("type")
        .and_then(Edn::as_keyword)
        .ok_or_else(|| perr(file, line, "op map lacks :type"))?;
    let kind =
        kind_of(&format!(":{t}")).ok_or_else(|| perr(file, line, format!("unknown :type :{t}")))?;
    let f = form
        .get("f")
        .and_then(Edn::as_keyword)
        .ok_or_else(|| perr(file, line, "op map lacks :f"))?;
    let mut value =
        edn_to_json(form.get("value").unwrap_or(&Edn::Nil)).map_err(|e| perr(file, line, e))?;
    let mut key = match form.get("key") {
        Some(k) => Some(edn_to_json(k).map_err(|e| perr(file, line, e))?),
        None => None,
    };
    if independent && key.is_none() {
        match value {
            Value::Array(mut kv) if kv.len() == 2 => {
                let v = kv.pop().expect("two items");
                key = kv.pop();
                value = v;
            }
            Value::Null => {}
            other => {
                return Err(perr(
                    file,
                    line,
                    format!("independent op value must be [key value], got {other}"),
                ));
            }
        }
    }
    let time = match form.get("time") {
        Some(Edn::Int(t)) if *t >= 0 => *t as u64,
        _ => line as u64,
    };
    let mut ev = event(index, time, process, kind, f, key, value);
    if matches!(form.get("final?"), Some(Edn::Bool(true))) {
        ev.extra.insert("final".into(), Value::Bool(true));
    }
    Ok(Some(ev))
}

pub fn edn_to_json(e: &Edn) -> Result<Value, String> {
    Ok(match e {
        Edn::Nil => Value::Null,
        Edn::Bool(b) => Value::Bool(*b),
        Edn::Int(i) => Value::Number((*i).into()),
        Edn::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or("non-finite number")?,
        Edn::Str(s) => Value::String(s.clone()),
        Edn::Keyword(k) => Value::String(format!(":{k}")),
        Edn::Symbol(s) => Value::String(s.clone()),
        Edn::Vector(items) | Edn::List(items) | Edn::Set(items) => {
            Value::Array(items.iter().map(edn_to_json).collect::<Result<_, _>>()?)
        }
        Edn::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let k = match k {
                    Edn::Keyword(k) => k.clone(),
                    Edn::Str(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                m.insert(k, edn_to_json(v)?);
            }
            Value::Object(m)
        }
    })
}

//! Transactions, read from faultline's ops (`f: "txn"`, micro-ops as
//! `["append", k, v]`, `["r", k, [..]]`) or from Jepsen / Elle EDN
//! (`{:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [2]]]}`; `:process`,
//! `:time`, `:f` and `:index` may be missing, and then an `:ok` completes
//! the `:invoke` before it).

use serde_json::Value;
use std::collections::HashMap;

use crate::edn::{self, Edn};
use crate::formats::edn_to_json;
use crate::history::{key_string, Op, Outcome};
use crate::CheckError;

/// A micro-operation. Keys are normalized to text (`1` and `"1"` alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Append {
        key: String,
        value: i64,
    },
    /// `None`: not known (an unfinished transaction's read).
    Read {
        key: String,
        value: Option<Vec<i64>>,
    },
    /// rw-register: write `value`.
    Write {
        key: String,
        value: i64,
    },
    /// rw-register: `None` not known; `Some(None)` the initial (nil) value.
    ReadRegister {
        key: String,
        value: Option<Option<i64>>,
    },
}

impl Mop {
    pub fn key(&self) -> &str {
        match self {
            Mop::Append { key, .. }
            | Mop::Read { key, .. }
            | Mop::Write { key, .. }
            | Mop::ReadRegister { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    Ok,
    Fail,
    /// It may or may not have happened.
    Info,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Txn {
    /// The history index of its invocation: how anomalies name it.
    pub index: u64,
    pub process: String,
    pub outcome: TxnOutcome,
    pub invoke_time: u64,
    /// `None` for `info`: it may take effect any time later.
    pub complete_time: Option<u64>,
    pub mops: Vec<Mop>,
    /// One of the final reads after healing (`"final":true`): what the
    /// system kept.
    pub final_read: bool,
}

/// One micro-op from its JSON form; `f` may be spelled `append` or
/// `:append` (EDN keywords). A completed read of `nil` saw the empty list.
fn mop(v: &Value, registers: bool) -> Result<Mop, String> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| format!("micro-op {v} is not [f key value]"))?;
    let f = a[0].as_str().unwrap_or("").trim_start_matches(':');
    let key = key_string(&a[1]);
    let int = |x: &Value| {
        x.as_i64()
            .ok_or_else(|| format!("micro-op {v}: {x} is not an integer"))
    };
    match f {
        "append" => Ok(Mop::Append {
            key,
            value: int(&a[2])?,
        }),
        "w" => Ok(Mop::Write {
            key,
            value: int(&a[2])?,
        }),
        // A register read: a number, or nil for the initial value.
        "r" if a[2].is_number() || a[2].is_null() && registers => Ok(Mop::ReadRegister {
            key,
            value: Some(match &a[2] {
                Value::Null => None,
                x => Some(int(x)?),
            }),
        }),
        "r" => Ok(Mop::Read {
            key,
            value: match &a[2] {
                Value::Null => Some(Vec::new()),
                Value::Array(items) => Some(items.iter().map(int).collect::<Result<_, _>>()?),
                other => return Err(format!("micro-op {v}: read value {other} is not a list")),
            },
        }),
        other => Err(format!(
            "micro-op {v}: {other:?} is not a transaction micro-op (append, w, r)"
        )),
    }
}

/// Whether a transaction value holds rw-register micro-ops: a `w`, or a
/// read of a number.
fn has_register_ops(v: &Value) -> bool {
    v.as_array().into_iter().flatten().any(|m| {
        let f = m
            .get(0)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_start_matches(':');
        f == "w" || f == "r" && m.get(2).is_some_and(Value::is_number)
    })
}

/// A transaction's micro-ops; with `registers` (a history of
/// rw-register transactions), a read of nil is the initial value rather
/// than the empty list.
fn mops(v: &Value, registers: bool) -> Result<Vec<Mop>, String> {
    v.as_array()
        .ok_or_else(|| format!("transaction {v} is not a list of micro-ops"))?
        .iter()
        .map(|m| mop(m, registers))
        .collect()
}

/// The transactions among faultline ops (`f == "txn"`). An ok one's
/// micro-ops come from its completion (reads filled in); others' from
/// their invocation, with reads unknown.
pub fn from_ops(ops: &[Op]) -> Result<Vec<Txn>, String> {
    let registers = ops
        .iter()
        .filter(|o| o.f == "txn")
        .any(|o| has_register_ops(&o.input) || has_register_ops(&o.output));
    ops.iter()
        .filter(|o| o.f == "txn")
        .map(|o| {
            let outcome = match o.outcome {
                Outcome::Ok => TxnOutcome::Ok,
                Outcome::Fail => TxnOutcome::Fail,
                Outcome::Info => TxnOutcome::Info,
            };
            let source = if outcome == TxnOutcome::Ok {
                &o.output
            } else {
                &o.input
            };
            let mut m = mops(source, registers).map_err(|e| format!("line {}: {e}", o.line))?;
            if outcome != TxnOutcome::Ok {
                unknown_reads(&mut m);
            }
            Ok(Txn {
                index: o.invoke_index,
                process: o.process.to_string(),
                outcome,
                invoke_time: o.invoke_time,
                complete_time: o.complete_time,
                mops: m,
                final_read: o.final_read,
            })
        })
        .collect()
}

fn unknown_reads(m: &mut [Mop]) {
    for op in m.iter_mut() {
        match op {
            Mop::Read { value, .. } => *value = None,
            Mop::ReadRegister { value, .. } => *value = None,
            _ => {}
        }
    }
}

/// Whether these are rw-register transactions (any write or register
/// read) rather than list-append ones.
pub fn are_registers(txns: &[Txn]) -> bool {
    txns.iter()
        .flat_map(|t| &t.mops)
        .any(|m| matches!(m, Mop::Write { .. } | Mop::ReadRegister { .. }))
}

/// Transactions from Jepsen / Elle EDN text.
pub fn from_edn(file: &str, text: &str) -> Result<Vec<Txn>, CheckError> {
    let forms = edn::parse_all(text).map_err(|(line, e)| perr(file, line, e))?;
    let registers = forms.iter().any(|(_, f)| {
        f.get("value")
            .and_then(|v| edn_to_json(v).ok())
            .is_some_and(|v| has_register_ops(&v))
    });
    let mut open: HashMap<String, (usize, u64, Option<u64>)> = HashMap::new();
    let mut txns: Vec<Txn> = Vec::new();
    for (n, (line, form)) in forms.iter().enumerate() {
        let Some(op) = EdnOp::read(form).map_err(|e| perr(file, *line, e))? else {
            continue;
        };
        // Without :process, an :ok completes the :invoke before it, and the
        // transaction has a process of its own (no session order).
        let process = op.process.clone().unwrap_or_else(|| "?".into());
        let index = op.index.unwrap_or(n as u64);
        // Without :time there is no real-time order to check.
        let time = op.time;
        match op.kind.as_str() {
            "invoke" => {
                if open.insert(process.clone(), (*line, index, time)).is_some() {
                    return Err(perr(
                        file,
                        *line,
                        format!("process {process} invoked twice without completing"),
                    ));
                }
            }
            kind => {
                let Some((_, invoke_index, invoke_time)) = open.remove(&process) else {
                    return Err(perr(
                        file,
                        *line,
                        format!("a completion for process {process}, which has no open invocation"),
                    ));
                };
                let outcome = match kind {
                    "ok" => TxnOutcome::Ok,
                    "fail" => TxnOutcome::Fail,
                    _ => TxnOutcome::Info,
                };
                let mut m = mops(&op.value, registers).map_err(|e| perr(file, *line, e))?;
                if outcome != TxnOutcome::Ok {
                    unknown_reads(&mut m);
                }
                let process = match op.process {
                    Some(_) => process,
                    None => format!("?{invoke_index}"),
                };
                txns.push(Txn {
                    index: invoke_index,
                    process,
                    outcome,
                    invoke_time: invoke_time.unwrap_or(0),
                    complete_time: time
                        .filter(|_| outcome != TxnOutcome::Info && invoke_time.is_some()),
                    mops: m,
                    final_read: false,
                });
            }
        }
    }
    // Unfinished at the end: may have happened.
    for (process, (line, index, time)) in open {
        let _ = line;
        txns.push(Txn {
            index,
            process,
            outcome: TxnOutcome::Info,
            invoke_time: time.unwrap_or(0),
            complete_time: None,
            mops: Vec::new(),
            final_read: false,
        });
    }
    txns.sort_by_key(|t| t.index);
    Ok(txns)
}

fn perr(file: &str, line: usize, msg: impl Into<String>) -> CheckError {
    CheckError::Model(format!("{file}:{line}: {}", msg.into()))
}

/// The fields of one EDN op map that matter here.
struct EdnOp {
    kind: String,
    process: Option<String>,
    time: Option<u64>,
    index: Option<u64>,
    value: Value,
}

impl EdnOp {
    /// `None` for ops that are not client transactions (nemesis ops,
    /// another `:f`).
    fn read(form: &Edn) -> Result<Option<EdnOp>, String> {
        let Edn::Map(_) = form else {
            return Err("expected an op map like {:type :invoke, :f :txn, :value [...]}".into());
        };
        if let Some(f) = form.get("f").and_then(Edn::as_keyword) {
            if f != "txn" {
                return Ok(None);
            }
        }
        let process = match form.get("process") {
            Some(Edn::Int(p)) => Some(p.to_string()),
            Some(Edn::Keyword(_)) => return Ok(None),
            Some(other) => return Err(format!(":process {other:?} is not a client number")),
            None => None,
        };
        let kind = form
            .get("type")
            .and_then(Edn::as_keyword)
            .ok_or("op map lacks :type")?
            .to_string();
        if !["invoke", "ok", "fail", "info"].contains(&kind.as_str()) {
            return Err(format!("unknown :type :{kind}"));
        }
        let int = |k: &str| match form.get(k) {
            Some(Edn::Int(i)) if *i >= 0 => Some(*i as u64),
            _ => None,
        };
        Ok(Some(EdnOp {
            kind,
            process,
            time: int("time"),
            index: int("index"),
            value: edn_to_json(form.get("value").unwrap_or(&Edn::Nil))?,
        }))
    }
}

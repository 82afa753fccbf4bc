//! Simulated register ops and their history events, shared by the
//! property tests and the concurrency benchmark.

use faultline_checker::history::LinedEvent;
use faultline_checker::{Event, EventType, Process};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct SimOp {
    pub process: u64,
    pub f: &'static str,
    pub key: u64,
    pub input: Value,
    pub output: Value,
    pub kind: EventType,
    pub call: u64,
    pub ret: u64,
}

pub fn to_events(ops: &[SimOp]) -> Vec<LinedEvent> {
    let mut evs: Vec<(u64, u8, usize)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        evs.push((o.call, 0, i));
        evs.push((o.ret, 1, i));
    }
    evs.sort();
    evs.iter()
        .enumerate()
        .map(|(idx, &(t, k, i))| {
            let o = &ops[i];
            let (kind, value) = if k == 0 {
                (EventType::Invoke, o.input.clone())
            } else {
                (o.kind, o.output.clone())
            };
            let ev = Event {
                index: idx as u64,
                time: t,
                process: Process::Client(o.process),
                kind,
                f: o.f.into(),
                key: Some(json!(format!("k{}", o.key))),
                value,
                extra: Default::default(),
            };
            (idx + 1, ev)
        })
        .collect()
}

//! What a built-in client's request came to, and the error replies they
//! share: Maelstrom's codes, definite below 1000 and indefinite from it
//! (DESIGN §2).

use serde_json::{json, Value};

/// A definite failure: the request did not take effect.
pub const TEMPORARILY_UNAVAILABLE: i64 = 11;
/// An indefinite outcome: it may have taken effect.
pub const INDEFINITE: i64 = 1000;

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// It never reached the server: it did not happen.
    NotSent(String),
    /// A Maelstrom reply body (`read_ok`, `error` with a code, ...).
    Reply(Value),
}

/// A Maelstrom error reply.
pub fn error(code: i64, text: impl Into<String>) -> Answer {
    Answer::Reply(json!({"type": "error", "code": code, "text": text.into()}))
}

//! What a built-in client's request came to, and the error replies they
//! share: Maelstrom's codes, definite or indefinite as docs/protocol.md
//! ("Error codes") says: 0, 13, 1000 and up, and any unassigned code leave
//! the outcome open.

pub use faultline_checker::ErrorCode;
use serde_json::Value;

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// It never reached the server: it did not happen.
    NotSent(String),
    /// A Maelstrom reply body (`read_ok`, `error` with a code, ...).
    Reply(Value),
}

/// A Maelstrom error reply.
pub fn error(code: ErrorCode, text: impl Into<String>) -> Answer {
    Answer::Reply(code.reply(text))
}

/// What a SQL server said when a statement failed (the SQL client's
/// dialects fill it in; the driver maps it to an answer).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    /// The server aborted the transaction for a conflict: it did not
    /// happen, and a retry may succeed.
    pub conflict: bool,
    /// The server's code and message, for the history.
    pub said: String,
}

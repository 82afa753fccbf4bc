//! Maelstrom's error codes and what each says about an operation's
//! outcome (docs/protocol.md, "Error codes"). Every crate that makes or
//! reads an error reply names its code here, so which codes are definite
//! is decided in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The code of an error reply. Any number is a code: the unassigned ones
/// and a node's own (1000 and up) leave the outcome open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub i64);

impl ErrorCode {
    /// The request timed out: it may or may not have happened.
    pub const TIMEOUT: ErrorCode = ErrorCode(0);
    pub const NODE_NOT_FOUND: ErrorCode = ErrorCode(1);
    pub const NOT_SUPPORTED: ErrorCode = ErrorCode(10);
    /// The node cannot serve it now (not the leader, overloaded): it did
    /// not happen, and a retry may succeed.
    pub const TEMPORARILY_UNAVAILABLE: ErrorCode = ErrorCode(11);
    pub const MALFORMED_REQUEST: ErrorCode = ErrorCode(12);
    /// The node crashed while handling it: it may have happened.
    pub const CRASH: ErrorCode = ErrorCode(13);
    pub const ABORT: ErrorCode = ErrorCode(14);
    /// A `read` answered so observed the key absent.
    pub const KEY_DOES_NOT_EXIST: ErrorCode = ErrorCode(20);
    pub const KEY_ALREADY_EXISTS: ErrorCode = ErrorCode(21);
    /// A `cas` whose expected value did not match.
    pub const PRECONDITION_FAILED: ErrorCode = ErrorCode(22);
    pub const TXN_CONFLICT: ErrorCode = ErrorCode(30);
    /// The first of a node's own codes, and what faultline's built-in
    /// clients answer when they cannot tell whether a request applied.
    pub const INDEFINITE: ErrorCode = ErrorCode(1000);
    /// faultline's own, never sent by a node: no code came with the
    /// outcome (a reply it could not read, a request it could not send).
    pub const NO_CODE: ErrorCode = ErrorCode(-1);

    /// Whether the operation surely did not happen. Timeout (0), crash
    /// (13), a node's own codes (1000 and up) and any code Maelstrom does
    /// not assign leave it open: a `fail` that did happen is a false
    /// alarm, an `info` costs only checking time.
    pub fn is_definite(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 12 | 14 | 20 | 21 | 22 | 30)
    }

    /// Maelstrom's name for the code, or what kind of code it is.
    pub fn name(self) -> &'static str {
        match self.0 {
            -1 => "no-code",
            0 => "timeout",
            1 => "node-not-found",
            10 => "not-supported",
            11 => "temporarily-unavailable",
            12 => "malformed-request",
            13 => "crash",
            14 => "abort",
            20 => "key-does-not-exist",
            21 => "key-already-exists",
            22 => "precondition-failed",
            30 => "txn-conflict",
            c if c >= 1000 => "node-defined",
            _ => "unassigned",
        }
    }

    /// The code of an error reply body (`{"type":"error","code":C}`);
    /// None for any other reply. An error without a readable code is
    /// `NO_CODE`.
    pub fn of_reply(body: &Value) -> Option<ErrorCode> {
        if body.get("type").and_then(Value::as_str) != Some("error") {
            return None;
        }
        Some(
            body.get("code")
                .and_then(Value::as_i64)
                .map_or(ErrorCode::NO_CODE, ErrorCode),
        )
    }

    /// The error reply body for this code.
    pub fn reply(self, text: impl Into<String>) -> Value {
        serde_json::json!({"type": "error", "code": self.0, "text": text.into()})
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The table of docs/protocol.md, "Error codes", row by row.
    #[test]
    fn definite_codes_are_the_documented_ones() {
        let definite = [1, 10, 11, 12, 14, 20, 21, 22, 30];
        let open = [-1, 0, 2, 9, 13, 15, 19, 23, 29, 31, 999, 1000, 1001, 5000];
        for c in definite {
            assert!(ErrorCode(c).is_definite(), "{c}");
        }
        for c in open {
            assert!(!ErrorCode(c).is_definite(), "{c}");
        }
        assert_eq!(ErrorCode(2).name(), "unassigned");
        assert_eq!(ErrorCode(1234).name(), "node-defined");
        assert_eq!(ErrorCode::CRASH.to_string(), "13 (crash)");
    }

    #[test]
    fn replies_are_read_and_made() {
        let e = ErrorCode::PRECONDITION_FAILED.reply("differs");
        assert_eq!(e, json!({"type": "error", "code": 22, "text": "differs"}));
        assert_eq!(ErrorCode::of_reply(&e), Some(ErrorCode(22)));
        assert_eq!(ErrorCode::of_reply(&json!({"type": "read_ok"})), None);
        let bare = json!({"type": "error"});
        assert_eq!(ErrorCode::of_reply(&bare), Some(ErrorCode::NO_CODE));
        assert_eq!(serde_json::to_value(ErrorCode(11)).unwrap(), json!(11));
    }
}

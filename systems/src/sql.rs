//! The built-in SQL client of `txn-list-append` and `txn-rw-register`,
//! one driver for every dialect: one SQL transaction per faultline
//! transaction, at the isolation level the system file's variable names.
//! Rows live in a table `txn (id bigint primary key, list text, reg
//! bigint)` made by the system's setup: an append is an upsert that adds
//! `,V` to `list`, a write an upsert of `reg`, a read selects both (one run
//! uses one). The dialects (`postgres`, `mysql`) say only how to connect,
//! how each statement is spelt, and which errors are conflicts.
//!
//! Outcomes are mapped soundly: a conflict (a serialization failure or a
//! deadlock; on Galera also a certification failure) is a definite abort;
//! any error before COMMIT was sent is a definite failure (the connection
//! is dropped, and the server rolls back a transaction whose session
//! ended without COMMIT); an error, a lost connection or a timeout during
//! COMMIT is indefinite.

use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::answer::{error, Answer, ErrorCode, SqlError};
use crate::client::{BadSetting, Caller, ClientKind, ClientSettings, Connection, Endpoint};
use crate::{mysql, postgres};

/// `[client] adapter = "postgres"` or `"mysql"`: one kind a dialect.
pub struct Kind {
    name: &'static str,
    dialect: Dialect,
}

pub static POSTGRES: Kind = Kind {
    name: "postgres",
    dialect: Dialect::Postgres,
};

pub static MYSQL: Kind = Kind {
    name: "mysql",
    dialect: Dialect::Mysql,
};

impl ClientKind for Kind {
    fn name(&self) -> &'static str {
        self.name
    }

    fn keys(&self) -> &'static [&'static str] {
        &["isolation", "target_session_attrs"]
    }

    fn plan(&self, s: ClientSettings) -> Result<Arc<dyn Endpoint>, BadSetting> {
        let isolation = s.isolation.unwrap_or_else(|| "serializable".into());
        if isolation_sql(&isolation).is_none() {
            return Err(BadSetting {
                key: "isolation",
                message: format!(
                    "[client] isolation {isolation:?} is none of serializable, \
                     repeatable-read, read-committed, read-uncommitted"
                ),
            });
        }
        Ok(Arc::new(SqlEndpoint {
            dialect: self.dialect,
            address: s.address,
            isolation,
            candidates: s.candidates,
        }))
    }
}

/// A SQL server's address, the isolation its transactions run at, and
/// with `target_session_attrs = "read-write"` every node to follow.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlEndpoint {
    pub dialect: Dialect,
    pub address: String,
    pub isolation: String,
    pub candidates: Vec<(String, String)>,
}

impl Endpoint for SqlEndpoint {
    fn connect(&self, _: &Caller) -> Box<dyn Connection> {
        Box::new(
            SqlClient::new(self.dialect, self.address.clone(), self.isolation.clone())
                .following(self.candidates.clone()),
        )
    }
}

impl Connection for SqlClient {
    fn call<'a>(&'a mut self, body: &'a Value, _: u64, timeout: Duration) -> BoxFuture<'a, Answer> {
        Box::pin(SqlClient::call(self, body, timeout))
    }
}

/// Which server a [`SqlClient`] speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// One open session.
enum Session {
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

pub struct SqlClient {
    pub dialect: Dialect,
    /// `host:port`.
    pub address: String,
    /// `serializable`, `repeatable-read`, `read-committed` or
    /// `read-uncommitted`.
    pub isolation: String,
    session: Option<Session>,
    /// Set while COMMIT is in flight: a timeout then leaves the outcome
    /// unknown.
    committing: bool,
    /// Every node's (id, address), its own first, when it follows the
    /// server that accepts writes (`target_session_attrs = "read-write"`);
    /// empty: `address` alone.
    candidates: Vec<(String, String)>,
    /// The node whose server the open session reaches, when following.
    serving: Option<String>,
}

impl std::fmt::Debug for SqlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SqlClient({:?}, {}, {})",
            self.dialect, self.address, self.isolation
        )
    }
}

/// The SQL spelling of an isolation level name.
pub fn isolation_sql(level: &str) -> Option<&'static str> {
    Some(match level {
        "serializable" => "SERIALIZABLE",
        "repeatable-read" => "REPEATABLE READ",
        "read-committed" => "READ COMMITTED",
        "read-uncommitted" => "READ UNCOMMITTED",
        _ => return None,
    })
}

/// A row's value as the workload reads it: the list's elements, else the
/// register, else nothing. An element that is not a number is kept as
/// text, so the checker sees what the server held rather than a shorter
/// list.
pub fn row_value(list: Option<String>, reg: Option<i64>) -> Value {
    match (list, reg) {
        (Some(l), _) => Value::Array(
            l.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse::<i64>().map_or_else(|_| json!(x), Value::from))
                .collect(),
        ),
        (None, Some(r)) => json!(r),
        (None, None) => Value::Null,
    }
}

impl SqlClient {
    pub fn new(dialect: Dialect, address: String, isolation: String) -> SqlClient {
        SqlClient {
            dialect,
            address,
            isolation,
            session: None,
            committing: false,
            candidates: Vec::new(),
            serving: None,
        }
    }

    /// Follows whichever of `candidates` (node id, address) accepts
    /// writes, as libpq's `target_session_attrs=read-write` does: each
    /// new session tries them in order, the last one that served first,
    /// and each reply names the node in `served_by`.
    pub fn following(mut self, candidates: Vec<(String, String)>) -> SqlClient {
        self.candidates = candidates;
        self
    }

    /// Performs one transaction within `timeout`.
    pub async fn call(&mut self, body: &Value, timeout: Duration) -> Answer {
        self.committing = false;
        let answer = match tokio::time::timeout(timeout, self.txn(body)).await {
            Ok(a) => a,
            Err(_) if self.committing => error(
                ErrorCode::INDEFINITE,
                format!("COMMIT unanswered within {} ms", timeout.as_millis()),
            ),
            // COMMIT never left: dropping the connection rolls it back.
            Err(_) => error(
                ErrorCode::TEMPORARILY_UNAVAILABLE,
                format!("no answer within {} ms, before COMMIT", timeout.as_millis()),
            ),
        };
        let mut answer = answer;
        if let (Some(node), Answer::Reply(r)) = (&self.serving, &mut answer) {
            r["served_by"] = json!(node);
        }
        if !matches!(&answer, Answer::Reply(r) if r["type"] == "txn_ok") {
            // Whatever the session was in the middle of ends with it.
            self.session = None;
        }
        answer
    }

    async fn connect(&mut self) -> Result<&mut Session, String> {
        if self.session.is_none() {
            let session = if self.candidates.is_empty() {
                open(self.dialect, &self.address).await?
            } else {
                self.open_writable().await?
            };
            self.session = Some(session);
        }
        Ok(self.session.as_mut().expect("connected"))
    }

    /// A session with the first candidate that accepts writes, the one
    /// that served last tried first; an error names why each was passed
    /// over.
    async fn open_writable(&mut self) -> Result<Session, String> {
        let mut order = self.candidates.clone();
        if let Some(at) = self
            .serving
            .as_ref()
            .and_then(|s| order.iter().position(|(id, _)| id == s))
        {
            order.rotate_left(at);
        }
        let mut why = Vec::new();
        for (id, address) in order {
            let mut session = match open(self.dialect, &address).await {
                Ok(s) => s,
                Err(e) => {
                    why.push(format!("{id}: {e}"));
                    continue;
                }
            };
            match session.read_only().await {
                Ok(false) => {
                    self.serving = Some(id);
                    return Ok(session);
                }
                Ok(true) => why.push(format!("{id}: read-only")),
                Err(e) => why.push(format!("{id}: {}", e.said)),
            }
        }
        self.serving = None;
        Err(format!("no server accepts writes ({})", why.join("; ")))
    }

    async fn txn(&mut self, body: &Value) -> Answer {
        let Some(level) = isolation_sql(&self.isolation) else {
            return error(
                ErrorCode::MALFORMED_REQUEST,
                format!("unknown isolation level {:?}", self.isolation),
            );
        };
        let ops = match parse_ops(body) {
            Ok(ops) => ops,
            Err(e) => return error(ErrorCode::MALFORMED_REQUEST, e),
        };
        let session = match self.connect().await {
            Ok(s) => s,
            Err(e) => return Answer::NotSent(e),
        };
        if let Err(e) = session.begin(level).await {
            return before_commit(e);
        }
        let mut done = Vec::with_capacity(ops.len());
        for op in &ops {
            match session.run(op).await {
                Ok(v) => done.push(v),
                Err(e) => return before_commit(e),
            }
        }
        self.committing = true;
        let session = self.session.as_mut().expect("connected");
        let committed = session.commit().await;
        self.committing = false;
        match committed {
            Ok(()) => Answer::Reply(json!({"type": "txn_ok", "txn": done})),
            Err(e) if e.conflict => error(ErrorCode::TXN_CONFLICT, format!("COMMIT: {}", e.said)),
            // The server may have committed before the answer was lost.
            Err(e) => error(ErrorCode::INDEFINITE, format!("COMMIT: {}", e.said)),
        }
    }
}

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Read(i64),
    Append(i64, i64),
    Write(i64, i64),
}

/// The request's `[f, k, v]` micro-ops, or what is wrong with them.
fn parse_ops(body: &Value) -> Result<Vec<Op>, String> {
    let ops = body["txn"]
        .as_array()
        .ok_or_else(|| format!("a txn request without a txn array: {body}"))?;
    ops.iter()
        .map(|op| {
            let key = op[1].as_i64();
            let value = op[2].as_i64();
            match (op[0].as_str(), key, value) {
                (Some("r"), Some(k), _) => Ok(Op::Read(k)),
                (Some("append"), Some(k), Some(v)) => Ok(Op::Append(k, v)),
                (Some("w"), Some(k), Some(v)) => Ok(Op::Write(k, v)),
                _ => Err(format!("not a micro-op on an integer key and value: {op}")),
            }
        })
        .collect()
}

/// A session with the server at `address` (`host:port`).
async fn open(dialect: Dialect, address: &str) -> Result<Session, String> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    Ok(match dialect {
        Dialect::Postgres => Session::Postgres(postgres::connect(host, port).await?),
        Dialect::Mysql => Session::Mysql(mysql::connect(host, port).await?),
    })
}

impl Session {
    /// Whether the server refuses writes (a standby, a read-only replica).
    async fn read_only(&mut self) -> Result<bool, SqlError> {
        match self {
            Session::Postgres(c) => postgres::read_only(c).await,
            Session::Mysql(c) => mysql::read_only(c).await,
        }
    }

    async fn begin(&mut self, level: &str) -> Result<(), SqlError> {
        match self {
            Session::Postgres(c) => postgres::begin(c, level).await,
            Session::Mysql(c) => mysql::begin(c, level).await,
        }
    }

    /// Runs one micro-op, giving it back with a read's value filled in.
    async fn run(&mut self, op: &Op) -> Result<Value, SqlError> {
        Ok(match *op {
            Op::Read(k) => {
                let (list, reg) = match self {
                    Session::Postgres(c) => postgres::read(c, k).await?,
                    Session::Mysql(c) => mysql::read(c, k).await?,
                };
                json!(["r", k, row_value(list, reg)])
            }
            Op::Append(k, v) => {
                match self {
                    Session::Postgres(c) => postgres::append(c, k, v).await?,
                    Session::Mysql(c) => mysql::append(c, k, v).await?,
                }
                json!(["append", k, v])
            }
            Op::Write(k, v) => {
                match self {
                    Session::Postgres(c) => postgres::write(c, k, v).await?,
                    Session::Mysql(c) => mysql::write(c, k, v).await?,
                }
                json!(["w", k, v])
            }
        })
    }

    async fn commit(&mut self) -> Result<(), SqlError> {
        match self {
            Session::Postgres(c) => postgres::commit(c).await,
            Session::Mysql(c) => mysql::commit(c).await,
        }
    }
}

/// An error before COMMIT was sent: the transaction did not commit.
fn before_commit(e: SqlError) -> Answer {
    if e.conflict {
        error(ErrorCode::TXN_CONFLICT, e.said)
    } else {
        error(ErrorCode::TEMPORARILY_UNAVAILABLE, e.said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_levels_are_spelt_as_sql() {
        assert_eq!(isolation_sql("repeatable-read"), Some("REPEATABLE READ"));
        assert_eq!(isolation_sql("serializable"), Some("SERIALIZABLE"));
        assert_eq!(isolation_sql("snapshot"), None);
    }

    #[test]
    fn a_row_reads_as_its_list_else_its_register() {
        assert_eq!(row_value(Some("1,2,3".into()), None), json!([1, 2, 3]));
        assert_eq!(row_value(Some("".into()), Some(4)), json!([]));
        assert_eq!(row_value(None, Some(4)), json!(4));
        assert_eq!(row_value(None, None), Value::Null);
        // What the server held, not a shorter list.
        assert_eq!(row_value(Some("1,x".into()), None), json!([1, "x"]));
    }

    #[test]
    fn micro_ops_are_checked_before_anything_is_sent() {
        let ok = json!({"txn": [["r", 1, null], ["append", 2, 3], ["w", 4, 5]]});
        assert_eq!(
            parse_ops(&ok).unwrap(),
            vec![Op::Read(1), Op::Append(2, 3), Op::Write(4, 5)]
        );
        assert!(parse_ops(&json!({"txn": [["append", 1, "x"]]}))
            .unwrap_err()
            .contains("not a micro-op"));
        assert!(parse_ops(&json!({"type": "txn"}))
            .unwrap_err()
            .contains("without a txn array"));
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SOON: Duration = Duration::from_secs(5);

    /// A listener on a free loopback port, and its address.
    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = l.local_addr().unwrap().to_string();
        (l, at)
    }

    /// Where a fake PostgreSQL server hangs up.
    #[derive(Clone, Copy)]
    enum HangUp {
        /// At the first statement after BEGIN (a read's prepare).
        AfterBegin,
        /// When COMMIT arrives.
        AtCommit,
    }

    /// Reads one frontend message (type byte, then a length that counts
    /// itself); the startup message has no type byte.
    async fn message(s: &mut TcpStream, typed: bool) -> Option<(u8, Vec<u8>)> {
        let ty = if typed { s.read_u8().await.ok()? } else { 0 };
        let len = s.read_i32().await.ok()? as usize;
        let mut body = vec![0; len.checked_sub(4)?];
        s.read_exact(&mut body).await.ok()?;
        Some((ty, body))
    }

    /// Just enough of PostgreSQL's protocol to start a session and a
    /// transaction, then hang up where `hang_up` says.
    async fn fake_postgres(l: TcpListener, hang_up: HangUp) {
        let (mut s, _) = l.accept().await.unwrap();
        message(&mut s, false).await.unwrap(); // startup
                                               // AuthenticationOk, ReadyForQuery (idle).
        s.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I")
            .await
            .unwrap();
        while let Some((ty, body)) = message(&mut s, true).await {
            let query = String::from_utf8_lossy(&body).to_string();
            match (ty, hang_up) {
                (b'Q', _) if query.starts_with("BEGIN") => {
                    // CommandComplete "BEGIN", ReadyForQuery (in a transaction).
                    s.write_all(b"C\0\0\0\x0aBEGIN\0Z\0\0\0\x05T")
                        .await
                        .unwrap();
                }
                (b'Q', HangUp::AtCommit) if query.starts_with("COMMIT") => return,
                (_, HangUp::AfterBegin) => return,
                _ => {}
            }
        }
    }

    async fn call(client: &mut SqlClient, txn: Value) -> Answer {
        tokio::time::timeout(SOON, client.call(&json!({"type": "txn", "txn": txn}), SOON))
            .await
            .expect("the client answers within its own timeout")
    }

    fn code(a: &Answer) -> Option<ErrorCode> {
        match a {
            Answer::Reply(r) => ErrorCode::of_reply(r),
            Answer::NotSent(_) => None,
        }
    }

    #[tokio::test]
    async fn a_connection_lost_before_commit_is_a_definite_failure() {
        let (l, at) = listener().await;
        let server = tokio::spawn(fake_postgres(l, HangUp::AfterBegin));
        let mut c = SqlClient::new(Dialect::Postgres, at, "serializable".into());
        let a = call(&mut c, json!([["r", 1, null]])).await;
        assert_eq!(code(&a), Some(ErrorCode::TEMPORARILY_UNAVAILABLE), "{a:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_lost_during_commit_is_indefinite() {
        let (l, at) = listener().await;
        let server = tokio::spawn(fake_postgres(l, HangUp::AtCommit));
        let mut c = SqlClient::new(Dialect::Postgres, at, "serializable".into());
        let a = call(&mut c, json!([])).await;
        assert_eq!(code(&a), Some(ErrorCode::INDEFINITE), "{a:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_answers_garbage_or_is_down_took_nothing() {
        for dialect in [Dialect::Postgres, Dialect::Mysql] {
            let (l, at) = listener().await;
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let _ = s.write_all(b"HTTP/1.1 400 garbage\r\n\r\n\xff\xfe").await;
                let mut sink = [0u8; 1024];
                // Hold the connection until the client gives up on it.
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            let mut c = SqlClient::new(dialect, at, "serializable".into());
            // Refused at the handshake, or (PostgreSQL, which waits for
            // the rest of what looks like a long message) timed out before
            // BEGIN: either way the append did not happen.
            let a = call(&mut c, json!([["append", 1, 2]])).await;
            let definite = match &a {
                Answer::NotSent(_) => true,
                Answer::Reply(r) => {
                    ErrorCode::of_reply(r) == Some(ErrorCode::TEMPORARILY_UNAVAILABLE)
                }
            };
            assert!(definite, "{dialect:?}: {a:?}");
            server.abort();
            // Nothing listens there now.
            let (l, at) = listener().await;
            drop(l);
            let mut c = SqlClient::new(dialect, at, "serializable".into());
            let a = call(&mut c, json!([["r", 1, null]])).await;
            assert!(
                matches!(&a, Answer::NotSent(e) if e.contains("cannot connect")),
                "{dialect:?}: {a:?}"
            );
        }
    }
}

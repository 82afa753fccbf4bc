//! The built-in PostgreSQL client for `txn-list-append` and
//! `txn-rw-register`: one SQL transaction per faultline transaction, at
//! the isolation level the system file's variable names. Rows live in the
//! table `txn (id bigint primary key, list text, reg bigint)`, made by the
//! system's setup step: an append is an upsert that adds `,V` to `list`, a
//! write an upsert of `reg`, a read selects both (one run uses one).
//!
//! Outcomes are mapped soundly: a serialization failure or deadlock
//! (SQLSTATE 40001, 40P01) is a definite abort; any error before COMMIT
//! was sent is a definite failure (the server rolls the transaction back
//! when it ends without COMMIT); a connection lost during COMMIT, or a
//! timeout there, is indefinite.

use serde_json::{json, Value};
use std::time::Duration;

use crate::answer::{error, Answer, INDEFINITE, TEMPORARILY_UNAVAILABLE};

/// Maelstrom's txn-conflict: a definite abort.
const TXN_CONFLICT: i64 = 30;

pub struct PgClient {
    /// `host:port`.
    pub address: String,
    /// `serializable`, `repeatable-read`, `read-committed` or
    /// `read-uncommitted`.
    pub isolation: String,
    client: Option<tokio_postgres::Client>,
    /// Set while COMMIT is in flight: a timeout then leaves the outcome
    /// unknown.
    committing: bool,
}

impl std::fmt::Debug for PgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgClient({}, {})", self.address, self.isolation)
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

impl PgClient {
    pub fn new(address: String, isolation: String) -> PgClient {
        PgClient {
            address,
            isolation,
            client: None,
            committing: false,
        }
    }

    /// Performs one transaction within `timeout`.
    pub async fn call(&mut self, body: &Value, timeout: Duration) -> Answer {
        self.committing = false;
        let answer = match tokio::time::timeout(timeout, self.txn(body)).await {
            Ok(a) => a,
            Err(_) if self.committing => error(
                INDEFINITE,
                format!("COMMIT unanswered within {} ms", timeout.as_millis()),
            ),
            // COMMIT never left: dropping the connection rolls it back.
            Err(_) => error(
                TEMPORARILY_UNAVAILABLE,
                format!("no answer within {} ms, before COMMIT", timeout.as_millis()),
            ),
        };
        if !matches!(&answer, Answer::Reply(r) if r["type"] == "txn_ok") {
            // Whatever the connection was in the middle of ends with it.
            self.client = None;
        }
        answer
    }

    async fn connect(&mut self) -> Result<(), String> {
        if self.client.is_none() {
            let (host, port) = self
                .address
                .rsplit_once(':')
                .ok_or_else(|| format!("{:?} is not host:port", self.address))?;
            let conninfo = format!("host={host} port={port} user=postgres dbname=postgres");
            let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.client = Some(client);
        }
        Ok(())
    }

    async fn txn(&mut self, body: &Value) -> Answer {
        let Some(level) = isolation_sql(&self.isolation) else {
            return error(10, format!("unknown isolation level {:?}", self.isolation));
        };
        let ops = body["txn"].as_array().cloned().unwrap_or_default();
        if let Err(e) = self.connect().await {
            return Answer::NotSent(e);
        }
        let client = self.client.as_ref().expect("connected");
        let begin = format!("BEGIN ISOLATION LEVEL {level}");
        if let Err(e) = client.batch_execute(&begin).await {
            return before_commit(&e);
        }
        let mut done = Vec::with_capacity(ops.len());
        for op in &ops {
            match run_op(client, op).await {
                Ok(v) => done.push(v),
                Err(e) => return before_commit(&e),
            }
        }
        self.committing = true;
        let committed = client.batch_execute("COMMIT").await;
        self.committing = false;
        match committed {
            Ok(()) => Answer::Reply(json!({"type": "txn_ok", "txn": done})),
            Err(e) if conflict(&e) => error(TXN_CONFLICT, format!("COMMIT: {}", said(&e))),
            // The server may have committed before the answer was lost.
            Err(e) => error(INDEFINITE, format!("COMMIT: {}", said(&e))),
        }
    }
}

/// One `[f, k, v]` micro-op, with a read's value filled in.
async fn run_op(
    client: &tokio_postgres::Client,
    op: &Value,
) -> Result<Value, tokio_postgres::Error> {
    let f = op[0].as_str().unwrap_or("");
    let key = op[1].as_i64().unwrap_or(0);
    match f {
        "r" => {
            let row = client
                .query_opt("SELECT list, reg FROM txn WHERE id = $1", &[&key])
                .await?;
            let value = match row {
                None => Value::Null,
                Some(row) => {
                    let list: Option<String> = row.get(0);
                    let reg: Option<i64> = row.get(1);
                    match (list, reg) {
                        (Some(l), _) => Value::Array(
                            l.split(',')
                                .filter_map(|x| x.parse::<i64>().ok())
                                .map(Value::from)
                                .collect(),
                        ),
                        (None, Some(r)) => json!(r),
                        (None, None) => Value::Null,
                    }
                }
            };
            Ok(json!(["r", op[1], value]))
        }
        "append" => {
            let v = op[2].as_i64().unwrap_or(0).to_string();
            client
                .execute(
                    "INSERT INTO txn (id, list) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
                     SET list = COALESCE(txn.list || ',', '') || EXCLUDED.list",
                    &[&key, &v],
                )
                .await?;
            Ok(op.clone())
        }
        _ => {
            let v = op[2].as_i64().unwrap_or(0);
            client
                .execute(
                    "INSERT INTO txn (id, reg) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
                     SET reg = EXCLUDED.reg",
                    &[&key, &v],
                )
                .await?;
            Ok(op.clone())
        }
    }
}

/// A serialization failure or a deadlock: the database aborted it.
fn conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// An error before COMMIT was sent: the transaction did not commit.
fn before_commit(e: &tokio_postgres::Error) -> Answer {
    if conflict(e) {
        error(TXN_CONFLICT, said(e))
    } else {
        error(TEMPORARILY_UNAVAILABLE, said(e))
    }
}

/// What the server said (SQLSTATE and message), not just "db error".
fn said(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
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
}

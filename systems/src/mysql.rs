//! The MySQL protocol's dialect of the built-in SQL client (`sql`), on
//! mysql_async, for MariaDB and Galera: connecting as `faultline` to
//! database `faultline` over TCP, the statements, and which errors are
//! conflicts: 1213 (ER_LOCK_DEADLOCK, which is also how Galera reports a
//! transaction that failed certification or was aborted by a replicated
//! one), 1020 (ER_CHECKREAD: with `innodb_snapshot_isolation` on, a row
//! changed since this transaction's snapshot) and anything else with
//! SQLSTATE 40001.

use crate::answer::SqlError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// ER_LOCK_DEADLOCK: a deadlock, or a Galera certification conflict.
const ER_LOCK_DEADLOCK: u16 = 1213;
/// ER_NO_SUCH_TABLE.
const ER_NO_SUCH_TABLE: u16 = 1146;
/// ER_CHECKREAD: "Record has changed since last read".
const ER_CHECKREAD: u16 = 1020;

pub async fn connect(host: &str, port: u16) -> Result<Conn, String> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some("faultline"))
        .db_name(Some("faultline"))
        // Stay on TCP: the server's socket is no way to reach it here.
        .prefer_socket(false);
    Conn::new(opts)
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))
}

/// Whether the server refuses writes: `read_only` (or MariaDB's and
/// MySQL's `super_read_only`, where it exists) is on.
pub async fn read_only(c: &mut Conn) -> Result<bool, SqlError> {
    let flag: Option<i64> = c
        .query_first("SELECT @@global.read_only")
        .await
        .map_err(sql_error)?;
    Ok(flag.unwrap_or(0) != 0)
}

pub async fn begin(c: &mut Conn, level: &str) -> Result<(), SqlError> {
    c.query_drop(format!("SET TRANSACTION ISOLATION LEVEL {level}"))
        .await
        .map_err(sql_error)?;
    c.query_drop("START TRANSACTION").await.map_err(sql_error)
}

/// A row's list and register; a table that no longer exists holds no rows
/// (see `postgres::read`).
pub async fn read(c: &mut Conn, key: i64) -> Result<(Option<String>, Option<i64>), SqlError> {
    let row: Option<(Option<String>, Option<i64>)> = match c
        .exec_first("SELECT list, reg FROM txn WHERE id = ?", (key,))
        .await
    {
        Err(mysql_async::Error::Server(s)) if s.code == ER_NO_SUCH_TABLE => None,
        r => r.map_err(sql_error)?,
    };
    Ok(row.unwrap_or((None, None)))
}

pub async fn append(c: &mut Conn, key: i64, value: i64) -> Result<(), SqlError> {
    c.exec_drop(
        "INSERT INTO txn (id, list) VALUES (?, ?) ON DUPLICATE KEY UPDATE \
         list = CONCAT(COALESCE(CONCAT(list, ','), ''), VALUES(list))",
        (key, value.to_string()),
    )
    .await
    .map_err(sql_error)
}

pub async fn write(c: &mut Conn, key: i64, value: i64) -> Result<(), SqlError> {
    c.exec_drop(
        "INSERT INTO txn (id, reg) VALUES (?, ?) ON DUPLICATE KEY UPDATE reg = VALUES(reg)",
        (key, value),
    )
    .await
    .map_err(sql_error)
}

pub async fn commit(c: &mut Conn) -> Result<(), SqlError> {
    c.query_drop("COMMIT").await.map_err(sql_error)
}

/// What the server said (its code, SQLSTATE and message), and whether it
/// aborted the transaction for a conflict.
fn sql_error(e: mysql_async::Error) -> SqlError {
    match e {
        mysql_async::Error::Server(s) => SqlError {
            conflict: [ER_LOCK_DEADLOCK, ER_CHECKREAD].contains(&s.code) || s.state == "40001",
            said: format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        },
        other => SqlError {
            conflict: false,
            said: other.to_string(),
        },
    }
}

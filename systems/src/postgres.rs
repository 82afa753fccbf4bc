//! PostgreSQL's dialect of the built-in SQL client (`sql`), on
//! tokio-postgres: connecting as `postgres` to database `postgres`, the
//! statements, and which errors are conflicts (SQLSTATE 40001
//! serialization failure, 40P01 deadlock).

use crate::answer::SqlError;
use tokio_postgres::Client;

pub async fn connect(host: &str, port: u16) -> Result<Client, String> {
    let conninfo = format!("host={host} port={port} user=postgres dbname=postgres");
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the server refuses writes, as libpq's
/// `target_session_attrs=read-write` asks: `SHOW transaction_read_only`
/// is `on` on a hot standby and where `default_transaction_read_only` is
/// set.
pub async fn read_only(c: &Client) -> Result<bool, SqlError> {
    let row = c
        .query_one("SHOW transaction_read_only", &[])
        .await
        .map_err(sql_error)?;
    let value: String = row.get(0);
    Ok(value == "on")
}

pub async fn begin(c: &Client, level: &str) -> Result<(), SqlError> {
    c.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}"))
        .await
        .map_err(sql_error)
}

/// A row's list and register. A table that no longer exists holds no
/// rows: the system's setup made it before the run and nothing drops it,
/// so its absence is a loss (a power loss with fsync off takes the
/// catalog), and reading it as empty lets the checker name the committed
/// writes that went with it.
pub async fn read(c: &Client, key: i64) -> Result<(Option<String>, Option<i64>), SqlError> {
    let row = match c
        .query_opt("SELECT list, reg FROM txn WHERE id = $1", &[&key])
        .await
    {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
        r => r.map_err(sql_error)?,
    };
    Ok(row.map_or((None, None), |r| (r.get(0), r.get(1))))
}

pub async fn append(c: &Client, key: i64, value: i64) -> Result<(), SqlError> {
    c.execute(
        "INSERT INTO txn (id, list) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
         SET list = COALESCE(txn.list || ',', '') || EXCLUDED.list",
        &[&key, &value.to_string()],
    )
    .await
    .map(drop)
    .map_err(sql_error)
}

pub async fn write(c: &Client, key: i64, value: i64) -> Result<(), SqlError> {
    c.execute(
        "INSERT INTO txn (id, reg) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
         SET reg = EXCLUDED.reg",
        &[&key, &value],
    )
    .await
    .map(drop)
    .map_err(sql_error)
}

pub async fn commit(c: &Client) -> Result<(), SqlError> {
    c.batch_execute("COMMIT").await.map_err(sql_error)
}

/// What the server said (SQLSTATE and message, not just "db error"), and
/// whether it aborted the transaction for a conflict.
fn sql_error(e: tokio_postgres::Error) -> SqlError {
    use tokio_postgres::error::SqlState;
    let conflict = e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    });
    let said = match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
    };
    SqlError { conflict, said }
}

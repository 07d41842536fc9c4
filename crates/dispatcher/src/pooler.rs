//! PostgreSQL behind a connection pooler in transaction mode, such as
//! PgBouncer with `pool_mode = transaction`.
//!
//! Such a pooler lends a server connection for one transaction at a time.
//! sqlx sends each statement as Parse, then Bind and Execute, with a Sync
//! after each: outside a transaction the pooler may hand the second half to
//! another server, where the statement does not exist (or is someone
//! else's). So with [`Pooling::Transaction`] every use of a pooled
//! connection is one transaction: `BEGIN` when the pool lends it, `COMMIT`
//! when it comes back, and no statement cache, whose names would outlive
//! the server they were prepared on. The pooler must drop what a
//! transaction prepared before lending its server again
//! (`server_reset_query = DEALLOCATE ALL` with
//! `server_reset_query_always = 1`, or PgBouncer 1.21's
//! `max_prepared_statements`); LISTEN does not work through it, so a worker
//! finds new rows by polling.

use std::time::Duration;

use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How connections reach PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooling {
    /// Directly, or through a pooler in session mode: nothing special.
    #[default]
    Direct,
    /// Through a pooler in transaction mode.
    Transaction,
}

/// Opens the transaction each loan of a connection runs in. Warnings are
/// kept to errors inside it: the `BEGIN` of an explicit transaction inside
/// the loan's would warn that one is already in progress.
const LEND: &str = "BEGIN; SET LOCAL client_min_messages TO error";

/// Ends the loan's transaction. After an explicit transaction has already
/// committed it, the statements run in an implicit one, quietly.
const RETURN: &str = "SET LOCAL client_min_messages TO error; COMMIT";

/// Connect options for `pooling`: without a statement cache behind a
/// transaction pooler.
pub fn connect_options(options: PgConnectOptions, pooling: Pooling) -> PgConnectOptions {
    match pooling {
        Pooling::Direct => options,
        Pooling::Transaction => options.statement_cache_capacity(0),
    }
}

/// Pool options for `pooling`, to which the caller adds its sizes and
/// timeouts. Behind a transaction pooler every loan of a connection is one
/// transaction; a connection whose transaction cannot end cleanly (its
/// last statement failed inside it) is closed rather than lent again.
pub fn pool_options(pooling: Pooling) -> PgPoolOptions {
    let options = PgPoolOptions::new();
    match pooling {
        Pooling::Direct => options,
        Pooling::Transaction => options
            // Idle connections hold no transaction, so none are kept open
            // in advance.
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .after_connect(|conn, _| Box::pin(async move { conn.execute(sqlx::raw_sql(LEND)).await.map(|_| ()) }))
            .before_acquire(|conn, _| Box::pin(async move { conn.execute(sqlx::raw_sql(LEND)).await.map(|_| true) }))
            .after_release(|conn, _| Box::pin(async move { Ok(conn.execute(sqlx::raw_sql(RETURN)).await.is_ok()) })),
    }
}

//! How the store's fixed statements reach PostgreSQL: prepared once per
//! connection and kept (deadpool-postgres's statement cache), and, where a
//! transaction has several to send, sent together as one pipeline.
//!
//! A statement given as text is prepared anew at every call, a round trip
//! of its own before the one that runs it; a cached statement costs only
//! the one that runs it. The cache belongs to its connection: a connection
//! the pool drops (closed, or its session ended by the server) takes its
//! statements with it, and a new one prepares its own.
//!
//! A cached statement whose table changed underneath it is re-planned by
//! PostgreSQL, unless the change alters what it answers: then PostgreSQL
//! refuses it ("cached plan must not change result type") until it is
//! prepared again. Such a failure clears every connection's cache, and the
//! read is run once more: at once outside a transaction; inside one, which
//! the failure aborted, after rolling back to the savepoint the
//! transaction made once it held its locks (a read undoes nothing). The
//! writes at commit are tried again from their own savepoint (`write.rs`).
use std::{future::Future, pin::Pin, task::Poll};

use deadpool_postgres::{ClientWrapper, Object};
use tokio_postgres::{error::SqlState, types::ToSql, Error, Row, Statement};

/// The statement for `sql` on this connection, prepared at its first use.
pub(crate) async fn prepared(client: &ClientWrapper, sql: &str) -> Result<Statement, Error> {
    client.prepare_cached(sql).await
}

/// Whether `e` says that a cached statement no longer fits the schema.
pub(crate) fn stale(e: &Error) -> bool {
    e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.as_db_error().is_some_and(|d| {
            d.message()
                .contains("cached plan must not change result type")
        })
}

/// Forgets the statements of every connection of `client`'s pool (each
/// would fail as this one did), or of this connection alone when it left
/// the pool.
pub(crate) fn forget(client: &Object) {
    match Object::pool(client) {
        Some(pool) => pool.manager().statement_caches.clear(),
        None => client.statement_cache.clear(),
    }
}

/// The rows `sql` answers on `client`, its statement cached. A stale
/// statement is prepared again and run once more (inside a transaction,
/// after going back to [`READS_SAVEPOINT`]).
pub(crate) async fn query(
    client: &Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let statement = prepared(client, sql).await?;
    match client.query(&statement, params).await {
        Err(e) if stale(&e) => {
            forget(client);
            match prepare_and_query(client, sql, params).await {
                // In a transaction, which the failure aborted: back to
                // where its locks were taken (reads write nothing, so
                // nothing is undone but the failure), and once more.
                Err(again) if again.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                    if client.batch_execute(ROLLBACK_TO_READS).await.is_err() {
                        return Err(e);
                    }
                    prepare_and_query(client, sql, params).await
                }
                answer => answer,
            }
        }
        answer => answer,
    }
}

async fn prepare_and_query(
    client: &Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let statement = prepared(client, sql).await?;
    client.query(&statement, params).await
}

/// The savepoint a transaction makes once its locks are held, before it
/// reads (`transaction.rs`): a read that met a stale statement goes back
/// to it, still holding the locks.
pub(crate) const READS_SAVEPOINT: &str = "SAVEPOINT keysmith_reads";
const ROLLBACK_TO_READS: &str = "ROLLBACK TO SAVEPOINT keysmith_reads";

/// The one row `sql` answers, if any (see [`query`]).
pub(crate) async fn query_opt(
    client: &Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Error> {
    Ok(query(client, sql, params).await?.into_iter().next())
}

/// A request of a pipeline: a future that sends its messages at its first
/// poll (as tokio-postgres's queries on a prepared statement, and simple
/// queries, do), then waits for its answer.
pub(crate) type Request<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, Error>> + Send + 'a>>;

/// A prepared statement run with `params`, as a request of a pipeline.
pub(crate) fn request<'a, const N: usize>(
    client: &'a ClientWrapper,
    statement: &Statement,
    params: [&'a (dyn ToSql + Sync); N],
) -> Request<'a> {
    let statement = statement.clone();
    Box::pin(async move { client.query(&statement, &params).await })
}

/// A simple statement (`SAVEPOINT`, `COMMIT`) as a request of a pipeline.
pub(crate) fn simple<'a>(client: &'a ClientWrapper, sql: &'a str) -> Request<'a> {
    Box::pin(async move { client.batch_execute(sql).await.map(|()| Vec::new()) })
}

/// Sends every request, in order, before waiting for any answer: one round
/// trip for all of them. PostgreSQL runs them in that order, each as if
/// sent alone; once one fails, the transaction is aborted and the later
/// ones fail too. The answers in order, or the first failure (every
/// answer is awaited first, so that nothing of the pipeline is left in
/// flight on the connection).
pub(crate) async fn pipeline(mut requests: Vec<Request<'_>>) -> Result<Vec<Vec<Row>>, Error> {
    let mut answers: Vec<Option<Result<Vec<Row>, Error>>> = requests.iter().map(|_| None).collect();
    // One poll of each, in order: each sends its messages then.
    std::future::poll_fn(|cx| {
        for (request, answer) in requests.iter_mut().zip(answers.iter_mut()) {
            if let Poll::Ready(a) = request.as_mut().poll(cx) {
                *answer = Some(a);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut rows = Vec::with_capacity(requests.len());
    let mut failure = None;
    for (request, answer) in requests.into_iter().zip(answers) {
        let answer = match answer {
            Some(answer) => answer,
            None => request.await,
        };
        match answer {
            Ok(r) => rows.push(r),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(rows), Err)
}

//! Test fixtures shared by Outhook's test suites and benchmarks: a throwaway
//! PostgreSQL cluster ([`postgres`]) and a PgBouncer in front of it
//! ([`pgbouncer`]), a recording HTTP receiver ([`receiver`]), the
//! providers' own verification snippets run by real `python3` and `node`
//! processes ([`verifiers`]), and the payload corpus ([`corpus`]).

pub mod corpus;
pub mod otlp;
pub mod pgbouncer;
pub mod postgres;
pub mod proxy;
pub mod receiver;
pub mod tls;
pub mod token_server;
pub mod verifiers;

/// Serves `app` on `listener` until the returned sender is dropped.
pub(crate) fn serve_until_dropped<L>(listener: L, app: axum::Router) -> tokio::sync::oneshot::Sender<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

//! The accept loop. `axum::serve` gives a handler no way to drop its own TCP
//! connection, which [`crate::Fault::ConnectionReset`] needs; so every connection
//! here is served by its own hyper task, and each request carries a
//! [`ConnKiller`] that ends that task and resets the socket (`SO_LINGER` 0 →
//! RST), so the client gets a connection error instead of any HTTP response.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Kills the connection a request arrived on (a request extension).
#[derive(Clone, Default, Debug)]
pub struct ConnKiller(Arc<Notify>);

impl ConnKiller {
    /// Asks the connection task to reset the connection. The caller should then
    /// never answer (await [`std::future::pending`]): its future is dropped.
    pub fn kill(&self) {
        self.0.notify_one();
    }

    async fn killed(&self) {
        self.0.notified().await;
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting and aborts open connections (it is an emulator, not a service).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(stream, router.clone()));
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to set SO_LINGER 0 just before a reset.
    let (stream, reset_handle) = match split_for_reset(stream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "cannot prepare connection");
            return;
        }
    };
    let killer = ConnKiller::default();
    let request_killer = killer.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(request_killer.clone());
        let request: Request = request.map(Body::new);
        router.clone().oneshot(request)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = killer.killed() => {
            if let Ok(handle) = TcpStream::from_std(reset_handle) {
                let _ = handle.set_zero_linger();
            }
            // Dropping `conn` closes the last descriptor: the kernel sends RST.
        }
    }
}

fn split_for_reset(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let duplicate = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, duplicate))
}

//! Retiring connections made with replaced material once their drain time passed.
//!
//! HTTP/2 connections are retired at once after the drain (GOAWAY lets open streams
//! finish and tells the client which requests to retry). An HTTP/1.1 connection is
//! retired when its *next request starts arriving*: core then answers that request
//! with `Connection: close` and closes. Closing an idle keep-alive connection instead
//! would race a request the client is sending at that moment, and that request would
//! fail; this way no request is lost. A connection that sends nothing for another
//! drain period after that is retired while idle (as an idle timeout would close it).

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use proxy_core::{
    connection::{Retire, RetireHandle},
    BoxError,
};

use super::Generation;

/// The retirement state of one connection, shared with its stream.
#[derive(Debug, Clone)]
pub(crate) struct Retirement {
    handle: RetireHandle,
    armed: Arc<AtomicBool>,
}

impl Retirement {
    /// A retirement and the core signal to put in the connection's extensions.
    pub(crate) fn new() -> (Self, Retire) {
        let (handle, retire) = Retire::new();
        (
            Self {
                handle,
                armed: Arc::new(AtomicBool::new(false)),
            },
            retire,
        )
    }

    /// Bytes arrived on the connection: retires it if armed (the drain time passed
    /// and the connection is HTTP/1.1).
    pub(crate) fn on_read(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::AcqRel) {
            self.handle.retire();
        }
    }
}

/// Runs `serve` (the inner service serving the connection); once `generation` is
/// replaced by newer material and `drain` has passed, retires the connection as the
/// module docs describe (`multiplexed`: HTTP/2, retired at once).
pub(crate) async fn serve_with_drain<T, F>(
    serve: F,
    generation: &Generation<T>,
    drain: Duration,
    retirement: Retirement,
    multiplexed: bool,
) -> Result<(), BoxError>
where
    F: Future<Output = Result<(), BoxError>>,
{
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => return r,
        () = async {
            generation.superseded().await;
            tokio::time::sleep(drain).await;
            if !multiplexed {
                retirement.armed.store(true, Ordering::Release);
                tokio::time::sleep(drain).await;
            }
        } => {
            tracing::debug!("tls material rotated: retiring a connection after its drain time");
            retirement.handle.retire();
        }
    }
    serve.await
}

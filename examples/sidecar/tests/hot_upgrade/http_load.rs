//! The HTTP/1.1 load of the hot upgrade tests: keep-alive clients (one connection
//! each, a request after each answer, wrk-style, no retry) and clients opening a new
//! connection per request, with what they saw in a [`Tally`].

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::net::TcpStream;

use super::support::{exchange, Exchange};

/// What the HTTP/1.1 clients saw.
#[derive(Default)]
pub(crate) struct Tally {
    /// Requests answered 200.
    pub(crate) ok: AtomicU64,
    /// Connections the keep-alive clients opened: one each, if none was closed.
    pub(crate) keep_alive_connects: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// Set to stop the clients.
    pub(crate) stop: AtomicBool,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().expect("lock").push(what);
    }

    /// The failures so far: a status other than 200, a connection closed or reset
    /// before or during an answer, a connect refused.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("lock").clone()
    }
}

/// Counts `x`; `Some(closing)` for a 200.
fn count(tally: &Tally, what: &str, x: Exchange) -> Option<bool> {
    match x {
        Exchange::Answer(200, closing) => {
            tally.ok.fetch_add(1, Ordering::Relaxed);
            Some(closing)
        }
        Exchange::Answer(status, _) => {
            tally.fail(format!("{what}: status {status}"));
            None
        }
        Exchange::NoAnswer(e) | Exchange::Broken(e) => {
            tally.fail(format!("{what}: {e}"));
            None
        }
    }
}

/// Requests on one keep-alive connection, `pause` after each answer, until stopped;
/// no retry: a request that meets a closed connection fails, and the next one
/// connects again (counted).
pub(crate) async fn keep_alive_load(addr: SocketAddr, tally: Arc<Tally>, pause: Duration) {
    let mut conn: Option<TcpStream> = None;
    while !tally.stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            tally.keep_alive_connects.fetch_add(1, Ordering::Relaxed);
            match TcpStream::connect(addr).await {
                Ok(s) => conn = Some(s),
                Err(e) => tally.fail(format!("keep-alive connect: {e}")),
            }
        }
        if let Some(s) = conn.as_mut() {
            let x = exchange(s, false).await;
            if count(&tally, "keep-alive", x) != Some(false) {
                conn = None;
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// One new connection per request, until stopped.
pub(crate) async fn new_connection_load(addr: SocketAddr, tally: Arc<Tally>) {
    while !tally.stop.load(Ordering::Relaxed) {
        match TcpStream::connect(addr).await {
            Ok(mut s) => {
                count(&tally, "new connection", exchange(&mut s, true).await);
            }
            Err(e) => tally.fail(format!("connect: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

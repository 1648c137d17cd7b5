//! Downstream HTTP/2 (h2c) on the `h2` crate directly: stream limits, rapid-reset
//! protection (h2's for streams reset before they are accepted, our own for streams
//! reset before they are answered), keep-alive pings, idle connection timeout,
//! GOAWAY on drain, access log with body bytes.
//!
//! hyper's HTTP/2 server adds a layer per stream that the proxy does not need (a body
//! channel, a boxed stream future handed to an executor, a response pump over a
//! `Send` buffer enum, a shared keep-alive recorder locked per frame); here a stream
//! is one future, polled by its connection's task, with the request's future inline.

mod date;
mod driver;
mod frame_census;
mod io;
mod stream;

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    Arc,
};

use bytes::Bytes;
use tokio::sync::Notify;

use super::conn::ConnCtx;
use crate::{config::UnderscoreHeaders, net::Stream, proxy::ConnInfo};

/// hyper's defaults, kept: windows large enough that a 1 MiB body needs no
/// WINDOW_UPDATE, frames of the spec's default size, 400 KiB buffered per stream.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONN_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// What the streams of one HTTP/2 connection share with it.
pub(super) struct Shared {
    ctx: ConnCtx,
    info: ConnInfo,
    state: ConnState,
    reset_limit: u32,
    underscores: UnderscoreHeaders,
}

/// What the streams of one HTTP/2 connection tell its connection task.
#[derive(Debug, Default)]
struct ConnState {
    /// Streams whose request is being handled.
    in_flight: AtomicU32,
    /// A stream started since the idle timer last fired.
    active: AtomicBool,
    /// Streams the client reset before they were answered.
    resets: AtomicU32,
    /// Streams answered.
    answered: AtomicU64,
    /// Signalled when `resets` passes the listener's limit while they are most of the
    /// connection's streams, or when the client's frames that move nothing forward
    /// pass their budget (`flooded`).
    abuse: Notify,
    /// The client sent more frames that move nothing forward than its budget
    /// ([`frame_census`]).
    flooded: AtomicBool,
    /// An idle period passed: the frame budget is renewed at the next read.
    renew_census: AtomicBool,
    /// Bytes came from the peer since the keep-alive last looked.
    read: AtomicBool,
    /// The connection task is in a round: writes are gathered until its end.
    hold: AtomicBool,
    /// Gathered bytes wait to be written: set when bytes are gathered, cleared only
    /// once they are all written, so that a round that ends early (a stream that
    /// finished in the last pass defers the round) leaves them for the next one.
    gathered: AtomicBool,
}

/// Why a connection the peer did not end is ended.
enum Ending {
    /// The proxy drains.
    Drain,
    /// No stream for an idle period.
    Idle,
    /// Too many streams reset before their answer.
    Abuse,
}

/// Serves HTTP/2 on `stream`; `prefix` holds bytes already read by sniffing.
pub(crate) async fn serve(stream: Stream, prefix: Bytes, ctx: ConnCtx) {
    let limits = ctx.limits.clone();
    let shared = Arc::new(Shared {
        info: ConnInfo::new(ctx.peer, ctx.secure),
        state: ConnState::default(),
        reset_limit: limits.h2_max_pending_reset_streams,
        underscores: limits.headers_with_underscores,
        ctx,
    });
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(limits.h2_max_pending_reset_streams as usize))
        .max_header_list_size(u32::try_from(limits.max_header_bytes.get()).unwrap_or(u32::MAX));
    let io = io::Prefixed::new(prefix, stream, shared.clone());
    // The listener's stack as of each stream: a reload's filters apply to the next
    // stream, streams under way finish on theirs (one `ArcSwap` load per stream).
    let mut stack = shared.ctx.listener.settings.load_full();
    let stream_shared = shared.clone();
    let new_stream = move |req, respond| {
        let now = stream_shared.ctx.listener.settings.load();
        if !Arc::ptr_eq(&now, &stack) {
            stack = arc_swap::Guard::into_inner(now);
        }
        stream::serve(stream_shared.clone(), stack.clone(), req, respond)
    };
    let conn = driver::Driver::new(
        builder.handshake(io),
        new_stream,
        limits.idle_timeout / 2,
        limits.header_read_timeout,
        shared.clone(),
    );
    tokio::pin!(conn);
    let ctx = &shared.ctx;
    let state = &shared.state;
    let mut drain = ctx.drain.clone();
    let mut idle = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.idle_timeout,
        limits.idle_timeout,
    );
    let ending = loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = ?ctx.peer, error = %e, "h2 connection ended");
                }
                return;
            }
            _ = drain.wait_for(|d| *d) => break Ending::Drain,
            () = state.abuse.notified() => {
                if state.flooded.load(Ordering::Relaxed) {
                    tracing::debug!(peer = ?ctx.peer, "closing an h2 connection: a flood of frames that move no request forward");
                } else {
                    tracing::debug!(peer = ?ctx.peer, "closing an h2 connection: too many streams reset before their answer");
                }
                ctx.stats.reject();
                break Ending::Abuse;
            }
            _ = idle.tick() => {
                state.renew_census.store(true, Ordering::Relaxed);
                // Closed when no stream was open or started for a whole idle period.
                let busy = state.in_flight.load(Ordering::Relaxed) > 0;
                if !state.active.swap(false, Ordering::Relaxed) && !busy {
                    break Ending::Idle;
                }
            }
        }
    };
    match ending {
        // Draining: in-flight streams finish; the server's drain deadline bounds this.
        Ending::Drain => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        Ending::Idle => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.header_read_timeout, conn).await;
        }
        // No grace: GOAWAY with ENHANCE_YOUR_CALM and the last stream taken, so that
        // no stream opened after it is served.
        Ending::Abuse => {
            conn.as_mut().abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            let _ = tokio::time::timeout(limits.header_read_timeout, conn).await;
        }
    }
}

//! Starting a connection's task: one accepted by a listener, or handed in by the
//! process being upgraded with the bytes it had read.

use std::{net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{
    conn::{self, ConnCtx, OpenConn, Prefix, ServeHttp},
    handoff::HandoffSlot,
    handoff_layer::LayerState,
    listen::ListenerRuntime,
};
use crate::{
    access_log::AccessLog,
    connection::{BoxConn, Connection},
    net::Stream,
};

/// The context of a connection accepted (or handed in) on `listener` now, with the
/// listener's current settings.
pub(super) fn context(
    listener: &Arc<ListenerRuntime>,
    peer: Option<SocketAddr>,
    drain: &watch::Receiver<bool>,
    access_log: &Arc<ArcSwap<Option<Arc<AccessLog>>>>,
    handoff: &Option<Arc<HandoffSlot>>,
) -> ConnCtx {
    let settings = listener.settings.load();
    ConnCtx {
        listener: listener.clone(),
        peer,
        protocols: settings.protocols.clone(),
        secure: false,
        conn_extensions: None,
        limits: settings.limits.clone(),
        stats: listener.stats.clone(),
        drain: drain.clone(),
        handoff: handoff.clone(),
        access_log: (**access_log.load()).clone(),
    }
}

/// Spawns the task serving `stream` with `ctx` (through the listener's connection
/// filters, if any), `prefix` being bytes already read from it and `protocol` the
/// listener's protocol plug-in that served it (handed in) and `layer_state` the state
/// of the connection layer that wrapped it there (for the same layer here); counts it
/// as opened.
pub(super) fn start(
    ctx: ConnCtx,
    stream: Stream,
    prefix: BytesMut,
    protocol: Option<usize>,
    layer_state: Option<LayerState>,
) {
    let handed_in = !prefix.is_empty() || protocol.is_some();
    let listener = ctx.listener.clone();
    let settings = listener.settings.load_full();
    let peer = ctx.peer;
    let span = tracing::debug_span!("conn", listener = %listener.name, peer = ?peer);
    let open = OpenConn::new(listener.stats.clone());
    if settings.conn_layers.is_empty() {
        let task = async move {
            let prefix = handed_in.then(|| {
                Box::new(Prefix {
                    bytes: prefix,
                    protocol,
                })
            });
            conn::serve(stream, prefix, ctx).await;
            drop(open);
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    } else {
        let terminal = BoxConn::new(ServeHttp(ctx));
        let svc = settings
            .conn_layers
            .iter()
            .rev()
            .fold(terminal, |svc, layer| layer(svc));
        let mut extensions = http::Extensions::new();
        if let Some(state) = layer_state {
            extensions.insert(state);
        }
        if handed_in {
            extensions.insert(Prefix {
                bytes: prefix,
                protocol,
            });
        }
        let conn = Connection {
            stream,
            peer,
            listener: listener.name.clone(),
            secure: false,
            extensions,
        };
        let task = async move {
            if let Err(e) = svc.oneshot(conn).await {
                tracing::debug!(error = %crate::DisplayChain(&*e), "connection stack failed");
            }
            drop(open);
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }
}

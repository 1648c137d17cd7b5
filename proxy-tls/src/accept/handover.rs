//! Hot upgrade of terminated connections: the [`LayerHandOver`] hook put in every
//! TLS connection's extensions (taking an idle TLS 1.3 session apart into its socket
//! and [`TlsHandover`]), and the adopting side, which continues a session handed in
//! instead of handshaking.

use std::any::Any;

use bytes::Bytes;
use proxy_core::{Io, LayerHandOver, LayerHandOverResult, LayerState, Stream};
use tokio_rustls::server::TlsStream;

use super::stream::Decrypted;
use crate::continued::{extract, ContinuedTlsStream, ExtractError, RecordBoundary, TlsHandover};

/// The stream of a connection this process terminated.
pub(crate) type Terminated = Decrypted<TlsStream<RecordBoundary<Stream>>>;
/// The stream of a connection handed in and continued here.
pub(crate) type Continued = Decrypted<ContinuedTlsStream<Stream>>;

/// The hook the termination layer puts in each connection's extensions.
pub(crate) fn hook() -> LayerHandOver {
    LayerHandOver::new(hand_over)
}

fn state(handover: &TlsHandover) -> LayerState {
    let mut encoded = handover.encode();
    // Moved out; the emptied buffer is zeroed on drop either way.
    LayerState::new(std::mem::take(&mut *encoded))
}

fn hand_over(stream: Box<dyn Any + Send>) -> LayerHandOverResult {
    let stream = match stream.downcast::<Terminated>() {
        Ok(terminated) => return hand_over_terminated(*terminated),
        Err(other) => other,
    };
    match stream.downcast::<Continued>() {
        Ok(continued) => hand_over_continued(*continued),
        // Not a stream of this layer: a caller's bug; dropped (closed).
        Err(_) => Err(None),
    }
}

fn give_back<S: Io>(
    early: Bytes,
    inner: S,
    retirement: crate::rotation::Retirement,
) -> LayerHandOverResult {
    Err(Some(Box::new(Decrypted::new(early, inner, retirement))))
}

fn hand_over_terminated(stream: Terminated) -> LayerHandOverResult {
    let (early, inner, retirement) = stream.into_parts();
    if !early.is_empty() {
        return give_back(early, inner, retirement);
    }
    match extract(inner) {
        Ok((io, handover)) => Ok((io, state(&handover))),
        Err(ExtractError::Refused(inner, why)) => {
            tracing::debug!(reason = %why, "tls session stays (drains)");
            give_back(early, *inner, retirement)
        }
        Err(ExtractError::Lost(_, why)) => {
            tracing::warn!(reason = %why, "tls session could not be extracted; connection closed");
            Err(None)
        }
    }
}

fn hand_over_continued(stream: Continued) -> LayerHandOverResult {
    let (early, inner, retirement) = stream.into_parts();
    if !early.is_empty() {
        return give_back(early, inner, retirement);
    }
    match inner.into_handover() {
        Ok((io, handover)) => Ok((io, state(&handover))),
        Err((inner, why)) => {
            tracing::debug!(reason = %why, "continued tls session stays (drains)");
            give_back(early, *inner, retirement)
        }
    }
}

/// Continues the session in `state` over `stream` (the socket handed in).
pub(crate) fn adopt(
    stream: Stream,
    state: &LayerState,
) -> Result<(ContinuedTlsStream<Stream>, super::Negotiated), crate::continued::SecretsError> {
    let handover = TlsHandover::decode(state.as_bytes())?;
    let facts = handover.negotiated();
    Ok((handover.continue_on(stream)?, facts))
}

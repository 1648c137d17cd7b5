//! Hot upgrade of connections a layer wrapped (TLS): the layer that made the stream
//! puts a [`LayerHandOver`] in the connection's extensions, which the hand-off calls
//! at a request boundary to take its stream apart into the socket and the layer's
//! state ([`LayerState`], opaque to core); in the new process the state comes back in
//! the adopted connection's extensions for the same layer to take up.

use std::{any::Any, sync::Arc};

use zeroize::Zeroizing;

use crate::net::{Io, Stream};

/// What [`LayerHandOver`] gives: the transport under the layer and the layer's
/// state, or the stream back (`Some`, it stays and drains) or nothing (lost).
pub type LayerHandOverResult = Result<(Stream, LayerState), Option<Box<dyn Io>>>;

/// A connection layer's hand-over of its stream, put in the connection's extensions
/// by the layer (cheap to clone). Called with the stream the layer produced (as
/// `Any`, to be downcast to its own type), only at an idle request boundary of a
/// hot upgrade: a connection without one is never handed over.
///
/// ```
/// use std::sync::Arc;
/// use proxy_core::{LayerHandOver, Stream};
///
/// // A layer whose streams never go over (the default without a hook).
/// let hook = LayerHandOver::new(|stream| {
///     let _ = stream;
///     Err(None)
/// });
/// let _ = hook.clone();
/// ```
#[derive(Clone)]
pub struct LayerHandOver(Arc<dyn Fn(Box<dyn Any + Send>) -> LayerHandOverResult + Send + Sync>);

impl std::fmt::Debug for LayerHandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerHandOver")
    }
}

impl LayerHandOver {
    /// A hook taking the layer's stream apart.
    pub fn new(
        f: impl Fn(Box<dyn Any + Send>) -> LayerHandOverResult + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn call(&self, stream: Box<dyn Io>) -> LayerHandOverResult {
        (self.0)(stream.into_any())
    }
}

/// A layer's state handed over with its connection (for TLS: the session's keys),
/// zeroed when dropped. In the new process it is in the adopted connection's
/// extensions for the layer to take.
///
/// ```
/// use proxy_core::LayerState;
///
/// let state = LayerState::new(vec![1, 2, 3]);
/// assert_eq!(state.as_bytes(), [1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct LayerState(Arc<Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for LayerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayerState({} bytes)", self.0.len())
    }
}

impl PartialEq for LayerState {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for LayerState {}

impl LayerState {
    /// Wraps the layer's encoded state.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// The encoded state.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

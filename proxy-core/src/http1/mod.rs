//! A lean HTTP/1.1 codec for the proxy's hot path: heads parsed with `httparse` into
//! `http` types without copying header values, bodies decoded incrementally and written
//! with coalesced writes.

pub(crate) mod decode;
pub(crate) mod head;
pub(crate) mod header_maps;
pub(crate) mod names;
mod recv_body;
pub(crate) mod send;

pub(crate) use recv_body::RecvBody;

#[cfg(test)]
mod props;

//! The integration tests of `proxy-upgrade`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common;

mod bad_peers;
mod connections;
mod datagrams;
mod lifecycle;
mod props;
mod rollback;
mod server_handoff;
mod sockets;

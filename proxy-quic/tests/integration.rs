//! The integration tests of `proxy-quic`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod aioquic_support;
mod h3_support;

mod h3;
mod h3_aioquic;
mod h3_garbage;
mod h3_handoff;
mod h3_rollback;
mod h3_slow_bodies;
mod lb_bad_input;
mod lb_encapsulated;
mod lb_encapsulated_h3;
mod lb_forwarder;
mod lb_h3_aioquic;
mod lb_props;
mod props;
mod quinn_endpoint;
mod stream_to_tcp;
mod vectors;

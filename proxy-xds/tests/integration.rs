//! The integration tests of `proxy-xds`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod common;
mod control_plane;

mod ads;
mod cluster_policies;
mod delta;
mod downstream_tls;
mod flood;
mod interop;
mod lds;
mod lds_filters;
mod per_type;
mod props;
mod sds;
mod tls;
mod upstream_tls;

//! The integration tests of `sidecar`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

#[path = "../../../proxy-quic/tests/aioquic_support/mod.rs"]
mod aioquic_support;
mod common;
#[allow(dead_code)]
#[path = "hot_upgrade/http_load.rs"]
mod http_load;
mod mesh;
#[path = "hot_upgrade/sofa.rs"]
mod sofa;
#[allow(dead_code)]
#[path = "hot_upgrade/support.rs"]
mod support;
mod xds_support;

mod access_log;
mod admin;
mod body;
mod byte_counts_h2;
mod capabilities_inbound;
mod capabilities_outbound;
mod capabilities_rpc;
mod code_only;
mod config;
mod drain;
mod errors;
mod h2_trailers;
mod h2c;
mod h3;
mod helpers;
mod hot_upgrade;
mod hot_upgrade_admin;
mod hot_upgrade_load;
mod hot_upgrade_quic;
mod hot_upgrade_quic_rollback;
mod hot_upgrade_rollback;
mod hot_upgrade_rollback_xds;
mod hot_upgrade_rpc;
mod hot_upgrade_tls;
mod http1;
mod lifecycle;
mod limits;
mod limits_h2;
mod metrics;
mod open_files;
mod reload;
mod reload_filters;
mod retries;
mod rpc_active_requests;
mod upgrade;
mod upgrade_signal;
mod xds;
mod xds_bootstrap;

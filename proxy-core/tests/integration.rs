//! The integration tests of `proxy-core`, linked as one test binary: each module
//! below is one file's tests, and the modules before them are the helpers that
//! several files share.

mod admin_extensions;
mod body_min_rate;
mod byte_counts;
mod circuit_breakers;
mod circuit_breakers_connections;
mod close;
mod connection_stack;
mod failure_reasons;
mod filter_overrides;
mod final_recipient;
mod framing;
mod h2_streams;
mod h2_upstream_stream_limit;
mod h2_upstream_unprocessed;
mod host_conditions;
mod http_service;
mod in_flight;
mod interim_answers;
mod router_props;
mod seams;
mod slow_bodies;
mod slow_peers;
mod upstream_pool;
mod via;

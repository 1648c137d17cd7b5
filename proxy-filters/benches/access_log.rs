//! ns per request through the access log (default text format, written to
//! /dev/null by the writer thread): the line is formatted and queued on the
//! request's thread when the response body is dropped.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::access_log::{AccessLogConfig, AccessLogLayer};

mod common;

fn access_log(c: &mut Criterion) {
    let cfg: AccessLogConfig =
        proxy_core::config::from_yaml("{path: /dev/null, buffer_lines: 65536}")
            .unwrap_or_else(|e| panic!("{e}"));
    let layer = AccessLogLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(c, "access_log", "text_default", layer, common::request);
    let cfg: AccessLogConfig =
        proxy_core::config::from_yaml("{path: /dev/null, format: {json: {}}, buffer_lines: 65536}")
            .unwrap_or_else(|e| panic!("{e}"));
    let layer = AccessLogLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(c, "access_log", "json_default", layer, common::request);
}

criterion_group!(benches, access_log);
criterion_main!(benches);

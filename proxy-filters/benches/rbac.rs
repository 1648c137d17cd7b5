//! ns per request through RBAC: ten policies, the match in the last one.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::rbac::{RbacConfig, RbacLayer};

mod common;

fn rbac(c: &mut Criterion) {
    let mut yaml = String::from("policies:\n");
    for i in 0..9 {
        yaml.push_str(&format!(
            "  - {{name: p{i}, action: allow, principals: [{{header: {{name: x-team, value: {{exact: team{i}}}}}}}], permissions: [{{path: {{prefix: /admin/{i}}}}}]}}\n"
        ));
    }
    yaml.push_str("  - {name: api, action: allow, principals: [{any: true}], permissions: [{and: [{method: [GET]}, {host: {exact: api.local}}, {path: {regex: '/v1/users/[0-9]+'}}]}]}\n");
    let cfg: RbacConfig = proxy_core::config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let layer = RbacLayer::new(&cfg, Default::default()).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "rbac",
        "ten_policies_last_matches",
        layer,
        common::request,
    );
}

criterion_group!(benches, rbac);
criterion_main!(benches);

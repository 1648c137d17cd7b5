//! ns per request through a Lua filter: a small `on_request` (read a header, set one,
//! rewrite the path) and the same with an `on_response` that sets a header.

// criterion_group! makes undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_filters::lua::{LuaConfig, LuaLayer};

mod common;

const ON_REQUEST: &str = r#"
function on_request(req)
  if req:header("x-api-key") == nil then return req:respond(401) end
  req:set_header("x-consumer", "c-" .. req:header("x-api-key"))
  req:set_path("/internal" .. req:path())
end
"#;

const ON_RESPONSE: &str = r#"
function on_response(resp) resp:set_header("x-served-by", "lua") end
"#;

fn lua(c: &mut Criterion) {
    let layer =
        |src: String| LuaLayer::try_from(&LuaConfig::inline(src)).unwrap_or_else(|e| panic!("{e}"));
    common::bench(
        c,
        "lua",
        "on_request",
        layer(ON_REQUEST.to_owned()),
        common::request,
    );
    common::bench(
        c,
        "lua",
        "on_request_and_on_response",
        layer(format!("{ON_REQUEST}{ON_RESPONSE}")),
        common::request,
    );
}

criterion_group!(benches, lua);
criterion_main!(benches);

#![allow(clippy::unwrap_used)]

use std::{num::NonZeroU32, sync::Arc};

use proptest::prelude::*;
use proxy_core::{Body, BoxError, HttpRequest, HttpResponse};
use tower::{service_fn, ServiceExt};

use super::*;

fn layer(src: &str) -> Result<LuaLayer, ConfigError> {
    LuaLayer::try_from(&LuaConfig::inline(src))
}

/// Runs `req` through a filter of `src` in front of an upstream answering 200 with
/// the request's path and query as `x-path`.
fn run(layer: &LuaLayer, req: HttpRequest) -> HttpResponse {
    let svc = tower_layer::Layer::layer(
        layer,
        service_fn(|req: HttpRequest| async move {
            let mut resp = HttpResponse::new(Body::empty());
            let pq = req.uri().path_and_query().map_or("", |p| p.as_str());
            resp.headers_mut()
                .insert("x-path", http::HeaderValue::from_str(pq).unwrap());
            Ok::<_, BoxError>(resp)
        }),
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(svc.oneshot(req))
        .unwrap()
}

fn get(path: &str) -> HttpRequest {
    http::Request::get(path).body(Body::empty()).unwrap()
}

#[test]
fn compile_errors_name_the_field_and_line() {
    let e = layer("function on_request(req)\n  local x = \nend").unwrap_err();
    assert_eq!(e.field(), "script.source");
    assert!(e.reason().contains("does not compile: script:3:"), "{e}");
    let e = layer("x = 1").unwrap_err();
    assert!(e.reason().contains("no `on_request`"), "{e}");
    let e = layer("error('boom')").unwrap_err();
    assert!(e.reason().contains("boom"), "{e}");
    let e = layer("while true do end function on_request() end").unwrap_err();
    assert_eq!(e.field(), "instruction_limit", "{e}");
    let mut cfg = LuaConfig::inline("function on_request() end");
    cfg.script = ScriptSource::Path("/nonexistent/x.lua".into());
    assert_eq!(LuaLayer::try_from(&cfg).unwrap_err().field(), "script.path");
}

#[test]
fn the_sandbox_has_only_safe_libraries() {
    let l = layer(
        r#"
        function on_request(req)
          local seen = {}
          for _, n in ipairs({"io", "require", "load", "loadfile", "dofile", "debug",
                              "package", "coroutine", "collectgarbage"}) do
            if _G[n] ~= nil then seen[#seen + 1] = n end
          end
          if os.execute or os.getenv or os.exit or string.dump then seen[#seen + 1] = "os/dump" end
          assert(type(os.time()) == "number" and type(os.clock()) == "number")
          assert(string.upper("a") == "A" and math.max(1, 2) == 2 and utf8.char(72) == "H")
          -- pcall and xpcall still catch ordinary errors, with their values.
          local ok, e = pcall(error, { code = 7 })
          assert(not ok and e.code == 7)
          assert(select(2, xpcall(error, function(m) return "h:" .. m end, "x", 0)) == "h:x")
          assert(pcall(function() return 1 end))
          req:respond(200, { ["x-seen"] = table.concat(seen, ",") }, "")
        end"#,
    )
    .unwrap();
    let resp = run(&l, get("/"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen"], "");
}

#[test]
fn path_query_method_and_headers() {
    let l = layer(
        r#"
        function on_request(req)
          assert(req:path() == "/a" and req:query() == "b=1" and req:method() == "GET")
          req:set_path("/v2" .. req:path())
          req:set_query("c=2")
          req:set_method("POST")
          assert(req:method() == "POST" and req:path() == "/v2/a")
        end
        function on_response(resp) resp:set_status(201); resp:add_header("x-n", 2) end"#,
    )
    .unwrap();
    let resp = run(&l, get("/a?b=1"));
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-path"], "/v2/a?c=2");
    assert_eq!(resp.headers()["x-n"], "2");
}

#[test]
fn bad_inputs_are_script_errors_and_budgets_are_kept() {
    for (src, status, reason) in [
        ("req:set_header('bad name', 'x')", 500, "script_error"),
        ("req:set_header('x', 'a\\nb')", 500, "script_error"),
        ("req:set_path('no-slash')", 500, "script_error"),
        ("req:set_method('G E T')", 500, "script_error"),
        ("req:respond(99)", 500, "script_error"),
        ("nope()", 500, "script_error"),
        ("req:set_header('Content-Length', '5')", 500, "script_error"),
        (
            "req:remove_header('transfer-encoding')",
            500,
            "script_error",
        ),
        (
            "req:respond(200, {['connection'] = 'close'})",
            500,
            "script_error",
        ),
        (
            "setmetatable({}, {__gc = function() while true do end end})",
            500,
            "script_error",
        ),
        ("while true do end", 500, "script_budget_exceeded"),
        (
            "while true do pcall(function() while true do end end) end",
            500,
            "script_budget_exceeded",
        ),
        (
            "local t = {} while true do t[#t+1] = {} end",
            500,
            "script_budget_exceeded",
        ),
        (
            "local s = string.rep('x', 1 << 30)",
            500,
            "script_budget_exceeded",
        ),
    ] {
        let mut cfg = LuaConfig::inline(format!("function on_request(req) {src} end"));
        cfg.memory_limit_bytes = ByteSize(1 << 20);
        cfg.instruction_limit = NonZeroU32::new(10_000_000).unwrap();
        let counters = Arc::new(LuaCounters::default());
        let l = LuaLayer::new(&cfg, counters.clone()).unwrap();
        let resp = run(&l, get("/"));
        assert_eq!(resp.status(), status, "{src}");
        assert_eq!(resp.headers()["x-proxy-error"], reason, "{src}");
        let counted: u64 = Failure::ALL.iter().map(|f| counters.errors(*f)).sum();
        assert_eq!(counted, 1, "{src}");
    }
}

#[test]
fn one_state_per_thread_and_script() {
    let l =
        layer("n = 0 function on_request(req) n = n + 1 req:respond(200, {n = n}) end").unwrap();
    let before = states::held();
    assert_eq!(run(&l, get("/")).headers()["n"], "1");
    assert_eq!(run(&l, get("/")).headers()["n"], "2", "the state is kept");
    assert_eq!(states::held(), before + 1);
    let other = layer("function on_request(req) req:respond(204) end").unwrap();
    assert_eq!(run(&other, get("/")).status(), 204);
    assert_eq!(states::held(), before + 2);
}

/// Any bytes as a header name and value through the API: written, or a Lua error
/// (500) when HTTP refuses them; never a panic.
fn header_bytes(name: &[u8], value: &[u8]) -> Result<(), TestCaseError> {
    // The bytes reach the script as hex, since not all are valid in a request.
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let l = layer(&format!(
        "local function unhex(s)
           return (s:gsub('..', function(h) return string.char(tonumber(h, 16)) end))
         end
         function on_request(req)
           local n, v = unhex('{}'), unhex('{}')
           req:header(n)
           req:header_values(n)
           req:set_header(n, v)
           req:add_header(n, v)
           req:respond(200, {{ [n] = v }}, v)
         end",
        hex(name),
        hex(value)
    ))
    .unwrap();
    let resp = run(&l, get("/"));
    let valid = http::HeaderName::from_bytes(name).is_ok_and(|n| !api::MANAGED.contains(&n))
        && http::HeaderValue::from_bytes(value).is_ok();
    prop_assert_eq!(resp.status() == 200, valid);
    prop_assert!(resp.status() == 200 || resp.status() == 500);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_header_bytes_never_panic(
        name in proptest::collection::vec(any::<u8>(), 0..20),
        value in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        header_bytes(&name, &value)?;
    }

    #[test]
    fn arbitrary_lowercase_names_and_text_values(
        name in "[a-z-]{1,12}",
        value in "[ -~]{0,30}",
    ) {
        header_bytes(name.as_bytes(), value.as_bytes())?;
    }
}

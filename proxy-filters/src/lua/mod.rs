//! Lua script filters: a script sees and changes the request and response headers,
//! method, path and status, and can answer locally, within a memory and an
//! instruction budget.
//!
//! A script defines `on_request(req)` and, optionally, `on_response(resp)`:
//!
//! ```lua
//! function on_request(req)
//!   if req:header("x-api-key") == nil then
//!     return req:respond(401, { ["www-authenticate"] = "ApiKey" }, "key needed\n")
//!   end
//!   req:set_header("x-client", req:client_ip() or "unknown")
//!   req:set_path("/v2" .. req:path())
//! end
//!
//! function on_response(resp)
//!   resp:remove_header("server")
//!   if resp:status() == 404 then resp:set_status(410) end
//! end
//! ```
//!
//! # What a script sees
//!
//! `req` (in `on_request`):
//!
//! | method | does |
//! |---|---|
//! | `req:method()`, `req:set_method(m)` | the method (`"GET"`) |
//! | `req:path()`, `req:set_path(p)` | the path, without the query; `p` starts with `/` |
//! | `req:query()`, `req:set_query(q)` | the query without `?`, or `nil`; `set_query(nil)` drops it |
//! | `req:client_addr()`, `req:client_ip()` | the peer (`"127.0.0.1:5000"`, `"127.0.0.1"`), or `nil` |
//! | `req:respond(status, headers, body)` | answers locally (the upstream is not called); `headers` (a table name -> value) and `body` (a string) may be omitted |
//!
//! `resp` (in `on_response`): `resp:status()`, `resp:set_status(n)` (200 to 599 for
//! a final answer, 100 to 999 accepted as HTTP allows).
//!
//! Both have the header methods: `header(name)` (the first value or `nil`),
//! `header_values(name)` (a list), `set_header(name, value)` (replaces),
//! `add_header(name, value)` (appends), `remove_header(name)`. Names are
//! case-insensitive; values are Lua strings of any bytes the HTTP rules allow. The
//! headers that frame the message or the connection (`content-length`,
//! `transfer-encoding`, `connection`, `upgrade`, `te`, `trailer`, `keep-alive`,
//! `proxy-connection`) can be read but not written: the proxy sets them. A bad name,
//! value, method, path or status, or a write of a framing header, raises a Lua error
//! (a 500, below).
//!
//! Bodies are not exposed in this first version: a script cannot read or change the
//! request or response body (a local answer's body is a string the script gives).
//! `on_response` runs for the upstream's answers, not for the script's own local
//! answers nor for the proxy's errors.
//!
//! # Sandbox
//!
//! The script's environment holds Lua's base functions (`pairs`, `ipairs`, `type`,
//! `tostring`, `tonumber`, `select`, `error`, `pcall`, `xpcall`, `assert`, `next`, `rawget`,
//! `rawset`, `rawequal`, `rawlen`, `setmetatable` (without `__gc`: finalizers would
//! run out of the budget's reach), `getmetatable`), the `string`
//! (without `string.dump`), `table`, `math` and `utf8` libraries, `os.time()` and
//! `os.clock()` only, and `print(...)`, which logs at debug level. There is no `io`,
//! `os` beyond those two, `require`/`package`, `load`/`loadfile`/`dofile` (no code
//! from strings or files, no bytecode), `debug`, `coroutine` nor `collectgarbage`.
//!
//! # Budgets and errors
//!
//! Each worker's Lua state has a memory limit (`memory_limit_bytes`, default 8 MiB);
//! each call into the script an instruction budget (`instruction_limit`, default
//! 1,000,000 Lua VM instructions, checked every 1,000). A script that loops forever
//! or allocates without bound is stopped there; the request is answered 500 with
//! `x-proxy-error: script_budget_exceeded`, and that worker's state is dropped, so
//! the next request starts from a fresh one. `pcall` and `xpcall` cannot catch a
//! spent budget: once it is spent they pass every error on. A runtime error (a Lua `error`, a bad
//! argument to the API) answers 500 with `x-proxy-error: script_error`. Either way
//! the worker goes on; `proxy_filters_lua_errors_total{filter,reason}` counts them by
//! `reason` (`runtime`, `instructions`, `memory`). The instruction budget does not
//! run inside one call of a library function written in C (a `string.rep`, a
//! `string.find` on a long subject): the memory limit bounds what those can build.
//!
//! A script that does not compile, whose top level fails or runs out of budget, or
//! that defines no `on_request` function is refused at load, naming the field:
//! `script.source: does not compile: script:3: '=' expected near 'x'`.
//!
//! # Performance model
//!
//! The script is compiled at load (to check it) and, in each worker thread, once more
//! into that thread's own Lua state the first time that thread runs the filter; the
//! state keeps the script's `on_request`/`on_response` functions, so a request costs
//! one Lua call per hook and no parsing. States are per thread and per filter:
//! global variables a script sets persist in that worker's state only (not across
//! workers, not across a reload, and not past a budget error). Use them as caches at
//! most, never for per-request data, since `on_request` and `on_response` of one
//! request may run on different workers. A reload builds a new filter, whose
//! states are made afresh on the next request of each worker; the replaced filter's
//! states are freed once no connection holds the old stack.
//!
//! Metrics: `proxy_filters_lua_calls_total`, `proxy_filters_lua_local_replies_total`,
//! `proxy_filters_lua_errors_total{reason}`.
//!
//! ```yaml
//! http_filters:
//!   - typed: lua
//!     config:
//!       script: { path: scripts/gateway.lua }   # or { source: "function on_request(req) ... end" }
//!       memory_limit_bytes: 4MiB
//!       instruction_limit: 200000
//! ```

mod api;
mod sandbox;
mod service;
mod states;

use std::{num::NonZeroU32, path::PathBuf, sync::Arc};

use proxy_core::config::ByteSize;
use serde::{Deserialize, Serialize};

pub use sandbox::Failure;
pub use service::{LuaFilter, ResponseFuture};

use crate::{metrics::LuaCounters, ConfigError};

/// The registered name.
pub const NAME: &str = "lua";

/// The default memory limit of a worker's Lua state: 8 MiB.
pub const DEFAULT_MEMORY_LIMIT: ByteSize = ByteSize(8 << 20);

/// The default instruction budget of one call: 1,000,000.
pub const DEFAULT_INSTRUCTION_LIMIT: NonZeroU32 = match NonZeroU32::new(1_000_000) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// The `lua` filter's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuaConfig {
    /// Names this filter in metrics (default: the route's or listener's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The script.
    pub script: ScriptSource,
    /// The memory limit of each worker's Lua state.
    #[serde(default = "default_memory")]
    pub memory_limit_bytes: ByteSize,
    /// The Lua VM instructions one call of `on_request` or `on_response` may run.
    #[serde(default = "default_instructions")]
    pub instruction_limit: NonZeroU32,
}

fn default_memory() -> ByteSize {
    DEFAULT_MEMORY_LIMIT
}

fn default_instructions() -> NonZeroU32 {
    DEFAULT_INSTRUCTION_LIMIT
}

impl LuaConfig {
    /// A config running the inline `source`, with the default budgets.
    pub fn inline(source: impl Into<String>) -> Self {
        Self {
            name: None,
            script: ScriptSource::Source(source.into()),
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT,
            instruction_limit: DEFAULT_INSTRUCTION_LIMIT,
        }
    }
}

/// Where the script comes from: `{source: "..."}` or `{path: file.lua}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScriptSource {
    /// The script's text.
    Source(String),
    /// A file holding it; relative to the config file's directory when loaded from
    /// YAML (code gives a path as the process sees it).
    Path(PathBuf),
}

/// A validated script and its budgets, shared by the services of one filter.
#[derive(Debug)]
pub(crate) struct Script {
    /// Tells this script's per-thread states from others'.
    id: u64,
    source: Arc<str>,
    /// Lua's chunk name (`=script` or `=PATH`), so messages read `script:3: ...`.
    chunk: String,
    limits: sandbox::Limits,
    counters: Arc<LuaCounters>,
}

/// Applies [`LuaFilter`] to a service.
///
/// # Example
/// ```
/// use proxy_core::{Body, BoxError, HttpRequest};
/// use proxy_filters::lua::{LuaConfig, LuaLayer};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cfg = LuaConfig::inline(
///     r#"
///     function on_request(req)
///       if req:path() == "/health" then return req:respond(200, {}, "ok\n") end
///       req:set_header("x-env", "prod")
///       req:set_path("/v2" .. req:path())
///     end
///     function on_response(resp) resp:set_header("x-served-by", "lua") end
///     "#,
/// );
/// let svc = ServiceBuilder::new()
///     .layer(LuaLayer::try_from(&cfg)?)
///     .service(service_fn(|req: HttpRequest| async move {
///         assert_eq!(req.headers()["x-env"], "prod");
///         assert_eq!(req.uri().path(), "/v2/users");
///         Ok::<_, BoxError>(http::Response::new(Body::empty()))
///     }));
/// let req = http::Request::get("/users?page=2").body(Body::empty())?;
/// let resp = svc.clone().oneshot(req).await?;
/// assert_eq!(resp.headers()["x-served-by"], "lua");
/// let health = svc.oneshot(http::Request::get("/health").body(Body::empty())?).await?;
/// assert_eq!(health.status(), 200);
/// # Ok::<_, BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LuaLayer {
    script: Arc<Script>,
}

impl LuaLayer {
    /// Reads (for `script.path`) and compiles the script, runs its top level once and
    /// checks that it defines `on_request`; calls and errors are counted in
    /// `counters`.
    ///
    /// # Errors
    /// An unreadable file (`script.path`), a script that does not compile or whose
    /// top level fails (`script.source` / `script.path`, with Lua's line), a top level
    /// out of budget (`memory_limit_bytes`, `instruction_limit`), a missing
    /// `on_request` function.
    pub fn new(cfg: &LuaConfig, counters: Arc<LuaCounters>) -> Result<Self, ConfigError> {
        let (field, source, chunk) = match &cfg.script {
            ScriptSource::Source(s) => (
                "script.source",
                Arc::<str>::from(s.as_str()),
                "=script".to_owned(),
            ),
            ScriptSource::Path(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::invalid("script.path", format!("cannot read {}: {e}", p.display()))
                })?;
                ("script.path", Arc::from(text), format!("={}", p.display()))
            }
        };
        let limits = sandbox::Limits {
            memory: cfg.memory_limit_bytes.as_usize(),
            instructions: u64::from(cfg.instruction_limit.get()),
        };
        // Compiled and run once here, so a bad script is refused before it serves.
        if let Err(e) = sandbox::State::new(&source, &chunk, &limits) {
            let field = match &e {
                sandbox::LoadError::Run(Failure::Memory, _) => "memory_limit_bytes",
                sandbox::LoadError::Run(Failure::Instructions, _) => "instruction_limit",
                _ => field,
            };
            return Err(ConfigError::invalid(field, e.to_string()));
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            script: Arc::new(Script {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                source,
                chunk,
                limits,
                counters,
            }),
        })
    }
}

impl TryFrom<&LuaConfig> for LuaLayer {
    type Error = ConfigError;

    /// [`LuaLayer::new`] with counters of its own.
    fn try_from(cfg: &LuaConfig) -> Result<Self, ConfigError> {
        Self::new(cfg, Arc::default())
    }
}

impl<S> tower_layer::Layer<S> for LuaLayer {
    type Service = LuaFilter<S>;

    fn layer(&self, inner: S) -> LuaFilter<S> {
        LuaFilter::new(inner, self.script.clone())
    }
}

#[cfg(test)]
mod tests;

//! One sandboxed Lua state: the safe libraries, the memory limit, the instruction
//! budget, and the script's hooks; a call into a hook and the kind of its failure.

use std::{
    cell::Cell,
    rc::Rc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use mlua::{
    chunk::ChunkMode, Function, HookTriggers, Lua, LuaOptions, StdLib, UserData, Value, VmState,
};

/// How often (in VM instructions) the budget is checked.
const STEP: u64 = 1000;

/// The budgets of a state and of each call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The memory limit of the state, in bytes.
    pub(crate) memory: usize,
    /// The instructions one call may run.
    pub(crate) instructions: u64,
}

/// Why a call into a script failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A Lua error: `error(...)`, a bad argument to the API, a nil called.
    Runtime,
    /// The call ran out of its instruction budget.
    Instructions,
    /// The state reached its memory limit.
    Memory,
}

impl Failure {
    /// Every failure, in the order of the metric's labels.
    pub const ALL: [Failure; 3] = [Self::Runtime, Self::Instructions, Self::Memory];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::Instructions => "instructions",
            Self::Memory => "memory",
        }
    }

    /// The index in [`Failure::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Runtime => 0,
            Self::Instructions => 1,
            Self::Memory => 2,
        }
    }

    /// The `x-proxy-error` of the 500 it answers.
    pub(crate) fn proxy_error(self) -> &'static str {
        match self {
            Self::Runtime => "script_error",
            Self::Instructions | Self::Memory => "script_budget_exceeded",
        }
    }
}

/// Why a script could not be loaded into a state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("does not compile: {0}")]
    Compile(String),
    #[error("{reason} while running the script's top level: {1}", reason = run_reason(*.0))]
    Run(Failure, String),
    #[error("the script defines no `on_request` function")]
    NoOnRequest,
    #[error("`on_response` is not a function")]
    BadOnResponse,
    #[error("cannot set up a Lua state: {0}")]
    Setup(String),
}

fn run_reason(f: Failure) -> &'static str {
    match f {
        Failure::Runtime => "error",
        Failure::Instructions => "out of instructions",
        Failure::Memory => "out of memory",
    }
}

/// Raised by the instruction hook.
#[derive(Debug, thiserror::Error)]
#[error("instruction budget exceeded")]
struct OutOfInstructions;

/// A Lua state with the script loaded.
pub(crate) struct State {
    lua: Lua,
    on_request: Function,
    on_response: Option<Function>,
    /// Instructions run by the current call (a multiple of [`STEP`]).
    used: Rc<Cell<u64>>,
    limit: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl State {
    /// A fresh sandboxed state running `source` (named `chunk` in Lua's messages).
    pub(crate) fn new(source: &str, chunk: &str, limits: &Limits) -> Result<Self, LoadError> {
        let setup = |e: mlua::Error| LoadError::Setup(e.to_string());
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(setup)?;
        let used = Rc::new(Cell::new(0));
        sandbox(&lua, used.clone(), limits.instructions).map_err(setup)?;
        lua.set_memory_limit(limits.memory).map_err(setup)?;
        let step = limits.instructions.clamp(1, STEP);
        let (counted, limit) = (used.clone(), limits.instructions);
        let triggers = HookTriggers::new().every_nth_instruction(step as u32);
        lua.set_global_hook(triggers, move |_, _| {
            let n = counted.get() + step;
            counted.set(n);
            if n > limit {
                Err(mlua::Error::external(OutOfInstructions))
            } else {
                Ok(VmState::Continue)
            }
        })
        .map_err(setup)?;
        let main = lua
            .load(source)
            .set_name(chunk)
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => LoadError::Compile(message),
                mlua::Error::MemoryError(_) => LoadError::Run(Failure::Memory, e.to_string()),
                e => LoadError::Compile(e.to_string()),
            })?;
        main.call::<()>(())
            .map_err(|e| LoadError::Run(classify(&e, used.get(), limit), e.to_string()))?;
        let globals = lua.globals();
        let on_request = match globals.raw_get::<Value>("on_request") {
            Ok(Value::Function(f)) => f,
            _ => return Err(LoadError::NoOnRequest),
        };
        let on_response = match globals.raw_get::<Value>("on_response") {
            Ok(Value::Function(f)) => Some(f),
            Ok(Value::Nil) => None,
            _ => return Err(LoadError::BadOnResponse),
        };
        Ok(Self {
            lua,
            on_request,
            on_response,
            used,
            limit,
        })
    }

    /// Whether the script defines `on_response`.
    pub(crate) fn has_on_response(&self) -> bool {
        self.on_response.is_some()
    }

    /// Calls `on_request` with `view` as its argument and gives `view` back.
    pub(crate) fn on_request<T: UserData + 'static>(
        &self,
        view: T,
    ) -> Result<T, (Failure, String)> {
        self.call(&self.on_request, view)
    }

    /// Calls `on_response` (when defined) with `view` and gives `view` back.
    pub(crate) fn on_response<T: UserData + 'static>(
        &self,
        view: T,
    ) -> Result<T, (Failure, String)> {
        match &self.on_response {
            Some(f) => self.call(f, view),
            None => Ok(view),
        }
    }

    fn call<T: UserData + 'static>(&self, f: &Function, view: T) -> Result<T, (Failure, String)> {
        self.used.set(0);
        let failed = |e: mlua::Error| (classify(&e, self.used.get(), self.limit), e.to_string());
        let ud = self.lua.create_userdata(view).map_err(failed)?;
        let result = f.call::<()>(&ud);
        // Taken back even after an error: a script that kept `req` finds it gone.
        let view = ud.take::<T>();
        result.map_err(failed)?;
        view.map_err(failed)
    }
}

/// The failure behind `e`: the budget when the call used it up (even if the script
/// caught the hook's error with `pcall` and raised another), else memory, else a
/// runtime error.
fn classify(e: &mlua::Error, used: u64, limit: u64) -> Failure {
    if used > limit {
        return Failure::Instructions;
    }
    let mut e = e;
    loop {
        match e {
            mlua::Error::MemoryError(_) => return Failure::Memory,
            // Lua's buffers (`string.rep`, `table.concat`) raise a failed allocation
            // as a plain error with this message.
            mlua::Error::RuntimeError(m) if m.ends_with("not enough memory") => {
                return Failure::Memory
            }
            mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
                e = cause;
            }
            _ => return Failure::Runtime,
        }
    }
}

/// Replaces `pcall` and `xpcall` by wrappers that raise the error again when the
/// instruction budget is spent; removes the `budget_spent` global it uses. Refuses
/// `__gc` metamethods: Lua runs finalizers with hooks off, out of the budget's reach.
const GUARDED_PCALL: &str = r#"
local raw_pcall, raw_xpcall, spent = pcall, xpcall, budget_spent
local pack, unpack, raise = table.pack, table.unpack, error
budget_spent = nil
local function pass(r)
  if not r[1] and spent() then raise(r[2], 0) end
  return unpack(r, 1, r.n)
end
pcall = function(...) return pass(pack(raw_pcall(...))) end
xpcall = function(...) return pass(pack(raw_xpcall(...))) end
local raw_setmetatable, rawget, type = setmetatable, rawget, type
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    raise("__gc metamethods are not allowed", 2)
  end
  return raw_setmetatable(t, mt)
end
"#;

/// Leaves only the safe part of the standard library in the globals and adds
/// `os.time`, `os.clock` and a `print` that logs.
fn sandbox(lua: &Lua, spent: Rc<Cell<u64>>, limit: u64) -> mlua::Result<()> {
    let globals = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "load",
        "loadstring",
        "require",
        "collectgarbage",
        "module",
    ] {
        globals.raw_set(name, Value::Nil)?;
    }
    let string: mlua::Table = globals.raw_get("string")?;
    string.raw_set("dump", Value::Nil)?;
    let os = lua.create_table()?;
    os.raw_set(
        "time",
        lua.create_function(|_, ()| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Ok(i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
        })?,
    )?;
    let start = Instant::now();
    os.raw_set(
        "clock",
        lua.create_function(move |_, ()| Ok(start.elapsed().as_secs_f64()))?,
    )?;
    globals.raw_set("os", os)?;
    // `pcall`/`xpcall` that pass an error on once the budget is spent: otherwise a
    // loop around `pcall` would catch the budget's error forever.
    globals.raw_set(
        "budget_spent",
        lua.create_function(move |_, ()| Ok(spent.get() > limit))?,
    )?;
    lua.load(GUARDED_PCALL)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .exec()?;
    globals.raw_set(
        "print",
        lua.create_function(|_, args: mlua::Variadic<Value>| {
            let text: Vec<String> = args
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.to_string_lossy(),
                    v => format!("{v:?}"),
                })
                .collect();
            tracing::debug!(message = %text.join("\t"), "lua print");
            Ok(())
        })?,
    )?;
    Ok(())
}

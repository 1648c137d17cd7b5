//! The roll-back side of [`serve`](super::serve): a server started again, in this
//! process, on the listening sockets a dead new process had.

use std::{
    os::fd::OwnedFd,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use proxy_core::{config::Config, DisplayChain, Server};

use super::{lock, Hook, Rebuild, ServeError, UpgradeOptions};

/// The server this process starts on its own listening sockets when a new process
/// dies after it said ready, running on a thread of its own until SIGTERM.
pub(super) type Successor = Arc<Mutex<Option<std::thread::JoinHandle<Result<(), ServeError>>>>>;

/// How long the server taken back may take to list its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The roll-back of a hot upgrade: a server from `rebuild` with `server`'s current
/// config, on the listening sockets taken back, serving upgrades on the same path
/// again, running `on_running` again; returned once it runs, to adopt the
/// connections `server` still hands out.
pub(super) fn take_back(
    server: &Server,
    options: UpgradeOptions,
    rebuild: Rebuild,
    on_running: Hook,
    successor: Successor,
) -> impl Fn(Vec<(String, OwnedFd)>) -> Option<Server> + Send + Sync + 'static {
    let server = server.clone();
    move |sockets| {
        let config = Config::clone(&server.snapshot().config);
        let again = rebuild(config)
            .inspect_err(|e| tracing::error!(error = %DisplayChain(e.as_ref()), "cannot start again on the listeners"))
            .ok()?
            .with_inherited_listeners(sockets);
        let options = UpgradeOptions {
            take_over: false,
            ..options.clone()
        };
        let (running, rebuild, on_running) = (again.clone(), rebuild.clone(), on_running.clone());
        let thread = std::thread::Builder::new()
            .name("upgrade-rolled-back".into())
            .spawn(move || super::run(running, options, rebuild, on_running))
            .inspect_err(|e| tracing::error!(error = %e, "cannot start again on the listeners"))
            .ok()?;
        let deadline = Instant::now() + START_TIMEOUT;
        while again.listener_addresses().is_empty() {
            if thread.is_finished() || Instant::now() > deadline {
                tracing::error!("the server taken back did not start");
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *lock(&successor) = Some(thread);
        Some(again)
    }
}

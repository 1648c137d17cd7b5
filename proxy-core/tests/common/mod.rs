//! Helpers shared by proxy-core's socket tests: an in-process upstream on its own
//! thread, and a server run in-process until shut down.

// Test helpers: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used, dead_code)]

use std::{future::Future, time::Duration};

use proxy_core::{config::Config, Registry, Server};

/// Serves each accepted connection on 127.0.0.1 with `handle`, on a thread of its own.
pub(crate) fn upstream<F, Fut>(handle: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(handle(s));
            }
        });
    });
    addr
}

/// Runs a server for `yaml` on a thread until `Server::shutdown`; returns once its
/// listeners are bound.
pub(crate) fn start(yaml: &str, registry: Registry) -> (Server, std::thread::JoinHandle<()>) {
    let server = Server::new(Config::from_yaml(yaml).unwrap(), registry).unwrap();
    let runner = server.clone();
    let handle = std::thread::spawn(move || runner.run_until(std::future::pending()).unwrap());
    for _ in 0..500 {
        if !server.listener_addresses().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (server, handle)
}

/// The bound address of listener `name`.
pub(crate) fn address_of(server: &Server, name: &str) -> String {
    server
        .listener_addresses()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

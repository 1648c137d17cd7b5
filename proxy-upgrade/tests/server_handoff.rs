//! `proxy_core::Server` on both sides, in one test process: the old server hands its
//! TCP and Unix listeners over and stops; the new one claims them by name and address
//! (a configured port 0 matches the port the old one got), closes a socket no
//! listener claims, and answers on the same port and the same socket file.

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    time::Duration,
};

use common::*;
use proxy_core::{config::Config, metrics::CarriedValue, Registry, Server};
use proxy_upgrade::UpgradeServer;

fn config(uds: &std::path::Path) -> Config {
    let yaml = format!(
        "runtime: {{worker_threads: 2, flavor: per_core}}\n\
         listeners:\n\
         \x20 - name: web\n    address: \"127.0.0.1:0\"\n    virtual_hosts: []\n\
         \x20 - name: uds\n    address: \"unix:{}\"\n    virtual_hosts: []\n\
         clusters: []\n",
        uds.display()
    );
    Config::from_yaml(&yaml).expect("config")
}

/// Runs `server` on a thread until it stops.
fn run(server: Server) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let s = server.clone();
        s.run_until(std::future::pending()).expect("run");
    })
}

/// Sends a request and returns the status line (no route: the proxy answers 404).
fn status_line(mut s: impl Read + Write) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_server_takes_over_the_listeners_of_another() {
    let dir = Dir::new();
    let uds = dir.join("app.sock");
    let old = Server::new(config(&uds), Registry::default()).expect("old");
    let old_thread = run(old.clone());
    let addr = web_address(&old);
    assert!(status_line(TcpStream::connect(addr).expect("tcp")).starts_with("HTTP/1.1 404"));
    let path = dir.join("upgrade.sock");
    let service = UpgradeServer::bind(&path)
        .expect("bind")
        .spawn(old.clone())
        .expect("spawn");

    let mut upgrade = client(&path).connect().expect("upgrade");
    // The listeners, and a socket no listener of the new config claims.
    let ghost = tcp_listener(0);
    let ghost_addr = local(&ghost);
    let mut sockets = upgrade.take_sockets();
    sockets.push(("gone".into(), ghost));
    assert_eq!(
        sockets.len(),
        2 + 1 + 1,
        "web per worker, uds, and the extra one"
    );
    let new = Server::new(config(&uds), Registry::default())
        .expect("new")
        .with_inherited_listeners(sockets);
    let new_thread = run(new.clone());
    assert_eq!(
        web_address(&new),
        addr,
        "the same port, not a new one for port 0"
    );
    upgrade.finish().expect("the old server confirms");
    old_thread
        .join()
        .expect("the old server stops after the hand-off");
    assert!(service.handed_off());
    drop(service);

    assert!(
        uds.exists(),
        "the old server left the socket file to the new one"
    );
    assert!(status_line(TcpStream::connect(addr).expect("tcp")).starts_with("HTTP/1.1 404"));
    assert!(status_line(UnixStream::connect(&uds).expect("uds")).starts_with("HTTP/1.1 404"));
    assert!(
        TcpStream::connect_timeout(&ghost_addr, Duration::from_secs(1)).is_err(),
        "an unclaimed socket is closed"
    );
    new.shutdown();
    new_thread.join().expect("new server stops");
}

/// The integer value of `series` among `samples`.
fn counter(samples: &[(String, CarriedValue)], series: &str) -> Option<u64> {
    samples.iter().find_map(|(s, v)| match v {
        CarriedValue::Integer(n) if s == series => Some(*n),
        _ => None,
    })
}

/// The float value of `series` among `samples` (a histogram's sum).
fn float(samples: &[(String, CarriedValue)], series: &str) -> Option<f64> {
    samples.iter().find_map(|(s, v)| match v {
        CarriedValue::Float(x) if s == series => Some(*x),
        _ => None,
    })
}

#[test]
fn counters_carried_in_go_on_and_a_connection_of_an_unknown_protocol_is_refused() {
    let dir = Dir::new();
    let server = Server::new(config(&dir.join("app.sock")), Registry::default()).expect("server");
    let thread = run(server.clone());
    let addr = web_address(&server);
    assert!(status_line(TcpStream::connect(addr).expect("tcp")).starts_with("HTTP/1.1 404"));
    let (accepted, active) = (
        "proxy_listener_connections_total{listener=\"web\"}",
        "proxy_listener_connections_active{listener=\"web\"}",
    );
    let counters = server.metrics_to_carry();
    let own = counter(&counters, accepted).expect("the accept counter");
    assert!(own >= 1);
    // Gauges are not counters: not carried.
    assert_eq!(counter(&counters, active), None);
    // The request-duration histogram is: its count an integer, its sum a float.
    let (count, sum) = (
        "proxy_listener_request_duration_seconds_count{listener=\"web\"}",
        "proxy_listener_request_duration_seconds_sum{listener=\"web\"}",
    );
    let own_count = counter(&counters, count).expect("the histogram's count");
    let own_sum = float(&counters, sum).expect("the histogram's sum");
    // What the old process counted is added to what this one counts.
    server.carry_metrics(vec![
        (accepted.to_owned(), CarriedValue::Integer(1000)),
        ("gone_total".to_owned(), CarriedValue::Integer(5)),
        (count.to_owned(), CarriedValue::Integer(500)),
        (sum.to_owned(), CarriedValue::Float(12.5)),
    ]);
    let carried = server.metrics_to_carry();
    assert_eq!(counter(&carried, accepted), Some(own + 1000));
    assert_eq!(counter(&carried, count), Some(own_count + 500));
    assert!(float(&carried, sum).expect("sum") >= own_sum + 12.5);
    assert!(counter(&carried, "gone_total").is_none());
    assert!(status_line(TcpStream::connect(addr).expect("tcp")).starts_with("HTTP/1.1 404"));
    assert_eq!(
        counter(&server.metrics_to_carry(), accepted),
        Some(own + 1001)
    );
    // A later set replaces the earlier one.
    server.carry_metrics(vec![(accepted.to_owned(), CarriedValue::Integer(2000))]);
    assert_eq!(
        counter(&server.metrics_to_carry(), accepted),
        Some(own + 2001)
    );

    // A Bolt connection for a listener that serves no Bolt: refused (and closed).
    let (ours, theirs) = UnixStream::pair().expect("pair");
    let refused = server.adopt_handed_off(proxy_core::HandedOffConnection {
        listener: "web".into(),
        socket: ours.into(),
        unread: b"\x01\x01".to_vec(),
        protocol: Some("bolt".into()),
        layer_state: None,
    });
    assert!(refused.is_err());
    let mut buf = [0u8; 1];
    let mut theirs = theirs;
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(theirs.read(&mut buf).expect("closed"), 0, "closed");
    server.shutdown();
    thread.join().expect("server stops");
}

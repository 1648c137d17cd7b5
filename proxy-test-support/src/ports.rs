//! Loopback addresses for tests: bind `127.0.0.1:0`, never a fixed port.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    net::{SocketAddr, TcpListener, UdpSocket},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

/// Ports [`free_addr`] picks from: below Linux's ephemeral range (32768 up), so no
/// socket bound to port 0 and no outgoing connection of a concurrent test can be
/// given one between the check and the bind by the process told to use it; and
/// above the fixed ports of the examples' default configs (15000, 18000-18099,
/// 20880, ...), which tests of those defaults bind.
const PICKED_PORTS: std::ops::Range<u32> = 21_000..32_000;

/// `127.0.0.1:0` as an address.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address whose port was free a moment ago, for what needs an address
/// fixed before it starts (an admin listener, a process told where to listen).
///
/// The port is picked at random below the ephemeral range and checked free for TCP
/// and UDP, so only another `free_addr` that picks the same port at the same
/// moment can take it in between (ports from the ephemeral range are taken all
/// the time by the connections of tests running in parallel). Prefer port 0 and
/// reading the bound address where you can.
///
/// # Panics
/// When `127.0.0.1:0` cannot be bound.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SEED: OnceLock<u32> = OnceLock::new();
    let seed = *SEED.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32);
    let span = PICKED_PORTS.end - PICKED_PORTS.start;
    for _ in 0..64 {
        // A random start per process, then a stride prime to the span: a process
        // picks every port of the span once before it repeats one, and two
        // processes rarely meet.
        let step = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919);
        let port = PICKED_PORTS.start + seed.wrapping_add(step) % span;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
    let listener = TcpListener::bind(any_port()).expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of a bound listener")
}

/// A loopback address nothing listens on (bound, then closed): connecting to it is
/// refused.
///
/// # Panics
/// When `127.0.0.1:0` cannot be bound.
pub fn closed_port() -> SocketAddr {
    free_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_refuses() {
        let addr = closed_port();
        assert_ne!(addr.port(), 0);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_differ() {
        let picks: std::collections::HashSet<u16> = (0..50).map(|_| free_addr().port()).collect();
        assert_eq!(picks.len(), 50, "{picks:?}");
        assert!(picks.iter().all(|p| PICKED_PORTS.contains(&u32::from(*p))));
        for port in picks {
            TcpListener::bind(("127.0.0.1", port)).expect("a picked port binds");
        }
    }
}

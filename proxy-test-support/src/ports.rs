//! Loopback addresses for tests: bind `127.0.0.1:0`, never a fixed port.

use std::net::{SocketAddr, TcpListener};

/// `127.0.0.1:0` as an address.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address whose port was free a moment ago (bound to port 0, then
/// released), for what needs an address fixed before it starts (an admin listener,
/// a process told where to listen). Another process may take it in between: prefer
/// port 0 and reading the bound address where you can.
///
/// # Panics
/// When `127.0.0.1:0` cannot be bound.
pub fn free_addr() -> SocketAddr {
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
}

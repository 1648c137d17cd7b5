//! HTTP/3 listeners in a hot upgrade: the new process takes the UDP socket, and
//! the old process's connections go on until they drained.
//!
//! Two processes reading one UDP socket would split its datagrams between them.
//! So the new process alone reads it, and forwards the old process the datagrams
//! of the old process's connections over a channel (a Unix `SOCK_SEQPACKET` pair
//! passed in the upgrade), each after its client's address; the old process reads
//! only that channel and still sends on its own copy of the UDP socket.
//!
//! Whose a datagram is, is read off its destination connection ID: every listener
//! marks the IDs it issues with its process's [`Generation`] (one bit, the lowest
//! of the last byte; IDs are drawn until one carries it, so QUIC-LB IDs stay
//! routable, encrypted or not), and the generation alternates from one process to
//! the next. The new process peeks at each datagram: a short header's DCID (at its
//! own connection ID length), a Handshake packet's; Initial and 0-RTT packets start
//! connections and stay. Nothing is allocated per datagram: the forwarded one is
//! sent from quinn's buffer with its header from the stack.
//!
//! The old listener sends GOAWAY when it hands off, so clients open new requests on
//! a new connection (to the new process); its requests in flight finish within its
//! drain timeout.
//!
//! Should the new process die after the switch (a roll-back), the old listener
//! reads the socket again for its own connections, which still drain, and takes
//! no new one; a successor listener started in the old process (for the server
//! taken back) then takes over from it as a new process would: a fresh channel,
//! the next generation. It serves new connections, forwards the draining listener
//! its datagrams, and is handed over in the next upgrade once that one has ended.
//! See [`Handoff`] for the old side and
//! [`H3ListenerBuilder::take_over`](crate::h3::H3ListenerBuilder::take_over) for
//! the new one; the crate README says what is not covered.

mod channel;
mod generation;
mod handle;
mod socket;

pub use generation::Generation;
pub(crate) use generation::MarkedCids;
pub use handle::{HandedOver, Handoff};
pub use socket::{HandoffSocket, HandoffStats};

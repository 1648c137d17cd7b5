//! The `quic` section after a hot-upgrade roll-back: the listeners started for the
//! server taken back take over, in this process, from the listeners of the server
//! before, as a new process takes over from an old one.

use super::InheritedUdp;
use crate::handoff::Handoff;

/// Hands each listener of `before` over to a successor in this process: a
/// duplicate of its UDP socket with a fresh forwarding channel, for the successor
/// of its name ([`Prepared::inherit`](super::Prepared::inherit)); the listener
/// before reads that channel from now on, and its connections drain there.
///
/// A listener that has ended gives its socket alone (nothing to forward). Datagrams
/// that arrive before the successor reads the socket wait in the socket's buffer.
///
/// # Errors
/// When a socket cannot be duplicated, a channel made or registered: the listeners
/// before read their sockets on (a channel made and not used is closed).
pub(super) fn hand_over_here(before: &[(String, Handoff)]) -> std::io::Result<Vec<InheritedUdp>> {
    let mut sockets = Vec::with_capacity(before.len());
    for (name, handoff) in before {
        let given = handoff.prepare()?;
        let forward = if handoff.has_ended() {
            handoff.abandon();
            None
        } else {
            match handoff.hand_off() {
                Ok(()) => {}
                // Its runtime is gone with it: the channel closed, nothing to forward.
                Err(_) if handoff.has_ended() => {}
                // It would read the socket beside its successor.
                Err(e) => return Err(e),
            }
            Some((given.forward, given.generation))
        };
        sockets.push(InheritedUdp {
            name: name.clone(),
            socket: given.socket,
            forward,
        });
    }
    Ok(sockets)
}

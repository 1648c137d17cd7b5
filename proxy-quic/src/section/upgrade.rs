//! The `quic` section's side of a proxy-upgrade hot upgrade: the UDP sockets a new
//! process receives become [`InheritedUdp`] ([`Prepared::inherit`](super::Prepared::inherit)),
//! and a running section's listeners are handed over as a
//! [`DatagramSource`](proxy_upgrade::DatagramSource) ([`Handover`]).

use proxy_upgrade::{DatagramSource, HandedOffDatagram, InheritedDatagram};

use super::InheritedUdp;
use crate::handoff::{Generation, Handoff};

impl From<InheritedDatagram> for InheritedUdp {
    /// The socket with its listener's name; the forwarding channel is dropped (the
    /// old process's connections are not taken over) when its generation bit is
    /// neither 0 nor 1.
    fn from(d: InheritedDatagram) -> Self {
        Self {
            name: d.record.name,
            socket: d.socket,
            forward: d
                .forward
                .and_then(|f| Some((f.socket, Generation::from_bit(f.generation)?))),
        }
    }
}

/// The listeners of a running section as a hot upgrade hands them over, by listener
/// name: each UDP socket with the new process's end of a fresh forwarding channel.
pub(super) struct Handover(pub(super) Vec<(String, Handoff)>);

impl DatagramSource for Handover {
    fn datagram_sockets(&self) -> std::io::Result<Vec<HandedOffDatagram>> {
        self.0
            .iter()
            .map(|(name, handoff)| {
                let given = handoff.prepare()?;
                Ok(HandedOffDatagram {
                    name: name.clone(),
                    worker: 0,
                    socket: given.socket,
                    forward: Some((given.forward, given.generation.bit())),
                })
            })
            .collect()
    }

    fn hand_off_datagrams(&self) {
        for (name, handoff) in &self.0 {
            match handoff.hand_off() {
                Ok(()) => {
                    tracing::info!(listener = %name, "QUIC listener handed off; its connections drain")
                }
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "QUIC listener hand-off failed; it drains")
                }
            }
        }
    }

    fn keep_datagrams(&self) {
        for (_, handoff) in &self.0 {
            handoff.abandon();
        }
    }
}

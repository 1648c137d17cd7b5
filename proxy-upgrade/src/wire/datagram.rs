//! The `datagrams` message of version 4: the UDP sockets of QUIC listeners, and the
//! channels over which the new process forwards the old one the datagrams of its
//! connections.

use std::net::SocketAddr;

use super::{check_name, malformed, put_record_count, put_text16, Reader};
use crate::UpgradeError;

/// Record kind of a UDP socket on the wire (1 and 2 are the TCP and Unix listeners).
const KIND_UDP: u8 = 3;
/// Record kind of a forwarding channel on the wire.
const KIND_FORWARD: u8 = 4;

/// What a handed-over datagram socket is; one descriptor per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramRecord {
    /// The listener's name in the config (as for TCP listeners).
    pub name: String,
    /// The UDP address the socket is bound to; for a forwarding channel, the
    /// address of the UDP socket it forwards for.
    pub address: SocketAddr,
    /// The worker that read it: its place in the listener's `SO_REUSEPORT` group.
    pub worker: u16,
    /// What the descriptor is.
    pub role: DatagramRole,
}

/// The descriptor beside a [`DatagramRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramRole {
    /// The UDP socket itself (`SOCK_DGRAM`, bound to the record's address): record
    /// kind 3.
    Udp,
    /// A connected Unix `SOCK_SEQPACKET` socket on which the new process sends the
    /// old one the datagrams of the old process's connections (their connection
    /// IDs carry `generation`), each after its client's address: record kind 4.
    /// It follows the `Udp` record of the same name, worker and address.
    Forward {
        /// The generation the old process marks its connection IDs with (0 or 1).
        generation: u8,
    },
}

/// `count: u16`, then per record `kind: u8` (3 UDP, 4 forward), `worker: u16`,
/// `generation: u8` (0 for UDP), `name_len: u16`, the name, `addr_len: u16`, the
/// address as text (`ip:port`).
pub(super) fn encode(out: &mut Vec<u8>, records: &[DatagramRecord]) -> Result<(), UpgradeError> {
    put_record_count(out, records.len())?;
    for r in records {
        check_name(&r.name)?;
        let (kind, generation) = match r.role {
            DatagramRole::Udp => (KIND_UDP, 0),
            DatagramRole::Forward { generation } if generation <= 1 => (KIND_FORWARD, generation),
            DatagramRole::Forward { generation } => {
                return Err(malformed(format!("generation {generation}")))
            }
        };
        let address = r.address.to_string();
        out.push(kind);
        out.extend_from_slice(&r.worker.to_be_bytes());
        out.push(generation);
        put_text16(out, &r.name);
        put_text16(out, &address);
    }
    Ok(())
}

pub(super) fn decode(r: &mut Reader<'_>) -> Result<Vec<DatagramRecord>, UpgradeError> {
    (0..r.record_count()?).map(|_| decode_one(r)).collect()
}

fn decode_one(r: &mut Reader<'_>) -> Result<DatagramRecord, UpgradeError> {
    let kind = r.u8()?;
    let worker = r.u16()?;
    let generation = r.u8()?;
    let name = r.name()?;
    let address = r.text16("an address")?;
    let address: SocketAddr = address
        .parse()
        .map_err(|_| malformed(format!("{address:?} is not a UDP address")))?;
    let role = match (kind, generation) {
        (KIND_UDP, 0) => DatagramRole::Udp,
        (KIND_FORWARD, 0 | 1) => DatagramRole::Forward { generation },
        (KIND_UDP | KIND_FORWARD, g) => return Err(malformed(format!("generation {g}"))),
        (k, _) => return Err(malformed(format!("unknown datagram socket kind {k}"))),
    };
    Ok(DatagramRecord {
        name,
        address,
        worker,
        role,
    })
}

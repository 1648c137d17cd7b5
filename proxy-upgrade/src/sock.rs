//! The transport: a `SOCK_SEQPACKET` Unix socket, so that each message arrives whole
//! and alone, with its descriptors (`SCM_RIGHTS`) beside it. Blocking calls bounded
//! by socket timeouts; received descriptors are close-on-exec from the start
//! (`MSG_CMSG_CLOEXEC`). All descriptor passing of the crate is here, on rustix's safe
//! API: no `unsafe`.

use std::{
    io::{IoSlice, IoSliceMut},
    mem::MaybeUninit,
    os::fd::{BorrowedFd, OwnedFd},
    path::Path,
    time::Duration,
};

use rustix::{
    io::Errno,
    net::{
        self, sockopt, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
        ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
        SocketFlags, SocketType,
    },
};

use crate::{
    wire::{self, Message, MAX_FDS_PER_MESSAGE, MAX_MESSAGE_BYTES},
    UpgradeError,
};

/// A new `SOCK_SEQPACKET` Unix socket, close-on-exec.
fn socket() -> std::io::Result<OwnedFd> {
    Ok(net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

fn unix_addr(path: &Path) -> std::io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new(path)?)
}

/// Binds and listens on `path`; a socket file left by a dead process is replaced, a
/// live one refused.
pub(crate) fn listen(path: &Path) -> std::io::Result<OwnedFd> {
    if path.exists() && connect(path, Duration::from_secs(1)).is_err() {
        std::fs::remove_file(path)?;
    }
    let fd = socket()?;
    net::bind(&fd, &unix_addr(path)?)?;
    net::listen(&fd, 8)?;
    Ok(fd)
}

/// Connects to `path`, waiting at most `timeout`.
pub(crate) fn connect(path: &Path, timeout: Duration) -> std::io::Result<OwnedFd> {
    let fd = socket()?;
    set_timeout(&fd, timeout)?;
    net::connect(&fd, &unix_addr(path)?)?;
    Ok(fd)
}

/// Accepts a connection, waiting at most as long as the listening socket's receive
/// timeout; `None` when it ran out.
pub(crate) fn accept(listener: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    match net::accept_with(listener, SocketFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::AGAIN | Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Bounds every blocking call on `fd` (connect, send, receive, accept) by `timeout`.
pub(crate) fn set_timeout(fd: &OwnedFd, timeout: Duration) -> std::io::Result<()> {
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    sockopt::set_socket_timeout(fd, sockopt::Timeout::Recv, timeout)?;
    sockopt::set_socket_timeout(fd, sockopt::Timeout::Send, timeout)?;
    Ok(())
}

/// The user id of the connected peer.
pub(crate) fn peer_uid(fd: &OwnedFd) -> std::io::Result<u32> {
    Ok(sockopt::socket_peercred(fd)?.uid.as_raw())
}

/// A connection speaking the protocol.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: OwnedFd,
    timeout: Duration,
    /// The version messages are sent in: ours, or an older peer's.
    version: u16,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd, timeout: Duration) -> Result<Self, UpgradeError> {
        set_timeout(&fd, timeout)?;
        Ok(Self {
            fd,
            timeout,
            version: wire::VERSION,
        })
    }

    /// Speaks `version` from now on (an older peer's).
    pub(crate) fn set_version(&mut self, version: u16) {
        self.version = version;
    }

    /// The version messages are sent in.
    pub(crate) fn version(&self) -> u16 {
        self.version
    }

    /// Changes how long a receive may wait.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) -> Result<(), UpgradeError> {
        set_timeout(&self.fd, timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Whether the peer is gone: its end closed (it exited or was killed), without
    /// waiting and without taking a message. A peer that sent something is not gone.
    pub(crate) fn peer_gone(&self) -> bool {
        let mut byte = [0u8; 1];
        match net::recv(&self.fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e != Errno::AGAIN && e != Errno::INTR,
        }
    }

    /// Sends `message` with `fds` (at most [`MAX_FDS_PER_MESSAGE`]) beside it.
    pub(crate) fn send(
        &self,
        message: &Message,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), UpgradeError> {
        // Zeroed once sent: a connection message can carry a TLS session's keys.
        let bytes = zeroize::Zeroizing::new(wire::encode_version(message, self.version)?);
        self.send_raw(&bytes, fds)
    }

    /// Sends `bytes` as one message, as they are (tests send broken ones).
    pub(crate) fn send_raw(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), UpgradeError> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(UpgradeError::TooManyDescriptors {
                got: fds.len(),
                max: MAX_FDS_PER_MESSAGE,
            });
        }
        let sent = net::sendmsg(
            &self.fd,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .map_err(|e| self.io_error(e))?;
        if sent != bytes.len() {
            return Err(UpgradeError::Io(std::io::Error::other("short send")));
        }
        Ok(())
    }

    /// Receives one message and the descriptors beside it (close-on-exec). Anything
    /// wrong closes the descriptors that came.
    pub(crate) fn recv(&self) -> Result<(Message, Vec<OwnedFd>), UpgradeError> {
        self.recv_versioned().map(|(_, m, fds)| (m, fds))
    }

    /// [`Conn::recv`], also giving the message's version.
    pub(crate) fn recv_versioned(&self) -> Result<(u16, Message, Vec<OwnedFd>), UpgradeError> {
        // Zeroed when dropped: a connection message can carry a TLS session's keys.
        let mut buf = zeroize::Zeroizing::new(vec![0u8; MAX_MESSAGE_BYTES]);
        let mut space =
            vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = net::recvmsg(
            &self.fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC,
        )
        .map_err(|e| self.io_error(e))?;
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = m {
                fds.extend(rights);
            }
        }
        if got.flags.contains(ReturnFlags::CTRUNC) {
            return Err(UpgradeError::TooManyDescriptors {
                got: fds.len() + 1,
                max: MAX_FDS_PER_MESSAGE,
            });
        }
        if got.bytes == 0 && fds.is_empty() {
            return Err(UpgradeError::Closed);
        }
        if got.bytes > buf.len() || got.flags.contains(ReturnFlags::TRUNC) {
            return Err(UpgradeError::Truncated(format!(
                "a message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
                got.bytes
            )));
        }
        let (version, message) = wire::decode_versioned(&buf[..got.bytes])?;
        Ok((version, message, fds))
    }

    fn io_error(&self, e: Errno) -> UpgradeError {
        match e {
            Errno::AGAIN => UpgradeError::Timeout(self.timeout),
            Errno::PIPE | Errno::CONNRESET => UpgradeError::Closed,
            e => UpgradeError::Io(e.into()),
        }
    }
}

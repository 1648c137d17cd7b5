//! The peer driver of one protocol ([`Peers`]): which third-party servers and clients
//! speak it, how their reports name things, and the wire facts (fixtures, statuses)
//! the scenarios check. Everything protocol-specific is here, so that the scenarios
//! in `support.rs` are written once.

use super::{
    peers::{Node, Python, Report, RunningClient},
    wire,
};

/// A protocol under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// SOFARPC Bolt (v1 frames in the fixtures; the clients speak v1 and v2).
    Bolt,
    /// Dubbo with hessian2 bodies.
    Dubbo,
}

impl Proto {
    /// The name in config (`protocol: bolt`) and on the peers' command lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Bolt => "bolt",
            Self::Dubbo => "dubbo",
        }
    }

    /// A service name of this protocol's own, for listeners shared by protocols.
    pub(crate) fn echo_alias(self) -> &'static str {
        match self {
            Self::Bolt => "com.example.BoltEcho",
            Self::Dubbo => "com.example.DubboEcho",
        }
    }

    /// A captured frame (`tests/fixtures`): `request`, `oneway_request`, `heartbeat`,
    /// `heartbeat_reply`, `response` or `request_unknown_service`.
    pub(crate) fn fixture(self, what: &str) -> Vec<u8> {
        let name = match (self, what) {
            (Self::Bolt, "heartbeat_reply") => "bolt_v1_heartbeat_ack".to_owned(),
            (Self::Bolt, _) => format!("bolt_v1_{what}"),
            (Self::Dubbo, "heartbeat") => "dubbo_heartbeat_request".to_owned(),
            (Self::Dubbo, "heartbeat_reply") => "dubbo_heartbeat_response".to_owned(),
            (Self::Dubbo, _) => format!("dubbo_{what}"),
        };
        wire::fixture(&name)
    }

    /// The status of a response frame, read from its bytes (Bolt v1: the u16 at 10;
    /// Dubbo: byte 3).
    pub(crate) fn status(self, frame: &[u8]) -> u16 {
        match self {
            Self::Bolt => u16::from_be_bytes([frame[10], frame[11]]),
            Self::Dubbo => u16::from(frame[3]),
        }
    }

    /// Whether the frame is the answer to a heartbeat (Bolt v1: a response with
    /// command code 0; Dubbo: an event response).
    pub(crate) fn is_heartbeat_reply(self, frame: &[u8]) -> bool {
        match self {
            Self::Bolt => frame[0] == 1 && frame[1] == 0 && frame[2..4] == [0, 0],
            Self::Dubbo => frame[2] & 0xa0 == 0x20,
        }
    }

    /// Whether the frame is the response to a call (not a request, not an event).
    pub(crate) fn is_call_response(self, frame: &[u8]) -> bool {
        match self {
            Self::Bolt => frame[1] == 0 && frame[2..4] != [0, 0],
            Self::Dubbo => frame[2] & 0xa0 == 0,
        }
    }

    /// The payload of a response frame: a Bolt v1 frame's content (its last
    /// `contentLen` bytes), a Dubbo frame's body.
    pub(crate) fn payload(self, frame: &[u8]) -> &[u8] {
        match self {
            Self::Bolt => {
                let at = if frame[1] == 0 { 16 } else { 18 };
                let len = u32::from_be_bytes(frame[at..at + 4].try_into().unwrap()) as usize;
                &frame[frame.len() - len..]
            }
            Self::Dubbo => &frame[16..],
        }
    }

    /// Success (Bolt SUCCESS 0, Dubbo OK 20).
    pub(crate) fn ok(self) -> u16 {
        match self {
            Self::Bolt => 0,
            Self::Dubbo => 20,
        }
    }

    /// No route for the service (Bolt NO_PROCESSOR 6, Dubbo SERVICE_NOT_FOUND 60).
    pub(crate) fn no_route(self) -> u16 {
        match self {
            Self::Bolt => 6,
            Self::Dubbo => 60,
        }
    }

    /// The upstream could not be reached (Bolt CLIENT_SEND_ERROR 8, Dubbo
    /// SERVER_ERROR 80).
    pub(crate) fn unreachable(self) -> u16 {
        match self {
            Self::Bolt => 8,
            Self::Dubbo => 80,
        }
    }

    /// The route timed out (Bolt TIMEOUT 7, Dubbo SERVER_TIMEOUT 31).
    pub(crate) fn timed_out(self) -> u16 {
        match self {
            Self::Bolt => 7,
            Self::Dubbo => 31,
        }
    }
}

/// One third-party client program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// sofa-rpc-node's `RpcClient` (sofa-bolt-node, hessian2) over Bolt v1.
    SofaBolt,
    /// The same over Bolt v2, with or without the CRC32 of each frame.
    SofaBoltV2 {
        /// Whether frames carry the CRC32.
        crc: bool,
    },
    /// dubbo2.js's `DirectlyDubbo`, one socket.
    Dubbo2Js,
    /// PyPI dubbo-ssl-python: its own hessian2, Dubbo 2.0.2, one multiplexed
    /// connection, calls from threads.
    DubboPython,
}

/// What a client run does, phase by phase (zero: the phase is skipped).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phases {
    /// Echo calls, every answer checked to be the caller's own.
    pub(crate) calls: u32,
    /// Calls in flight at once.
    pub(crate) concurrency: u32,
    /// Heartbeats, every one answered.
    pub(crate) heartbeats: u32,
    /// One-way requests, then a call on the same connection.
    pub(crate) oneway: u32,
    /// A call to a service nobody serves, answered with an error, not a timeout.
    pub(crate) unknown: bool,
    /// Calls with 100 kB arguments, so frames span many reads.
    pub(crate) big: u32,
}

impl Client {
    /// The command line for `phases` and `extra` arguments; phases the program does
    /// not have (the Python client: one-way, big) are left out.
    fn args(self, phases: &Phases, extra: &[&str]) -> Vec<String> {
        let python = self == Self::DubboPython;
        let mut out = Vec::new();
        let mut num = |flag: &str, n: u32| {
            if n > 0 {
                out.extend([flag.to_owned(), n.to_string()]);
            }
        };
        num("--calls", phases.calls);
        num("--concurrency", phases.concurrency);
        num("--heartbeats", phases.heartbeats);
        if !python {
            num("--oneway", phases.oneway);
            num("--big", phases.big);
        }
        if phases.unknown {
            out.push("--unknown".to_owned());
        }
        if let Self::SofaBoltV2 { crc } = self {
            out.extend(["--bolt-version".to_owned(), "2".to_owned()]);
            if crc {
                out.push("--crc".to_owned());
            }
        }
        out.extend(extra.iter().map(|s| (*s).to_owned()));
        out
    }

    /// The heartbeats its report says were answered.
    pub(crate) fn heartbeats_answered(self, report: &Report) -> u64 {
        match self {
            Self::SofaBolt | Self::SofaBoltV2 { .. } => report.num("/heartbeats/acked"),
            Self::Dubbo2Js | Self::DubboPython => report.num("/heartbeats/answered"),
        }
    }

    /// Error text meaning the proxy failed a call it should have answered: the
    /// client timed out, or saw its connection closed. (The Python client fails its
    /// own run when an answer is late.)
    pub(crate) fn proxy_failure_markers(self) -> &'static [&'static str] {
        match self {
            Self::SofaBolt | Self::SofaBoltV2 { .. } => {
                &["RpcResponseTimeoutError", "RpcSocketCloseError"]
            }
            Self::Dubbo2Js => &["timeout"],
            Self::DubboPython => &[],
        }
    }

    /// Checks of the client's own: the Bolt version and CRC it spoke.
    pub(crate) fn check(self, report: &Report) {
        if let Self::SofaBoltV2 { crc } = self {
            assert_eq!(report.str("/protocol/type"), "bolt2", "{}", report.json);
            assert_eq!(report.json["protocol"]["crc"], crc, "{}", report.json);
        }
    }
}

/// The peer driver of one protocol: finds its third-party programs (saying
/// `SKIPPED:` loudly when they are missing) and runs them.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    /// The protocol.
    pub(crate) proto: Proto,
    test: String,
}

impl Peers {
    /// The driver of `proto` for the test named `test` (named in SKIPPED lines).
    pub(crate) fn new(proto: Proto, test: &str) -> Self {
        Self {
            proto,
            test: format!("{}::{test}", proto.name()),
        }
    }

    /// Node and the npm peers, or `None` after a `SKIPPED:` line.
    pub(crate) fn node(&self) -> Option<Node> {
        Node::find(&self.test)
    }

    /// The client the scenarios drive hardest (and the only one with the `--slow`,
    /// `--whoami`, `--connections` and `--service` phases).
    pub(crate) fn main_client(&self) -> Client {
        match self.proto {
            Proto::Bolt => Client::SofaBolt,
            Proto::Dubbo => Client::Dubbo2Js,
        }
    }

    /// The other clients of the protocol: other versions of its wire format, other
    /// implementations.
    pub(crate) fn other_clients(&self) -> Vec<Client> {
        match self.proto {
            Proto::Bolt => vec![
                Client::SofaBoltV2 { crc: true },
                Client::SofaBoltV2 { crc: false },
            ],
            Proto::Dubbo => vec![Client::DubboPython],
        }
    }

    /// Starts `client` against `target`; `None` (after a `SKIPPED:` line) when it is
    /// not installed.
    pub(crate) fn spawn(
        &self,
        node: &Node,
        client: Client,
        target: &str,
        phases: &Phases,
        extra: &[&str],
    ) -> Option<RunningClient> {
        let args = client.args(phases, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Some(match client {
            Client::SofaBolt | Client::SofaBoltV2 { .. } => {
                node.spawn_client("bolt_client.js", target, &args)
            }
            Client::Dubbo2Js => node.spawn_client("dubbo_client.js", target, &args),
            Client::DubboPython => {
                Python::find(&format!("{} ({client:?})", self.test))?.spawn_client(target, &args)
            }
        })
    }

    /// Runs `client` to its end; `None` when it is not installed.
    pub(crate) async fn run(
        &self,
        node: &Node,
        client: Client,
        target: &str,
        phases: &Phases,
        extra: &[&str],
    ) -> Option<Report> {
        Some(
            self.spawn(node, client, target, phases, extra)?
                .finish()
                .await,
        )
    }
}

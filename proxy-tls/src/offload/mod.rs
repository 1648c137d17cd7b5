//! Asynchronous private-key offload: the signing step of a TLS handshake leaves the
//! I/O threads for an offload engine ("card").
//!
//! # Design
//!
//! rustls signs synchronously: `SigningKey::choose_scheme` / `Signer::sign` return the
//! signature, no future. Rather than block a tokio worker on a sign call, the proxy
//! moves the whole *handshake step that signs* off the I/O thread. The termination
//! layer reads the ClientHello with [`rustls::server::Acceptor`] on the I/O task (no
//! private-key work), then hands `Accepted::into_connection` to an engine as an
//! [`OffloadJob`]. That call is where rustls processes the ClientHello flight: the
//! key exchange, and for a full handshake the CertificateVerify (TLS 1.3) or
//! ServerKeyExchange (TLS 1.2) signature. The engine runs the job on a thread of its
//! own and the I/O task awaits a oneshot for the resulting `ServerConnection`,
//! meanwhile serving its other connections. The rest of the handshake (the client's
//! Finished, client-certificate verification: public-key operations only) continues
//! on the I/O task. No tokio worker ever blocks on a private-key operation.
//!
//! # Plugging in a hardware engine (Intel QAT via qatlib)
//!
//! Implement [`OffloadEngine`]: `submit` queues the job for a thread the engine owns
//! (a QAT instance's submission thread), `outstanding` reports jobs queued or
//! running, `is_healthy` turns false when the device fails (the [`Dispatcher`] then
//! routes around it; a refused `submit` hands the job back so it is retried
//! elsewhere). To perform the signature itself on the card, the engine's thread runs
//! the job with a rustls `SigningKey` whose `Signer::sign` submits the request to
//! qatlib's asymmetric API (`cpaCyRsaDecrypt` for RSA, `cpaCyEcdsaSignRS` for ECDSA,
//! with a completion callback) and parks that engine thread — never an I/O thread —
//! until the card's callback fires; the engine polls its instance for completions. The
//! [`SoftwareEngine`] that ships signs in software on a dedicated thread pool per
//! engine, which gives the same isolation of the I/O threads on CPU alone: its
//! threads run at a low [`ThreadPriority`] (nice 19 by default), so on a core they
//! share with an I/O thread the I/O thread preempts a signature as soon as it has
//! work. The termination layer's `max_handshakes_in_progress` bounds, per worker, the
//! handshakes whose work (on the I/O thread or awaiting an engine) runs at once.

mod dispatcher;
mod engine;
mod metrics;
mod priority;
mod software;

pub use dispatcher::Dispatcher;
pub use engine::{Delivery, OffloadEngine, OffloadError, OffloadJob};
pub use metrics::{EngineStats, OffloadMetrics};
pub use software::{SoftwareEngine, SoftwareEngineBuilder};

pub use crate::config::ThreadPriority;

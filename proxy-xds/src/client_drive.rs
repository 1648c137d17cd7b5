//! The loop of one session, for every variant (state of the world, delta) and
//! transport (ADS, a stream per type): responses read one at a time (the stream's
//! HTTP/2 flow control holds the control plane back while the client does not
//! read) and validated on the blocking pool, accepted ones coalesced and made live
//! in one config swap at most per [`XdsConfig::apply_min_interval`], also on the
//! blocking pool and never two at a time, and each response answered once its
//! state is live. Nothing of it runs on the request path: the async part only
//! moves messages.
//!
//! [`XdsConfig::apply_min_interval`]: crate::XdsConfig::apply_min_interval

use std::{future::pending, sync::Arc};

use futures_util::future::BoxFuture;
use proxy_core::{config::Config, Server};
use tokio::{
    sync::mpsc,
    task::{JoinError, JoinHandle},
    time::Instant,
};
use tonic::Streaming;

use super::{
    coalesce::{Coalescer, Origin, Protocol, Step, Verdict},
    reload, XdsClient,
};
use crate::{state::AdsState, Refusal, SecretSink, StreamError};

/// The next response of a session and the stream of its type it came on
/// (streams per type); `Ok(None)` once the session ended.
pub(super) type Received<'a, R> = BoxFuture<'a, Result<Option<(Origin, R)>, StreamError>>;

/// The end of an apply: the config it made live (`None` when that config was
/// live already), or why it was refused.
type Applied = Result<Option<Arc<Config>>, Refusal>;

/// The transport of one session: where responses come from and requests go.
pub(super) trait Link<P: Protocol>: Send {
    /// The next response and the stream of its type it came on (streams per type);
    /// `Ok(None)` once the session ended.
    fn recv(&mut self) -> Received<'_, P::Resp>;
    /// Sends `req` on its type's stream, or on `origin`'s.
    fn send(&mut self, req: P::Req, origin: Origin) -> BoxFuture<'_, Result<(), StreamError>>;
}

/// One ADS stream: the requests' channel and the responses.
pub(super) struct AdsLink<P: Protocol> {
    pub(super) tx: mpsc::Sender<P::Req>,
    pub(super) inbound: Streaming<P::Resp>,
}

impl<P: Protocol> Link<P> for AdsLink<P> {
    fn recv(&mut self) -> Received<'_, P::Resp> {
        Box::pin(async move { Ok(self.inbound.message().await?.map(|r| (None, r))) })
    }

    fn send(&mut self, req: P::Req, _origin: Origin) -> BoxFuture<'_, Result<(), StreamError>> {
        Box::pin(async move { self.tx.send(req).await.map_err(|_| StreamError::Closed) })
    }
}

/// An apply under way: the accepted responses it covers, their state, and the
/// blocking task that makes it live (the config it applied, or `None` when the
/// config was already live).
struct Applying<P> {
    seq: u64,
    state: Arc<P>,
    task: JoinHandle<Applied>,
}

/// The end of the apply in `applying`, if any (never ready otherwise).
async fn finished<P>(applying: &mut Option<Applying<P>>) -> Result<Applied, JoinError> {
    match applying {
        Some(a) => (&mut a.task).await,
        None => pending().await,
    }
}

impl XdsClient {
    /// Runs one session over `link` until it ends, starting from `session` (the
    /// live state) and leaving the live state there. `got` is set once a response
    /// arrived.
    pub(super) async fn drive<P: Protocol, L: Link<P>>(
        &self,
        link: &mut L,
        session: &mut Arc<P>,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
        got: &mut bool,
    ) -> Result<(), StreamError> {
        let mut c = Coalescer::new(session.clone());
        let mut applying: Option<Applying<P>> = None;
        let mut next_apply = Instant::now();
        let mut replay = Vec::new();
        let result = loop {
            tokio::select! {
                biased;
                done = finished(&mut applying), if applying.is_some() => {
                    if let Some(a) = applying.take() {
                        replay = self.finish(&mut c, a.seq, a.state, done, last_applied);
                    }
                }
                () = tokio::time::sleep_until(next_apply), if applying.is_none() && c.dirty() => {
                    let (seq, state) = c.to_apply();
                    applying = Some(self.start(seq, state, server, last_applied.clone()));
                    next_apply = Instant::now() + self.config.apply_min_interval;
                }
                received = link.recv(), if c.has_room() => match received {
                    Err(e) => break Err(e),
                    Ok(None) => break Err(StreamError::Closed),
                    Ok(Some((origin, resp))) => {
                        *got = true;
                        self.status.send_modify(|s| s.received(P::type_url(&resp)));
                        self.validate(&mut c, resp, origin).await;
                    }
                },
            }
            if let Err(e) = self.answer(&mut c, link).await {
                break Err(e);
            }
            if !replay.is_empty() {
                let list = std::mem::take(&mut replay);
                if let Err(e) = self.replay(&mut c, list, link, server, last_applied).await {
                    break Err(e);
                }
                next_apply = Instant::now() + self.config.apply_min_interval;
            }
        };
        // The live state is the one to resume from: wait for an apply under way.
        if let Some(a) = applying.take() {
            let done = a.task.await;
            // A replay needs the stream: what it would replay goes unanswered, as
            // what is validated and not live does (the control plane sends again).
            let _ = self.finish(&mut c, a.seq, a.state, done, last_applied);
        }
        *session = c.into_applied();
        result
    }

    /// Validates `resp` (from `origin`) on the newest validated state, on the
    /// blocking pool, and records the outcome.
    async fn validate<P: Protocol>(&self, c: &mut Coalescer<P>, resp: P::Resp, origin: Origin) {
        let type_url = P::type_url(&resp).to_owned();
        let nonce = P::nonce(&resp).to_owned();
        let version = P::version(&resp).to_owned();
        let (state, base, sink) = (c.state(), self.base.clone(), self.secrets.clone());
        let validated = tokio::task::spawn_blocking(move || {
            let step = Step::checked(&*state, &resp, &base, |before, next| {
                secrets_to(sink.as_deref(), before.ads(), next.ads())
            });
            (step, resp)
        })
        .await;
        let (step, resp) = match validated {
            Ok((step, resp)) => (step, Some(resp)),
            Err(e) => {
                let refusal = Refusal::new("", "", format!("validating the response failed: {e}"));
                (Step::refused(&*c.state(), &type_url, &nonce, refusal), None)
            }
        };
        match &step {
            Step::Accepted(..) => {
                tracing::debug!(%type_url, %version, %nonce, "xds response accepted")
            }
            Step::Refused(_, _, refusal) => {
                tracing::warn!(%type_url, %version, %nonce, %refusal, "xds rejected");
            }
        }
        c.take(step, (&type_url, &nonce), resp, origin);
    }

    /// Starts making `state` (covering `seq` accepted responses) live on the
    /// blocking pool; `last` is the config live now.
    fn start<P: Protocol>(
        &self,
        seq: u64,
        state: Arc<P>,
        server: &Server,
        last: Option<Arc<Config>>,
    ) -> Applying<P> {
        let (server, base) = (server.clone(), self.base.clone());
        let next = state.clone();
        let task = tokio::task::spawn_blocking(move || {
            make_live(&server, &base, next.ads(), last.as_deref())
        });
        Applying { seq, state, task }
    }

    /// Validates and applies each of `list` on its own (a swap each, the interval
    /// aside), answering each: after the swap of their merged state was refused,
    /// only the response at fault is NACKed.
    async fn replay<P: Protocol, L: Link<P>>(
        &self,
        c: &mut Coalescer<P>,
        list: Vec<(P::Resp, Origin)>,
        link: &mut L,
        server: &Server,
        last_applied: &mut Option<Arc<Config>>,
    ) -> Result<(), StreamError> {
        tracing::warn!(
            responses = list.len(),
            "xds: the merged config was refused; applying its responses one at a time"
        );
        for (resp, origin) in list {
            self.validate(c, resp, origin).await;
            if c.dirty() {
                let (seq, state) = c.to_apply();
                let a = self.start(seq, state, server, last_applied.clone());
                let done = a.task.await;
                // One accepted response at most waits: nothing more to replay.
                let _ = self.finish(c, seq, a.state, done, last_applied);
            }
            self.answer(c, link).await?;
        }
        Ok(())
    }

    /// Records the end of an apply; returns the responses to replay one at a time
    /// when the merged state was refused ([`Coalescer::apply_failed`]).
    fn finish<P: Protocol>(
        &self,
        c: &mut Coalescer<P>,
        seq: u64,
        state: Arc<P>,
        done: Result<Applied, JoinError>,
        last_applied: &mut Option<Arc<Config>>,
    ) -> Vec<(P::Resp, Origin)> {
        let done = done.unwrap_or_else(|e| {
            Err(Refusal::new(
                "",
                "",
                format!("applying the config failed: {e}"),
            ))
        });
        match done {
            Ok(config) => {
                if let Some(config) = config {
                    *last_applied = Some(config);
                    self.status.send_modify(|s| s.applied += 1);
                }
                tracing::info!(responses = seq, "xds config live");
                c.applied_ok(seq, state);
                Vec::new()
            }
            Err(refusal) => {
                tracing::warn!(%refusal, "xds config refused; the running config stays");
                c.apply_failed(&refusal)
            }
        }
    }

    /// Sends the answers whose state is live, and publishes them.
    async fn answer<P: Protocol, L: Link<P>>(
        &self,
        c: &mut Coalescer<P>,
        link: &mut L,
    ) -> Result<(), StreamError> {
        let ready = c.ready();
        if ready.is_empty() {
            return Ok(());
        }
        let live = c.applied().clone();
        self.status.send_modify(|s| {
            for a in &ready {
                match &a.verdict {
                    Verdict::Accepted => s.accepted(live.ads(), &a.type_url, a.coalesced),
                    Verdict::Refused(refusal) => s.rejected(&a.type_url, refusal),
                }
            }
        });
        for a in ready {
            for req in a.reqs {
                link.send(req, a.origin).await?;
            }
        }
        Ok(())
    }
}

/// Gives `next`'s secrets to `sink` when they differ from `before`'s; the sink
/// refuses what does not load (a key that does not match its certificate).
fn secrets_to(
    sink: Option<&dyn SecretSink>,
    before: &AdsState,
    next: &AdsState,
) -> Result<(), Refusal> {
    if next.secrets == before.secrets {
        return Ok(());
    }
    let sink = sink
        .ok_or_else(|| Refusal::new("", "", "secrets are not accepted: no secret sink is set"))?;
    sink.apply(&next.secrets)
}

/// Makes `next`'s config live on `server`, unless it is `last`, the config live
/// already. Returns the config applied.
fn make_live(server: &Server, base: &Config, next: &AdsState, last: Option<&Config>) -> Applied {
    let config = next.config(base);
    if last == Some(&config) {
        return Ok(None);
    }
    reload(server, config.clone(), base)
        .map_err(|r| crate::resources::locate_filter(&next.listeners, r))?;
    Ok(Some(Arc::new(config)))
}

#[cfg(test)]
#[path = "client_drive_tests.rs"]
mod tests;

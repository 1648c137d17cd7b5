//! Coalescing of updates that come faster than they can be applied: every
//! response is validated on arrival, on top of the newest validated state (state of
//! the world: the latest response of a type supersedes the earlier ones; delta: the
//! updates and removals add up in arrival order), and NACKed at once when refused,
//! leaving that state as it was; what was accepted goes live in one config swap per
//! apply, and each response is answered once the state it led to is live. Pure: no
//! I/O and no clock, so every step is unit-tested; the client's stream loop
//! (`client_drive.rs`) decides when to apply.

use std::{collections::VecDeque, sync::Arc};

use proxy_core::config::Config;

use crate::Refusal;

#[path = "coalesce_protocol.rs"]
mod protocol;

pub(crate) use protocol::Protocol;

/// The answers that may wait for an apply; past this many the client reads no
/// further response (the stream's HTTP/2 flow control holds the control plane
/// back) until an apply sends them.
pub(crate) const MAX_WAITING_ANSWERS: usize = 256;

/// The most bytes of waiting responses kept to be replayed one at a time when
/// the swap of their merged state is refused ([`Coalescer::apply_failed`]).
pub(crate) const REPLAY_BUDGET_BYTES: usize = 16 << 20;

/// The stream of `type_url` a request goes back on, for streams per type (`None`
/// on ADS, or for a request of a type with a stream of its own).
pub(crate) type Origin = Option<&'static str>;

/// What became of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Accepted: live once the answer goes.
    Accepted,
    /// Refused.
    Refused(Refusal),
}

/// The outcome of validating one response on top of a state: computed off the
/// async workers, then given to [`Coalescer::take`].
pub(crate) enum Step<P: Protocol> {
    /// The response is accepted: the state after it and the requests that follow.
    Accepted(P, Vec<P::Req>),
    /// The response is refused: the state after the NACK (when it changed), the
    /// NACK, and why.
    Refused(Option<P>, P::Req, Refusal),
}

impl<P: Protocol> Step<P> {
    /// Validates `resp` on top of `state` (the work of one response).
    #[cfg(test)]
    pub(crate) fn of(state: &P, resp: &P::Resp, base: &Config) -> Self {
        Self::checked(state, resp, base, |_, _| Ok(()))
    }

    /// [`Step::of`], the candidate also passed to `check` (with the state before
    /// it), which may refuse it: the secrets go to the TLS layer, which checks
    /// them, as the response is validated.
    pub(crate) fn checked(
        state: &P,
        resp: &P::Resp,
        base: &Config,
        check: impl FnOnce(&P, &P) -> Result<(), Refusal>,
    ) -> Self {
        let (type_url, nonce) = (P::type_url(resp), P::nonce(resp));
        let next = state
            .prepare(resp, base)
            .and_then(|next| check(state, &next).map(|()| next));
        match next {
            Ok(next) => {
                let (next, reqs) = state.advance(next, type_url, nonce);
                Self::Accepted(next, reqs)
            }
            Err(refusal) => Self::refused(state, type_url, nonce, refusal),
        }
    }

    /// The refusal of the response of `type_url` with `nonce` by `state`.
    pub(crate) fn refused(state: &P, type_url: &str, nonce: &str, refusal: Refusal) -> Self {
        let (next, req) = state.nack(type_url, nonce, &refusal);
        Self::Refused(next, req, refusal)
    }
}

/// The answer to one response, sent once the state it depends on is live.
pub(crate) struct Answer<P: Protocol> {
    /// The number of accepted responses that must be live before it goes.
    pub(crate) after: u64,
    /// The response's type URL and nonce.
    pub(crate) type_url: String,
    pub(crate) nonce: String,
    /// Where its requests go back (streams per type).
    pub(crate) origin: Origin,
    /// The requests: subscription changes then the ACK, or the NACK.
    pub(crate) reqs: Vec<P::Req>,
    pub(crate) verdict: Verdict,
    /// For an accepted response: whether a later response of its type went live
    /// in the same apply (it was superseded before it was applied on its own).
    pub(crate) coalesced: bool,
    /// The response, kept (within [`REPLAY_BUDGET_BYTES`]) until it is answered,
    /// and its size.
    kept: Option<(P::Resp, usize)>,
}

/// The validated state, the state live on the server, and the answers waiting for
/// an apply.
pub(crate) struct Coalescer<P: Protocol> {
    /// The newest validated state: what the next apply makes live.
    state: Arc<P>,
    /// The state live on the server.
    applied: Arc<P>,
    /// Responses accepted so far (the version of `state`).
    seq: u64,
    /// Responses accepted and live (the version of `applied`).
    applied_seq: u64,
    /// Answers in arrival order.
    waiting: VecDeque<Answer<P>>,
    /// Bytes of the responses kept in `waiting`, and how many may be.
    kept_bytes: usize,
    budget: usize,
}

impl<P: Protocol> Coalescer<P> {
    /// Starts from `state`, live on the server.
    pub(crate) fn new(state: Arc<P>) -> Self {
        Self {
            applied: state.clone(),
            state,
            seq: 0,
            applied_seq: 0,
            waiting: VecDeque::new(),
            kept_bytes: 0,
            budget: REPLAY_BUDGET_BYTES,
        }
    }

    /// Keeps at most `bytes` of waiting responses for a replay.
    #[cfg(test)]
    pub(crate) fn with_replay_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// The newest validated state, to validate the next response on.
    pub(crate) fn state(&self) -> Arc<P> {
        self.state.clone()
    }

    /// The state live on the server.
    pub(crate) fn applied(&self) -> &Arc<P> {
        &self.applied
    }

    /// Whether accepted responses wait for an apply.
    pub(crate) fn dirty(&self) -> bool {
        self.seq > self.applied_seq
    }

    /// Whether another response may be read ([`MAX_WAITING_ANSWERS`]).
    pub(crate) fn has_room(&self) -> bool {
        self.waiting.len() < MAX_WAITING_ANSWERS
    }

    /// Records the outcome of the response of `type_url` with `nonce` (from
    /// `origin`), validated on [`Coalescer::state`]; keeps the response, `resp`,
    /// for a replay while the budget allows.
    pub(crate) fn take(
        &mut self,
        step: Step<P>,
        (type_url, nonce): (&str, &str),
        resp: Option<P::Resp>,
        origin: Origin,
    ) {
        let (type_url, nonce) = (type_url.to_owned(), nonce.to_owned());
        let kept = resp.and_then(|resp| {
            let size = P::size(&resp);
            (self.kept_bytes + size <= self.budget).then(|| {
                self.kept_bytes += size;
                (resp, size)
            })
        });
        let (reqs, verdict) = match step {
            Step::Accepted(next, reqs) => {
                self.state = Arc::new(next);
                self.seq += 1;
                (reqs, Verdict::Accepted)
            }
            Step::Refused(next, req, refusal) => {
                if let Some(next) = next {
                    self.state = Arc::new(next);
                }
                (vec![req], Verdict::Refused(refusal))
            }
        };
        self.waiting.push_back(Answer {
            after: self.seq,
            type_url,
            nonce,
            origin,
            reqs,
            verdict,
            coalesced: false,
            kept,
        });
    }

    /// What an apply is to make live now: the number of accepted responses it
    /// covers and their state.
    pub(crate) fn to_apply(&self) -> (u64, Arc<P>) {
        (self.seq, self.state.clone())
    }

    /// `state`, covering `seq` accepted responses, is live.
    pub(crate) fn applied_ok(&mut self, seq: u64, state: Arc<P>) {
        if seq > self.applied_seq {
            self.applied_seq = seq;
            self.applied = state;
        }
    }

    /// The config of the merged state was refused as a whole: the validated state
    /// goes back to the live one. When more than one accepted response waited and
    /// all the waiting ones were kept, they are returned, in arrival order, to be
    /// validated and applied again one at a time, so that only the one at fault is
    /// NACKed. Otherwise every response waiting for an apply (the ones it covered
    /// and the ones validated on top of it) is NACKed with `refusal`, a response
    /// refused on its own with its own refusal.
    pub(crate) fn apply_failed(&mut self, refusal: &Refusal) -> Vec<(P::Resp, Origin)> {
        let first = self
            .waiting
            .iter()
            .position(|a| a.after > self.applied_seq)
            .unwrap_or(self.waiting.len());
        let affected = self.waiting.range(first..);
        let accepted = affected
            .clone()
            .filter(|a| a.verdict == Verdict::Accepted)
            .count();
        let all_kept = affected.clone().all(|a| a.kept.is_some());
        self.seq = self.applied_seq;
        if accepted > 1 && all_kept {
            self.state = self.applied.clone();
            let replay: Vec<_> = self.waiting.drain(first..).collect();
            return replay
                .into_iter()
                .filter_map(|a| {
                    let (resp, size) = a.kept?;
                    self.kept_bytes -= size;
                    Some((resp, a.origin))
                })
                .collect();
        }
        let mut state = P::clone(&self.applied);
        for answer in self.waiting.range_mut(first..) {
            let why = match &answer.verdict {
                Verdict::Refused(own) => own.clone(),
                Verdict::Accepted => refusal.clone(),
            };
            let req = state.nack_in_place(&answer.type_url, &answer.nonce, &why);
            answer.after = self.applied_seq;
            answer.reqs = vec![req];
            answer.verdict = Verdict::Refused(why);
        }
        self.state = Arc::new(state);
        Vec::new()
    }

    /// The answers whose state is live, in arrival order, accepted ones marked
    /// [`Answer::coalesced`] when a later one of their type went live with them.
    pub(crate) fn ready(&mut self) -> Vec<Answer<P>> {
        let n = self
            .waiting
            .iter()
            .take_while(|a| a.after <= self.applied_seq)
            .count();
        let mut out: Vec<Answer<P>> = self.waiting.drain(..n).collect();
        for i in 0..out.len() {
            if let Some((_, size)) = out[i].kept.take() {
                self.kept_bytes -= size;
            }
            if out[i].verdict != Verdict::Accepted {
                continue;
            }
            let later = out[i + 1..]
                .iter()
                .any(|b| b.verdict == Verdict::Accepted && b.type_url == out[i].type_url);
            out[i].coalesced = later;
        }
        out
    }

    /// Ends the session: the live state, to open the next stream with (what was
    /// validated and not applied was not answered either; the control plane sends
    /// it again).
    pub(crate) fn into_applied(self) -> Arc<P> {
        self.applied
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;

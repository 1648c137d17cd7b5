//! What ring hash and Maglev share: a [`HashPolicy`] giving each request a key, a
//! lookup table built for each endpoint set off the request path, and the pick (the
//! key's owner in the table, the next healthy one when it is not, a weighted random
//! endpoint for a request without a key).
//!
//! [`crate::maglev::Maglev`] is `HashBalancer<MaglevTable>` and
//! [`crate::ring_hash::RingHash`] is `HashBalancer<Ring>`: each table type says how it
//! is built ([`HashTable::build`]) and how a hash finds its owner.

use std::{fmt, sync::Arc};

use http::request::Parts;
use proxy_core::{Balancer, Endpoint};

use crate::{
    backend::hash_ids,
    hash_policy::HashPolicy,
    metrics::{HashPick, HashPickCounters},
    table::{locate, TableCell},
    Backend,
};

/// A consistent-hash lookup structure over backend indices (a Maglev table, a ring).
pub trait HashTable: fmt::Debug + Send + Sync + Sized + 'static {
    /// The validated settings it is built with (Maglev: the table size; ring hash:
    /// the least and most points).
    type Params: fmt::Debug + Send + Sync + 'static;

    /// The table for backends given as (hash id, weight); `previous` is the table it
    /// replaces (to carry state over, e.g. the ring's scale).
    fn build(params: &Self::Params, backends: &[(String, u32)], previous: Option<&Self>) -> Self;

    /// The backend owning `hash`, healthy or not.
    fn owner(&self, hash: u64) -> Option<usize>;

    /// The owner if `usable`, else a bounded walk to a neighbour that is.
    fn owner_usable(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize>;
}

/// A hash balancer over table type `T`: see [`crate::maglev::Maglev`] and
/// [`crate::ring_hash::RingHash`] for how to build one.
#[derive(Debug)]
pub struct HashBalancer<T: HashTable> {
    policy: HashPolicy,
    params: T::Params,
    table: TableCell<T>,
    counters: Option<Arc<HashPickCounters>>,
}

impl<T: HashTable> HashBalancer<T> {
    /// A balancer from its validated parts.
    pub(crate) fn from_parts(policy: HashPolicy, params: T::Params) -> Self {
        Self {
            policy,
            params,
            table: TableCell::default(),
            counters: None,
        }
    }

    /// The hash policy.
    pub fn hash_policy(&self) -> &HashPolicy {
        &self.policy
    }

    /// Counts this balancer's picks in `counters` (see [`crate::metrics`]).
    #[must_use]
    pub fn with_counters(mut self, counters: Arc<HashPickCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Builds the table of a new endpoint set, off the request path (keeping what
    /// the table carries over from the previous one).
    pub fn prepare<B: Backend + Send + Sync + 'static>(&self, backends: &Arc<[B]>) {
        self.table.publish(backends, |b, prev| self.build(b, prev));
    }

    /// The current table (for inspection), if one was built.
    pub fn table(&self) -> Option<T>
    where
        T: Clone,
    {
        self.table.current().map(|b| b.table.clone())
    }

    /// The backend for the request's key, or a weighted random one without a key.
    pub fn pick_from<B: Backend>(&self, backends: &[B], req: &Parts) -> Option<usize> {
        let (pick, how) = match self.policy.hash(req) {
            Some(hash) => self.locate(backends, hash),
            None => match crate::random::pick_weighted(backends) {
                Some(i) => (Some(i), HashPick::NoKey),
                None => (None, HashPick::None),
            },
        };
        if let Some(c) = &self.counters {
            c.record(how);
        }
        pick
    }

    /// The healthy backend owning `hash`.
    pub fn pick_hash<B: Backend>(&self, backends: &[B], hash: u64) -> Option<usize> {
        self.locate(backends, hash).0
    }

    fn locate<B: Backend>(&self, backends: &[B], hash: u64) -> (Option<usize>, HashPick) {
        self.table.with(
            backends,
            |b, prev| self.build(b, prev),
            |table| locate(table, backends, hash),
        )
    }

    fn build<B: Backend>(&self, backends: &[B], previous: Option<&T>) -> T {
        let ids: Vec<(String, u32)> = hash_ids(backends)
            .into_iter()
            .zip(backends.iter().map(|b| b.weight()))
            .collect();
        T::build(&self.params, &ids, previous)
    }
}

impl<T: HashTable> Balancer for HashBalancer<T> {
    fn pick(&self, endpoints: &[Arc<Endpoint>], req: &Parts) -> Option<usize> {
        self.pick_from(endpoints, req)
    }

    fn endpoints_changed(&self, endpoints: &Arc<[Arc<Endpoint>]>) {
        self.prepare(endpoints);
    }

    fn needs_conn_info(&self) -> bool {
        self.policy.needs_conn_info()
    }
}

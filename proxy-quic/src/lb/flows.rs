//! The flow table: one entry per client 4-tuple, bounded in total and per source
//! IP, each entry removed after an idle timeout. Owned by the forwarder's receive
//! task alone, so no lock; the entries' activity clocks are atomics the reply tasks
//! also touch.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Milliseconds since the forwarder started: a flow's last activity.
#[derive(Debug, Default)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    pub(crate) fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(now_ms))
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.0.store(now_ms, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Why a new flow was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `max_flows` flows exist.
    Total,
    /// The source IP holds `max_flows_per_ip` flows.
    PerIp,
}

struct Entry<F> {
    flow: F,
    clock: Arc<Clock>,
}

/// Flows by client address.
pub(crate) struct FlowTable<F> {
    flows: HashMap<SocketAddr, Entry<F>>,
    per_ip: HashMap<IpAddr, u32>,
    max_flows: usize,
    max_per_ip: Option<u32>,
    idle_ms: u64,
}

impl<F> FlowTable<F> {
    pub(crate) fn new(max_flows: u32, max_per_ip: Option<u32>, idle_ms: u64) -> Self {
        Self {
            flows: HashMap::new(),
            per_ip: HashMap::new(),
            max_flows: usize::try_from(max_flows).unwrap_or(usize::MAX),
            max_per_ip,
            idle_ms,
        }
    }

    /// The flow of `client`, its activity clock touched.
    pub(crate) fn get(&self, client: SocketAddr, now_ms: u64) -> Option<&F> {
        let entry = self.flows.get(&client)?;
        entry.clock.touch(now_ms);
        Some(&entry.flow)
    }

    /// Whether a new flow of `client` fits.
    pub(crate) fn admit(&self, client: SocketAddr) -> Result<(), Full> {
        if self.flows.len() >= self.max_flows {
            return Err(Full::Total);
        }
        let held = self.per_ip.get(&client.ip()).copied().unwrap_or(0);
        match self.max_per_ip {
            Some(max) if held >= max => Err(Full::PerIp),
            _ => Ok(()),
        }
    }

    /// Adds the flow of `client` (after [`FlowTable::admit`]) with its clock.
    pub(crate) fn insert(&mut self, client: SocketAddr, flow: F, clock: Arc<Clock>) -> &F {
        *self.per_ip.entry(client.ip()).or_insert(0) += 1;
        let entry = self.flows.entry(client).insert_entry(Entry { flow, clock });
        &entry.into_mut().flow
    }

    /// Removes the flows idle past the timeout at `now_ms`; returns how many.
    pub(crate) fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.flows.len();
        let (idle_ms, per_ip) = (self.idle_ms, &mut self.per_ip);
        self.flows.retain(|client, entry| {
            let live = now_ms.saturating_sub(entry.clock.get()) < idle_ms;
            if !live {
                if let Some(n) = per_ip.get_mut(&client.ip()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        per_ip.remove(&client.ip());
                    }
                }
            }
            live
        });
        before - self.flows.len()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, ip], port))
    }

    #[test]
    fn limits_total_and_per_ip() {
        let mut t = FlowTable::new(3, Some(2), 1000);
        for port in [1, 2] {
            assert_eq!(t.admit(addr(1, port)), Ok(()));
            t.insert(addr(1, port), port, Arc::new(Clock::new(0)));
        }
        assert_eq!(t.admit(addr(1, 3)), Err(Full::PerIp));
        assert_eq!(t.admit(addr(2, 1)), Ok(()));
        t.insert(addr(2, 1), 9, Arc::new(Clock::new(0)));
        assert_eq!(t.admit(addr(3, 1)), Err(Full::Total));
        assert_eq!(t.get(addr(1, 2), 5), Some(&2));
    }

    #[test]
    fn idle_flows_expire_and_free_their_ip_share() {
        let mut t = FlowTable::new(10, Some(1), 100);
        t.insert(addr(1, 1), (), Arc::new(Clock::new(0)));
        t.insert(addr(2, 1), (), Arc::new(Clock::new(0)));
        assert!(t.get(addr(2, 1), 50).is_some());
        assert_eq!(t.sweep(120), 1, "the flow touched at 50 lives");
        assert_eq!(t.admit(addr(1, 7)), Ok(()));
        assert_eq!(t.admit(addr(2, 7)), Err(Full::PerIp));
        assert_eq!(t.sweep(151), 1);
        assert_eq!(t.len(), 0);
    }
}

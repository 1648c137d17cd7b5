//! Unwrapping a batch of received datagrams in quinn's buffers, in place: the
//! receive half of [`EncapsulatedSocket`](super::EncapsulatedSocket), pure so that
//! it is tested without sockets.
//!
//! A buffer may hold several datagrams of one source (`stride` apart: generic
//! receive offload). Each carries its own header; the ones naming the same client
//! as the first (with a header of the same length) are packed in place with the
//! new stride, the others are moved to spare buffers of the batch, and dropped
//! (counted) when there is none.

use std::io::IoSliceMut;
use std::net::SocketAddr;

use quinn::udp::RecvMeta;

use super::encap::EncapHeader;
use super::table::canonical;

/// What the unwrapping counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Unwrapped,
    BadHeader,
    Direct,
    DroppedDirect,
}

/// The receiving socket's rules and bookkeeping.
pub(crate) trait Receiver {
    /// Whether `from` (canonical) is a load balancer.
    fn is_lb(&self, from: SocketAddr) -> bool;
    /// Whether datagrams from others pass.
    fn direct_clients(&self) -> bool;
    /// `client` was heard of through `lb`.
    fn learned(&self, client: SocketAddr, lb: SocketAddr);
    /// Counts an event.
    fn count(&self, event: Event);
}

/// Unwraps `metas[..n]` (and their `bufs`) in place; returns how many entries
/// quinn should read (more than `n` when datagrams moved to spare buffers).
/// Dropped datagrams leave entries of length 0, which quinn skips.
pub(crate) fn unwrap_batch(
    bufs: &mut [IoSliceMut<'_>],
    metas: &mut [RecvMeta],
    n: usize,
    rx: &impl Receiver,
) -> usize {
    let n = n.min(bufs.len()).min(metas.len());
    let (bufs, spare_bufs) = bufs.split_at_mut(n);
    let (metas, spare_metas) = metas.split_at_mut(n);
    let mut spare = Spare {
        bufs: spare_bufs,
        metas: spare_metas,
        used: 0,
    };
    for (buf, meta) in bufs.iter_mut().zip(metas.iter_mut()) {
        let from = canonical(meta.addr);
        if !rx.is_lb(from) {
            if rx.direct_clients() {
                rx.count(Event::Direct);
            } else {
                meta.len = 0;
                rx.count(Event::DroppedDirect);
            }
            continue;
        }
        unwrap_one(buf, meta, from, rx, &mut spare);
    }
    n + spare.used
}

struct Spare<'a, 'b> {
    bufs: &'a mut [IoSliceMut<'b>],
    metas: &'a mut [RecvMeta],
    used: usize,
}

impl Spare<'_, '_> {
    /// Puts one datagram in the next spare buffer; false when none fits.
    fn put(&mut self, datagram: &[u8], meta: RecvMeta) -> bool {
        let (Some(buf), Some(slot)) = (self.bufs.get_mut(self.used), self.metas.get_mut(self.used))
        else {
            return false;
        };
        let Some(dest) = buf.get_mut(..datagram.len()) else {
            return false;
        };
        dest.copy_from_slice(datagram);
        *slot = RecvMeta {
            len: datagram.len(),
            stride: datagram.len(),
            ..meta
        };
        self.used += 1;
        true
    }
}

/// Unwraps the datagrams of one buffer from load balancer `lb`.
fn unwrap_one(
    buf: &mut [u8],
    meta: &mut RecvMeta,
    lb: SocketAddr,
    rx: &impl Receiver,
    spare: &mut Spare<'_, '_>,
) {
    let len = meta.len.min(buf.len());
    let stride = if meta.stride == 0 {
        len
    } else {
        meta.stride.min(len)
    };
    // The group packed in place: its client, local address, header length.
    let mut group: Option<(EncapHeader, usize)> = None;
    let mut write = 0;
    let mut read = 0;
    while read < len {
        let end = read.saturating_add(stride).min(len);
        let segment = buf.get(read..end).unwrap_or_default();
        let decoded = EncapHeader::decode(segment).map(|(h, p)| (h, segment.len() - p.len()));
        let segment_start = read;
        read = end;
        let Ok((header, header_len)) = decoded else {
            rx.count(Event::BadHeader);
            continue;
        };
        let client = canonical(header.client);
        rx.learned(client, lb);
        let payload = segment_start + header_len..end;
        let this = RecvMeta {
            addr: client,
            dst_ip: header.lb.map(|a| a.ip()).or(meta.dst_ip),
            ..*meta
        };
        match group {
            None => group = Some((header, header_len)),
            Some((h, l)) if h == header && l == header_len => {}
            Some(_) => {
                let moved = spare.put(buf.get(payload).unwrap_or_default(), this);
                rx.count(if moved {
                    Event::Unwrapped
                } else {
                    Event::BadHeader
                });
                continue;
            }
        }
        let payload_len = payload.len();
        buf.copy_within(payload, write);
        write += payload_len;
        rx.count(Event::Unwrapped);
    }
    match group {
        Some((header, header_len)) => {
            meta.addr = canonical(header.client);
            meta.dst_ip = header.lb.map(|a| a.ip()).or(meta.dst_ip);
            meta.len = write;
            meta.stride = (stride - header_len).min(write).max(1);
        }
        None => meta.len = 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Rx {
        lb: SocketAddr,
        direct: bool,
        learned: RefCell<Vec<SocketAddr>>,
        events: RefCell<Vec<Event>>,
    }

    impl Receiver for Rx {
        fn is_lb(&self, from: SocketAddr) -> bool {
            from == self.lb
        }
        fn direct_clients(&self) -> bool {
            self.direct
        }
        fn learned(&self, client: SocketAddr, _lb: SocketAddr) {
            self.learned.borrow_mut().push(client);
        }
        fn count(&self, event: Event) {
            self.events.borrow_mut().push(event);
        }
    }

    fn rx(direct: bool) -> Rx {
        Rx {
            lb: "10.0.0.1:443".parse().unwrap(),
            direct,
            learned: RefCell::default(),
            events: RefCell::default(),
        }
    }

    fn wrapped(client: &str, payload: &[u8]) -> Vec<u8> {
        let h = EncapHeader {
            client: client.parse().unwrap(),
            lb: Some("203.0.113.5:443".parse().unwrap()),
        };
        let mut v = vec![0; h.wire_len()];
        h.write(&mut v).unwrap();
        v.extend_from_slice(payload);
        v
    }

    fn meta(from: &str, len: usize, stride: usize) -> RecvMeta {
        RecvMeta {
            addr: from.parse().unwrap(),
            len,
            stride,
            ..RecvMeta::default()
        }
    }

    #[test]
    fn single_datagrams_unwrap_pass_or_drop() {
        let mut a = wrapped("192.0.2.1:1000", b"hello");
        a.resize(100, 0);
        let mut b = b"direct".to_vec();
        b.resize(100, 0);
        let mut c = vec![0xd1, 0, 0, 0, 0, 0x80]; // from the LB, bad flags
        c.resize(100, 0);
        let alen = wrapped("192.0.2.1:1000", b"hello").len();
        let mut metas = [
            meta("10.0.0.1:443", alen, alen),
            meta("192.0.2.9:7", 6, 6),
            meta("10.0.0.1:443", 6, 6),
        ];
        let r = rx(true);
        let n = {
            let mut bufs = [
                IoSliceMut::new(&mut a),
                IoSliceMut::new(&mut b),
                IoSliceMut::new(&mut c),
            ];
            unwrap_batch(&mut bufs, &mut metas, 3, &r)
        };
        assert_eq!(n, 3);
        assert_eq!(&a[..metas[0].len], b"hello");
        assert_eq!(
            (metas[0].addr, metas[0].stride),
            ("192.0.2.1:1000".parse().unwrap(), 5)
        );
        assert_eq!(metas[0].dst_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(metas[1].len, 6, "direct client passes");
        assert_eq!(metas[2].len, 0, "bad header dropped");
        assert_eq!(
            *r.events.borrow(),
            [Event::Unwrapped, Event::Direct, Event::BadHeader]
        );

        let r = rx(false);
        let mut metas = [meta("192.0.2.9:7", 6, 6)];
        let mut bufs = [IoSliceMut::new(&mut b)];
        assert_eq!(unwrap_batch(&mut bufs, &mut metas, 1, &r), 1);
        assert_eq!(metas[0].len, 0);
    }

    #[test]
    fn offloaded_batches_pack_one_client_and_move_the_others() {
        // Four segments: client X, Y (IPv6: a longer header), X, then X's short last one.
        let seg = |client: &str, fill: u8, len: usize| wrapped(client, &vec![fill; len]);
        let x = "192.0.2.1:1000";
        let y = "[2001:db8::7]:2000";
        let (hx, hy) = (seg(x, 0, 0).len(), seg(y, 0, 0).len());
        let stride = hx + 20;
        let mut batch = Vec::new();
        batch.extend(seg(x, 1, 20));
        let yseg = seg(y, 2, stride - hy);
        batch.extend(&yseg);
        batch.extend(seg(x, 3, 20));
        batch.extend(seg(x, 4, 4));
        let len = batch.len();
        batch.resize(400, 0);
        let mut spare = vec![0u8; 100];
        let mut metas = [meta("10.0.0.1:443", len, stride), RecvMeta::default()];
        let r = rx(true);
        let n = {
            let mut bufs = [IoSliceMut::new(&mut batch), IoSliceMut::new(&mut spare)];
            unwrap_batch(&mut bufs, &mut metas, 1, &r)
        };
        assert_eq!(n, 2);
        assert_eq!(metas[0].stride, 20);
        let mut want = vec![1u8; 20];
        want.extend([3; 20]);
        want.extend([4; 4]);
        assert_eq!(&batch[..metas[0].len], &want[..]);
        assert_eq!(metas[1].addr, y.parse().unwrap());
        assert_eq!(&spare[..metas[1].len], &yseg[hy..]);
        assert_eq!(r.learned.borrow().len(), 4);

        // No spare buffer: the other client's segment is dropped and counted.
        let mut metas = [meta("10.0.0.1:443", len, stride)];
        let r = rx(true);
        let mut batch2 = Vec::new();
        batch2.extend(seg(x, 1, 20));
        batch2.extend(&yseg);
        let len2 = batch2.len();
        metas[0].len = len2;
        let mut bufs = [IoSliceMut::new(&mut batch2)];
        assert_eq!(unwrap_batch(&mut bufs, &mut metas, 1, &r), 1);
        assert_eq!(metas[0].len, 20);
        assert!(r.events.borrow().contains(&Event::BadHeader));
    }

    proptest::proptest! {
        /// Whatever a load balancer's address delivers (random bytes, wrapped
        /// segments or not, any length and stride), unwrapping never panics, and
        /// every entry quinn will read lies in its buffer with a stride that lets
        /// quinn's loop end.
        #[test]
        fn any_batch_unwraps_without_panic(
            segments in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), 0u8..3, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
                1..6,
            ),
            stride in 0usize..80,
            extra_len in 0usize..8,
            spares in 0usize..3,
        ) {
            let clients = ["192.0.2.1:1", "192.0.2.2:2", "[2001:db8::3]:3"];
            let mut batch = Vec::new();
            for (wrap, client, bytes) in &segments {
                if *wrap {
                    batch.extend(wrapped(clients[usize::from(*client)], bytes));
                } else {
                    batch.extend(bytes);
                }
            }
            let len = batch.len() + extra_len;
            batch.resize(len.max(1) + 16, 0);
            let mut spare_bufs = vec![vec![0u8; 48]; spares];
            let mut metas = vec![meta("10.0.0.1:443", len, stride); 1 + spares];
            let r = rx(true);
            let n = {
                let mut bufs = vec![IoSliceMut::new(&mut batch)];
                bufs.extend(spare_bufs.iter_mut().map(|b| IoSliceMut::new(b)));
                let n = unwrap_batch(&mut bufs, &mut metas, 1, &r);
                for (m, b) in metas.iter().zip(bufs.iter()).take(n) {
                    proptest::prop_assert!(m.len <= b.len());
                    proptest::prop_assert!(m.len == 0 || m.stride >= 1);
                }
                n
            };
            proptest::prop_assert!((1..=1 + spares).contains(&n));
        }
    }
}

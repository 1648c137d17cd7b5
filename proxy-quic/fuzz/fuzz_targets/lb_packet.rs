//! The load balancer's packet path: `lb::parse` of a client datagram, then
//! `Routes::route` under a four-pass config with the length self-encoded. Neither
//! may panic, and a parsed header's connection ID lies inside the datagram.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proxy_quic::lb::{parse, Routes};
use proxy_quic::{CidFormat, CidKey, ConfigId, Decoder, ServerId};

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let key = CidKey::new([0x42; 16]);
        let mut decoder = Decoder::new();
        let id = ConfigId::new(0).expect("config id");
        decoder.insert(CidFormat::new(id, 2, 6, Some(&key), true).expect("format"));
        let servers = (1..=4u8).map(|i| {
            let sid = ServerId::new(&[0x0a, i]).expect("server id");
            (sid, SocketAddr::from(([10, 0, 0, i], 4433)))
        });
        Routes::new(decoder, servers).expect("routes")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = parse(data) else { return };
    let range = data.as_ptr_range();
    let dcid = header.dcid().as_ptr_range();
    assert!(range.start <= dcid.start && dcid.end <= range.end);
    let port = u16::from_be_bytes([data[0], data.get(1).copied().unwrap_or(0)]);
    let client = SocketAddr::from(([192, 0, 2, 1], port));
    let local = SocketAddr::from(([203, 0, 113, 1], 443));
    assert!(routes().route(&header, client, local).is_some());
});

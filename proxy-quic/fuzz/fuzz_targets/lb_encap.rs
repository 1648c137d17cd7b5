//! The encapsulation header of the load balancer's `encapsulated` return path:
//! `lb::EncapHeader::decode` of any bytes may not panic; what decodes writes back
//! to the same header bytes, and the datagram after it is the rest of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_quic::lb::{EncapHeader, MAX_ENCAP_HEADER};

fuzz_target!(|data: &[u8]| {
    let _ = proxy_quic::lb::is_encapsulated(data);
    let Ok((header, rest)) = EncapHeader::decode(data) else {
        return;
    };
    let n = data.len() - rest.len();
    assert_eq!(n, header.wire_len());
    assert!(n <= MAX_ENCAP_HEADER && !rest.is_empty());
    let mut again = [0u8; MAX_ENCAP_HEADER];
    let written = header.write(&mut again).expect("the header fits");
    assert_eq!(&again[..written], &data[..n]);
});

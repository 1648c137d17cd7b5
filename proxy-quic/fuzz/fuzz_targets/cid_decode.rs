//! `Decoder::decode` and `CidFormat::decode` of arbitrary bytes under a plaintext
//! (config 0), a single-pass (config 1) and a four-pass (config 2) format. No input
//! may panic; a routable answer's server ID is its format's length.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proxy_quic::{CidFormat, CidKey, ConfigId, Decoded, Decoder};

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        let key = CidKey::new([0x8f; 16]);
        let id = |n| ConfigId::new(n).expect("config id");
        let mut d = Decoder::new();
        d.insert(CidFormat::new(id(0), 3, 4, None, true).expect("plaintext"));
        d.insert(CidFormat::new(id(1), 3, 13, Some(&key), false).expect("single pass"));
        d.insert(CidFormat::new(id(2), 5, 7, Some(&key), true).expect("four pass"));
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let d = decoder();
    if let Decoded::Routable {
        config_id,
        server_id,
    } = d.decode(data)
    {
        let format = d.format(config_id).expect("a routable ID has a format");
        assert_eq!(server_id.len(), format.server_id_len());
    }
    for format in d.formats() {
        let _ = format.decode(data);
    }
});

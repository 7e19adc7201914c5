//! What reaches the WireGuard layer as text: public keys from Node
//! annotations (anyone who can write a Node), and a device's answers to
//! `get=1`. Neither may panic; a key that parses prints as it was written,
//! and a state that parses, fed back as the current state of a device that
//! should be just that, needs no change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_wireguard::keys::{PrivateKey, PublicKey};
use weft_wireguard::uapi::{self, Config};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(k) = PublicKey::parse(&text, "fuzz") {
        assert_eq!(k.to_base64(), text.trim());
    }
    if let Ok(state) = uapi::parse_get_answer(&text) {
        let want = Config {
            private_key: PrivateKey::from_bytes([7; 32]),
            listen_port: state.listen_port.unwrap_or(51820),
            peers: state.peers.iter().map(|p| p.peer.clone()).collect(),
        };
        if let Some(set) = uapi::changes(&state, &want) {
            // Only the interface lines may differ: the peers are the same.
            assert!(!set.contains("remove=true"), "{set}");
        }
    }
});

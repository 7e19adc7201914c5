//! What the flow log takes from the kernel: any netlink datagram on the
//! conntrack-events or NFLOG socket. Splitting and parsing never panic; a
//! parsed connection has a protocol, a logged packet came with a payload
//! whose headers were read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_linux::{flowlog, nftrace};

fuzz_target!(|data: &[u8]| {
    for m in nftrace::messages(data) {
        if let Ok(Some(c)) = flowlog::parse_conntrack(m) {
            let _ = c.to_string();
        }
        if let Ok(Some(p)) = flowlog::parse_nflog(m) {
            assert!(p.packet.src.is_ipv4() == p.packet.dst.is_ipv4());
        }
    }
    let _ = flowlog::packet_headers(data);
});

//! What the trace reader takes from the kernel: any netlink datagram on
//! the NFNLGRP_NFTRACE socket. Splitting and parsing never panic, and a
//! parsed event's packet view never reads out of its headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_linux::nftrace;

fuzz_target!(|data: &[u8]| {
    for m in nftrace::messages(data) {
        if let Ok(Some(e)) = nftrace::parse(m) {
            let _ = e.packet();
            assert!(!e.table.is_empty());
        }
    }
});

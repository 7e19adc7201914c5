//! What reaches the gateway from outside before any route is chosen: the
//! first bytes of a TLS connection (the ClientHello the SNI is read from),
//! a request's Host header and path, and the hostnames and durations users
//! write into routes. None may panic, and each has a rule that must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_gateway::host::{self, HostPattern};
use weft_gateway::{compile, table, tls};

fuzz_target!(|data: &[u8]| {
    // A ClientHello: any name it yields is printable ASCII without spaces.
    if let tls::SniPeek::Sni(Some(name)) = tls::peek_sni(data) {
        assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
    }
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    // Paths: normalizing twice changes nothing, and the result is absolute.
    if let Some(p) = table::normalize_path(first) {
        assert!(p.starts_with('/'));
        assert_eq!(table::normalize_path(&p).as_deref(), Some(p.as_str()), "{first:?}");
    }
    // Hostname patterns print as they parse.
    for parse in [HostPattern::gateway, HostPattern::ingress] {
        if let Ok(p) = parse(second) {
            if p != HostPattern::Any {
                assert_eq!(parse(&p.to_string()).as_ref(), Ok(&p), "{second:?}");
            }
            if let Some(h) = host::normalize(first) {
                let _ = p.matches(&h);
            }
        }
    }
    let _ = compile::parse_duration(first);
});

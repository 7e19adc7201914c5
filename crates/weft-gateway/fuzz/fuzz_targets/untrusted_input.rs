//! What reaches the gateway from outside before any route is chosen: a
//! connection's bytes (the request framing scanner), the first bytes of a
//! TLS connection (the ClientHello the SNI is read from),
//! a request's Host header and path, and the hostnames and durations users
//! write into routes. None may panic, and each has a rule that must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_gateway::host::{self, HostPattern};
use weft_gateway::framing::{Scan, Scanner};
use weft_gateway::{compile, table, tls};

fuzz_target!(|data: &[u8]| {
    // A ClientHello: any name it yields is printable ASCII without spaces.
    if let tls::SniPeek::Sni(Some(name)) = tls::peek_sni(data) {
        assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
    }
    // A connection's bytes: however they are cut into reads, the request
    // framing scanner refuses at the same byte (or at none), and that byte
    // is a head's final LF.
    let whole = match Scanner::new(64 * 1024, 100).scan(data) {
        Scan::Refuse { last, .. } => Some(last),
        Scan::Pass => None,
    };
    if let Some(last) = whole {
        assert_eq!(data[last], b'\n');
    }
    let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut s = Scanner::new(64 * 1024, 100);
    let split = match s.scan(&data[..cut]) {
        Scan::Refuse { last, .. } => Some(last),
        Scan::Pass => match s.scan(&data[cut..]) {
            Scan::Refuse { last, .. } => Some(cut + last),
            Scan::Pass => None,
        },
    };
    assert_eq!(whole, split);
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

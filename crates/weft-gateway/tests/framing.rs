//! Property: however a connection's bytes are cut into reads, the request
//! framing scanner refuses exactly the first request whose length is
//! ambiguous (RFC 9112 §6.3), at its head's last byte, and no other — the
//! well-framed requests before it, whatever their bodies hold, pass.

use proptest::prelude::*;
use weft_gateway::framing::{Scan, Scanner};

#[derive(Debug, Clone)]
enum Message {
    /// A request with a Content-Length body (which may look like a request).
    Length(Vec<u8>),
    /// A chunked body: chunk sizes, an extension, a trailer.
    Chunked(Vec<Vec<u8>>, bool),
    NoBody,
    /// Both framings, or two lengths.
    Ambiguous(u8),
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        body().prop_map(Message::Length),
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..4),
            any::<bool>()
        )
            .prop_map(|(c, t)| Message::Chunked(c, t)),
        Just(Message::NoBody),
        (0u8..4).prop_map(Message::Ambiguous),
    ]
}

/// The bytes of `m`, and where its head's last byte is when it is ambiguous.
fn encode(m: &Message, out: &mut Vec<u8>) -> Option<usize> {
    match m {
        Message::Length(b) => {
            out.extend_from_slice(
                format!(
                    "POST /l HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(b);
            None
        }
        Message::Chunked(chunks, trailer) => {
            out.extend_from_slice(
                b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            for (i, c) in chunks.iter().enumerate() {
                let ext = if i % 2 == 1 { ";name=value" } else { "" };
                out.extend_from_slice(format!("{:X}{ext}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            if *trailer {
                out.extend_from_slice(b"Trailer-Field: x\r\n");
            }
            out.extend_from_slice(b"\r\n");
            None
        }
        Message::NoBody => {
            out.extend_from_slice(b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n");
            None
        }
        Message::Ambiguous(k) => {
            let head: &[u8] = match k {
                0 => b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                1 => b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                2 => b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                _ => b"POST /a HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
            };
            out.extend_from_slice(head);
            let last = out.len() - 1;
            out.extend_from_slice(b"0\r\n\r\n");
            Some(last)
        }
    }
}

proptest! {
    #[test]
    fn the_first_ambiguous_request_is_refused_at_its_last_head_byte_however_the_reads_fall(
        messages in proptest::collection::vec(message(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut expected = None;
        for m in &messages {
            let at = encode(m, &mut stream);
            if expected.is_none() {
                expected = at;
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        points.dedup();
        let mut scanner = Scanner::new(64 * 1024, 100);
        let mut found = None;
        for w in points.windows(2) {
            if let Scan::Refuse { last, .. } = scanner.scan(&stream[w[0]..w[1]]) {
                found = Some(w[0] + last);
                break;
            }
        }
        prop_assert_eq!(found, expected);
    }
}

//! Fuzzes the SPDY/3.1 reader that `kubectl port-forward` traffic reaches on
//! a node (`weft_node::spdy`): any byte stream is read frame by frame as the
//! port-forward session does — never a panic — and the header block of every
//! SYN_STREAM / SYN_REPLY / HEADERS frame goes through one decompression
//! context for the whole connection (SPDY's shared zlib stream with its
//! dictionary). Every frame that parses encodes back to bytes that parse to
//! the same frame (the round-trip rule of the framing).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_node::spdy::{parse, Frame, Headers};

fuzz_target!(|data: &[u8]| {
    let Ok(mut headers) = Headers::new() else {
        return;
    };
    let mut rest = data;
    while let Ok(Some((frame, used))) = parse(rest) {
        assert!(used > 0 && used <= rest.len(), "a frame took {used} of {} bytes", rest.len());
        rest = &rest[used..];
        let again = frame.encode();
        match parse(&again) {
            Ok(Some((f, n))) => {
                assert_eq!(f, frame, "re-encoded frame reads back differently");
                assert_eq!(n, again.len());
            }
            other => panic!("an encoded frame does not parse: {other:?}"),
        }
        if let Frame::SynStream { block, .. } | Frame::SynReply { block, .. } | Frame::Headers { block, .. } = &frame {
            let _ = headers.decode(block);
        }
    }
});

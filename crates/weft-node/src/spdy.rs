//! SPDY/3.1 framing, as far as Kubernetes' streaming protocols use it
//! (draft-mbelshe-httpbis-spdy-00 for frames and header blocks, the
//! SPDY/3.1 draft for session flow control; the peer is moby/spdystream
//! under client-go's `tools/portforward`).
//!
//! Written here because no maintained Rust SPDY crate serves the server
//! side: the one published multiplexer (`spdy-mux`) only opens stream
//! pairs as a client. These are pure functions over byte slices, so the
//! session logic ([`crate::portforward_spdy`]) stays I/O-agnostic and the
//! framing is unit-tested on its own.
//!
//! - [`parse`] reads one frame from the front of a buffer (`Ok(None)`: not
//!   all there yet); a malformed frame is an [`Error`], never a panic.
//! - [`Frame::encode`] writes one.
//! - [`Headers`] (de)compresses name/value header blocks: zlib with the
//!   SPDY/3 dictionary (draft section 2.6.10.1), one context per direction
//!   for the whole connection, each block ending on a sync flush.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FIN on data and control frames: the sender will send no more on the
/// stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// The initial flow-control window of a stream and of a session.
pub const INITIAL_WINDOW: u32 = 64 * 1024;

/// The largest frame payload accepted (the length field allows 16 MiB;
/// spdystream never writes more than a few KiB of control data and splits
/// data at 32 KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The largest header block accepted once decompressed.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why bytes are not a SPDY/3 frame or a header block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("SPDY control frame has version {0}, expected 3")]
    Version(u16),
    #[error("SPDY frame payload of {0} bytes is larger than the {MAX_PAYLOAD} accepted")]
    TooLarge(usize),
    #[error("SPDY {kind} frame: payload of {len} bytes, expected {expected}")]
    Length {
        kind: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("SPDY header block: {0}")]
    HeaderBlock(String),
}

/// One SPDY/3.1 frame; header blocks stay compressed (see [`Headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        block: Vec<u8>,
    },
    SynReply {
        stream: u32,
        flags: u8,
        block: Vec<u8>,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// Entries are (flags, id, value).
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        block: Vec<u8>,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame type SPDY/3 leaves to extensions: skipped.
    Unknown {
        kind: u16,
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

const STREAM_MASK: u32 = 0x7fff_ffff;

/// Reads the frame at the front of `buf`: the frame and the bytes it took,
/// or `None` when the frame is not complete yet.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = usize::try_from(be32(buf, 4) & 0x00ff_ffff).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD {
        return Err(Error::TooLarge(len));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let p = &buf[8..8 + len];
    let used = 8 + len;
    if buf[0] & 0x80 == 0 {
        let stream = be32(buf, 0) & STREAM_MASK;
        let data = p.to_vec();
        return Ok(Some((
            Frame::Data {
                stream,
                flags,
                data,
            },
            used,
        )));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
    if version != VERSION {
        return Err(Error::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = |name: &'static str, min: usize, expected: &'static str| {
        if p.len() < min {
            Err(Error::Length {
                kind: name,
                len: p.len(),
                expected,
            })
        } else {
            Ok(())
        }
    };
    let exact = |name: &'static str, n: usize, expected: &'static str| {
        if p.len() != n {
            Err(Error::Length {
                kind: name,
                len: p.len(),
                expected,
            })
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        TYPE_SYN_STREAM => {
            need("SYN_STREAM", 10, "at least 10")?;
            Frame::SynStream {
                stream: be32(p, 0) & STREAM_MASK,
                associated: be32(p, 4) & STREAM_MASK,
                priority: p[8] >> 5,
                flags,
                block: p[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY => {
            need("SYN_REPLY", 4, "at least 4")?;
            Frame::SynReply {
                stream: be32(p, 0) & STREAM_MASK,
                flags,
                block: p[4..].to_vec(),
            }
        }
        TYPE_RST_STREAM => {
            exact("RST_STREAM", 8, "8")?;
            Frame::RstStream {
                stream: be32(p, 0) & STREAM_MASK,
                status: be32(p, 4),
            }
        }
        TYPE_SETTINGS => {
            need("SETTINGS", 4, "at least 4")?;
            let n = usize::try_from(be32(p, 0)).unwrap_or(usize::MAX);
            if n.checked_mul(8).and_then(|b| b.checked_add(4)) != Some(p.len()) {
                return Err(Error::Length {
                    kind: "SETTINGS",
                    len: p.len(),
                    expected: "4 + 8 per entry",
                });
            }
            let entries = (0..n)
                .map(|i| {
                    let at = 4 + 8 * i;
                    (p[at], be32(p, at) & 0x00ff_ffff, be32(p, at + 4))
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            exact("PING", 4, "4")?;
            Frame::Ping { id: be32(p, 0) }
        }
        TYPE_GOAWAY => {
            exact("GOAWAY", 8, "8")?;
            Frame::GoAway {
                last_good: be32(p, 0) & STREAM_MASK,
                status: be32(p, 4),
            }
        }
        TYPE_HEADERS => {
            need("HEADERS", 4, "at least 4")?;
            Frame::Headers {
                stream: be32(p, 0) & STREAM_MASK,
                flags,
                block: p[4..].to_vec(),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact("WINDOW_UPDATE", 8, "8")?;
            Frame::WindowUpdate {
                stream: be32(p, 0) & STREAM_MASK,
                delta: be32(p, 4) & STREAM_MASK,
            }
        }
        kind => Frame::Unknown { kind },
    };
    Ok(Some((frame, used)))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    v.extend_from_slice(&kind.to_be_bytes());
    v.push(flags);
    v.extend_from_slice(&length24(payload.len()));
    v.extend_from_slice(payload);
    v
}

fn length24(n: usize) -> [u8; 3] {
    let n = u32::try_from(n.min(0x00ff_ffff)).unwrap_or(0x00ff_ffff);
    let b = n.to_be_bytes();
    [b[1], b[2], b[3]]
}

impl Frame {
    /// The frame on the wire. Payloads longer than the 24-bit length field
    /// are the caller's to split (data is sent in chunks far smaller).
    pub fn encode(&self) -> Vec<u8> {
        let cat = |parts: &[&[u8]]| parts.concat();
        match self {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&(stream & STREAM_MASK).to_be_bytes());
                v.push(*flags);
                v.extend_from_slice(&length24(data.len()));
                v.extend_from_slice(data);
                v
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                block,
            } => control(
                TYPE_SYN_STREAM,
                *flags,
                &cat(&[
                    &(stream & STREAM_MASK).to_be_bytes(),
                    &(associated & STREAM_MASK).to_be_bytes(),
                    &[(priority & 0x07) << 5, 0],
                    block,
                ]),
            ),
            Frame::SynReply {
                stream,
                flags,
                block,
            } => control(
                TYPE_SYN_REPLY,
                *flags,
                &cat(&[&(stream & STREAM_MASK).to_be_bytes(), block]),
            ),
            Frame::RstStream { stream, status } => control(
                TYPE_RST_STREAM,
                0,
                &cat(&[&(stream & STREAM_MASK).to_be_bytes(), &status.to_be_bytes()]),
            ),
            Frame::Settings { flags, entries } => {
                let mut p = Vec::with_capacity(4 + 8 * entries.len());
                let n = u32::try_from(entries.len()).unwrap_or(u32::MAX);
                p.extend_from_slice(&n.to_be_bytes());
                for (f, id, value) in entries {
                    p.extend_from_slice(
                        &((u32::from(*f) << 24) | (id & 0x00ff_ffff)).to_be_bytes(),
                    );
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(TYPE_SETTINGS, *flags, &p)
            }
            Frame::Ping { id } => control(TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => control(
                TYPE_GOAWAY,
                0,
                &cat(&[
                    &(last_good & STREAM_MASK).to_be_bytes(),
                    &status.to_be_bytes(),
                ]),
            ),
            Frame::Headers {
                stream,
                flags,
                block,
            } => control(
                TYPE_HEADERS,
                *flags,
                &cat(&[&(stream & STREAM_MASK).to_be_bytes(), block]),
            ),
            Frame::WindowUpdate { stream, delta } => control(
                TYPE_WINDOW_UPDATE,
                0,
                &cat(&[
                    &(stream & STREAM_MASK).to_be_bytes(),
                    &(delta & STREAM_MASK).to_be_bytes(),
                ]),
            ),
            Frame::Unknown { kind } => control(*kind, 0, &[]),
        }
    }
}

/// The SPDY/3 header compression dictionary (draft section 2.6.10.1): the
/// common header names and values, each as a 32-bit length and the word,
/// then a run of plain text (status lines, dates, media types, charsets).
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TEXT: &[&str] = &[
        "100101201202205206300302303304305306307",
        "402405406407408409410411412413414415416417",
        "502504505",
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        let n = u32::try_from(w.len()).unwrap_or(0);
        d.extend_from_slice(&n.to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    for t in TEXT {
        d.extend_from_slice(t.as_bytes());
    }
    d
}

/// The header compression contexts of one connection: `out` for blocks
/// this side writes, `in` for blocks it reads.
pub struct Headers {
    deflate: Compress,
    inflate: Decompress,
    dict: Vec<u8>,
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Headers")
    }
}

/// A decoded header block: (name, value) pairs, in order. Values holding
/// several values separate them with NUL, as on the wire.
pub type Block = Vec<(String, String)>;

impl Headers {
    pub fn new() -> Result<Headers, Error> {
        let dict = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dict)
            .map_err(|e| Error::HeaderBlock(format!("set the compression dictionary: {e}")))?;
        Ok(Headers {
            deflate,
            inflate: Decompress::new(true),
            dict,
        })
    }

    /// Compresses a header block (names lowercased, as SPDY requires).
    pub fn encode(&mut self, block: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        let mut raw = Vec::new();
        let count = u32::try_from(block.len()).unwrap_or(u32::MAX);
        raw.extend_from_slice(&count.to_be_bytes());
        for (name, value) in block {
            for s in [name.to_ascii_lowercase().as_str(), value] {
                let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
                raw.extend_from_slice(&n.to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut taken = 0usize;
        loop {
            let before = self.deflate.total_in();
            let had = out.len();
            out.reserve(raw.len() - taken + 64);
            self.deflate
                .compress_vec(&raw[taken..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::HeaderBlock(format!("compress: {e}")))?;
            taken += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            if self.deflate.total_in() == before && out.len() == had && taken < raw.len() {
                return Err(Error::HeaderBlock("compression made no progress".into()));
            }
            // A sync flush is complete once all input is in and the output
            // was not filled to the brim.
            if taken >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Decompresses and parses a header block read from the peer.
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Block, Error> {
        let mut raw = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut taken = 0usize;
        loop {
            let before = self.inflate.total_in();
            let had = raw.len();
            if raw.capacity() - raw.len() < 1024 {
                raw.reserve(4096);
            }
            let r =
                self.inflate
                    .decompress_vec(&compressed[taken..], &mut raw, FlushDecompress::Sync);
            let progressed = self.inflate.total_in() != before || raw.len() != had;
            taken += usize::try_from(self.inflate.total_in() - before).unwrap_or(0);
            match r {
                Ok(Status::StreamEnd) => {
                    return Err(Error::HeaderBlock("the zlib stream ended".into()))
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) if !progressed => {
                        return Err(Error::HeaderBlock(
                            "the zlib stream asks for a dictionary again".into(),
                        ))
                    }
                    Some(_) => {
                        self.inflate.set_dictionary(&self.dict).map_err(|e| {
                            Error::HeaderBlock(format!(
                                "the peer's dictionary is not SPDY/3's: {e}"
                            ))
                        })?;
                        continue;
                    }
                    None => return Err(Error::HeaderBlock(format!("decompress: {e}"))),
                },
            }
            if raw.len() > MAX_HEADER_BLOCK {
                return Err(Error::HeaderBlock(format!(
                    "larger than {MAX_HEADER_BLOCK} bytes"
                )));
            }
            if taken >= compressed.len() && raw.len() < raw.capacity() {
                break;
            }
            if !progressed {
                return Err(Error::HeaderBlock("the zlib stream is cut short".into()));
            }
        }
        parse_block(&raw)
    }
}

/// Parses a decompressed block: a 32-bit count, then length-prefixed
/// names and values.
pub fn parse_block(raw: &[u8]) -> Result<Block, Error> {
    let count = take_count(raw)?;
    let mut at = 4usize;
    let mut field = |what: &str| -> Result<String, Error> {
        if raw.len() < at + 4 {
            return Err(Error::HeaderBlock(format!("{what} length cut short")));
        }
        let n = usize::try_from(be32(raw, at)).unwrap_or(usize::MAX);
        let start = at + 4;
        let end = start
            .checked_add(n)
            .filter(|e| *e <= raw.len())
            .ok_or_else(|| Error::HeaderBlock(format!("{what} of {n} bytes cut short")))?;
        at = end;
        String::from_utf8(raw[start..end].to_vec())
            .map_err(|_| Error::HeaderBlock(format!("{what} is not UTF-8")))
    };
    let mut block = Vec::new();
    for _ in 0..count {
        let name = field("header name")?;
        let value = field("header value")?;
        block.push((name, value));
    }
    Ok(block)
}

fn take_count(raw: &[u8]) -> Result<usize, Error> {
    if raw.len() < 4 {
        return Err(Error::HeaderBlock("no pair count".into()));
    }
    let n = usize::try_from(be32(raw, 0)).unwrap_or(usize::MAX);
    // Each pair takes at least 8 bytes: a count beyond that is a lie.
    if n > (raw.len() - 4) / 8 {
        return Err(Error::HeaderBlock(format!(
            "{n} pairs do not fit in {} bytes",
            raw.len()
        )));
    }
    Ok(n)
}

/// The value of header `name` in a block (first value if several).
pub fn header<'a>(block: &'a Block, name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let bytes = f.encode();
        let (back, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(back, f);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data {
            stream: 5,
            flags: FLAG_FIN,
            data: b"hello".to_vec(),
        });
        round_trip(Frame::SynStream {
            stream: 1,
            associated: 0,
            priority: 3,
            flags: FLAG_FIN,
            block: vec![1, 2, 3],
        });
        round_trip(Frame::SynReply {
            stream: 1,
            flags: 0,
            block: vec![9],
        });
        round_trip(Frame::RstStream {
            stream: 7,
            status: RST_CANCEL,
        });
        round_trip(Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, INITIAL_WINDOW), (1, 4, 100)],
        });
        round_trip(Frame::Ping { id: 3 });
        round_trip(Frame::GoAway {
            last_good: 9,
            status: 0,
        });
        round_trip(Frame::Headers {
            stream: 3,
            flags: 0,
            block: vec![],
        });
        round_trip(Frame::WindowUpdate {
            stream: 0,
            delta: 32768,
        });
    }

    #[test]
    fn an_incomplete_frame_waits_for_more_bytes() {
        let bytes = Frame::Ping { id: 1 }.encode();
        assert_eq!(parse(&bytes[..5]), Ok(None));
        assert_eq!(parse(&bytes[..bytes.len() - 1]), Ok(None));
    }

    #[test]
    fn two_frames_in_one_buffer_are_read_one_at_a_time() {
        let mut bytes = Frame::Ping { id: 1 }.encode();
        bytes.extend(Frame::Ping { id: 3 }.encode());
        let (a, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(a, Frame::Ping { id: 1 });
        let (b, _) = parse(&bytes[used..]).unwrap().unwrap();
        assert_eq!(b, Frame::Ping { id: 3 });
    }

    #[test]
    fn malformed_frames_are_errors() {
        // A PING with a 2-byte payload.
        let bad = [0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0];
        assert!(matches!(parse(&bad), Err(Error::Length { .. })));
        // Version 2.
        let v2 = [0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(parse(&v2), Err(Error::Version(2)));
        // A length beyond what is accepted.
        let huge = [0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
        assert!(matches!(parse(&huge), Err(Error::TooLarge(_))));
        // SETTINGS whose count does not match its payload.
        let settings = [0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 9];
        assert!(matches!(parse(&settings), Err(Error::Length { .. })));
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options"));
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_one_context_per_direction() {
        let mut a = Headers::new().unwrap();
        let mut b = Headers::new().unwrap();
        let first = a
            .encode(&[("streamType", "data"), ("port", "8080"), ("requestid", "0")])
            .unwrap();
        let second = a
            .encode(&[("streamtype", "error"), ("port", "8080")])
            .unwrap();
        let got = b.decode(&first).unwrap();
        assert_eq!(header(&got, "streamtype"), Some("data"));
        assert_eq!(header(&got, "port"), Some("8080"));
        assert_eq!(header(&got, "requestid"), Some("0"));
        let got = b.decode(&second).unwrap();
        assert_eq!(header(&got, "streamtype"), Some("error"));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_garbage_header_block_is_an_error() {
        let mut h = Headers::new().unwrap();
        assert!(h.decode(&[0x78, 0xbb, 0xff, 0xff, 0xff]).is_err());
        let mut h = Headers::new().unwrap();
        assert!(h.decode(&[0x01, 0x02, 0x03]).is_err());
    }

    #[test]
    fn a_block_whose_count_lies_is_an_error() {
        assert!(parse_block(&[0, 0, 0, 9, 0, 0, 0, 1, b'a']).is_err());
        assert!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a', 0, 0, 0, 0]).is_err());
        assert!(parse_block(&[0, 0]).is_err());
    }
}

//! HTTP/1 request framing, followed along a client connection's bytes so
//! that a request whose length is ambiguous is refused with 400 before
//! hyper reads it as anything.
//!
//! Why this is written here: hyper parses each request head itself and,
//! for one carrying both Transfer-Encoding and Content-Length, does one of
//! the two things RFC 9112 §6.3 allows — it drops the length, reads the
//! body as chunked and closes the connection after the answer. The request
//! handler never sees both fields, so it cannot do the other allowed thing,
//! the one a proxy in front of other servers should do (and the smuggling
//! checks of request-smuggling scanners expect): refuse with 400 and close.
//! Equal duplicate Content-Length fields are also accepted by hyper (RFC
//! 9110 §8.6 allows either); a proxy refuses them, as nginx does.
//!
//! [`Scanner`] follows the stream: each request head is parsed with
//! httparse (hyper's own head parser, so both agree where a head ends),
//! checked, and its body skipped by its framing — a Content-Length, or the
//! chunked coding (RFC 9112 §7.1: sizes, extensions, data, trailers) — to
//! the next head. Nothing is held back: the bytes go on to hyper as they
//! come, and only when a head is refused is its last byte replaced, which
//! makes the head invalid for hyper (400, connection closed) and nothing
//! after it is delivered. What the scanner cannot follow — HTTP/2's preface,
//! a CONNECT or Upgrade request (the bytes after it are another protocol), a
//! head httparse rejects, one larger than the limit — ends the following,
//! and hyper alone reads the rest, under its own limits and checks.

/// Why a request head is refused.
pub const BOTH_LENGTHS: &str = "a request must not carry both Transfer-Encoding and Content-Length";
pub const SEVERAL_LENGTHS: &str = "a request must carry exactly one Content-Length value";

/// What [`Scanner::scan`] found in the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// All of them may be delivered.
    Pass,
    /// The request whose head ends at `data[last]` (its last byte) is
    /// refused: deliver `data[..last]` and then a byte that makes the head
    /// invalid, and nothing more.
    Refuse { last: usize, why: &'static str },
}

/// Follows one connection's request stream.
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    /// The start of a head that has not fully arrived yet.
    partial: Vec<u8>,
    max_head: usize,
    max_headers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a request head.
    Head,
    /// In a body of this many more bytes.
    Body(u64),
    Chunked(Chunk),
    /// Not following any more (see the module doc).
    Off,
    /// A head was refused; nothing after it matters.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The chunk size line: its hex digits so far, then (`ext`) anything up
    /// to CR.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
}

/// 16 hex digits hold any u64.
const MAX_SIZE_DIGITS: u8 = 16;

impl Scanner {
    /// A scanner for a new connection; a head (request line and header
    /// fields) longer than `max_head` bytes, or with more than `max_headers`
    /// fields, is left to hyper's own limits.
    pub fn new(max_head: usize, max_headers: usize) -> Scanner {
        Scanner {
            state: State::Head,
            partial: Vec::new(),
            max_head,
            max_headers: max_headers.max(1),
        }
    }

    /// Whether the scanner still follows the stream.
    pub fn following(&self) -> bool {
        !matches!(self.state, State::Off | State::Refused)
    }

    /// Whether a head was refused.
    pub fn refused(&self) -> bool {
        self.state == State::Refused
    }

    /// Follows the next bytes of the stream.
    pub fn scan(&mut self, data: &[u8]) -> Scan {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Off | State::Refused => return Scan::Pass,
                State::Head => match self.head(data, at) {
                    HeadEnd::Partial => return Scan::Pass,
                    HeadEnd::Done(next) => at = next,
                    HeadEnd::Refuse(last, why) => {
                        self.state = State::Refused;
                        return Scan::Refuse { last, why };
                    }
                },
                State::Body(n) => {
                    let take = n.min((data.len() - at) as u64);
                    at += take as usize;
                    self.state = match n - take {
                        0 => State::Head,
                        left => State::Body(left),
                    };
                }
                State::Chunked(Chunk::Data(n)) => {
                    let take = n.min((data.len() - at) as u64);
                    at += take as usize;
                    self.state = State::Chunked(match n - take {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    });
                }
                State::Chunked(c) => {
                    self.state = chunk_step(c, data[at]);
                    at += 1;
                }
            }
        }
        Scan::Pass
    }

    /// A head that starts at `data[at]` (or earlier, in `partial`).
    fn head(&mut self, data: &[u8], at: usize) -> HeadEnd {
        let rest = &data[at..];
        let (parsed, before) = if self.partial.is_empty() {
            (self.parse(rest), 0)
        } else {
            let before = self.partial.len();
            let room = self.max_head.saturating_sub(before).max(1);
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(&rest[..rest.len().min(room)]);
            let parsed = self.parse(&joined);
            self.partial = joined;
            (parsed, before)
        };
        match parsed {
            Parsed::Partial => {
                if self.partial.is_empty() {
                    self.partial.extend_from_slice(rest);
                }
                if self.partial.len() >= self.max_head {
                    self.state = State::Off;
                    self.partial = Vec::new();
                }
                HeadEnd::Partial
            }
            Parsed::Invalid => {
                self.state = State::Off;
                self.partial = Vec::new();
                HeadEnd::Partial
            }
            Parsed::Head { len, .. } if len > self.max_head => {
                self.state = State::Off;
                self.partial = Vec::new();
                HeadEnd::Partial
            }
            Parsed::Head { len, next, refuse } => {
                self.partial = Vec::new();
                // `len` counts from the head's start, `before` of its bytes
                // came in earlier calls.
                let end = at + len.saturating_sub(before).max(1);
                if let Some(why) = refuse {
                    return HeadEnd::Refuse(end - 1, why);
                }
                self.state = next;
                HeadEnd::Done(end)
            }
        }
    }

    fn parse(&self, bytes: &[u8]) -> Parsed {
        let mut fields = vec![httparse::EMPTY_HEADER; self.max_headers];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Invalid,
        };
        let (mut lengths, mut length_fields, mut codings) = (Vec::new(), 0, Vec::new());
        let mut upgrade = req
            .method
            .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
        for f in req.headers.iter() {
            if f.name.eq_ignore_ascii_case("content-length") {
                length_fields += 1;
                lengths.extend(f.value.split(|b| *b == b','));
            } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
                codings.extend(f.value.split(|b| *b == b','));
            } else if f.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let refuse = if length_fields > 0 && !codings.is_empty() {
            Some(BOTH_LENGTHS)
        } else if length_fields > 1 || lengths.len() > 1 {
            Some(SEVERAL_LENGTHS)
        } else {
            None
        };
        let next = if upgrade {
            State::Off
        } else if let Some(last) = codings.last() {
            if trim(last).eq_ignore_ascii_case(b"chunked") {
                State::Chunked(Chunk::Size {
                    value: 0,
                    digits: 0,
                    ext: false,
                })
            } else {
                // hyper refuses it (the final coding must be chunked).
                State::Off
            }
        } else if let Some(n) = lengths.first() {
            match std::str::from_utf8(trim(n)).ok().and_then(digits) {
                Some(0) => State::Head,
                Some(n) => State::Body(n),
                None => State::Off,
            }
        } else {
            State::Head
        };
        Parsed::Head { len, next, refuse }
    }
}

enum Parsed {
    Partial,
    Invalid,
    Head {
        len: usize,
        next: State,
        refuse: Option<&'static str>,
    },
}

enum HeadEnd {
    Partial,
    /// The head ended; the body (or the next head) starts at this index.
    Done(usize),
    Refuse(usize, &'static str),
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

/// A Content-Length: digits only.
fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// One byte of chunked framing outside chunk data.
fn chunk_step(c: Chunk, b: u8) -> State {
    let next = match c {
        Chunk::Size { value, digits, ext } => match b {
            b'\r' if digits > 0 => Chunk::SizeLf { value },
            b'\n' | b'\r' => return State::Off,
            _ if ext => c,
            b';' | b' ' | b'\t' if digits > 0 => Chunk::Size {
                value,
                digits,
                ext: true,
            },
            _ => match (b as char).to_digit(16) {
                Some(d) if digits < MAX_SIZE_DIGITS => Chunk::Size {
                    value: value * 16 + u64::from(d),
                    digits: digits + 1,
                    ext: false,
                },
                _ => return State::Off,
            },
        },
        Chunk::SizeLf { value } => match (b, value) {
            (b'\n', 0) => Chunk::TrailerStart,
            (b'\n', n) => Chunk::Data(n),
            _ => return State::Off,
        },
        Chunk::Data(_) => unreachable!("chunk data is skipped whole"),
        Chunk::DataCr => match b {
            b'\r' => Chunk::DataLf,
            _ => return State::Off,
        },
        Chunk::DataLf => match b {
            b'\n' => Chunk::Size {
                value: 0,
                digits: 0,
                ext: false,
            },
            _ => return State::Off,
        },
        Chunk::TrailerStart => match b {
            b'\r' => Chunk::EndLf,
            b'\n' => return State::Off,
            _ => Chunk::TrailerLine,
        },
        Chunk::TrailerLine => match b {
            b'\r' => Chunk::TrailerLf,
            b'\n' => return State::Off,
            _ => c,
        },
        Chunk::TrailerLf => match b {
            b'\n' => Chunk::TrailerStart,
            _ => return State::Off,
        },
        Chunk::EndLf => match b {
            b'\n' => return State::Head,
            _ => return State::Off,
        },
    };
    State::Chunked(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> (Scan, Scanner) {
        let mut s = Scanner::new(64 * 1024, 100);
        (s.scan(input), s)
    }

    fn refused_at(input: &str) -> Option<usize> {
        match scan_all(input.as_bytes()).0 {
            Scan::Refuse { last, .. } => Some(last),
            Scan::Pass => None,
        }
    }

    #[test]
    fn a_request_with_both_lengths_is_refused_at_its_last_head_byte() {
        let head =
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!("{head}0\r\n\r\n");
        assert_eq!(
            scan_all(input.as_bytes()).0,
            Scan::Refuse {
                last: head.len() - 1,
                why: BOTH_LENGTHS
            }
        );
        // Either order of the fields.
        let other = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(refused_at(other), Some(other.len() - 1));
    }

    #[test]
    fn several_content_lengths_are_refused_even_when_equal() {
        for input in [
            "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
            "POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nhi",
        ] {
            assert!(refused_at(input).is_some(), "{input:?}");
        }
    }

    #[test]
    fn a_refused_request_behind_well_framed_ones_is_found() {
        let good = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
                    POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n\
                    GET /c HTTP/1.1\r\n\r\n";
        let bad = "POST /d HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!("{good}{bad}");
        assert_eq!(refused_at(&input), Some(input.len() - 1));
        // Without the bad one, the scanner is back at a head and still following.
        let (scan, s) = scan_all(good.as_bytes());
        assert_eq!(scan, Scan::Pass);
        assert_eq!(s.state, State::Head);
    }

    #[test]
    fn a_body_that_looks_like_a_request_is_not_read_as_one() {
        let body = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (scan, s) = scan_all(input.as_bytes());
        assert_eq!(scan, Scan::Pass);
        assert_eq!(s.state, State::Head);
    }

    #[test]
    fn http2_upgrades_and_connect_end_the_following() {
        for input in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        ] {
            let (scan, s) = scan_all(input.as_bytes());
            assert_eq!(scan, Scan::Pass, "{input:?}");
            assert!(!s.following(), "{input:?}");
        }
    }

    #[test]
    fn a_head_too_large_is_left_to_hyper() {
        let mut s = Scanner::new(64, 100);
        assert_eq!(s.scan(b"GET / HTTP/1.1\r\nX: "), Scan::Pass);
        assert!(s.following());
        assert_eq!(s.scan(&[b'a'; 100]), Scan::Pass);
        assert!(!s.following());
    }

    #[test]
    fn malformed_chunks_end_the_following() {
        for body in ["zz\r\n", "5\r\nhelloX", "\r\n", "11111111111111111\r\n"] {
            let input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let (scan, s) = scan_all(input.as_bytes());
            assert_eq!(scan, Scan::Pass);
            assert!(!s.following(), "{body:?}");
        }
    }
}

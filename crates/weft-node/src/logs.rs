//! Container logs in the CRI log format, and kubelet's reading of them.
//!
//! Each line of a container's log file is one entry, as container runtimes
//! write them for kubelet (the CRI logging spec, `pkg/kubelet/kuberuntime/
//! logs` upstream): `<RFC 3339 time, nanoseconds> <stdout|stderr> <F|P>
//! <content>`, where `F` closes a line (its newline is not stored) and `P`
//! is a piece of a longer one. The pod's helper process (`pod-init run
//! --cri-log`) writes them ([`encode`]); kubelet's `/containerLogs` and
//! `weft logs` read them back with [`render`] under the options of
//! `PodLogOptions` ([`LogOptions`]): `tailLines`, `sinceSeconds` /
//! `sinceTime`, `timestamps`, `limitBytes` (`follow` and `previous` are
//! the server's part). The previous instance of a container keeps its file
//! as `<container>.previous.log` ([`previous_log_path`]).

use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// Longest piece written as one entry before a line is split (`P`), as
/// containerd's 16 KiB buffer.
pub const MAX_ENTRY: usize = 16 * 1024;

/// Which output of the container an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: Timestamp,
    pub stream: Stream,
    /// `P`: the line goes on in the next entry of the stream.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Appends one entry (with its trailing newline) to `out`.
pub fn encode(time: Timestamp, stream: Stream, partial: bool, content: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(rfc3339_nano(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Go's RFC3339Nano in UTC: fractional seconds without trailing zeros.
pub fn rfc3339_nano(t: Timestamp) -> String {
    // jiff prints only the fractional digits needed, as Go does.
    t.to_string()
}

/// Parses one line (without its newline); `None` for a line that is not
/// an entry (skipped, as kubelet skips what it cannot parse).
pub fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Entry {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default(),
    })
}

/// Splits a container's output into entries as it arrives: whole lines as
/// `F`, pieces of lines longer than [`MAX_ENTRY`] as `P`.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds output read at `time`; complete entries are appended to `out`.
    pub fn feed(&mut self, time: Timestamp, data: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            encode(
                time,
                self.stream,
                false,
                &self.pending[start..start + nl],
                out,
            );
            start += nl + 1;
        }
        while self.pending.len() - start > MAX_ENTRY {
            encode(
                time,
                self.stream,
                true,
                &self.pending[start..start + MAX_ENTRY],
                out,
            );
            start += MAX_ENTRY;
        }
        self.pending.drain(..start);
    }

    /// The output ended: what is left of an unfinished line, as `P` (no
    /// newline is added that the container did not write).
    pub fn finish(&mut self, time: Timestamp, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            encode(time, self.stream, true, &self.pending, out);
            self.pending.clear();
        }
    }
}

/// What a reader asks of a log (`PodLogOptions`, kubelet's query names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Only the last N lines of the file.
    pub tail_lines: Option<u64>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the query of a `/containerLogs` request (the names of
    /// `PodLogOptions`); `now` resolves `sinceSeconds`.
    pub fn from_query(query: &str, now: Timestamp) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let truthy = |v: &str| v == "true" || v == "1";
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "follow" => o.follow = truthy(&v),
                "previous" => o.previous = truthy(&v),
                "timestamps" => o.timestamps = truthy(&v),
                "tailLines" => o.tail_lines = Some(non_negative("tailLines", &v)?),
                "limitBytes" => {
                    let n = non_negative("limitBytes", &v)?;
                    if n == 0 {
                        return Err("limitBytes: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n);
                }
                "sinceSeconds" => {
                    let n = non_negative("sinceSeconds", &v)?;
                    if n == 0 {
                        return Err("sinceSeconds: must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t: Timestamp = v
                        .parse()
                        .map_err(|e| format!("sinceTime: {v:?} is not an RFC 3339 time: {e}"))?;
                    since_time = Some(t);
                }
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into())
            }
            (Some(s), None) => {
                let secs = i64::try_from(s).unwrap_or(i64::MAX);
                Some(
                    now.checked_sub(jiff::SignedDuration::from_secs(secs))
                        .unwrap_or(Timestamp::MIN),
                )
            }
            (None, t) => t,
        };
        Ok(o)
    }
}

fn non_negative(name: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{name}: {v:?} is not a non-negative integer"))
}

/// The `key=value` pairs of a URL query, percent-decoded.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The byte offset where the last `n` lines of `data` start.
pub fn tail_start(data: &[u8], n: u64) -> usize {
    if n == 0 {
        return data.len();
    }
    // A final newline ends the last line; it does not start another.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Renders the whole lines of `data` as a reader sees them: the content
/// (with the newline of `F` entries), after `<time> ` with timestamps,
/// skipping entries before `since`. Returns how many bytes of `data` were
/// used (an unfinished last line is left for later).
pub fn render(data: &[u8], opts: &LogOptions, out: &mut Vec<u8>) -> usize {
    let mut used = 0;
    while let Some(nl) = data[used..].iter().position(|b| *b == b'\n') {
        let line = &data[used..used + nl];
        used += nl + 1;
        let Some(e) = parse_line(line) else { continue };
        if opts.since.is_some_and(|s| e.time < s) {
            continue;
        }
        if opts.timestamps {
            out.extend_from_slice(rfc3339_nano(e.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.content);
        if !e.partial {
            out.push(b'\n');
        }
    }
    used
}

/// The log file of the container's previous instance (kept on restart).
pub fn previous_log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.previous.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn entries_are_written_in_the_cri_format() {
        let mut out = Vec::new();
        encode(
            t("2024-01-02T03:04:05.123456789Z"),
            Stream::Stderr,
            false,
            b"oops",
            &mut out,
        );
        encode(
            t("2024-01-02T03:04:05.5Z"),
            Stream::Stdout,
            true,
            b"half",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-02T03:04:05.123456789Z stderr F oops\n2024-01-02T03:04:05.5Z stdout P half\n"
        );
    }

    #[test]
    fn a_written_entry_parses_back() {
        let mut out = Vec::new();
        encode(
            t("2024-01-02T03:04:05Z"),
            Stream::Stdout,
            false,
            b"a b  c",
            &mut out,
        );
        let e = parse_line(out.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(e.content, b"a b  c");
        assert_eq!(e.stream, Stream::Stdout);
        assert!(!e.partial);
        assert_eq!(e.time, t("2024-01-02T03:04:05Z"));
        assert_eq!(parse_line(b"not a log line"), None);
    }

    #[test]
    fn the_splitter_keeps_unfinished_lines_until_their_newline() {
        let now = t("2024-01-02T03:04:05Z");
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        s.feed(now, b"one\ntw", &mut out);
        s.feed(now, b"o\nthr", &mut out);
        s.finish(now, &mut out);
        let mut plain = Vec::new();
        render(&out, &LogOptions::default(), &mut plain);
        assert_eq!(plain, b"one\ntwo\nthr");
    }

    #[test]
    fn the_splitter_cuts_long_lines_into_partial_entries() {
        let now = t("2024-01-02T03:04:05Z");
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_ENTRY + 10];
        s.feed(now, &long, &mut out);
        s.feed(now, b"\n", &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 2);
        let mut plain = Vec::new();
        render(&out, &LogOptions::default(), &mut plain);
        assert_eq!(plain.len(), MAX_ENTRY + 11);
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let data = b"a\nb\nc\n";
        assert_eq!(&data[tail_start(data, 2)..], b"b\nc\n");
        assert_eq!(&data[tail_start(data, 9)..], data);
        assert_eq!(tail_start(data, 0), data.len());
    }

    #[test]
    fn timestamps_and_since_shape_the_output() {
        let mut data = Vec::new();
        encode(
            t("2024-01-01T00:00:00Z"),
            Stream::Stdout,
            false,
            b"old",
            &mut data,
        );
        encode(
            t("2024-01-01T00:01:00Z"),
            Stream::Stderr,
            false,
            b"new",
            &mut data,
        );
        let opts = LogOptions {
            timestamps: true,
            since: Some(t("2024-01-01T00:00:30Z")),
            ..LogOptions::default()
        };
        let mut out = Vec::new();
        assert_eq!(render(&data, &opts, &mut out), data.len());
        assert_eq!(out, b"2024-01-01T00:01:00Z new\n");
    }

    #[test]
    fn the_query_reads_pod_log_options() {
        let now = t("2024-01-01T00:10:00Z");
        let o = LogOptions::from_query(
            "follow=true&tailLines=3&timestamps=1&sinceSeconds=60&limitBytes=10",
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since, Some(t("2024-01-01T00:09:00Z")));
        let o = LogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A00Z", now).unwrap();
        assert_eq!(o.since, Some(t("2024-01-01T00:00:00Z")));
        assert!(LogOptions::from_query("tailLines=-1", now)
            .unwrap_err()
            .contains("tailLines"));
        assert!(
            LogOptions::from_query("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z", now).is_err()
        );
    }
}

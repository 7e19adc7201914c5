//! The framing of Kubernetes' WebSocket streaming protocols, as kubelet
//! speaks them (apimachinery `util/httpstream/wsstream`, kubelet's
//! `cri/streaming/remotecommand` and `portforward`; client-go's
//! `tools/remotecommand` is the other side): every binary message is one
//! channel byte followed by that channel's data.
//!
//! - exec and attach (`v4.channel.k8s.io`, `v5.channel.k8s.io`): 0 stdin,
//!   1 stdout, 2 stderr, 3 error (one `metav1.Status` when the command
//!   ends: Success, or NonZeroExitCode with an `ExitCode` cause), 4 resize
//!   (`{"Width":…,"Height":…}`); v5 adds 255 close (`[255, channel]`: the
//!   client will send no more on that channel, i.e. stdin reached EOF).
//! - port-forward (`v4.channel.k8s.io` with `?ports=`): channel 2i carries
//!   the data of the i-th port, 2i+1 its errors; the first message the
//!   server sends on each channel starts with the port (little-endian u16).

use serde_json::{json, Value};

/// The exec/attach protocols served, newest first.
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[CLOSE, channel]` closes that channel.
pub const CLOSE: u8 = 255;

/// The protocol to answer with: the first of the client's offers (in its
/// order, as wsstream picks) that is served here.
pub fn negotiate<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    served: &[&'static str],
) -> Option<&'static str> {
    offered
        .into_iter()
        .map(str::trim)
        .find_map(|o| served.iter().find(|s| **s == o).copied())
}

/// A message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    v
}

/// What a client sent on an exec/attach stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    /// v5: the client closed a channel (stdin: EOF).
    Close(u8),
    /// An empty message, or a channel a client has no business writing to.
    Ignored,
    /// A resize message that is not `{"Width":…,"Height":…}`.
    Invalid(String),
}

/// Reads one binary message of an exec/attach client under `protocol`.
pub fn parse_incoming<'a>(protocol: &str, msg: &'a [u8]) -> Incoming<'a> {
    let Some((&channel, data)) = msg.split_first() else {
        return Incoming::Ignored;
    };
    match channel {
        STDIN => Incoming::Stdin(data),
        RESIZE => {
            #[derive(serde::Deserialize)]
            struct Size {
                #[serde(rename = "Width")]
                width: u16,
                #[serde(rename = "Height")]
                height: u16,
            }
            match serde_json::from_slice::<Size>(data) {
                Ok(s) => Incoming::Resize {
                    width: s.width,
                    height: s.height,
                },
                Err(e) => Incoming::Invalid(format!("resize message: {e}")),
            }
        }
        CLOSE if protocol == V5 => match data.first() {
            Some(c) => Incoming::Close(*c),
            None => Incoming::Invalid("close message without a channel".into()),
        },
        _ => Incoming::Ignored,
    }
}

/// How an exec'd command ended, for the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// It could not run at all.
    Failed(String),
}

/// The `metav1.Status` kubelet writes on the error channel (v4 and v5).
pub fn status(outcome: &Outcome, argv: &[String]) -> Value {
    match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {}, exit code {code}",
                go_list(argv)
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {msg}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    }
}

/// `[a b c]`, as Go prints a string slice.
fn go_list(argv: &[String]) -> String {
    format!("[{}]", argv.join(" "))
}

/// The port prefix of the first message on a port-forward channel.
pub fn port_prefix(port: u16) -> [u8; 2] {
    port.to_le_bytes()
}

/// The ports of a port-forward request (`ports=80,8080` or repeated).
pub fn parse_ports(values: &[String]) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        match v.parse::<u16>() {
            Ok(p) if p > 0 => out.push(p),
            _ => return Err(format!("ports: {v:?} is not a valid port (1-65535)")),
        }
    }
    if out.is_empty() {
        return Err("ports: at least one port is required (query parameter \"ports\")".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offered_served_protocol_is_chosen() {
        assert_eq!(
            negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], &[V5, V4]),
            Some(V5)
        );
        assert_eq!(
            negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"], &[V5, V4]),
            Some(V4)
        );
        assert_eq!(negotiate(["SPDY/3.1+portforward.k8s.io"], &[V5, V4]), None);
    }

    #[test]
    fn messages_are_a_channel_byte_then_data() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(parse_incoming(V4, &[0, b'x']), Incoming::Stdin(b"x"));
        assert_eq!(parse_incoming(V4, &[]), Incoming::Ignored);
        assert_eq!(parse_incoming(V4, &[STDOUT, b'x']), Incoming::Ignored);
    }

    #[test]
    fn a_resize_message_carries_width_and_height() {
        let mut msg = vec![RESIZE];
        msg.extend_from_slice(br#"{"Width":120,"Height":40}"#);
        assert_eq!(
            parse_incoming(V4, &msg),
            Incoming::Resize {
                width: 120,
                height: 40
            }
        );
        assert!(matches!(
            parse_incoming(V4, &[RESIZE, b'{']),
            Incoming::Invalid(_)
        ));
    }

    #[test]
    fn only_v5_closes_a_channel() {
        assert_eq!(parse_incoming(V5, &[CLOSE, STDIN]), Incoming::Close(STDIN));
        assert_eq!(parse_incoming(V4, &[CLOSE, STDIN]), Incoming::Ignored);
    }

    #[test]
    fn a_non_zero_exit_is_a_status_with_an_exit_code_cause() {
        let s = status(
            &Outcome::Exited(3),
            &["sh".into(), "-c".into(), "exit 3".into()],
        );
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(status(&Outcome::Exited(0), &[])["status"], "Success");
    }

    #[test]
    fn ports_are_listed_and_checked() {
        assert_eq!(parse_ports(&["80,8080".into()]).unwrap(), vec![80, 8080]);
        assert!(parse_ports(&["0".into()]).is_err());
        assert!(parse_ports(&[]).is_err());
        assert_eq!(port_prefix(8080), [0x90, 0x1f]);
    }
}

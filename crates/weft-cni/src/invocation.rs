//! The `CNI_*` environment of one plugin call, read and validated.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spec::{code, CniError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// One plugin invocation as the runtime described it in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// Path of the container's network namespace (ADD and CHECK need it; DEL may omit it).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

/// Reads the invocation from a variable lookup (the process environment in
/// `main`, a map in tests).
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
    let raw = get("CNI_COMMAND").ok_or_else(|| missing("CNI_COMMAND"))?;
    let command = match raw.as_str() {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "VERSION" => Command::Version,
        "STATUS" => Command::Status,
        "GC" => Command::Gc,
        other => {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_COMMAND={other:?} is not a CNI verb"),
            )
            .with_details("expected one of ADD, DEL, CHECK, VERSION, STATUS, GC"))
        }
    };
    let path = get("CNI_PATH")
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let mut inv = Invocation {
        command,
        container_id: String::new(),
        netns: None,
        ifname: String::new(),
        args: BTreeMap::new(),
        path,
    };
    if !matches!(command, Command::Add | Command::Del | Command::Check) {
        return Ok(inv);
    }

    let id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
    validate_container_id(&id)?;
    inv.container_id = id;

    let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
    validate_ifname(&ifname)?;
    inv.ifname = ifname;

    match get("CNI_NETNS").filter(|s| !s.is_empty()) {
        Some(ns) => inv.netns = Some(PathBuf::from(ns)),
        None if command != Command::Del => return Err(missing("CNI_NETNS")),
        None => {}
    }

    if let Some(args) = get("CNI_ARGS").filter(|s| !s.is_empty()) {
        inv.args = parse_args(&args)?;
    }
    Ok(inv)
}

fn missing(var: &str) -> CniError {
    CniError::new(code::INVALID_ENV, format!("{var} is not set"))
        .with_details("the runtime must set it for this verb (CNI SPEC.md, \"Parameters\")")
}

/// What SPEC.md ("Parameters") requires of `CNI_CONTAINERID`.
pub const CONTAINER_ID_RULE: &str = "a container ID matching ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$";

/// What SPEC.md ("Parameters") requires of `CNI_IFNAME`.
pub const IFNAME_RULE: &str =
    "an interface name of 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or whitespace";

/// Container IDs: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (SPEC.md). They end up in
/// file contents, interface-name hashes and nft comments, so nothing else
/// may pass.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let bad = id.char_indices().find(|&(i, c)| {
        let ok = c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '_' | '.' | '-'));
        !ok
    });
    let why = match bad {
        _ if id.is_empty() => "it is empty".to_string(),
        Some((0, c)) => format!("it starts with {c:?}"),
        Some((i, c)) => format!("{c:?} at byte {i} is not allowed"),
        None => return Ok(()),
    };
    Err(CniError::new(
        code::INVALID_ENV,
        format!("CNI_CONTAINERID={id:?}: expected {CONTAINER_ID_RULE}, but {why}"),
    ))
}

/// Linux interface names (SPEC.md, and the kernel's `dev_valid_name`):
/// 1–15 bytes (IFNAMSIZ - 1), not `.`/`..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > 15 {
        format!("it is {} bytes long", name.len())
    } else if name == "." || name == ".." {
        format!("it is {name:?}")
    } else if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        format!("it contains {c:?}")
    } else {
        return Ok(());
    };
    Err(CniError::new(
        code::INVALID_ENV,
        format!("CNI_IFNAME={name:?}: expected {IFNAME_RULE}, but {why}"),
    ))
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
pub fn parse_args(raw: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            ));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn add_needs_id_ifname_netns() {
        let inv = from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]))
        .unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.args["K8S_POD_NAME"], "web-0");
        assert_eq!(inv.path.len(), 2);

        let e = from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"));
    }

    #[test]
    fn del_may_omit_netns() {
        let inv = from_env(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(inv.netns, None);
    }

    #[test]
    fn version_needs_nothing_else() {
        assert_eq!(
            from_env(env(&[("CNI_COMMAND", "VERSION")]))
                .unwrap()
                .command,
            Command::Version
        );
        assert_eq!(
            from_env(env(&[("CNI_COMMAND", "GC")])).unwrap().command,
            Command::Gc
        );
    }

    fn add_with(id: &str, ifname: &str) -> Result<Invocation, CniError> {
        from_env(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", ifname),
            ("CNI_NETNS", "/var/run/netns/x"),
        ]))
    }

    #[test]
    fn container_ids_outside_the_spec_pattern_are_refused() {
        for (bad, why) in [
            ("", "it is empty"),
            ("-abc", "starts with '-'"),
            ("_abc", "starts with '_'"),
            (".abc", "starts with '.'"),
            ("a b", "' ' at byte 1"),
            ("a/b", "'/' at byte 1"),
            ("a\"b", "'\"' at byte 1"),
            ("ab\n", "'\\n' at byte 2"),
            ("abc:1", "':' at byte 3"),
            ("caf\u{e9}", "'\u{e9}' at byte 3"),
        ] {
            let e = add_with(bad, "eth0").unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad:?}");
            assert!(e.msg.starts_with("CNI_CONTAINERID="), "{}", e.msg);
            assert!(e.msg.contains(CONTAINER_ID_RULE), "{}", e.msg);
            assert!(e.msg.contains(why), "{bad:?}: {} lacks {why:?}", e.msg);
        }
    }

    #[test]
    fn container_ids_matching_the_spec_pattern_are_accepted() {
        let hex64 = "0123456789abcdef".repeat(4);
        for good in ["a", "9", "A_b.c-1", "pod.-_x", hex64.as_str()] {
            assert_eq!(add_with(good, "eth0").unwrap().container_id, good);
        }
    }

    #[test]
    fn ifnames_the_kernel_would_refuse_are_refused() {
        for (bad, why) in [
            ("", "it is empty"),
            (".", "it is \".\""),
            ("..", "it is \"..\""),
            ("eth0/1", "contains '/'"),
            ("eth:0", "contains ':'"),
            ("eth 0", "contains ' '"),
            ("eth\t0", "contains '\\t'"),
            ("eth\n", "contains '\\n'"),
            ("this-name-is-16b", "16 bytes long"),
            (
                "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
                "16 bytes long",
            ),
        ] {
            let e = add_with("abc", bad).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{bad:?}");
            assert!(e.msg.starts_with("CNI_IFNAME="), "{}", e.msg);
            assert!(e.msg.contains(IFNAME_RULE), "{}", e.msg);
            assert!(e.msg.contains(why), "{bad:?}: {} lacks {why:?}", e.msg);
        }
    }

    #[test]
    fn ifnames_up_to_fifteen_bytes_are_accepted() {
        for good in [
            "eth0",
            "net1",
            "a",
            "x.y",
            "...",
            "fifteen-bytes-x",
            "e\u{e9}",
        ] {
            assert_eq!(add_with("abc", good).unwrap().ifname, good);
        }
    }

    #[test]
    fn del_and_check_validate_too() {
        for verb in ["DEL", "CHECK"] {
            let e = from_env(env(&[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", "a b"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/var/run/netns/x"),
            ]))
            .unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{verb}");
            let e = from_env(env(&[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "a:b"),
                ("CNI_NETNS", "/var/run/netns/x"),
            ]))
            .unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{verb}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let e = from_env(env(&[("CNI_COMMAND", "ATTACH")])).unwrap_err();
        assert!(e.msg.contains("ATTACH"));
        assert!(from_env(env(&[])).unwrap_err().msg.contains("CNI_COMMAND"));
        for bad in ["", "-abc", "a b", "a/b"] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().code,
                code::INVALID_ENV,
                "{bad}"
            );
        }
        for bad in ["", ".", "..", "a/b", "eth:0", "this-name-is-too-long"] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(parse_args("A=1;B").unwrap_err().msg.contains("\"B\""));
    }
}

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

/// Container IDs are alphanumeric plus `_`, `.`, `-`, starting alphanumeric (SPEC.md).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_CONTAINERID={id:?} is not a valid container ID"),
        )
        .with_details("expected letters, digits, '_', '.', '-', starting with a letter or digit"))
    }
}

/// Linux interface names: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 15 {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("it contains '/', ':' or whitespace")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_IFNAME={name:?} is not a valid interface name: {why}"),
        )),
    }
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

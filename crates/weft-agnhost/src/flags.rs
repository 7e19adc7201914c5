//! A small parser with the semantics of Go's pflag (as used by agnhost's cobra
//! commands): `--flag=value`, `--flag value` (non-boolean flags), `--bool`,
//! `--bool=false`, interspersed positional arguments and `--`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gotime::parse_duration;

/// A flag's typed value (also its default).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
    Dur(Duration),
}

/// One accepted flag.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub default: Value,
    pub help: &'static str,
}

impl Spec {
    pub fn new(name: &'static str, default: Value, help: &'static str) -> Spec {
        Spec {
            name,
            default,
            help,
        }
    }
}

/// Why the command line was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlagError {
    #[error("unknown flag: --{0}")]
    Unknown(String),
    #[error("unknown shorthand flag: {0:?}")]
    UnknownShorthand(String),
    #[error("flag needs an argument: --{0}")]
    MissingValue(String),
    #[error("invalid argument {value:?} for \"--{name}\" flag: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("help requested")]
    Help,
}

/// The parsed command line.
#[derive(Debug)]
pub struct Parsed {
    values: BTreeMap<&'static str, Value>,
    pub positional: Vec<String>,
}

impl Parsed {
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Value::Int(v)) => *v,
            _ => 0,
        }
    }

    pub fn string(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(Value::Str(v)) => v.clone(),
            _ => String::new(),
        }
    }

    pub fn duration(&self, name: &str) -> Duration {
        match self.values.get(name) {
            Some(Value::Dur(v)) => *v,
            _ => Duration::ZERO,
        }
    }
}

fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn convert(spec: &Spec, raw: &str) -> Result<Value, FlagError> {
    let invalid = |reason: String| FlagError::Invalid {
        name: spec.name.to_string(),
        value: raw.to_string(),
        reason,
    };
    match spec.default {
        Value::Bool(_) => parse_go_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| invalid("strconv.ParseBool: parsing: invalid syntax".into())),
        Value::Int(_) => raw
            .trim_start_matches('+')
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| invalid("strconv.ParseInt: parsing: invalid syntax".into())),
        Value::Str(_) => Ok(Value::Str(raw.to_string())),
        Value::Dur(_) => parse_duration(raw).map(Value::Dur).map_err(invalid),
    }
}

/// Parses `args` (without the subcommand name) against `specs`.
pub fn parse(specs: &[Spec], args: &[String]) -> Result<Parsed, FlagError> {
    let mut values: BTreeMap<&'static str, Value> =
        specs.iter().map(|s| (s.name, s.default.clone())).collect();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            if name == "help" {
                return Err(FlagError::Help);
            }
            let spec = specs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| FlagError::Unknown(name.to_string()))?;
            let value = match (inline, &spec.default) {
                (Some(v), _) => convert(spec, v)?,
                (None, Value::Bool(_)) => Value::Bool(true),
                (None, _) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| FlagError::MissingValue(name.to_string()))?;
                    i += 1;
                    convert(spec, v)?
                }
            };
            values.insert(spec.name, value);
        } else if arg.len() > 1 && arg.starts_with('-') {
            if arg == "-h" {
                return Err(FlagError::Help);
            }
            return Err(FlagError::UnknownShorthand(arg.clone()));
        } else {
            positional.push(arg.clone());
        }
    }
    Ok(Parsed { values, positional })
}

/// Renders the flag list for usage messages.
pub fn usage(specs: &[Spec]) -> String {
    let mut out = String::new();
    for spec in specs {
        let default = match &spec.default {
            Value::Bool(v) => v.to_string(),
            Value::Int(v) => v.to_string(),
            Value::Str(v) => format!("{v:?}"),
            Value::Dur(v) => crate::gotime::format_duration(*v),
        };
        out.push_str(&format!(
            "      --{:<24} {} (default {default})\n",
            spec.name, spec.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<Spec> {
        vec![
            Spec::new("port", Value::Int(8080), "port"),
            Spec::new("name", Value::Str(String::new()), "name"),
            Spec::new("on", Value::Bool(false), "on"),
            Spec::new("http", Value::Bool(true), "http"),
            Spec::new("timeout", Value::Dur(Duration::ZERO), "timeout"),
        ]
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn both_forms_and_positionals() {
        let p = parse(
            &specs(),
            &args(&[
                "--port=1",
                "pos",
                "--name",
                "x",
                "--on",
                "--http=false",
                "--timeout",
                "2s",
            ]),
        )
        .unwrap();
        assert_eq!(p.int("port"), 1);
        assert_eq!(p.string("name"), "x");
        assert!(p.bool("on"));
        assert!(!p.bool("http"));
        assert_eq!(p.duration("timeout"), Duration::from_secs(2));
        assert_eq!(p.positional, vec!["pos".to_string()]);
    }

    #[test]
    fn defaults_and_errors() {
        let p = parse(&specs(), &[]).unwrap();
        assert_eq!(p.int("port"), 8080);
        assert!(p.bool("http"));
        assert_eq!(
            parse(&specs(), &args(&["--nope"])).unwrap_err(),
            FlagError::Unknown("nope".into())
        );
        assert!(matches!(
            parse(&specs(), &args(&["--port=abc"])),
            Err(FlagError::Invalid { .. })
        ));
        assert_eq!(
            parse(&specs(), &args(&["--port"])).unwrap_err(),
            FlagError::MissingValue("port".into())
        );
        assert_eq!(
            parse(&specs(), &args(&["--help"])).unwrap_err(),
            FlagError::Help
        );
        assert!(parse(&specs(), &args(&["-x"])).is_err());
        let p = parse(&specs(), &args(&["--", "--port=3"])).unwrap();
        assert_eq!(p.positional, vec!["--port=3".to_string()]);
    }
}

//! Running another plugin (an IPAM plugin named by `ipam.type`) exactly as a
//! runtime would: found on `CNI_PATH`, same environment and stdin, its result
//! or error object read back.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::invocation::Invocation;
use crate::spec::{code, CniError};

fn find(plugin: &str, inv: &Invocation) -> Result<PathBuf, CniError> {
    if plugin.contains('/') {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("ipam.type: {plugin:?} must be a plugin name, not a path"),
        ));
    }
    inv.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("ipam.type: plugin {plugin:?} not found in CNI_PATH"),
            )
            .with_details(format!(
                "searched {}",
                inv.path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))
        })
}

/// Runs `plugin` for `command` (`ADD`, `DEL`, …) with `stdin`. Returns its
/// JSON answer, `None` for an empty one.
pub fn exec(
    plugin: &str,
    command: &str,
    inv: &Invocation,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let path = find(plugin, inv)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("run IPAM plugin {}: {e}", path.display()),
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("write to IPAM plugin {}: {e}", path.display()),
            )
        })?;
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("wait for IPAM plugin {}: {e}", path.display()),
        )
    })?;
    let answer: Option<Value> = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&out.stdout).ok()
    };
    if out.status.success() {
        if answer.is_none() && !out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(CniError::new(
                code::DELEGATE_FAILED,
                format!("IPAM plugin {plugin} {command} printed something that is not JSON"),
            ));
        }
        return Ok(answer);
    }
    // A failing plugin prints an error object; pass its code and words on.
    if let Some(err) = answer.as_ref().filter(|v| v.get("code").is_some()) {
        let code = err
            .get("code")
            .and_then(Value::as_u64)
            .unwrap_or(code::DELEGATE_FAILED as u64) as u32;
        let msg = err
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        let details = err.get("details").and_then(Value::as_str).unwrap_or("");
        return Err(
            CniError::new(code, format!("IPAM plugin {plugin} {command}: {msg}"))
                .with_details(details),
        );
    }
    Err(CniError::new(
        code::DELEGATE_FAILED,
        format!("IPAM plugin {plugin} {command} failed ({})", out.status),
    )
    .with_details(String::from_utf8_lossy(&out.stderr).trim().to_string()))
}

//! Builds the protobuf field table of every Kubernetes message from the
//! `#[prost(...)]` attributes of the k8s-pb crate (the only machine-readable
//! record of kube's protobuf field numbers that the build has: k8s-pb ships
//! neither its `.proto` files nor a descriptor set, and has no serde). The
//! table (`$OUT_DIR/pb_fields.rs`) drives the general protobuf → JSON
//! decoder in `src/pbjson.rs`. k8s-pb's source is found from the version
//! that the workspace's Cargo.lock pins, in cargo's registry source cache
//! (where cargo unpacked it to compile it), so the table always matches the
//! k8s-pb compiled in; `cargo metadata` is the fallback for other layouts
//! (vendored sources). `cargo metadata` is not the first choice: even
//! `--offline --filter-platform` wants every package of the lock file
//! downloaded (Windows-only ones too), which a fresh machine has not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let src = k8s_pb_src();
    println!("cargo:rerun-if-changed={}", src.display());
    let mut messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    walk(&src, &src, &mut messages);
    if messages.len() < 100 {
        panic!(
            "found only {} k8s-pb messages under {}",
            messages.len(),
            src.display()
        );
    }
    let mut out = String::from("pub(crate) static MESSAGES: &[Message] = &[\n");
    for (name, fields) in &messages {
        let _ = writeln!(
            out,
            "    Message {{ name: {name:?}, fields: &[{}] }},",
            fields.join(", ")
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("pb_fields.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("writing {}: {e}", dest.display());
    }
}

/// The `src` directory of the k8s-pb package this crate is built against.
fn k8s_pb_src() -> PathBuf {
    match from_registry() {
        Some(src) => src,
        None => from_metadata(),
    }
}

/// The k8s-pb version in the workspace's Cargo.lock (the nearest one above
/// this crate), looked up under `$CARGO_HOME/registry/src/*/`.
fn from_registry() -> Option<PathBuf> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let lock = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).ok()?;
    let mut lines = text.lines();
    let mut version = None;
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"k8s-pb\"" {
            version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
            break;
        }
    }
    let version = version?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registries = std::fs::read_dir(cargo_home.join("registry").join("src")).ok()?;
    let mut found: Vec<PathBuf> = registries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(format!("k8s-pb-{version}")).join("src"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.into_iter().next()
}

fn from_metadata() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => panic!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("running cargo metadata: {e}"),
    };
    let meta: serde_json::Value = match serde_json::from_slice(&out) {
        Ok(v) => v,
        Err(e) => panic!("cargo metadata output: {e}"),
    };
    let pkgs = meta["packages"].as_array().cloned().unwrap_or_default();
    let pkg = pkgs.iter().find(|p| p["name"] == "k8s-pb");
    match pkg.and_then(|p| p["manifest_path"].as_str()) {
        Some(m) => Path::new(m)
            .parent()
            .map(|d| d.join("src"))
            .unwrap_or_default(),
        None => panic!("k8s-pb is not among this crate's dependencies"),
    }
}

fn walk(root: &Path, dir: &Path, messages: &mut BTreeMap<String, Vec<String>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, messages);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let module = module_of(root, &p);
            if let Ok(text) = std::fs::read_to_string(&p) {
                parse_file(&module, &text, messages);
            }
        }
    }
}

/// `api/core/v1/mod.rs` → ["api", "core", "v1"].
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// The OpenAPI-style name kube gives a type: `io.k8s.` and the Go package
/// path (`apiextensions-apiserver`, not `apiextensions_apiserver`).
fn full_name(module: &[String], ty: &str) -> String {
    let mut s = String::from("io.k8s");
    for m in module {
        s.push('.');
        s.push_str(&m.replace('_', "-"));
    }
    s.push('.');
    s.push_str(ty);
    s
}

fn parse_file(module: &[String], text: &str, messages: &mut BTreeMap<String, Vec<String>>) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(rest) = l.strip_prefix("pub struct ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            let full = full_name(module, &name);
            messages.entry(full.clone()).or_default();
            current = Some(full);
        } else if l == "}" {
            current = None;
        } else if let (Some(attr), Some(msg)) = (
            l.strip_prefix("#[prost(")
                .and_then(|a| a.strip_suffix(")]")),
            current.as_ref(),
        ) {
            // The field declaration follows, possibly over several lines.
            let mut decl = String::new();
            let mut j = i + 1;
            while j < lines.len() {
                if !lines[j].starts_with("///") && !lines[j].starts_with("#[") {
                    decl.push_str(lines[j]);
                    let open = decl.matches('<').count();
                    if lines[j].ends_with(',') && open == decl.matches('>').count() {
                        break;
                    }
                }
                j += 1;
            }
            if let Some(f) = field(module, attr, &decl) {
                messages.entry(msg.clone()).or_default().push(f);
            }
            i = j;
        }
        i += 1;
    }
}

/// One `Field { .. }` literal from a prost attribute and its declaration.
fn field(module: &[String], attr: &str, decl: &str) -> Option<String> {
    let (name, ty) = decl.strip_prefix("pub ")?.split_once(':')?;
    let name = name.trim().trim_start_matches("r#");
    let tag: u32 = attr
        .split("tag = \"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()?;
    let repeated = attr.contains("repeated");
    let kind = attr.split(',').next()?.trim();
    let message = || message_path(module, ty.trim().trim_end_matches(','));
    let ty = if let Some(map) = attr.strip_prefix("btree_map = \"") {
        match map.split('"').next().unwrap_or_default() {
            "string, string" => "Ty::Map(Scalar::String)".to_string(),
            "string, bytes" => "Ty::Map(Scalar::Bytes)".to_string(),
            "string, message" => format!("Ty::MapMessage({:?})", message()?),
            other => panic!("k8s-pb map type {other} of field {name} is not known"),
        }
    } else {
        match kind {
            "string" => "Ty::Scalar(Scalar::String)".into(),
            "bytes = \"vec\"" => "Ty::Scalar(Scalar::Bytes)".into(),
            "bool" => "Ty::Scalar(Scalar::Bool)".into(),
            "int32" => "Ty::Scalar(Scalar::Int32)".into(),
            "int64" => "Ty::Scalar(Scalar::Int64)".into(),
            "double" => "Ty::Scalar(Scalar::Double)".into(),
            "message" => format!("Ty::Message({:?})", message()?),
            other => panic!("k8s-pb field kind {other} of field {name} is not known"),
        }
    };
    Some(format!(
        "Field {{ tag: {tag}, name: {name:?}, ty: {ty}, repeated: {repeated} }}"
    ))
}

/// The full name of the message type in a field's Rust type, e.g.
/// `Option<super::super::meta::v1::ObjectMeta>` in module `api.core.v1`.
fn message_path(module: &[String], ty: &str) -> Option<String> {
    let parts: Vec<&str> = ty
        .split(['<', '>', ','])
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.starts_with("::core::")
                && !t.starts_with("::prost::")
                && !t.starts_with("::std::")
        })
        .collect();
    let inner = parts.last()?;
    let mut segs: Vec<&str> = inner.split("::").collect();
    let ty_name = segs.pop()?;
    let mut base: Vec<String> = module.to_vec();
    let mut rest = Vec::new();
    for s in segs {
        if s == "super" && rest.is_empty() {
            base.pop();
        } else if s == "crate" {
            base.clear();
        } else {
            rest.push(s.to_string());
        }
    }
    base.extend(rest);
    Some(full_name(&base, ty_name))
}

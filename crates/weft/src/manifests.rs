//! Reading manifests: files or directories of YAML/JSON, several documents
//! per file, `kind: List` expanded. Every object remembers where it came from,
//! so errors name the file, the document and the object.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One object from a manifest. Its kind is resolved against what the
/// cluster serves when it is applied ([`crate::resources::Catalog`]).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `file.yaml` or `file.yaml (document 2)`.
    pub source: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub object: Value,
}

impl Manifest {
    /// `Deployment/web` — how errors and progress name it.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

fn files_of(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("read directory {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        Ok(files)
    } else if path.exists() {
        Ok(vec![path.to_path_buf()])
    } else {
        bail!("{}: no such file or directory", path.display())
    }
}

/// Reads every object of every path, in order.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for path in paths {
        for file in files_of(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            out.extend(parse(&file.display().to_string(), &text)?);
        }
    }
    Ok(out)
}

/// Parses one file's text (YAML, which includes JSON).
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let source = if i == 0 {
            file.to_string()
        } else {
            format!("{file} (document {})", i + 1)
        };
        let value = Value::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("{source}: not valid YAML: {e}"))?;
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            for (j, item) in value
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.push(object(&format!("{source} items[{j}]"), item.clone())?);
            }
            continue;
        }
        out.push(object(&source, value)?);
    }
    Ok(out)
}

fn object(source: &str, value: Value) -> Result<Manifest> {
    if !value.is_object() {
        bail!("{source}: expected an object with apiVersion, kind and metadata");
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind_name = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version.is_empty() {
        bail!("{source}: apiVersion is missing");
    }
    if kind_name.is_empty() {
        bail!("{source}: kind is missing");
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{source}: {kind_name}: metadata.name is missing"))?
        .to_string();
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Manifest {
        source: source.to_string(),
        api_version: api_version.to_string(),
        kind: kind_name.to_string(),
        name,
        namespace,
        object: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_list_and_empty_docs() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d, namespace: x}\n";
        let m = parse("demo.yaml", text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].describe(), "Service/web");
        assert_eq!(m[1].namespace.as_deref(), Some("x"));
        assert!(m[1].source.contains("document 3"), "{}", m[1].source);
    }

    #[test]
    fn errors_name_file_kind_and_field() {
        let e = parse("b.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.yaml: Pod: metadata.name is missing"), "{e}");
        let e = parse("c.yaml", "kind: Pod\n").unwrap_err().to_string();
        assert!(e.contains("apiVersion is missing"), "{e}");
        let e = parse("d.yaml", "a: [1,\n").unwrap_err().to_string();
        assert!(e.contains("d.yaml: not valid YAML"), "{e}");
    }
}

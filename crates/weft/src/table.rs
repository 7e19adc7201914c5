//! `weft get` tables: the server prints (a `meta.k8s.io/v1` Table, asked
//! for with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, as
//! kubectl asks), weft aligns. So every kind — CustomResourceDefinitions'
//! `additionalPrinterColumns` included — prints as kubectl prints it, and no
//! column logic lives here.
//!
//! kubectl's rules: headers upper-cased; columns of priority > 0 only with
//! `-o wide`; with `--all-namespaces` a NAMESPACE column first (from each
//! row's object metadata); cells that are absent print `<none>`; columns
//! separated by three spaces.

use serde_json::Value;

/// The Accept header that asks for a Table (with JSON as the fallback).
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The rows of a Table, aligned; `None` when the document is not a Table.
pub fn render(table: &Value, wide: bool, all_namespaces: bool) -> Option<String> {
    if table["kind"] != "Table" {
        return None;
    }
    let columns = table["columnDefinitions"].as_array()?;
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut header: Vec<String> = shown
        .iter()
        .map(|&i| {
            columns[i]["name"]
                .as_str()
                .unwrap_or("")
                .to_ascii_uppercase()
        })
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let mut out: Vec<String> = shown
            .iter()
            .map(|&i| cells.get(i).map_or_else(|| "<none>".into(), cell))
            .collect();
        if all_namespaces {
            let ns = row
                .pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            out.insert(0, ns.to_string());
        }
        rows.push(out);
    }
    if all_namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    Some(align(&header, &rows))
}

/// The value of a named column in every row (e.g. each pod's STATUS), in
/// row order, with the row's name.
pub fn column(table: &Value, name: &str) -> Vec<(String, String)> {
    let Some(i) = table["columnDefinitions"]
        .as_array()
        .and_then(|c| c.iter().position(|c| c["name"].as_str() == Some(name)))
    else {
        return Vec::new();
    };
    table["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let name = row
                .pointer("/object/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (name, row["cells"].get(i).map(cell).unwrap_or_default())
        })
        .collect()
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
pub fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}   ", w = widths[i])
                }
            })
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> Value {
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0},
                {"name": "Status", "priority": 0}, {"name": "Restarts", "priority": 0},
                {"name": "Age", "priority": 0}, {"name": "IP", "priority": 1}, {"name": "Node", "priority": 1}],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 1, "30s", "10.244.0.5", "node-1"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default"}}},
                {"cells": ["db-0", "0/1", "CrashLoopBackOff", 0, "3h", null, "<none>"],
                 "object": {"metadata": {"name": "db-0", "namespace": "data"}}}]})
    }

    #[test]
    fn wide_with_namespaces_prints_every_column_upper_cased() {
        let want = "\
NAMESPACE   NAME    READY   STATUS             RESTARTS   AGE   IP           NODE
default     web-1   1/1     Running            1          30s   10.244.0.5   node-1
data        db-0    0/1     CrashLoopBackOff   0          3h    <none>       <none>
";
        assert_eq!(render(&pods(), true, true).unwrap(), want);
    }

    #[test]
    fn priority_columns_only_when_wide() {
        let t = render(&pods(), false, false).unwrap();
        assert_eq!(
            t.lines().next().unwrap(),
            "NAME    READY   STATUS             RESTARTS   AGE"
        );
    }

    #[test]
    fn a_column_reads_by_name() {
        assert_eq!(
            column(&pods(), "Status"),
            vec![
                ("web-1".to_string(), "Running".to_string()),
                ("db-0".to_string(), "CrashLoopBackOff".to_string())
            ]
        );
    }

    #[test]
    fn a_document_that_is_not_a_table_is_refused() {
        assert!(render(&json!({"kind": "PodList", "items": []}), false, false).is_none());
    }
}

//! nftables transactions for weft: statements are collected as `nft` script
//! text and handed to one `nft -f -` run, which the kernel applies atomically
//! (all or nothing). Listing reads `nft -j` output back into the few facts a
//! writer needs (chains, rule handles, rule comments) to delete what it owns.
//!
//! Each weft component owns its own table and never edits another's, as
//! kube-proxy's nftables mode asks of everyone sharing a node.
//!
//! On top of the raw [`Transaction`]: [`model`] (a table's desired content
//! as a typed value, rendered to nft statements), [`diff`](mod@diff) (the minimal
//! transaction between two contents, and the [`Mirror`] of what was
//! written), [`backend`] (kernel or [`Fake`], and the [`Syncer`] tying them to
//! the mirror), and [`trace`] (a packet tracer for unit tests of compiled
//! rulesets).

pub mod backend;
pub mod diff;
pub mod fake;
pub mod model;
pub mod trace;

pub use backend::{Backend, NftBackend, SyncError, SyncKind, Syncer};
pub use diff::{diff, full_sync, Mirror};
pub use fake::{Fake, FakeError};
pub use model::{
    BaseChain, Chain, ChainType, Element, Hook, ModelError, Policy, Priority, Rule, Ruleset, Set,
    SetFlag, Table,
};

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Errors from running `nft`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run nft ({path}): {source}; install the nftables package")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft rejected the transaction: {stderr}\n--- transaction ---\n{script}")]
    Rejected { script: String, stderr: String },
    #[error("nft {args}: {stderr}")]
    Command { args: String, stderr: String },
    #[error("cannot parse `nft -j` output: {0}")]
    Parse(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

/// An ordered list of nft statements applied as one atomic transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transaction {
    statements: Vec<String>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one statement, e.g. `add rule inet weft-cni masq ip saddr 10.244.1.5 masquerade`.
    pub fn push(&mut self, statement: impl Into<String>) -> &mut Self {
        self.statements.push(statement.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    pub fn statements(&self) -> &[String] {
        &self.statements
    }

    /// The script as `nft -f` reads it.
    pub fn render(&self) -> String {
        let mut s = self.statements.join("\n");
        s.push('\n');
        s
    }

    /// Applies the transaction in the calling process's network namespace.
    pub fn apply(&self) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let script = self.render();
        let path = nft_binary();
        let mut child = Command::new(&path)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                path: path.display().to_string(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|source| Error::Spawn {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            path: path.display().to_string(),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Rejected {
                script,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// Quotes a string for use inside an nft script (comments, interface names).
/// nft strings cannot contain a double quote, so those are dropped.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

/// The `nft` binary: `$WEFT_NFT`, else the usual sbin paths (CNI plugins are
/// often run with a minimal PATH), else whatever PATH finds.
fn nft_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_NFT") {
        return PathBuf::from(p);
    }
    for p in ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("nft")
}

/// A rule as listed by `nft -j`: where it is, its handle, and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    /// The packets its `counter` statement counted (`None`: no counter).
    pub packets: Option<u64>,
}

/// What a table holds, as far as a writer needs to know to clean up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedTable {
    pub chains: Vec<String>,
    pub rules: Vec<ListedRule>,
}

/// Lists one table in the calling process's namespace; `None` if it does not exist.
pub fn list_table(family: Family, name: &str) -> Result<Option<ListedTable>> {
    list(family, name, false)
}

/// Like [`list_table`] without the contents of sets (`nft -t`): what
/// reading counters needs, cheap however large the sets are.
pub fn list_table_terse(family: Family, name: &str) -> Result<Option<ListedTable>> {
    list(family, name, true)
}

fn list(family: Family, name: &str, terse: bool) -> Result<Option<ListedTable>> {
    let path = nft_binary();
    let mut cmd = Command::new(&path);
    if terse {
        cmd.arg("-t");
    }
    let out = cmd
        .args(["-j", "list", "table", family.as_str(), name])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            path: path.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // nft says "No such file or directory" for a missing table.
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(Error::Command {
            args: format!("list table {} {name}", family.as_str()),
            stderr,
        });
    }
    parse_listing(&String::from_utf8_lossy(&out.stdout)).map(Some)
}

/// Parses `nft -j list table …` output.
pub fn parse_listing(json: &str) -> Result<ListedTable> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::Parse(e.to_string()))?;
    let items = value
        .get("nftables")
        .and_then(|v| v.as_array())
        .ok_or_else(|| Error::Parse("no \"nftables\" array".into()))?;
    let mut table = ListedTable::default();
    for item in items {
        if let Some(chain) = item.get("chain") {
            if let Some(name) = chain.get("name").and_then(|n| n.as_str()) {
                table.chains.push(name.to_string());
            }
        } else if let Some(rule) = item.get("rule") {
            let chain = rule.get("chain").and_then(|c| c.as_str());
            let handle = rule.get("handle").and_then(|h| h.as_u64());
            if let (Some(chain), Some(handle)) = (chain, handle) {
                table.rules.push(ListedRule {
                    chain: chain.to_string(),
                    handle,
                    comment: rule
                        .get("comment")
                        .and_then(|c| c.as_str())
                        .map(str::to_string),
                    packets: rule
                        .get("expr")
                        .and_then(|e| e.as_array())
                        .into_iter()
                        .flatten()
                        .find_map(|x| x.get("counter")?.get("packets")?.as_u64()),
                });
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_statements_in_order() {
        let mut tx = Transaction::new();
        tx.push("add table inet t").push("add chain inet t c");
        assert_eq!(tx.render(), "add table inet t\nadd chain inet t c\n");
    }

    #[test]
    fn parses_chains_rules_handles_and_comments() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "t", "handle": 1}},
          {"chain": {"family": "inet", "table": "t", "name": "hostports", "handle": 2}},
          {"rule": {"family": "inet", "table": "t", "chain": "hostports", "handle": 7,
                    "comment": "abc/eth0", "expr": []}},
          {"rule": {"family": "inet", "table": "t", "chain": "hostports", "handle": 8,
                    "expr": [{"counter": {"packets": 12, "bytes": 720}}, {"drop": null}]}}]}"#;
        let t = parse_listing(json).unwrap();
        assert_eq!(t.chains, vec!["hostports"]);
        assert_eq!(t.rules.len(), 2);
        assert_eq!(t.rules[0].comment.as_deref(), Some("abc/eth0"));
        assert_eq!(t.rules[1].handle, 8);
        assert_eq!(t.rules[0].packets, None);
        assert_eq!(t.rules[1].packets, Some(12));
    }

    #[test]
    fn quote_drops_double_quotes() {
        assert_eq!(quote("a\"b"), "\"ab\"");
    }
}

#[cfg(test)]
mod testdata;
#[cfg(test)]
mod unit;

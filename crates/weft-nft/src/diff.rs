//! From "what was last written" and "what is wanted" to the smallest nft
//! transaction that turns one into the other, plus the in-memory [`Mirror`]
//! of what was written.
//!
//! Why: a Services table holds thousands of elements; rewriting it on every
//! EndpointSlice change costs the kernel and the agent. Like kube-proxy's
//! nftables proxier, weft keeps a record of the last successful write and
//! sends only the chains and elements that changed. The record is trusted
//! only while writes succeed: after a failure (or at start) the next sync is
//! a full one.
//!
//! **Full sync** = `add table` + `delete table` + the whole content, in one
//! transaction. The `add` makes the `delete` valid when the table is absent;
//! the `delete` removes whatever was there — objects from an older weft, a
//! half-applied write, a base chain whose hook changed — so the result is the
//! desired content whatever the starting state, without reading the kernel.
//! (`flush table` would keep stale chains and sets, and an `add` of an
//! existing chain or set with a different definition fails.) The price:
//! dynamic sets (ClientIP affinity) start empty and counters reset, once per
//! agent start or failed sync; the kernel swaps the table atomically, so no
//! packet sees a missing table.
//!
//! **Incremental sync order.** nft applies a transaction's statements in
//! order, and the kernel refuses to delete a chain that a rule or map element
//! still refers to, or a set a rule still uses. So:
//! 1. delete changed/removed elements of surviving sets and maps (also those
//!    whose verdict points at a chain about to be deleted);
//! 2. flush chains that are rewritten or deleted (a rewritten chain is one
//!    whose rules changed, or whose old rules name a set or chain about to be
//!    deleted);
//! 3. delete removed sets and maps (and ones whose definition changed);
//! 4. delete removed chains (and base chains whose hook/priority changed);
//! 5. create new chains, sets and maps (a new set with its elements);
//! 6. add elements to surviving sets;
//! 7. add the rules of new and rewritten chains.
//!
//! kube-proxy is more cautious: it flushes stale chains and deletes them only
//! in a later sync. weft deletes in the same transaction, in the order above;
//! its kernel test (`tests/netns.rs`) checks that the kernel it runs on
//! accepts that order, and the fake refuses any other.
//!
//! Elements of dynamic sets belong to the packet path and are never written
//! or deleted by a sync.

use std::collections::BTreeSet;

use crate::model::{references, ModelError, Reference, Ruleset, Set};
use crate::Transaction;

/// The transaction that replaces whatever the table holds with `desired`.
pub fn full_sync(desired: &Ruleset) -> Result<Transaction, ModelError> {
    desired.validate()?;
    let mut tx = Transaction::new();
    let spec = desired.table.spec();
    tx.push(format!("add table {spec}"));
    tx.push(format!("delete table {spec}"));
    for s in desired.create_statements() {
        tx.push(s);
    }
    Ok(tx)
}

/// The minimal transaction from `written` (what the kernel holds, as far as
/// weft knows) to `desired`. An empty transaction means nothing changed.
/// A different table (or table comment) means a full sync.
pub fn diff(written: &Ruleset, desired: &Ruleset) -> Result<Transaction, ModelError> {
    desired.validate()?;
    let (old, new) = (written, desired);
    if old.table != new.table {
        let mut tx = Transaction::new();
        if (old.table.family, &old.table.name) != (new.table.family, &new.table.name) {
            tx.push(format!("add table {}", old.table.spec()));
            tx.push(format!("delete table {}", old.table.spec()));
        }
        for s in full_sync(new)?.statements() {
            tx.push(s.clone());
        }
        return Ok(tx);
    }
    let t = &new.table;

    // Chains and sets that go away in this transaction (removed, or to be
    // created again with another definition).
    let doomed_chains: BTreeSet<&str> = old
        .chains
        .values()
        .filter(|c| new.chains.get(&c.name).is_none_or(|n| n.base != c.base))
        .map(|c| c.name.as_str())
        .collect();
    let doomed_sets: BTreeSet<&str> = old
        .sets
        .values()
        .filter(|s| new.sets.get(&s.name).is_none_or(|n| !n.same_definition(s)))
        .map(|s| s.name.as_str())
        .collect();
    let names_doomed = |expr: &str| {
        references(expr).iter().any(|r| match r {
            Reference::Chain(c) => doomed_chains.contains(c.as_str()),
            Reference::Set(s) => doomed_sets.contains(s.as_str()),
        })
    };

    // Surviving chains whose rules are written again.
    let rewritten: BTreeSet<&str> = old
        .chains
        .values()
        .filter(|c| !doomed_chains.contains(c.name.as_str()))
        .filter(|c| {
            new.chains.get(&c.name).is_some_and(|n| n.rules != c.rules)
                || c.rules.iter().any(|r| names_doomed(&r.expr))
        })
        .map(|c| c.name.as_str())
        .collect();
    // Chains created in this transaction (new, or doomed and wanted again).
    let created: Vec<&str> = new
        .chains
        .keys()
        .map(String::as_str)
        .filter(|n| !old.chains.contains_key(*n) || doomed_chains.contains(n))
        .collect();
    let created_sets: Vec<&Set> = new
        .sets
        .values()
        .filter(|s| !old.sets.contains_key(&s.name) || doomed_sets.contains(s.name.as_str()))
        .collect();

    let mut tx = Transaction::new();
    // 1. elements leaving surviving sets.
    let mut element_adds = Vec::new();
    for s in new.sets.values() {
        if doomed_sets.contains(s.name.as_str()) || s.is_dynamic() {
            continue;
        }
        let Some(o) = old.sets.get(&s.name) else {
            continue;
        };
        for (k, oe) in &o.elements {
            // An unchanged element naming a doomed chain cannot occur today
            // (only base chains are re-created, and nothing may jump to
            // them); the check keeps the order safe if chains gain
            // definitions of their own.
            let stale =
                s.elements.get(k) != Some(oe) || oe.value.as_deref().is_some_and(names_doomed);
            if stale {
                tx.push(s.delete_element_statement(t, k));
            }
        }
        for (k, ne) in &s.elements {
            let unchanged =
                o.elements.get(k) == Some(ne) && !ne.value.as_deref().is_some_and(names_doomed);
            if !unchanged {
                element_adds.push(s.add_element_statement(t, ne));
            }
        }
    }
    // 2. flush chains whose old rules go.
    for c in old.chains.values() {
        let name = c.name.as_str();
        if (rewritten.contains(name) || doomed_chains.contains(name)) && !c.rules.is_empty() {
            tx.push(format!("flush chain {} {name}", t.spec()));
        }
    }
    // 3. delete sets and maps.
    for name in &doomed_sets {
        if let Some(s) = old.sets.get(*name) {
            tx.push(format!("delete {} {} {name}", s.keyword(), t.spec()));
        }
    }
    // 4. delete chains.
    for name in &doomed_chains {
        tx.push(format!("delete chain {} {name}", t.spec()));
    }
    // 5. create chains, sets, maps.
    for name in &created {
        if let Some(c) = new.chains.get(*name) {
            tx.push(c.add_statement(t));
        }
    }
    // (a created set's elements are in its `add set`: element statements
    // cost a read of every set in the ruleset, see
    // `Set::add_statement_with_elements`)
    for s in &created_sets {
        tx.push(s.add_statement_with_elements(t));
    }
    // 6. elements of surviving sets.
    for e in element_adds {
        tx.push(e);
    }
    // 7. rules.
    for c in new.chains.values() {
        let name = c.name.as_str();
        if rewritten.contains(name) || created.contains(&name) {
            for r in &c.rules {
                tx.push(c.rule_statement(t, r));
            }
        }
    }
    Ok(tx)
}

/// What weft last wrote to one table, so the next sync can be a diff.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    written: Option<Ruleset>,
}

impl Mirror {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last successfully written content, if it is known.
    pub fn written(&self) -> Option<&Ruleset> {
        self.written.as_ref()
    }

    /// The transaction for the next sync: a diff when the last write is
    /// known, else a full sync.
    pub fn plan(&self, desired: &Ruleset) -> Result<Transaction, ModelError> {
        match &self.written {
            Some(w) => diff(w, desired),
            None => full_sync(desired),
        }
    }

    /// Records that `desired` was written successfully.
    pub fn record(&mut self, desired: Ruleset) {
        self.written = Some(desired);
    }

    /// Forgets what was written (after a failed write the kernel state is
    /// unknown), so the next plan is a full sync.
    pub fn forget(&mut self) {
        self.written = None;
    }
}

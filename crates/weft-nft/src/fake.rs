//! An in-memory nftables: applies the statements weft renders to tables held
//! as [`Ruleset`] values, so tests check that a planned transaction really
//! turns the old content into the desired one — and that its order would
//! satisfy the kernel (no deleting a chain or set something still refers to,
//! no rule jumping to a missing chain, no element added twice with another
//! value).
//!
//! It understands exactly the statements the renderer emits — `add`,
//! `flush` and `delete` of `table`, `chain`, `set`, `map`, `element`, and
//! `add rule` — and rejects anything else by name, so a test never passes
//! because the fake ignored a statement. A transaction is all or nothing,
//! like the kernel's.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::Backend;
use crate::model::{
    references, BaseChain, Chain, ChainType, Element, Hook, Policy, Priority, Reference, Rule,
    Ruleset, Set, SetFlag, Table,
};
use crate::{Family, Transaction};

/// A statement the fake could not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake nft: statement {index} `{statement}`: {why}")]
pub struct FakeError {
    /// 0-based position in the transaction.
    pub index: usize,
    pub statement: String,
    pub why: String,
}

/// The fake kernel's tables.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    tables: BTreeMap<(Family, String), Ruleset>,
    applied: Vec<Transaction>,
    fail_next: Option<String>,
}

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    /// One table's content, if it exists.
    pub fn table(&self, family: Family, name: &str) -> Option<&Ruleset> {
        self.tables.get(&(family, name.to_string()))
    }

    /// Puts a table in place as if it had been written (test setup).
    pub fn insert(&mut self, ruleset: Ruleset) {
        self.tables
            .insert((ruleset.table.family, ruleset.table.name.clone()), ruleset);
    }

    /// Every transaction applied successfully, in order.
    pub fn applied(&self) -> &[Transaction] {
        &self.applied
    }

    /// Makes the next `apply` fail with `why` without changing anything.
    pub fn fail_next(&mut self, why: impl Into<String>) {
        self.fail_next = Some(why.into());
    }

    /// Applies the transaction, all or nothing.
    pub fn apply_tx(&mut self, tx: &Transaction) -> Result<(), FakeError> {
        if let Some(why) = self.fail_next.take() {
            return Err(FakeError {
                index: 0,
                statement: tx.statements().first().cloned().unwrap_or_default(),
                why,
            });
        }
        let mut tables = self.tables.clone();
        for (index, statement) in tx.statements().iter().enumerate() {
            apply_statement(&mut tables, statement).map_err(|why| FakeError {
                index,
                statement: statement.clone(),
                why,
            })?;
        }
        self.tables = tables;
        self.applied.push(tx.clone());
        Ok(())
    }
}

impl Backend for Fake {
    type Error = FakeError;

    fn apply(&mut self, tx: &Transaction) -> Result<(), FakeError> {
        self.apply_tx(tx)
    }
}

type Tables = BTreeMap<(Family, String), Ruleset>;

/// Splits off `n` whitespace-separated words; the rest is trimmed.
fn words(s: &str, n: usize) -> Result<(Vec<&str>, &str), String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = s.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("expected {n} words before the body"));
        }
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Ok((out, rest.trim_end()))
}

fn family(s: &str) -> Result<Family, String> {
    match s {
        "ip" => Ok(Family::Ip),
        "ip6" => Ok(Family::Ip6),
        "inet" => Ok(Family::Inet),
        other => Err(format!(
            "unsupported family {other:?} (expected ip, ip6 or inet)"
        )),
    }
}

/// `"text"` → `text`.
fn unquote(s: &str) -> Result<String, String> {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|inner| !inner.contains('"'))
        .map(str::to_string)
        .ok_or_else(|| format!("expected a quoted string, got {s:?}"))
}

/// `{ a ; b ; }` → `["a", "b"]`, splitting on `;` outside quotes.
fn body_clauses(body: &str) -> Result<Vec<String>, String> {
    let inner = body
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("expected a {{ … }} body, got {body:?}"))?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in inner.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        return Err(format!("clause {:?} is not terminated by ';'", cur.trim()));
    }
    Ok(out.into_iter().filter(|c| !c.is_empty()).collect())
}

/// Splits a trailing ` comment "…"` off.
fn split_comment(s: &str) -> Result<(&str, Option<String>), String> {
    match s.rfind(" comment \"") {
        Some(i) => Ok((
            s[..i].trim_end(),
            Some(unquote(&s[i + " comment ".len()..])?),
        )),
        None => Ok((s, None)),
    }
}

fn apply_statement(tables: &mut Tables, statement: &str) -> Result<(), String> {
    let (head, rest) = words(statement, 3)?;
    let (verb, kind) = (head[0], head[1]);
    let fam = family(head[2])?;
    if kind == "table" {
        let (name, body) = words(rest, 1)?;
        return table_statement(tables, verb, fam, name[0], body);
    }
    let (tname, rest) = words(rest, 1)?;
    let key = (fam, tname[0].to_string());
    let spec = format!("{} {}", fam.as_str(), tname[0]);
    let rs = tables
        .get_mut(&key)
        .ok_or_else(|| format!("table {spec} does not exist"))?;
    let (name, body) = words(rest, 1)?;
    let name = name[0];
    match (verb, kind) {
        ("add", "chain") => add_chain(rs, name, body),
        ("flush", "chain") if body.is_empty() => {
            chain_mut(rs, name)?.rules.clear();
            Ok(())
        }
        ("delete", "chain") if body.is_empty() => delete_chain(rs, name),
        ("add", "rule") => add_rule(rs, name, body),
        ("add", "set" | "map") => add_set(rs, kind, name, body),
        ("flush", "set" | "map") if body.is_empty() => {
            set_mut(rs, kind, name)?.elements.clear();
            Ok(())
        }
        ("delete", "set" | "map") if body.is_empty() => delete_set(rs, kind, name),
        ("add", "element") => add_element(rs, name, body),
        ("delete", "element") => delete_element(rs, name, body),
        _ => Err(format!(
            "unsupported statement `{verb} {kind}` with these arguments (the fake knows add/flush/delete of table, chain, set, map, element and add rule)"
        )),
    }
}

fn table_statement(
    tables: &mut Tables,
    verb: &str,
    fam: Family,
    name: &str,
    body: &str,
) -> Result<(), String> {
    let key = (fam, name.to_string());
    let spec = format!("{} {name}", fam.as_str());
    match verb {
        "add" => {
            let mut comment = None;
            if !body.is_empty() {
                for clause in body_clauses(body)? {
                    match clause.strip_prefix("comment ") {
                        Some(c) => comment = Some(unquote(c)?),
                        None => return Err(format!("unsupported table clause {clause:?}")),
                    }
                }
            }
            match tables.get(&key) {
                Some(existing) if comment.is_some() && existing.table.comment != comment => {
                    Err(format!("table {spec} exists with another comment"))
                }
                Some(_) => Ok(()),
                None => {
                    let mut t = Table::new(fam, name);
                    t.comment = comment;
                    tables.insert(key, Ruleset::new(t));
                    Ok(())
                }
            }
        }
        "delete" if body.is_empty() => tables
            .remove(&key)
            .map(|_| ())
            .ok_or_else(|| format!("table {spec} does not exist")),
        "flush" if body.is_empty() => {
            let rs = tables
                .get_mut(&key)
                .ok_or_else(|| format!("table {spec} does not exist"))?;
            rs.chains.values_mut().for_each(|c| c.rules.clear());
            rs.sets.values_mut().for_each(|s| s.elements.clear());
            Ok(())
        }
        _ => Err(format!(
            "unsupported statement `{verb} table` with these arguments"
        )),
    }
}

fn chain_mut<'a>(rs: &'a mut Ruleset, name: &str) -> Result<&'a mut Chain, String> {
    rs.chains
        .get_mut(name)
        .ok_or_else(|| format!("chain {name} does not exist"))
}

fn set_mut<'a>(rs: &'a mut Ruleset, kind: &str, name: &str) -> Result<&'a mut Set, String> {
    match rs.sets.get_mut(name) {
        Some(s) if s.keyword() == kind => Ok(s),
        Some(s) => Err(format!("{name} is a {}, not a {kind}", s.keyword())),
        None => Err(format!("{kind} {name} does not exist")),
    }
}

fn parse_base(body: &str) -> Result<BaseChain, String> {
    let mut kind = None;
    let mut hook = None;
    let mut priority = None;
    let mut policy = Policy::Accept;
    for clause in body_clauses(body)? {
        let w: Vec<&str> = clause.split_whitespace().collect();
        match w.as_slice() {
            ["type", t, "hook", h, "priority", p @ ..] => {
                kind =
                    Some(ChainType::parse(t).ok_or_else(|| format!("unknown chain type {t:?}"))?);
                hook = Some(Hook::parse(h).ok_or_else(|| format!("unknown hook {h:?}"))?);
                let p = p.join(" ");
                priority = Some(Priority::parse(&p).ok_or_else(|| format!("bad priority {p:?}"))?);
            }
            ["policy", "accept"] => policy = Policy::Accept,
            ["policy", "drop"] => policy = Policy::Drop,
            _ => return Err(format!("unsupported chain clause {clause:?}")),
        }
    }
    match (kind, hook, priority) {
        (Some(kind), Some(hook), Some(priority)) => Ok(BaseChain {
            kind,
            hook,
            priority,
            policy,
        }),
        _ => Err("a chain body needs `type … hook … priority …`".into()),
    }
}

fn add_chain(rs: &mut Ruleset, name: &str, body: &str) -> Result<(), String> {
    let base = if body.is_empty() {
        None
    } else {
        Some(parse_base(body)?)
    };
    match rs.chains.get(name) {
        // `add chain` of an existing chain is a no-op in nft, unless it tries
        // to change what the chain is attached to.
        Some(c) if body.is_empty() || c.base == base => Ok(()),
        Some(_) => Err(format!(
            "chain {name} exists with another type, hook or priority"
        )),
        None => {
            rs.chains.insert(
                name.to_string(),
                Chain {
                    name: name.to_string(),
                    base,
                    rules: Vec::new(),
                },
            );
            Ok(())
        }
    }
}

/// Checks what the kernel checks when a rule or element value is added.
fn check_refs(rs: &Ruleset, expr: &str) -> Result<(), String> {
    for r in references(expr) {
        match r {
            Reference::Chain(c) => match rs.chains.get(&c) {
                None => return Err(format!("jump/goto to chain {c}, which does not exist")),
                Some(ch) if ch.base.is_some() => {
                    return Err(format!("jump/goto to base chain {c} is not allowed"))
                }
                Some(_) => {}
            },
            Reference::Set(s) => {
                if !rs.sets.contains_key(&s) {
                    return Err(format!("@{s} does not exist"));
                }
            }
        }
    }
    Ok(())
}

fn add_rule(rs: &mut Ruleset, chain: &str, body: &str) -> Result<(), String> {
    let (expr, comment) = split_comment(body)?;
    if expr.is_empty() {
        return Err("a rule needs an expression".into());
    }
    check_refs(rs, expr)?;
    chain_mut(rs, chain)?.rules.push(Rule {
        expr: expr.to_string(),
        comment,
    });
    Ok(())
}

fn delete_chain(rs: &mut Ruleset, name: &str) -> Result<(), String> {
    let c = rs
        .chains
        .get(name)
        .ok_or_else(|| format!("chain {name} does not exist"))?;
    if !c.rules.is_empty() {
        return Err(format!("chain {name} still has rules (flush it first)"));
    }
    let target = Reference::Chain(name.to_string());
    for other in rs.chains.values() {
        if other
            .rules
            .iter()
            .any(|r| references(&r.expr).contains(&target))
        {
            return Err(format!(
                "chain {name} is still used by a rule in chain {}",
                other.name
            ));
        }
    }
    for s in rs.sets.values() {
        for e in s.elements.values() {
            if e.value
                .as_deref()
                .is_some_and(|v| references(v).contains(&target))
            {
                return Err(format!(
                    "chain {name} is still used by element {{ {} }} of map {}",
                    e.key, s.name
                ));
            }
        }
    }
    rs.chains.remove(name);
    Ok(())
}

fn add_set(rs: &mut Ruleset, kind: &str, name: &str, body: &str) -> Result<(), String> {
    let mut set = Set::new(name, "");
    let mut elements = None;
    for clause in body_clauses(body)? {
        if let Some(e) = clause.strip_prefix("elements = ") {
            elements = Some(e.to_string());
            continue;
        }
        let typed = clause
            .strip_prefix("type ")
            .map(|ty| (ty, ""))
            .or_else(|| clause.strip_prefix("typeof ").map(|ty| (ty, "typeof ")));
        if let Some((ty, declare)) = typed {
            match (kind, ty.split_once(" : ")) {
                ("map", Some((k, v))) => {
                    set.key_type = format!("{declare}{}", k.trim());
                    set.value_type = Some(v.trim().to_string());
                }
                ("set", None) => set.key_type = format!("{declare}{}", ty.trim()),
                _ => return Err(format!("a {kind} cannot have type {ty:?}")),
            }
        } else if let Some(flags) = clause.strip_prefix("flags ") {
            for f in flags.split(',') {
                let f = f.trim();
                set.flags
                    .insert(SetFlag::parse(f).ok_or_else(|| format!("unknown set flag {f:?}"))?);
            }
        } else if let Some(t) = clause.strip_prefix("timeout ") {
            let secs: u64 = t
                .strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("timeout {t:?}: expected whole seconds like 10800s"))?;
            set.timeout = Some(Duration::from_secs(secs));
        } else if let Some(c) = clause.strip_prefix("comment ") {
            set.comment = Some(unquote(c)?);
        } else {
            return Err(format!("unsupported {kind} clause {clause:?}"));
        }
    }
    if set.key_type.is_empty() {
        return Err(format!("a {kind} needs a type"));
    }
    match rs.sets.get(name) {
        Some(s) if s.same_definition(&set) && s.keyword() == kind => {}
        Some(_) => return Err(format!("{name} exists with another definition")),
        None => {
            rs.sets.insert(name.to_string(), set);
        }
    }
    match elements {
        Some(e) => add_element(rs, name, &e),
        None => Ok(()),
    }
}

fn delete_set(rs: &mut Ruleset, kind: &str, name: &str) -> Result<(), String> {
    set_mut(rs, kind, name)?;
    let target = Reference::Set(name.to_string());
    for c in rs.chains.values() {
        if c.rules
            .iter()
            .any(|r| references(&r.expr).contains(&target))
        {
            return Err(format!(
                "{kind} {name} is still used by a rule in chain {}",
                c.name
            ));
        }
    }
    rs.sets.remove(name);
    Ok(())
}

/// `{ KEY [comment "…"] [: VALUE] }`.
fn parse_element(body: &str) -> Result<Element, String> {
    let inner = body
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{ element }}, got {body:?}"))?
        .trim();
    if let Some(i) = inner.find(" comment \"") {
        let key = inner[..i].trim();
        let after = &inner[i + " comment ".len()..];
        let (quoted, value) = match after.find(" : ") {
            Some(j) => (&after[..j], Some(after[j + 3..].trim().to_string())),
            None => (after, None),
        };
        return Ok(Element {
            key: key.to_string(),
            value,
            comment: Some(unquote(quoted)?),
        });
    }
    let (key, value) = match inner.split_once(" : ") {
        Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
        None => (inner, None),
    };
    if key.is_empty() {
        return Err("an element needs a key".into());
    }
    Ok(Element {
        key: key.to_string(),
        value,
        comment: None,
    })
}

/// The elements of `{ e1, e2, … }`, split at commas outside quotes.
fn split_elements(body: &str) -> Result<Vec<String>, String> {
    let inner = body
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{ element, … }}, got {body:?}"))?;
    let mut out = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for ch in inner.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ',' if !quoted => out.push(format!("{{ {} }}", std::mem::take(&mut cur).trim())),
            _ => cur.push(ch),
        }
    }
    out.push(format!("{{ {} }}", cur.trim()));
    Ok(out)
}

fn add_element(rs: &mut Ruleset, set: &str, body: &str) -> Result<(), String> {
    for e in split_elements(body)? {
        add_one_element(rs, set, &e)?;
    }
    Ok(())
}

fn add_one_element(rs: &mut Ruleset, set: &str, body: &str) -> Result<(), String> {
    let e = parse_element(body)?;
    let s = rs
        .sets
        .get(set)
        .ok_or_else(|| format!("set or map {set} does not exist"))?;
    match (s.is_map(), &e.value) {
        (true, None) => return Err(format!("map {set} needs a value for {}", e.key)),
        (false, Some(_)) => return Err(format!("set {set} takes no value")),
        _ => {}
    }
    let arity = s.key_type.split(" . ").count();
    if e.key.split(" . ").count() != arity {
        return Err(format!(
            "key {:?} does not match type {}",
            e.key, s.key_type
        ));
    }
    if let Some(v) = &e.value {
        check_refs(rs, v)?;
    }
    let s = rs
        .sets
        .get_mut(set)
        .ok_or_else(|| format!("set or map {set} does not exist"))?;
    match s.elements.get(&e.key) {
        Some(old) if *old == e => Ok(()),
        Some(_) => Err(format!(
            "element {} of {set} exists with another value or comment",
            e.key
        )),
        None => {
            s.insert(e);
            Ok(())
        }
    }
}

fn delete_element(rs: &mut Ruleset, set: &str, body: &str) -> Result<(), String> {
    let e = parse_element(body)?;
    if e.value.is_some() || e.comment.is_some() {
        return Err("delete element takes only a key".into());
    }
    let s = rs
        .sets
        .get_mut(set)
        .ok_or_else(|| format!("set or map {set} does not exist"))?;
    s.elements
        .remove(&e.key)
        .map(|_| ())
        .ok_or_else(|| format!("element {} of {set} does not exist", e.key))
}

//! The typed nftables model: one table's desired content (chains, rules,
//! sets, maps, elements) as a plain value, validated, and rendered to the
//! `nft -f -` statements weft writes.
//!
//! Why a model at all: a compile step (Services → nft, NetworkPolicy → nft)
//! should produce a value that tests compare and a differ can reason about,
//! not a string. Rules stay validated strings (an nft expression is rich and
//! the kernel's parser is the authority); everything a diff or a delete order
//! depends on — names, base chain hooks, set types, element keys, and which
//! chains and sets a rule or element refers to — is typed or derived here.
//!
//! Priorities are kept as numbers and rendered as numbers: the named ones
//! (`dstnat`, `srcnat`, …) are constructors, because older `nft` releases do
//! not accept every name in every hook (knftables renders numbers for the
//! same reason), and a number is what `nft -j list` reports back. Only the
//! `ip`, `ip6` and `inet` families exist here, where the names mean the same.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::{quote, Family};

/// nft's limit for table, chain and set names (`NFT_NAME_MAXLEN` − 1).
pub const NAME_MAX: usize = 255;
/// nft's limit for comments (`NFT_USERDATA_MAXLEN` as nft enforces it).
pub const COMMENT_MAX: usize = 128;

/// Why a ruleset (or one of its objects) cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{object}: invalid name {name:?}: {why}")]
    Name {
        object: String,
        name: String,
        why: &'static str,
    },
    #[error("{object}: invalid comment {comment:?}: {why}")]
    Comment {
        object: String,
        comment: String,
        why: &'static str,
    },
    #[error("{object}: {field} {value:?}: {why}")]
    Field {
        object: String,
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("{object}: refers to {kind} {name:?}, which the ruleset does not define")]
    Dangling {
        object: String,
        kind: &'static str,
        name: String,
    },
    #[error(
        "{object}: jumps to base chain {name:?}; the kernel only allows jumps to regular chains"
    )]
    JumpToBaseChain { object: String, name: String },
}

/// A table: the unit one weft component owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub comment: Option<String>,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Table {
            family,
            name: name.into(),
            comment: None,
        }
    }

    /// `inet weft-proxy`: how statements address the table.
    pub fn spec(&self) -> String {
        format!("{} {}", self.family.as_str(), self.name)
    }

    /// `add table …`, with the comment when there is one.
    pub fn add_statement(&self) -> String {
        match &self.comment {
            Some(c) => format!("add table {} {{ comment {} ; }}", self.spec(), quote(c)),
            None => format!("add table {}", self.spec()),
        }
    }
}

/// The kind of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => return None,
        })
    }
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// A base chain priority (lower runs earlier). Build named ones with the
/// constants and [`Priority::offset`], e.g. `Priority::DSTNAT.offset(-10)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub i32);

impl Priority {
    pub const RAW: Priority = Priority(-300);
    pub const MANGLE: Priority = Priority(-150);
    pub const DSTNAT: Priority = Priority(-100);
    pub const FILTER: Priority = Priority(0);
    pub const SECURITY: Priority = Priority(50);
    pub const SRCNAT: Priority = Priority(100);

    /// The priority `by` after (positive) or before (negative) this one.
    pub const fn offset(self, by: i32) -> Priority {
        Priority(self.0 + by)
    }

    /// A named priority with an optional offset: `dstnat`, `srcnat + 10`, `-100`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return Some(Priority(n));
        }
        let (name, offset) = match s.find(['+', '-']) {
            Some(i) => {
                let n: i32 = s[i + 1..].trim().parse().ok()?;
                (s[..i].trim(), if &s[i..i + 1] == "-" { -n } else { n })
            }
            None => (s, 0),
        };
        let base = match name {
            "raw" => Priority::RAW,
            "mangle" => Priority::MANGLE,
            "dstnat" => Priority::DSTNAT,
            "filter" => Priority::FILTER,
            "security" => Priority::SECURITY,
            "srcnat" => Priority::SRCNAT,
            _ => return None,
        };
        Some(base.offset(offset))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a base chain does with a packet no rule decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Policy {
    #[default]
    Accept,
    Drop,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        }
    }
}

/// The hook attachment that makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseChain {
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: Priority,
    pub policy: Policy,
}

impl BaseChain {
    pub fn new(kind: ChainType, hook: Hook, priority: Priority) -> Self {
        BaseChain {
            kind,
            hook,
            priority,
            policy: Policy::Accept,
        }
    }
}

/// One rule: an nft expression (`ip daddr 10.96.0.10 tcp dport 53 jump svc-x`)
/// and an optional comment. The expression is validated for the things that
/// would break the surrounding script (newlines, `;`, unbalanced quotes or
/// braces, an inline `comment`), not parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub expr: String,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(expr: impl Into<String>) -> Self {
        Rule {
            expr: expr.into(),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// A chain: a base chain when `base` is set, a regular chain (only reachable
/// by `jump`/`goto`) when not. Its rules are written as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(name: impl Into<String>) -> Self {
        Chain {
            name: name.into(),
            base: None,
            rules: Vec::new(),
        }
    }

    pub fn base(name: impl Into<String>, base: BaseChain) -> Self {
        Chain {
            name: name.into(),
            base: Some(base),
            rules: Vec::new(),
        }
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// `add chain …` (no rules).
    pub fn add_statement(&self, table: &Table) -> String {
        match &self.base {
            Some(b) => format!(
                "add chain {} {} {{ type {} hook {} priority {} ; policy {} ; }}",
                table.spec(),
                self.name,
                b.kind.as_str(),
                b.hook.as_str(),
                b.priority,
                b.policy.as_str()
            ),
            None => format!("add chain {} {}", table.spec(), self.name),
        }
    }

    /// `add rule …` for one of this chain's rules.
    pub fn rule_statement(&self, table: &Table, rule: &Rule) -> String {
        match &rule.comment {
            Some(c) => format!(
                "add rule {} {} {} comment {}",
                table.spec(),
                self.name,
                rule.expr,
                quote(c)
            ),
            None => format!("add rule {} {} {}", table.spec(), self.name, rule.expr),
        }
    }
}

/// Set and map flags weft uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetFlag {
    /// Contents never change after creation.
    Constant,
    /// Elements may be prefixes and ranges (`10.0.0.0/8`, `1-1024`).
    Interval,
    /// Elements may carry timeouts.
    Timeout,
    /// Rules may add elements from the packet path (`update @set { … }`).
    Dynamic,
}

impl SetFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            SetFlag::Constant => "constant",
            SetFlag::Interval => "interval",
            SetFlag::Timeout => "timeout",
            SetFlag::Dynamic => "dynamic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "constant" => SetFlag::Constant,
            "interval" => SetFlag::Interval,
            "timeout" => SetFlag::Timeout,
            "dynamic" => SetFlag::Dynamic,
            _ => return None,
        })
    }
}

/// One element. `key` is the literal key (`10.96.0.10 . tcp . 80`, parts of a
/// concatenation joined by ` . `); `value` is set for map elements only
/// (`goto svc-x`, `10.244.1.5 . 8080`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub key: String,
    pub value: Option<String>,
    pub comment: Option<String>,
}

impl Element {
    pub fn key(key: impl Into<String>) -> Self {
        Element {
            key: key.into(),
            value: None,
            comment: None,
        }
    }

    pub fn map(key: impl Into<String>, value: impl Into<String>) -> Self {
        Element {
            key: key.into(),
            value: Some(value.into()),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// A named set, or a map when `value_type` is set. nft keeps sets and maps
/// in one namespace per table, so the ruleset does too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Set {
    pub name: String,
    /// `ipv4_addr`, or a concatenation `ipv4_addr . inet_proto . inet_service`.
    pub key_type: String,
    /// `verdict`, `ipv4_addr . inet_service`, …; `None` for a plain set.
    pub value_type: Option<String>,
    pub flags: BTreeSet<SetFlag>,
    /// Default element timeout (whole seconds).
    pub timeout: Option<Duration>,
    pub comment: Option<String>,
    /// Keyed by [`Element::key`].
    pub elements: BTreeMap<String, Element>,
}

impl Set {
    pub fn new(name: impl Into<String>, key_type: impl Into<String>) -> Self {
        Set {
            name: name.into(),
            key_type: key_type.into(),
            value_type: None,
            flags: BTreeSet::new(),
            timeout: None,
            comment: None,
            elements: BTreeMap::new(),
        }
    }

    pub fn map(
        name: impl Into<String>,
        key_type: impl Into<String>,
        value_type: impl Into<String>,
    ) -> Self {
        Set {
            value_type: Some(value_type.into()),
            ..Set::new(name, key_type)
        }
    }

    pub fn flag(mut self, flag: SetFlag) -> Self {
        self.flags.insert(flag);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    pub fn element(mut self, element: Element) -> Self {
        self.insert(element);
        self
    }

    pub fn insert(&mut self, element: Element) {
        self.elements.insert(element.key.clone(), element);
    }

    pub fn is_map(&self) -> bool {
        self.value_type.is_some()
    }

    /// `set` or `map`: the word nft statements use for this object.
    pub fn keyword(&self) -> &'static str {
        if self.is_map() {
            "map"
        } else {
            "set"
        }
    }

    /// Everything but the elements: if two sets differ here, the kernel
    /// object has to be deleted and created again.
    pub fn same_definition(&self, other: &Set) -> bool {
        self.name == other.name
            && self.key_type == other.key_type
            && self.value_type == other.value_type
            && self.flags == other.flags
            && self.timeout == other.timeout
            && self.comment == other.comment
    }

    /// True when the packet path owns the elements (`update @set`): a sync
    /// never writes or deletes them.
    pub fn is_dynamic(&self) -> bool {
        self.flags.contains(&SetFlag::Dynamic)
    }

    /// `add set …` / `add map …` (no elements).
    pub fn add_statement(&self, table: &Table) -> String {
        // `typeof EXPR` (e.g. `typeof numgen random mod 1`) declares the key
        // by an expression, for keys that have no named type.
        let declare = if self.key_type.starts_with("typeof ") {
            ""
        } else {
            "type "
        };
        let mut s = format!(
            "add {} {} {} {{ {declare}{}",
            self.keyword(),
            table.spec(),
            self.name,
            self.key_type
        );
        if let Some(v) = &self.value_type {
            s.push_str(" : ");
            s.push_str(v);
        }
        s.push_str(" ;");
        if !self.flags.is_empty() {
            let flags: Vec<&str> = self.flags.iter().map(|f| f.as_str()).collect();
            s.push_str(&format!(" flags {} ;", flags.join(",")));
        }
        if let Some(t) = self.timeout {
            s.push_str(&format!(" timeout {}s ;", t.as_secs()));
        }
        if let Some(c) = &self.comment {
            s.push_str(&format!(" comment {} ;", quote(c)));
        }
        s.push_str(" }");
        s
    }

    /// `add set …` with the set's elements in its body (`elements = { … }`)
    /// — how a sync creates a set. Element statements (`add element`) make
    /// nft 1.0 read every element of every set in the ruleset before the
    /// transaction (its cache fill, ~1 ms a set), whatever set they touch: at
    /// 20,000 sets one added element took 24 s, the same set created with
    /// its elements 0.02 s. Dynamic sets are created empty.
    pub fn add_statement_with_elements(&self, table: &Table) -> String {
        let mut s = self.add_statement(table);
        if self.is_dynamic() || self.elements.is_empty() {
            return s;
        }
        let body: Vec<String> = self.elements.values().map(element_text).collect();
        s.truncate(s.len() - 2);
        s.push_str(&format!(" elements = {{ {} }} ; }}", body.join(", ")));
        s
    }

    /// `add element …` for one element.
    pub fn add_element_statement(&self, table: &Table, e: &Element) -> String {
        let mut s = format!("add element {} {} {{ {}", table.spec(), self.name, e.key);
        if let Some(c) = &e.comment {
            s.push_str(&format!(" comment {}", quote(c)));
        }
        if let Some(v) = &e.value {
            s.push_str(" : ");
            s.push_str(v);
        }
        s.push_str(" }");
        s
    }

    /// `delete element …` for one key.
    pub fn delete_element_statement(&self, table: &Table, key: &str) -> String {
        format!("delete element {} {} {{ {key} }}", table.spec(), self.name)
    }
}

/// One table's desired content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub table: Table,
    /// Keyed by [`Chain::name`].
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps, keyed by [`Set::name`].
    pub sets: BTreeMap<String, Set>,
}

/// A chain or set named inside a rule or element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `jump NAME` / `goto NAME`.
    Chain(String),
    /// `@NAME`.
    Set(String),
}

/// The chains and sets an expression (rule or element value) refers to.
pub fn references(expr: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut after_verdict = false;
    for raw in expr.split_whitespace() {
        let tok = raw.trim_matches(|c| matches!(c, ',' | '{' | '}'));
        if after_verdict && !tok.is_empty() {
            out.push(Reference::Chain(tok.to_string()));
            after_verdict = false;
            continue;
        }
        if tok == "jump" || tok == "goto" {
            after_verdict = true;
        } else if let Some(name) = tok.strip_prefix('@') {
            out.push(Reference::Set(name.to_string()));
        }
    }
    out
}

impl Ruleset {
    pub fn new(table: Table) -> Self {
        Ruleset {
            table,
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a chain.
    pub fn add_chain(&mut self, chain: Chain) -> &mut Self {
        self.chains.insert(chain.name.clone(), chain);
        self
    }

    /// Adds (or replaces) a set or map.
    pub fn add_set(&mut self, set: Set) -> &mut Self {
        self.sets.insert(set.name.clone(), set);
        self
    }

    /// Appends a rule to an existing chain; false when there is no such chain.
    pub fn push_rule(&mut self, chain: &str, rule: Rule) -> bool {
        match self.chains.get_mut(chain) {
            Some(c) => {
                c.rules.push(rule);
                true
            }
            None => false,
        }
    }

    /// The statements that create this whole content in an empty table, in
    /// an order the kernel accepts: chains first (rules and map elements
    /// jump to them), then sets and maps, their elements, and the rules.
    pub fn create_statements(&self) -> Vec<String> {
        let t = &self.table;
        let mut out = vec![t.add_statement()];
        out.extend(self.chains.values().map(|c| c.add_statement(t)));
        out.extend(self.sets.values().map(|s| s.add_statement_with_elements(t)));
        for c in self.chains.values() {
            out.extend(c.rules.iter().map(|r| c.rule_statement(t, r)));
        }
        out
    }

    /// Checks every name, comment, type and reference; the first problem found.
    pub fn validate(&self) -> Result<(), ModelError> {
        let t = &self.table;
        let table_obj = format!("table {}", t.spec());
        check_name(&table_obj, &t.name)?;
        check_comment(&table_obj, t.comment.as_deref())?;
        for (key, c) in &self.chains {
            let obj = format!("chain {} {}", t.spec(), c.name);
            if *key != c.name {
                return Err(field(&obj, "map key", key, "must equal the chain's name"));
            }
            check_name(&obj, &c.name)?;
            if let Some(b) = &c.base {
                check_base(&obj, b)?;
            }
            for (i, r) in c.rules.iter().enumerate() {
                let obj = format!("{obj} rule {i}");
                check_expr(&obj, &r.expr)?;
                check_comment(&obj, r.comment.as_deref())?;
                self.check_references(&obj, &r.expr)?;
            }
        }
        for (key, s) in &self.sets {
            let obj = format!("{} {} {}", s.keyword(), t.spec(), s.name);
            if *key != s.name {
                return Err(field(&obj, "map key", key, "must equal the set's name"));
            }
            check_name(&obj, &s.name)?;
            check_comment(&obj, s.comment.as_deref())?;
            let key_arity = check_type(&obj, "type", &s.key_type)?;
            let value_arity = match &s.value_type {
                Some(v) => Some(check_type(&obj, "value type", v)?),
                None => None,
            };
            if let Some(tmo) = s.timeout {
                if tmo.subsec_nanos() != 0 || tmo.as_secs() == 0 {
                    return Err(field(
                        &obj,
                        "timeout",
                        &format!("{tmo:?}"),
                        "must be a whole, positive number of seconds",
                    ));
                }
            }
            for (k, e) in &s.elements {
                let eobj = format!("{obj} element {{ {k} }}");
                if *k != e.key {
                    return Err(field(&eobj, "map key", k, "must equal the element's key"));
                }
                check_literal(&eobj, "key", &e.key, key_arity)?;
                check_comment(&eobj, e.comment.as_deref())?;
                match (&e.value, value_arity, s.value_type.as_deref()) {
                    (None, None, _) => {}
                    (Some(v), Some(_), Some("verdict")) => {
                        check_verdict(&eobj, v)?;
                        self.check_references(&eobj, v)?;
                    }
                    (Some(v), Some(n), _) => check_literal(&eobj, "value", v, n)?,
                    (None, Some(_), _) => {
                        return Err(field(&eobj, "value", "", "a map element needs a value"))
                    }
                    (Some(v), None, _) => {
                        return Err(field(&eobj, "value", v, "a set element has no value"))
                    }
                }
            }
        }
        Ok(())
    }

    fn check_references(&self, obj: &str, expr: &str) -> Result<(), ModelError> {
        for r in references(expr) {
            match r {
                Reference::Chain(name) => match self.chains.get(&name) {
                    None => {
                        return Err(ModelError::Dangling {
                            object: obj.to_string(),
                            kind: "chain",
                            name,
                        })
                    }
                    Some(c) if c.base.is_some() => {
                        return Err(ModelError::JumpToBaseChain {
                            object: obj.to_string(),
                            name,
                        })
                    }
                    Some(_) => {}
                },
                Reference::Set(name) => {
                    if !self.sets.contains_key(&name) {
                        return Err(ModelError::Dangling {
                            object: obj.to_string(),
                            kind: "set or map",
                            name,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn field(object: &str, field: &'static str, value: &str, why: impl Into<String>) -> ModelError {
    ModelError::Field {
        object: object.to_string(),
        field,
        value: value.to_string(),
        why: why.into(),
    }
}

/// nft identifiers: a letter, then letters, digits, `/ \ _ . -`.
fn check_name(object: &str, name: &str) -> Result<(), ModelError> {
    let err = |why| ModelError::Name {
        object: object.to_string(),
        name: name.to_string(),
        why,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(err("must not be empty")),
        Some(c) if !c.is_ascii_alphabetic() => return Err(err("must start with a letter")),
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-')) {
        return Err(err("may hold only letters, digits and / _ . -"));
    }
    if name.len() > NAME_MAX {
        return Err(err("is longer than 255 bytes"));
    }
    Ok(())
}

fn check_comment(object: &str, comment: Option<&str>) -> Result<(), ModelError> {
    let Some(c) = comment else { return Ok(()) };
    let err = |why| ModelError::Comment {
        object: object.to_string(),
        comment: c.to_string(),
        why,
    };
    if c.contains(['"', '\n', '\r']) {
        return Err(err("must not contain double quotes or line breaks"));
    }
    if c.len() > COMMENT_MAX {
        return Err(err("is longer than 128 bytes"));
    }
    Ok(())
}

fn check_base(object: &str, b: &BaseChain) -> Result<(), ModelError> {
    let ok = match b.kind {
        ChainType::Filter => true,
        ChainType::Nat => matches!(
            b.hook,
            Hook::Prerouting | Hook::Input | Hook::Output | Hook::Postrouting
        ),
        ChainType::Route => b.hook == Hook::Output,
    };
    if ok {
        Ok(())
    } else {
        Err(field(
            object,
            "hook",
            b.hook.as_str(),
            format!("a {} chain cannot attach to this hook", b.kind.as_str()),
        ))
    }
}

/// A rule expression must stay one statement of the script.
fn check_expr(object: &str, expr: &str) -> Result<(), ModelError> {
    let bad = |why: &str| Err(field(object, "expression", expr, why));
    if expr.trim().is_empty() {
        return bad("must not be empty");
    }
    if expr.contains(['\n', '\r', ';', '#']) {
        return bad("must not contain line breaks, ';' or '#'");
    }
    let mut quoted = false;
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return bad("has an unbalanced '}'");
                }
            }
            _ => {}
        }
    }
    if quoted {
        return bad("has an unbalanced '\"'");
    }
    if depth != 0 {
        return bad("has an unbalanced '{'");
    }
    if expr.split_whitespace().any(|t| t == "comment") {
        return bad("must not hold a comment; use Rule::comment");
    }
    Ok(())
}

/// `KEY [comment "…"] [: VALUE]`, one element inside `{ … }`.
fn element_text(e: &Element) -> String {
    let mut s = e.key.clone();
    if let Some(c) = &e.comment {
        s.push_str(&format!(" comment {}", quote(c)));
    }
    if let Some(v) = &e.value {
        s.push_str(" : ");
        s.push_str(v);
    }
    s
}

/// A data type, possibly concatenated; returns how many parts it has.
fn check_type(object: &str, what: &'static str, ty: &str) -> Result<usize, ModelError> {
    // `typeof EXPR . EXPR …` for keys without a named type; the expressions
    // weft writes there.
    if let Some(expr) = ty.strip_prefix("typeof ") {
        let parts: Vec<&str> = expr.split(" . ").collect();
        for p in &parts {
            let w: Vec<&str> = p.split_whitespace().collect();
            let ok = match w.as_slice() {
                ["ip" | "ip6", "saddr" | "daddr"] | ["meta", "l4proto"] | ["th", "dport"] => true,
                ["numgen", "random", "mod", n] => n.parse::<u32>().is_ok_and(|n| n >= 1),
                _ => false,
            };
            if !ok {
                return Err(field(
                    object,
                    what,
                    ty,
                    "typeof keys may use ip/ip6 saddr/daddr, meta l4proto, th dport and numgen random mod N",
                ));
            }
        }
        return Ok(parts.len());
    }
    let parts: Vec<&str> = ty.split(" . ").collect();
    for p in &parts {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(field(
                object,
                what,
                ty,
                "expected type names like ipv4_addr joined by \" . \"",
            ));
        }
    }
    Ok(parts.len())
}

/// An element key or value: `arity` parts joined by ` . `, no script syntax.
/// A ':' would end the key in a map element, so it is allowed only inside an
/// IPv6 literal (hex digits, ':', '.', '/', '-').
fn check_literal(
    object: &str,
    what: &'static str,
    lit: &str,
    arity: usize,
) -> Result<(), ModelError> {
    let bad_part = |p: &str| {
        p.trim().is_empty()
            || p.contains(['"', ',', '{', '}', ';', '#', '\n', '\r'])
            || (p.contains(':')
                && !p
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '/' | '-')))
    };
    let parts: Vec<&str> = lit.split(" . ").collect();
    if parts.iter().any(|p| bad_part(p)) {
        return Err(field(
            object,
            what,
            lit,
            "must be plain literals joined by \" . \" (no quotes, , { } ; #, ':' only in IPv6)",
        ));
    }
    if parts.len() != arity {
        return Err(field(
            object,
            what,
            lit,
            format!("has {} parts but its type has {arity}", parts.len()),
        ));
    }
    Ok(())
}

fn check_verdict(object: &str, v: &str) -> Result<(), ModelError> {
    let words: Vec<&str> = v.split_whitespace().collect();
    let ok = matches!(
        words.as_slice(),
        ["accept" | "drop" | "continue" | "return"] | ["jump" | "goto", _]
    );
    if ok {
        Ok(())
    } else {
        Err(field(
            object,
            "value",
            v,
            "expected a verdict: accept, drop, continue, return, jump CHAIN or goto CHAIN",
        ))
    }
}

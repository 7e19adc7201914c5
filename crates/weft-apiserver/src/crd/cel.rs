//! `x-kubernetes-validations`: CEL rules of a CRD schema, evaluated with the
//! `cel` crate (cel-rust) with `self` bound to the value of the node the rule
//! sits on and `oldSelf` to its previous value on updates.
//!
//! As kube-apiserver (apiextensions-apiserver `pkg/apiserver/schema/cel`): a
//! rule that does not hold is a field error at the rule's node (or its
//! `fieldPath`), with its `message` (or `messageExpression`, or
//! `failed rule: <rule>`) and `reason`; a transition rule (one naming
//! `oldSelf`) is evaluated only on updates where the old value exists.
//! Unlike upstream, whose CEL environment carries the Kubernetes library
//! (`isURL`, `quantity`, `format.dns1123Label()`...) and type-checks rules
//! against the schema, this one has CEL's standard library with the
//! strings and lists extensions: a rule it cannot compile or evaluate is
//! let through, and the request answers with a `Warning` naming the rule —
//! never a rejection the real server would not make.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::status::Cause;

use super::schema::Schema;

thread_local! {
    /// Warnings of the request being served on this thread (dispatch is
    /// synchronous: set and drained within one call).
    static WARNINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records a warning for the request being served on this thread.
pub fn warn(w: String) {
    WARNINGS.with(|ws| {
        let mut ws = ws.borrow_mut();
        if !ws.contains(&w) {
            ws.push(w);
        }
    });
}

/// Takes the warnings recorded on this thread.
pub fn take_warnings() -> Vec<String> {
    WARNINGS.with(|ws| std::mem::take(&mut *ws.borrow_mut()))
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub field_path: String,
    pub reason: &'static str,
    /// Names `oldSelf`: evaluated on updates only.
    pub transition: bool,
    pub optional_old_self: bool,
    /// The compiled rule, or why it does not compile here.
    program: Result<Arc<cel::Program>, String>,
}

fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Both extensions only declare functions; failing to add one leaves
        // rules that use it to the "cannot evaluate" warning path.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    })
}

impl Rule {
    /// Parses one entry; `Err` says what is missing or wrong.
    pub fn parse(v: &Value) -> Result<Rule, String> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let rule = s("rule");
        if rule.trim().is_empty() {
            return Err("rule is not specified".to_string());
        }
        let reason = match s("reason").as_str() {
            "" | "FieldValueInvalid" => "FieldValueInvalid",
            "FieldValueForbidden" => "FieldValueForbidden",
            "FieldValueRequired" => "FieldValueRequired",
            "FieldValueDuplicate" => "FieldValueDuplicate",
            other => {
                return Err(format!(
                    "reason {other:?} is not one of FieldValueInvalid, FieldValueForbidden, FieldValueRequired, FieldValueDuplicate"
                ))
            }
        };
        let program = env()
            .compile(&rule)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        let transition = program
            .as_ref()
            .map(|p| p.references().has_variable("oldSelf"))
            .unwrap_or_else(|_| rule.contains("oldSelf"));
        Ok(Rule {
            message: s("message"),
            message_expression: s("messageExpression"),
            field_path: s("fieldPath"),
            reason,
            transition,
            optional_old_self: v
                .get("optionalOldSelf")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            program,
            rule,
        })
    }

    /// Why this rule cannot be compiled here, if it cannot.
    pub fn compile_error(&self) -> Option<&str> {
        self.program.as_ref().err().map(String::as_str)
    }
}

/// JSON as a CEL value (integers as `int`, objects as maps).
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<cel::objects::Key, cel::Value> = m
                .iter()
                .map(|(k, v)| (cel::objects::Key::from(k.clone()), to_cel(v)))
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

/// Evaluates every rule of `s` and below on `v` (old value `old`).
pub fn check(v: &Value, old: Option<&Value>, s: &Schema, at: &str, causes: &mut Vec<Cause>) {
    for r in &s.rules {
        eval(r, v, old, at, causes);
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(cs) = s.property(k) {
                    let o = old.and_then(|o| o.get(k));
                    check(child, o, cs, &join(at, k), causes);
                }
            }
        }
        Value::Array(a) => {
            let Some(is) = &s.items else { return };
            for (i, item) in a.iter().enumerate() {
                // Items correlate with old ones only in map lists (by key).
                let o = if s.list_type == "map" {
                    old.and_then(Value::as_array).and_then(|olds| {
                        olds.iter().find(|o| {
                            s.list_map_keys
                                .iter()
                                .all(|key| o.get(key) == item.get(key))
                        })
                    })
                } else {
                    None
                };
                check(item, o, is, &format!("{at}[{i}]"), causes);
            }
        }
        _ => {}
    }
}

fn eval(r: &Rule, v: &Value, old: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    if r.transition && old.is_none() && !r.optional_old_self {
        return;
    }
    let program = match &r.program {
        Ok(p) => p,
        Err(e) => {
            warn(format!(
                "x-kubernetes-validations rule {:?} at {} was not checked: the embedded server cannot compile it: {e}",
                r.rule,
                if at.is_empty() { "<root>" } else { at }
            ));
            return;
        }
    };
    let mut ctx = cel::Context::with_env(env().clone());
    ctx.add_variable_from_value("self", to_cel(v));
    match old {
        Some(o) => ctx.add_variable_from_value("oldSelf", to_cel(o)),
        None if r.transition => ctx.add_variable_from_value("oldSelf", cel::Value::Null),
        None => {}
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(&ctx)));
    match result {
        Ok(Ok(cel::Value::Bool(true))) => {}
        Ok(Ok(cel::Value::Bool(false))) => {
            let field = if r.field_path.is_empty() {
                at.to_string()
            } else {
                join(at, r.field_path.trim_start_matches('.'))
            };
            let msg = message(r, &ctx);
            let message = match r.reason {
                "FieldValueForbidden" => format!("Forbidden: {msg}"),
                "FieldValueRequired" => format!("Required value: {msg}"),
                "FieldValueDuplicate" => format!("Duplicate value: {msg}"),
                _ => format!(
                    "Invalid value: \"{}\": {msg}",
                    super::schema::type_name(v)
                ),
            };
            causes.push(Cause {
                reason: r.reason,
                field,
                message,
            });
        }
        Ok(Ok(other)) => warn(format!(
            "x-kubernetes-validations rule {:?} at {} was not checked: it evaluated to {other:?}, not a bool",
            r.rule,
            if at.is_empty() { "<root>" } else { at }
        )),
        Ok(Err(e)) => warn(format!(
            "x-kubernetes-validations rule {:?} at {} was not checked: the embedded server cannot evaluate it: {e}",
            r.rule,
            if at.is_empty() { "<root>" } else { at }
        )),
        Err(_) => warn(format!(
            "x-kubernetes-validations rule {:?} at {} was not checked: evaluating it failed",
            r.rule,
            if at.is_empty() { "<root>" } else { at }
        )),
    }
}

/// The failure message: `messageExpression` if it yields a non-empty
/// string, else `message`, else `failed rule: <rule>`.
fn message(r: &Rule, ctx: &cel::Context) -> String {
    if !r.message_expression.is_empty() {
        if let Ok(p) = env().compile(&r.message_expression) {
            if let Ok(Ok(cel::Value::String(s))) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.execute(ctx)))
            {
                if !s.trim().is_empty() {
                    return s.to_string();
                }
            }
        }
    }
    if !r.message.is_empty() {
        return r.message.clone();
    }
    format!("failed rule: {}", r.rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(rules: Value) -> Schema {
        let mut c = Vec::new();
        let s = Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-validations": rules}}}),
            "s",
            &mut c,
        );
        assert!(c.is_empty(), "{c:?}");
        s
    }

    fn run(rules: Value, v: Value, old: Option<Value>) -> (Vec<Cause>, Vec<String>) {
        take_warnings();
        let s = schema(rules);
        let mut c = Vec::new();
        check(
            &json!({ "spec": v }),
            old.map(|o| json!({ "spec": o })).as_ref(),
            &s,
            "",
            &mut c,
        );
        (c, take_warnings())
    }

    #[test]
    fn a_failing_rule_reports_its_message_at_its_node() {
        let (c, w) = run(
            json!([{"rule": "self.min <= self.max", "message": "min must not exceed max"}]),
            json!({"min": 5, "max": 1}),
            None,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec");
        assert_eq!(
            c[0].message,
            "Invalid value: \"object\": min must not exceed max"
        );
        let (c, _) = run(
            json!([{"rule": "self.min <= self.max"}]),
            json!({"min": 1, "max": 5}),
            None,
        );
        assert!(c.is_empty());
    }

    #[test]
    fn field_path_reason_and_default_message() {
        let (c, _) = run(
            json!([{"rule": "has(self.name)", "fieldPath": ".name", "reason": "FieldValueRequired"}]),
            json!({}),
            None,
        );
        assert_eq!(c[0].field, "spec.name");
        assert_eq!(c[0].reason, "FieldValueRequired");
        assert_eq!(c[0].message, "Required value: failed rule: has(self.name)");
    }

    #[test]
    fn message_expression_is_used() {
        let (c, _) = run(
            json!([{"rule": "self.n < 3", "messageExpression": "'n is ' + string(self.n)"}]),
            json!({"n": 7}),
            None,
        );
        assert_eq!(c[0].message, "Invalid value: \"object\": n is 7");
    }

    #[test]
    fn transition_rules_run_on_updates_only() {
        let rules = json!([{"rule": "self.mode == oldSelf.mode", "message": "mode is immutable"}]);
        assert!(run(rules.clone(), json!({"mode": "a"}), None).0.is_empty());
        let (c, _) = run(rules, json!({"mode": "a"}), Some(json!({"mode": "b"})));
        assert_eq!(c[0].message, "Invalid value: \"object\": mode is immutable");
    }

    #[test]
    fn an_unknown_function_is_let_through_with_a_warning() {
        let (c, w) = run(
            json!([{"rule": "self.url.isURL()"}]),
            json!({"url": "x"}),
            None,
        );
        assert!(c.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("self.url.isURL()"), "{w:?}");
    }

    #[test]
    fn a_rule_that_does_not_parse_is_let_through_with_a_warning() {
        let (c, w) = run(json!([{"rule": "self.a ==="}]), json!({"a": 1}), None);
        assert!(c.is_empty());
        assert!(w[0].contains("cannot compile"), "{w:?}");
    }
}

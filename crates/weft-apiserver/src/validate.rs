//! Per-kind validation, defaulting and allocation (ClusterIP, NodePort,
//! healthCheckNodePort, podCIDR).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::selector::LabelSelector;
use crate::status::{ApiError, Cause};
use crate::store::{meta_str, State};
use crate::ApiServerConfig;

/// DNS-1123 label: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    NameRule::Dns1123Label.check(s).is_empty()
}

/// The syntax a name must follow (upstream's `k8s.io/apimachinery/pkg/util/validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
    Dns1123Label,
    /// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
    Dns1035Label,
    /// Dot-separated DNS-1123 label syntax, at most 253 characters in total.
    Dns1123Subdomain,
    /// Anything usable as one URL path segment: not `.` or `..`, no `/` or
    /// `%` (upstream's `IsValidPathSegmentName`, the rule for RBAC names
    /// such as `system:basic-user`).
    PathSegment,
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One dot-free part: `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (first character checked by the caller's rule).
fn label_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => alnum(*f) && alnum(*l) && b.iter().all(|c| alnum(*c) || *c == b'-'),
        _ => false,
    }
}

impl NameRule {
    /// The rule upstream applies to `metadata.name` of a kind: Services are
    /// DNS-1035 labels (their name becomes a DNS label and an env var
    /// prefix, so it must start with a letter), Namespaces DNS-1123 labels
    /// (a namespace is one label of `<svc>.<ns>.svc.cluster.local`), RBAC
    /// objects path segments (`system:basic-user`), every other served kind a
    /// DNS-1123 subdomain.
    pub fn for_kind(kind: &Kind) -> NameRule {
        match kind.plural {
            "services" => NameRule::Dns1035Label,
            "namespaces" => NameRule::Dns1123Label,
            "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => {
                NameRule::PathSegment
            }
            _ => NameRule::Dns1123Subdomain,
        }
    }

    /// What the rule is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            NameRule::Dns1123Label => "a lowercase RFC 1123 label",
            NameRule::Dns1035Label => "a DNS-1035 label",
            NameRule::Dns1123Subdomain => "a lowercase RFC 1123 subdomain",
            NameRule::PathSegment => "a path segment name",
        }
    }

    fn max_len(self) -> usize {
        match self {
            NameRule::Dns1123Label | NameRule::Dns1035Label => 63,
            NameRule::Dns1123Subdomain => 253,
            NameRule::PathSegment => usize::MAX,
        }
    }

    /// Upstream's messages for `s`, empty when it is valid.
    pub fn check(self, s: &str) -> Vec<String> {
        if self == NameRule::PathSegment {
            return path_segment_problems(s);
        }
        let mut out = Vec::new();
        if s.len() > self.max_len() {
            out.push(format!(
                "must be no more than {} characters",
                self.max_len()
            ));
        }
        let ok = match self {
            NameRule::Dns1123Label => label_chars_ok(s),
            NameRule::Dns1035Label => {
                label_chars_ok(s) && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            }
            NameRule::Dns1123Subdomain => s.split('.').all(label_chars_ok),
            // Checked by path_segment_problems above.
            NameRule::PathSegment => true,
        };
        if !ok {
            out.push(match self {
                NameRule::Dns1123Label => "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                NameRule::Dns1035Label => "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                NameRule::Dns1123Subdomain | NameRule::PathSegment => "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            }.to_string());
        }
        out
    }
}

/// Upstream's `IsValidPathSegmentName` messages.
fn path_segment_problems(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ['/', '%']
        .into_iter()
        .filter(|c| s.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Shows a value the way upstream's field errors do (quoted, long values cut).
fn shown(s: &str) -> String {
    if s.chars().count() > 80 {
        let head: String = s.chars().take(64).collect();
        format!("\"{head}...\" ({} characters)", s.len())
    } else {
        format!("\"{s}\"")
    }
}

/// Causes for `value` at `field` breaking `rule`; `whose` says why the rule
/// applies (e.g. "a Service name"), appended to the length message, which
/// does not name the rule by itself.
fn rule_causes(rule: NameRule, field: &str, value: &str, whose: &str) -> Vec<Cause> {
    rule.check(value)
        .into_iter()
        .map(|m| {
            let why = if m.starts_with("must be no more than") {
                format!("{m} ({whose} must be {})", rule.describe())
            } else {
                m
            };
            Cause::invalid(field, shown(value), &why)
        })
        .collect()
}

pub fn validate_name(kind: &Kind, name: &str) -> Result<(), Vec<Cause>> {
    if name.is_empty() {
        return Err(vec![Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        }]);
    }
    let rule = NameRule::for_kind(kind);
    let causes = rule_causes(
        rule,
        "metadata.name",
        name,
        &format!("a {} name", kind.kind),
    );
    if causes.is_empty() {
        Ok(())
    } else {
        Err(causes)
    }
}

fn decode<T: DeserializeOwned>(obj: &Value) -> Result<(), Cause> {
    match serde_path_to_error::deserialize::<_, T>(obj) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            if let Some(rest) = inner.strip_prefix("missing field `") {
                let field = rest.split('`').next().unwrap_or_default();
                let full = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return Err(Cause::required(full));
            }
            Err(Cause {
                reason: "FieldValueInvalid",
                message: format!("{path}: {inner}"),
                field: path,
            })
        }
    }
}

/// Checks that the object decodes into the k8s-openapi type of its kind.
pub fn decode_check(kind: &Kind, obj: &Value) -> Result<(), Cause> {
    use k8s_openapi::api::{apps, coordination, core, discovery, networking, rbac};
    match kind.plural {
        "namespaces" => decode::<core::v1::Namespace>(obj),
        "nodes" => decode::<core::v1::Node>(obj),
        "pods" => decode::<core::v1::Pod>(obj),
        "services" => decode::<core::v1::Service>(obj),
        "endpoints" => decode::<core::v1::Endpoints>(obj),
        "secrets" => decode::<core::v1::Secret>(obj),
        "configmaps" => decode::<core::v1::ConfigMap>(obj),
        "events" => decode::<core::v1::Event>(obj),
        "serviceaccounts" => decode::<core::v1::ServiceAccount>(obj),
        "deployments" => decode::<apps::v1::Deployment>(obj),
        "statefulsets" => decode::<apps::v1::StatefulSet>(obj),
        "replicasets" => decode::<apps::v1::ReplicaSet>(obj),
        "daemonsets" => decode::<apps::v1::DaemonSet>(obj),
        "endpointslices" => decode::<discovery::v1::EndpointSlice>(obj),
        "networkpolicies" => decode::<networking::v1::NetworkPolicy>(obj),
        "ingresses" => decode::<networking::v1::Ingress>(obj),
        "ingressclasses" => decode::<networking::v1::IngressClass>(obj),
        "leases" => decode::<coordination::v1::Lease>(obj),
        "roles" => decode::<rbac::v1::Role>(obj),
        "clusterroles" => decode::<rbac::v1::ClusterRole>(obj),
        "rolebindings" => decode::<rbac::v1::RoleBinding>(obj),
        "clusterrolebindings" => decode::<rbac::v1::ClusterRoleBinding>(obj),
        _ => Ok(()),
    }
}

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), v);
        }
    }
}

fn ensure_object<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = json!({});
    }
    &mut obj[key]
}

/// Lowest free address of the service CIDR for dynamic allocation. Addresses
/// below offset 16 (10.96.0.1 … 10.96.0.15) are left for static requests
/// (kubernetes = .1, cluster DNS = .10); the network and broadcast addresses
/// are never used.
pub fn alloc_cluster_ip(cidr: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(cidr.network());
    let last = u32::from(cidr.broadcast());
    let start = base.saturating_add(16).min(last);
    (start..last)
        .chain(base + 2..start)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

/// Lowest free port of the range.
pub fn alloc_node_port(range: (u16, u16), used: &HashSet<u16>) -> Option<u16> {
    (range.0..=range.1).find(|p| !used.contains(p))
}

/// Lowest /24 of the cluster CIDR that overlaps no used CIDR.
pub fn alloc_pod_cidr(cluster: Ipv4Net, used: &BTreeMap<Ipv4Net, String>) -> Option<Ipv4Net> {
    cluster
        .subnets(24)
        .ok()?
        .find(|n| !used.keys().any(|u| overlaps(u, n)))
}

fn is_other(obj: &Value, ns: &str, name: &str) -> bool {
    meta_str(obj, "name") != Some(name) || meta_str(obj, "namespace").unwrap_or_default() != ns
}

fn used_cluster_ips(st: &State, ns: &str, name: &str) -> HashSet<Ipv4Addr> {
    let mut out = HashSet::new();
    for (key, obj) in &st.objects {
        if key.0 != "services" || !is_other(obj, ns, name) {
            continue;
        }
        if let Some(ips) = obj.pointer("/spec/clusterIPs").and_then(Value::as_array) {
            out.extend(
                ips.iter()
                    .filter_map(|i| i.as_str()?.parse::<Ipv4Addr>().ok()),
            );
        }
        if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
            out.extend(ip.parse::<Ipv4Addr>().ok());
        }
    }
    out
}

fn used_node_ports(st: &State, ns: &str, name: &str) -> HashSet<u16> {
    let mut out = HashSet::new();
    for (key, obj) in &st.objects {
        if key.0 != "services" || !is_other(obj, ns, name) {
            continue;
        }
        for p in obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                out.insert(np as u16);
            }
        }
        if let Some(np) = obj
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_u64)
        {
            out.insert(np as u16);
        }
    }
    out
}

/// Every other node's pod CIDRs, with the node's name.
fn used_pod_cidrs(st: &State, name: &str) -> BTreeMap<Ipv4Net, String> {
    let mut out = BTreeMap::new();
    for (key, obj) in &st.objects {
        if key.0 != "nodes" || meta_str(obj, "name") == Some(name) {
            continue;
        }
        let single = obj.pointer("/spec/podCIDR").and_then(Value::as_str);
        let list = obj
            .pointer("/spec/podCIDRs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for c in single.into_iter().chain(list) {
            if let Ok(c) = c.parse::<Ipv4Net>() {
                out.insert(c, key.2.clone());
            }
        }
    }
    out
}

/// Validates, defaults and allocates for one create (`old` = None) or update.
pub fn prepare(
    cfg: &ApiServerConfig,
    st: &State,
    kind: &'static Kind,
    ns: &str,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let invalid = |causes: Vec<Cause>| ApiError::invalid(kind.kind, kind.plural, name, causes);
    if let Err(c) = validate_name(kind, name) {
        return Err(invalid(c));
    }
    if kind.custom {
        return crate::crd::prepare_object(st, kind, name, obj, old);
    }
    if let Err(c) = decode_check(kind, obj) {
        return Err(invalid(vec![c]));
    }
    let mut causes = Vec::new();
    match kind.plural {
        "services" => service(cfg, st, ns, name, obj, old, &mut causes),
        "secrets" => secret(obj, old, &mut causes),
        "pods" => pod(obj, &mut causes),
        "nodes" => node(cfg, st, name, obj, old, &mut causes),
        "namespaces" => {
            let status = ensure_object(obj, "status");
            set_default(status, "phase", json!("Active"));
            // kube-apiserver sets it on every write (since 1.21), whatever
            // the client sent: NetworkPolicies select namespaces by it.
            let meta = ensure_object(obj, "metadata");
            let labels = ensure_object(meta, "labels");
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        "networkpolicies" => network_policy_defaults(obj),
        "deployments" | "statefulsets" | "replicasets" | "daemonsets" => {
            workload(kind, obj, &mut causes)
        }
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => {
            crate::rbac::validation::validate(kind.plural, obj, old, &mut causes);
        }
        "customresourcedefinitions" => crate::crd::validate_crd(obj, old, &mut causes),
        "endpointslices" => {
            let at = obj
                .get("addressType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if at.is_empty() {
                causes.push(Cause::required("addressType"));
            } else if !matches!(at, "IPv4" | "IPv6" | "FQDN") {
                causes.push(Cause::unsupported(
                    "addressType",
                    at,
                    &["FQDN", "IPv4", "IPv6"],
                ));
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(causes))
    }
}

/// networking/v1 defaults (`SetDefaults_NetworkPolicy*`): a port's protocol
/// is TCP; `policyTypes` unset becomes Ingress, plus Egress when there are
/// egress rules.
fn network_policy_defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for dir in ["ingress", "egress"] {
        for rule in spec
            .get_mut(dir)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for port in rule
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = port.as_object_mut() {
                    p.entry("protocol").or_insert(json!("TCP"));
                }
            }
        }
    }
    if spec.get("policyTypes").is_none_or(Value::is_null) {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let mut types = vec![json!("Ingress")];
        if egress {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

/// kube's `MaxSecretSize`: the data of one Secret, decoded.
const MAX_SECRET_BYTES: usize = 1 << 20;

/// Secrets as kube-apiserver stores them: `stringData` merged into `data`
/// (base64) and dropped, `type` defaulted to Opaque and immutable, keys
/// made of `-._a-zA-Z0-9`, at most 1 MiB of data, and the keys a type
/// requires (`kubernetes.io/tls`: `tls.crt` and `tls.key`;
/// `kubernetes.io/basic-auth`: `username` or `password`).
fn secret(obj: &mut Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let string_data = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let mut size = 0usize;
    {
        let data = ensure_object(obj, "data");
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            data[k.as_str()] = json!(b64.encode(text));
        }
        if let Some(m) = data.as_object() {
            for (k, v) in m {
                let field = format!("data[{k}]");
                let key_ok = !k.is_empty()
                    && k.len() <= 253
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !key_ok || k == "." || k == ".." {
                    causes.push(Cause::invalid(
                        &field,
                        k,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    ));
                }
                size += v
                    .as_str()
                    .and_then(|t| b64.decode(t).ok())
                    .map_or(0, |d| d.len());
            }
        }
        if data.as_object().is_some_and(|m| m.is_empty()) {
            if let Some(m) = obj.as_object_mut() {
                m.remove("data");
            }
        }
    }
    if size > MAX_SECRET_BYTES {
        causes.push(Cause::invalid(
            "data",
            format!("{size} bytes"),
            &format!("Too long: must have at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    set_default(obj, "type", json!("Opaque"));
    let ty = str_field(obj, "type");
    if let Some(old) = old {
        let before = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if before != ty {
            causes.push(Cause::invalid("type", &ty, "field is immutable"));
        }
    }
    let has = |key: &str| obj.pointer(&format!("/data/{key}")).is_some();
    match ty.as_str() {
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    causes.push(Cause::required(format!("data[{key}]")));
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            causes.push(Cause::required("data[username]"));
        }
        _ => {}
    }
}

fn workload(kind: &Kind, obj: &mut Value, causes: &mut Vec<Cause>) {
    let spec = ensure_object(obj, "spec");
    if kind.plural != "daemonsets" {
        set_default(spec, "replicas", json!(1));
    }
    if kind.plural != "replicasets" {
        set_default(spec, "revisionHistoryLimit", json!(10));
    }
    match kind.plural {
        "daemonsets" => set_default(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        ),
        "deployments" => {
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
        }
        "statefulsets" => {
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
        }
        _ => {}
    }
    let Some(sel) = spec.get("selector").filter(|s| s.is_object()) else {
        causes.push(Cause::required("spec.selector"));
        return;
    };
    match LabelSelector::from_json(sel) {
        Err(e) => causes.push(Cause::invalid("spec.selector", "selector", &e)),
        Ok(s) if s.is_empty() => causes.push(Cause::invalid(
            "spec.selector",
            "{}",
            "empty selector is invalid for deployment",
        )),
        Ok(s) => {
            let labels = spec
                .pointer("/template/metadata/labels")
                .and_then(Value::as_object);
            if !s.matches_labels(labels) {
                let shown = spec
                    .pointer("/template/metadata/labels")
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "null".into());
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    shown,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(tpl) = spec.pointer_mut("/template/spec") {
        pod_spec(tpl, "spec.template.spec", causes);
    }
}

fn pod(obj: &mut Value, causes: &mut Vec<Cause>) {
    let spec = ensure_object(obj, "spec");
    pod_spec(spec, "spec", causes);
}

fn pod_spec(spec: &mut Value, at: &str, causes: &mut Vec<Cause>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    // The node sets the pod's UTS hostname to these (and DNS serves
    // <hostname>.<subdomain>.<ns>.svc): each must be one DNS label.
    for key in ["hostname", "subdomain"] {
        match spec.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v.is_empty() => {}
            Some(Value::String(v)) => causes.extend(rule_causes(
                NameRule::Dns1123Label,
                &format!("{at}.{key}"),
                v,
                &format!("a pod {key}"),
            )),
            // decode_check has refused non-strings already.
            Some(_) => {}
        }
    }
    let containers = spec.get_mut("containers").and_then(Value::as_array_mut);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{at}.containers")));
        return;
    };
    let mut names = HashSet::new();
    for (i, c) in containers.iter_mut().enumerate() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.containers[{i}].name")));
        } else if !is_dns_label(&name) {
            causes.extend(rule_causes(
                NameRule::Dns1123Label,
                &format!("{at}.containers[{i}].name"),
                &name,
                "a container name",
            ));
        } else if !names.insert(name.clone()) {
            causes.push(Cause::duplicate(
                format!("{at}.containers[{i}].name"),
                format!("\"{name}\""),
            ));
        }
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if image.is_empty()
            || image.ends_with(":latest")
            || !image.rsplit('/').next().unwrap_or_default().contains(':')
        {
            "Always"
        } else {
            "IfNotPresent"
        };
        set_default(c, "imagePullPolicy", json!(policy));
        set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
        set_default(c, "terminationMessagePolicy", json!("File"));
        set_default(c, "resources", json!({}));
        for (j, p) in c
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .enumerate()
        {
            set_default(p, "protocol", json!("TCP"));
            let cp = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&cp) {
                causes.push(Cause::invalid(
                    format!("{at}.containers[{i}].ports[{j}].containerPort"),
                    cp,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            check_protocol(
                p,
                &format!("{at}.containers[{i}].ports[{j}].protocol"),
                causes,
            );
        }
    }
}

fn check_protocol(port: &Value, field: &str, causes: &mut Vec<Cause>) {
    let proto = port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP");
    if !matches!(proto, "TCP" | "UDP" | "SCTP") {
        causes.push(Cause::unsupported(field, proto, &["SCTP", "TCP", "UDP"]));
    }
}

/// Whether two CIDRs share any address.
fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Node podCIDR: allocated from the cluster CIDR when absent (and kept on
/// an update that omits it), otherwise checked the way the node IPAM
/// controller would refuse it: inside the cluster CIDR, no shorter prefix
/// than the cluster CIDR's, no overlap with another node's. An update that
/// keeps the stored value is not re-checked.
fn node(
    cfg: &ApiServerConfig,
    st: &State,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    let used = used_pod_cidrs(st, name);
    let spec = ensure_object(obj, "spec");
    let single = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let list: Vec<String> = spec
        .get("podCIDRs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if list.len() > 1 {
        causes.push(Cause::invalid(
            "spec.podCIDRs",
            format!("{list:?}"),
            "may specify no more than one CIDR: this cluster is single-stack IPv4",
        ));
        return;
    }
    if let Some(first) = list.first() {
        if !single.is_empty() && *first != single {
            causes.push(Cause::invalid(
                "spec.podCIDRs[0]",
                format!("\"{first}\""),
                &format!("must equal spec.podCIDR (\"{single}\")"),
            ));
            return;
        }
    }
    let (requested, field) = match list.first() {
        Some(first) if single.is_empty() => (first.clone(), "spec.podCIDRs[0]"),
        _ => (single, "spec.podCIDR"),
    };
    let old_cidr = old
        .and_then(|o| o.pointer("/spec/podCIDR"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let cidr = if requested.is_empty() && !old_cidr.is_empty() {
        old_cidr.to_string()
    } else if requested.is_empty() {
        match alloc_pod_cidr(cfg.cluster_cidr, &used) {
            Some(c) => c.to_string(),
            None => {
                causes.push(Cause::invalid(
                    "spec.podCIDR",
                    "\"\"",
                    &format!(
                        "no free pod CIDR left in the cluster CIDR {}",
                        cfg.cluster_cidr
                    ),
                ));
                return;
            }
        }
    } else if requested == old_cidr {
        requested
    } else {
        match check_pod_cidr(cfg.cluster_cidr, &used, &requested) {
            Ok(()) => requested,
            Err(why) => {
                causes.push(Cause::invalid(field, format!("\"{requested}\""), &why));
                return;
            }
        }
    };
    spec["podCIDR"] = json!(cidr);
    spec["podCIDRs"] = json!([cidr]);
}

/// Why `requested` cannot be a node's podCIDR, if it cannot.
fn check_pod_cidr(
    cluster: Ipv4Net,
    used: &BTreeMap<Ipv4Net, String>,
    requested: &str,
) -> Result<(), String> {
    let c = requested
        .parse::<Ipv4Net>()
        .map_err(|_| "must be a valid IPv4 CIDR (e.g. 10.244.1.0/24)".to_string())?;
    if c.prefix_len() < cluster.prefix_len() {
        return Err(format!(
            "prefix /{} is shorter than the cluster CIDR's /{} ({cluster}): a node's pod CIDR must be a part of the cluster CIDR",
            c.prefix_len(),
            cluster.prefix_len()
        ));
    }
    if !cluster.contains(&c) {
        return Err(format!("must lie inside the cluster CIDR {cluster}"));
    }
    if let Some((other, node)) = used.iter().find(|(u, _)| overlaps(u, &c)) {
        return Err(format!("overlaps {other}, the pod CIDR of node \"{node}\""));
    }
    Ok(())
}

fn service(
    cfg: &ApiServerConfig,
    st: &State,
    ns: &str,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    let spec = ensure_object(obj, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    let stype = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let allowed = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !allowed.contains(&stype.as_str()) {
        causes.push(Cause::unsupported("spec.type", &stype, &allowed));
        return;
    }
    let old_spec = old.and_then(|o| o.get("spec"));
    session_affinity(spec, causes);
    let external = stype == "ExternalName";
    let node_ports = stype == "NodePort" || stype == "LoadBalancer";
    if external {
        if spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            causes.push(Cause::required("spec.externalName"));
        }
    } else {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    traffic_policies(spec, old_spec, causes);
    if stype == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }

    // Cluster IP: immutable, kept when an update omits it.
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if ip.is_empty() && !old_ip.is_empty() && !external {
        ip = old_ip.clone();
    }
    if !old_ip.is_empty() && !ip.is_empty() && ip != old_ip && !external {
        causes.push(Cause::invalid(
            "spec.clusterIP",
            format!("\"{ip}\""),
            "field is immutable",
        ));
        return;
    }
    let headless = ip == "None";
    let ports_empty = spec
        .get("ports")
        .and_then(Value::as_array)
        .is_none_or(|p| p.is_empty());
    if ports_empty && !headless && !external {
        causes.push(Cause::required("spec.ports"));
    }
    if external {
        if !ip.is_empty() {
            causes.push(Cause::invalid(
                "spec.clusterIP",
                format!("\"{ip}\""),
                "may not be set for ExternalName services",
            ));
        }
        if let Some(m) = spec.as_object_mut() {
            m.remove("clusterIP");
            m.remove("clusterIPs");
        }
    } else if headless {
        spec["clusterIP"] = json!("None");
        spec["clusterIPs"] = json!(["None"]);
    } else {
        let used = used_cluster_ips(st, ns, name);
        if ip.is_empty() {
            match alloc_cluster_ip(cfg.service_cidr, &used) {
                Some(a) => ip = a.to_string(),
                None => causes.push(Cause::invalid(
                    "spec.clusterIP",
                    "\"\"",
                    "no free IP left in the service CIDR",
                )),
            }
        } else if ip != old_ip {
            match ip.parse::<Ipv4Addr>() {
                Err(_) => causes.push(Cause::invalid(
                    "spec.clusterIP",
                    format!("\"{ip}\""),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
                Ok(a) => {
                    let c = cfg.service_cidr;
                    if !c.contains(&a) || a == c.network() || a == c.broadcast() {
                        causes.push(Cause::invalid(
                            "spec.clusterIP",
                            format!("\"{ip}\""),
                            &format!("provided IP is not in the valid range. The range of valid IPs is {c}"),
                        ));
                    } else if used.contains(&a) {
                        causes.push(Cause::invalid(
                            "spec.clusterIP",
                            format!("\"{ip}\""),
                            "provided IP is already allocated",
                        ));
                    }
                }
            }
        }
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }

    // Ports.
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut used_np = if node_ports {
        used_node_ports(st, ns, name)
    } else {
        HashSet::new()
    };
    let pending = check_node_ports(cfg, spec, &old_ports, node_ports, &mut used_np, causes);
    let hc_pending = health_check_node_port(cfg, spec, old_spec, &mut used_np, causes);
    for i in pending {
        match alloc_node_port(cfg.node_port_range, &used_np) {
            Some(np) => {
                used_np.insert(np);
                if let Some(port) = spec.get_mut("ports").and_then(|p| p.get_mut(i)) {
                    port["nodePort"] = json!(np);
                }
            }
            None => causes.push(Cause::invalid(
                format!("spec.ports[{i}].nodePort"),
                0,
                "no free node port left in the range",
            )),
        }
    }
    if hc_pending {
        match alloc_node_port(cfg.node_port_range, &used_np) {
            Some(np) => spec["healthCheckNodePort"] = json!(np),
            None => causes.push(Cause::invalid(
                "spec.healthCheckNodePort",
                0,
                "no free node port left in the range",
            )),
        }
    }
    set_default(obj, "status", json!({"loadBalancer": {}}));
}

/// Upstream's `ExternallyAccessible`: the Service is reachable from outside
/// the cluster, so `externalTrafficPolicy` applies to it.
fn externally_accessible(spec: &Value) -> bool {
    match spec.get("type").and_then(Value::as_str) {
        Some("NodePort" | "LoadBalancer") => true,
        Some("ClusterIP") | None => spec
            .get("externalIPs")
            .and_then(Value::as_array)
            .is_some_and(|ips| !ips.is_empty()),
        Some(_) => false,
    }
}

fn has_node_ports(spec: &Value) -> bool {
    matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Upstream's `needsHCNodePort`: only a LoadBalancer that keeps traffic on
/// the receiving node needs a port for the load balancer's health checks.
fn needs_health_check(spec: &Value) -> bool {
    spec.get("type").and_then(Value::as_str) == Some("LoadBalancer")
        && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
}

fn str_field(spec: &Value, key: &str) -> String {
    spec.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn remove_field(spec: &mut Value, key: &str) {
    if let Some(m) = spec.as_object_mut() {
        m.remove(key);
    }
}

/// `spec.sessionAffinity` and its timeout, defaulted and checked as
/// kube-apiserver does (`SetDefaults_Service`, `validateClientIPAffinityConfig`).
fn session_affinity(spec: &mut Value, causes: &mut Vec<Cause>) {
    set_default(spec, "sessionAffinity", json!("None"));
    let affinity = str_field(spec, "sessionAffinity");
    match affinity.as_str() {
        // Upstream's defaulting drops a config that cannot apply.
        "None" => remove_field(spec, "sessionAffinityConfig"),
        "ClientIP" => {
            let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
            match timeout.filter(|t| !t.is_null()).and_then(Value::as_i64) {
                None => {
                    spec["sessionAffinityConfig"] = json!({"clientIP": {
                        "timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS
                    }});
                }
                Some(t) if !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(&t) => {
                    causes.push(Cause::invalid(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        t,
                        &format!(
                            "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        other => causes.push(Cause::unsupported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
}

/// Upstream's `DefaultClientIPServiceAffinitySeconds` (3 hours).
const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;
/// Upstream's `MaxClientIPServiceAffinitySeconds` (1 day).
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

/// `spec.externalTrafficPolicy` and `spec.internalTrafficPolicy`: dropped on a
/// type change, defaulted and checked as kube-apiserver does
/// (`dropTypeDependentFields`, `SetDefaults_Service`,
/// `validateServiceExternalTrafficPolicy`).
fn traffic_policies(spec: &mut Value, old_spec: Option<&Value>, causes: &mut Vec<Cause>) {
    if str_field(spec, "externalTrafficPolicy").is_empty() {
        remove_field(spec, "externalTrafficPolicy");
    }
    // Leaving NodePort/LoadBalancer with the policy untouched: it was (maybe)
    // defaulted for the old type, so it goes with it.
    if let Some(o) = old_spec {
        if has_node_ports(o)
            && !has_node_ports(spec)
            && str_field(o, "externalTrafficPolicy") == str_field(spec, "externalTrafficPolicy")
        {
            remove_field(spec, "externalTrafficPolicy");
        }
    }
    let policies = ["Cluster", "Local"];
    let etp = str_field(spec, "externalTrafficPolicy");
    if externally_accessible(spec) {
        if etp.is_empty() {
            spec["externalTrafficPolicy"] = json!("Cluster");
        } else if !policies.contains(&etp.as_str()) {
            causes.push(Cause::unsupported(
                "spec.externalTrafficPolicy",
                &etp,
                &policies,
            ));
        }
    } else if !etp.is_empty() {
        causes.push(Cause::invalid(
            "spec.externalTrafficPolicy",
            format!("\"{etp}\""),
            "may only be set for externally-accessible services",
        ));
    }
    if let Some(itp) = spec
        .get("internalTrafficPolicy")
        .filter(|v| !v.is_null())
        .and_then(Value::as_str)
    {
        if !policies.contains(&itp) {
            causes.push(Cause::unsupported(
                "spec.internalTrafficPolicy",
                itp,
                &policies,
            ));
        }
    }
}

/// `spec.healthCheckNodePort`, as kube-apiserver's service storage treats it:
/// dropped when the Service stops needing it, kept across updates that omit
/// it, refused where it cannot apply or when changed, and checked against
/// every node port in use. A port it keeps or accepts goes into `used_np`;
/// returns whether one must still be allocated (after the Service's own node
/// ports, as upstream does).
///
/// Like node ports, health check ports are reserved by the stored Services
/// themselves ([`used_node_ports`]), so a deleted Service frees its port and
/// a restarted server finds every port of the Services it reloads in use.
fn health_check_node_port(
    cfg: &ApiServerConfig,
    spec: &mut Value,
    old_spec: Option<&Value>,
    used_np: &mut HashSet<u16>,
    causes: &mut Vec<Cause>,
) -> bool {
    const FIELD: &str = "spec.healthCheckNodePort";
    let port_of = |s: &Value| {
        s.get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let needed = needs_health_check(spec);
    let old_needed = old_spec.is_some_and(needs_health_check);
    let old_hc = old_spec.map(port_of).unwrap_or(0);
    let mut hc = port_of(spec);
    if old_needed && !needed && hc == old_hc {
        hc = 0;
    }
    if old_needed && needed && hc == 0 {
        hc = old_hc;
    }
    if hc == 0 {
        remove_field(spec, "healthCheckNodePort");
    } else {
        spec["healthCheckNodePort"] = json!(hc);
    }
    if !needed {
        if hc != 0 {
            causes.push(Cause::invalid(
                FIELD,
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
        return false;
    }
    if hc == 0 {
        return true;
    }
    if old_needed && old_hc != 0 && hc != old_hc {
        causes.push(Cause::invalid(
            FIELD,
            hc,
            "cannot change healthCheckNodePort on loadBalancer service with externalTraffic=Local during update",
        ));
        return false;
    }
    let (lo, hi) = cfg.node_port_range;
    let Some(port) = u16::try_from(hc).ok().filter(|p| (lo..=hi).contains(p)) else {
        causes.push(Cause::invalid(
            FIELD,
            hc,
            &format!("failed to allocate requested HealthCheck NodePort {hc}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
        ));
        return false;
    };
    // `used_np` holds every other Service's ports and this one's node ports.
    if !used_np.insert(port) {
        causes.push(Cause::invalid(
            FIELD,
            hc,
            &format!("failed to allocate requested HealthCheck NodePort {hc}: provided port is already allocated"),
        ));
    }
    false
}

/// Checks each port of a Service and keeps or checks its node port; returns
/// the indexes of the ports that still need one allocated.
fn check_node_ports(
    cfg: &ApiServerConfig,
    spec: &mut Value,
    old_ports: &[Value],
    node_ports: bool,
    used_np: &mut HashSet<u16>,
    causes: &mut Vec<Cause>,
) -> Vec<usize> {
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let multi = ports.len() > 1;
    let mut names = HashSet::new();
    let mut seen_np: HashSet<(u64, String)> = HashSet::new();
    let mut pending = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
        set_default(p, "protocol", json!("TCP"));
        let at = format!("spec.ports[{i}]");
        check_protocol(p, &format!("{at}.protocol"), causes);
        let proto = p
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("{at}.port"),
                port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let pname = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if multi && pname.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else if !pname.is_empty() && !names.insert(pname.clone()) {
            causes.push(Cause::duplicate(
                format!("{at}.name"),
                format!("\"{pname}\""),
            ));
        }
        match p.get("targetPort") {
            // kube defaults a zero targetPort too (protobuf clients send
            // the zero IntOrString for "unset").
            None | Some(Value::Null) => p["targetPort"] = json!(port),
            Some(t) if t == &json!(0) => p["targetPort"] = json!(port),
            Some(Value::Number(n)) => {
                let t = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&t) {
                    causes.push(Cause::invalid(
                        format!("{at}.targetPort"),
                        t,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            Some(Value::String(s)) => {
                if s.is_empty()
                    || s.len() > 15
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    causes.push(Cause::invalid(
                        format!("{at}.targetPort"),
                        format!("\"{s}\""),
                        "must contain only lowercase alphanumeric characters or '-' (at most 15)",
                    ));
                }
            }
            Some(other) => causes.push(Cause::invalid(
                format!("{at}.targetPort"),
                other,
                "must be an integer or a port name",
            )),
        }
        if !node_ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
            continue;
        }
        match p
            .get("nodePort")
            .and_then(Value::as_u64)
            .filter(|n| *n != 0)
        {
            Some(np) => {
                let new_here = !old_ports
                    .iter()
                    .any(|o| o.get("nodePort").and_then(Value::as_u64) == Some(np));
                if np < u64::from(cfg.node_port_range.0) || np > u64::from(cfg.node_port_range.1) {
                    causes.push(Cause::invalid(
                        format!("{at}.nodePort"),
                        np,
                        &format!("provided port is not in the valid range. The range of valid ports is {}-{}", cfg.node_port_range.0, cfg.node_port_range.1),
                    ));
                } else if (new_here && used_np.contains(&(np as u16)))
                    || !seen_np.insert((np, proto.clone()))
                {
                    causes.push(Cause::invalid(
                        format!("{at}.nodePort"),
                        np,
                        "provided port is already allocated",
                    ));
                }
                used_np.insert(np as u16);
            }
            None => {
                let kept = old_ports
                    .iter()
                    .find(|o| {
                        o.get("port").and_then(Value::as_i64) == Some(port)
                            && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
                    })
                    .and_then(|o| o.get("nodePort").and_then(Value::as_u64));
                match kept {
                    Some(np) => {
                        p["nodePort"] = json!(np);
                        used_np.insert(np as u16);
                    }
                    None => pending.push(i),
                }
            }
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocators() {
        let cidr: Ipv4Net = "10.96.0.0/12".parse().unwrap();
        let mut used = HashSet::new();
        assert_eq!(
            alloc_cluster_ip(cidr, &used),
            Some(Ipv4Addr::new(10, 96, 0, 16))
        );
        used.insert(Ipv4Addr::new(10, 96, 0, 16));
        assert_eq!(
            alloc_cluster_ip(cidr, &used),
            Some(Ipv4Addr::new(10, 96, 0, 17))
        );
        let small: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let all: HashSet<Ipv4Addr> = (1..7).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(alloc_cluster_ip(small, &all), None);
        let some: HashSet<Ipv4Addr> = (1..6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(
            alloc_cluster_ip(small, &some),
            Some(Ipv4Addr::new(10, 0, 0, 6))
        );

        let mut ports = HashSet::new();
        assert_eq!(alloc_node_port((30000, 30001), &ports), Some(30000));
        ports.insert(30000);
        assert_eq!(alloc_node_port((30000, 30001), &ports), Some(30001));
        ports.insert(30001);
        assert_eq!(alloc_node_port((30000, 30001), &ports), None);

        let cluster: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let mut cidrs = BTreeMap::new();
        assert_eq!(
            alloc_pod_cidr(cluster, &cidrs),
            Some("10.244.0.0/24".parse().unwrap())
        );
        cidrs.insert("10.244.0.0/24".parse().unwrap(), "n1".to_string());
        assert_eq!(
            alloc_pod_cidr(cluster, &cidrs),
            Some("10.244.1.0/24".parse().unwrap())
        );
    }

    #[test]
    fn names() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a.b"));
        let sub = |s: &str| NameRule::Dns1123Subdomain.check(s).is_empty();
        assert!(sub("a.b-c"));
        assert!(!sub("a..b"));
        assert!(!sub("a/b"));
        assert!(!sub("a-.b"));
        // No per-label limit, only the total.
        assert!(sub(&"a".repeat(250)));
        assert!(sub(&"a".repeat(253)));
        assert!(!sub(&"a".repeat(254)));
        let dns1035 = |s: &str| NameRule::Dns1035Label.check(s).is_empty();
        assert!(dns1035("web-1"));
        assert!(!dns1035("1web"));
        assert!(!dns1035(""));
    }

    #[test]
    fn decode_names_the_field() {
        let kind = crate::kinds::by_plural("services").unwrap();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": "x"}]}});
        let c = decode_check(kind, &svc).unwrap_err();
        assert_eq!(c.field, "spec.ports[0].port");
        assert!(c.message.contains("invalid type"), "{}", c.message);
        let cfg = crate::tests_support::config(std::path::Path::new("/nonexistent"));
        let st = crate::store::State::load(
            &std::env::temp_dir().join(format!("weft-api-val-{}", std::process::id())),
        )
        .unwrap();
        let kind = crate::kinds::by_plural("endpointslices").unwrap();
        let mut es = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"}, "endpoints": []});
        let e = prepare(&cfg, &st, kind, "default", "s", &mut es, None).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("addressType: Required value"),
            "{}",
            e.message
        );
    }
}

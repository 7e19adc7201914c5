//! What a pod turns into on this node (pure): sandbox id, hostname, the
//! container's command line and environment, resolv.conf and hosts, the CNI
//! network config and the runtime config passed to the plugin.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use weft_cluster::{
    Layout, NodeLayout, CLUSTER_CIDR, CLUSTER_DOMAIN, DNS_SERVICE_IP, KUBERNETES_SERVICE_IP,
};

/// Short stable id of a pod: the first 8 hex characters of its UID (a UUID
/// starts with 8 hex), or an FNV-1a hash of the UID when it does not.
pub fn pod_id(uid: &str) -> String {
    let head: String = uid.chars().take(8).collect();
    if head.len() == 8 && head.chars().all(|c| c.is_ascii_hexdigit()) {
        return head.to_ascii_lowercase();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in uid.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// CNI_CONTAINERID of a pod: its UID without dashes (what `crictl` shows as
/// the sandbox id is as opaque; the plugin only needs it unique and stable).
pub fn container_id(uid: &str) -> String {
    uid.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// Directory name of a pod under `<node_dir>/pods`: `<ns>_<name>_<uid8>`.
pub fn pod_dir_name(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}_{name}_{}", pod_id(uid))
}

/// `<node_dir>/pods/<ns>_<name>_<uid8>`: the pod's files, logs and pid files.
pub fn pod_dir(
    layout: &Layout,
    node: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> std::path::PathBuf {
    layout
        .node_dir(node)
        .join("pods")
        .join(pod_dir_name(namespace, name, uid))
}

/// Log file of one container (`weft logs` reads it).
pub fn log_path(pod_dir: &Path, container: &str) -> std::path::PathBuf {
    pod_dir.join(format!("{container}.log"))
}

/// The FIFO a container with `stdin: true` reads its input from (written
/// by `attach` sessions, relayed by the container's `pod-init run`).
pub fn stdin_path(pod_dir: &Path, container: &str) -> std::path::PathBuf {
    pod_dir.join(format!("{container}.stdin"))
}

/// The FIFO that carries terminal sizes ("<cols> <rows>\n") to a container
/// with `tty: true`.
pub fn resize_path(pod_dir: &Path, container: &str) -> std::path::PathBuf {
    pod_dir.join(format!("{container}.resize"))
}

/// A container's `stdin`, `stdinOnce` and `tty` (core/v1 Container).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerIo {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

impl ContainerIo {
    pub fn of(c: &k8s_openapi::api::core::v1::Container) -> ContainerIo {
        ContainerIo {
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        }
    }
}

fn pod_ns(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's hostname: `spec.hostname`, or the pod name truncated to 63
/// characters (a DNS label), without a trailing '-' or '.' left by the cut
/// (kubelet's `truncatePodHostnameIfNeeded`). hostNetwork pods take the node's name.
pub fn hostname(pod: &Pod, node_name: &str) -> String {
    if host_network(pod) {
        return node_name.to_string();
    }
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod_name(pod).to_string());
    if name.len() <= 63 {
        return name;
    }
    // The API only admits ASCII names, but a cut must never split a
    // character: the last boundary at or before byte 63.
    let cut = (0..=63)
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0);
    name[..cut].trim_end_matches(['-', '.']).to_string()
}

/// Whether `image` is agnhost: `registry.k8s.io/e2e-test-images/agnhost:*`
/// or any image whose last path component starts with `agnhost`.
pub fn is_agnhost(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.starts_with("agnhost")
}

/// Whether `image` is weft's own (`ghcr.io/weft-net/weft:<tag>`,
/// `weft:<tag>`, `weft@sha256:…`): the repository's last path component is
/// `weft`. Such containers run the running `weft` binary ([`weft_argv`]).
pub fn is_weft(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next() == Some("weft")
}

/// A weft image's command line on this node: its entrypoint is `weft`; a
/// program named `weft` or `weft-cni` (by name or any path ending so, as
/// the image would have it) is the running binary or the `weft-cni` next
/// to it.
fn weft_argv(argv: Vec<String>, weft_bin: &Path) -> Vec<String> {
    let mut argv = argv;
    if let Some(first) = argv.first_mut() {
        let file = first.rsplit('/').next().unwrap_or(first);
        if file == "weft" {
            *first = weft_bin.display().to_string();
        } else if file == "weft-cni" {
            *first = weft_bin.with_file_name("weft-cni").display().to_string();
        }
    }
    argv
}

/// Images with no ENTRYPOINT whose `args` are therefore the whole command
/// line (`busybox` with `args: [sh, -c, …]`); run with the node's tools.
fn is_shell_image(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    let repo = last.split([':', '@']).next().unwrap_or(last);
    matches!(repo, "busybox" | "alpine" | "ubuntu" | "debian" | "fedora")
}

/// Expands `$(VAR)` references from `env` (Kubernetes' expansion: `$$` is a
/// literal `$`, unknown references are left as they are).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let var = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == var) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(var);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The command line of a container (Kubernetes semantics: `command` replaces
/// the image's entrypoint, `args` are appended; with no `command` an agnhost
/// image runs `<weft> agnhost <args>`, a weft image `<weft> <args>` and a
/// shell image its `args`; in a weft image `weft` and `weft-cni` are the
/// node's binaries).
/// `Err` is the message of the container's `NoCommand` waiting state.
pub fn resolve_command(
    container: &Container,
    weft_bin: &Path,
    env: &[(String, String)],
) -> Result<Vec<String>, String> {
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|a| expand(a, env))
        .collect();
    let image = container.image.as_deref().unwrap_or_default();
    let argv = match container.command.as_ref().filter(|c| !c.is_empty()) {
        Some(command) if is_weft(image) => weft_argv(
            command.iter().map(|c| expand(c, env)).chain(args).collect(),
            weft_bin,
        ),
        Some(command) => command.iter().map(|c| expand(c, env)).chain(args).collect(),
        None if is_weft(image) => {
            let mut argv = vec![weft_bin.display().to_string()];
            argv.extend(args);
            argv
        }
        None if is_agnhost(image) => {
            let mut argv = vec![weft_bin.display().to_string(), "agnhost".to_string()];
            argv.extend(args);
            argv
        }
        None if is_shell_image(image) && !args.is_empty() => args,
        None => {
            return Err(format!(
                "container {:?}: image {image:?} is not pulled by the embedded cluster and \
                 has no known entrypoint; set `command` (agnhost images run `weft agnhost <args>`)",
                container.name
            ))
        }
    };
    Ok(argv)
}

/// ConfigMap and Secret data the environment refers to, fetched beforehand:
/// (kind "ConfigMap"/"Secret", name) → key → value.
pub type RefData = BTreeMap<(String, String), BTreeMap<String, String>>;

/// The ConfigMaps and Secrets a container's env and envFrom name.
pub fn env_refs(container: &Container) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    for e in container.env.iter().flatten() {
        if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                refs.push(("ConfigMap".to_string(), r.name.clone()));
            }
            if let Some(r) = &src.secret_key_ref {
                refs.push(("Secret".to_string(), r.name.clone()));
            }
        }
    }
    for e in container.env_from.iter().flatten() {
        if let Some(r) = &e.config_map_ref {
            refs.push(("ConfigMap".to_string(), r.name.clone()));
        }
        if let Some(r) = &e.secret_ref {
            refs.push(("Secret".to_string(), r.name.clone()));
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let lookup = |map: &Option<BTreeMap<String, String>>, inner: &str| {
        let key = inner.trim_start_matches("['").trim_end_matches("']");
        map.as_ref().and_then(|m| m.get(key).cloned())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => Some(pod_ns(pod).to_string()),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        p if p.starts_with("metadata.labels[") => {
            lookup(&meta.labels, &p["metadata.labels".len()..])
        }
        p if p.starts_with("metadata.annotations[") => {
            lookup(&meta.annotations, &p["metadata.annotations".len()..])
        }
        _ => None,
    }
}

/// The environment of a container: envFrom, then env (value, fieldRef,
/// configMapKeyRef, secretKeyRef; `$(VAR)` expanded against earlier
/// entries), then what every container gets: KUBERNETES_SERVICE_HOST/PORT,
/// HOSTNAME and a PATH with the weft binary's directory first. Later entries
/// of the same name win. `Err` names the entry that cannot be resolved.
pub fn build_env(
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
    hostname: &str,
    weft_bin: &Path,
    refs: &RefData,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let bin_dir = weft_bin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let path = if bin_dir.is_empty() {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
    } else {
        format!("{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    };
    env.push(("PATH".into(), path));
    env.push(("HOSTNAME".into(), hostname.to_string()));
    env.push((
        "KUBERNETES_SERVICE_HOST".into(),
        KUBERNETES_SERVICE_IP.to_string(),
    ));
    env.push(("KUBERNETES_SERVICE_PORT".into(), "443".into()));
    env.push(("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()));
    env.push((
        "KUBERNETES_PORT".into(),
        format!("tcp://{KUBERNETES_SERVICE_IP}:443"),
    ));
    let get = |kind: &str, name: &str| refs.get(&(kind.to_string(), name.to_string()));
    for (i, from) in container.env_from.iter().flatten().enumerate() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            ("ConfigMap", r.name.as_str(), r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_ref {
            ("Secret", r.name.as_str(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match get(kind, name) {
            Some(data) => {
                for (k, v) in data {
                    env.push((format!("{prefix}{k}"), v.clone()));
                }
            }
            None if optional => {}
            None => {
                return Err(format!(
                    "container {:?} envFrom[{i}]: {kind} {name:?} not found",
                    container.name
                ))
            }
        }
    }
    for (i, e) in container.env.iter().flatten().enumerate() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => Some(expand(v, &env)),
            (None, Some(src)) => {
                if let Some(f) = &src.field_ref {
                    Some(
                        field_value(pod, &f.field_path, pod_ip, host_ip).ok_or_else(|| {
                            format!(
                                "container {:?} env[{i}] {}: fieldRef {:?} is not supported",
                                container.name, e.name, f.field_path
                            )
                        })?,
                    )
                } else if let Some(r) = &src.config_map_key_ref {
                    let v = get("ConfigMap", &r.name)
                        .and_then(|d| d.get(&r.key))
                        .cloned();
                    match (v, r.optional.unwrap_or(false)) {
                        (Some(v), _) => Some(v),
                        (None, true) => None,
                        (None, false) => {
                            return Err(format!(
                                "container {:?} env[{i}] {}: key {:?} of ConfigMap {:?} not found",
                                container.name, e.name, r.key, r.name
                            ))
                        }
                    }
                } else if let Some(r) = &src.secret_key_ref {
                    let v = get("Secret", &r.name).and_then(|d| d.get(&r.key)).cloned();
                    match (v, r.optional.unwrap_or(false)) {
                        (Some(v), _) => Some(v),
                        (None, true) => None,
                        (None, false) => {
                            return Err(format!(
                                "container {:?} env[{i}] {}: key {:?} of Secret {:?} not found",
                                container.name, e.name, r.key, r.name
                            ))
                        }
                    }
                } else if src.resource_field_ref.is_some() {
                    // No resource accounting in the embedded cluster: "0"
                    // is what an unlimited container reads as its limit.
                    Some("0".to_string())
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            env.push((e.name.clone(), v));
        }
    }
    // Last one of a name wins, keeping first-seen order.
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// The pod's `/etc/resolv.conf` (kubelet's dns.go): ClusterFirst → the
/// cluster DNS service and search path; Default (and ClusterFirst with
/// hostNetwork) → the node's file; None → only `spec.dnsConfig`; dnsConfig
/// is merged into the first two.
pub fn render_resolv_conf(pod: &Pod, host_resolv: &str) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".to_string());
    let cluster = match policy.as_str() {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network(pod),
        _ => false,
    };
    let mut nameservers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    if cluster {
        let ns = pod_ns(pod);
        nameservers.push(DNS_SERVICE_IP.to_string());
        searches.push(format!("{ns}.svc.{CLUSTER_DOMAIN}"));
        searches.push(format!("svc.{CLUSTER_DOMAIN}"));
        searches.push(CLUSTER_DOMAIN.to_string());
        options.push("ndots:5".to_string());
    } else if policy != "None" {
        for line in host_resolv.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => searches.extend(words.map(str::to_string)),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in cfg.nameservers.iter().flatten() {
            if !nameservers.contains(n) {
                nameservers.push(n.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !searches.contains(s) {
                searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let rendered = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = rendered.split(':').next().unwrap_or_default().to_string();
            options.retain(|x| x.split(':').next() != Some(key.as_str()));
            options.push(rendered);
        }
    }
    // glibc reads at most 3 nameservers and 6 search domains.
    nameservers.truncate(3);
    searches.truncate(6);
    let mut out = String::new();
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The pod's `/etc/hosts` (kubelet's managed hosts file).
pub fn render_hosts(pod: &Pod, pod_ip: &str, hostname: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (weft).\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let subdomain = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty() && !host_network(pod));
    if !pod_ip.is_empty() {
        match subdomain {
            Some(sub) => out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{}.svc.{CLUSTER_DOMAIN}\t{hostname}\n",
                pod_ns(pod)
            )),
            None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default();
            if !names.is_empty() {
                out.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
            }
        }
    }
    out
}

/// The network config `weft up` gives every node (file `10-weft.conflist`).
pub fn default_conflist(node: &NodeLayout, node_dir: &Path) -> Value {
    let cluster = CLUSTER_CIDR.parse().unwrap_or(node.pod_cidr);
    weft_cni::netconf::conflist(node.pod_cidr, 1500, &node_dir.join("ipam"), cluster)
}

/// A network config file as libcni reads it: a `.conflist`, or a single
/// plugin `.conf`/`.json` wrapped into a list of one.
pub fn parse_net_config(text: &str, file: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    if v.get("plugins").and_then(Value::as_array).is_some() {
        if v.get("name").and_then(Value::as_str).is_none() {
            return Err(format!("{file}: field \"name\" is missing"));
        }
        return Ok(v);
    }
    if v.get("type").and_then(Value::as_str).is_none() {
        return Err(format!("{file}: neither \"plugins\" nor \"type\""));
    }
    Ok(json!({
        "cniVersion": v.get("cniVersion").cloned().unwrap_or(json!("1.1.0")),
        "name": v.get("name").cloned().unwrap_or(json!("weft")),
        "plugins": [v],
    }))
}

/// A pod's hostPorts as CNI `portMappings` entries.
pub fn port_mappings(pod: &Pod) -> Vec<Value> {
    let mut out = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            if let Some(host_port) = p.host_port.filter(|h| *h > 0) {
                let mut m = json!({
                    "hostPort": host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                });
                if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                    m["hostIP"] = json!(ip);
                }
                out.push(m);
            }
        }
    }
    out
}

/// The stdin of one plugin of a list (libcni `buildOneConfig`): the plugin's
/// object with the list's `name` and `cniVersion`, `runtimeConfig` for the
/// capabilities the plugin declares, and `prevResult` when given.
pub fn plugin_config(
    list: &Value,
    plugin: &Value,
    runtime: &Value,
    prev_result: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    if let Some(obj) = conf.as_object_mut() {
        obj.insert(
            "name".into(),
            list.get("name").cloned().unwrap_or(Value::Null),
        );
        obj.insert(
            "cniVersion".into(),
            list.get("cniVersion").cloned().unwrap_or(json!("1.1.0")),
        );
        let caps = plugin.get("capabilities").and_then(Value::as_object);
        let mut rc = serde_json::Map::new();
        if let (Some(caps), Some(runtime)) = (caps, runtime.as_object()) {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = runtime.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
        }
        obj.remove("runtimeConfig");
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        match prev_result {
            Some(prev) => {
                obj.insert("prevResult".into(), prev.clone());
            }
            None => {
                obj.remove("prevResult");
            }
        }
    }
    conf
}

/// The pod's first IPv4 address from a CNI result (`ips[].address`).
pub fn result_ip(result: &Value) -> Option<Ipv4Addr> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
        .next()
}

/// `CNI_ARGS` of a pod (what cri-o and containerd pass).
pub fn cni_args(namespace: &str, name: &str, infra_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={infra_id}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HostAlias, ObjectFieldSelector,
        PodDNSConfig, PodDNSConfigOption, PodSpec, SecretKeySelector,
    };

    fn pod(spec: PodSpec) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("1a2b3c4d-0000-4000-8000-000000000001".into());
        p.spec = Some(spec);
        p
    }

    fn container(image: &str, command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: args.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn ids_and_dirs() {
        assert_eq!(pod_id("1A2B3C4D-0000-4000-8000-000000000001"), "1a2b3c4d");
        assert_eq!(pod_id("not-a-uuid").len(), 8);
        assert_eq!(pod_id("not-a-uuid"), pod_id("not-a-uuid"));
        assert_eq!(container_id("1a2b-3c"), "1a2b3c");
        assert_eq!(pod_dir_name("ns", "p", "1a2b3c4d-00"), "ns_p_1a2b3c4d");
    }

    #[test]
    fn command_resolution() {
        let bin = Path::new("/opt/weft/bin/weft");
        let c = container(
            "nginx",
            Some(&["/bin/sh", "-c"]),
            Some(&["echo $(GREETING)"]),
        );
        let env = vec![("GREETING".to_string(), "hi".to_string())];
        assert_eq!(
            resolve_command(&c, bin, &env).unwrap(),
            ["/bin/sh", "-c", "echo hi"]
        );
        let c = container(
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            None,
            Some(&["netexec", "--http-port=8080"]),
        );
        assert_eq!(
            resolve_command(&c, bin, &[]).unwrap(),
            [
                "/opt/weft/bin/weft",
                "agnhost",
                "netexec",
                "--http-port=8080"
            ]
        );
        let c = container("example.com/agnhost-custom:1", None, None);
        assert_eq!(
            resolve_command(&c, bin, &[]).unwrap(),
            ["/opt/weft/bin/weft", "agnhost"]
        );
        // An explicit command wins over the agnhost image.
        let c = container(
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            Some(&["sleep"]),
            Some(&["1"]),
        );
        assert_eq!(resolve_command(&c, bin, &[]).unwrap(), ["sleep", "1"]);
        let c = container("busybox:1.36", None, Some(&["sh", "-c", "true"]));
        assert_eq!(resolve_command(&c, bin, &[]).unwrap(), ["sh", "-c", "true"]);
        let c = container("nginx:1.27", None, Some(&["-g", "daemon off;"]));
        let err = resolve_command(&c, bin, &[]).unwrap_err();
        assert!(
            err.contains("nginx:1.27") && err.contains("command"),
            "{err}"
        );
    }

    #[test]
    fn weft_images_run_the_running_weft_and_its_weft_cni() {
        let bin = Path::new("/opt/weft/bin/weft");
        assert!(is_weft("ghcr.io/weft-net/weft:0.3.0"));
        assert!(is_weft("weft:dev"));
        assert!(is_weft("weft@sha256:abcd"));
        assert!(!is_weft("ghcr.io/weft-net/weft-cni:1"));
        assert!(!is_weft("ghcr.io/weft/nginx:1"));
        let c = container(
            "ghcr.io/weft-net/weft:0.3.0",
            None,
            Some(&["agent", "--node=$(NODE)"]),
        );
        let env = vec![("NODE".to_string(), "node-1".to_string())];
        assert_eq!(
            resolve_command(&c, bin, &env).unwrap(),
            ["/opt/weft/bin/weft", "agent", "--node=node-1"]
        );
        let c = container("weft:dev", Some(&["/usr/local/bin/weft", "dns"]), None);
        assert_eq!(
            resolve_command(&c, bin, &[]).unwrap(),
            ["/opt/weft/bin/weft", "dns"]
        );
        let c = container("weft:dev", Some(&["weft-cni"]), Some(&["--version"]));
        assert_eq!(
            resolve_command(&c, bin, &[]).unwrap(),
            ["/opt/weft/bin/weft-cni", "--version"]
        );
        // Other programs of a weft image are left as they are (the node's).
        let c = container("weft:dev", Some(&["sh", "-c", "cp weft-cni /host"]), None);
        assert_eq!(
            resolve_command(&c, bin, &[]).unwrap(),
            ["sh", "-c", "cp weft-cni /host"]
        );
    }

    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$-$(", &env), "x-$(B)-$(A)-$-$(");
    }

    #[test]
    fn environment() {
        let mut c = container("agnhost", None, None);
        c.env = Some(vec![
            EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                ..Default::default()
            },
            EnvVar {
                name: "B".into(),
                value: Some("$(A)2".into()),
                ..Default::default()
            },
            EnvVar {
                name: "MY_IP".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar {
                name: "NODE".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "spec.nodeName".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar {
                name: "NS".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.namespace".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar {
                name: "PW".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "s".into(),
                        key: "pw".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        c.env_from = Some(vec![EnvFromSource {
            config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                name: "cm".into(),
                optional: None,
            }),
            prefix: Some("CM_".into()),
            ..Default::default()
        }]);
        let p = pod(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![c.clone()],
            ..Default::default()
        });
        assert_eq!(
            env_refs(&c),
            [
                ("ConfigMap".to_string(), "cm".to_string()),
                ("Secret".to_string(), "s".to_string())
            ]
        );
        let mut refs = RefData::new();
        refs.insert(
            ("Secret".into(), "s".into()),
            [("pw".to_string(), "hunter2".to_string())].into(),
        );
        refs.insert(
            ("ConfigMap".into(), "cm".into()),
            [("k".to_string(), "v".to_string())].into(),
        );
        let env = build_env(
            &p,
            &c,
            "10.244.0.5",
            "192.168.1.10",
            "web-0",
            Path::new("/opt/weft/weft"),
            &refs,
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("12"));
        assert_eq!(get("MY_IP"), Some("10.244.0.5"));
        assert_eq!(get("NODE"), Some("node-1"));
        assert_eq!(get("NS"), Some("shop"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("CM_k"), Some("v"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert!(get("PATH").unwrap().starts_with("/opt/weft:"));
        // A missing secret names the entry.
        let err = build_env(&p, &c, "", "", "h", Path::new("/w"), &RefData::new()).unwrap_err();
        assert!(err.contains("ConfigMap \"cm\""), "{err}");
    }

    #[test]
    fn hostname_cut_never_splits_a_character() {
        // 62 ASCII bytes, then a 2-byte character across byte 63: cut before it.
        let p = pod(PodSpec {
            hostname: Some(format!("{}é{}", "b".repeat(62), "c".repeat(10))),
            ..Default::default()
        });
        assert_eq!(hostname(&p, "node-1"), "b".repeat(62));
    }

    #[test]
    fn hostnames() {
        let p = pod(PodSpec::default());
        assert_eq!(hostname(&p, "node-1"), "web-0");
        let mut long = pod(PodSpec::default());
        long.metadata.name = Some(format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(hostname(&long, "node-1"), "a".repeat(62));
        let p = pod(PodSpec {
            hostname: Some("db".into()),
            ..Default::default()
        });
        assert_eq!(hostname(&p, "node-1"), "db");
        let p = pod(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        assert_eq!(hostname(&p, "node-1"), "node-1");
    }

    #[test]
    fn resolv_conf() {
        let host = "# generated\nnameserver 1.1.1.1\nsearch example.com\noptions edns0\n";
        let p = pod(PodSpec::default());
        assert_eq!(
            render_resolv_conf(&p, host),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let p = pod(PodSpec {
            dns_policy: Some("Default".into()),
            ..Default::default()
        });
        assert_eq!(
            render_resolv_conf(&p, host),
            "nameserver 1.1.1.1\nsearch example.com\noptions edns0\n"
        );
        // ClusterFirst on the host network falls back to Default.
        let p = pod(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        assert!(render_resolv_conf(&p, host).starts_with("nameserver 1.1.1.1\n"));
        let p = pod(PodSpec {
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            ..Default::default()
        });
        assert!(render_resolv_conf(&p, host).starts_with("nameserver 10.96.0.10\n"));
        let p = pod(PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["9.9.9.9".into()]),
                searches: Some(vec!["a.b".into()]),
                options: Some(vec![
                    PodDNSConfigOption {
                        name: Some("ndots".into()),
                        value: Some("2".into()),
                    },
                    PodDNSConfigOption {
                        name: Some("rotate".into()),
                        value: None,
                    },
                ]),
            }),
            ..Default::default()
        });
        assert_eq!(
            render_resolv_conf(&p, host),
            "nameserver 9.9.9.9\nsearch a.b\noptions ndots:2 rotate\n"
        );
        // dnsConfig options override the cluster's.
        let p = pod(PodSpec {
            dns_config: Some(PodDNSConfig {
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("1".into()),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(render_resolv_conf(&p, host).ends_with("options ndots:1\n"));
    }

    #[test]
    fn hosts_file() {
        let p = pod(PodSpec {
            hostname: Some("db-0".into()),
            subdomain: Some("db".into()),
            host_aliases: Some(vec![HostAlias {
                ip: "10.1.1.1".into(),
                hostnames: Some(vec!["foo".into(), "bar".into()]),
            }]),
            ..Default::default()
        });
        let h = render_hosts(&p, "10.244.0.7", "db-0");
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("::1\tlocalhost"));
        assert!(
            h.contains("10.244.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{h}"
        );
        assert!(h.contains("10.1.1.1\tfoo\tbar\n"));
        let p = pod(PodSpec::default());
        assert!(render_hosts(&p, "10.244.0.8", "web-0").contains("10.244.0.8\tweb-0\n"));
    }

    #[test]
    fn cni_configs() {
        let l = Layout::new("demo", Some("/s".into())).unwrap();
        let n = l.node(2).unwrap();
        let list = default_conflist(&n, &l.node_dir(&n.name));
        assert_eq!(list["plugins"][0]["ipam"]["subnet"], "10.244.1.0/24");
        assert_eq!(list["plugins"][0]["ipam"]["gateway"], "10.244.1.1");
        assert_eq!(
            list["plugins"][0]["ipam"]["dataDir"],
            "/s/nodes/node-2/ipam"
        );
        let mut spec = PodSpec::default();
        let mut c = container("x", Some(&["x"]), None);
        c.ports = Some(vec![
            ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            },
            ContainerPort {
                container_port: 53,
                host_port: Some(5353),
                protocol: Some("UDP".into()),
                host_ip: Some("192.168.1.10".into()),
                ..Default::default()
            },
            ContainerPort {
                container_port: 9000,
                ..Default::default()
            },
        ]);
        spec.containers = vec![c];
        let pm = port_mappings(&pod(spec));
        assert_eq!(
            Value::Array(pm.clone()),
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                   {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"192.168.1.10"}])
        );
        let conf = plugin_config(
            &list,
            &list["plugins"][0],
            &json!({"portMappings": pm, "ips": ["x"]}),
            None,
        );
        assert_eq!(conf["name"], "weft");
        assert_eq!(conf["cniVersion"], "1.1.0");
        assert_eq!(conf["type"], "weft-cni");
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(
            conf["runtimeConfig"].get("ips").is_none(),
            "ips is not a declared capability"
        );
        assert!(conf.get("prevResult").is_none());
        let with_prev = plugin_config(
            &list,
            &list["plugins"][0],
            &json!({}),
            Some(&json!({"ips": []})),
        );
        assert!(with_prev.get("runtimeConfig").is_none());
        assert_eq!(with_prev["prevResult"], json!({"ips": []}));
        let single = parse_net_config(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
            "x.conf",
        )
        .unwrap();
        assert_eq!(single["plugins"][0]["type"], "bridge");
        assert_eq!(single["name"], "n");
        assert!(parse_net_config("{}", "x.conf")
            .unwrap_err()
            .contains("x.conf"));
        assert_eq!(
            result_ip(&json!({"ips":[{"address":"10.244.1.5/24"}]})),
            Some(Ipv4Addr::new(10, 244, 1, 5))
        );
        assert_eq!(
            cni_args("ns", "p", "abc"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc"
        );
    }
}

//! Namespace tests of pod sandboxes: a fake node namespace `weft-t…`, a real
//! weft-cni, a container process in the pod's namespaces. Everything made is
//! removed on drop, also when a test fails. Needs root: skipped with a
//! message elsewhere, failing in CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, HostPathVolumeSource, KeyToPath, Pod, PodSpec,
    Volume, VolumeMount,
};
use weft_cluster::Layout;
use weft_linux::testns::root_or_skip;
use weft_node::sandbox::{self, Launch, NodeEnv, Sandbox};
use weft_node::security::Identity;
use weft_node::{plan, probe, volumes};

/// weft-cni, built into this target directory once.
fn cni_bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // <target>/debug/deps/sandbox-… → <target>/debug
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target = dir.parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "weft-cni", "--bin", "weft-cni"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build -p weft-cni");
        assert!(st.success(), "cargo build -p weft-cni failed");
        assert!(
            dir.join("weft-cni").exists(),
            "no weft-cni in {}",
            dir.display()
        );
        dir
    })
    .clone()
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A test node: its namespace, a state dir and a cluster layout whose pod
/// namespaces are `weft-t…` too. Drop removes all of it.
struct TestNode {
    ns: String,
    env: NodeEnv,
    state: PathBuf,
}

impl TestNode {
    fn new() -> TestNode {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let cluster = format!("t{}x{n}", std::process::id() % 1_000_000);
        let ns = format!("weft-t{}-{n}-node", std::process::id());
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let state = std::env::temp_dir().join(format!("weft-t-node-{cluster}"));
        let layout = Layout::new(&cluster, Some(state.clone())).unwrap();
        let node = layout.node(1).unwrap();
        let env = NodeEnv {
            layout,
            node,
            cni_bin_dir: cni_bin_dir(),
            node_netns: Some(Path::new(sandbox::NETNS_DIR).join(&ns)),
            helper: PathBuf::from(env!("CARGO_BIN_EXE_weft-pod-init")),
        };
        assert!(
            env.ensure_conflist().unwrap(),
            "first call writes the config"
        );
        assert!(
            !env.ensure_conflist().unwrap(),
            "second call finds it current"
        );
        TestNode { ns, env, state }
    }

    fn allocations(&self) -> Vec<String> {
        let dir = self.env.node_dir().join("ipam").join("weft");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Pod namespaces of this test's cluster, then the node.
        let prefix = self.env.layout.pod_netns("");
        for sb in Sandbox::list(&self.env) {
            sb.kill_all();
        }
        if let Ok(rd) = std::fs::read_dir(sandbox::NETNS_DIR) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = Command::new("ip").args(["netns", "del", &name]).status();
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn pod(name: &str, uid: &str, spec: PodSpec) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(uid.into());
    p.spec = Some(spec);
    p
}

/// What the container wrote so far (the file holds CRI log entries),
/// once it contains `needle` or after 10 s.
fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw = std::fs::read(path).unwrap_or_default();
        let mut plain = Vec::new();
        weft_node::logs::render(&raw, &weft_node::logs::LogOptions::default(), &mut plain);
        let log = String::from_utf8_lossy(&plain).into_owned();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(sb: &Sandbox, launch: &Launch) -> std::process::Child {
    let child = sb
        .container_command(launch, Default::default())
        .unwrap()
        .spawn()
        .unwrap();
    sb.record_pid(&launch.name, child.id()).unwrap();
    child
}

fn sh(name: &str, script: &str) -> Launch {
    Launch {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        working_dir: None,
        identity: Identity::default(),
    }
}

#[test]
fn pod_sandbox_runs_a_container_and_tears_down() {
    if !root_or_skip("pod_sandbox_runs_a_container_and_tears_down") {
        return;
    }
    let node = TestNode::new();
    let host_resolv_before = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let p = pod(
        "web-0",
        "1a2b3c4d-1111-4000-8000-000000000001",
        PodSpec::default(),
    );
    let hostname = plan::hostname(&p, "node-1");
    let mut sb = Sandbox::new(
        &node.env,
        "default",
        "web-0",
        "1a2b3c4d-1111-4000-8000-000000000001",
        &hostname,
        false,
    );
    let netns = node.env.layout.pod_netns("1a2b3c4d");
    assert_eq!(sb.record.netns.as_deref(), Some(netns.as_str()));
    assert!(netns.starts_with("weft-t"));
    sb.create(&[]).unwrap();
    assert!(sb.ready());
    // Creating again is a no-op on a complete sandbox.
    let result = sb.record.result.clone();
    sb.create(&[]).unwrap();
    assert_eq!(sb.record.result, result);

    let pod_ip = sb.pod_ip().expect("pod IP from the CNI result");
    assert!(pod_ip.starts_with("10.244.0."), "{pod_ip}");
    assert_eq!(node.allocations(), std::slice::from_ref(&pod_ip));
    let addrs = ip(&["-n", &netns, "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{pod_ip}/24")), "{addrs}");
    assert!(
        ip(&["-n", &netns, "link", "show", "lo"]).contains("UP"),
        "lo is up"
    );
    // The bridge is in the node's namespace, not the machine's.
    assert!(ip(&["-n", &node.ns, "link", "show", "cni0"]).contains("cni0"));

    sb.write_files(
        &plan::render_resolv_conf(&p, ""),
        &plan::render_hosts(&p, &pod_ip, &hostname),
    )
    .unwrap();
    sb.start_init(false).unwrap();
    let launch = sh(
        "app",
        "hostname; cat /etc/resolv.conf; cat /etc/hosts; sleep 30",
    );
    let mut child = start(&sb, &launch);
    let log_path = plan::log_path(&sb.dir, "app");
    let log = wait_for_log(&log_path, &format!("{pod_ip}\tweb-0"));
    assert!(log.starts_with("web-0\n"), "log: {log}");
    assert!(
        log.contains(
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        ),
        "log: {log}"
    );
    assert!(log.contains(&format!("{pod_ip}\tweb-0\n")), "log: {log}");
    // The machine's own files were never touched.
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        host_resolv_before
    );

    // An exec in the pod sees the pod's network namespace.
    let out = sb
        .command(&Launch {
            argv: vec!["ip".into(), "-4".into(), "-o".into(), "addr".into()],
            ..launch.clone()
        })
        .unwrap()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&pod_ip));

    // A TCP probe from the node's namespace reaches a listener in the pod.
    let pod_ns = weft_linux::Netns::open(sb.netns_path().unwrap()).unwrap();
    let listener = pod_ns
        .run(|| std::net::TcpListener::bind("0.0.0.0:8080"))
        .unwrap()
        .unwrap();
    let node_ns = std::sync::Arc::new(
        weft_linux::Netns::open(node.env.node_netns.as_ref().unwrap()).unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tcp = probe::ProbeAction::Tcp {
        host: None,
        port: 8080,
    };
    rt.block_on(probe::check_net(
        &tcp,
        &pod_ip,
        Duration::from_secs(2),
        Some(node_ns.clone()),
    ))
    .unwrap();
    drop(listener);
    assert!(rt
        .block_on(probe::check_net(
            &tcp,
            &pod_ip,
            Duration::from_secs(2),
            Some(node_ns)
        ))
        .is_err());

    let live = sb.live_processes();
    assert_eq!(live, [("app".to_string(), child.id())]);
    sandbox::signal_group(child.id(), nix::sys::signal::Signal::SIGTERM);
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(sb.live_processes().is_empty());

    sb.teardown().unwrap();
    assert!(!sandbox::netns_exists(&netns), "pod namespace removed");
    assert!(
        node.allocations().is_empty(),
        "IP released: {:?}",
        node.allocations()
    );
    assert!(!sb.dir.exists(), "pod dir removed");
    assert!(Sandbox::list(&node.env).is_empty());
}

#[test]
fn leftovers_of_a_crashed_runtime_are_found_and_removed() {
    if !root_or_skip("leftovers_of_a_crashed_runtime_are_found_and_removed") {
        return;
    }
    let node = TestNode::new();
    let uid = "2b3c4d5e-2222-4000-8000-000000000002";
    let p = pod("job", uid, PodSpec::default());
    let mut sb = Sandbox::new(&node.env, "default", "job", uid, "job", false);
    sb.create(&[]).unwrap();
    let pod_ip = sb.pod_ip().unwrap();
    sb.write_files(
        &plan::render_resolv_conf(&p, ""),
        &plan::render_hosts(&p, &pod_ip, "job"),
    )
    .unwrap();
    let init = sb.start_init(false).unwrap();
    // A process that ignores SIGTERM and has a child in its group.
    let child = start(&sb, &sh("worker", "trap '' TERM; sleep 60 & sleep 60"));
    let pid = child.id();
    drop(sb); // the runtime "crashes": only the files remain

    let found = Sandbox::list(&node.env);
    assert_eq!(found.len(), 1);
    let sb = &found[0];
    assert_eq!(sb.record.uid, uid);
    assert_eq!(
        sb.pod_ip().as_deref(),
        Some(pod_ip.as_str()),
        "IP from the recorded result"
    );
    assert_eq!(sb.live_processes(), [("worker".to_string(), pid)]);
    assert_eq!(sb.init(), Some(init), "the pod's init is found again");
    let (rec_pid, started) = sb.recorded_pid("worker").unwrap();
    assert_eq!(rec_pid, pid);
    assert!(sandbox::alive(pid, started));
    assert!(
        !sandbox::alive(pid, started + 1),
        "a reused pid is not ours"
    );

    sb.teardown().unwrap();
    // Reap our direct child; its group got SIGKILL.
    let mut child = child;
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(!sandbox::netns_exists(sb.record.netns.as_deref().unwrap()));
    assert!(node.allocations().is_empty());
}

#[test]
fn gc_releases_addresses_without_a_sandbox_and_hostnetwork_pods_use_the_node() {
    if !root_or_skip("gc_releases_addresses_without_a_sandbox_and_hostnetwork_pods_use_the_node") {
        return;
    }
    let node = TestNode::new();
    let mut keep = Sandbox::new(
        &node.env,
        "default",
        "keep",
        "3c4d5e6f-0000-4000-8000-000000000003",
        "keep",
        false,
    );
    keep.create(&[]).unwrap();
    let mut lost = Sandbox::new(
        &node.env,
        "default",
        "lost",
        "4d5e6f70-0000-4000-8000-000000000004",
        "lost",
        false,
    );
    lost.create(&[]).unwrap();
    assert_eq!(node.allocations().len(), 2);
    // The record of one is lost (its namespace goes with the test node).
    std::fs::remove_dir_all(&lost.dir).unwrap();
    let valid: Vec<String> = Sandbox::list(&node.env)
        .into_iter()
        .map(|s| s.record.container_id)
        .collect();
    sandbox::cni_gc(&node.env, &valid).unwrap();
    assert_eq!(node.allocations(), [keep.pod_ip().unwrap()]);

    // hostNetwork: no namespace of its own, the node's IP and name.
    let p = pod(
        "hn",
        "5e6f7081-0000-4000-8000-000000000005",
        PodSpec {
            host_network: Some(true),
            ..Default::default()
        },
    );
    let hostname = plan::hostname(&p, "node-1");
    let mut hn = Sandbox::new(
        &node.env,
        "default",
        "hn",
        "5e6f7081-0000-4000-8000-000000000005",
        &hostname,
        true,
    );
    hn.create(&[]).unwrap();
    assert!(hn.ready());
    assert_eq!(hn.pod_ip().as_deref(), Some("192.168.1.10"));
    hn.write_files(
        &plan::render_resolv_conf(&p, "nameserver 1.1.1.1\n"),
        &plan::render_hosts(&p, "192.168.1.10", &hostname),
    )
    .unwrap();
    hn.start_init(false).unwrap();
    let out = hn
        .command(&sh(
            "c",
            "hostname; cat /etc/resolv.conf; ip -o link show cni0",
        ))
        .unwrap()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("node-1\nnameserver 1.1.1.1\n"), "{text}");
    assert!(
        text.contains("cni0"),
        "runs in the node's namespace: {text}"
    );
    hn.teardown().unwrap();
    keep.teardown().unwrap();
    assert!(node.allocations().is_empty());
}

/// A running pod (namespace, files, init) on `node`; `sa` mounts its
/// ServiceAccount directory.
fn running_pod(node: &TestNode, name: &str, uid: &str, sa: bool) -> Sandbox {
    let p = pod(name, uid, PodSpec::default());
    let mut sb = Sandbox::new(&node.env, "default", name, uid, name, false);
    sb.create(&[]).unwrap();
    let ip = sb.pod_ip().unwrap();
    sb.write_files(
        &plan::render_resolv_conf(&p, ""),
        &plan::render_hosts(&p, &ip, name),
    )
    .unwrap();
    if sa {
        write_token(&sb, "token-1");
    }
    sb.start_init(sa).unwrap();
    sb
}

fn write_token(sb: &Sandbox, token: &str) {
    let now = jiff::Timestamp::now();
    let p = weft_node::serviceaccount::Projection {
        token: token.into(),
        ca_crt: "CA".into(),
        namespace: "default".into(),
        issued: now,
        expires: now + jiff::SignedDuration::from_secs(3600),
    };
    weft_node::serviceaccount::write_files(
        &sb.dir.join(sandbox::SERVICE_ACCOUNT_DIR),
        &p,
        Some(65534),
        0o600,
    )
    .unwrap();
}

/// Runs `script` in the pod as `identity`: (exit status, stdout + stderr).
fn run_as(sb: &Sandbox, identity: Identity, script: &str) -> (std::process::ExitStatus, String) {
    let launch = Launch {
        identity,
        ..sh("exec", script)
    };
    let out = sb.command(&launch).unwrap().output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[test]
fn a_default_pod_runs_as_nobody_without_any_capability() {
    if !root_or_skip("a_default_pod_runs_as_nobody_without_any_capability") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "plain",
        "6f708192-0000-4000-8000-000000000006",
        false,
    );
    let (st, text) = run_as(&sb, Identity::default(), "cat /proc/self/status");
    assert!(st.success(), "{text}");
    assert_eq!(status_field(&text, "Uid"), "65534 65534 65534 65534");
    assert_eq!(status_field(&text, "Gid"), "65534 65534 65534 65534");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(&text, set),
            "0000000000000000",
            "{set}: {text}"
        );
    }
    assert_eq!(status_field(&text, "NoNewPrivs"), "0");
}

#[test]
fn a_pod_sees_only_its_own_processes() {
    if !root_or_skip("a_pod_sees_only_its_own_processes") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(&node, "ps", "708192a3-0000-4000-8000-000000000007", false);
    let mut app = start(&sb, &sh("app", "exec sleep 60"));
    // The app is in the pod's PID namespace: pid 1 is the pod's init, then
    // the app, then this exec's shell (and whatever it runs): nothing else.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (st, text) = run_as(
            &sb,
            Identity::default(),
            "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done",
        );
        assert!(st.success(), "{text}");
        if text.contains(" sleep") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let procs: Vec<&str> = text.lines().collect();
    assert!(procs.contains(&"1 weft-pod-init"), "{text}");
    assert!(procs.iter().any(|l| l.ends_with(" sleep")), "{text}");
    assert!(procs.len() <= 4, "only the pod's processes: {text}");
    let me = std::process::id();
    let (_, mine) = run_as(&sb, Identity::default(), &format!("cat /proc/{me}/cmdline"));
    assert!(
        !mine.contains("sandbox-"),
        "the test process is not visible: {mine}"
    );
    sb.kill_all();
    let _ = app.wait();
}

#[test]
fn a_default_pod_cannot_write_etc() {
    if !root_or_skip("a_default_pod_cannot_write_etc") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(&node, "etc", "8192a3b4-0000-4000-8000-000000000008", false);
    let target = format!("/etc/weft-t-{}-probe", std::process::id());
    let (st, text) = run_as(&sb, Identity::default(), &format!("echo x > {target}"));
    assert!(!st.success());
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!Path::new(&target).exists());
}

#[test]
fn a_default_pod_cannot_enter_the_machines_namespaces() {
    if !root_or_skip("a_default_pod_cannot_enter_the_machines_namespaces") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "escape",
        "92a3b4c5-0000-4000-8000-000000000009",
        false,
    );
    let (st, text) = run_as(
        &sb,
        Identity::default(),
        "nsenter -t 1 -n -m true && echo entered",
    );
    assert!(!st.success() && !text.contains("entered"), "{text}");
    assert!(
        text.contains("Operation not permitted") || text.contains("Permission denied"),
        "{text}"
    );
}

#[test]
fn a_privileged_pod_can_add_a_link_in_its_own_namespace() {
    if !root_or_skip("a_privileged_pod_can_add_a_link_in_its_own_namespace") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(&node, "priv", "a3b4c5d6-0000-4000-8000-00000000000a", false);
    let (st, text) = run_as(
        &sb,
        Identity::root_all(),
        // veth: this machine's kernel has no dummy module; any link type proves it.
        "ip link add d0 type veth peer name d0p && ip -o link show d0",
    );
    assert!(st.success(), "{text}");
    let netns = sb.record.netns.clone().unwrap();
    assert!(ip(&["-n", &netns, "-o", "link", "show"]).contains("d0"));
    assert!(!ip(&["-n", &node.ns, "-o", "link", "show"]).contains("d0:"));
}

#[test]
fn net_admin_added_to_uid_1000_allows_ip_link_add_and_its_absence_refuses() {
    if !root_or_skip("net_admin_added_to_uid_1000_allows_ip_link_add_and_its_absence_refuses") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "netadm",
        "b4c5d6e7-0000-4000-8000-00000000000b",
        false,
    );
    let user = |caps: &[&str]| Identity {
        uid: 1000,
        gid: 1000,
        caps: caps.iter().map(|c| c.to_string()).collect(),
        ..Identity::default()
    };
    let (st, text) = run_as(
        &sb,
        user(&["CAP_NET_ADMIN"]),
        "ip link add d1 type veth peer name d1p && grep Cap /proc/self/status",
    );
    assert!(st.success(), "{text}");
    // Exactly NET_ADMIN (bit 12), as ambient, so it survived exec.
    assert_eq!(status_field(&text, "CapEff"), "0000000000001000", "{text}");
    assert_eq!(status_field(&text, "CapAmb"), "0000000000001000", "{text}");
    let (st, text) = run_as(&sb, user(&[]), "ip link add d2 type veth peer name d2p");
    assert!(!st.success(), "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
}

#[test]
fn no_new_privs_is_set_when_privilege_escalation_is_not_allowed() {
    if !root_or_skip("no_new_privs_is_set_when_privilege_escalation_is_not_allowed") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(&node, "nnp", "c5d6e7f8-0000-4000-8000-00000000000c", false);
    let id = Identity {
        no_new_privs: true,
        ..Identity::default()
    };
    let (st, text) = run_as(&sb, id, "cat /proc/self/status");
    assert!(st.success(), "{text}");
    assert_eq!(status_field(&text, "NoNewPrivs"), "1");
}

#[test]
fn an_unprivileged_server_binds_port_80_in_the_pod_only() {
    if !root_or_skip("an_unprivileged_server_binds_port_80_in_the_pod_only") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "web80",
        "d6e7f809-0000-4000-8000-00000000000d",
        false,
    );
    let (st, text) = run_as(
        &sb,
        Identity::default(),
        "python3 -c \"import socket; s=socket.socket(); s.bind(('0.0.0.0', 80)); print('bound')\"",
    );
    assert!(st.success() && text.contains("bound"), "{text}");
    // The node's namespace keeps the kernel default.
    let node_ns = weft_linux::Netns::open(node.env.node_netns.as_ref().unwrap()).unwrap();
    let port_start = node_ns
        .run(|| weft_linux::sysctl::read("net/ipv4/ip_unprivileged_port_start"))
        .unwrap()
        .unwrap();
    assert_eq!(port_start, "1024");
}

/// Waits (polling) for a child to end; None after 10 s.
fn wait_ended(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_ends_a_default_container_promptly_and_its_signal_is_reported() {
    if !root_or_skip("sigterm_ends_a_default_container_promptly_and_its_signal_is_reported") {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let node = TestNode::new();
    let sb = running_pod(&node, "term", "e7f8091a-0000-4000-8000-00000000000e", false);
    let mut child = start(&sb, &sh("app", "exec sleep 300"));
    // Wait until the app runs in the pod (its comm is sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run_as(&sb, Identity::default(), "cat /proc/[0-9]*/comm")
        .1
        .contains("sleep")
    {
        assert!(Instant::now() < deadline, "the app never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    sandbox::signal_group(child.id(), nix::sys::signal::Signal::SIGTERM);
    let st = wait_ended(&mut child).expect("SIGTERM ends the container (it is not PID 1)");
    assert_eq!(st.signal(), Some(15), "{st:?}");
}

#[test]
fn exit_codes_and_signals_of_the_command_pass_through() {
    if !root_or_skip("exit_codes_and_signals_of_the_command_pass_through") {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "codes",
        "f8091a2b-0000-4000-8000-00000000000f",
        false,
    );
    let (st, _) = run_as(&sb, Identity::default(), "exit 7");
    assert_eq!(st.code(), Some(7));
    let (st, _) = run_as(&sb, Identity::default(), "kill -KILL $$");
    assert_eq!(st.signal(), Some(9), "{st:?}");
    let (st, _) = run_as(&sb, Identity::default(), "true");
    assert!(st.success());
}

#[test]
fn a_missing_program_is_a_start_error_not_an_exit_code() {
    if !root_or_skip("a_missing_program_is_a_start_error_not_an_exit_code") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(
        &node,
        "nocmd",
        "091a2b3c-0000-4000-8000-000000000010",
        false,
    );
    let launch = Launch {
        argv: vec!["weft-t-no-such-program".into()],
        ..sh("app", "")
    };
    let err = sb
        .container_command(&launch, Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weft-t-no-such-program") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn the_service_account_volume_is_read_only_and_shows_a_renewed_token() {
    if !root_or_skip("the_service_account_volume_is_read_only_and_shows_a_renewed_token") {
        return;
    }
    let node = TestNode::new();
    let sb = running_pod(&node, "sa", "1a2b3c4d-5e6f-4000-8000-000000000011", true);
    let dir = weft_node::podinit::SERVICE_ACCOUNT_MOUNT;
    let (st, text) = run_as(
        &sb,
        Identity::default(),
        &format!("cat {dir}/token; echo; cat {dir}/namespace"),
    );
    assert!(st.success(), "{text}");
    assert_eq!(text, "token-1\ndefault");
    let (st, text) = run_as(&sb, Identity::root_all(), &format!("echo x > {dir}/token"));
    assert!(
        !st.success() && text.contains("Read-only file system"),
        "{text}"
    );
    write_token(&sb, "token-2");
    let (_, text) = run_as(&sb, Identity::default(), &format!("cat {dir}/token"));
    assert_eq!(
        text, "token-2",
        "the renewed file is seen through the mount"
    );
    // The machine's side of the mount point stays empty.
    let entries = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0);
}

/// A directory under the machine's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("weft-t-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sets up `pod`'s volumes on `sb` from `objects` (no API) and records the
/// mounts of its first container, as the runtime does before starting it.
fn set_up_volumes(sb: &Sandbox, pod: &Pod, objects: &volumes::Objects) -> Launch {
    let env = sb.env.clone();
    let sources = volumes::set_up(pod, &sb.dir, &|p| env.host_path(p), objects).unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let mounts = volumes::container_mounts(container, &sources, &[]).unwrap();
    volumes::write_mounts(&sb.dir, &container.name, &mounts).unwrap();
    Launch {
        name: container.name.clone(),
        ..sh(&container.name, "")
    }
}

/// Runs `script` as container `launch.name` (with its mounts) as `identity`.
fn run_in(
    sb: &Sandbox,
    launch: &Launch,
    identity: Identity,
    script: &str,
) -> (std::process::ExitStatus, String) {
    let l = Launch {
        identity,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..launch.clone()
    };
    let out = sb.command(&l).unwrap().output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn pod_with_volume(volume: Volume, mount: VolumeMount) -> Pod {
    pod(
        "vol",
        "7a8b9c0d-0000-4000-8000-000000000021",
        PodSpec {
            containers: vec![Container {
                name: "app".into(),
                volume_mounts: Some(vec![mount]),
                ..Default::default()
            }],
            volumes: Some(vec![volume]),
            ..Default::default()
        },
    )
}

fn config_map(value: &str) -> volumes::Objects {
    let cm = ConfigMap {
        data: Some([("app.conf".to_string(), value.to_string())].into()),
        ..Default::default()
    };
    volumes::Objects {
        config_maps: [("settings".to_string(), Some(cm))].into(),
        ..Default::default()
    }
}

#[test]
fn a_config_map_volume_shows_its_file_with_its_mode_and_follows_updates() {
    if !root_or_skip("a_config_map_volume_shows_its_file_with_its_mode_and_follows_updates") {
        return;
    }
    let node = TestNode::new();
    let mnt = TempDir::new("cm-mnt");
    let target = mnt.0.join("config");
    let p = pod_with_volume(
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                items: Some(vec![KeyToPath {
                    key: "app.conf".into(),
                    path: "app.conf".into(),
                    mode: Some(0o640),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "cfg".into(),
            mount_path: target.display().to_string(),
            ..Default::default()
        },
    );
    let sb = running_pod(&node, "vol", "7a8b9c0d-0000-4000-8000-000000000021", false);
    let launch = set_up_volumes(&sb, &p, &config_map("color=blue"));
    let file = target.join("app.conf");
    let script = format!("cat {0}; echo; stat -L -c '%a %u' {0}", file.display());
    let (st, text) = run_in(&sb, &launch, Identity::default(), &script);
    assert!(st.success(), "{text}");
    assert_eq!(text, "color=blue\n640 65534\n");

    // The object changes: the runtime projects it again; the mount shows it.
    set_up_volumes(&sb, &p, &config_map("color=green"));
    let (_, text) = run_in(
        &sb,
        &launch,
        Identity::default(),
        &format!("cat {}", file.display()),
    );
    assert_eq!(text, "color=green");
    // Only the pod sees the file: the machine's mount point stays empty.
    assert_eq!(
        std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[test]
fn a_config_map_volume_refuses_writes_even_from_root() {
    if !root_or_skip("a_config_map_volume_refuses_writes_even_from_root") {
        return;
    }
    let node = TestNode::new();
    let mnt = TempDir::new("cm-ro");
    let target = mnt.0.join("config");
    let p = pod_with_volume(
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "cfg".into(),
            mount_path: target.display().to_string(),
            ..Default::default()
        },
    );
    let sb = running_pod(&node, "vol", "7a8b9c0d-0000-4000-8000-000000000022", false);
    let launch = set_up_volumes(&sb, &p, &config_map("x"));
    let (st, text) = run_in(
        &sb,
        &launch,
        Identity::root_all(),
        &format!("echo y > {}/new", target.display()),
    );
    assert!(
        !st.success() && text.contains("Read-only file system"),
        "{text}"
    );
}

fn host_path_pod(path: &str, target: &Path, read_only: bool, uid: &str) -> Pod {
    let mut p = pod_with_volume(
        Volume {
            name: "host".into(),
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "host".into(),
            mount_path: target.display().to_string(),
            read_only: Some(read_only),
            ..Default::default()
        },
    );
    p.metadata.uid = Some(uid.into());
    p
}

#[test]
fn a_host_path_volume_is_the_machines_directory_read_and_written() {
    if !root_or_skip("a_host_path_volume_is_the_machines_directory_read_and_written") {
        return;
    }
    let node = TestNode::new();
    let host = TempDir::new("hp-src");
    std::fs::write(host.0.join("hello"), "from the machine").unwrap();
    let mnt = TempDir::new("hp-mnt");
    let target = mnt.0.join("data");
    let uid = "7a8b9c0d-0000-4000-8000-000000000023";
    let p = host_path_pod(&host.0.display().to_string(), &target, false, uid);
    let sb = running_pod(&node, "vol", uid, false);
    let launch = set_up_volumes(&sb, &p, &volumes::Objects::default());
    let script = format!(
        "cat {0}/hello; echo from the pod > {0}/reply",
        target.display()
    );
    let (st, text) = run_in(&sb, &launch, Identity::root_all(), &script);
    assert!(st.success(), "{text}");
    assert_eq!(text, "from the machine");
    assert_eq!(
        std::fs::read_to_string(host.0.join("reply")).unwrap(),
        "from the pod\n"
    );
}

#[test]
fn a_read_only_host_path_mount_refuses_writes() {
    if !root_or_skip("a_read_only_host_path_mount_refuses_writes") {
        return;
    }
    let node = TestNode::new();
    let host = TempDir::new("hp-ro-src");
    let mnt = TempDir::new("hp-ro-mnt");
    let target = mnt.0.join("data");
    let uid = "7a8b9c0d-0000-4000-8000-000000000024";
    let p = host_path_pod(&host.0.display().to_string(), &target, true, uid);
    let sb = running_pod(&node, "vol", uid, false);
    let launch = set_up_volumes(&sb, &p, &volumes::Objects::default());
    let (st, text) = run_in(
        &sb,
        &launch,
        Identity::root_all(),
        &format!("ls {0} && echo x > {0}/file", target.display()),
    );
    assert!(
        !st.success() && text.contains("Read-only file system"),
        "{text}"
    );
    assert!(!host.0.join("file").exists());
}

#[test]
fn the_cni_config_host_path_is_the_nodes_own_directory() {
    if !root_or_skip("the_cni_config_host_path_is_the_nodes_own_directory") {
        return;
    }
    let node = TestNode::new();
    let mnt = TempDir::new("hp-cni");
    let target = mnt.0.join("net.d");
    let uid = "7a8b9c0d-0000-4000-8000-000000000025";
    let p = host_path_pod("/etc/cni/net.d", &target, false, uid);
    let sb = running_pod(&node, "vol", uid, false);
    let launch = set_up_volumes(&sb, &p, &volumes::Objects::default());
    let (st, text) = run_in(
        &sb,
        &launch,
        Identity::root_all(),
        &format!("ls {}", target.display()),
    );
    assert!(st.success(), "{text}");
    assert_eq!(
        text.trim(),
        "10-weft.conflist",
        "the node's CNI dir, not /etc/cni/net.d"
    );
}

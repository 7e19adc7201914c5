//! Namespace tests of pod sandboxes: a fake node namespace `weft-t…`, a real
//! weft-cni, a container process in the pod's namespaces. Everything made is
//! removed on drop, also when a test fails. Needs root: skipped with a
//! message elsewhere, failing in CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use weft_cluster::Layout;
use weft_linux::testns::root_or_skip;
use weft_node::sandbox::{self, Launch, NodeEnv, Sandbox};
use weft_node::{plan, probe};

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

fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(sb: &Sandbox, launch: &Launch) -> std::process::Child {
    let child = sb.container_command(launch).unwrap().spawn().unwrap();
    sb.record_pid(&launch.name, child.id()).unwrap();
    child
}

fn sh(name: &str, script: &str) -> Launch {
    Launch {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        working_dir: None,
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

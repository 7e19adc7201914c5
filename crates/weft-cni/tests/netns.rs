//! weft-cni against the kernel: every test builds its own node and pod
//! namespaces (removed on drop, also when the test fails) and calls the
//! plugin binary the way a container runtime does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{pod_ip, root_or_skip, Node, Ns, PLUGIN, REFERENCE_PLUGINS};
use serde_json::{json, Value};
use weft_linux::Handle;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP server in `ns` that answers one line per connection with
/// `<line> from <peer address>`, for `conns` connections.
fn tcp_server(ns: &Ns, bind: &str, conns: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = ns.run(|| TcpListener::bind(bind)).expect("bind in pod");
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, peer)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut line = String::new();
            let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
            let _ = writeln!(s, "{} from {}", line.trim(), peer.ip());
        }
    });
    (addr, handle)
}

/// Sends a line from inside `ns` and returns the answer.
fn tcp_ask(ns: &Ns, to: &str, msg: &str) -> std::io::Result<String> {
    let to: SocketAddr = to.parse().unwrap();
    let msg = msg.to_string();
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        writeln!(s, "{msg}")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer.trim().to_string())
    })
}

fn udp_echo(ns: &Ns, bind: &str) -> JoinHandle<()> {
    let sock = ns.run(|| UdpSocket::bind(bind)).expect("bind udp in pod");
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let answer = format!("{} from {}", String::from_utf8_lossy(&buf[..n]), peer.ip());
            let _ = sock.send_to(answer.as_bytes(), peer);
        }
    })
}

fn udp_ask(ns: &Ns, to: &str, msg: &str) -> std::io::Result<String> {
    let to: SocketAddr = to.parse().unwrap();
    let msg = msg.to_string();
    ns.run(move || {
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.send_to(msg.as_bytes(), to)?;
        let mut buf = [0u8; 1500];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

#[test]
fn add_wires_a_pod_as_the_seeds_example_says() {
    if !root_or_skip("add_wires_a_pod_as_the_seeds_example_says") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["mtu"] = json!(1450);
    let result = node.call("ADD", "pod-a", Some(&pod), &conf).ok();

    // Result: bridge, host veth, pod interface (with sandbox and mtu), IP, default route.
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["interfaces"][0]["name"], "cni0");
    assert_eq!(result["interfaces"][2]["name"], "eth0");
    assert_eq!(result["interfaces"][2]["sandbox"], pod.path());
    assert_eq!(result["interfaces"][2]["mtu"], 1450);
    assert_eq!(result["ips"][0]["interface"], 2);
    assert_eq!(result["ips"][0]["gateway"], "10.244.1.1");
    let addr = result["ips"][0]["address"].as_str().unwrap();
    assert!(
        addr.starts_with("10.244.1.") && addr.ends_with("/24"),
        "{addr}"
    );
    assert_eq!(
        result["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "10.244.1.1"})
    );

    // Kernel: eth0 with that address and MTU, default via the gateway.
    let ip_addr = pod.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(ip_addr.contains(&format!("inet {addr}")), "{ip_addr}");
    let link = pod.ip(&["link", "show", "dev", "eth0"]);
    assert!(
        link.contains("mtu 1450") && link.contains("state UP"),
        "{link}"
    );
    let routes = pod.ip(&["route"]);
    assert!(
        routes.contains("default via 10.244.1.1 dev eth0"),
        "{routes}"
    );
    assert_eq!(
        result["interfaces"][2]["mac"].as_str().unwrap(),
        pod_mac(&pod)
    );

    // Node: the peer is a port of cni0, the bridge carries the gateway, forwarding is on.
    let host_veth = result["interfaces"][1]["name"].as_str().unwrap();
    let port = node.ns.ip(&["link", "show", "dev", host_veth]);
    assert!(
        port.contains("master cni0") && port.contains("state UP"),
        "{port}"
    );
    let br = node.ns.ip(&["-o", "addr", "show", "dev", "cni0"]);
    assert!(br.contains("inet 10.244.1.1/24"), "{br}");
    let fwd = node.ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    assert_eq!(node.allocations("podnet"), vec![pod_ip(&result)]);

    // The node reaches the pod through the bridge.
    let (addr_srv, server) = tcp_server(&pod, "0.0.0.0:8080", 1);
    let answer = tcp_ask(
        &node.ns,
        &format!("{}:{}", pod_ip(&result), addr_srv.port()),
        "hi",
    )
    .unwrap();
    assert_eq!(answer, "hi from 10.244.1.1");
    server.join().unwrap();
}

fn pod_mac(pod: &Ns) -> String {
    let out = pod.ip(&["-o", "link", "show", "dev", "eth0"]);
    out.split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string()
}

#[test]
fn two_pods_on_one_bridge_talk_tcp_and_udp() {
    if !root_or_skip("two_pods_on_one_bridge_talk_tcp_and_udp") {
        return;
    }
    let node = Node::new();
    let (a, b) = (Ns::new("pa"), Ns::new("pb"));
    let conf = node.conf("1.0.0");
    let ra = node.call("ADD", "pod-a", Some(&a), &conf).ok();
    let rb = node.call("ADD", "pod-b", Some(&b), &conf).ok();
    let (ip_a, ip_b) = (pod_ip(&ra), pod_ip(&rb));
    assert_ne!(ip_a, ip_b);

    let (_, server) = tcp_server(&b, "0.0.0.0:80", 1);
    assert_eq!(
        tcp_ask(&a, &format!("{ip_b}:80"), "tcp").unwrap(),
        format!("tcp from {ip_a}")
    );
    server.join().unwrap();

    let server = udp_echo(&a, "0.0.0.0:53");
    assert_eq!(
        udp_ask(&b, &format!("{ip_a}:53"), "udp").unwrap(),
        format!("udp from {ip_b}")
    );
    server.join().unwrap();
}

#[test]
fn hostport_from_a_neighbour_and_hairpin_from_the_pod_itself() {
    if !root_or_skip("hostport_from_a_neighbour_and_hairpin_from_the_pod_itself") {
        return;
    }
    let node = Node::new();
    let neighbour = node.with_neighbour();
    let pod = Ns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["hairpinMode"] = json!(true);
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.168.1.10"}
    ]});
    let result = node.call("ADD", "web", Some(&pod), &conf).ok();
    let ip = pod_ip(&result);

    // The bridge port is in hairpin mode.
    let host_veth = result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let hairpin = node.ns.run(|| {
        let mut h = Handle::new().unwrap();
        let idx = h.link_by_name(&host_veth).unwrap().unwrap().index;
        h.hairpin(idx).unwrap()
    });
    assert_eq!(hairpin, Some(true));

    // From another host, to the node's address: reaches the pod, source IP kept.
    let (_, server) = tcp_server(&pod, "0.0.0.0:80", 2);
    assert_eq!(
        tcp_ask(&neighbour, "192.168.1.10:8080", "outside").unwrap(),
        "outside from 192.168.1.100"
    );
    // Hairpin: the pod reaches itself through its own hostPort.
    let answer = tcp_ask(&pod, "192.168.1.10:8080", "self").unwrap();
    assert!(answer.starts_with("self from 10.244.1."), "{answer}");
    server.join().unwrap();

    let udp = udp_echo(&pod, "0.0.0.0:53");
    assert_eq!(
        udp_ask(&neighbour, "192.168.1.10:5353", "dns?").unwrap(),
        "dns? from 192.168.1.100"
    );
    udp.join().unwrap();

    // DEL takes the rules away.
    assert!(node.nft().contains(&format!("dnat ip to {ip}:80")));
    node.call("DEL", "web", Some(&pod), &conf).ok();
    let rules = node.nft();
    assert!(
        !rules.contains(&ip) && !rules.contains("web/eth0"),
        "{rules}"
    );
    assert!(tcp_ask(&neighbour, "192.168.1.10:8080", "gone").is_err());
}

#[test]
fn ip_masq_hides_pods_behind_the_node_address_outside_the_cluster() {
    if !root_or_skip("ip_masq_hides_pods_behind_the_node_address_outside_the_cluster") {
        return;
    }
    let node = Node::new();
    let neighbour = node.with_neighbour();
    let (a, b) = (Ns::new("pa"), Ns::new("pb"));
    let mut conf = node.conf("1.1.0");
    conf["ipMasq"] = json!(true);
    conf["clusterCIDRs"] = json!(["10.244.0.0/16"]);
    let ra = node.call("ADD", "masq-a", Some(&a), &conf).ok();
    let rb = node.call("ADD", "masq-b", Some(&b), &conf).ok();

    let (_, server) = tcp_server(&neighbour, "192.168.1.100:9000", 1);
    assert_eq!(
        tcp_ask(&a, "192.168.1.100:9000", "out").unwrap(),
        "out from 192.168.1.10"
    );
    server.join().unwrap();
    // Inside the cluster CIDR: no NAT.
    let (_, server) = tcp_server(&b, "0.0.0.0:80", 1);
    assert_eq!(
        tcp_ask(&a, &format!("{}:80", pod_ip(&rb)), "in").unwrap(),
        format!("in from {}", pod_ip(&ra))
    );
    server.join().unwrap();

    // CHECK sees the rule; DEL removes it.
    let mut check = conf.clone();
    check["prevResult"] = ra.clone();
    node.call("CHECK", "masq-a", Some(&a), &check).ok();
    node.call("DEL", "masq-a", Some(&a), &conf).ok();
    assert!(!node.nft().contains(&pod_ip(&ra)));
    assert!(node.nft().contains(&pod_ip(&rb)));
}

#[test]
fn del_removes_everything_and_a_second_del_succeeds() {
    if !root_or_skip("del_removes_everything_and_a_second_del_succeeds") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let conf = node.conf("1.1.0");
    let result = node.call("ADD", "gone", Some(&pod), &conf).ok();
    let host_veth = result["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(node.links().contains(&host_veth));

    node.call("DEL", "gone", Some(&pod), &conf).ok();
    assert!(!node.links().contains(&host_veth), "{}", node.links());
    assert!(!pod.ip(&["-br", "link"]).contains("eth0"));
    assert!(node.allocations("podnet").is_empty());

    // Again, and for a container never seen, and with the netns already gone.
    node.call("DEL", "gone", Some(&pod), &conf).ok();
    node.call("DEL", "never-added", None, &conf).ok();
    let out = node.call_raw(
        PLUGIN,
        "DEL",
        "x1",
        Some("/var/run/netns/weft-does-not-exist"),
        "eth0",
        &conf,
        &[],
    );
    assert!(out.success, "{}", out.stdout);
}

#[test]
fn check_catches_a_deleted_address_and_a_missing_interface() {
    if !root_or_skip("check_catches_a_deleted_address_and_a_missing_interface") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let conf = node.conf(version);
        let id = format!("chk-{}", version.replace('.', ""));
        let result = node.call("ADD", &id, Some(&pod), &conf).ok();
        let mut check = conf.clone();
        check["prevResult"] = result.clone();
        node.call("CHECK", &id, Some(&pod), &check).ok();

        let addr = result["ips"][0]["address"].as_str().unwrap();
        pod.ip(&["addr", "del", addr, "dev", "eth0"]);
        node.call("CHECK", &id, Some(&pod), &check)
            .err(103, &format!("address {addr} is missing"));

        // The default route went with the address; both are reported.
        let err = node
            .call("CHECK", &id, Some(&pod), &check)
            .err(103, "route 0.0.0.0/0 via 10.244.1.1 is missing");
        assert!(err["msg"].as_str().unwrap().contains("address"));

        node.call("DEL", &id, Some(&pod), &conf).ok();
        node.call("CHECK", &id, Some(&pod), &check).err(103, "");
    }
    // The interface itself gone.
    let conf = node.conf("1.1.0");
    let result = node.call("ADD", "chk-if", Some(&pod), &conf).ok();
    let mut check = conf.clone();
    check["prevResult"] = result;
    pod.ip(&["link", "del", "eth0"]);
    // The IPAM still holds the address; the kernel lost the interface.
    node.call("CHECK", "chk-if", Some(&pod), &check)
        .err(103, "interface eth0 is missing");
    // CHECK without prevResult, and for a version that has no CHECK.
    node.call("CHECK", "chk-if", Some(&pod), &conf)
        .err(7, "prevResult");
    let mut old = node.conf("0.3.1");
    old["prevResult"] = check["prevResult"].clone();
    node.call("CHECK", "chk-if", Some(&pod), &old)
        .err(1, "CHECK is not defined for cniVersion 0.3.1");
}

#[test]
fn results_in_every_supported_version() {
    if !root_or_skip("results_in_every_supported_version") {
        return;
    }
    let node = Node::new();
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let pod = Ns::new("pod");
        let id = format!("v{}", version.replace('.', ""));
        let r = node.call("ADD", &id, Some(&pod), &node.conf(version)).ok();
        assert_eq!(r["cniVersion"], version);
        let ip = &r["ips"][0];
        if version.starts_with("0.") {
            assert_eq!(ip["version"], "4", "{version}: {r}");
        } else {
            assert!(ip.get("version").is_none(), "{version}: {r}");
        }
        assert_eq!(
            r["interfaces"][2].get("mtu").is_some(),
            version == "1.1.0",
            "{version}: {r}"
        );
        node.call("DEL", &id, Some(&pod), &node.conf(version)).ok();
    }
    let version = node
        .call_raw(
            PLUGIN,
            "VERSION",
            "",
            None,
            "",
            &json!({"cniVersion": "1.1.0"}),
            &[],
        )
        .ok();
    assert_eq!(
        version,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn dual_stack_pod_gets_both_families() {
    if !root_or_skip("dual_stack_pod_gets_both_families") {
        return;
    }
    let node = Node::new();
    let (a, b) = (Ns::new("pa"), Ns::new("pb"));
    let mut conf = node.conf("1.1.0");
    conf["ipam"] = json!({
        "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}],
                   [{"subnet": "fd00:10:244:1::/64"}]],
        "dataDir": node.data_dir,
    });
    let ra = node.call("ADD", "ds-a", Some(&a), &conf).ok();
    let rb = node.call("ADD", "ds-b", Some(&b), &conf).ok();
    assert_eq!(ra["ips"].as_array().unwrap().len(), 2);
    let v6_b = rb["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let v6_a = ra["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(v6_b.starts_with("fd00:10:244:1::"), "{rb}");
    assert!(a
        .ip(&["-6", "route"])
        .contains("default via fd00:10:244:1::1 dev eth0"));

    let (_, server) = tcp_server(&b, "[::]:80", 1);
    assert_eq!(
        tcp_ask(&a, &format!("[{v6_b}]:80"), "six").unwrap(),
        format!("six from {v6_a}")
    );
    server.join().unwrap();
}

#[test]
fn gc_releases_everything_not_in_valid_attachments() {
    if !root_or_skip("gc_releases_everything_not_in_valid_attachments") {
        return;
    }
    let node = Node::new();
    let pods: Vec<Ns> = (0..3).map(|_| Ns::new("pod")).collect();
    let mut conf = node.conf("1.1.0");
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let mut results = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let mut c = conf.clone();
        c["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(8080 + i);
        results.push(node.call("ADD", &format!("gc-{i}"), Some(pod), &c).ok());
    }
    let mut gc = node.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc-1", "ifname": "eth0"}]);
    node.call_raw(PLUGIN, "GC", "", None, "", &gc, &[]).ok();

    assert_eq!(node.allocations("podnet"), vec![pod_ip(&results[1])]);
    let links = node.links();
    for (i, r) in results.iter().enumerate() {
        let veth = r["interfaces"][1]["name"].as_str().unwrap();
        assert_eq!(links.contains(veth), i == 1, "{veth} after GC: {links}");
    }
    let rules = node.nft();
    assert!(
        rules.contains("gc-1/eth0") && !rules.contains("gc-0/eth0") && !rules.contains("gc-2/eth0"),
        "{rules}"
    );

    // GC without the list is a config error.
    node.call_raw(PLUGIN, "GC", "", None, "", &node.conf("1.1.0"), &[])
        .err(7, "cni.dev/valid-attachments");
}

#[test]
fn sixty_four_concurrent_adds_get_distinct_addresses() {
    if !root_or_skip("sixty_four_concurrent_adds_get_distinct_addresses") {
        return;
    }
    let node = Node::new();
    let pods: Vec<Ns> = (0..64).map(|_| Ns::new("pod")).collect();
    let conf = node.conf("1.1.0");
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            node.spawn(
                "ADD",
                &format!("c{i}"),
                Some(&pod.path()),
                "eth0",
                &conf,
                &[],
            )
        })
        .collect();
    let mut ips = std::collections::BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ips.insert(pod_ip(&v));
    }
    assert_eq!(ips.len(), 64);
    assert_eq!(node.allocations("podnet").len(), 64);
    // Every pod is really wired with its own address.
    for pod in &pods {
        assert!(pod
            .ip(&["-o", "addr", "show", "dev", "eth0"])
            .contains("10.244.1."));
    }
}

/// Starts an ADD that stalls at `stage`, waits until `ready` holds, then SIGKILLs it.
fn kill_add_at(
    node: &Node,
    pod: &Ns,
    id: &str,
    conf: &Value,
    stage: &str,
    ready: impl Fn() -> bool,
) {
    let mut child = node.spawn(
        "ADD",
        id,
        Some(&pod.path()),
        "eth0",
        conf,
        &[("WEFT_CNI_TEST_STALL", stage)],
    );
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ADD never reached {stage}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `ip netns exec` execs the plugin, so the child's pid is the plugin's.
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn sigkill_in_the_middle_of_add_is_cleaned_by_del_and_by_gc() {
    if !root_or_skip("sigkill_in_the_middle_of_add_is_cleaned_by_del_and_by_gc") {
        return;
    }
    let node = Node::new();
    let mut conf = node.conf("1.1.0");
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let veth = |id: &str| weft_cni::net::host_veth_name(id, "eth0");

    // Killed after wiring (address allocated, veth made, no rules yet): DEL cleans.
    let pod = Ns::new("pod");
    kill_add_at(&node, &pod, "k1", &conf, "after-wire", || {
        node.links().contains(&veth("k1"))
    });
    assert_eq!(node.allocations("podnet").len(), 1);
    node.call("DEL", "k1", Some(&pod), &conf).ok();
    assert!(node.allocations("podnet").is_empty());
    assert!(!node.links().contains(&veth("k1")));
    assert!(!pod.ip(&["-br", "link"]).contains("eth0"));

    // Killed after IPAM: a retried ADD reuses the address and succeeds.
    let pod2 = Ns::new("pod");
    kill_add_at(&node, &pod2, "k2", &conf, "after-ipam", || {
        node.allocations("podnet").len() == 1
    });
    let held = node.allocations("podnet");
    let r = node.call("ADD", "k2", Some(&pod2), &conf).ok();
    assert_eq!(vec![pod_ip(&r)], held);

    // Killed after making the veth but before attaching it to the bridge,
    // and the runtime forgets the pod: GC cleans the address and the veth.
    let pod3 = Ns::new("pod");
    kill_add_at(&node, &pod3, "k3", &conf, "after-veth", || {
        node.links().contains(&veth("k3"))
    });
    let mut gc = node.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "k2", "ifname": "eth0"}]);
    node.call_raw(PLUGIN, "GC", "", None, "", &gc, &[]).ok();
    assert_eq!(node.allocations("podnet"), held);
    assert!(!node.links().contains(&veth("k3")));
    assert!(node.links().contains(&veth("k2")));
}

#[test]
fn chained_with_a_reference_plugin_like_libcni() {
    if !root_or_skip("chained_with_a_reference_plugin_like_libcni") {
        return;
    }
    let tuning = format!("{REFERENCE_PLUGINS}/tuning");
    assert!(
        std::path::Path::new(&tuning).exists(),
        "{tuning} missing: install containernetworking-plugins"
    );
    let node = Node::new();
    let pod = Ns::new("pod");
    // A conflist: weft-cni first, then tuning (sets a sysctl in the pod).
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "chain",
        "plugins": [
            {"type": "weft-cni", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
             "ipam": {"subnet": "10.244.1.0/24", "dataDir": node.data_dir}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}
        ]
    });
    // libcni injects name and cniVersion into each plugin, and the previous
    // result as prevResult.
    let plugin_conf = |i: usize, prev: Option<&Value>| {
        let mut c = list["plugins"][i].clone();
        c["name"] = list["name"].clone();
        c["cniVersion"] = list["cniVersion"].clone();
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    };
    let path = pod.path();
    let first = node
        .call_raw(
            PLUGIN,
            "ADD",
            "chain-1",
            Some(&path),
            "eth0",
            &plugin_conf(0, None),
            &[],
        )
        .ok();
    let second = node
        .call_raw(
            &tuning,
            "ADD",
            "chain-1",
            Some(&path),
            "eth0",
            &plugin_conf(1, Some(&first)),
            &[],
        )
        .ok();
    // tuning passed our result on unchanged in substance.
    assert_eq!(second["ips"], first["ips"]);
    assert_eq!(second["interfaces"][2]["name"], "eth0");
    let rp = pod.exec(&["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"]);
    assert_eq!(String::from_utf8_lossy(&rp.stdout).trim(), "2");

    // CHECK down the chain with the final result, then DEL in reverse order.
    node.call_raw(
        PLUGIN,
        "CHECK",
        "chain-1",
        Some(&path),
        "eth0",
        &plugin_conf(0, Some(&second)),
        &[],
    )
    .ok();
    node.call_raw(
        &tuning,
        "CHECK",
        "chain-1",
        Some(&path),
        "eth0",
        &plugin_conf(1, Some(&second)),
        &[],
    )
    .ok();
    node.call_raw(
        &tuning,
        "DEL",
        "chain-1",
        Some(&path),
        "eth0",
        &plugin_conf(1, Some(&second)),
        &[],
    )
    .ok();
    node.call_raw(
        PLUGIN,
        "DEL",
        "chain-1",
        Some(&path),
        "eth0",
        &plugin_conf(0, Some(&second)),
        &[],
    )
    .ok();
    assert!(node.allocations("chain").is_empty());

    // weft-cni later in a chain: it appends to the prevResult it is given.
    let prev =
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "dummy0"}], "ips": [], "routes": []});
    let r = node
        .call_raw(
            PLUGIN,
            "ADD",
            "chain-2",
            Some(&path),
            "eth0",
            &plugin_conf(0, Some(&prev)),
            &[],
        )
        .ok();
    assert_eq!(r["interfaces"][0]["name"], "dummy0");
    assert_eq!(r["interfaces"][3]["name"], "eth0");
    assert_eq!(r["ips"][0]["interface"], 3);
}

#[test]
fn delegates_to_another_ipam_plugin() {
    if !root_or_skip("delegates_to_another_ipam_plugin") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let mut conf = node.conf("1.0.0");
    conf["ipam"]["type"] = json!("host-local");
    let r = node.call("ADD", "hl", Some(&pod), &conf).ok();
    assert!(pod_ip(&r).starts_with("10.244.1."));
    // host-local keeps its files in the same layout as ours.
    assert_eq!(node.allocations("podnet"), vec![pod_ip(&r)]);
    node.call("DEL", "hl", Some(&pod), &conf).ok();
    assert!(node.allocations("podnet").is_empty());
    conf["ipam"]["type"] = json!("no-such-ipam");
    node.call("ADD", "hl2", Some(&pod), &conf).err(
        7,
        "ipam.type: plugin \"no-such-ipam\" not found in CNI_PATH",
    );
}

#[test]
fn status_reports_readiness_and_exhaustion() {
    if !root_or_skip("status_reports_readiness_and_exhaustion") {
        return;
    }
    let node = Node::new();
    let mut conf = node.conf("1.1.0");
    conf["ipam"]["subnet"] = json!("10.244.1.0/30"); // one usable address: .2
    node.call_raw(PLUGIN, "STATUS", "", None, "", &conf, &[])
        .ok();
    let pod = Ns::new("pod");
    node.call("ADD", "only", Some(&pod), &conf).ok();
    node.call_raw(PLUGIN, "STATUS", "", None, "", &conf, &[])
        .err(50, "no free addresses left in range set 10.244.1.0/30");
    // Exhaustion on ADD names the range, and leaves nothing behind.
    let pod2 = Ns::new("pod");
    let before = node.links();
    node.call("ADD", "one-too-many", Some(&pod2), &conf)
        .err(101, "no IP addresses available in range set 10.244.1.0/30");
    assert_eq!(node.links(), before);
    assert!(!pod2.ip(&["-br", "link"]).contains("eth0"));
}

#[test]
fn bad_input_gets_the_spec_error_and_leaves_nothing() {
    if !root_or_skip("bad_input_gets_the_spec_error_and_leaves_nothing") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let conf = node.conf("1.1.0");
    let path = pod.path();
    let nothing_left = |what: &str| {
        assert!(
            node.allocations("podnet").is_empty(),
            "{what}: allocation left"
        );
        assert!(
            !node.links().contains("veth"),
            "{what}: veth left: {}",
            node.links()
        );
        assert!(
            !pod.ip(&["-br", "link"]).contains("eth0"),
            "{what}: pod interface left"
        );
    };

    // Environment.
    node.call_raw(PLUGIN, "ADD", "", Some(&path), "eth0", &conf, &[])
        .err(4, "CNI_CONTAINERID is not set");
    node.call_raw(PLUGIN, "ADD", "x", None, "eth0", &conf, &[])
        .err(4, "CNI_NETNS is not set");
    node.call_raw(PLUGIN, "ADD", "x", Some(&path), "", &conf, &[])
        .err(4, "CNI_IFNAME is not set");
    node.call_raw(PLUGIN, "ADD", "x", Some(&path), "eth0/1", &conf, &[])
        .err(4, "CNI_IFNAME=\"eth0/1\"");
    node.call_raw(PLUGIN, "ADD", "bad id!", Some(&path), "eth0", &conf, &[])
        .err(4, "CNI_CONTAINERID");
    node.call_raw(PLUGIN, "FROB", "x", Some(&path), "eth0", &conf, &[])
        .err(4, "CNI_COMMAND=\"FROB\"");
    node.call_raw(
        PLUGIN,
        "ADD",
        "x",
        Some(&path),
        "eth0",
        &conf,
        &[("CNI_ARGS", "IP=banana")],
    )
    .err(4, "IP=\"banana\"");
    nothing_left("env");

    // Config.
    let out = {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &node.ns.name, PLUGIN])
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "x")
            .env("CNI_NETNS", &path)
            .env("CNI_IFNAME", "eth0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"{\"cniVersion\": \"1.1.0\", ")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 6, "{v}");

    let with = |patch: Value| {
        let mut c = conf.clone();
        for (k, v) in patch.as_object().unwrap() {
            if k == "ipam" {
                for (ik, iv) in v.as_object().unwrap() {
                    c["ipam"][ik] = iv.clone();
                }
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let add = |c: &Value| node.call("ADD", "x", Some(&pod), c);
    add(&with(json!({"cniVersion": "0.2.0"}))).err(1, "cniVersion 0.2.0 is not supported");
    add(&with(json!({"mtu": "big"}))).err(7, "mtu:");
    add(&with(json!({"isGateway": "yes"}))).err(7, "isGateway:");
    add(&with(json!({"ipam": {"subnet": "10.244.1.0/33"}}))).err(7, "ipam.subnet");
    add(&with(json!({"ipam": {"subnet": "10.244.1.7/24"}}))).err(7, "has host bits set");
    add(&with(
        json!({"ipam": {"rangeStart": "10.244.1.9", "rangeEnd": "10.244.1.8"}}),
    ))
    .err(7, "is after rangeEnd");
    add(&with(json!({"ipam": {"subnet": "10.244.1.0/31"}}))).err(7, "no room for pods");
    add(&with(json!({"bridge": "a-very-long-bridge-name"}))).err(7, "bridge:");
    add(&with(json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "gre"}]}})))
        .err(7, "runtimeConfig.portMappings[0].protocol");
    nothing_left("config");

    // Namespace path that does not exist: code 3, nothing allocated.
    node.call_raw(
        PLUGIN,
        "ADD",
        "x",
        Some("/var/run/netns/weft-no-such-ns"),
        "eth0",
        &conf,
        &[],
    )
    .err(
        3,
        "network namespace /var/run/netns/weft-no-such-ns does not exist",
    );
    nothing_left("netns");

    // Interface name already taken in the pod: clear error, allocation given back.
    pod.ip(&["link", "add", "eth0", "type", "bridge"]);
    node.call("ADD", "x", Some(&pod), &conf)
        .err(7, "interface eth0 already exists");
    assert!(node.allocations("podnet").is_empty());
    assert!(!node.links().contains("veth"), "{}", node.links());
    pod.ip(&["link", "del", "eth0"]);

    // A bridge name taken by something that is not a bridge.
    node.ns.ip(&[
        "link",
        "add",
        "notbr",
        "type",
        "veth",
        "peer",
        "name",
        "notbr-peer",
    ]);
    add(&with(json!({"bridge": "notbr"}))).err(7, "bridge: notbr exists and is not a bridge");
    nothing_left("not a bridge");
}

#[test]
fn runtime_config_ips_mac_and_ipam_routes() {
    if !root_or_skip("runtime_config_ips_mac_and_ipam_routes") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["capabilities"] = json!({"ips": true, "mac": true});
    conf["runtimeConfig"] = json!({"ips": ["10.244.1.77/24"], "mac": "0a:58:0a:f4:01:4d"});
    conf["ipam"]["routes"] =
        json!([{"dst": "10.96.0.0/12"}, {"dst": "172.16.0.0/12", "gw": "10.244.1.254"}]);
    let r = node.call("ADD", "fixed", Some(&pod), &conf).ok();
    assert_eq!(r["ips"][0]["address"], "10.244.1.77/24");
    assert_eq!(r["interfaces"][2]["mac"], "0a:58:0a:f4:01:4d");
    assert_eq!(pod_mac(&pod), "0a:58:0a:f4:01:4d");
    let routes = pod.ip(&["route"]);
    assert!(
        routes.contains("10.96.0.0/12 via 10.244.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("172.16.0.0/12 via 10.244.1.254 dev eth0"),
        "{routes}"
    );
    assert_eq!(r["routes"][1], json!({"dst": "10.96.0.0/12"}));

    // The same address for a second pod is refused and nothing is left behind.
    let other = Ns::new("pod");
    node.call("ADD", "fixed-2", Some(&other), &conf)
        .err(102, "requested IP 10.244.1.77 is already allocated");
    assert_eq!(node.allocations("podnet"), vec!["10.244.1.77".to_string()]);
    // CNI_ARGS IP= works the same way.
    let mut plain = node.conf("1.1.0");
    plain["ipam"]["routes"] = json!([]);
    let r = node
        .call_raw(
            PLUGIN,
            "ADD",
            "fixed-3",
            Some(&other.path()),
            "eth0",
            &plain,
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.244.1.78")],
        )
        .ok();
    assert_eq!(pod_ip(&r), "10.244.1.78");
}

#[test]
fn invalid_container_ids_and_ifnames_are_refused_before_anything_is_created() {
    if !root_or_skip("invalid_container_ids_and_ifnames_are_refused_before_anything_is_created") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let path = pod.path();
    let mut conf = node.conf("1.1.0");
    conf["ipMasq"] = json!(true);
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let pod_links = pod.ip(&["-br", "link"]);
    let cases = [
        ("-x", "eth0", "CNI_CONTAINERID"),
        (".x", "eth0", "CNI_CONTAINERID"),
        ("a b", "eth0", "CNI_CONTAINERID"),
        ("a\"b", "eth0", "CNI_CONTAINERID"),
        ("a/b", "eth0", "CNI_CONTAINERID"),
        ("a\nb", "eth0", "CNI_CONTAINERID"),
        ("ok", ".", "CNI_IFNAME"),
        ("ok", "..", "CNI_IFNAME"),
        ("ok", "eth 0", "CNI_IFNAME"),
        ("ok", "eth:0", "CNI_IFNAME"),
        ("ok", "eth0/1", "CNI_IFNAME"),
        ("ok", "sixteen-bytes-xx", "CNI_IFNAME"),
    ];
    for (id, ifname, var) in cases {
        for verb in ["ADD", "CHECK", "DEL"] {
            let out = node.call_raw(PLUGIN, verb, id, Some(&path), ifname, &conf, &[]);
            out.err(4, &format!("{var}="));
        }
        let what = format!("{id:?}/{ifname:?}");
        assert!(node.allocations("podnet").is_empty(), "{what}: allocation");
        assert!(
            !node.links().contains("veth"),
            "{what}: veth: {}",
            node.links()
        );
        assert!(
            !node.links().contains("cni0"),
            "{what}: bridge: {}",
            node.links()
        );
        assert!(
            !node.nft().contains("weft-cni"),
            "{what}: nft: {}",
            node.nft()
        );
        assert_eq!(pod.ip(&["-br", "link"]), pod_links, "{what}: pod links");
    }
}

#[test]
fn a_container_id_too_long_for_an_nft_comment_still_gets_hostports() {
    if !root_or_skip("a_container_id_too_long_for_an_nft_comment_still_gets_hostports") {
        return;
    }
    let node = Node::new();
    let pod = Ns::new("pod");
    let mut conf = node.conf("1.1.0");
    conf["ipMasq"] = json!(true);
    conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]});
    let id = format!("long-{}", "0123456789abcdef".repeat(10));
    let owner = weft_cni::config::Attachment {
        container_id: id.clone(),
        ifname: "eth0".into(),
    };
    let tag = weft_cni::nat::tag(&owner);
    let result = node.call("ADD", &id, Some(&pod), &conf).ok();
    let rules = node.nft();
    assert!(rules.contains(&format!("comment \"{tag}\"")), "{rules}");
    assert!(
        rules.contains(&weft_cni::nat::chain_name(&owner)),
        "{rules}"
    );
    let mut check = conf.clone();
    check["prevResult"] = result;
    node.call("CHECK", &id, Some(&pod), &check).ok();
    node.call("DEL", &id, Some(&pod), &conf).ok();
    let rules = node.nft();
    assert!(!rules.contains(&tag), "{rules}");
    assert!(!rules.contains("hp-"), "{rules}");
    assert!(node.allocations("podnet").is_empty());
}

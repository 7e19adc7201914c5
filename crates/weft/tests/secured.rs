//! The secured embedded cluster end to end (root; clusters in `weft-…`
//! namespaces, removed on drop): HTTPS with the cluster CA, 401 without
//! or with a wrong token from the machine and from a pod, private
//! credentials on disk, a pod's ServiceAccount token used by kube-rs
//! in-cluster config and by kubectl (what a RoleBinding grants, 403 for
//! the rest), and pods that are not root on the machine.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{field, pods, root_or_skip, wait_until, Cluster};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !root_or_skip(test) {
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Namespaces team-a and team-b, a Role in team-a that reads pods bound to
/// team-a's default ServiceAccount, a Secret in team-b, and a long-running
/// pod in team-a (HOME for kubectl's cache: uid 65534 has none).
const MANIFEST: &str = "\
apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n---\n\
apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team-b}\ntype: Opaque\nstringData: {password: hunter2}\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: pod-reader, namespace: team-a}\n\
rules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list, watch]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: read-pods, namespace: team-a}\n\
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}\n\
subjects:\n- {kind: ServiceAccount, name: default, namespace: team-a}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: team-a}\n\
spec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, infinity]\n    env: [{name: HOME, value: /tmp}]\n";

fn cluster(prefix: &str) -> Cluster {
    let c = Cluster::new(prefix);
    let path = std::env::temp_dir().join(format!("{}-secured.yaml", c.name));
    std::fs::write(&path, MANIFEST).unwrap();
    c.ok(&["up", "-f", path.to_str().unwrap(), "--timeout", "180"]);
    wait_until("pod team-a/app running", 120, || {
        pods(&c)
            .iter()
            .any(|p| field(p, "/metadata/name") == "app" && field(p, "/status/phase") == "Running")
    });
    c
}

fn in_app(c: &Cluster, argv: &[&str]) -> std::process::Output {
    let mut args = vec!["exec", "-n", "team-a", "app", "--"];
    args.extend_from_slice(argv);
    c.weft(&args)
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Python that GETs `url` verifying TLS with `cafile`, with `token` (if
/// not empty) as bearer, printing `<status> <body>`.
fn get(url: &str, cafile: &str, token: &str) -> String {
    format!(
        "import urllib.request,urllib.error,ssl,sys\n\
         ctx=ssl.create_default_context(cafile='{cafile}')\n\
         r=urllib.request.Request('{url}')\n\
         t='{token}'\n\
         if t: r.add_header('Authorization','Bearer '+t)\n\
         try:\n  x=urllib.request.urlopen(r,timeout=5,context=ctx); sys.stdout.write(str(x.status)+' '+x.read().decode())\n\
         except urllib.error.HTTPError as e:\n  sys.stdout.write(str(e.code)+' '+e.read().decode())\n"
    )
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[test]
fn the_api_refuses_missing_and_wrong_tokens_from_the_machine_and_from_a_pod() {
    let Some(_one) = one_at_a_time("the_api_refuses_missing_and_wrong_tokens") else {
        return;
    };
    let c = cluster("sec");
    let kc = std::fs::read_to_string(c.state.join("kubeconfig")).unwrap();
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(&kc).unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let ca = c.state.join("pki").join("ca.crt");
    let ca = ca.to_str().unwrap();
    let on_machine = |path: &str, token: &str| {
        let o = std::process::Command::new("python3")
            .args(["-c", &get(&format!("{server}{path}"), ca, token)])
            .output()
            .unwrap();
        out(&o)
    };
    assert!(on_machine("/api/v1/pods", "").starts_with("401 "));
    assert!(on_machine("/api/v1/pods", "wrong").starts_with("401 "));
    assert!(
        on_machine("/api/v1/pods", &admin).starts_with("200 "),
        "the admin token works"
    );
    assert!(on_machine("/healthz", "").starts_with("200 ok"));

    let ca_in_pod = format!("{SA_DIR}/ca.crt");
    for base in ["https://192.168.1.2:6443", "https://10.96.0.1:443"] {
        let from_pod = |path: &str, token: &str| {
            out(&in_app(
                &c,
                &[
                    "python3",
                    "-c",
                    &get(&format!("{base}{path}"), &ca_in_pod, token),
                ],
            ))
        };
        let anon = from_pod("/api/v1/namespaces/team-a/pods", "");
        assert!(anon.starts_with("401 "), "{base}: {anon}");
        assert!(anon.contains("Unauthorized"), "{anon}");
        let wrong = from_pod("/api/v1/namespaces/team-a/pods", "wrong");
        assert!(wrong.starts_with("401 "), "{base}: {wrong}");
        let health = from_pod("/healthz", "");
        assert!(health.starts_with("200 ok"), "{base}: {health}");
    }
}

#[test]
fn credentials_on_disk_are_readable_by_their_owner_only() {
    let Some(_one) = one_at_a_time("credentials_on_disk_are_readable_by_their_owner_only") else {
        return;
    };
    let c = cluster("sed");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&c.state), 0o700, "state dir");
    assert_eq!(mode(&c.state.join("kubeconfig")), 0o600, "admin kubeconfig");
    assert_eq!(
        mode(&c.state.join("nodes/node-1/kubeconfig")),
        0o600,
        "node kubeconfig"
    );
    for key in ["ca.key", "sa.key", "apiserver.key", "tokens.json"] {
        assert_eq!(mode(&c.state.join("pki").join(key)), 0o600, "{key}");
    }
    // And the path `weft kubeconfig` prints is that file, which kubectl uses.
    assert_eq!(
        c.ok(&["kubeconfig"]).trim(),
        c.state.join("kubeconfig").to_str().unwrap()
    );
    let o = c.kubectl(&["get", "ns", "team-a", "-o", "name"]);
    assert_eq!(out(&o).trim(), "namespace/team-a");
}

/// The in-cluster example binary, built with the tests: `cargo test
/// --all-targets` leaves it as `examples/incluster-<hash>` (the newest one
/// wins), `cargo build --examples` as `examples/incluster`.
fn incluster_bin() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name == "incluster" || name.starts_with("incluster-")) && p.extension().is_none()
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    match found.pop() {
        Some((_, p)) => p.to_str().unwrap().to_string(),
        None => dir.join("incluster").to_str().unwrap().to_string(),
    }
}

#[test]
fn a_pods_token_gets_what_its_role_binding_grants_with_kube_rs_and_kubectl() {
    let Some(_one) = one_at_a_time("a_pods_token_gets_what_its_role_binding_grants") else {
        return;
    };
    let bin = incluster_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} (built by cargo test)"
    );
    let c = cluster("seg");
    let namespace = out(&in_app(&c, &["cat", &format!("{SA_DIR}/namespace")]));
    assert_eq!(namespace, "team-a");

    let pods_a = out(&in_app(&c, &[&bin, "team-a", "pods"]));
    assert_eq!(
        pods_a.trim(),
        "ok 1",
        "kube-rs in-cluster lists team-a's pods"
    );
    let secrets_b = out(&in_app(&c, &[&bin, "team-b", "secrets"]));
    assert_eq!(
        secrets_b.trim(),
        "err 403 secrets is forbidden: User \"system:serviceaccount:team-a:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-b\""
    );

    let kubectl = |args: &[&str]| {
        let mut argv = vec!["kubectl"];
        argv.extend_from_slice(args);
        in_app(&c, &argv)
    };
    let o = kubectl(&["get", "pods", "-n", "team-a", "-o", "name"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "pod/app");
    let o = kubectl(&["get", "secrets", "-n", "team-b"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("cannot list resource \"secrets\""),
        "{}",
        out(&o)
    );
    let o = kubectl(&["auth", "can-i", "list", "pods", "-n", "team-a"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "yes",
        "{}",
        out(&o)
    );
    let o = kubectl(&["auth", "can-i", "list", "secrets", "-n", "team-b"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "no",
        "{}",
        out(&o)
    );
}

#[test]
fn a_default_pod_is_nobody_in_its_own_pid_namespace() {
    let Some(_one) = one_at_a_time("a_default_pod_is_nobody_in_its_own_pid_namespace") else {
        return;
    };
    let c = cluster("seh");
    let id = out(&in_app(&c, &["id", "-u"]));
    assert_eq!(id.trim(), "65534");
    // Its /proc lists the pod's processes only: a handful, none of the
    // machine's (pid 1 is the pod's init, not the machine's).
    let procs = out(&in_app(&c, &["sh", "-c", "ls /proc | grep -c '^[0-9]'"]));
    let n: usize = procs.trim().parse().unwrap_or_else(|_| panic!("{procs}"));
    assert!((2..20).contains(&n), "{n} processes visible");
    let comm = out(&in_app(&c, &["cat", "/proc/1/comm"]));
    assert_ne!(comm.trim(), "systemd", "pid 1 is the machine's init");
    let o = in_app(&c, &["sh", "-c", "echo x > /etc/weft-test"]);
    assert!(!o.status.success(), "wrote /etc: {}", out(&o));
    assert!(!std::path::Path::new("/etc/weft-test").exists());
    let o = in_app(&c, &["nsenter", "-t", "1", "-n", "true"]);
    assert!(
        !o.status.success(),
        "entered pid 1's namespace: {}",
        out(&o)
    );
}

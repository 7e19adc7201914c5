//! kubectl's troubleshooting verbs against a `weft up` cluster (root;
//! namespaces `weft-<name>-…`): `logs` (tail, timestamps, follow,
//! previous), `exec` (output, piped stdin, exit codes, a TTY), `attach`,
//! `port-forward` (kube-rs, kubectl over tunnelled and plain SPDY), streamed
//! from the node runtime's kubelet endpoint through the API server.
//!
//! One cluster serves every test here; it is brought down when the test
//! process exits (an `atexit` hook), whether the tests passed or not.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use common::{field, pods, root_or_skip, wait_until, Cluster};

/// `done` writes three lines and waits; `ticker` writes a line five
/// times a second.
const MANIFEST: &str = "\
apiVersion: v1\nkind: Pod\nmetadata: {name: done}\n\
spec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo a; echo b; echo c >&2; exec sleep infinity']\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: ticker}\n\
spec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done']\n";

/// `reader` echoes what reaches its stdin (`stdinOnce`: closed when the
/// first attach session leaves); `term` runs on a terminal of its own,
/// reads a line, and reports its terminal and, once the attach session's
/// size arrived (or 5 s passed), that size.
const INPUT: &str = "\
apiVersion: v1\nkind: Pod\nmetadata: {name: reader}\n\
spec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    stdin: true\n    stdinOnce: true\n    command: [sh, -c, 'while read l; do echo \"got $l\"; done; echo eof']\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: term}\n\
spec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    stdin: true\n    tty: true\n    command: [sh, -c, 'read x; tty; i=0; while [ \"$(stty size)\" != \"30 100\" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; echo \"size $(stty size) read $x\"']\n";

/// An HTTP server (agnhost netexec) for port-forwarding.
const WEB: &str = "\
apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
spec:\n  containers:\n  - name: c\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    args: [netexec, --http-port=8080]\n";

/// Writes one line and fails, so it is restarted (created by its test:
/// `weft up` waits for every pod to be Ready).
const CRASHER: &str = "\
apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\n\
spec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo run; exit 1']\n";

static CLUSTER: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

extern "C" fn bring_down() {
    if let Some(m) = CLUSTER.get() {
        let taken = m.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(taken);
    }
}

/// The shared cluster, started by the first test that needs it.
fn cluster() -> &'static Mutex<Option<Cluster>> {
    CLUSTER.get_or_init(|| {
        // SAFETY: registers a plain function to run at exit; it only runs
        // `weft down` for the cluster made here.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::atexit(bring_down);
        }
        let c = Cluster::new("ks");
        let path = std::env::temp_dir().join(format!("{}-stream.yaml", c.name));
        std::fs::write(&path, format!("{MANIFEST}---\n{WEB}---\n{INPUT}")).unwrap();
        c.ok(&["up", "-f", path.to_str().unwrap(), "--timeout", "180"]);
        wait_until("pods done and ticker running", 120, || {
            let ps = pods(&c);
            ["done", "ticker", "web", "reader", "term"].iter().all(|n| {
                ps.iter().any(|p| {
                    field(p, "/metadata/name") == *n && field(p, "/status/phase") == "Running"
                })
            })
        });
        Mutex::new(Some(c))
    })
}

/// Runs `f` with the shared cluster (None when not root).
fn with_cluster(test: &str, f: impl FnOnce(&Cluster)) {
    if !root_or_skip(test) {
        return;
    }
    let guard = cluster().lock().unwrap_or_else(|p| p.into_inner());
    let c = guard.as_ref().expect("the shared cluster");
    f(c);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn kubectl_ok(c: &Cluster, args: &[&str]) -> String {
    let o = c.kubectl(args);
    assert!(
        o.status.success(),
        "kubectl {}: {:?}\n{}{}",
        args.join(" "),
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// `kubectl logs done` once all three lines are there.
fn logs_of_done(c: &Cluster) -> String {
    let mut out = String::new();
    wait_until("done's three lines", 30, || {
        out = stdout(&c.kubectl(&["logs", "done"]));
        out.lines().count() >= 3
    });
    out
}

#[test]
fn kubectl_logs_prints_stdout_and_stderr_of_the_container() {
    with_cluster(
        "kubectl_logs_prints_stdout_and_stderr_of_the_container",
        |c| {
            assert_eq!(logs_of_done(c), "a\nb\nc\n");
        },
    );
}

#[test]
fn kubectl_logs_tail_prints_only_the_last_lines() {
    with_cluster("kubectl_logs_tail_prints_only_the_last_lines", |c| {
        logs_of_done(c);
        assert_eq!(kubectl_ok(c, &["logs", "done", "--tail=2"]), "b\nc\n");
    });
}

#[test]
fn kubectl_logs_timestamps_prefixes_each_line_with_its_time() {
    with_cluster(
        "kubectl_logs_timestamps_prefixes_each_line_with_its_time",
        |c| {
            logs_of_done(c);
            let out = kubectl_ok(c, &["logs", "done", "--timestamps"]);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 3, "{out}");
            for (line, want) in lines.iter().zip(["a", "b", "c"]) {
                let (ts, text) = line.split_once(' ').expect("a timestamp and a line");
                assert_eq!(text, want);
                ts.parse::<jiff::Timestamp>()
                    .unwrap_or_else(|e| panic!("{ts:?} is not RFC 3339: {e}"));
            }
        },
    );
}

#[test]
fn kubectl_logs_follow_streams_lines_written_after_it_started() {
    with_cluster(
        "kubectl_logs_follow_streams_lines_written_after_it_started",
        |c| {
            let before = kubectl_ok(c, &["logs", "ticker"]);
            let last: u64 = before
                .lines()
                .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
                .max()
                .unwrap_or(0);
            let mut child = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(c.state.join("kubeconfig"))
                .args(["logs", "-f", "ticker"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("run kubectl logs -f");
            let out = child.stdout.take().expect("kubectl's stdout");
            let mut seen_later = false;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let n: Option<u64> = line.strip_prefix("tick ").and_then(|n| n.parse().ok());
                if n.is_some_and(|n| n > last + 3) {
                    seen_later = true;
                    break;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                seen_later,
                "kubectl logs -f ended before a later line (after tick {last})"
            );
        },
    );
}

#[test]
fn kubectl_logs_previous_prints_the_instance_before_the_restart() {
    with_cluster(
        "kubectl_logs_previous_prints_the_instance_before_the_restart",
        |c| {
            let path = std::env::temp_dir().join(format!("{}-crasher.yaml", c.name));
            std::fs::write(&path, CRASHER).unwrap();
            kubectl_ok(c, &["create", "-f", path.to_str().unwrap()]);
            let mut out = String::new();
            wait_until("crasher's previous log", 60, || {
                let o = c.kubectl(&["logs", "crasher", "--previous"]);
                out = stdout(&o);
                o.status.success() && !out.is_empty()
            });
            assert_eq!(out, "run\n");
        },
    );
}

#[test]
fn kubectl_logs_previous_of_a_container_never_restarted_is_an_error() {
    with_cluster(
        "kubectl_logs_previous_of_a_container_never_restarted_is_an_error",
        |c| {
            let o = c.kubectl(&["logs", "done", "--previous"]);
            assert!(!o.status.success());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("previous terminated container \"c\" in pod \"done\" not found"),
                "{err}"
            );
        },
    );
}

#[test]
fn kubectl_exec_prints_the_command_output() {
    with_cluster("kubectl_exec_prints_the_command_output", |c| {
        let out = kubectl_ok(
            c,
            &[
                "exec",
                "done",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; hostname",
            ],
        );
        assert_eq!(out, "out\ndone\n");
    });
}

#[test]
fn kubectl_exec_runs_as_the_container_user_in_the_pod_namespaces() {
    with_cluster(
        "kubectl_exec_runs_as_the_container_user_in_the_pod_namespaces",
        |c| {
            // uid 65534 (the default) and PID 1 of the pod's own PID namespace.
            let out = kubectl_ok(
                c,
                &[
                    "exec",
                    "done",
                    "--",
                    "sh",
                    "-c",
                    "id -u; cat /proc/1/cmdline | tr '\\0' ' '",
                ],
            );
            let mut lines = out.lines();
            assert_eq!(lines.next(), Some("65534"), "{out}");
            assert!(
                lines.next().is_some_and(|l| l.contains("pod-init")),
                "{out}"
            );
        },
    );
}

#[test]
fn kubectl_exec_with_stdin_pipes_it_to_the_command() {
    with_cluster("kubectl_exec_with_stdin_pipes_it_to_the_command", |c| {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(c.state.join("kubeconfig"))
            .args(["exec", "-i", "done", "--", "sh", "-c", "tr a-z A-Z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl exec -i");
        let mut stdin = child.stdin.take().expect("kubectl's stdin");
        stdin.write_all(b"piped through\n").unwrap();
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(stdout(&o), "PIPED THROUGH\n");
    });
}

#[test]
fn kubectl_exec_exits_with_the_exit_code_of_the_command() {
    with_cluster(
        "kubectl_exec_exits_with_the_exit_code_of_the_command",
        |c| {
            let o = c.kubectl(&["exec", "done", "--", "sh", "-c", "exit 3"]);
            assert_eq!(
                o.status.code(),
                Some(3),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("command terminated with exit code 3"), "{err}");
        },
    );
}

#[test]
fn kubectl_exec_with_a_tty_gives_the_command_a_terminal() {
    with_cluster(
        "kubectl_exec_with_a_tty_gives_the_command_a_terminal",
        |c| {
            // `script` gives kubectl a terminal of its own (kubectl wants one,
            // and stdin, for -t); its size reaches the command through the
            // resize channel.
            let kubectl = format!(
            "stty cols 100 rows 30; kubectl --kubeconfig {} exec -it done -- sh -c 'tty; stty size'",
            c.state.join("kubeconfig").display()
        );
            let o = Command::new("script")
                .args(["-qec", &kubectl, "/dev/null"])
                .stdin(Stdio::null())
                .output()
                .expect("run script (util-linux)");
            let out = stdout(&o);
            assert!(o.status.success(), "{:?}: {out}", o.status);
            assert!(out.contains("/dev/pts/"), "{out}");
            assert!(out.contains("30 100"), "{out}");
        },
    );
}

#[test]
fn kubectl_attach_streams_the_container_output_from_now_on() {
    with_cluster(
        "kubectl_attach_streams_the_container_output_from_now_on",
        |c| {
            let mut child = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(c.state.join("kubeconfig"))
                .args(["attach", "ticker"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("run kubectl attach");
            let out = child.stdout.take().expect("kubectl's stdout");
            let mut ticks = 0;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("tick ") {
                    ticks += 1;
                    if ticks == 3 {
                        break;
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(ticks, 3, "kubectl attach ended before three lines");
        },
    );
}

#[test]
fn kubectl_attach_with_stdin_feeds_the_container_and_stdin_once_closes_it() {
    with_cluster(
        "kubectl_attach_with_stdin_feeds_the_container_and_stdin_once_closes_it",
        |c| {
            // `timeout`: a session that never ends fails the test.
            let mut child = Command::new("timeout")
                .args(["60", "kubectl", "--kubeconfig"])
                .arg(c.state.join("kubeconfig"))
                .args(["attach", "-i", "reader"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run kubectl attach");
            let mut input = child.stdin.take().expect("kubectl's stdin");
            input.write_all(b"one\ntwo\n").expect("write to kubectl");
            // Our end of stdin closes: kubectl closes the stdin channel,
            // and stdinOnce closes the container's input.
            drop(input);
            let pid = child.id();
            let out = child.wait_with_output().expect("kubectl attach ends");
            let text = stdout(&out);
            assert!(
                text.contains("got one\ngot two\neof"),
                "kubectl attach (pid {pid}) {:?}: {text:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            wait_until("reader succeeded (its input ended)", 30, || {
                pods(c).iter().any(|p| {
                    field(p, "/metadata/name") == "reader"
                        && field(p, "/status/phase") == "Succeeded"
                })
            });
        },
    );
}

#[test]
fn kubectl_attach_with_a_tty_reaches_the_containers_terminal() {
    with_cluster(
        "kubectl_attach_with_a_tty_reaches_the_containers_terminal",
        |c| {
            // `script` gives kubectl a terminal (kubectl wants one for -t)
            // whose size goes through the resize channel; the piped line is
            // typed on it.
            let kubectl = format!(
                "stty cols 100 rows 30; kubectl --kubeconfig {} attach -it term",
                c.state.join("kubeconfig").display()
            );
            let mut child = Command::new("timeout")
                .args(["60", "script", "-qec", &kubectl, "/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run script (util-linux)");
            let mut input = child.stdin.take().expect("script's stdin");
            input.write_all(b"go\n").expect("write to script");
            drop(input);
            // The container ends after its report, and so does the session.
            let out = child.wait_with_output().expect("script ends");
            let seen = stdout(&out);
            assert!(out.status.success(), "{:?}: {seen:?}", out.status);
            assert!(seen.contains("/dev/pts/"), "{seen:?}");
            assert!(seen.contains("size 30 100 read go"), "{seen:?}");
        },
    );
}

/// kube-rs speaks kubelet's WebSocket port-forward protocol.
#[test]
fn port_forward_reaches_a_port_inside_the_pod() {
    with_cluster("port_forward_reaches_a_port_inside_the_pod", |c| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let answer = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let kubeconfig =
                kube::config::Kubeconfig::read_from(c.state.join("kubeconfig")).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::default_namespaced(client);
            let mut pf = pods.portforward("web", &[8080]).await.unwrap();
            let mut conn = pf.take_stream(8080).expect("a stream for port 8080");
            conn.write_all(b"GET /hostname HTTP/1.0\r\nHost: web\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer).await.unwrap();
            drop(conn);
            let _ = pf.join().await;
            String::from_utf8_lossy(&answer).into_owned()
        });
        assert!(
            answer.starts_with("HTTP/1.") && answer.ends_with("web"),
            "{answer}"
        );
    });
}

/// One HTTP/1.0 exchange with 127.0.0.1:`port` (the server closes the
/// connection after answering).
fn http_exchange(port: u16, request: &[u8]) -> std::io::Result<String> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    conn.write_all(request)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    http_exchange(
        port,
        format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes(),
    )
}

/// A running `kubectl port-forward pod/web :8080`, killed (by its
/// handle's pid) when dropped.
struct Forward {
    child: std::process::Child,
    local: u16,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Forward {
    fn start(c: &Cluster, env: &[(&str, &str)]) -> Forward {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(c.state.join("kubeconfig"))
            .args(["port-forward", "pod/web", ":8080"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl port-forward");
        let out = child.stdout.take().expect("kubectl's stdout");
        let err = child.stderr.take().expect("kubectl's stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(err), &mut s);
            s
        });
        let mut f = Forward {
            child,
            local: 0,
            stderr: Some(stderr),
        };
        // The first "Forwarding from 127.0.0.1:<local> -> 8080" line gives
        // the port; the rest is drained (a closed pipe would end kubectl).
        let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                    if let Some(p) = rest.split_whitespace().next().and_then(|p| p.parse().ok()) {
                        let _ = port_tx.send(p);
                    }
                }
            }
        });
        f.local = port_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or(0);
        if f.local == 0 {
            f.fail("kubectl port-forward printed no local port");
        }
        f
    }

    /// Panics with `what` and what kubectl wrote on stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let said = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        panic!("{what}; kubectl said: {said}");
    }

    fn answer(&mut self, r: std::io::Result<String>) -> String {
        match r {
            Ok(a) => a,
            Err(e) => self.fail(&format!("HTTP through the forward: {e}")),
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two requests on one forward (each its own connection, so its own
/// stream pair): the first is answered with the pod's name, the second
/// echoes.
fn two_requests_are_answered(c: &Cluster, env: &[(&str, &str)]) {
    let mut f = Forward::start(c, env);
    let first = http_get(f.local, "/hostname");
    let first = f.answer(first);
    assert!(
        first.starts_with("HTTP/1.") && first.ends_with("web"),
        "first answer: {first}"
    );
    let second = http_get(f.local, "/echo?msg=again");
    let second = f.answer(second);
    assert!(
        second.starts_with("HTTP/1.") && second.ends_with("again"),
        "second answer: {second}"
    );
}

/// kubectl tunnels SPDY in a WebSocket (`SPDY/3.1+portforward.k8s.io`);
/// one forward carries several connections, each on its own stream pair.
#[test]
fn kubectl_port_forward_carries_an_http_request_to_the_pod() {
    with_cluster(
        "kubectl_port_forward_carries_an_http_request_to_the_pod",
        |c| two_requests_are_answered(c, &[]),
    );
}

/// With WebSockets turned off kubectl upgrades to plain SPDY/3.1, which
/// the API server passes through to the node as well.
#[test]
fn kubectl_port_forward_over_plain_spdy_carries_an_http_request_to_the_pod() {
    with_cluster(
        "kubectl_port_forward_over_plain_spdy_carries_an_http_request_to_the_pod",
        |c| two_requests_are_answered(c, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]),
    );
}

/// A MiB each way, far past SPDY's 64 KiB initial window, does not stall.
#[test]
fn kubectl_port_forward_carries_transfers_larger_than_the_flow_control_window() {
    with_cluster(
        "kubectl_port_forward_carries_transfers_larger_than_the_flow_control_window",
        |c| {
            let mut f = Forward::start(c, &[]);
            let msg = "x".repeat(1 << 20);
            let body = format!("msg={msg}");
            let request = format!(
                "POST /echo HTTP/1.0\r\nHost: web\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let answer = http_exchange(f.local, request.as_bytes());
            let answer = f.answer(answer);
            assert!(
                answer.starts_with("HTTP/1."),
                "{}",
                &answer[..answer.len().min(200)]
            );
            assert!(
                answer.ends_with(&msg),
                "the answer is {} bytes, not ending in the 1 MiB sent",
                answer.len()
            );
        },
    );
}

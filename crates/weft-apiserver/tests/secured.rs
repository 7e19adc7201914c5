//! The secured server over real TLS sockets on 127.0.0.1, with kube-rs and
//! kubectl: authentication (static and ServiceAccount tokens), RBAC
//! decisions and kube-apiserver's 401/403 shapes, TokenRequest, the
//! ServiceAccount admission and the per-namespace defaults.

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use weft_apiserver::pki::Pki;
use weft_apiserver::rbac::UserInfo;
use weft_apiserver::{ApiServer, ApiServerConfig, Limits};

mod common;

use common::ca_der;

const ADMIN_TOKEN: &str = "admin-token-for-tests";

struct Server {
    _api: Arc<ApiServer>,
    port: u16,
    ca: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("weft-secured-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = Pki::load_or_create(
        &dir.join("pki"),
        &["127.0.0.1".into(), "kubernetes.default.svc".into()],
    )
    .unwrap();
    let admin = UserInfo {
        name: "weft-admin".into(),
        uid: String::new(),
        groups: vec!["system:masters".into()],
    };
    let api = ApiServer::open_secured(
        ApiServerConfig {
            state_dir: dir.join("api"),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            node_port_range: (30000, 32767),
            kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
            kubelet_sockets: None,
        },
        Limits::default(),
        &pki,
        vec![(ADMIN_TOKEN.into(), admin)],
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(api.clone().serve(l));
    Server {
        _api: api,
        port,
        ca: pki.ca_cert_pem.clone(),
        dir,
    }
}

fn client(s: &Server, token: Option<&str>) -> kube::Client {
    let mut cfg = kube::Config::new(format!("https://127.0.0.1:{}", s.port).parse().unwrap());
    cfg.root_cert = Some(ca_der(&s.ca));
    cfg.auth_info.token = token.map(|t| t.to_string().into());
    kube::Client::try_from(cfg).unwrap()
}

/// The HTTP status and Status message of a failed call.
fn status_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn raw_get(c: &kube::Client, path: &str) -> Result<String, kube::Error> {
    c.request_text(http::Request::get(path).body(vec![]).unwrap())
        .await
}

async fn namespace(admin: &kube::Client, name: &str) {
    let ns: Api<Namespace> = Api::all(admin.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

async fn token_for(admin: &kube::Client, ns: &str, sa: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let tr = sas
        .create_token_request(
            sa,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tr.status.unwrap().token
}

/// Namespaces a and b; in a, a Role that lists pods bound to a's default
/// ServiceAccount.
async fn pod_reader_in_a(admin: &kube::Client) {
    namespace(admin, "a").await;
    namespace(admin, "b").await;
    let dynamic = |plural: &str, kind: &str| {
        let gvk = kube::api::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::<kube::api::DynamicObject>::namespaced_with(admin.clone(), "a", &ar)
    };
    dynamic("roles", "Role")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "pod-reader", "namespace": "a"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    dynamic("rolebindings", "RoleBinding")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "read-pods", "namespace": "a"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "a"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn without_credentials_only_health_and_version_answer() {
    let s = start("anon").await;
    let anon = client(&s, None);
    assert_eq!(raw_get(&anon, "/healthz").await.unwrap(), "ok");
    assert!(raw_get(&anon, "/version")
        .await
        .unwrap()
        .contains("gitVersion"));
    for path in [
        "/api/v1/pods",
        "/api",
        "/apis",
        "/api/v1/namespaces/default/secrets",
    ] {
        let (code, msg) = status_of(raw_get(&anon, path).await);
        assert_eq!(code, 401, "{path}: {msg}");
        assert!(msg.starts_with("Unauthorized"), "{path}: {msg}");
    }
}

#[tokio::test]
async fn a_wrong_token_gets_401_everywhere() {
    let s = start("wrong").await;
    let c = client(&s, Some("not-a-token"));
    for path in ["/healthz", "/api/v1/pods"] {
        let (code, msg) = status_of(raw_get(&c, path).await);
        assert_eq!(code, 401, "{path}: {msg}");
        assert!(msg.contains("invalid bearer token"), "{msg}");
    }
}

#[tokio::test]
async fn the_admin_token_may_do_everything() {
    let s = start("admin").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    namespace(&admin, "team").await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "team");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "s"}, "type": "Opaque", "stringData": {"k": "v"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn a_service_account_gets_what_its_role_binding_grants_and_403_for_the_rest() {
    let s = start("sa").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    pod_reader_in_a(&admin).await;
    let token = token_for(&admin, "a", "default").await;
    let sa = client(&s, Some(&token));
    let pods_a: Api<Pod> = Api::namespaced(sa.clone(), "a");
    pods_a.list(&ListParams::default()).await.unwrap();
    let secrets_b: Api<Secret> = Api::namespaced(sa.clone(), "b");
    let (code, msg) = status_of(secrets_b.list(&ListParams::default()).await);
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "secrets is forbidden: User \"system:serviceaccount:a:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"b\""
    );
    let pods_b: Api<Pod> = Api::namespaced(sa.clone(), "b");
    let (code, _) = status_of(pods_b.list(&ListParams::default()).await);
    assert_eq!(code, 403, "the Role is in a, not b");
}

#[tokio::test]
async fn self_subject_access_review_agrees_with_the_authorizer() {
    let s = start("ssar").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    pod_reader_in_a(&admin).await;
    let sa = client(&s, Some(&token_for(&admin, "a", "default").await));
    let reviews: Api<SelfSubjectAccessReview> = Api::all(sa);
    let ask = |ns: &str, resource: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some("list".into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let yes = reviews
        .create(&PostParams::default(), &ask("a", "pods"))
        .await
        .unwrap();
    assert!(yes.status.as_ref().unwrap().allowed, "{yes:?}");
    let no = reviews
        .create(&PostParams::default(), &ask("b", "secrets"))
        .await
        .unwrap();
    assert!(!no.status.as_ref().unwrap().allowed, "{no:?}");
}

#[tokio::test]
async fn a_token_of_a_deleted_service_account_gets_401() {
    let s = start("gone").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    namespace(&admin, "a").await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "a");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap(),
    )
    .await
    .unwrap();
    let token = token_for(&admin, "a", "robot").await;
    let robot = client(&s, Some(&token));
    raw_get(&robot, "/api").await.unwrap();
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    let (code, msg) = status_of(raw_get(&robot, "/api").await);
    assert_eq!(code, 401);
    assert!(
        msg.contains("serviceaccount a/robot no longer exists"),
        "{msg}"
    );
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_and_the_ca() {
    let s = start("nsdefaults").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    namespace(&admin, "fresh").await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "fresh");
    sas.get("default").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "fresh");
    let ca = cms.get("kube-root-ca.crt").await.unwrap();
    assert_eq!(ca.data.unwrap()["ca.crt"], s.ca);
    // Namespaces from before the server started have them too.
    let sas: Api<ServiceAccount> = Api::namespaced(admin, "kube-system");
    sas.get("default").await.unwrap();
}

#[tokio::test]
async fn pods_default_to_the_default_service_account_and_need_theirs_to_exist() {
    let s = start("admission").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    let pods: Api<Pod> = Api::namespaced(admin, "default");
    let pod = |name: &str, sa: Option<&str>| -> Pod {
        let mut v = json!({"metadata": {"name": name},
                           "spec": {"containers": [{"name": "c", "image": "x"}]}});
        if let Some(sa) = sa {
            v["spec"]["serviceAccountName"] = json!(sa);
        }
        serde_json::from_value(v).unwrap()
    };
    let p = pods
        .create(&PostParams::default(), &pod("p1", None))
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().service_account_name.as_deref(),
        Some("default")
    );
    let (code, msg) = status_of(
        pods.create(&PostParams::default(), &pod("p2", Some("nobody")))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        msg.contains("error looking up service account default/nobody"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_token_request_shorter_than_ten_minutes_is_invalid() {
    let s = start("short").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    let sas: Api<ServiceAccount> = Api::namespaced(admin, "default");
    let r = sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(60),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    let (code, msg) = status_of(r);
    assert_eq!(code, 422);
    assert!(msg.contains("less than 10 minutes"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_answers_for_a_service_account() {
    if !weft_linux::testns::tool_or_skip("kubectl_auth_can_i", "kubectl") {
        return;
    }
    use base64::Engine;
    let s = start("can-i").await;
    let admin = client(&s, Some(ADMIN_TOKEN));
    pod_reader_in_a(&admin).await;
    let token = token_for(&admin, "a", "default").await;
    let kc = s.dir.join("sa.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: w\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\ncontexts:\n- name: w\n  context:\n    cluster: w\n    user: w\ncurrent-context: w\nusers:\n- name: w\n  user:\n    token: {token}\n",
            s.port,
            base64::engine::general_purpose::STANDARD.encode(&s.ca)
        ),
    )
    .unwrap();
    let kubectl = |args: &'static [&'static str]| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let o = kubectl(&["auth", "can-i", "list", "pods", "-n", "a"])
        .await
        .unwrap();
    assert_eq!(
        (o.status.code(), text(&o.stdout).as_str()),
        (Some(0), "yes"),
        "{}",
        text(&o.stderr)
    );
    let o = kubectl(&["auth", "can-i", "list", "secrets", "-n", "b"])
        .await
        .unwrap();
    assert_eq!(
        (o.status.code(), text(&o.stdout).as_str()),
        (Some(1), "no"),
        "{}",
        text(&o.stderr)
    );
    let o = kubectl(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ])
    .await
    .unwrap();
    assert_eq!(
        text(&o.stdout),
        "system:serviceaccount:a:default",
        "{}",
        text(&o.stderr)
    );
    // And kubectl itself, with that token, gets the 403 for the rest.
    let out = kubectl(&["get", "secrets", "-n", "b"]).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot list resource \"secrets\" in API group \"\" in the namespace \"b\""),
        "{err}"
    );
}

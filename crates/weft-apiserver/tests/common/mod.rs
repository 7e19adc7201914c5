//! The secured server of the kubectl-facing tests: a cluster CA, the
//! server on a random 127.0.0.1 port with one admin token, an admin
//! kubeconfig for kubectl and a kube-rs client; the state dir is removed on
//! drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_apiserver::pki::Pki;
use weft_apiserver::rbac::UserInfo;
use weft_apiserver::{ApiServer, ApiServerConfig, Limits};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

pub struct Server {
    pub api: Arc<ApiServer>,
    pub port: u16,
    pub ca: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The embedded cluster's ranges, state under `dir/api`.
pub fn config(dir: &Path) -> ApiServerConfig {
    ApiServerConfig {
        state_dir: dir.join("api"),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: (30000, 32767),
        kubernetes_endpoint: (std::net::Ipv4Addr::new(192, 168, 1, 2), 6443),
        kubelet_sockets: None,
    }
}

/// A secured server of its own (`weft-<prefix>-<tag>-<pid>` in the temp dir).
pub async fn start(prefix: &str, tag: &str) -> Server {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!("weft-{prefix}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = Pki::load_or_create(&dir.join("pki"), &["127.0.0.1".into()]).unwrap();
    let admin = UserInfo {
        name: "weft-admin".into(),
        uid: String::new(),
        groups: vec!["system:masters".into()],
    };
    let api = ApiServer::open_secured(
        config(&dir),
        Limits::default(),
        &pki,
        vec![(ADMIN_TOKEN.into(), admin)],
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(api.clone().serve(l));
    let kubeconfig = dir.join("admin.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: w\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\ncontexts:\n- name: w\n  context:\n    cluster: w\n    user: w\n    namespace: default\ncurrent-context: w\nusers:\n- name: w\n  user:\n    token: {ADMIN_TOKEN}\n",
            base64::engine::general_purpose::STANDARD.encode(&pki.ca_cert_pem)
        ),
    )
    .unwrap();
    Server {
        api,
        port,
        ca: pki.ca_cert_pem.clone(),
        dir,
        kubeconfig,
    }
}

/// The DER certificates of a PEM bundle.
pub fn ca_der(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            let body: String = b
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        })
        .collect()
}

/// A kube-rs client with the admin's token.
pub fn client(s: &Server) -> kube::Client {
    let mut cfg = kube::Config::new(format!("https://127.0.0.1:{}", s.port).parse().unwrap());
    cfg.root_cert = Some(ca_der(&s.ca));
    cfg.auth_info.token = Some(ADMIN_TOKEN.to_string().into());
    kube::Client::try_from(cfg).unwrap()
}

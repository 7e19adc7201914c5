//! The proxy of `weft gateway` without an API server, for bench/gateway.sh:
//! a GatewayClass, a Gateway with an HTTP (80) and an HTTPS (443, hostname
//! bench.example.com, the certificate given) listener, and an HTTPRoute
//! sending `/` to two backends 50/50 are compiled by weft-gateway's own
//! compile step into the table the daemon would build, and served by the
//! same proxy (`server::Proxy`) on `--bind`. Access log off, as for the
//! nginx and haproxy it is compared with.
//!
//!   gateway_bench --bind 10.0.0.1 --backend 10.0.1.2:8080 --backend 10.0.1.3:8080 \
//!       --cert tls.crt --key tls.key

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};
use weft_gateway::compile::{self, Inputs};
use weft_gateway::metrics::Metrics;
use weft_gateway::server::{AccessLog, Limits, Proxy};

#[derive(Parser)]
struct Args {
    /// Address the ports are bound on.
    #[arg(long)]
    bind: IpAddr,
    /// A backend endpoint (twice: the route splits between them).
    #[arg(long = "backend", required = true)]
    backends: Vec<SocketAddr>,
    /// PEM certificate chain and key for bench.example.com.
    #[arg(long)]
    cert: std::path::PathBuf,
    #[arg(long)]
    key: std::path::PathBuf,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// One single-threaded proxy per CPU, each with its own listeners
    /// (SO_REUSEPORT) and backend pool, instead of one multi-threaded one.
    #[arg(long)]
    per_core: bool,
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> Result<Arc<T>> {
    Ok(Arc::new(
        serde_json::from_value(v.clone()).with_context(|| format!("fixture {v}"))?,
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.backends.is_empty() {
        bail!("--backend is required");
    }
    let cert =
        std::fs::read(&args.cert).with_context(|| format!("read {}", args.cert.display()))?;
    let key = std::fs::read(&args.key).with_context(|| format!("read {}", args.key.display()))?;
    let mut secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "bench-tls", "namespace": "default"}, "type": "kubernetes.io/tls"}),
    )?;
    secret.data = Some(
        [
            ("tls.crt".to_string(), k8s_openapi::ByteString(cert)),
            ("tls.key".to_string(), k8s_openapi::ByteString(key)),
        ]
        .into(),
    );
    let mut services = Vec::new();
    let mut slices = Vec::new();
    let mut refs = Vec::new();
    for (i, b) in args.backends.iter().enumerate() {
        let name = format!("backend-{i}");
        services.push(obj(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": b.port(), "protocol": "TCP"}]}
        }))?);
        slices.push(obj(json!({
            "metadata": {"name": format!("{name}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": if b.is_ipv4() { "IPv4" } else { "IPv6" },
            "ports": [{"name": "http", "port": b.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.ip().to_string()], "conditions": {"ready": true}}],
        }))?);
        refs.push(json!({"name": name, "port": 80, "weight": 1}));
    }
    let classes = vec![obj(
        json!({"metadata": {"name": "weft"}, "spec": {"controllerName": weft_gateway::api::CONTROLLER_NAME}}),
    )?];
    let gateways = vec![obj(json!({
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"gatewayClassName": "weft", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "bench.example.com",
             "tls": {"certificateRefs": [{"name": "bench-tls"}]}},
        ]}
    }))?];
    let routes = vec![obj(json!({
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "bench"}], "hostnames": ["bench.example.com"],
                 "rules": [{"backendRefs": refs}]}
    }))?];
    let secrets = vec![Arc::new(secret)];
    let config = compile::Config {
        controller_name: weft_gateway::api::CONTROLLER_NAME.into(),
        addresses: vec![args.bind.to_string()],
        ingress_http_port: 80,
        ingress_https_port: 443,
        now: Time(jiff::Timestamp::now()),
    };
    let compiled = compile::compile(
        &config,
        Inputs {
            gateway_classes: &classes,
            gateways: &gateways,
            http_routes: &routes,
            services: &services,
            slices: &slices,
            secrets: &secrets,
            ..Inputs::default()
        },
    );
    for w in &compiled.warnings {
        eprintln!("warning: {w}");
    }
    if compiled.table.ports.len() != 2 {
        bail!(
            "the bench table serves ports {:?}, not 80 and 443: {:?}",
            compiled.table.ports.keys().collect::<Vec<_>>(),
            compiled.statuses
        );
    }
    let build = || {
        compile::compile(
            &config,
            Inputs {
                gateway_classes: &classes,
                gateways: &gateways,
                http_routes: &routes,
                services: &services,
                slices: &slices,
                secrets: &secrets,
                ..Inputs::default()
            },
        )
        .table
    };
    if args.per_core {
        let cores = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut threads = Vec::new();
        for i in 0..cores {
            let table = build();
            let bind = args.bind;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("proxy-{i}"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        rt.block_on(async move {
                            let proxy =
                                Proxy::new(bind, Limits::default(), AccessLog::Off, Metrics::new());
                            let errors = proxy.swap(table);
                            if !errors.is_empty() {
                                bail!("cannot serve: {errors:?}");
                            }
                            std::future::pending::<()>().await;
                            Ok(())
                        })
                    })?,
            );
        }
        eprintln!(
            "gateway_bench: serving {}:80 and :443 with {cores} single-threaded proxies",
            args.bind
        );
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a proxy thread panicked"))??;
        }
        return Ok(());
    }
    let table = build();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(async move {
        let proxy = Proxy::new(args.bind, Limits::default(), AccessLog::Off, Metrics::new());
        let errors = proxy.swap(table);
        if !errors.is_empty() {
            bail!("cannot serve: {errors:?}");
        }
        eprintln!("gateway_bench: serving {}:80 and :443", args.bind);
        std::future::pending::<()>().await;
        Ok(())
    })
}

//! A kube-rs client with in-cluster config, for the secured-cluster tests:
//! run inside a pod, it lists `<resource>` (pods or secrets) in
//! `<namespace>` and prints `ok <count>` or `err <HTTP code> <message>`.
//!
//! `incluster <namespace> <resource>`

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns, resource] = args.as_slice() else {
        if args.is_empty() {
            // `cargo test --all-targets` runs the example bare: nothing asked.
            eprintln!("usage: incluster <namespace> <pods|secrets>");
            return Ok(());
        }
        anyhow::bail!("usage: incluster <namespace> <pods|secrets>");
    };
    let config = kube::Config::incluster()?;
    let client = kube::Client::try_from(config)?;
    let lp = ListParams::default();
    let listed = match resource.as_str() {
        "pods" => Api::<Pod>::namespaced(client, ns)
            .list(&lp)
            .await
            .map(|l| l.items.len()),
        "secrets" => Api::<Secret>::namespaced(client, ns)
            .list(&lp)
            .await
            .map(|l| l.items.len()),
        other => anyhow::bail!("unknown resource {other:?}: pods or secrets"),
    };
    match listed {
        Ok(n) => println!("ok {n}"),
        Err(kube::Error::Api(s)) => println!("err {} {}", s.code, s.message),
        Err(e) => println!("err 0 {e}"),
    }
    Ok(())
}

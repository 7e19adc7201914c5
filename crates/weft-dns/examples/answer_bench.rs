//! A micro-benchmark of the answer step: N `answer()` calls, one core, for
//! an A query against a zone compiled from 10,000 ClusterIP Services (plus
//! the compile time of that zone). `cargo run --release -p weft-dns
//! --example answer_bench [N]` (default 1,000,000).

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use weft_dns::answer::{answer, Action, Ctx, Transport};
use weft_dns::zone::{compile, Config};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let services: Vec<Arc<Service>> = (0..10_000u32)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": format!("ns{}", i % 100), "name": format!("svc{i}")},
                "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                         "ports": [{"name": "http", "port": 80}]},
            }))
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let cfg = Config::new(Name::from_ascii("cluster.local.")?);
    let started = Instant::now();
    let zone = compile(&cfg, &services, &[], &[]);
    println!("compile: {} names in {:?}", zone.len(), started.elapsed());

    let mut m = Message::new();
    m.set_id(7)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii("svc4242.ns42.svc.cluster.local.")?,
        RecordType::A,
    ));
    let request = m.to_vec()?;
    let ctx = Ctx {
        transport: Transport::Udp,
        client: "10.2.0.5".parse()?,
    };
    let started = Instant::now();
    let mut bytes = 0usize;
    for seed in 0..n {
        match answer(&zone, &request, &ctx, seed) {
            Action::Reply(r) => bytes += r.len(),
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    let took = started.elapsed();
    println!(
        "{n} answers in {took:?}: {:.0} answers/s on one core ({} bytes each)",
        n as f64 / took.as_secs_f64(),
        bytes as u64 / n.max(1)
    );
    Ok(())
}

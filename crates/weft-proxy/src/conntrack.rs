//! Stale UDP conntrack entries, pure: which tracked UDP flows still carry a
//! Service address or a NodePort to a backend that no longer serves, so the
//! agent deletes them and the next datagram is load-balanced afresh. UDP has
//! no connection to break: without this a DNS client keeps sending to a dead
//! pod (or, when its first datagram found no endpoint, keeps being refused)
//! until the entry times out, as long as it keeps sending.
//!
//! The model is kube-proxy's conntrack reconciler (`pkg/proxy/conntrack/
//! cleanup.go`): an entry whose original destination is a UDP Service
//! address:port (ClusterIP, external IP, load-balancer IP) or a node
//! address:NodePort, and whose reply source — the DNAT target, or the
//! Service address itself when the first datagram was not DNATed — is not a
//! serving endpoint of it, goes. Serving means serving as the EndpointSlice
//! says, whatever the traffic policies choose (a policy change must not cut
//! existing flows, as it would not for TCP). Unlike kube-proxy, endpoints
//! are compared by address and port (a changed targetPort also strands
//! flows), and a Service address:port or NodePort that was served at the
//! previous sync and is gone now sends its still-DNATed entries away too.
//!
//! The agent lists the flows (weft-linux's `conntrack::udp_flows`), converts
//! them to [`Flow`], calls [`stale_flows`] with the [`UdpServing`] of this
//! compile and of the previous one, and deletes what comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// One direction of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A tracked flow as the kernel lists it: the first packet (`original`)
/// and its answers (`reply`, whose source is the DNAT target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// L4 protocol number ([`IPPROTO_UDP`]).
    pub proto: u8,
    pub original: Tuple,
    pub reply: Tuple,
}

/// What one compile serves over UDP, filled by [`crate::compile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpServing {
    /// Every UDP Service address:port (ClusterIP, external IP,
    /// load-balancer IP) → its serving endpoints (may be empty).
    pub service_ports: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
    /// Every UDP NodePort → the serving endpoints of its Service ports
    /// (both families).
    pub node_ports: BTreeMap<u16, BTreeSet<SocketAddr>>,
    /// The node addresses NodePorts are matched on ([`crate::NodeCtx::node_ips`]).
    pub node_ips: BTreeSet<IpAddr>,
}

impl UdpServing {
    /// True when `flow` must be deleted given what is served now (`self`)
    /// and what was served at the previous sync (`previously`; empty on the
    /// first sync after a start).
    pub fn is_stale(&self, previously: &UdpServing, flow: &Flow) -> bool {
        if flow.proto != IPPROTO_UDP {
            return false;
        }
        let dst = flow.original.dst;
        let backend = flow.reply.src;
        // A datagram to a Service address is looked up there before the
        // NodePorts (as the `services` chain does), so that answer wins.
        if let Some(serving) = self.service_ports.get(&dst) {
            return !serving.contains(&backend);
        }
        // Gone since the last sync: only entries still DNATed somewhere
        // matter; the next datagram of any other is not rewritten anyway.
        if previously.service_ports.contains_key(&dst) {
            return backend != dst;
        }
        if !self.node_ips.contains(&dst.ip()) && !previously.node_ips.contains(&dst.ip()) {
            return false;
        }
        if let Some(serving) = self.node_ports.get(&dst.port()) {
            return !serving.contains(&backend);
        }
        if previously.node_ports.contains_key(&dst.port()) {
            return backend != dst;
        }
        false
    }
}

/// The flows of `flows` to delete (see [`UdpServing::is_stale`]), in order.
pub fn stale_flows(now: &UdpServing, previously: &UdpServing, flows: &[Flow]) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| now.is_stale(previously, f))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{build, ep, ready, service, slice_of, web, EP_LOCAL, EP_REMOTE, NODE_IP};
    use proptest::prelude::*;
    use serde_json::json;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const CLIENT: &str = "10.244.0.3:40000";
    const DNS: &str = "10.96.0.10:53";

    /// A UDP flow from CLIENT to `dst` answered by `backend`.
    fn udp(dst: &str, backend: &str) -> Flow {
        Flow {
            proto: IPPROTO_UDP,
            original: Tuple {
                src: sa(CLIENT),
                dst: sa(dst),
            },
            reply: Tuple {
                src: sa(backend),
                dst: sa(CLIENT),
            },
        }
    }

    /// DNS served by `backends` (ClusterIP 10.96.0.10:53, NodePort 30053).
    fn serving(backends: &[&str]) -> UdpServing {
        let set: BTreeSet<SocketAddr> = backends.iter().map(|b| sa(b)).collect();
        UdpServing {
            service_ports: [(sa(DNS), set.clone())].into(),
            node_ports: [(30053, set)].into(),
            node_ips: [NODE_IP.parse().unwrap()].into(),
        }
    }

    fn none() -> UdpServing {
        UdpServing::default()
    }

    #[test]
    fn a_flow_to_a_backend_that_left_is_stale() {
        let now = serving(&["10.244.1.7:53"]);
        assert!(now.is_stale(&none(), &udp(DNS, "10.244.0.5:53")));
    }

    #[test]
    fn a_flow_to_a_serving_backend_stays() {
        let now = serving(&["10.244.1.7:53"]);
        assert!(!now.is_stale(&none(), &udp(DNS, "10.244.1.7:53")));
    }

    #[test]
    fn a_flow_to_the_old_target_port_of_a_serving_pod_is_stale() {
        let now = serving(&["10.244.1.7:5353"]);
        assert!(now.is_stale(&none(), &udp(DNS, "10.244.1.7:53")));
    }

    #[test]
    fn a_flow_that_was_never_dnated_is_stale_once_endpoints_exist() {
        // Its first datagram found no endpoint, so the entry has no NAT and
        // would keep every later datagram from being DNATed.
        let now = serving(&["10.244.1.7:53"]);
        assert!(now.is_stale(&none(), &udp(DNS, DNS)));
    }

    #[test]
    fn every_flow_to_a_service_without_serving_endpoints_is_stale() {
        let now = serving(&[]);
        assert!(now.is_stale(&none(), &udp(DNS, "10.244.1.7:53")));
    }

    #[test]
    fn a_nodeport_flow_to_a_backend_that_left_is_stale() {
        let now = serving(&["10.244.1.7:53"]);
        let to_node = format!("{NODE_IP}:30053");
        assert!(now.is_stale(&none(), &udp(&to_node, "10.244.0.5:53")));
        assert!(!now.is_stale(&none(), &udp(&to_node, "10.244.1.7:53")));
    }

    #[test]
    fn a_nodeport_number_on_another_address_is_not_a_nodeport_flow() {
        let now = serving(&["10.244.1.7:53"]);
        assert!(!now.is_stale(&none(), &udp("198.51.100.9:30053", "198.51.100.9:30053")));
    }

    #[test]
    fn a_dnated_flow_to_a_service_that_is_gone_is_stale() {
        let before = serving(&["10.244.1.7:53"]);
        assert!(none().is_stale(&before, &udp(DNS, "10.244.1.7:53")));
        let to_node = format!("{NODE_IP}:30053");
        assert!(none().is_stale(&before, &udp(&to_node, "10.244.1.7:53")));
    }

    #[test]
    fn a_plain_flow_to_an_address_that_stopped_being_a_service_stays() {
        let before = serving(&["10.244.1.7:53"]);
        assert!(!none().is_stale(&before, &udp(DNS, DNS)));
    }

    #[test]
    fn tcp_flows_are_never_stale() {
        let now = serving(&["10.244.1.7:53"]);
        let tcp = Flow {
            proto: 6,
            ..udp(DNS, "10.244.0.5:53")
        };
        assert!(!now.is_stale(&none(), &tcp));
    }

    #[test]
    fn stale_flows_keeps_the_order_and_only_the_stale() {
        let now = serving(&["10.244.1.7:53"]);
        let flows = [
            udp(DNS, "10.244.0.5:53"),
            udp(DNS, "10.244.1.7:53"),
            udp(DNS, DNS),
        ];
        assert_eq!(stale_flows(&now, &none(), &flows), vec![flows[0], flows[2]]);
    }

    /// UDP `dns` 53 → 5353 with NodePort 30053, external and LB IPs, TCP
    /// `http` beside it; endpoints: local ready, remote terminating but
    /// serving, and one neither ready nor serving.
    fn compiled_dns() -> UdpServing {
        let svc = web(json!({
            "type": "LoadBalancer",
            "externalIPs": ["192.168.1.100"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                      {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
        }));
        let mut svc = (*svc).clone();
        svc.status =
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}))
                .unwrap();
        let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                           {"name": "dns", "port": 5353, "protocol": "UDP"}]);
        let slice = slice_of(
            "web",
            "web-1",
            ports,
            vec![
                ready(EP_LOCAL, "node-1"),
                ep(EP_REMOTE, "node-2", false, true, true),
                ep("10.244.1.9", "node-2", false, false, true),
            ],
        );
        build(vec![std::sync::Arc::new(svc)], vec![slice]).udp_serving
    }

    #[test]
    fn compile_lists_every_udp_service_address_with_its_serving_endpoints() {
        let u = compiled_dns();
        let eps: BTreeSet<SocketAddr> = [
            sa(&format!("{EP_LOCAL}:5353")),
            sa(&format!("{EP_REMOTE}:5353")),
        ]
        .into();
        let want: BTreeMap<SocketAddr, BTreeSet<SocketAddr>> = [
            (sa("10.96.0.10:53"), eps.clone()),
            (sa("192.168.1.100:53"), eps.clone()),
            (sa("203.0.113.10:53"), eps.clone()),
        ]
        .into();
        assert_eq!(u.service_ports, want);
        assert_eq!(u.node_ports, [(30053, eps)].into());
        assert!(u.node_ips.contains(&NODE_IP.parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn compile_lists_a_udp_service_without_endpoints_as_serving_nothing() {
        let svc = service(json!({
            "metadata": {"namespace": "default", "name": "dns"},
            "spec": {"clusterIP": "10.96.0.20",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        }));
        let u = build(vec![svc], vec![]).udp_serving;
        assert_eq!(
            u.service_ports,
            [(sa("10.96.0.20:53"), BTreeSet::new())].into()
        );
    }

    #[test]
    fn compile_leaves_tcp_services_out() {
        let u = build(vec![web(json!({}))], vec![]).udp_serving;
        assert!(u.service_ports.is_empty() && u.node_ports.is_empty());
    }

    // ------------------------------------------------------------ properties

    /// Addresses from a small pool so that generated flows hit generated
    /// services often.
    fn addr() -> impl Strategy<Value = SocketAddr> {
        (
            prop::sample::select(vec![
                "10.96.0.10",
                "10.96.0.11",
                "192.168.1.10",
                "10.244.0.5",
                "10.244.1.7",
                "fd00:96::10",
                "fd00:10:244::5",
            ]),
            prop::sample::select(vec![53u16, 5353, 30053]),
        )
            .prop_map(|(a, p)| SocketAddr::new(a.parse().unwrap(), p))
    }

    fn flow() -> impl Strategy<Value = Flow> {
        (
            prop::sample::select(vec![IPPROTO_UDP, 6, 132]),
            addr(),
            addr(),
            addr(),
        )
            .prop_map(|(proto, src, dst, backend)| Flow {
                proto,
                original: Tuple { src, dst },
                reply: Tuple {
                    src: backend,
                    dst: src,
                },
            })
    }

    fn udp_serving() -> impl Strategy<Value = UdpServing> {
        let eps = || prop::collection::btree_set(addr(), 0..3);
        (
            prop::collection::btree_map(addr(), eps(), 0..4),
            prop::collection::btree_map(prop::sample::select(vec![53u16, 30053]), eps(), 0..2),
            prop::collection::btree_set(
                prop::sample::select(vec!["192.168.1.10", "10.96.0.10"])
                    .prop_map(|a| a.parse::<IpAddr>().unwrap()),
                0..2,
            ),
        )
            .prop_map(|(service_ports, node_ports, node_ips)| UdpServing {
                service_ports,
                node_ports,
                node_ips,
            })
    }

    proptest! {
        #[test]
        fn never_deletes_a_flow_to_a_serving_endpoint_of_its_service_address(
            now in udp_serving(), before in udp_serving(), f in flow()
        ) {
            if now.service_ports.get(&f.original.dst).is_some_and(|s| s.contains(&f.reply.src)) {
                prop_assert!(!now.is_stale(&before, &f));
            }
        }

        #[test]
        fn never_deletes_a_flow_that_is_not_udp(
            now in udp_serving(), before in udp_serving(), f in flow()
        ) {
            if f.proto != IPPROTO_UDP {
                prop_assert!(!now.is_stale(&before, &f));
            }
        }

        #[test]
        fn never_deletes_a_flow_to_neither_a_service_nor_a_nodeport(
            now in udp_serving(), before in udp_serving(), f in flow()
        ) {
            let dst = f.original.dst;
            let service = now.service_ports.contains_key(&dst)
                || before.service_ports.contains_key(&dst);
            let node = now.node_ips.contains(&dst.ip()) || before.node_ips.contains(&dst.ip());
            let node_port = node
                && (now.node_ports.contains_key(&dst.port())
                    || before.node_ports.contains_key(&dst.port()));
            if !service && !node_port {
                prop_assert!(!now.is_stale(&before, &f));
            }
        }

        #[test]
        fn always_deletes_a_udp_flow_to_a_service_address_answered_by_a_non_endpoint(
            now in udp_serving(), before in udp_serving(), f in flow()
        ) {
            if f.proto == IPPROTO_UDP
                && now.service_ports.get(&f.original.dst).is_some_and(|s| !s.contains(&f.reply.src))
            {
                prop_assert!(now.is_stale(&before, &f));
            }
        }

    }
}

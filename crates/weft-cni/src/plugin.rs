//! The verbs: ADD, DEL, CHECK, VERSION, STATUS, GC (CNI SPEC.md 1.1).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use weft_linux::Handle;

use crate::config::{self, Attachment, Config};
use crate::invocation::{Command, Invocation};
use crate::ipam::Store;
use crate::net::{self, Expected, Plan};
use crate::spec::{self, code, CniError, CniResult, Interface, IpConfig, RouteResult};
use crate::{delegate, nat};

/// Runs one verb; `Some` is the JSON to print on stdout.
pub fn run(inv: &Invocation, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if inv.command == Command::Version {
        let asked = config::peek_version(stdin).unwrap_or_default();
        let answer_in = if spec::SUPPORTED_VERSIONS.contains(&asked.as_str()) {
            asked.as_str()
        } else {
            spec::LATEST
        };
        return Ok(Some(spec::version_info(answer_in)));
    }
    let cfg = config::validate(config::parse(stdin)?)?;
    match inv.command {
        Command::Add => add(inv, &cfg, stdin).map(Some),
        Command::Del => del(inv, &cfg, stdin).map(|()| None),
        Command::Check => check(inv, &cfg, stdin).map(|()| None),
        Command::Status => status(inv, &cfg, stdin).map(|()| None),
        Command::Gc => gc(inv, &cfg, stdin).map(|()| None),
        Command::Version => unreachable_version(),
    }
}

fn unreachable_version() -> Result<Option<Value>, CniError> {
    Err(CniError::new(
        code::INVALID_ENV,
        "VERSION is answered before config parsing",
    ))
}

fn owner_of(inv: &Invocation) -> Attachment {
    Attachment {
        container_id: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
    }
}

/// Addresses asked for through `runtimeConfig.ips` or `CNI_ARGS` `IP=` (comma separated).
fn requested_ips(inv: &Invocation, cfg: &Config) -> Result<Vec<IpAddr>, CniError> {
    let mut ips = cfg.requested_ips.clone();
    if let Some(list) = inv.args.get("IP") {
        for s in list.split(',').filter(|s| !s.is_empty()) {
            let ip = s
                .parse::<IpAddr>()
                .or_else(|_| s.parse::<IpNet>().map(|n| n.addr()))
                .map_err(|_| {
                    CniError::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS: IP={s:?} is not an IP address"),
                    )
                })?;
            ips.push(ip);
        }
    }
    Ok(ips)
}

/// Pod addresses (with prefix) and their gateways, from whichever IPAM ran.
struct Addressing {
    addrs: Vec<(IpNet, Option<IpAddr>)>,
    routes: Vec<RouteResult>,
    /// The built-in store already held addresses for this attachment.
    retry: bool,
}

fn allocate(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<Addressing, CniError> {
    if let Some(plugin) = &cfg.delegate_ipam {
        let answer = delegate::exec(plugin, "ADD", inv, stdin)?.ok_or_else(|| {
            CniError::new(
                code::DELEGATE_FAILED,
                format!("IPAM plugin {plugin} returned no result"),
            )
        })?;
        let result = CniResult::from_json(&answer)?;
        if result.ips.is_empty() {
            return Err(CniError::new(
                code::DELEGATE_FAILED,
                format!("IPAM plugin {plugin} returned no IPs"),
            ));
        }
        return Ok(Addressing {
            addrs: result
                .ips
                .iter()
                .map(|ip| (ip.address, ip.gateway))
                .collect(),
            routes: result.routes,
            retry: false,
        });
    }
    let owner = owner_of(inv);
    let store = Store::open(&cfg.data_dir)?;
    let retry = !store.owned_by(&owner)?.is_empty();
    let allocs = store.allocate(&cfg.range_sets, &owner, &requested_ips(inv, cfg)?)?;
    drop(store); // release the lock before the slow kernel work
    let addrs: Vec<(IpNet, Option<IpAddr>)> = allocs
        .iter()
        .map(|a| {
            let net = IpNet::new(a.ip, a.range.subnet.prefix_len()).map_err(|e| {
                CniError::new(
                    code::IO_FAILURE,
                    format!("internal: {} / {}: {e}", a.ip, a.range.subnet),
                )
            })?;
            Ok((net, Some(a.range.gateway)))
        })
        .collect::<Result<_, CniError>>()?;
    let routes = cfg
        .routes
        .iter()
        .map(|r| RouteResult::new(r.dst, r.gw))
        .collect();
    Ok(Addressing {
        addrs,
        routes,
        retry,
    })
}

fn release(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<(), CniError> {
    if let Some(plugin) = &cfg.delegate_ipam {
        return delegate::exec(plugin, "DEL", inv, stdin).map(drop);
    }
    Store::open(&cfg.data_dir)?
        .release(&owner_of(inv))
        .map(drop)
}

fn gateway_for(addressing: &Addressing, v4: bool) -> Option<IpAddr> {
    addressing
        .addrs
        .iter()
        .filter(|(a, _)| a.addr().is_ipv4() == v4)
        .find_map(|(_, gw)| *gw)
}

fn default_dst(v4: bool) -> IpNet {
    if v4 {
        IpNet::V4(Default::default())
    } else {
        IpNet::V6(Default::default())
    }
}

fn plan_for(inv: &Invocation, cfg: &Config, addressing: &mut Addressing) -> Plan {
    let raw = &cfg.raw;
    let has = |v4: bool| {
        addressing
            .addrs
            .iter()
            .any(|(a, _)| a.addr().is_ipv4() == v4)
    };
    if raw.is_default_gateway {
        for v4 in [true, false] {
            if let Some(gw) = gateway_for(addressing, v4) {
                let dst = default_dst(v4);
                if !addressing.routes.iter().any(|r| r.dst == dst) {
                    addressing.routes.insert(0, RouteResult::new(dst, Some(gw)));
                }
            }
        }
    }
    let bridge_addrs = if cfg.is_gateway {
        addressing
            .addrs
            .iter()
            .filter_map(|(a, gw)| gw.and_then(|g| IpNet::new(g, a.prefix_len()).ok()))
            .collect()
    } else {
        Vec::new()
    };
    // Routes without a gateway go via the pod's gateway of that family, as
    // the reference plugins do.
    let pod_routes = addressing
        .routes
        .iter()
        .map(|r| {
            (
                r.dst,
                r.gw.or_else(|| gateway_for(addressing, r.dst.addr().is_ipv4())),
            )
        })
        .collect();
    let forwarding = cfg.is_gateway || raw.ip_masq;
    Plan {
        bridge: cfg.bridge.clone(),
        bridge_addrs,
        host_veth: net::host_veth_name(&inv.container_id, &inv.ifname),
        ifname: inv.ifname.clone(),
        mtu: raw.mtu,
        mac: cfg.mac,
        hairpin: raw.hairpin_mode,
        pod_addrs: addressing.addrs.iter().map(|(a, _)| *a).collect(),
        pod_routes,
        forward: (forwarding && has(true), forwarding && has(false)),
    }
}

fn masq_excludes(cfg: &Config, pod: &[IpNet]) -> Vec<IpNet> {
    if !cfg.raw.cluster_cidrs.is_empty() {
        return cfg.raw.cluster_cidrs.clone();
    }
    let mut nets: Vec<IpNet> = cfg.range_sets.iter().flatten().map(|r| r.subnet).collect();
    if nets.is_empty() {
        nets = pod.iter().map(IpNet::trunc).collect();
    }
    nets
}

fn needs_nat(cfg: &Config) -> bool {
    cfg.raw.ip_masq || !cfg.host_ports.is_empty()
}

fn add(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<Value, CniError> {
    let netns_path = inv
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"))?;
    let pod_ns = net::open_netns(netns_path)?;
    if let Some(prev) = &cfg.raw.prev_result {
        // Validate early: a broken prevResult must not cost an allocation.
        CniResult::from_json(prev)?;
    }
    let mut addressing = allocate(inv, cfg, stdin)?;
    crate::stall_point("after-ipam");
    let plan = plan_for(inv, cfg, &mut addressing);
    let owner = owner_of(inv);

    let undo = |err: CniError| -> CniError {
        let _ = net::unwire(&plan.host_veth);
        if needs_nat(cfg) {
            let mine = nat::tag(&owner);
            let _ = nat::remove(&|c| c == mine);
        }
        let _ = release(inv, cfg, stdin);
        err
    };

    let mut node = Handle::new().map_err(net::kernel_err).map_err(undo)?;
    let wired = net::wire(&mut node, &pod_ns, &plan).map_err(undo)?;
    crate::stall_point("after-wire");
    if needs_nat(cfg) {
        let excludes = masq_excludes(cfg, &plan.pod_addrs);
        nat::apply(
            &owner,
            &plan.pod_addrs,
            cfg.raw.ip_masq.then_some(excludes.as_slice()),
            &cfg.host_ports,
            addressing.retry,
        )
        .map_err(undo)?;
    }

    let mut result = match &cfg.raw.prev_result {
        Some(prev) => CniResult::from_json(prev)?,
        None => CniResult::default(),
    };
    let base = result.interfaces.len();
    result.interfaces.push(Interface {
        name: wired.bridge.name.clone(),
        mac: net::mac_string(&wired.bridge),
        ..Default::default()
    });
    result.interfaces.push(Interface {
        name: wired.host.name.clone(),
        mac: net::mac_string(&wired.host),
        ..Default::default()
    });
    result.interfaces.push(Interface {
        name: wired.pod.name.clone(),
        mac: net::mac_string(&wired.pod),
        mtu: Some(wired.pod.mtu),
        sandbox: Some(netns_path.display().to_string()),
        ..Default::default()
    });
    for (addr, gw) in &addressing.addrs {
        result.ips.push(IpConfig {
            address: *addr,
            gateway: *gw,
            interface: Some(base + 2),
        });
    }
    result.routes.extend(addressing.routes);
    Ok(result.to_json(&cfg.raw.cni_version))
}

fn del(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<(), CniError> {
    let host_veth = net::host_veth_name(&inv.container_id, &inv.ifname);
    let mut errors: Vec<CniError> = net::unwire(&host_veth).err().into_iter().collect();
    if needs_nat(cfg) {
        let mine = nat::tag(&owner_of(inv));
        if let Err(e) = nat::remove(&|c| c == mine) {
            errors.push(e);
        }
    }
    if let Err(e) = release(inv, cfg, stdin) {
        errors.push(e);
    }
    join_errors(errors)
}

/// Teardown keeps going and reports everything that failed, in one error.
fn join_errors(errors: Vec<CniError>) -> Result<(), CniError> {
    let Some(first) = errors.first() else {
        return Ok(());
    };
    if errors.len() == 1 {
        return Err(first.clone());
    }
    let msg = errors
        .iter()
        .map(|e| e.msg.clone())
        .collect::<Vec<_>>()
        .join("; ");
    Err(CniError::new(first.code, msg))
}

fn check(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<(), CniError> {
    if spec::parse_version(&cfg.raw.cni_version).is_some_and(|v| v < (0, 4, 0)) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "CHECK is not defined for cniVersion {} (needs 0.4.0 or later)",
                cfg.raw.cni_version
            ),
        ));
    }
    let prev = cfg.raw.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "prevResult: CHECK needs the result of ADD",
        )
    })?;
    let prev = CniResult::from_json(prev)?;
    let netns_path = inv
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"))?;
    let pod_ns = net::open_netns(netns_path)?;
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == inv.ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("prevResult: no interface {} with a sandbox", inv.ifname),
            )
        })?;
    let addrs: Vec<IpNet> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address)
        .collect();
    let want = Expected {
        bridge: cfg.bridge.clone(),
        host_veth: net::host_veth_name(&inv.container_id, &inv.ifname),
        ifname: inv.ifname.clone(),
        mac: prev.interfaces[index].mac.clone(),
        addrs: addrs.clone(),
        routes: prev.routes.iter().map(|r| (r.dst, r.gw)).collect(),
    };

    // IPAM first: an address the store no longer gives this container is the
    // most serious difference.
    match &cfg.delegate_ipam {
        Some(plugin) => {
            delegate::exec(plugin, "CHECK", inv, stdin)?;
        }
        None => {
            let owned = Store::open(&cfg.data_dir)?.owned_by(&owner_of(inv))?;
            for a in &addrs {
                if !owned.contains(&a.addr()) {
                    return Err(CniError::new(
                        code::CHECK_FAILED,
                        format!(
                            "CHECK failed: IPAM has no allocation of {} for {}",
                            a.addr(),
                            nat::tag(&owner_of(inv))
                        ),
                    ));
                }
            }
        }
    }
    let mut node = Handle::new().map_err(net::kernel_err)?;
    net::check(&mut node, &pod_ns, &want)?;
    if needs_nat(cfg) {
        let listed = weft_nft::list_table(weft_nft::Family::Inet, nat::TABLE)
            .map_err(|e| CniError::new(code::KERNEL, e.to_string()))?
            .unwrap_or_default();
        let mine = nat::tag(&owner_of(inv));
        let chains: BTreeSet<&str> = listed
            .rules
            .iter()
            .filter(|r| r.comment.as_deref() == Some(mine.as_str()))
            .map(|r| r.chain.as_str())
            .collect();
        if cfg.raw.ip_masq && !chains.contains("masq") {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!("CHECK failed: masquerade rule for {mine} is missing"),
            ));
        }
        if !cfg.host_ports.is_empty() && !chains.contains("hostports") {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!("CHECK failed: hostPort rules for {mine} are missing"),
            ));
        }
    }
    Ok(())
}

fn status(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<(), CniError> {
    if let Some(plugin) = &cfg.delegate_ipam {
        return delegate::exec(plugin, "STATUS", inv, stdin).map(drop);
    }
    let store = Store::open(&cfg.data_dir).map_err(|e| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("IPAM state is not usable: {}", e.msg),
        )
    })?;
    let free = store.free_per_set(&cfg.range_sets)?;
    for (set, n) in cfg.range_sets.iter().zip(free) {
        if n == 0 {
            let subnets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
            return Err(CniError::new(
                code::NOT_AVAILABLE,
                format!("no free addresses left in range set {}", subnets.join(", ")),
            ));
        }
    }
    Ok(())
}

fn gc(inv: &Invocation, cfg: &Config, stdin: &[u8]) -> Result<(), CniError> {
    let valid: BTreeSet<Attachment> = cfg
        .raw
        .valid_attachments
        .clone()
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "cni.dev/valid-attachments: GC needs the list of attachments in use",
            )
        })?
        .into_iter()
        .collect();
    let mut errors = Vec::new();
    match &cfg.delegate_ipam {
        Some(plugin) => {
            if let Err(e) = delegate::exec(plugin, "GC", inv, stdin) {
                errors.push(e);
            }
        }
        None => match Store::open(&cfg.data_dir).and_then(|s| s.gc(&valid)) {
            Ok(_) => {}
            Err(e) => errors.push(e),
        },
    }
    // Host veths of attachments that are gone (their pod namespace may still
    // exist if the runtime leaked it).
    let keep: BTreeSet<String> = valid
        .iter()
        .map(|a| net::host_veth_name(&a.container_id, &a.ifname))
        .collect();
    match Handle::new().map_err(net::kernel_err) {
        Ok(mut node) => match net::our_ports(&mut node, &cfg.bridge) {
            Ok(ports) => {
                for port in ports.into_iter().filter(|p| !keep.contains(&p.name)) {
                    if let Err(e) = node.delete_link(port.index) {
                        if !e.is_not_found() {
                            errors.push(net::kernel_err(e));
                        }
                    }
                }
            }
            Err(e) => errors.push(e),
        },
        Err(e) => errors.push(e),
    }
    let valid_tags: BTreeSet<String> = valid.iter().map(nat::tag).collect();
    match nat::remove(&|c| nat::is_tag(c) && !valid_tags.contains(c)) {
        Ok(()) => {}
        // No nft on the node means no rules of ours to collect.
        Err(e) if e.msg.contains("cannot run nft") => {}
        Err(e) => errors.push(e),
    }
    join_errors(errors)
}

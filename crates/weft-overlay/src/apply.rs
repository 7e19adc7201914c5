//! Desired datapath → kernel: diff against what the kernel has, write only
//! the difference.
//!
//! weft owns exactly: the vxlan device named in [`Desired::device`], routes of
//! the main table stamped with [`RTPROT_WEFT`], and permanent neighbour and
//! FDB entries on that device. Everything else is left alone. Nothing that is
//! already right is rewritten, so established connections survive an agent
//! restart. Writes go device → FDB + neighbours → routes, removals the other
//! way round, so a route never points at a next hop that is not there yet.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use tracing::{debug, info};
use weft_linux::netlink::format_mac;
use weft_linux::{Fdb, Handle, Neighbour, Route, RTPROT_WEFT};

use weft_linux::netns::Netns;
use weft_wireguard::kernel::Kernel;
use weft_wireguard::keys::{PrivateKey, PublicKey};
use weft_wireguard::uapi;
use weft_wireguard::userspace::Userspace;
use weft_wireguard::{Choice, Device, Implementation};

use crate::compile::{
    Desired, DesiredFdb, DesiredNeighbour, DesiredRoute, VxlanDevice, WireguardDevice,
};

/// What one apply did, for logs and metrics. A device counts as one object,
/// its address as another; fixing a wrong object in place counts as added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        self.added + self.removed > 0
    }
}

/// A kernel write or read that failed, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{action} {object}: {source}")]
    Kernel {
        action: &'static str,
        object: String,
        #[source]
        source: weft_linux::Error,
    },
    #[error("vxlan device {device}: no interface of this node has the underlay address {local}")]
    NoUnderlay { device: String, local: Ipv4Addr },
    #[error("device {device}: exists as a {kind} link, not vxlan; weft will not replace it")]
    ForeignDevice { device: String, kind: String },
    #[error("device {device}: missing right after it was created")]
    DeviceVanished { device: String },
    #[error("WireGuard device {device}: {why}")]
    Wireguard { device: String, why: String },
    #[error("route {route}: names device {dev}, but weft only routes through {device}")]
    UnknownDevice {
        route: String,
        dev: String,
        device: String,
    },
}

fn kernel(
    action: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(weft_linux::Error) -> ApplyError {
    let object = object.into();
    move |source| ApplyError::Kernel {
        action,
        object,
        source,
    }
}

/// Applies [`Desired`] datapaths to the namespace of its handle.
///
/// The WireGuard device (backend `wireguard`) is the kernel's or a
/// userspace one, by [`Choice`] (`auto`: the kernel's where the kernel has
/// WireGuard). A kernel device is a link like the vxlan one: it outlives
/// the agent, and the next one adopts it (sessions and all). A userspace
/// device is owned by this value: it lives as long as the `Datapath`. Either
/// is made in `netns` when given, else in the namespace of the thread that
/// applies.
pub struct Datapath {
    handle: Handle,
    netns: Option<Netns>,
    wireguard_key: Option<PrivateKey>,
    wireguard_choice: Choice,
    wireguard: Option<Device>,
}

impl Datapath {
    pub fn new(handle: Handle) -> Self {
        Datapath {
            handle,
            netns: None,
            wireguard_key: None,
            wireguard_choice: Choice::Auto,
            wireguard: None,
        }
    }

    /// A datapath for another namespace than the caller's.
    pub fn in_netns(netns: Netns) -> Result<Self, ApplyError> {
        let handle = Handle::in_netns(&netns).map_err(kernel(
            "open rtnetlink in",
            netns.path().display().to_string(),
        ))?;
        Ok(Datapath {
            netns: Some(netns),
            ..Datapath::new(handle)
        })
    }

    /// The node's WireGuard private key (needed by backend `wireguard`).
    pub fn set_wireguard_key(&mut self, key: PrivateKey) {
        self.wireguard_key = Some(key);
    }

    /// Which WireGuard implementation to use (takes effect when the device
    /// is made).
    pub fn set_wireguard_choice(&mut self, choice: Choice) {
        self.wireguard_choice = choice;
    }

    /// The implementation running the WireGuard device, when there is one.
    pub fn wireguard_implementation(&self) -> Option<Implementation> {
        self.wireguard.as_ref().map(Device::implementation)
    }

    /// Sends one empty UDP datagram (to port 9, discard) to each of
    /// `targets` from this datapath's namespace. Sent to a peer's tunnel
    /// address, it makes the WireGuard device start a handshake with that
    /// peer now rather than at the first pod packet (WireGuard handshakes on
    /// demand); the peer's node drops it or answers port unreachable.
    pub fn nudge(&mut self, targets: &[std::net::Ipv4Addr]) -> Result<(), ApplyError> {
        let send = || -> std::io::Result<()> {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            for t in targets {
                socket.send_to(&[], (*t, 9))?;
            }
            Ok(())
        };
        let sent = match &self.netns {
            Some(ns) => ns
                .run(send)
                .map_err(kernel("enter the namespace of", "the WireGuard device"))?,
            None => send(),
        };
        sent.map_err(|e| ApplyError::Wireguard {
            device: self
                .wireguard
                .as_ref()
                .map_or_else(String::new, |d| d.name().to_string()),
            why: format!("send a handshake nudge: {e}"),
        })
    }

    /// The WireGuard device's peers as it reports them (handshakes, bytes),
    /// when there is one.
    pub fn wireguard_state(&mut self) -> Option<Result<uapi::DeviceState, ApplyError>> {
        let name = self.wireguard.as_ref()?.name().to_string();
        Some(
            self.wireguard
                .as_mut()?
                .state()
                .map_err(|e| ApplyError::Wireguard {
                    device: name,
                    why: e.to_string(),
                }),
        )
    }

    /// Brings the kernel to `desired`; safe to repeat, converges from any state.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        let device_index = match &desired.vxlan {
            Some(dev) => Some(self.ensure_device(dev, &mut report)?),
            None => None,
        };
        let wireguard = match &desired.wireguard {
            Some(w) => Some((w.name.as_str(), self.ensure_wireguard(w, &mut report)?)),
            None => None,
        };

        // Additions: FDB + neighbours, then routes.
        let fdb_plan = match device_index {
            Some(index) => {
                let have = self
                    .handle
                    .fdb_entries(index)
                    .map_err(kernel("list fdb of", desired.device.clone()))?;
                diff_fdb(&desired.fdb, &have)
            }
            None => Diff::default(),
        };
        let neigh_plan = match device_index {
            Some(index) => {
                let have = self
                    .handle
                    .neighbours(Some(index), false)
                    .map_err(kernel("list neighbours of", desired.device.clone()))?;
                diff_neighbours(&desired.neighbours, &have)
            }
            None => Diff::default(),
        };
        let have_routes: Vec<Route> = self
            .handle
            .routes_with_protocol(false)
            .map_err(kernel("list routes", "of protocol weft"))?
            .into_iter()
            .filter(|(_, proto)| *proto == RTPROT_WEFT)
            .map(|(r, _)| r)
            .collect();
        let wanted_routes: Vec<Route> = desired
            .routes
            .iter()
            .map(|r| kernel_route(r, &desired.device, device_index, wireguard))
            .collect::<Result<_, _>>()?;
        let route_plan = diff_routes(&wanted_routes, &have_routes);
        report.unchanged += fdb_plan.unchanged + neigh_plan.unchanged + route_plan.unchanged;

        if let Some(index) = device_index {
            for e in &fdb_plan.add {
                self.handle
                    .replace_fdb(index, e.mac, e.dst)
                    .map_err(kernel("write fdb", describe_fdb(e, &desired.device)))?;
                info!(device = %desired.device, mac = %format_mac(&e.mac), dst = %e.dst, "fdb entry written");
                report.added += 1;
            }
            for n in &neigh_plan.add {
                let mac = n.mac.unwrap_or_default();
                self.handle
                    .replace_neighbour(index, n.ip, mac)
                    .map_err(kernel(
                        "write neighbour",
                        describe_neigh(n, &desired.device),
                    ))?;
                info!(device = %desired.device, ip = %n.ip, mac = %format_mac(&mac), "neighbour written");
                report.added += 1;
            }
        }
        for r in &route_plan.add {
            self.handle
                .replace_route(r, RTPROT_WEFT)
                .map_err(kernel("write route", describe_route(r)))?;
            info!(route = %describe_route(r), "route written");
            report.added += 1;
        }

        // Removals: routes, then neighbours and FDB, then the device. An entry
        // already gone (replaced in place above, or removed by someone else)
        // is not an error.
        for r in &route_plan.remove {
            match self.handle.delete_route_with_protocol(r, RTPROT_WEFT) {
                Ok(()) => {
                    info!(route = %describe_route(r), "stale route removed");
                    report.removed += 1;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(kernel("remove route", describe_route(r))(e)),
            }
        }
        if let Some(index) = device_index {
            for n in &neigh_plan.remove {
                match self.handle.delete_neighbour(index, n.ip) {
                    Ok(()) => {
                        info!(device = %desired.device, ip = %n.ip, "stale neighbour removed");
                        report.removed += 1;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        return Err(kernel(
                            "remove neighbour",
                            describe_neigh(n, &desired.device),
                        )(e))
                    }
                }
            }
            for e in &fdb_plan.remove {
                match self.handle.delete_fdb(index, e.mac, e.dst) {
                    Ok(()) => {
                        info!(device = %desired.device, mac = %format_mac(&e.mac), dst = %e.dst, "stale fdb entry removed");
                        report.removed += 1;
                    }
                    Err(err) if err.is_not_found() => {}
                    Err(err) => {
                        return Err(kernel("remove fdb", describe_fdb(e, &desired.device))(err))
                    }
                }
            }
        }
        if desired.vxlan.is_none() {
            self.remove_device(&desired.device, &mut report)?;
        }
        if desired.wireguard.is_none() && self.remove_wireguard()? {
            report.removed += 1;
        }
        debug!(
            added = report.added,
            removed = report.removed,
            unchanged = report.unchanged,
            "overlay applied"
        );
        Ok(report)
    }

    /// Makes sure the vxlan device exists as `dev` says, up, with its address;
    /// returns its index. A device whose identity (VNI, local, port, underlay)
    /// differs is re-created; MTU and MAC are fixed in place.
    fn ensure_device(
        &mut self,
        dev: &VxlanDevice,
        report: &mut ApplyReport,
    ) -> Result<u32, ApplyError> {
        let name = dev.name.as_str();
        let underlay = self.underlay_index(dev)?;
        let existing = self
            .handle
            .link_by_name(name)
            .map_err(kernel("look up device", name))?;
        let mut link = match existing {
            Some(link) if link.kind.as_deref() == Some("vxlan") => {
                let info = self
                    .handle
                    .vxlan_info(link.index)
                    .map_err(kernel("read vxlan settings of", name))?;
                let same = info.is_some_and(|i| {
                    i.vni == dev.vni
                        && i.local == Some(dev.local)
                        && i.port == dev.port
                        && i.underlay == Some(underlay)
                        && !i.learning
                });
                if same {
                    Some(link)
                } else {
                    info!(
                        device = name,
                        "vxlan device settings differ, re-creating it"
                    );
                    self.handle
                        .delete_link(link.index)
                        .map_err(kernel("delete outdated device", name))?;
                    report.removed += 1;
                    None
                }
            }
            Some(link) => {
                return Err(ApplyError::ForeignDevice {
                    device: name.to_string(),
                    kind: link.kind.unwrap_or_else(|| "unknown".to_string()),
                })
            }
            None => None,
        };
        let mut changed = false;
        if link.is_none() {
            self.handle
                .create_vxlan(
                    name,
                    dev.vni,
                    dev.local,
                    dev.port,
                    Some(underlay),
                    Some(dev.mtu),
                    Some(dev.mac),
                )
                .map_err(kernel("create device", name))?;
            info!(device = name, vni = dev.vni, local = %dev.local, port = dev.port, "vxlan device created");
            changed = true;
            link = self
                .handle
                .link_by_name(name)
                .map_err(kernel("look up device", name))?;
        }
        let Some(link) = link else {
            return Err(ApplyError::DeviceVanished {
                device: name.to_string(),
            });
        };
        if link.mtu != dev.mtu {
            self.handle
                .set_mtu(link.index, dev.mtu)
                .map_err(kernel("set mtu of device", name))?;
            changed = true;
        }
        if link.mac != Some(dev.mac) {
            self.handle
                .set_mac(link.index, dev.mac)
                .map_err(kernel("set address of device", name))?;
            changed = true;
        }
        if !link.up {
            self.handle
                .set_up(link.index)
                .map_err(kernel("bring up device", name))?;
            changed = true;
        }
        if changed {
            report.added += 1;
        } else {
            report.unchanged += 1;
        }

        self.ensure_address(link.index, name, dev.address, report)?;
        Ok(link.index)
    }

    /// The device's IPv4 address: exactly `want`.
    fn ensure_address(
        &mut self,
        index: u32,
        name: &str,
        want: ipnet::Ipv4Net,
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        let want = IpNet::V4(want);
        let have: Vec<IpNet> = self
            .handle
            .addresses(Some(index))
            .map_err(kernel("list addresses of device", name))?
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| a.addr().is_ipv4())
            .collect();
        if have.contains(&want) {
            report.unchanged += 1;
        } else {
            self.handle
                .add_address(index, want)
                .map_err(kernel("add address to device", format!("{want} on {name}")))?;
            report.added += 1;
        }
        for stale in have.iter().filter(|a| **a != want) {
            self.handle.delete_address(index, *stale).map_err(kernel(
                "remove address from device",
                format!("{stale} on {name}"),
            ))?;
            report.removed += 1;
        }
        Ok(())
    }

    /// Makes sure weft's userspace WireGuard device runs as `dev` says —
    /// key, port, peers (by difference: unchanged peers keep their
    /// sessions) — up, with its MTU and address; returns its index.
    fn ensure_wireguard(
        &mut self,
        dev: &WireguardDevice,
        report: &mut ApplyReport,
    ) -> Result<u32, ApplyError> {
        let name = dev.name.as_str();
        let err = |why: String| ApplyError::Wireguard {
            device: name.to_string(),
            why,
        };
        let key = self
            .wireguard_key
            .clone()
            .ok_or_else(|| err("no private key set for this node".into()))?;
        if self.wireguard.as_ref().is_some_and(|d| d.name() != name) {
            self.remove_wireguard()?;
        }
        if self.wireguard.is_none() {
            let device = self.make_wireguard(name, dev.mtu)?;
            info!(
                device = name,
                port = dev.port,
                implementation = %device.implementation(),
                "WireGuard device ready"
            );
            self.wireguard = Some(device);
        }
        let want = uapi::Config {
            private_key: key,
            listen_port: dev.port,
            peers: dev
                .peers
                .iter()
                .map(|p| uapi::Peer {
                    public_key: PublicKey(p.public_key),
                    endpoint: Some(std::net::SocketAddr::V4(p.endpoint)),
                    allowed_ips: p.allowed_ips.iter().map(|n| IpNet::V4(*n)).collect(),
                    persistent_keepalive: None,
                })
                .collect(),
        };
        let device = self.wireguard.as_mut().expect("started above");
        let changed = device.configure(&want).map_err(|e| err(e.to_string()))?;
        let link = self
            .handle
            .link_by_name(name)
            .map_err(kernel("look up device", name))?
            .ok_or_else(|| ApplyError::DeviceVanished {
                device: name.to_string(),
            })?;
        let mut fixed = changed;
        if link.mtu != dev.mtu {
            self.handle
                .set_mtu(link.index, dev.mtu)
                .map_err(kernel("set mtu of device", name))?;
            fixed = true;
        }
        if !link.up {
            self.handle
                .set_up(link.index)
                .map_err(kernel("bring up device", name))?;
            fixed = true;
        }
        if fixed {
            report.added += 1;
        } else {
            report.unchanged += 1;
        }
        self.ensure_address(link.index, name, dev.address, report)?;
        Ok(link.index)
    }

    /// Removes this datapath's WireGuard device, if it has one: a
    /// userspace device ends when dropped, a kernel one is a link to delete.
    /// Says whether there was one.
    fn remove_wireguard(&mut self) -> Result<bool, ApplyError> {
        let Some(dev) = self.wireguard.take() else {
            return Ok(false);
        };
        let name = dev.name().to_string();
        if dev.implementation() == Implementation::Kernel {
            self.handle
                .delete_link_by_name(&name)
                .map_err(kernel("delete device", &name))?;
        }
        drop(dev);
        info!(device = %name, "WireGuard device removed");
        Ok(true)
    }

    /// The WireGuard device `name`, by the datapath's [`Choice`]: an
    /// existing kernel device of that name is adopted (a previous agent's);
    /// any other link of that name is someone else's. `auto` creates a
    /// kernel device and, when the kernel refuses the link kind (no module),
    /// starts the userspace one instead, saying why.
    fn make_wireguard(&mut self, name: &str, mtu: u32) -> Result<Device, ApplyError> {
        let err = |why: String| ApplyError::Wireguard {
            device: name.to_string(),
            why,
        };
        let choice = self.wireguard_choice;
        let existing = self
            .handle
            .link_by_name(name)
            .map_err(kernel("look up device", name))?;
        if let Some(link) = existing {
            let kind = link.kind.unwrap_or_else(|| "unknown".to_string());
            if kind == "wireguard" && choice != Choice::Userspace {
                return self
                    .open_kernel(name)
                    .map_err(|e| err(format!("adopt the kernel's device: {e}")));
            }
            return Err(ApplyError::ForeignDevice {
                device: name.to_string(),
                kind,
            });
        }
        if choice != Choice::Userspace {
            match self.handle.create_wireguard(name, Some(mtu)) {
                Ok(()) => {
                    return self.open_kernel(name).map_err(|e| {
                        let _ = self.handle.delete_link_by_name(name);
                        err(e.to_string())
                    })
                }
                Err(e) if e.is_not_supported() && choice == Choice::Auto => {
                    info!(
                        device = name,
                        "the kernel has no WireGuard ({e}); using the userspace device"
                    );
                }
                Err(e) if e.is_not_supported() => {
                    return Err(err(format!(
                        "the kernel has no WireGuard ({e}); --wireguard-implementation=auto or userspace runs it in the agent"
                    )))
                }
                Err(e) => return Err(kernel("create device", name)(e)),
            }
        }
        let started = match &self.netns {
            Some(ns) => ns
                .run(|| Userspace::start(name, userspace_threads()))
                .map_err(kernel("enter the namespace of", name))?,
            None => Userspace::start(name, userspace_threads()),
        };
        Ok(Device::Userspace(started.map_err(|e| err(e.to_string()))?))
    }

    fn open_kernel(&self, name: &str) -> Result<Device, String> {
        let opened = match &self.netns {
            Some(ns) => ns.run(|| Kernel::open(name)).map_err(|e| e.to_string())?,
            None => Kernel::open(name),
        };
        opened.map(Device::Kernel).map_err(|e| e.to_string())
    }

    /// The interface holding the tunnel's local address.
    fn underlay_index(&mut self, dev: &VxlanDevice) -> Result<u32, ApplyError> {
        self.handle
            .addresses(None)
            .map_err(kernel("list addresses", "of this node"))?
            .into_iter()
            .find(|(_, a)| a.addr() == IpAddr::V4(dev.local))
            .map(|(index, _)| index)
            .ok_or_else(|| ApplyError::NoUnderlay {
                device: dev.name.clone(),
                local: dev.local,
            })
    }

    fn remove_device(&mut self, name: &str, report: &mut ApplyReport) -> Result<(), ApplyError> {
        let Some(link) = self
            .handle
            .link_by_name(name)
            .map_err(kernel("look up device", name))?
        else {
            return Ok(());
        };
        // Only a vxlan device is weft's to remove; anything else by that name
        // belongs to someone else.
        if link.kind.as_deref() != Some("vxlan") {
            return Ok(());
        }
        self.handle
            .delete_link(link.index)
            .map_err(kernel("delete device", name))?;
        info!(device = name, "vxlan device removed");
        report.removed += 1;
        Ok(())
    }
}

/// Worker threads of the userspace WireGuard device: half the CPUs (at
/// least one) — the other half is the kernel's, for the TUN, UDP and pod
/// traffic around it. On 2 CPUs one worker moved 1.6× the throughput of
/// two (docs/benchmarks.md).
fn userspace_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The kernel form of a desired route; a route naming the vxlan device needs
/// its index.
fn kernel_route(
    r: &DesiredRoute,
    device: &str,
    device_index: Option<u32>,
    wireguard: Option<(&str, u32)>,
) -> Result<Route, ApplyError> {
    let oif = match &r.dev {
        None => None,
        Some(dev) if wireguard.is_some_and(|(name, _)| name == dev) => wireguard.map(|(_, i)| i),
        Some(dev) if dev == device => {
            Some(device_index.ok_or_else(|| ApplyError::UnknownDevice {
                route: format!("{} via {}", r.dst, r.via),
                dev: dev.clone(),
                device: format!("{device} (absent: the desired state has no vxlan device)"),
            })?)
        }
        Some(dev) => {
            return Err(ApplyError::UnknownDevice {
                route: format!("{} via {}", r.dst, r.via),
                dev: dev.clone(),
                device: device.to_string(),
            })
        }
    };
    Ok(Route {
        dst: IpNet::V4(r.dst),
        gateway: Some(IpAddr::V4(r.via)),
        oif,
        scope_link: false,
        onlink: r.onlink,
    })
}

/// What to write and what to remove for one object family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff<T> {
    pub add: Vec<T>,
    pub remove: Vec<T>,
    pub unchanged: usize,
}

impl<T> Default for Diff<T> {
    fn default() -> Self {
        Diff {
            add: Vec::new(),
            remove: Vec::new(),
            unchanged: 0,
        }
    }
}

pub(crate) fn diff_fdb(want: &BTreeSet<DesiredFdb>, have: &[Fdb]) -> Diff<Fdb> {
    let want: BTreeSet<Fdb> = want
        .iter()
        .map(|e| Fdb {
            mac: e.mac,
            dst: IpAddr::V4(e.dst),
        })
        .collect();
    let have: BTreeSet<Fdb> = have.iter().cloned().collect();
    let add: Vec<Fdb> = want.difference(&have).cloned().collect();
    // A unicast MAC has one remote, and the replace of a wanted entry rewrites
    // it in place; deleting the old remote afterwards would be a no-op the
    // kernel still answers with success (it only checks the MAC).
    let remove = have
        .difference(&want)
        .filter(|h| !add.iter().any(|a| a.mac == h.mac))
        .cloned()
        .collect();
    Diff {
        add,
        remove,
        unchanged: want.intersection(&have).count(),
    }
}

/// Only permanent entries are weft's to remove: anything else on the device
/// was made by the kernel and ages out by itself.
pub(crate) fn diff_neighbours(
    want: &BTreeSet<DesiredNeighbour>,
    have: &[Neighbour],
) -> Diff<Neighbour> {
    let mut diff = Diff::default();
    for w in want {
        let ip = IpAddr::V4(w.ip);
        let ok = have
            .iter()
            .any(|h| h.ip == ip && h.mac == Some(w.mac) && h.permanent);
        if ok {
            diff.unchanged += 1;
        } else {
            diff.add.push(Neighbour {
                index: 0,
                ip,
                mac: Some(w.mac),
                permanent: true,
            });
        }
    }
    let wanted_ips: BTreeSet<IpAddr> = want.iter().map(|w| IpAddr::V4(w.ip)).collect();
    diff.remove = have
        .iter()
        .filter(|h| h.permanent && !wanted_ips.contains(&h.ip))
        .cloned()
        .collect();
    diff
}

/// A kernel route matches a wanted one when destination, gateway and onlink
/// agree, and the device too when the wanted route names one (host-gw routes
/// leave the device to the kernel).
fn route_matches(want: &Route, have: &Route) -> bool {
    want.dst == have.dst
        && want.gateway == have.gateway
        && want.onlink == have.onlink
        && (want.oif.is_none() || want.oif == have.oif)
}

/// `have` holds only routes of weft's protocol. A wrong route for a wanted
/// destination is replaced in place (no moment without a route), so it is
/// not removed separately.
pub(crate) fn diff_routes(want: &[Route], have: &[Route]) -> Diff<Route> {
    let mut diff = Diff::default();
    for w in want {
        if have.iter().any(|h| route_matches(w, h)) {
            diff.unchanged += 1;
        } else {
            diff.add.push(w.clone());
        }
    }
    diff.remove = have
        .iter()
        .filter(|h| !want.iter().any(|w| route_matches(w, h)))
        .filter(|h| !diff.add.iter().any(|a| a.dst == h.dst))
        .cloned()
        .collect();
    diff
}

fn describe_route(r: &Route) -> String {
    let mut s = r.dst.to_string();
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    s
}

fn describe_neigh(n: &Neighbour, device: &str) -> String {
    match n.mac {
        Some(mac) => format!("{} lladdr {} dev {device}", n.ip, format_mac(&mac)),
        None => format!("{} dev {device}", n.ip),
    }
}

fn describe_fdb(e: &Fdb, device: &str) -> String {
    format!("{} dst {} dev {device}", format_mac(&e.mac), e.dst)
}

//! The built-in IPAM: host-local's on-disk layout, safe under concurrency and
//! crashes.
//!
//! `<dataDir>/<network>/` holds one file per allocated address, named by the
//! address and containing `<containerID>\r\n<ifname>` (host-local's format, so
//! state carries over in both directions), `last_reserved_ip.<set>` per range
//! set, and `lock`. Every operation holds an exclusive `flock` on `lock`, so
//! concurrent plugin processes are serialised; files are written to a
//! temporary name and renamed, so a process killed at any point leaves either
//! a whole allocation or none.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::{ip_from_u128, ip_to_u128, Attachment, Range, RangeSet};
use crate::spec::{code, CniError};

/// An address handed out, with the range it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub range: Range,
}

/// The allocation directory of one network, locked for as long as this lives.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

fn io_err(what: String, e: std::io::Error) -> CniError {
    CniError::new(code::IO_FAILURE, format!("{what}: {e}"))
}

impl Store {
    /// Creates the directory if needed and takes the lock (blocking).
    pub fn open(dir: &Path) -> Result<Store, CniError> {
        fs::create_dir_all(dir)
            .map_err(|e| io_err(format!("create IPAM directory {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(format!("open {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| io_err(format!("lock {}", lock_path.display()), e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Every allocation file: (address, owner). An owner is `None` when the
    /// file is unreadable or empty (only possible from tools other than us).
    fn entries(&self) -> Result<Vec<(IpAddr, Option<Attachment>)>, CniError> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| io_err(format!("list {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            let owner = fs::read_to_string(entry.path())
                .ok()
                .and_then(|s| parse_owner(&s));
            out.push((ip, owner));
        }
        Ok(out)
    }

    fn write_atomic(&self, name: &str, content: &str) -> Result<(), CniError> {
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let target = self.dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            fs::rename(&tmp, &target)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(format!("write {}", target.display()), e)
        })
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("last_reserved_ip.{set}")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Allocates one address per range set for `owner`. Addresses the owner
    /// already holds are returned again (a retried ADD after a crash);
    /// `requested` addresses are honoured or refused, never swapped.
    pub fn allocate(
        &self,
        sets: &[RangeSet],
        owner: &Attachment,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocation>, CniError> {
        let entries = self.entries()?;
        let taken: BTreeSet<IpAddr> = entries.iter().map(|(ip, _)| *ip).collect();
        for want in requested {
            if !sets.iter().flatten().any(|r| r.contains(*want)) {
                return Err(CniError::new(
                    code::ADDRESS_UNAVAILABLE,
                    format!("requested IP {want} is in no range of this network"),
                ));
            }
        }

        let mut out = Vec::new();
        let mut written = Vec::new();
        let result = (|| {
            for (index, set) in sets.iter().enumerate() {
                // Already ours?
                if let Some((ip, _)) = entries.iter().find(|(ip, o)| {
                    o.as_ref() == Some(owner) && set.iter().any(|r| r.contains(*ip))
                }) {
                    let range = set
                        .iter()
                        .find(|r| r.contains(*ip))
                        .cloned()
                        .ok_or_else(|| {
                            CniError::new(
                                code::IO_FAILURE,
                                format!("internal: {ip} left its range"),
                            )
                        })?;
                    out.push(Allocation { ip: *ip, range });
                    continue;
                }
                let requested_here = requested
                    .iter()
                    .find(|ip| set.iter().any(|r| r.contains(**ip)));
                let alloc = match requested_here {
                    Some(ip) => {
                        let range =
                            set.iter()
                                .find(|r| r.contains(*ip))
                                .cloned()
                                .ok_or_else(|| {
                                    CniError::new(
                                        code::IO_FAILURE,
                                        format!("internal: {ip} left its range"),
                                    )
                                })?;
                        if taken.contains(ip) || *ip == range.gateway {
                            return Err(CniError::new(
                                code::ADDRESS_UNAVAILABLE,
                                format!("requested IP {ip} is already allocated"),
                            ));
                        }
                        Allocation { ip: *ip, range }
                    }
                    None => next_free(set, &taken, self.last_reserved(index)).ok_or_else(|| {
                        CniError::new(
                            code::RANGE_EXHAUSTED,
                            format!(
                                "no IP addresses available in range set {}",
                                describe_set(set)
                            ),
                        )
                    })?,
                };
                self.write_atomic(&alloc.ip.to_string(), &format_owner(owner))?;
                written.push(alloc.ip);
                self.write_atomic(&format!("last_reserved_ip.{index}"), &alloc.ip.to_string())?;
                out.push(alloc);
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Give back what this call took, so a failed ADD leaves nothing.
            for ip in written {
                let _ = fs::remove_file(self.ip_path(ip));
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Releases everything `owner` holds; returns the addresses released.
    pub fn release(&self, owner: &Attachment) -> Result<Vec<IpAddr>, CniError> {
        let mut released = Vec::new();
        for (ip, o) in self.entries()? {
            if o.as_ref() == Some(owner) {
                remove_if_present(&self.ip_path(ip))?;
                released.push(ip);
            }
        }
        Ok(released)
    }

    /// The addresses `owner` holds.
    pub fn owned_by(&self, owner: &Attachment) -> Result<Vec<IpAddr>, CniError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, o)| o.as_ref() == Some(owner))
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Releases every allocation whose owner is not in `valid`; returns them.
    pub fn gc(
        &self,
        valid: &BTreeSet<Attachment>,
    ) -> Result<Vec<(IpAddr, Option<Attachment>)>, CniError> {
        let mut released = Vec::new();
        for (ip, owner) in self.entries()? {
            let keep = owner.as_ref().is_some_and(|o| valid.contains(o));
            if !keep {
                remove_if_present(&self.ip_path(ip))?;
                released.push((ip, owner));
            }
        }
        // Leftovers of a writer killed between create and rename.
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for entry in rd.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(released)
    }

    /// Free addresses per range set (for STATUS).
    pub fn free_per_set(&self, sets: &[RangeSet]) -> Result<Vec<u128>, CniError> {
        let taken: BTreeSet<IpAddr> = self.entries()?.into_iter().map(|(ip, _)| ip).collect();
        Ok(sets
            .iter()
            .map(|set| {
                // Disjoint ranges cannot hold more than u128::MAX addresses,
                // but saturate rather than rely on that.
                let size = set
                    .iter()
                    .map(Range::size)
                    .fold(0u128, u128::saturating_add);
                let used = taken
                    .iter()
                    .filter(|ip| set.iter().any(|r| r.contains(**ip) && **ip != r.gateway))
                    .count();
                size.saturating_sub(used as u128)
            })
            .collect())
    }
}

fn remove_if_present(path: &Path) -> Result<(), CniError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("remove {}", path.display()), e)),
    }
}

fn format_owner(owner: &Attachment) -> String {
    format!("{}\r\n{}", owner.container_id, owner.ifname)
}

fn parse_owner(s: &str) -> Option<Attachment> {
    let mut lines = s.lines().map(str::trim);
    let id = lines.next().filter(|l| !l.is_empty())?;
    // host-local before 0.7 wrote the ID alone; such files belong to eth0.
    let ifname = lines.next().filter(|l| !l.is_empty()).unwrap_or("eth0");
    Some(Attachment {
        container_id: id.to_string(),
        ifname: ifname.to_string(),
    })
}

fn describe_set(set: &RangeSet) -> String {
    set.iter()
        .map(|r| format!("{} ({}-{})", r.subnet, r.start, r.end))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Round robin: the first free address after `last` (wrapping around the
/// whole set), so a just-freed address is the last to be reused.
///
/// All position arithmetic is checked: a range may end at the very top of
/// the address space (`ffff:…:ffff`), where `last + 1` does not exist, and
/// nothing may wrap around to `::` or `0.0.0.0`.
pub fn next_free(
    set: &RangeSet,
    taken: &BTreeSet<IpAddr>,
    last: Option<IpAddr>,
) -> Option<Allocation> {
    scan_order(set, last).into_iter().find_map(|(i, from, to)| {
        let r = &set[i];
        let v4 = r.start.is_ipv4();
        (from..=to)
            .filter_map(|n| ip_from_u128(n, v4))
            .find(|ip| *ip != r.gateway && !taken.contains(ip))
            .map(|ip| Allocation {
                ip,
                range: r.clone(),
            })
    })
}

/// The inclusive segments `(range index, from, to)` in the order round robin
/// visits them: from just after `last` to the end of its range, the other
/// ranges in order (wrapping), then the head of `last`'s range up to and
/// including `last`. Without a usable `last`, every range from its start.
fn scan_order(set: &RangeSet, last: Option<IpAddr>) -> Vec<(usize, u128, u128)> {
    let bounds = |r: &Range| (ip_to_u128(r.start), ip_to_u128(r.end));
    let Some((at, pos)) = last.and_then(|ip| {
        set.iter()
            .position(|r| r.contains(ip))
            .map(|i| (i, ip_to_u128(ip)))
    }) else {
        return set
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (lo, hi) = bounds(r);
                (i, lo, hi)
            })
            .collect();
    };
    let n = set.len();
    let (lo, hi) = bounds(&set[at]);
    let mut out = Vec::with_capacity(n + 1);
    // `pos < hi` also proves `pos + 1` exists.
    if pos < hi {
        out.push((at, pos + 1, hi));
    }
    for step in 1..n {
        let i = (at + step) % n;
        let (l, h) = bounds(&set[i]);
        out.push((i, l, h));
    }
    out.push((at, lo, pos));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, validate};

    fn sets(json_ipam: &str) -> Vec<RangeSet> {
        let json =
            format!(r#"{{"cniVersion":"1.1.0","name":"n","type":"weft-cni","ipam":{json_ipam}}}"#);
        validate(parse(json.as_bytes()).unwrap())
            .unwrap()
            .range_sets
    }

    fn owner(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-ipam-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_robin_skips_gateway_and_wraps() {
        let s = sets(r#"{"subnet":"10.0.0.0/29"}"#); // hosts .1-.6, gateway .1
        let set = &s[0];
        let mut taken = BTreeSet::new();
        let a = next_free(set, &taken, None).unwrap();
        assert_eq!(a.ip.to_string(), "10.0.0.2");
        taken.insert(a.ip);
        let b = next_free(set, &taken, Some(a.ip)).unwrap();
        assert_eq!(b.ip.to_string(), "10.0.0.3");
        // After .6 it wraps to the first free one.
        let c = next_free(set, &taken, Some("10.0.0.6".parse().unwrap())).unwrap();
        assert_eq!(c.ip.to_string(), "10.0.0.3");
        for i in 2..=6 {
            taken.insert(format!("10.0.0.{i}").parse().unwrap());
        }
        assert!(next_free(set, &taken, Some("10.0.0.4".parse().unwrap())).is_none());
    }

    #[test]
    fn multi_range_set_continues_into_the_next_range() {
        let s = sets(r#"{"ranges":[[{"subnet":"10.0.0.0/30"},{"subnet":"10.0.1.0/30"}]]}"#);
        let set = &s[0];
        let taken = BTreeSet::new();
        // 10.0.0.0/30: hosts .1-.2, gateway .1 → .2 only.
        let a = next_free(set, &taken, Some("10.0.0.2".parse().unwrap())).unwrap();
        assert_eq!(a.ip.to_string(), "10.0.1.2");
        let b = next_free(set, &taken, Some("10.0.1.2".parse().unwrap())).unwrap();
        assert_eq!(b.ip.to_string(), "10.0.0.2");
    }

    #[test]
    fn allocate_release_reuse_and_exhaustion() {
        let dir = tmpdir("basic");
        let s = sets(r#"{"subnet":"10.0.0.0/29"}"#);
        let store = Store::open(&dir).unwrap();
        let a = store.allocate(&s, &owner("a"), &[]).unwrap();
        assert_eq!(a[0].ip.to_string(), "10.0.0.2");
        // Same owner again: same address (retried ADD).
        assert_eq!(store.allocate(&s, &owner("a"), &[]).unwrap()[0].ip, a[0].ip);
        assert_eq!(
            fs::read_to_string(dir.join("10.0.0.2")).unwrap(),
            "a\r\neth0"
        );
        let b = store.allocate(&s, &owner("b"), &[]).unwrap();
        assert_eq!(b[0].ip.to_string(), "10.0.0.3");
        // Freed .2 is not reused at once.
        assert_eq!(store.release(&owner("a")).unwrap().len(), 1);
        let c = store.allocate(&s, &owner("c"), &[]).unwrap();
        assert_eq!(c[0].ip.to_string(), "10.0.0.4");
        for id in ["d", "e", "f"] {
            store.allocate(&s, &owner(id), &[]).unwrap();
        }
        let e = store.allocate(&s, &owner("g"), &[]).unwrap_err();
        assert_eq!(e.code, code::RANGE_EXHAUSTED);
        assert!(e.msg.contains("10.0.0.0/29"), "{}", e.msg);
        assert_eq!(store.free_per_set(&s).unwrap(), vec![0]);
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn requested_ips_and_dual_stack() {
        let dir = tmpdir("req");
        let s = sets(r#"{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}"#);
        let store = Store::open(&dir).unwrap();
        let a = store
            .allocate(&s, &owner("a"), &["10.0.0.50".parse().unwrap()])
            .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].ip.to_string(), "10.0.0.50");
        assert_eq!(a[1].ip.to_string(), "fd00::2");
        let e = store
            .allocate(&s, &owner("b"), &["10.0.0.50".parse().unwrap()])
            .unwrap_err();
        assert_eq!(e.code, code::ADDRESS_UNAVAILABLE);
        // A failed allocation leaves nothing behind (the v6 part is not kept).
        assert!(store.owned_by(&owner("b")).unwrap().is_empty());
        let e = store
            .allocate(&s, &owner("b"), &["10.9.9.9".parse().unwrap()])
            .unwrap_err();
        assert!(e.msg.contains("no range"));
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let dir = tmpdir("gc");
        let s = sets(r#"{"subnet":"10.0.0.0/24"}"#);
        let store = Store::open(&dir).unwrap();
        for id in ["a", "b", "c"] {
            store.allocate(&s, &owner(id), &[]).unwrap();
        }
        fs::write(dir.join(".tmp-1-10.0.0.9"), "x").unwrap();
        let valid: BTreeSet<Attachment> = [owner("b")].into_iter().collect();
        let released = store.gc(&valid).unwrap();
        assert_eq!(released.len(), 2);
        assert_eq!(store.owned_by(&owner("b")).unwrap().len(), 1);
        assert!(!dir.join(".tmp-1-10.0.0.9").exists());
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn top_of_the_v6_space_never_wraps_to_zero() {
        let s = sets(r#"{"subnet":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"}"#);
        let set = &s[0];
        let top: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(set[0].end, top);
        // After the very last address, round robin starts over at the range's
        // first free address (the gateway ..ff01 excluded), not at `::`.
        let a = next_free(set, &BTreeSet::new(), Some(top)).unwrap();
        assert_eq!(a.ip.to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff02");
        // Everything but the top address taken: the top one is found.
        let mut taken: BTreeSet<IpAddr> = (0xff02..=0xfffeu128)
            .map(|low| IpAddr::V6((ip_to_u128(top) - 0xffff + low).into()))
            .collect();
        let b = next_free(set, &taken, Some(top)).unwrap();
        assert_eq!(b.ip, top);
        taken.insert(top);
        assert!(next_free(set, &taken, Some(top)).is_none());
    }

    #[test]
    fn top_of_the_v6_space_allocates_until_exhausted() {
        let dir = tmpdir("top6");
        let s = sets(r#"{"subnet":"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"}"#);
        let store = Store::open(&dir).unwrap();
        let mut seen = BTreeSet::new();
        // ..fff1 is the gateway; ..fff2 up to ..ffff are 14 addresses.
        for i in 0..14 {
            let a = store.allocate(&s, &owner(&format!("p{i}")), &[]).unwrap();
            assert!(s[0][0].contains(a[0].ip), "{} outside the range", a[0].ip);
            assert!(seen.insert(a[0].ip), "{} handed out twice", a[0].ip);
        }
        let e = store.allocate(&s, &owner("one-too-many"), &[]).unwrap_err();
        assert_eq!(e.code, code::RANGE_EXHAUSTED, "{}", e.msg);
        // Freeing the top address and allocating again gets exactly it.
        let top: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let holder = fs::read_to_string(dir.join(top.to_string())).unwrap();
        let holder = parse_owner(&holder).unwrap();
        assert_eq!(store.release(&holder).unwrap(), vec![top]);
        assert_eq!(store.allocate(&s, &owner("again"), &[]).unwrap()[0].ip, top);
        drop(store);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn top_of_the_v4_space_excludes_the_broadcast() {
        let s = sets(r#"{"subnet":"255.255.255.248/29"}"#);
        let set = &s[0];
        let last: IpAddr = "255.255.255.254".parse().unwrap();
        assert_eq!(set[0].end, last);
        let a = next_free(set, &BTreeSet::new(), Some(last)).unwrap();
        assert_eq!(a.ip.to_string(), "255.255.255.250");
    }

    #[test]
    fn reads_host_local_owner_formats() {
        assert_eq!(
            parse_owner("abc\r\neth1"),
            Some(Attachment {
                container_id: "abc".into(),
                ifname: "eth1".into()
            })
        );
        assert_eq!(parse_owner("abc"), Some(owner("abc")));
        assert_eq!(parse_owner(""), None);
    }
}

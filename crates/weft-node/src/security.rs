//! Who a container runs as (pure): uid, gid, supplementary groups,
//! capabilities and no_new_privs from the pod's and the container's
//! `securityContext`, checked before anything starts so a bad manifest is a
//! clear waiting message, never a failed process.
//!
//! Defaults (the embedded cluster's, stricter than Docker's): uid and gid
//! 65534 (`nobody`) unless the manifest asks for another uid (0 included);
//! no capabilities at all unless `capabilities.add` or `privileged: true`
//! grant them. Capability names are checked with the `caps` crate's table
//! (the same crate applies them in [`crate::podinit`]), so the names this
//! module accepts are exactly those the kernel calls can set.

use std::collections::BTreeSet;
use std::str::FromStr;

use caps::Capability;
use k8s_openapi::api::core::v1::{Container, Pod};

/// The uid and gid of a container whose manifest names none.
pub const NOBODY: u32 = 65534;

/// The identity one container process takes before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`supplementalGroups`, then `fsGroup`).
    pub groups: Vec<u32>,
    /// Canonical names (`CAP_NET_ADMIN`) of every capability the process
    /// keeps: bounding, permitted, effective, inheritable and (for a
    /// non-root uid) ambient are all exactly this set.
    pub caps: BTreeSet<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

impl Default for Identity {
    /// Unprivileged: nobody/nogroup, no capabilities.
    fn default() -> Self {
        Identity {
            uid: NOBODY,
            gid: NOBODY,
            groups: Vec::new(),
            caps: BTreeSet::new(),
            no_new_privs: false,
        }
    }
}

impl Identity {
    /// Root with every capability: what a `privileged: true` container
    /// without `runAsUser` gets.
    pub fn root_all() -> Self {
        Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            caps: caps::all().iter().map(ToString::to_string).collect(),
            no_new_privs: false,
        }
    }

    /// The flags `pod-init run` reads back ([`crate::podinit::RunArgs`]).
    pub fn to_args(&self) -> Vec<String> {
        let join = |v: Vec<String>| v.join(",");
        let mut out = vec![format!("--uid={}", self.uid), format!("--gid={}", self.gid)];
        if !self.groups.is_empty() {
            out.push(format!(
                "--groups={}",
                join(self.groups.iter().map(u32::to_string).collect())
            ));
        }
        if !self.caps.is_empty() {
            out.push(format!(
                "--caps={}",
                join(self.caps.iter().cloned().collect())
            ));
        }
        if self.no_new_privs {
            out.push("--no-new-privs".into());
        }
        out
    }
}

/// A capability name as the API accepts it (`NET_ADMIN`, `CAP_NET_ADMIN`,
/// any case) → the `caps` crate's capability; `None` when unknown.
pub fn parse_capability(name: &str) -> Option<Capability> {
    Capability::from_str(&caps::to_canonical(name.trim())).ok()
}

fn cap_list(
    container: &Container,
    field: &str,
    names: &[String],
) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.trim().eq_ignore_ascii_case("ALL") {
            out.extend(caps::all().iter().map(ToString::to_string));
            continue;
        }
        match parse_capability(name) {
            Some(c) => {
                out.insert(c.to_string());
            }
            None => {
                return Err(format!(
                    "container {:?} securityContext.capabilities.{field}[{i}]: unknown capability \
                     {name:?} (expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL)",
                    container.name
                ))
            }
        }
    }
    Ok(out)
}

/// The identity of `container` in `pod` (container fields override the
/// pod's). `Err` is the container's waiting message
/// (CreateContainerConfigError): an unknown capability, or a root uid where
/// `runAsNonRoot` forbids it.
pub fn identity(pod: &Pod, container: &Container) -> Result<Identity, String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = container.security_context.as_ref();
    let privileged = csc.and_then(|c| c.privileged).unwrap_or(false);
    let uid = csc
        .and_then(|c| c.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user))
        .map(|u| {
            u32::try_from(u).map_err(|_| {
                format!(
                    "container {:?} securityContext.runAsUser: {u} is not a uid (0..=4294967295)",
                    container.name
                )
            })
        })
        .transpose()?
        .unwrap_or(if privileged { 0 } else { NOBODY });
    let gid = csc
        .and_then(|c| c.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group))
        .map(|g| {
            u32::try_from(g).map_err(|_| {
                format!(
                    "container {:?} securityContext.runAsGroup: {g} is not a gid (0..=4294967295)",
                    container.name
                )
            })
        })
        .transpose()?
        .unwrap_or(if uid == 0 { 0 } else { NOBODY });
    let non_root = csc
        .and_then(|c| c.run_as_non_root)
        .or_else(|| psc.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err(format!(
            "container {:?} has runAsNonRoot and would run as root (uid 0): set runAsUser to a \
             non-zero uid",
            container.name
        ));
    }
    let mut groups: Vec<u32> = Vec::new();
    for g in psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(psc.and_then(|p| p.fs_group))
    {
        let g = u32::try_from(g).map_err(|_| {
            format!(
                "pod securityContext: group {g} of supplementalGroups/fsGroup is not a gid \
                 (0..=4294967295)"
            )
        })?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let capabilities = csc.and_then(|c| c.capabilities.as_ref());
    let add = cap_list(
        container,
        "add",
        capabilities.and_then(|c| c.add.as_deref()).unwrap_or(&[]),
    )?;
    // `drop: [ALL]` empties the default set before `add` (containerd's CRI
    // order, which manifests such as CoreDNS's `drop: [ALL], add:
    // [NET_BIND_SERVICE]` rely on); the default set here is already empty,
    // so only the capabilities named one by one are taken from `add`.
    let drop_names: Vec<String> = capabilities
        .and_then(|c| c.drop.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter(|n| !n.trim().eq_ignore_ascii_case("ALL"))
        .cloned()
        .collect();
    let drop = cap_list(container, "drop", &drop_names)?;
    let granted: BTreeSet<String> = if privileged {
        caps::all().iter().map(ToString::to_string).collect()
    } else {
        add
    };
    let caps = if privileged {
        // Privileged means all of them, whatever drop says (as runc does).
        granted
    } else {
        granted.difference(&drop).cloned().collect()
    };
    Ok(Identity {
        uid,
        gid,
        groups,
        caps,
        no_new_privs: csc
            .and_then(|c| c.allow_privilege_escalation)
            .is_some_and(|a| !a),
    })
}

/// The owner of a pod's ServiceAccount token files and their mode, as
/// kubelet projects them: when every container runs as one non-root uid the
/// files belong to it with mode 0600 (kubelet's fsUser), else they stay
/// root's with mode 0644 so any uid of the pod reads them.
pub fn token_file_owner(pod: &Pod) -> (Option<u32>, u32) {
    let uids: BTreeSet<u32> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| identity(pod, c).ok().map(|i| i.uid))
        .collect();
    match uids.iter().next() {
        Some(&uid) if uids.len() == 1 && uid != 0 => (Some(uid), 0o600),
        _ => (None, 0o644),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, PodSpec, SecurityContext};

    fn pod_with(psc: Option<PodSecurityContext>, csc: Option<SecurityContext>) -> (Pod, Container) {
        let c = Container {
            name: "app".into(),
            security_context: csc,
            ..Default::default()
        };
        let p = Pod {
            spec: Some(PodSpec {
                security_context: psc,
                containers: vec![c.clone()],
                ..Default::default()
            }),
            ..Default::default()
        };
        (p, c)
    }

    fn caps_of(add: &[&str], drop: &[&str]) -> Option<SecurityContext> {
        Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(add.iter().map(|s| s.to_string()).collect()),
                drop: Some(drop.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn a_default_container_is_nobody_without_capabilities() {
        let (p, c) = pod_with(None, None);
        assert_eq!(identity(&p, &c).unwrap(), Identity::default());
        assert_eq!(Identity::default().uid, 65534);
        assert!(Identity::default().caps.is_empty());
    }

    #[test]
    fn container_run_as_user_overrides_the_pods() {
        let (p, c) = pod_with(
            Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                supplemental_groups: Some(vec![4000, 4001]),
                fs_group: Some(2000),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_user: Some(1001),
                ..Default::default()
            }),
        );
        let id = identity(&p, &c).unwrap();
        assert_eq!((id.uid, id.gid), (1001, 3000));
        assert_eq!(id.groups, [4000, 4001, 2000]);
    }

    #[test]
    fn run_as_user_zero_is_root_with_gid_zero_and_still_no_capabilities() {
        let (p, c) = pod_with(
            Some(PodSecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            None,
        );
        let id = identity(&p, &c).unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
        assert!(id.caps.is_empty());
    }

    #[test]
    fn privileged_without_run_as_user_is_root_with_every_capability() {
        let (p, c) = pod_with(
            None,
            Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
        );
        assert_eq!(identity(&p, &c).unwrap(), Identity::root_all());
        assert!(Identity::root_all().caps.contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn capabilities_add_accepts_both_spellings_and_drop_removes() {
        let (p, c) = pod_with(
            None,
            caps_of(&["NET_ADMIN", "CAP_NET_RAW", "sys_time"], &["SYS_TIME"]),
        );
        let id = identity(&p, &c).unwrap();
        assert_eq!(
            id.caps.iter().map(String::as_str).collect::<Vec<_>>(),
            ["CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        let (p, c) = pod_with(None, caps_of(&["ALL"], &["NET_ADMIN"]));
        let id = identity(&p, &c).unwrap();
        assert!(id.caps.contains("CAP_SYS_ADMIN") && !id.caps.contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn drop_all_keeps_what_add_names() {
        // CoreDNS's (and weft dns's) manifest: port 53 and nothing else.
        let (p, c) = pod_with(None, caps_of(&["NET_BIND_SERVICE"], &["ALL"]));
        let id = identity(&p, &c).unwrap();
        assert_eq!(
            id.caps.iter().map(String::as_str).collect::<Vec<_>>(),
            ["CAP_NET_BIND_SERVICE"]
        );
    }

    #[test]
    fn an_unknown_capability_is_an_error_naming_it() {
        let (p, c) = pod_with(None, caps_of(&["NET_ADMIN", "NET_WIZARD"], &[]));
        let err = identity(&p, &c).unwrap_err();
        assert!(
            err.contains("capabilities.add[1]")
                && err.contains("\"NET_WIZARD\"")
                && err.contains("\"app\""),
            "{err}"
        );
    }

    #[test]
    fn allow_privilege_escalation_false_sets_no_new_privs() {
        let (p, c) = pod_with(
            None,
            Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                ..Default::default()
            }),
        );
        assert!(identity(&p, &c).unwrap().no_new_privs);
        let (p, c) = pod_with(None, None);
        assert!(!identity(&p, &c).unwrap().no_new_privs);
    }

    #[test]
    fn run_as_non_root_refuses_uid_zero() {
        let (p, c) = pod_with(
            Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(0),
                ..Default::default()
            }),
            None,
        );
        assert!(identity(&p, &c).unwrap_err().contains("runAsNonRoot"));
    }

    #[test]
    fn identity_flags_name_every_field() {
        let id = Identity {
            uid: 1000,
            gid: 1001,
            groups: vec![5, 6],
            caps: ["CAP_NET_ADMIN".to_string()].into(),
            no_new_privs: true,
        };
        assert_eq!(
            id.to_args(),
            [
                "--uid=1000",
                "--gid=1001",
                "--groups=5,6",
                "--caps=CAP_NET_ADMIN",
                "--no-new-privs"
            ]
        );
        assert_eq!(
            Identity::default().to_args(),
            ["--uid=65534", "--gid=65534"]
        );
    }

    #[test]
    fn token_files_belong_to_the_one_uid_of_all_containers() {
        let (p, _) = pod_with(None, None);
        assert_eq!(token_file_owner(&p), (Some(65534), 0o600));
        let (p, _) = pod_with(
            None,
            Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
        );
        assert_eq!(token_file_owner(&p), (None, 0o644));
    }
}

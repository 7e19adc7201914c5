//! The ServiceAccount volume every pod gets unless
//! `automountServiceAccountToken: false` (kubelet's projected
//! `kube-api-access-*` volume): a bound token from the TokenRequest API, the
//! cluster CA from the namespace's ConfigMap `kube-root-ca.crt` and the
//! namespace, written to `<pod dir>/serviceaccount/` and bind-mounted
//! read-only on `/var/run/secrets/kubernetes.io/serviceaccount` by the pod's
//! init. The token is refreshed when 80% of its lifetime has passed; every
//! file is replaced by rename inside the mounted directory, so containers
//! see whole new files (a bind mount of the directory shows renames, a bind
//! mount of a file would not).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, PostParams};

/// The token's lifetime the runtime asks for (kubelet's default is 1 h too).
pub const EXPIRATION_SECONDS: i64 = 3600;
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// What the volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub token: String,
    pub ca_crt: String,
    pub namespace: String,
    /// When the token was issued (as the runtime saw it) and expires.
    pub issued: Timestamp,
    pub expires: Timestamp,
}

/// Whether the pod gets the volume (`automountServiceAccountToken`, pod spec).
pub fn automount(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        != Some(false)
}

/// The pod's ServiceAccount name (`default` when unset).
pub fn account_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .clone()
                .or_else(|| s.service_account.clone())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// How long after `now` the token is renewed: when 80% of its lifetime has
/// passed (kubelet's rule), at least 1 s from now.
pub fn refresh_in(p: &Projection, now: Timestamp) -> Duration {
    let life = p.expires.as_millisecond() - p.issued.as_millisecond();
    let at = p.issued.as_millisecond() + life * 4 / 5;
    let ms = (at - now.as_millisecond()).max(1000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1000))
}

/// Writes `token`, `ca.crt` and `namespace` into `dir`, each by rename of
/// a complete file with its owner and mode already set (`owner` None:
/// root's). Creates `dir` (0755) when absent.
pub fn write_files(
    dir: &Path,
    p: &Projection,
    owner: Option<u32>,
    mode: u32,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, data) in [
        ("token", &p.token),
        ("ca.crt", &p.ca_crt),
        ("namespace", &p.namespace),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data.as_bytes())?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&tmp, Some(uid), None)?;
        }
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// Fetches the volume's contents as kubelet does: a TokenRequest bound to
/// the pod (1 h) and the namespace's `kube-root-ca.crt`. `Err` is the
/// containers' waiting message.
pub async fn fetch(client: &kube::Client, pod: &Pod) -> Result<Projection, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let sa = account_name(pod);
    let fail =
        |what: String| format!("MountVolume.SetUp failed for volume \"kube-api-access\": {what}");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(EXPIRATION_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let issued = Timestamp::now();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| fail(format!("request a token of ServiceAccount {ns}/{sa}: {e}")))?;
    let status = answer.status.ok_or_else(|| {
        fail(format!(
            "the TokenRequest of ServiceAccount {ns}/{sa} came back without status.token"
        ))
    })?;
    if status.token.is_empty() {
        return Err(fail(format!(
            "the TokenRequest of ServiceAccount {ns}/{sa} came back with an empty status.token"
        )));
    }
    let expires = if status.expiration_timestamp.0 > issued {
        status.expiration_timestamp.0
    } else {
        issued + jiff::SignedDuration::from_secs(EXPIRATION_SECONDS)
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = cms
        .get_opt(ROOT_CA_CONFIGMAP)
        .await
        .map_err(|e| fail(format!("get ConfigMap {ns}/{ROOT_CA_CONFIGMAP}: {e}")))?
        .ok_or_else(|| {
            fail(format!(
                "configmap \"{ROOT_CA_CONFIGMAP}\" not found in {ns}"
            ))
        })?;
    let ca_crt = cm
        .data
        .and_then(|d| d.get("ca.crt").cloned())
        .ok_or_else(|| {
            fail(format!(
                "ConfigMap {ns}/{ROOT_CA_CONFIGMAP} has no key \"ca.crt\""
            ))
        })?;
    Ok(Projection {
        token: status.token,
        ca_crt,
        namespace: ns,
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn projection(token: &str) -> Projection {
        let issued = Timestamp::from_second(1_700_000_000).unwrap();
        Projection {
            token: token.into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\n".into(),
            namespace: "shop".into(),
            issued,
            expires: issued + jiff::SignedDuration::from_secs(3600),
        }
    }

    #[test]
    fn the_token_is_renewed_after_80_percent_of_its_life() {
        let p = projection("t");
        assert_eq!(refresh_in(&p, p.issued), Duration::from_secs(2880));
        let later = p.issued + jiff::SignedDuration::from_secs(2000);
        assert_eq!(refresh_in(&p, later), Duration::from_secs(880));
        // Past the point: soon, never a busy loop.
        let late = p.issued + jiff::SignedDuration::from_secs(3500);
        assert_eq!(refresh_in(&p, late), Duration::from_secs(1));
    }

    #[test]
    fn automount_is_on_unless_the_pod_says_false() {
        let mut pod = Pod::default();
        assert!(automount(&pod));
        pod.spec = Some(PodSpec {
            automount_service_account_token: Some(false),
            ..Default::default()
        });
        assert!(!automount(&pod));
        assert_eq!(account_name(&pod), "default");
        pod.spec = Some(PodSpec {
            service_account_name: Some("builder".into()),
            ..Default::default()
        });
        assert_eq!(account_name(&pod), "builder");
    }

    #[test]
    fn files_are_replaced_whole_with_their_mode() {
        let dir = std::env::temp_dir().join(format!("weft-t-sa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_files(&dir, &projection("first"), None, 0o644).unwrap();
        let inode = |n: &str| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir.join(n)).unwrap().ino()
        };
        let before = inode("token");
        write_files(&dir, &projection("second"), None, 0o600).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("token")).unwrap(),
            "second"
        );
        assert_ne!(inode("token"), before, "replaced by rename, not rewritten");
        assert_eq!(
            std::fs::read_to_string(dir.join("namespace")).unwrap(),
            "shop"
        );
        assert!(std::fs::read_to_string(dir.join("ca.crt"))
            .unwrap()
            .starts_with("-----BEGIN"));
        let mode = std::fs::metadata(dir.join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

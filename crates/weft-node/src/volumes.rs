//! Pod volumes as kubelet sets them up (`pkg/volume/{hostpath,configmap,
//! secret,downwardapi,projected,emptydir}`, `pkg/volume/util/atomic_writer.go`),
//! and the mounts of each container's `volumeMounts`.
//!
//! The runtime prepares every volume of a pod before its init starts, under
//! `<pod dir>/volumes/<name>/`; `configMap`, `secret`, `downwardAPI` and
//! `projected` volumes are re-projected while the pod runs, so their files
//! follow the objects. Each container then gets its own mount namespace,
//! made from the pod's by `pod-init run` ([`crate::podinit`]), with the
//! container's volumes bind-mounted (recursively) on their `mountPath`s:
//! [`container_mounts`] says which, written to `<pod dir>/<container>.mounts.json`
//! so exec probes and `weft exec` see what the container sees.
//!
//! # Host paths of the embedded nodes
//!
//! The embedded nodes share one machine, so a `hostPath` under a
//! node-specific prefix resolves to the node's own directory under the state
//! dir ([`map_host_path`], [`crate::NodeEnv::host_path`]); the agent's
//! DaemonSet manifests work unchanged:
//!
//! | hostPath            | on the machine                              |
//! |---------------------|---------------------------------------------|
//! | `/etc/cni/net.d`    | `<state>/nodes/<node>/cni` (the CNI config dir the runtime reads) |
//! | `/opt/cni/bin`      | `<state>/nodes/<node>/host/opt/cni/bin`      |
//! | `/var/lib/cni`      | `<state>/nodes/<node>/host/var/lib/cni`      |
//! | `/var/lib/weft`     | `<state>/nodes/<node>/host/var/lib/weft`     |
//! | `/run/weft`         | `<state>/nodes/<node>/host/run/weft`         |
//!
//! `/var/run/…` is read as `/run/…`. `/run/netns` (where the pods' network
//! namespaces live) and every other path are the machine's real ones. A
//! hostPath that holds one of the prefixes (`/`, `/etc`, `/etc/cni`, `/run`,
//! `/var/lib` …) is refused: it would show the machine's real CNI files.
//!
//! # Where this differs from kubelet
//!
//! Containers have no image root filesystem: the mount points of
//! `mountPath`s are empty directories (or files) made on the machine's
//! filesystem when missing, as the ServiceAccount mount point is. Kubelet
//! runs containers as root by default, this runtime as nobody, so projected
//! files belong to the pod's one non-root uid when all its containers share
//! it (as the ServiceAccount files do) and to `fsGroup` when set.
//! `emptyDir.medium: Memory` is a directory like the others (no tmpfs,
//! no `sizeLimit`); `mountPropagation` is not honoured (every mount is
//! private); `downwardAPI` volumes take the `metadata.*` fields upstream
//! allows, not `resourceFieldRef` (there is no resource accounting).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use serde::{Deserialize, Serialize};

/// Directory of a pod's volumes in its pod directory.
pub const VOLUMES_DIR: &str = "volumes";
/// The symlink of an atomic-writer directory that points at the current files.
pub const DATA_LINK: &str = "..data";
/// Mode of projected files when neither the item nor the volume says (the
/// API's default `defaultMode` of configMap, secret, downwardAPI and
/// projected volumes).
pub const DEFAULT_MODE: u32 = 0o644;

/// hostPath prefixes that belong to one node, and where they live under
/// the node's directory.
pub const NODE_HOST_PATHS: [(&str, &str); 5] = [
    ("/etc/cni/net.d", "cni"),
    ("/opt/cni/bin", "host/opt/cni/bin"),
    ("/var/lib/cni", "host/var/lib/cni"),
    ("/var/lib/weft", "host/var/lib/weft"),
    ("/run/weft", "host/run/weft"),
];

/// The lexical form of an absolute hostPath: no `.`, no repeated or
/// trailing `/`, `/var/run` read as `/run`. `Err` for a relative path or one
/// with `..` (the API refuses backsteps in hostPath).
pub fn normalize_host_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("hostPath {path:?} is not an absolute path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                return Err(format!("hostPath {path:?} must not contain '..'"));
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.len() >= 2 && parts[0] == "var" && parts[1] == "run" {
        parts.remove(0);
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Where `path` (a pod's hostPath) is on the machine for the node whose
/// directory is `node_dir`: see the table of the module doc.
pub fn map_host_path(node_dir: &Path, path: &str) -> Result<PathBuf, String> {
    let norm = normalize_host_path(path)?;
    for (prefix, rel) in NODE_HOST_PATHS {
        if norm == prefix {
            return Ok(node_dir.join(rel));
        }
        if let Some(rest) = norm.strip_prefix(&format!("{prefix}/")) {
            return Ok(node_dir.join(rel).join(rest));
        }
    }
    let holds = |prefix: &str| norm == "/" || prefix.starts_with(&format!("{norm}/"));
    if let Some((prefix, _)) = NODE_HOST_PATHS.iter().find(|(p, _)| holds(p)) {
        return Err(format!(
            "hostPath {path:?} holds {prefix}, which is node-specific in the embedded cluster \
             (its nodes share one machine); mount {prefix} itself"
        ));
    }
    Ok(PathBuf::from(norm))
}

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a projected volume: relative path → content and mode.
pub type Payload = BTreeMap<String, FileProjection>;

/// What a `hostPath` volume's `type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check; a missing path is made a directory, as container
    /// runtimes do for a missing bind-mount source.
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub fn parse(s: &str) -> Result<HostPathType, String> {
        Ok(match s {
            "" => HostPathType::Unset,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            other => return Err(format!("{other} is an invalid volume type")),
        })
    }
}

/// What one volume of a pod becomes on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    /// A path of the machine (hostPath, mapped), checked as its type says.
    Host { path: PathBuf, kind: HostPathType },
    /// An empty directory of the pod (emptyDir).
    Empty,
    /// Files kept by the atomic writer (configMap, secret, downwardAPI,
    /// projected); always mounted read-only.
    Files(Payload),
}

/// The ConfigMaps and Secrets a pod's volumes project, fetched beforehand
/// (`None`: the object does not exist).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
}

/// The names of the ConfigMaps and Secrets a pod's volumes project.
pub fn volume_refs(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(s) = &src.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Whether the pod has volumes whose files follow the API (configMap,
/// secret, downwardAPI, projected).
pub fn has_projections(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

/// kubelet's FailedMount message of a volume.
pub fn mount_failed(volume: &str, why: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {why}")
}

fn check_mode(volume: &str, what: &str, mode: i32) -> Result<u32, String> {
    u32::try_from(mode)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            mount_failed(
                volume,
                &format!("{what} {mode} is not a file mode between 0 and 0777"),
            )
        })
}

/// Files of `data` as `items` pick them (all keys when `items` is empty),
/// kubelet's `MakePayload` of configMap and secret volumes. `kind` is
/// "configmap" or "secret" for the messages.
fn project_keys(
    volume: &str,
    kind: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    if items.is_empty() {
        for (k, v) in data {
            out.insert(
                k.clone(),
                FileProjection {
                    data: v.clone(),
                    mode: default_mode,
                },
            );
        }
        return Ok(out);
    }
    for (i, item) in items.iter().enumerate() {
        let Some(v) = data.get(&item.key) else {
            if optional {
                continue;
            }
            let what = if kind == "secret" { "secret" } else { "config" };
            return Err(mount_failed(
                volume,
                &format!("{kind} references non-existent {what} key: {}", item.key),
            ));
        };
        let mode = match item.mode {
            Some(m) => check_mode(volume, &format!("items[{i}].mode"), m)?,
            None => default_mode,
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: v.clone(),
                mode,
            },
        );
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// A configMap volume's files (kubelet's configmap volume plugin).
pub fn project_config_map(
    volume: &str,
    name: &str,
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
    cm: Option<&ConfigMap>,
) -> Result<Payload, String> {
    match cm {
        Some(cm) => project_keys(
            volume,
            "configmap",
            &config_map_data(cm),
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(Payload::new()),
        None => Err(mount_failed(
            volume,
            &format!("configmap \"{name}\" not found"),
        )),
    }
}

/// A secret volume's files (kubelet's secret volume plugin).
pub fn project_secret(
    volume: &str,
    name: &str,
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
    secret: Option<&Secret>,
) -> Result<Payload, String> {
    match secret {
        Some(s) => project_keys(
            volume,
            "secret",
            &secret_data(s),
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(Payload::new()),
        None => Err(mount_failed(
            volume,
            &format!("secret \"{name}\" not found"),
        )),
    }
}

/// A label or annotation map as the downward API writes it: `key="value"`
/// lines in key order, values quoted, no final newline.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

fn downward_value(pod: &Pod, volume: &str, f: &DownwardAPIVolumeFile) -> Result<String, String> {
    let Some(r) = &f.field_ref else {
        return Err(mount_failed(
            volume,
            &format!(
                "item {:?}: only fieldRef is supported by the embedded cluster (no resource accounting for resourceFieldRef)",
                f.path
            ),
        ));
    };
    let meta = &pod.metadata;
    let key = |p: &str, prefix: &str| {
        p.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    let path = r.field_path.as_str();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref().unwrap_or(&BTreeMap::new())),
        "metadata.annotations" => format_map(meta.annotations.as_ref().unwrap_or(&BTreeMap::new())),
        p => {
            if let Some(k) = key(p, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = key(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(mount_failed(
                    volume,
                    &format!(
                        "item {:?}: fieldRef {p:?} is not a downward API volume field",
                        f.path
                    ),
                ));
            }
        }
    };
    Ok(value)
}

fn project_downward(
    pod: &Pod,
    volume: &str,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for (i, f) in items.iter().enumerate() {
        let mode = match f.mode {
            Some(m) => check_mode(volume, &format!("items[{i}].mode"), m)?,
            None => default_mode,
        };
        out.insert(
            f.path.clone(),
            FileProjection {
                data: downward_value(pod, volume, f)?.into_bytes(),
                mode,
            },
        );
    }
    Ok(out)
}

fn default_mode(volume: &str, mode: Option<i32>) -> Result<u32, String> {
    match mode {
        Some(m) => check_mode(volume, "defaultMode", m),
        None => Ok(DEFAULT_MODE),
    }
}

/// What `volume` of `pod` becomes on the node; `host_path` maps hostPaths
/// ([`map_host_path`]). `Err` is kubelet's FailedMount message.
pub fn plan_volume(
    pod: &Pod,
    volume: &Volume,
    host_path: &dyn Fn(&str) -> Result<PathBuf, String>,
    objects: &Objects,
) -> Result<VolumePlan, String> {
    let name = volume.name.as_str();
    if let Some(h) = &volume.host_path {
        let kind = HostPathType::parse(h.type_.as_deref().unwrap_or_default())
            .map_err(|e| mount_failed(name, &e))?;
        let path = host_path(&h.path).map_err(|e| mount_failed(name, &e))?;
        return Ok(VolumePlan::Host { path, kind });
    }
    if volume.empty_dir.is_some() {
        return Ok(VolumePlan::Empty);
    }
    if let Some(c) = &volume.config_map {
        let cm = objects.config_maps.get(&c.name).and_then(Option::as_ref);
        return project_config_map(
            name,
            &c.name,
            c.items.as_deref().unwrap_or_default(),
            default_mode(name, c.default_mode)?,
            c.optional.unwrap_or(false),
            cm,
        )
        .map(VolumePlan::Files);
    }
    if let Some(s) = &volume.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let secret = objects.secrets.get(&secret_name).and_then(Option::as_ref);
        return project_secret(
            name,
            &secret_name,
            s.items.as_deref().unwrap_or_default(),
            default_mode(name, s.default_mode)?,
            s.optional.unwrap_or(false),
            secret,
        )
        .map(VolumePlan::Files);
    }
    if let Some(d) = &volume.downward_api {
        return project_downward(
            pod,
            name,
            d.items.as_deref().unwrap_or_default(),
            default_mode(name, d.default_mode)?,
        )
        .map(VolumePlan::Files);
    }
    if let Some(p) = &volume.projected {
        let mode = default_mode(name, p.default_mode)?;
        let mut out = Payload::new();
        for (i, src) in p.sources.iter().flatten().enumerate() {
            let part = if let Some(c) = &src.config_map {
                let cm = objects.config_maps.get(&c.name).and_then(Option::as_ref);
                project_config_map(
                    name,
                    &c.name,
                    c.items.as_deref().unwrap_or_default(),
                    mode,
                    c.optional.unwrap_or(false),
                    cm,
                )?
            } else if let Some(s) = &src.secret {
                let secret = objects.secrets.get(&s.name).and_then(Option::as_ref);
                project_secret(
                    name,
                    &s.name,
                    s.items.as_deref().unwrap_or_default(),
                    mode,
                    s.optional.unwrap_or(false),
                    secret,
                )?
            } else if let Some(d) = &src.downward_api {
                project_downward(pod, name, d.items.as_deref().unwrap_or_default(), mode)?
            } else {
                return Err(mount_failed(
                    name,
                    &format!(
                        "projected source {i}: only configMap, secret and downwardAPI sources are \
                         supported by the embedded cluster"
                    ),
                ));
            };
            out.extend(part);
        }
        return Ok(VolumePlan::Files(out));
    }
    Err(mount_failed(
        name,
        "the embedded cluster supports hostPath, emptyDir, configMap, secret, downwardAPI and \
         projected volumes only",
    ))
}

/// Checks (and makes, for the *OrCreate types) a hostPath as kubelet's
/// `checkType` does; the messages are kubelet's.
pub fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let is = |f: fn(&std::fs::FileType) -> bool| ft.as_ref().is_some_and(f);
    match kind {
        HostPathType::Unset | HostPathType::DirectoryOrCreate if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(|e| format!("mkdir {shown}: {e}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {shown}: {e}"))
        }
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate | HostPathType::Directory => {
            if is(std::fs::FileType::is_dir) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        HostPathType::FileOrCreate if meta.is_none() => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o644)))
            .map_err(|e| format!("open {shown}: {e}")),
        HostPathType::FileOrCreate | HostPathType::File => {
            if is(std::fs::FileType::is_file) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        HostPathType::Socket => {
            if is(FileTypeExt::is_socket) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a socket file"
                ))
            }
        }
        HostPathType::CharDevice => {
            if is(FileTypeExt::is_char_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a character device"
                ))
            }
        }
        HostPathType::BlockDevice => {
            if is(FileTypeExt::is_block_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a block device"
                ))
            }
        }
    }
}

/// Whether `path` may be a file of a projected volume (the atomic writer's
/// rules): relative, no `..` element, not starting with `..`.
pub fn valid_payload_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a projected path must not be empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("projected path {path:?} must be relative"));
    }
    if path.starts_with("..") {
        return Err(format!("projected path {path:?} must not start with '..'"));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(format!("projected path {path:?} must not contain '..'"));
    }
    Ok(())
}

/// The first path elements of a payload: what gets a `name -> ..data/name`
/// link in the volume's directory.
pub fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| p.split('/').find(|s| !s.is_empty() && *s != "."))
        .map(str::to_string)
        .collect()
}

/// Reads the files under `dir` as a payload (to compare with the next one).
fn read_payload(dir: &Path) -> Payload {
    fn walk(base: &Path, dir: &Path, out: &mut Payload) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(base, &p, out);
            } else if let (Ok(rel), Ok(data)) = (p.strip_prefix(base), std::fs::read(&p)) {
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    FileProjection {
                        data,
                        mode: meta.mode() & 0o7777,
                    },
                );
            }
        }
    }
    let mut out = Payload::new();
    walk(dir, dir, &mut out);
    out
}

/// Who projected files belong to (`None`: unchanged, root's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

fn timestamped_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S").to_string();
    for n in 0u32.. {
        let p = dir.join(format!(
            "..{stamp}.{}{n:03}",
            now.timestamp().subsec_nanosecond()
        ));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free timestamped directory name"))
}

/// kubelet's atomic writer: writes `payload` into `dir` so that a reader
/// always sees one whole version. The files go into a new `..<timestamp>`
/// directory, the `..data` symlink is swapped to it by rename, each
/// top-level name is a symlink through `..data`, names no longer in the
/// payload are removed, then the old version. Returns whether anything
/// changed (an equal payload leaves everything as it is).
pub fn write_payload(dir: &Path, payload: &Payload, owner: Owner) -> Result<bool, String> {
    let ctx = |what: &str, p: &Path| {
        let what = what.to_string();
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{what} {p}: {e}")
    };
    for p in payload.keys() {
        valid_payload_path(p)?;
    }
    std::fs::create_dir_all(dir).map_err(ctx("create", dir))?;
    let link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&link).ok().map(|t| dir.join(t));
    let old_payload = old.as_deref().map(read_payload);
    if old_payload.as_ref() == Some(payload) {
        return Ok(false);
    }
    let new = timestamped_dir(dir).map_err(ctx("create a directory in", dir))?;
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))
        .map_err(ctx("chmod", &new))?;
    for (rel, f) in payload {
        let file = new.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(ctx("create", parent))?;
        }
        std::fs::write(&file, &f.data).map_err(ctx("write", &file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(f.mode))
            .map_err(ctx("chmod", &file))?;
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::chown(&file, owner.uid, owner.gid).map_err(ctx("chown", &file))?;
        }
    }
    let name = new
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} has no file name", new.display()))?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).map_err(ctx("symlink", &tmp))?;
    std::fs::rename(&tmp, &link).map_err(ctx("rename to", &link))?;
    let wanted = top_level(payload);
    for top in &wanted {
        let user = dir.join(top);
        if std::fs::symlink_metadata(&user).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(top), &user)
                .map_err(ctx("symlink", &user))?;
        }
    }
    if let Some(old_payload) = &old_payload {
        for gone in top_level(old_payload).difference(&wanted) {
            let user = dir.join(gone);
            if std::fs::symlink_metadata(&user).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&user).map_err(ctx("remove", &user))?;
            }
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).map_err(ctx("remove", &old))?;
    }
    Ok(true)
}

/// One bind mount of a container: `source` (with `sub_path` inside it)
/// on `target`, as `pod-init run` makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountSpec {
    pub source: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// The directory of volume `name` in a pod directory.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join(VOLUMES_DIR).join(name)
}

/// Where a container's mounts are recorded in its pod directory.
pub fn mounts_file(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.mounts.json"))
}

/// The mounts of `container` from its `volumeMounts` (`subPathExpr`
/// expanded against `env`), parents before children. `sources` is where
/// each volume is on the machine, `read_only` the volumes always mounted
/// read-only. `Err` names the mount that cannot be made.
pub fn container_mounts(
    container: &Container,
    sources: &BTreeMap<String, (PathBuf, bool)>,
    env: &[(String, String)],
) -> Result<Vec<MountSpec>, String> {
    let mut out = Vec::new();
    for (i, m) in container.volume_mounts.iter().flatten().enumerate() {
        let Some((source, always_ro)) = sources.get(&m.name) else {
            return Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, container.name
            ));
        };
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "container {:?} volumeMounts[{i}].mountPath {:?} is not an absolute path",
                container.name, m.mount_path
            ));
        }
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(crate::plan::expand(e, env)),
            _ => None,
        };
        if let Some(s) = &sub {
            if s.starts_with('/') || s.split('/').any(|p| p == "..") {
                return Err(format!(
                    "container {:?} volumeMounts[{i}].subPath {s:?} must be a relative path \
                     without '..'",
                    container.name
                ));
            }
        }
        out.push(MountSpec {
            source: source.clone(),
            sub_path: sub,
            target: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || *always_ro,
        });
    }
    // Parents first: /a before /a/b (a stable sort keeps the spec's order otherwise).
    out.sort_by_key(|m| Path::new(&m.target).components().count());
    Ok(out)
}

/// Who a pod's projected files belong to: the one non-root uid all its
/// containers run as (see the module doc), the group `fsGroup`.
pub fn projection_owner(pod: &Pod) -> Owner {
    Owner {
        uid: crate::security::token_file_owner(pod).0,
        gid: pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|c| c.fs_group)
            .and_then(|g| u32::try_from(g).ok()),
    }
}

/// Sets up every volume of `pod` under `pod_dir`: hostPaths checked (or
/// made, as their type says), emptyDirs made (mode 0777, as kubelet's),
/// files projected by the atomic writer. Returns, per volume, where it is
/// on the machine and whether it is always mounted read-only; `Err` is the
/// first volume's FailedMount message. Called again while the pod runs, it
/// only rewrites projections that changed.
pub fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    host_path: &dyn Fn(&str) -> Result<PathBuf, String>,
    objects: &Objects,
) -> Result<BTreeMap<String, (PathBuf, bool)>, String> {
    let owner = projection_owner(pod);
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let name = v.name.as_str();
        let entry = match plan_volume(pod, v, host_path, objects)? {
            VolumePlan::Host { path, kind } => {
                check_host_path(&path, kind).map_err(|e| mount_failed(name, &e))?;
                (path, false)
            }
            VolumePlan::Empty => {
                let dir = volume_dir(pod_dir, name);
                std::fs::create_dir_all(&dir)
                    .and_then(|()| {
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    })
                    .map_err(|e| mount_failed(name, &format!("mkdir {}: {e}", dir.display())))?;
                (dir, false)
            }
            VolumePlan::Files(payload) => {
                let dir = volume_dir(pod_dir, name);
                write_payload(&dir, &payload, owner).map_err(|e| mount_failed(name, &e))?;
                (dir, true)
            }
        };
        out.insert(v.name.clone(), entry);
    }
    Ok(out)
}

/// Records a container's mounts for `pod-init run` (no file: no mounts).
pub fn write_mounts(pod_dir: &Path, container: &str, mounts: &[MountSpec]) -> Result<(), String> {
    let path = mounts_file(pod_dir, container);
    if mounts.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("remove {}: {e}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec_pretty(mounts)
        .map_err(|e| format!("encode the mounts of container {container:?}: {e}"))?;
    crate::sandbox::write_atomic(&path, &text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The recorded mounts of a container (none when it has no file).
pub fn read_mounts(pod_dir: &Path, container: &str) -> Result<Vec<MountSpec>, String> {
    let path = mounts_file(pod_dir, container);
    match std::fs::read(&path) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| {
            format!(
                "read the mounts of container {container:?} in {}: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, ObjectFieldSelector, PodSpec, SecretVolumeSource, VolumeMount,
    };
    use k8s_openapi::ByteString;

    fn node_dir() -> PathBuf {
        PathBuf::from("/s/nodes/node-2")
    }

    #[test]
    fn node_specific_host_paths_resolve_under_the_node_dir() {
        let m = |p: &str| map_host_path(&node_dir(), p);
        assert_eq!(m("/etc/cni/net.d").unwrap(), node_dir().join("cni"));
        assert_eq!(
            m("/etc/cni/net.d/10-weft.conflist").unwrap(),
            node_dir().join("cni/10-weft.conflist")
        );
        assert_eq!(
            m("/opt/cni/bin/").unwrap(),
            node_dir().join("host/opt/cni/bin")
        );
        assert_eq!(
            m("/var/run/weft/agent.sock").unwrap(),
            node_dir().join("host/run/weft/agent.sock")
        );
        assert_eq!(
            m("/var/lib//weft/./state").unwrap(),
            node_dir().join("host/var/lib/weft/state")
        );
    }

    #[test]
    fn netns_and_other_host_paths_stay_the_machines() {
        let m = |p: &str| map_host_path(&node_dir(), p);
        assert_eq!(m("/run/netns").unwrap(), PathBuf::from("/run/netns"));
        assert_eq!(m("/var/run/netns").unwrap(), PathBuf::from("/run/netns"));
        assert_eq!(m("/lib/modules").unwrap(), PathBuf::from("/lib/modules"));
        assert_eq!(
            m("/etc/cni/net.dx").unwrap(),
            PathBuf::from("/etc/cni/net.dx")
        );
        assert_eq!(
            m("/run/xtables.lock").unwrap(),
            PathBuf::from("/run/xtables.lock")
        );
    }

    #[test]
    fn a_host_path_holding_a_node_prefix_or_going_back_is_refused() {
        let m = |p: &str| map_host_path(&node_dir(), p);
        for p in [
            "/", "/etc", "/etc/cni", "/var/lib", "/run", "/var/run", "/opt",
        ] {
            let err = m(p).unwrap_err();
            assert!(err.contains("node-specific"), "{p}: {err}");
        }
        assert!(m("/etc/cni/net.d/../x").unwrap_err().contains(".."));
        assert!(m("etc/cni").unwrap_err().contains("absolute"));
    }

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn a_config_map_projects_every_key_with_the_default_mode() {
        let c = cm(&[("a.conf", "x=1"), ("b", "2")]);
        let p = project_config_map("cfg", "c", &[], 0o644, false, Some(&c)).unwrap();
        assert_eq!(
            p,
            [
                ("a.conf".to_string(), file("x=1", 0o644)),
                ("b".to_string(), file("2", 0o644))
            ]
            .into()
        );
    }

    #[test]
    fn items_pick_keys_onto_paths_with_their_own_modes() {
        let c = cm(&[("a", "1"), ("b", "2")]);
        let items = [item("a", "dir/a.txt", Some(0o600)), item("b", "b", None)];
        let p = project_config_map("cfg", "c", &items, 0o640, false, Some(&c)).unwrap();
        assert_eq!(
            p,
            [
                ("b".to_string(), file("2", 0o640)),
                ("dir/a.txt".to_string(), file("1", 0o600))
            ]
            .into()
        );
        assert_eq!(top_level(&p), ["b".to_string(), "dir".to_string()].into());
    }

    #[test]
    fn a_missing_key_or_object_is_kubelets_failed_mount_unless_optional() {
        let c = cm(&[("a", "1")]);
        let err = project_config_map(
            "cfg",
            "c",
            &[item("zz", "zz", None)],
            0o644,
            false,
            Some(&c),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: zz"
        );
        let p = project_config_map("cfg", "c", &[item("zz", "zz", None)], 0o644, true, Some(&c))
            .unwrap();
        assert!(p.is_empty());
        let err = project_config_map("cfg", "c", &[], 0o644, false, None).unwrap_err();
        assert!(err.ends_with(": configmap \"c\" not found"), "{err}");
        assert!(project_config_map("cfg", "c", &[], 0o644, true, None)
            .unwrap()
            .is_empty());
        let err = project_secret("tls", "s", &[], 0o644, false, None).unwrap_err();
        assert!(err.ends_with(": secret \"s\" not found"), "{err}");
    }

    #[test]
    fn secret_volumes_default_to_0644_and_take_default_mode() {
        let s = Secret {
            data: Some([("tls.key".to_string(), ByteString(b"K".to_vec()))].into()),
            ..Default::default()
        };
        let objects = Objects {
            secrets: [("s".to_string(), Some(s))].into(),
            ..Default::default()
        };
        let vol = |mode: Option<i32>| Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("s".into()),
                default_mode: mode,
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod::default();
        let nomap = |p: &str| Ok(PathBuf::from(p));
        let plan = plan_volume(&pod, &vol(None), &nomap, &objects).unwrap();
        assert_eq!(
            plan,
            VolumePlan::Files([("tls.key".to_string(), file("K", 0o644))].into())
        );
        let plan = plan_volume(&pod, &vol(Some(0o400)), &nomap, &objects).unwrap();
        assert_eq!(
            plan,
            VolumePlan::Files([("tls.key".to_string(), file("K", 0o400))].into())
        );
        let err = plan_volume(&pod, &vol(Some(0o1777)), &nomap, &objects).unwrap_err();
        assert!(err.contains("defaultMode"), "{err}");
    }

    #[test]
    fn downward_api_files_hold_fields_and_quoted_label_lines() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-0".into());
        pod.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "a \"b\"".to_string()),
            ]
            .into(),
        );
        let f = |path: &str, field: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = project_downward(
            &pod,
            "info",
            &[
                f("name", "metadata.name"),
                f("labels", "metadata.labels"),
                f("app", "metadata.labels['app']"),
            ],
            0o644,
        )
        .unwrap();
        assert_eq!(p["name"].data, b"web-0");
        assert_eq!(
            String::from_utf8_lossy(&p["labels"].data),
            "app=\"web\"\ntier=\"a \\\"b\\\"\""
        );
        assert_eq!(p["app"].data, b"web");
        let err = project_downward(&pod, "info", &[f("ip", "status.podIP")], 0o644).unwrap_err();
        assert!(err.contains("status.podIP"), "{err}");
    }

    #[test]
    fn host_path_types_parse_and_unknown_ones_are_kubelets_error() {
        assert_eq!(HostPathType::parse("").unwrap(), HostPathType::Unset);
        assert_eq!(
            HostPathType::parse("FileOrCreate").unwrap(),
            HostPathType::FileOrCreate
        );
        assert_eq!(
            HostPathType::parse("Dir").unwrap_err(),
            "Dir is an invalid volume type"
        );
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-t-vol-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn host_path_checks_make_what_or_create_asks_and_name_the_path() {
        let d = temp("check");
        let dir = d.join("a/b");
        check_host_path(&dir, HostPathType::DirectoryOrCreate).unwrap();
        assert!(dir.is_dir());
        let f = d.join("a/f");
        check_host_path(&f, HostPathType::FileOrCreate).unwrap();
        assert!(f.is_file());
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let err = check_host_path(&f, HostPathType::Directory).unwrap_err();
        assert_eq!(
            err,
            format!(
                "hostPath type check failed: {} is not a directory",
                f.display()
            )
        );
        let err = check_host_path(&dir, HostPathType::File).unwrap_err();
        assert!(err.ends_with("is not a file"), "{err}");
        let err = check_host_path(&d.join("nope"), HostPathType::Socket).unwrap_err();
        assert!(err.ends_with("is not a socket file"), "{err}");
        // FileOrCreate does not make the parent.
        assert!(check_host_path(&d.join("x/y"), HostPathType::FileOrCreate).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_atomic_writer_swaps_data_and_removes_what_is_gone() {
        let d = temp("atomic");
        let first: Payload = [
            ("a".to_string(), file("1", 0o644)),
            ("old".to_string(), file("x", 0o600)),
            ("sub/c".to_string(), file("3", 0o644)),
        ]
        .into();
        assert!(write_payload(&d, &first, Owner::default()).unwrap());
        let data1 = std::fs::read_link(d.join(DATA_LINK)).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("sub/c")).unwrap(), "3");
        assert_eq!(
            std::fs::read_link(d.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            std::fs::metadata(d.join("old")).unwrap().mode() & 0o777,
            0o600
        );
        // The same payload again changes nothing.
        assert!(!write_payload(&d, &first, Owner::default()).unwrap());
        assert_eq!(std::fs::read_link(d.join(DATA_LINK)).unwrap(), data1);

        let second: Payload = [
            ("a".to_string(), file("2", 0o644)),
            ("new".to_string(), file("n", 0o644)),
        ]
        .into();
        assert!(write_payload(&d, &second, Owner::default()).unwrap());
        let data2 = std::fs::read_link(d.join(DATA_LINK)).unwrap();
        assert_ne!(data2, data1);
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(d.join("new")).unwrap(), "n");
        assert!(std::fs::symlink_metadata(d.join("old")).is_err());
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&data1).exists(), "the old version is removed");
        let names: BTreeSet<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "..data".to_string(),
                data2.display().to_string(),
                "a".to_string(),
                "new".to_string()
            ]
            .into()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn payload_paths_must_stay_inside_the_volume() {
        assert!(valid_payload_path("a/b").is_ok());
        assert!(valid_payload_path("/etc/x").is_err());
        assert!(valid_payload_path("..data").is_err());
        assert!(valid_payload_path("a/../../x").is_err());
        assert!(valid_payload_path("").is_err());
    }

    #[test]
    fn container_mounts_follow_volume_mounts_parents_first() {
        let c = Container {
            name: "app".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "cfg".into(),
                    mount_path: "/etc/app/conf.d".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/etc/app".into(),
                    read_only: Some(true),
                    sub_path_expr: Some("$(POD)".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let sources: BTreeMap<String, (PathBuf, bool)> = [
            ("cfg".to_string(), (PathBuf::from("/p/volumes/cfg"), true)),
            ("data".to_string(), (PathBuf::from("/data"), false)),
        ]
        .into();
        let env = vec![("POD".to_string(), "web-0".to_string())];
        let m = container_mounts(&c, &sources, &env).unwrap();
        assert_eq!(
            m,
            [
                MountSpec {
                    source: "/data".into(),
                    sub_path: Some("web-0".into()),
                    target: "/etc/app".into(),
                    read_only: true,
                },
                MountSpec {
                    source: "/p/volumes/cfg".into(),
                    sub_path: None,
                    target: "/etc/app/conf.d".into(),
                    read_only: true,
                },
            ]
        );
        let mut bad = c.clone();
        bad.volume_mounts = Some(vec![VolumeMount {
            name: "nope".into(),
            mount_path: "/x".into(),
            ..Default::default()
        }]);
        assert_eq!(
            container_mounts(&bad, &sources, &env).unwrap_err(),
            "cannot find volume \"nope\" to mount into container \"app\""
        );
    }

    #[test]
    fn volume_refs_name_every_projected_object() {
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "a".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "cm1".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "b".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some("s1".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (cms, secrets) = volume_refs(&pod);
        assert_eq!(cms, ["cm1".to_string()].into());
        assert_eq!(secrets, ["s1".to_string()].into());
    }
}

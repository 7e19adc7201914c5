//! The cluster's state file (`<state>/cluster.json`): what `weft up` created
//! the cluster with, and the API port its control plane listens on. One
//! typed file instead of loose ones, written atomically (a temporary file
//! renamed over it), so a reader never sees half of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Layout, LayoutError, Placement};

/// What a cluster is, as recorded by `weft up` and its control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Number of nodes (node-1 … node-N).
    pub nodes: usize,
    /// Number of fabric subnets the nodes are spread over.
    #[serde(default = "one")]
    pub subnets: usize,
    /// The cross-node datapath backend (`vxlan`, `host-gw`, `auto`).
    pub backend: String,
    /// Port of the API on 127.0.0.1 in the machine's namespace, once the
    /// control plane listens; `None` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
}

fn one() -> usize {
    1
}

impl ClusterState {
    /// The node placement this state describes (checked).
    pub fn placement(&self) -> Result<Placement, LayoutError> {
        Placement::new(self.nodes, self.subnets)
    }

    /// The API URL on 127.0.0.1, once the control plane wrote its port.
    pub fn local_api_url(&self) -> Option<String> {
        self.api_port.map(|p| format!("https://127.0.0.1:{p}"))
    }
}

/// Reading or writing the state file failed; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("read cluster state {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster state {path} is corrupt ({source}); `weft down` removes it")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write cluster state {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Layout {
    /// The cluster's state; `None` when there is no state file (no cluster).
    pub fn read_state(&self) -> Result<Option<ClusterState>, StateError> {
        read(&self.state_file())
    }

    /// Replaces the state file atomically.
    pub fn write_state(&self, state: &ClusterState) -> Result<(), StateError> {
        write(&self.state_file(), state)
    }
}

fn read(path: &Path) -> Result<Option<ClusterState>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

fn write(path: &Path, state: &ClusterState) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| err(e.into()))?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&text).map_err(err)?;
    file.sync_all().map_err(err)?;
    // rename(2) replaces the old file in one step: readers see old or new.
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout::new("t", Some(dir.to_path_buf())).unwrap()
    }

    fn state() -> ClusterState {
        ClusterState {
            nodes: 3,
            subnets: 2,
            backend: "auto".into(),
            api_port: Some(40123),
        }
    }

    #[test]
    fn state_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        l.write_state(&state()).unwrap();
        assert_eq!(l.read_state().unwrap(), Some(state()));
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["cluster.json"]);
        assert_eq!(
            state().local_api_url().as_deref(),
            Some("https://127.0.0.1:40123")
        );
    }

    #[test]
    fn missing_state_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(layout(dir.path()).read_state().unwrap(), None);
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        std::fs::write(l.state_file(), "{\"nodes\": 3,").unwrap();
        let e = l.read_state().unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("cluster.json"), "{e}");
    }

    #[test]
    fn subnets_default_to_one_and_placement_is_checked() {
        let s: ClusterState = serde_json::from_str(r#"{"nodes":2,"backend":"vxlan"}"#).unwrap();
        assert_eq!(s.subnets, 1);
        assert_eq!(s.api_port, None);
        assert_eq!(s.placement().unwrap(), Placement::single(2).unwrap());
        let bad = ClusterState { subnets: 3, ..s };
        assert!(bad.placement().is_err());
    }
}

//! Fuzzes the CNI_* environment: the input is `KEY=VALUE` lines (as
//! `/proc/<pid>/environ` with newlines). Nothing may panic, and an accepted
//! ADD/DEL/CHECK must carry a container ID and ifname the spec allows.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use weft_cni::invocation::{self, Command};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: BTreeMap<String, String> = text
        .split(['\n', '\0'])
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = invocation::parse_args(vars.get("CNI_ARGS").map_or("", String::as_str));
    let Ok(inv) = invocation::from_env(|k| vars.get(k).cloned()) else {
        return;
    };
    if matches!(inv.command, Command::Add | Command::Del | Command::Check) {
        invocation::validate_container_id(&inv.container_id).expect("accepted ID is valid");
        invocation::validate_ifname(&inv.ifname).expect("accepted ifname is valid");
        assert!(inv.ifname.len() <= 15 && !inv.ifname.is_empty());
        assert!(weft_cni::net::host_veth_name(&inv.container_id, &inv.ifname).len() <= 15);
        assert!(
            weft_cni::nat::tag(&weft_cni::config::Attachment {
                container_id: inv.container_id.clone(),
                ifname: inv.ifname.clone(),
            })
            .len()
                <= weft_cni::nat::COMMENT_MAX
        );
    }
});

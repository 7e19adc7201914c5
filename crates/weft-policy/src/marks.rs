//! Which policy allowed a connection, as the kernel remembers it: every
//! accept rule of a policy chain also sets that policy's id in the
//! connection mark (`ct mark`), the egress policy in the low 16 bits, the
//! ingress policy in the high 16 — a connection between two pods of one
//! node passes both. Conntrack reports a new connection with its mark, so
//! the agent's flow log names the allowing policies from the kernel's own
//! record, not from a re-evaluation of the model (which can disagree with
//! what the datapath did — the reason Cilium dropped `policy trace`).
//!
//! Ids belong to one agent: [`Marks::update`] keeps a policy's id for as long
//! as the policy exists, so an edit of one policy rewrites none of the
//! others' rules; new policies take the lowest free id. 0 means "no policy"
//! (the half of a connection no isolating policy judged). At most 65,535
//! policies have an id at once; the rest are enforced the same but their
//! allowed flows are not attributed (their rules set no mark).

use std::collections::BTreeMap;

/// The bits of the connection mark weft-policy owns, egress half.
pub const EGRESS_BITS: u32 = 0x0000_ffff;
/// The ingress half.
pub const INGRESS_BITS: u32 = 0xffff_0000;

/// Policy (`namespace/name`) ↔ connection-mark id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    by_key: BTreeMap<String, u16>,
    by_id: BTreeMap<u16, String>,
}

impl Marks {
    /// Makes the ids those of `keys`: kept for policies that stay, freed for
    /// those gone, the lowest free ones for new ones.
    pub fn update<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        let wanted: std::collections::BTreeSet<&str> = keys.into_iter().collect();
        self.by_key.retain(|k, _| wanted.contains(k.as_str()));
        self.by_id.retain(|_, k| wanted.contains(k.as_str()));
        let mut next: u32 = 1;
        for key in wanted {
            if self.by_key.contains_key(key) {
                continue;
            }
            while next <= u32::from(u16::MAX) && self.by_id.contains_key(&(next as u16)) {
                next += 1;
            }
            if next > u32::from(u16::MAX) {
                break;
            }
            self.by_key.insert(key.to_string(), next as u16);
            self.by_id.insert(next as u16, key.to_string());
        }
    }

    /// [`Marks::update`] with the policies of `model`.
    pub fn update_for(&mut self, model: &crate::Model) {
        let keys: Vec<String> = model.policies.iter().map(|p| p.key()).collect();
        self.update(keys.iter().map(String::as_str));
    }

    /// The id of policy `key`.
    pub fn id(&self, key: &str) -> Option<u16> {
        self.by_key.get(key).copied()
    }

    /// The policy with id `id`.
    pub fn policy(&self, id: u16) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The (egress, ingress) policies a connection mark names.
    pub fn decode(&self, mark: u32) -> (Option<&str>, Option<&str>) {
        let egress = (mark & EGRESS_BITS) as u16;
        let ingress = ((mark & INGRESS_BITS) >> 16) as u16;
        (
            (egress != 0).then(|| self.policy(egress)).flatten(),
            (ingress != 0).then(|| self.policy(ingress)).flatten(),
        )
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The statement an accept rule of a policy with id `id` carries for
/// direction `ingress` (true) or egress: its half of the mark set, the other
/// half kept.
pub fn set_statement(id: u16, ingress: bool) -> String {
    if ingress {
        format!(
            "ct mark set ct mark and {EGRESS_BITS:#010x} or {:#010x}",
            u32::from(id) << 16
        )
    } else {
        format!(
            "ct mark set ct mark and {INGRESS_BITS:#010x} or {:#010x}",
            u32::from(id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_stay_while_policies_come_and_go() {
        let mut m = Marks::default();
        m.update(["a/x", "b/y", "c/z"]);
        assert_eq!(
            (m.id("a/x"), m.id("b/y"), m.id("c/z")),
            (Some(1), Some(2), Some(3))
        );
        // b/y goes, a/a comes: it takes the freed id; nobody else moves.
        m.update(["a/x", "c/z", "a/a"]);
        assert_eq!(
            (m.id("a/x"), m.id("a/a"), m.id("c/z")),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(m.id("b/y"), None);
        assert_eq!(m.policy(2), Some("a/a"));
    }

    #[test]
    fn a_mark_names_both_halves() {
        let mut m = Marks::default();
        m.update(["shop/allow-web", "shop/egress-db"]);
        let mark = (1u32 << 16) | 2;
        assert_eq!(
            m.decode(mark),
            (Some("shop/egress-db"), Some("shop/allow-web"))
        );
        assert_eq!(m.decode(0), (None, None));
        assert_eq!(m.decode(7), (None, None));
    }

    #[test]
    fn the_statements_keep_the_other_half() {
        assert_eq!(
            set_statement(5, false),
            "ct mark set ct mark and 0xffff0000 or 0x00000005"
        );
        assert_eq!(
            set_statement(5, true),
            "ct mark set ct mark and 0x0000ffff or 0x00050000"
        );
    }

    proptest! {
        /// Ids are unique, non-zero, and a policy that stays keeps its id.
        #[test]
        fn ids_are_unique_and_stable(first in proptest::collection::btree_set("[a-e]/[a-e]", 0..20),
                                     second in proptest::collection::btree_set("[a-e]/[a-e]", 0..20)) {
            let mut m = Marks::default();
            m.update(first.iter().map(String::as_str));
            let before: Vec<(String, Option<u16>)> = first.iter().map(|k| (k.clone(), m.id(k))).collect();
            m.update(second.iter().map(String::as_str));
            let mut seen = std::collections::BTreeSet::new();
            for k in &second {
                let id = m.id(k).expect("every policy has an id");
                prop_assert!(id != 0);
                prop_assert!(seen.insert(id));
                prop_assert_eq!(m.policy(id), Some(k.as_str()));
            }
            for (k, id) in before {
                if second.contains(&k) {
                    prop_assert_eq!(m.id(&k), id);
                }
            }
            prop_assert_eq!(m.len(), second.len());
        }
    }
}

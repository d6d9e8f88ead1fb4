//! Which processes are captured, and for which recording session (sans-IO).
//!
//! The proxy sends the complete target set; this module diffs it against the current one so the
//! loader can update the kernel maps, and keeps the session of a removed target "retiring" until
//! the session is flushed, so captures still in flight are attributed correctly.

use std::collections::HashMap;

use kreplay_proto::v1::TargetSet;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapChanges {
    pub add_cgroups: Vec<u64>,
    pub remove_cgroups: Vec<u64>,
    pub add_tgids: Vec<u32>,
    pub remove_tgids: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Targets {
    version: u64,
    cgroups: HashMap<u64, String>,
    tgids: HashMap<u32, String>,
    retiring_cgroups: HashMap<u64, String>,
    retiring_tgids: HashMap<u32, String>,
}

impl Targets {
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Replaces the target set; returns the kernel map updates to make.
    pub fn apply(&mut self, set: &TargetSet) -> MapChanges {
        let mut cgroups = HashMap::new();
        let mut tgids = HashMap::new();
        for target in &set.targets {
            for id in &target.cgroup_ids {
                cgroups.insert(*id, target.record_id.clone());
            }
            for tgid in &target.tgids {
                tgids.insert(*tgid, target.record_id.clone());
            }
        }
        let changes = MapChanges {
            add_cgroups: cgroups
                .keys()
                .filter(|k| !self.cgroups.contains_key(k))
                .copied()
                .collect(),
            remove_cgroups: self
                .cgroups
                .keys()
                .filter(|k| !cgroups.contains_key(k))
                .copied()
                .collect(),
            add_tgids: tgids
                .keys()
                .filter(|k| !self.tgids.contains_key(k))
                .copied()
                .collect(),
            remove_tgids: self
                .tgids
                .keys()
                .filter(|k| !tgids.contains_key(k))
                .copied()
                .collect(),
        };
        for (id, record) in self.cgroups.drain() {
            if cgroups.get(&id) != Some(&record) {
                self.retiring_cgroups.insert(id, record);
            }
        }
        for (tgid, record) in self.tgids.drain() {
            if tgids.get(&tgid) != Some(&record) {
                self.retiring_tgids.insert(tgid, record);
            }
        }
        self.cgroups = cgroups;
        self.tgids = tgids;
        self.version = set.version;
        changes
    }

    /// The session a capture belongs to: by cgroup first, then by process.
    pub fn record_for(&self, cgroup_id: u64, tgid: u32) -> Option<&str> {
        self.cgroups
            .get(&cgroup_id)
            .or_else(|| self.tgids.get(&tgid))
            .or_else(|| self.retiring_cgroups.get(&cgroup_id))
            .or_else(|| self.retiring_tgids.get(&tgid))
            .map(String::as_str)
    }

    /// The session is flushed: forget its retiring targets.
    pub fn retire(&mut self, record_id: &str) {
        self.retiring_cgroups.retain(|_, r| r != record_id);
        self.retiring_tgids.retain(|_, r| r != record_id);
    }
}

#[cfg(test)]
mod tests {
    use kreplay_proto::v1::Target;

    use super::*;

    fn set(version: u64, targets: &[(&str, &[u64], &[u32])]) -> TargetSet {
        TargetSet {
            version,
            targets: targets
                .iter()
                .map(|(r, c, t)| Target {
                    record_id: (*r).into(),
                    cgroup_ids: c.to_vec(),
                    tgids: t.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn diffs_and_attribution_survive_removal_until_flushed() {
        let mut targets = Targets::default();
        let changes = targets.apply(&set(1, &[("rec-a", &[10], &[]), ("rec-b", &[], &[77])]));
        assert_eq!(changes.add_cgroups, [10]);
        assert_eq!(changes.add_tgids, [77]);
        assert_eq!(targets.record_for(10, 1), Some("rec-a"));
        assert_eq!(targets.record_for(99, 77), Some("rec-b"));
        assert_eq!(targets.record_for(99, 1), None);

        let changes = targets.apply(&set(2, &[("rec-b", &[], &[77])]));
        assert_eq!(changes.remove_cgroups, [10]);
        assert!(changes.add_tgids.is_empty() && changes.remove_tgids.is_empty());
        assert_eq!(
            targets.record_for(10, 1),
            Some("rec-a"),
            "in-flight captures still attributed"
        );
        targets.retire("rec-a");
        assert_eq!(targets.record_for(10, 1), None);
        assert_eq!(targets.version(), 2);
    }
}

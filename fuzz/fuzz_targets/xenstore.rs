//! The qemu-xen-traditional disk records in xenstore: libxl's layout for
//! domain 7 (two disks and a CD-ROM), then nodes added, rewritten or
//! removed by the input, above all in the frontend area the guest owns.
//! Invariants: at most four drives on distinct slots; every image path
//! comes from the `params` node of a backend at the exact path libxl
//! writes (/local/domain/0/backend/<kind>/7/<devid>), never from a node
//! the guest could have written; a CD-ROM is read-only.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use xen_ioemu::control::cmdline::{check_backend_path, drives_from_xenstore, XenstoreRead};

const DOMID: u32 = 7;

struct Store(BTreeMap<String, String>);

impl XenstoreRead for Store {
    fn read(&self, path: &str) -> Option<String> {
        self.0.get(path).cloned()
    }
    fn directory(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        let mut children: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or("").to_string())
            .collect();
        children.dedup();
        children
    }
}

/// Paths and values the parser looks for, so edits recombine them.
const DEVIDS: &[&str] = &["768", "832", "5632", "51712", "0", "..", "768/x", ""];
const LEAVES: &[&str] = &["backend", "device-type", "frontend", "dev", "params", "type", "mode", "state"];
const VALUES: &[&str] = &[
    "hda", "hdb", "hdc:cdrom", "hdd", "xvda", "cdrom", "disk", "phy", "file", "r", "w", "aio:/images/a.img",
    "tap2:tapdisk:aio:/x", "qcow2:/q", "loop3", "blkdebug:/rules:/img", "/local/domain/0/backend/vbd/7/768",
    "/local/domain/0/backend/qdisk/7/5632", "/local/domain/7/device/vbd/768", "/local/domain/7/data/vbd/768",
    "/local/domain/0/backend/vbd/8/768", "",
];

#[derive(Debug, Arbitrary)]
enum Edit {
    /// A frontend node (the guest's to write).
    Frontend { devid: u8, leaf: u8, value: u8 },
    /// A backend node under some kind and domain.
    Backend { kind: u8, domid: u8, devid: u8, leaf: u8, value: u8 },
    /// Any node with any value.
    Raw { path: String, value: String },
    Remove { index: u16 },
}

fn libxl_layout() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (devid, kind, dev, params, cd) in [
        ("768", "vbd", "hda", "aio:/images/disk.img", false),
        ("832", "qdisk", "hdb", "/images/second.img", false),
        ("5632", "vbd", "hdc:cdrom", "", true),
    ] {
        let fe = format!("/local/domain/{DOMID}/device/vbd/{devid}");
        let be = format!("/local/domain/0/backend/{kind}/{DOMID}/{devid}");
        m.insert(format!("{fe}/backend"), be.clone());
        m.insert(format!("{fe}/device-type"), if cd { "cdrom" } else { "disk" }.into());
        m.insert(format!("{be}/frontend"), fe);
        m.insert(format!("{be}/dev"), dev.into());
        m.insert(format!("{be}/params"), params.into());
        m.insert(format!("{be}/type"), "phy".into());
        m.insert(format!("{be}/mode"), if cd { "r" } else { "w" }.into());
    }
    m
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

fuzz_target!(|edits: Vec<Edit>| {
    let mut nodes = libxl_layout();
    for edit in edits.iter().take(64) {
        match edit {
            Edit::Frontend { devid, leaf, value } => {
                let path = format!("/local/domain/{DOMID}/device/vbd/{}/{}", pick(DEVIDS, *devid), pick(LEAVES, *leaf));
                nodes.insert(path, pick(VALUES, *value).into());
            }
            Edit::Backend { kind, domid, devid, leaf, value } => {
                let kind = pick(&["vbd", "qdisk", "tap", "vbd3", "vif", "vbd/7"], *kind);
                let domid = [DOMID, 8, 0][*domid as usize % 3];
                let path = format!("/local/domain/0/backend/{kind}/{domid}/{}/{}", pick(DEVIDS, *devid), pick(LEAVES, *leaf));
                nodes.insert(path, pick(VALUES, *value).into());
            }
            Edit::Raw { path, value } => drop(nodes.insert(path.clone(), value.clone())),
            Edit::Remove { index } if !nodes.is_empty() => {
                let key = nodes.keys().nth(*index as usize % nodes.len()).cloned();
                key.map(|k| nodes.remove(&k));
            }
            Edit::Remove { .. } => {}
        }
    }
    let store = Store(nodes);
    let Ok(drives) = drives_from_xenstore(&store, DOMID) else { return };
    assert!(drives.len() <= 4);
    let mut slots: Vec<u8> = drives.iter().map(|d| d.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), drives.len(), "two drives on one slot: {drives:?}");
    assert!(slots.iter().all(|s| *s < 4));
    // The params values at backend paths libxl could have written.
    let trusted: Vec<&String> = store
        .0
        .iter()
        .filter_map(|(k, v)| {
            let be = k.strip_suffix("/params")?;
            let devid = be.rsplit('/').next()?;
            check_backend_path(be, DOMID, devid).is_ok().then_some(v)
        })
        .collect();
    for d in &drives {
        assert!(!d.cdrom || d.read_only, "a writable CD-ROM: {d:?}");
        if let Some(file) = &d.file {
            let bare = file.strip_prefix("/dev/").unwrap_or(file);
            assert!(
                trusted.iter().any(|v| v.ends_with(file.as_str()) || v.ends_with(bare)),
                "{file} is not from a trusted backend's params: {d:?}"
            );
        }
    }
});

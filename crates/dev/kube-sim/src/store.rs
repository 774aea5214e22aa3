//! The object store: every object of every type as JSON, one global monotonically increasing
//! resourceVersion, and the log of changes that watches replay. It knows nothing of verbs; the
//! `verbs` module gives writes their meaning and calls these primitives.

use crate::clock;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// What a watch event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the log and sent to watchers.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub storage: String,
    pub namespace: String,
    pub type_: EventType,
    pub object: Value,
    /// The object before a modification (for selector transitions).
    pub old: Option<Value>,
}

/// The objects of one storage key, by (namespace, name); cluster-scoped objects have "".
pub type Objects = BTreeMap<(String, String), Value>;

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<String, Objects>,
    log: VecDeque<Arc<Change>>,
    window: usize,
    compacted: u64,
    uids: u64,
    tx: broadcast::Sender<Arc<Change>>,
    epoch: watch::Sender<u64>,
    /// Second octet of this server's loopback network: ClusterIPs are `127.B.0.x` and
    /// `127.B.200+.x`, node `N`'s pods `127.B.N.x` (the kubelet claims a free B).
    pub network: u8,
}

impl Store {
    /// `window`: how many changes are kept for watches to resume from.
    pub fn new(window: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (epoch, _) = watch::channel(0);
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            window: window.max(1),
            compacted: 0,
            uids: 0,
            tx,
            epoch,
            network: 20,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may still start from.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn new_uid(&mut self) -> String {
        self.uids += 1;
        let t = clock::now_secs() as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t & 0xffff_ffff) as u32,
            (self.uids >> 16) & 0xffff,
            self.uids & 0xfff,
            (t >> 32) & 0xfff,
            self.uids.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xffff_ffff_ffff
        )
    }

    pub fn get(&self, storage: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(storage)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn objects(&self, storage: &str) -> Option<&Objects> {
        self.objects.get(storage)
    }

    pub fn storage_keys(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    /// Store `object` as new or changed, stamping the next resourceVersion; returns it stored.
    pub fn put(&mut self, storage: &str, mut object: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (ns, name) = key_of(&object);
        let old = self
            .objects
            .entry(storage.to_string())
            .or_default()
            .insert((ns.clone(), name), object.clone());
        let type_ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv,
            storage: storage.to_string(),
            namespace: ns,
            type_,
            object: object.clone(),
            old,
        });
        object
    }

    /// Remove an object; the DELETED event carries a new resourceVersion.
    pub fn remove(&mut self, storage: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(storage)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change {
            rv: self.rv,
            storage: storage.to_string(),
            namespace: namespace.to_string(),
            type_: EventType::Deleted,
            object: object.clone(),
            old: None,
        });
        Some(object)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.log.push_back(change.clone());
        while self.log.len() > self.window {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(change);
    }

    /// Changes after `rv` (callers check `compacted` first), and a receiver for later ones,
    /// taken together so nothing falls between them.
    pub fn changes_since(
        &self,
        rv: u64,
    ) -> (
        Vec<Arc<Change>>,
        broadcast::Receiver<Arc<Change>>,
        watch::Receiver<u64>,
    ) {
        let past = self.log.iter().filter(|c| c.rv > rv).cloned().collect();
        (past, self.tx.subscribe(), self.epoch.subscribe())
    }

    /// Forget the change log (as etcd compaction does) and end every open watch: clients that
    /// resume from an older resourceVersion get `410 Gone` and must relist.
    pub fn compact(&mut self) {
        // Move past every resourceVersion a client may hold, so resuming from any of them
        // is too old while a fresh list (at the new version) can watch again.
        self.rv += 1;
        self.log.clear();
        self.compacted = self.rv;
        self.epoch.send_modify(|e| *e += 1);
    }
}

/// (namespace, name) of an object.
pub fn key_of(object: &Value) -> (String, String) {
    let m = &object["metadata"];
    (
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

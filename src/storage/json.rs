//! The JSON snapshot backend: human-readable files, one per entity's messages.
//!
//! # Layout (the persistence guide's)
//! ```text
//! {dir}/entities/queues.json          [{"name":..,"description":<entity>}]
//! {dir}/entities/topics.json          [{"name":..,"description":<entity>}]
//! {dir}/entities/subscriptions.json   [{"topic":..,"name":..,"description":<entity>}]
//! {dir}/messages/queue_{q}.json                [{"deadLetter":b,"sequenceNumber":n,"message":<m>}]
//! {dir}/messages/subscription_{t}_{s}.json     (same)
//! {dir}/state.json                    {"version":1,"lsn":n,"takenAt":ms,"state":<state>}
//! {dir}/operations.wal                the operation journal (not written by this backend)
//! ```
//! `{q}`, `{t}`, `{s}` are [`keys::file_component`]: the lowercased name with every byte outside
//! `[a-z0-9.-]` percent-encoded (`a/B_c` → `a%2fb%5fc`), so `_` separates unambiguously, `/`
//! never makes a directory, and names differing only in case (the same entity in Service Bus)
//! share a file. Very long encodings are shortened with a hash to respect file-name limits.
//! An entity without messages has no message file.
//!
//! # Atomic deltas
//! A delta touches several files, so it is committed with a small intent record:
//! 1. every changed file is written to `{file}.tmp` and fsynced, then the directories;
//! 2. `pending-commit.json` (listing the renames and deletions) is written the same way and
//!    renamed into place — **this rename is the commit point**;
//! 3. the temp files are renamed over their targets (`state.json`, which carries the snapshot
//!    LSN, last), deletions done, directories fsynced, and `pending-commit.json` removed.
//!
//! Opening the store finishes a commit whose intent record exists (roll forward). Without one,
//! any `*.tmp` files are debris of an uncommitted delta: ignored on load, removed by
//! [`Backend::compact`].
//!
//! # In-memory index
//! The backend keeps the entities and every message file's contents in memory, so a delta
//! rewrites only the entity lists and message files it changes. After a failed delta the index
//! is dropped and re-read from disk before the next one.

use super::journal::sync_dir;
use super::keys::{self, entity_key_string, prefix_upper_bound, subscriptions_prefix};
use super::{
    Backend, BackendStats, Delta, EntityKey, EntityRecord, MessageKey, MessageRecord, Snapshot,
    StorageError,
};
use crate::storage::EntityKind;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

/// Version of the JSON layout, stored in `state.json`: [`super::schema::JSON_DIR`].
pub const JSON_FORMAT_VERSION: i64 = super::schema::JSON_DIR.current;
const ENTITIES_DIR: &str = "entities";
const MESSAGES_DIR: &str = "messages";
const STATE_FILE: &str = "state.json";
const COMMIT_FILE: &str = "pending-commit.json";
const JOURNAL_FILE: &str = "operations.wal";
const KINDS: [EntityKind; 3] = [
    EntityKind::Queue,
    EntityKind::Topic,
    EntityKind::Subscription,
];

/// The entity list file of a kind, relative to the store directory.
fn entity_file(kind: EntityKind) -> String {
    let name = match kind {
        EntityKind::Queue => "queues.json",
        EntityKind::Topic => "topics.json",
        EntityKind::Subscription => "subscriptions.json",
    };
    format!("{ENTITIES_DIR}/{name}")
}

/// The message file of an entity, relative to the store directory.
pub fn message_file(key: &EntityKey) -> String {
    let name = match key.kind {
        EntityKind::Subscription => format!(
            "subscription_{}_{}.json",
            keys::file_component(key.topic.as_deref().unwrap_or_default()),
            keys::file_component(&key.name)
        ),
        kind => format!(
            "{}_{}.json",
            keys::kind_tag(kind),
            keys::file_component(&key.name)
        ),
    };
    format!("{MESSAGES_DIR}/{name}")
}

#[derive(Serialize)]
struct EntityOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    name: &'a str,
    description: &'a RawValue,
}

#[derive(Deserialize)]
struct EntityIn {
    #[serde(default)]
    topic: Option<String>,
    name: String,
    description: Box<RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageOut<'a> {
    dead_letter: bool,
    sequence_number: u64,
    message: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    dead_letter: bool,
    sequence_number: u64,
    message: Box<RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOut<'a> {
    version: i64,
    lsn: u64,
    taken_at: Millis,
    state: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateIn {
    version: i64,
    lsn: u64,
    taken_at: Millis,
    #[serde(default)]
    state: Option<Box<RawValue>>,
}

/// The intent record of a delta being committed; paths relative to the store directory.
#[derive(Serialize, Deserialize, Default)]
struct CommitIntent {
    /// `(temp file, target)`, in the order to rename them (`state.json` last).
    renames: Vec<(String, String)>,
    deletes: Vec<String>,
}

/// One entity's messages, keyed by (dead-letter, sequence number).
#[derive(Debug, Clone)]
struct MessageFile {
    entity: EntityKey,
    messages: BTreeMap<(bool, u64), Box<RawValue>>,
}

/// Everything stored, as it is on disk.
#[derive(Debug, Default, Clone)]
struct Index {
    /// By storage key (which starts with the kind, so kinds never mix).
    entities: BTreeMap<String, EntityRecord>,
    /// By message file path (relative).
    files: BTreeMap<String, MessageFile>,
    state: Option<Box<RawValue>>,
    lsn: u64,
    taken_at: Millis,
    /// `state.json` exists: the store holds a snapshot.
    present: bool,
}

/// Which files a delta changed.
#[derive(Default)]
struct Dirty {
    kinds: BTreeSet<EntityKind>,
    /// Message files to rewrite, or delete when empty/gone.
    files: BTreeSet<String>,
}

/// A snapshot store in a directory of JSON files.
#[derive(Debug)]
pub struct JsonBackend {
    dir: PathBuf,
    pretty: bool,
    /// `None` until read from disk, and after a failed delta.
    index: Option<Index>,
    #[cfg(test)]
    crash_after_commit_point: bool,
}

fn io_err(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, detail: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        detail,
    }
}

fn tmp_name(rel: &str) -> String {
    format!("{rel}.tmp")
}

/// Reads and parses a JSON file; `None` when it doesn't exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StorageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(path, format!("invalid JSON: {e}")))
}

fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// A relative path from an intent record that stays inside the store directory.
fn safe_relative(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

impl JsonBackend {
    /// Opens (creating if needed) the store in `dir`, finishing an interrupted commit.
    pub fn open(dir: &Path, pretty: bool) -> Result<Self, StorageError> {
        for sub in [ENTITIES_DIR, MESSAGES_DIR] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        let backend = JsonBackend {
            dir: dir.to_path_buf(),
            pretty,
            index: None,
            #[cfg(test)]
            crash_after_commit_point: false,
        };
        backend.roll_forward()?;
        Ok(backend)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn sync_dirs(&self) -> Result<(), StorageError> {
        sync_dir(&self.dir.join(ENTITIES_DIR))?;
        sync_dir(&self.dir.join(MESSAGES_DIR))?;
        sync_dir(&self.dir)
    }

    /// Completes the renames and deletions of a committed delta (idempotent).
    fn roll_forward(&self) -> Result<(), StorageError> {
        let commit = self.path(COMMIT_FILE);
        let Some(intent) = read_json::<CommitIntent>(&commit)? else {
            return Ok(());
        };
        tracing::info!(dir = %self.dir.display(), "finishing an interrupted JSON snapshot commit");
        self.finish_commit(&intent)
    }

    fn finish_commit(&self, intent: &CommitIntent) -> Result<(), StorageError> {
        let commit = self.path(COMMIT_FILE);
        for (tmp, target) in &intent.renames {
            if !safe_relative(tmp) || !safe_relative(target) {
                return Err(corrupt(
                    &commit,
                    format!("unsafe path {tmp:?} → {target:?}"),
                ));
            }
            let (tmp, target) = (self.path(tmp), self.path(target));
            match std::fs::rename(&tmp, &target) {
                // Already renamed before the interruption.
                Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => {}
                r => r.map_err(|e| io_err(&target, e))?,
            }
        }
        for rel in &intent.deletes {
            if !safe_relative(rel) {
                return Err(corrupt(&commit, format!("unsafe path {rel:?}")));
            }
            remove_if_exists(&self.path(rel))?;
        }
        self.sync_dirs()?;
        remove_if_exists(&commit)?;
        sync_dir(&self.dir)
    }

    /// Writes `value` to `{rel}.tmp` and fsyncs it; returns the temp file's relative path.
    fn write_tmp<T: Serialize + ?Sized>(
        &self,
        rel: &str,
        value: &T,
    ) -> Result<String, StorageError> {
        let tmp_rel = tmp_name(rel);
        let tmp = self.path(&tmp_rel);
        let write = || -> io::Result<()> {
            let mut w = BufWriter::with_capacity(1 << 16, std::fs::File::create(&tmp)?);
            if self.pretty {
                serde_json::to_writer_pretty(&mut w, value)?;
            } else {
                serde_json::to_writer(&mut w, value)?;
            }
            w.write_all(b"\n")?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        write().map_err(|e| io_err(&tmp, e))?;
        Ok(tmp_rel)
    }

    /// Reads the whole store from disk.
    fn read_index(&self) -> Result<Index, StorageError> {
        let mut idx = Index::default();
        let state_path = self.path(STATE_FILE);
        if let Some(st) = read_json::<StateIn>(&state_path)? {
            super::schema::JSON_DIR.check(st.version, &state_path)?;
            idx.state = st.state;
            idx.lsn = st.lsn;
            idx.taken_at = st.taken_at;
            idx.present = true;
        }
        for kind in KINDS {
            let path = self.path(&entity_file(kind));
            for e in read_json::<Vec<EntityIn>>(&path)?.unwrap_or_default() {
                if (kind == EntityKind::Subscription) != e.topic.is_some() {
                    return Err(corrupt(
                        &path,
                        format!("entity '{}' has the wrong shape", e.name),
                    ));
                }
                let key = EntityKey {
                    kind,
                    topic: e.topic,
                    name: e.name,
                };
                let record = EntityRecord {
                    key,
                    data: e.description,
                };
                idx.entities.insert(entity_key_string(&record.key), record);
            }
        }
        for e in idx.entities.values() {
            if e.key.kind == EntityKind::Topic {
                continue;
            }
            let rel = message_file(&e.key);
            let path = self.path(&rel);
            let Some(list) = read_json::<Vec<MessageIn>>(&path)? else {
                continue;
            };
            let messages = list
                .into_iter()
                .map(|m| ((m.dead_letter, m.sequence_number), m.message))
                .collect();
            idx.files.insert(
                rel,
                MessageFile {
                    entity: e.key.clone(),
                    messages,
                },
            );
        }
        if !idx.present && !idx.entities.is_empty() {
            return Err(corrupt(
                &state_path,
                "entities stored without state.json".into(),
            ));
        }
        Ok(idx)
    }

    fn ensure_index(&mut self) -> Result<&mut Index, StorageError> {
        if self.index.is_none() {
            self.index = Some(self.read_index()?);
        }
        self.index
            .as_mut()
            .ok_or_else(|| StorageError::Other("JSON index unavailable".into()))
    }

    /// Message files present on disk (relative paths), to find orphans.
    fn message_files_on_disk(&self) -> Result<Vec<String>, StorageError> {
        let dir = self.dir.join(MESSAGES_DIR);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(format!("{MESSAGES_DIR}/{name}"));
            }
        }
        Ok(out)
    }

    /// Writes the changed files and commits them (see the module docs).
    fn write_delta(&self, idx: &Index, dirty: &Dirty) -> Result<(), StorageError> {
        let mut intent = CommitIntent::default();
        for &kind in &dirty.kinds {
            let list: Vec<EntityOut<'_>> = idx
                .entities
                .values()
                .filter(|e| e.key.kind == kind)
                .map(|e| EntityOut {
                    topic: e.key.topic.as_deref(),
                    name: &e.key.name,
                    description: &e.data,
                })
                .collect();
            let rel = entity_file(kind);
            intent.renames.push((self.write_tmp(&rel, &list)?, rel));
        }
        for rel in &dirty.files {
            match idx.files.get(rel) {
                Some(f) if !f.messages.is_empty() => {
                    let list: Vec<MessageOut<'_>> = f
                        .messages
                        .iter()
                        .map(|(&(dead_letter, sequence_number), m)| MessageOut {
                            dead_letter,
                            sequence_number,
                            message: m,
                        })
                        .collect();
                    intent
                        .renames
                        .push((self.write_tmp(rel, &list)?, rel.clone()));
                }
                _ => {
                    if self.path(rel).exists() {
                        intent.deletes.push(rel.clone());
                    }
                }
            }
        }
        let state = StateOut {
            version: JSON_FORMAT_VERSION,
            lsn: idx.lsn,
            taken_at: idx.taken_at,
            state: idx.state.as_deref(),
        };
        intent
            .renames
            .push((self.write_tmp(STATE_FILE, &state)?, STATE_FILE.to_string()));
        self.sync_dirs()?;
        // The commit point.
        let commit_tmp = self.write_tmp(COMMIT_FILE, &intent)?;
        std::fs::rename(self.path(&commit_tmp), self.path(COMMIT_FILE))
            .map_err(|e| io_err(&self.path(COMMIT_FILE), e))?;
        sync_dir(&self.dir)?;
        #[cfg(test)]
        if self.crash_after_commit_point {
            return Err(StorageError::Other("simulated crash".into()));
        }
        self.finish_commit(&intent)
    }

    fn snapshot_of(idx: &Index) -> Option<Snapshot> {
        if !idx.present {
            return None;
        }
        let mut messages = Vec::new();
        for e in idx.entities.values() {
            let Some(f) = idx.files.get(&message_file(&e.key)) else {
                continue;
            };
            messages.extend(
                f.messages
                    .iter()
                    .map(|(&(dead_letter, seq), m)| MessageRecord {
                        key: MessageKey {
                            entity: e.key.clone(),
                            dead_letter,
                            sequence_number: seq,
                        },
                        data: m.clone(),
                    }),
            );
        }
        Some(Snapshot {
            entities: idx.entities.values().cloned().collect(),
            messages,
            state: idx.state.clone(),
            lsn: idx.lsn,
            taken_at: idx.taken_at,
        })
    }
}

/// Applies `delta` to the index, recording what changed. Same order as the SQLite backend:
/// entity deletes, entity upserts, message deletes, message upserts, state.
fn apply_to_index(idx: &mut Index, delta: &Delta, dirty: &mut Dirty) {
    for key in &delta.entity_deletes {
        let ks = entity_key_string(key);
        if idx.entities.remove(&ks).is_some() {
            dirty.kinds.insert(key.kind);
        }
        let file = message_file(key);
        if idx.files.remove(&file).is_some() {
            dirty.files.insert(file);
        }
        if key.kind == EntityKind::Topic {
            let lo = subscriptions_prefix(&key.name);
            let hi = prefix_upper_bound(&lo);
            let subs: Vec<String> = idx
                .entities
                .range(lo.clone()..hi.clone())
                .map(|(k, _)| k.clone())
                .collect();
            if !subs.is_empty() {
                dirty.kinds.insert(EntityKind::Subscription);
            }
            for k in subs {
                idx.entities.remove(&k);
            }
            // Message files of the topic's subscriptions, with or without an entity record.
            let files: Vec<String> = idx
                .files
                .iter()
                .filter(|(_, f)| {
                    let k = entity_key_string(&f.entity);
                    k.as_str() >= lo.as_str() && k.as_str() < hi.as_str()
                })
                .map(|(name, _)| name.clone())
                .collect();
            for f in files {
                idx.files.remove(&f);
                dirty.files.insert(f);
            }
        }
    }
    for e in &delta.entity_upserts {
        idx.entities.insert(entity_key_string(&e.key), e.clone());
        dirty.kinds.insert(e.key.kind);
    }
    for k in &delta.message_deletes {
        let file = message_file(&k.entity);
        if let Some(f) = idx.files.get_mut(&file) {
            if f.messages
                .remove(&(k.dead_letter, k.sequence_number))
                .is_some()
            {
                dirty.files.insert(file);
            }
        }
    }
    for m in &delta.message_upserts {
        let k = &m.key;
        let file = message_file(&k.entity);
        let entry = idx
            .files
            .entry(file.clone())
            .or_insert_with(|| MessageFile {
                entity: k.entity.clone(),
                messages: BTreeMap::new(),
            });
        entry
            .messages
            .insert((k.dead_letter, k.sequence_number), m.data.clone());
        dirty.files.insert(file);
    }
    if delta.state.is_some() {
        idx.state = delta.state.clone();
    }
    idx.lsn = delta.lsn;
    idx.taken_at = delta.taken_at;
    idx.present = true;
}

impl Backend for JsonBackend {
    fn load(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let idx = self.read_index()?;
        let snapshot = Self::snapshot_of(&idx);
        self.index = Some(idx);
        Ok(snapshot)
    }

    fn apply(&mut self, delta: &Delta) -> Result<(), StorageError> {
        let mut dirty = Dirty::default();
        let mut idx = if delta.full {
            // Rewrite everything; every message file now on disk is rewritten or deleted.
            dirty.kinds.extend(KINDS);
            dirty.files.extend(
                self.message_files_on_disk()?
                    .into_iter()
                    .filter(|f| f.ends_with(".json")),
            );
            self.index = None;
            Index::default()
        } else {
            for kind in KINDS {
                if !self.path(&entity_file(kind)).exists() {
                    dirty.kinds.insert(kind);
                }
            }
            // Taken out of `self`: if writing fails, the index (already changed) is dropped
            // and re-read from disk before the next delta.
            self.ensure_index()?;
            self.index.take().unwrap_or_default()
        };
        apply_to_index(&mut idx, delta, &mut dirty);
        if delta.full {
            dirty.files.extend(idx.files.keys().cloned());
        }
        self.write_delta(&idx, &dirty)?;
        self.index = Some(idx);
        Ok(())
    }

    /// Removes orphan message files (whose entity no longer exists) and leftover temp files.
    fn compact(&mut self) -> Result<(), StorageError> {
        self.roll_forward()?;
        let idx = self.ensure_index()?;
        let live: BTreeSet<String> = idx
            .entities
            .values()
            .map(|e| message_file(&e.key))
            .collect();
        let mut removed = 0usize;
        for rel in self.message_files_on_disk()? {
            if !live.contains(&rel) {
                remove_if_exists(&self.path(&rel))?;
                removed += 1;
            }
        }
        for rel in KINDS
            .iter()
            .map(|&k| entity_file(k))
            .chain([STATE_FILE.to_string(), COMMIT_FILE.to_string()])
        {
            let tmp = self.path(&tmp_name(&rel));
            if tmp.exists() {
                remove_if_exists(&tmp)?;
                removed += 1;
            }
        }
        if let Some(idx) = &mut self.index {
            idx.files.retain(|f, _| live.contains(f));
        }
        if removed > 0 {
            tracing::info!(dir = %self.dir.display(), removed, "removed orphaned JSON files");
            self.sync_dirs()?;
        }
        Ok(())
    }

    /// Removes every stored file except the operation journal (owned by the journal).
    fn purge(&mut self) -> Result<(), StorageError> {
        self.index = None;
        for sub in [ENTITIES_DIR, MESSAGES_DIR] {
            let d = self.dir.join(sub);
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&d, e)),
                _ => {}
            }
            std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        for rel in [STATE_FILE, COMMIT_FILE] {
            remove_if_exists(&self.path(rel))?;
            remove_if_exists(&self.path(&tmp_name(rel)))?;
        }
        sync_dir(&self.dir)?;
        self.index = Some(Index::default());
        Ok(())
    }

    fn stats(&self) -> BackendStats {
        fn walk(dir: &Path, skip: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&p, skip),
                        Ok(m) if p != skip => m.len(),
                        _ => 0,
                    }
                })
                .sum()
        }
        let last_snapshot = match &self.index {
            Some(idx) => idx.present.then_some(idx.taken_at),
            None => read_json::<StateIn>(&self.path(STATE_FILE))
                .ok()
                .flatten()
                .map(|s| s.taken_at),
        };
        BackendStats {
            backend: "JSON".to_string(),
            location: Some(self.dir.display().to_string()),
            size_bytes: walk(&self.dir, &self.path(JOURNAL_FILE)),
            last_snapshot,
        }
    }

    fn journal_path(&self) -> Option<PathBuf> {
        Some(self.path(JOURNAL_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, entity, msg, queue, raw, sub, topic};
    use super::*;

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["", ENTITIES_DIR, MESSAGES_DIR] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
                if e.file_type().unwrap().is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    out.push(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn conformance_pretty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        testkit::conformance(&|| Box::new(JsonBackend::open(&path, true).unwrap()));
    }

    #[test]
    fn conformance_compact() {
        let dir = tempfile::tempdir().unwrap();
        testkit::conformance(&|| Box::new(JsonBackend::open(dir.path(), false).unwrap()));
    }

    #[test]
    fn layout_matches_the_guide() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = JsonBackend::open(dir.path(), true).unwrap();
        let q = queue("MyQueue");
        let t = topic("mytopic");
        let s = sub("mytopic", "mysub");
        let odd = sub("a/B_c", "x_y");
        b.apply(&Delta {
            full: true,
            lsn: 7,
            taken_at: 123,
            entity_upserts: vec![
                entity(&q, "{}"),
                entity(&t, "{}"),
                entity(&s, "{}"),
                entity(&topic("a/B_c"), "{}"),
                entity(&odd, "{}"),
            ],
            message_upserts: vec![msg(&q, false, 1), msg(&s, true, 2), msg(&odd, false, 3)],
            state: Some(raw(r#"{"k":1}"#)),
            ..Delta::default()
        })
        .unwrap();
        assert_eq!(
            files_under(dir.path()),
            vec![
                "entities/queues.json",
                "entities/subscriptions.json",
                "entities/topics.json",
                "messages/queue_myqueue.json",
                "messages/subscription_a%2fb%5fc_x%5fy.json",
                "messages/subscription_mytopic_mysub.json",
                "state.json",
            ]
        );
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
        assert_eq!(
            state,
            serde_json::json!({"version":1,"lsn":7,"takenAt":123,"state":{"k":1}})
        );
        let msgs: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("messages/subscription_mytopic_mysub.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(msgs[0]["deadLetter"], true);
        assert_eq!(msgs[0]["sequenceNumber"], 2);
        let subs: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("entities/subscriptions.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(subs[0]["topic"], "a/B_c");
        assert_eq!(subs[0]["name"], "x_y");
        // Pretty printing is honoured.
        let text = std::fs::read_to_string(dir.path().join("entities/queues.json")).unwrap();
        assert!(text.contains("\n  "), "{text}");
        assert_eq!(b.journal_path().unwrap(), dir.path().join("operations.wal"));
        assert_eq!(b.stats().backend, "JSON");
    }

    #[test]
    fn a_delta_rewrites_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = JsonBackend::open(dir.path(), false).unwrap();
        let qs: Vec<_> = (0..5).map(|i| queue(&format!("q{i}"))).collect();
        let mut full = Delta {
            full: true,
            lsn: 1,
            ..Delta::default()
        };
        for q in &qs {
            full.entity_upserts.push(entity(q, "{}"));
            full.message_upserts.push(msg(q, false, 1));
        }
        b.apply(&full).unwrap();
        let mtime = |rel: &str| {
            std::fs::metadata(dir.path().join(rel))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before: Vec<_> = (0..5)
            .map(|i| mtime(&format!("messages/queue_q{i}.json")))
            .collect();
        let queues_before = mtime("entities/queues.json");
        std::thread::sleep(std::time::Duration::from_millis(20));
        b.apply(&Delta {
            lsn: 2,
            message_upserts: vec![msg(&qs[3], false, 2)],
            ..Delta::default()
        })
        .unwrap();
        for (i, t) in before.iter().enumerate() {
            let now = mtime(&format!("messages/queue_q{i}.json"));
            assert_eq!(now != *t, i == 3, "queue {i}");
        }
        assert_eq!(mtime("entities/queues.json"), queues_before);
    }

    #[test]
    fn leftover_tmp_files_are_ignored_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = JsonBackend::open(dir.path(), false).unwrap();
        let q = queue("q");
        b.apply(&Delta {
            full: true,
            lsn: 1,
            entity_upserts: vec![entity(&q, "{}")],
            message_upserts: vec![msg(&q, false, 1)],
            ..Delta::default()
        })
        .unwrap();
        // Debris of a delta that crashed before its commit point, and an orphan file.
        std::fs::write(
            dir.path().join("state.json.tmp"),
            b"{\"version\":1,\"lsn\":99",
        )
        .unwrap();
        std::fs::write(dir.path().join("messages/queue_q.json.tmp"), b"[garbage").unwrap();
        std::fs::write(dir.path().join("entities/queues.json.tmp"), b"[]").unwrap();
        std::fs::write(dir.path().join("messages/queue_gone.json"), b"[]").unwrap();
        let mut fresh = JsonBackend::open(dir.path(), false).unwrap();
        let snap = fresh.load().unwrap().unwrap();
        assert_eq!(
            (snap.lsn, snap.entities.len(), snap.messages.len()),
            (1, 1, 1)
        );
        fresh.compact().unwrap();
        assert_eq!(
            files_under(dir.path()),
            vec![
                "entities/queues.json",
                "entities/subscriptions.json",
                "entities/topics.json",
                "messages/queue_q.json",
                "state.json"
            ]
        );
    }

    #[test]
    fn interrupted_commit_is_rolled_forward_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = JsonBackend::open(dir.path(), false).unwrap();
        let q = queue("q");
        b.apply(&Delta {
            full: true,
            lsn: 1,
            entity_upserts: vec![entity(&q, "{}")],
            message_upserts: vec![msg(&q, false, 1)],
            ..Delta::default()
        })
        .unwrap();
        b.crash_after_commit_point = true;
        let second = Delta {
            lsn: 2,
            entity_upserts: vec![entity(&queue("r"), "{}")],
            message_upserts: vec![msg(&q, false, 2)],
            ..Delta::default()
        };
        assert!(b.apply(&second).is_err());
        assert!(dir.path().join(COMMIT_FILE).exists());
        let mut fresh = JsonBackend::open(dir.path(), false).unwrap();
        assert!(!dir.path().join(COMMIT_FILE).exists());
        let snap = fresh.load().unwrap().unwrap();
        assert_eq!(
            (snap.lsn, snap.entities.len(), snap.messages.len()),
            (2, 2, 2)
        );
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("state.json"),
            br#"{"version":2,"lsn":1,"takenAt":0,"state":null}"#,
        )
        .unwrap();
        let mut b = JsonBackend::open(dir.path(), false).unwrap();
        assert!(matches!(
            b.load(),
            Err(StorageError::SchemaTooNew { found: 2, .. })
        ));
    }

    #[test]
    fn unsafe_paths_in_a_commit_record_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(COMMIT_FILE),
            br#"{"renames":[["../x.tmp","../x"]],"deletes":[]}"#,
        )
        .unwrap();
        assert!(matches!(
            JsonBackend::open(dir.path(), false),
            Err(StorageError::Corrupt { .. })
        ));
    }
}

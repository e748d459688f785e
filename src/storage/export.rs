//! The portable export document of `localzure storage export|import`.
//!
//! One JSON document: a format marker and version, the broker-wide state, every entity with
//! its full description (and rules, sequence counter, duplicate history, session state), and
//! every message in every state with all its properties and body. It is the same content a
//! snapshot holds, so export from any backend and import into any other reproduces the state.

use super::{EntityKey, EntityRecord, MessageKey, MessageRecord, Snapshot};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The value of the `format` field.
pub const EXPORT_FORMAT: &str = "localzure-servicebus-export";
/// The version this binary writes and the newest it reads: [`super::schema::EXPORT`].
pub const EXPORT_VERSION: u32 = super::schema::EXPORT.current as u32;

/// The export document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportDocument {
    pub format: String,
    pub version: u32,
    pub exported_at: Millis,
    pub state: Option<Box<RawValue>>,
    pub entities: Vec<ExportEntity>,
    pub messages: Vec<ExportMessage>,
}

/// One entity of the document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportEntity {
    #[serde(flatten)]
    pub key: EntityKey,
    pub description: Box<RawValue>,
}

/// One message of the document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportMessage {
    pub entity: EntityKey,
    pub dead_letter: bool,
    pub message: Box<RawValue>,
}

impl ExportDocument {
    /// Builds the document from a full snapshot.
    pub fn from_snapshot(s: Snapshot, exported_at: Millis) -> Self {
        ExportDocument {
            format: EXPORT_FORMAT.to_string(),
            version: EXPORT_VERSION,
            exported_at,
            state: s.state,
            entities: s
                .entities
                .into_iter()
                .map(|e| ExportEntity {
                    key: e.key,
                    description: e.data,
                })
                .collect(),
            messages: s
                .messages
                .into_iter()
                .map(|m| ExportMessage {
                    entity: m.key.entity,
                    dead_letter: m.key.dead_letter,
                    message: m.data,
                })
                .collect(),
        }
    }

    /// Parses a document, naming the JSON path of the first bad field on error, and checks
    /// the format marker and version.
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let doc: ExportDocument = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("at '{}': {}", e.path(), e.inner()))?;
        doc.check()
    }

    /// Parses a document from a reader (large files, progress bars), like [`Self::parse`].
    pub fn parse_reader(reader: impl std::io::Read) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_reader(reader);
        let doc: ExportDocument = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("at '{}': {}", e.path(), e.inner()))?;
        doc.check()
    }

    fn check(self) -> Result<Self, String> {
        if self.format != EXPORT_FORMAT {
            return Err(format!(
                "at 'format': expected \"{EXPORT_FORMAT}\", found \"{}\"",
                self.format
            ));
        }
        if self.version > EXPORT_VERSION {
            return Err(format!(
                "at 'version': the document has version {}, newer than this binary supports ({EXPORT_VERSION})",
                self.version
            ));
        }
        Ok(self)
    }

    /// Writes the document one entity or message per line, calling `on_message` after each
    /// message (progress), without building the whole text in memory.
    pub fn write_streaming(
        &self,
        out: &mut impl std::io::Write,
        mut on_message: impl FnMut(usize),
    ) -> Result<(), serde_json::Error> {
        use serde_json::to_writer;
        let io = serde_json::Error::io;
        write!(out, "{{\n\"format\": ").map_err(io)?;
        to_writer(&mut *out, &self.format)?;
        write!(
            out,
            ",\n\"version\": {},\n\"exportedAt\": {},\n\"state\": ",
            self.version, self.exported_at
        )
        .map_err(io)?;
        to_writer(&mut *out, &self.state)?;
        write!(out, ",\n\"entities\": [").map_err(io)?;
        for (i, e) in self.entities.iter().enumerate() {
            write!(out, "{}\n  ", if i == 0 { "" } else { "," }).map_err(io)?;
            to_writer(&mut *out, e)?;
        }
        write!(out, "\n],\n\"messages\": [").map_err(io)?;
        for (i, m) in self.messages.iter().enumerate() {
            write!(out, "{}\n  ", if i == 0 { "" } else { "," }).map_err(io)?;
            to_writer(&mut *out, m)?;
            on_message(i);
        }
        write!(out, "\n]\n}}\n").map_err(io)?;
        Ok(())
    }

    /// Converts into a snapshot to restore from.
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            state: self.state,
            entities: self
                .entities
                .into_iter()
                .map(|e| EntityRecord {
                    key: e.key,
                    data: e.description,
                })
                .collect(),
            messages: self
                .messages
                .into_iter()
                .map(|m| MessageRecord {
                    key: MessageKey {
                        entity: m.entity,
                        dead_letter: m.dead_letter,
                        sequence_number: 0,
                    },
                    data: m.message,
                })
                .collect(),
            lsn: 0,
            taken_at: self.exported_at,
        }
    }
}

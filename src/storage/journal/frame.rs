//! The file format: header, record frames (length, CRC32, LSN), parsing a file image with
//! its torn-tail and corruption decisions.

use super::*;

pub(super) fn io_err(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn corrupt(path: &Path, detail: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        detail,
    }
}

pub(super) fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..6].copy_from_slice(MAGIC);
    h[6..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

pub(super) fn frame_crc(lsn: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `out`.
pub(super) fn encode_frame(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    // Payloads are bounded far below 4 GiB by the broker's message-size limits.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    debug_assert!(
        payload.len() < u32::MAX as usize,
        "journal payload too large"
    );
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(lsn, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

pub(super) fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(super) fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A well-formed frame at `pos` of `buf`: `(lsn, payload range end)`, or why not.
pub(super) fn parse_frame(buf: &[u8], pos: usize) -> Result<(u64, usize, usize), String> {
    if buf.len() - pos < FRAME_HEADER_LEN {
        return Err(format!(
            "incomplete record header ({} of {FRAME_HEADER_LEN} bytes)",
            buf.len() - pos
        ));
    }
    let len = read_u32(buf, pos) as usize;
    let crc = read_u32(buf, pos + 4);
    let lsn = read_u64(buf, pos + 8);
    let start = pos + FRAME_HEADER_LEN;
    let end = match start.checked_add(len) {
        Some(end) if end <= buf.len() => end,
        _ => {
            return Err(format!(
                "record length {len} runs past the end of the file ({} bytes)",
                buf.len()
            ))
        }
    };
    if frame_crc(lsn, &buf[start..end]) != crc {
        return Err(format!("checksum mismatch in record with LSN {lsn}"));
    }
    Ok((lsn, start, end))
}

/// Searches `buf` after a bad record at `bad` for any well-formed, plausible record.
pub(super) fn valid_record_after(
    buf: &[u8],
    bad: usize,
    last_good_lsn: u64,
) -> Option<(usize, u64)> {
    let mut pos = bad + 1;
    while pos + FRAME_HEADER_LEN <= buf.len() {
        let len = read_u32(buf, pos) as usize;
        let lsn = read_u64(buf, pos + 8);
        let fits = pos + FRAME_HEADER_LEN + len <= buf.len();
        let plausible = lsn > last_good_lsn && lsn - last_good_lsn <= LSN_PLAUSIBLE_WINDOW;
        if fits && plausible && parse_frame(buf, pos).is_ok() {
            return Some((pos, lsn));
        }
        pos += 1;
    }
    None
}

/// What [`parse_file`] found.
pub(super) struct Parsed {
    pub(super) records: Records,
    /// The end of the last good record (where the next one goes).
    pub(super) end: u64,
    /// Whether something other than zeros follows `end` (a torn write to drop).
    pub(super) torn: bool,
    /// The header's format version (`None`: a torn header, start the file over).
    pub(super) version: Option<u16>,
}

impl Parsed {
    /// Where a torn write starts, for [`Replay::torn_tail`] (a torn header: offset 0).
    pub(super) fn torn_tail(&self) -> Option<u64> {
        match self.version {
            None => Some(0),
            Some(_) => self.torn.then_some(self.end),
        }
    }
}

/// Parses a whole journal file: the records, where they end, and whether a torn tail follows.
pub(super) fn parse_file(path: &Path, buf: &[u8]) -> Result<Parsed, StorageError> {
    let header = header_bytes();
    if buf.len() < HEADER_LEN as usize {
        // A crash while writing the header of a new file leaves a prefix of it.
        if header.starts_with(buf) {
            return Ok(Parsed {
                records: Vec::new(),
                end: 0,
                torn: true,
                version: None,
            });
        }
        return Err(corrupt(path, "file too short for a journal header".into()));
    }
    if &buf[..6] != MAGIC {
        return Err(corrupt(
            path,
            "not a LocalZure journal (bad magic at offset 0)".into(),
        ));
    }
    let version = u16::from_le_bytes([buf[6], buf[7]]);
    crate::storage::schema::JOURNAL_FILE.check(i64::from(version), path)?;
    if version < MIN_FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!("journal format version {version} is unknown (supported: {MIN_FORMAT_VERSION} to {FORMAT_VERSION})"),
        ));
    }
    let mut records = Vec::new();
    let mut pos = HEADER_LEN as usize;
    let mut last_lsn = 0u64;
    while pos < buf.len() {
        // The clean end: nothing but (preallocated) zeros from here on.
        if buf[pos..].iter().all(|&b| b == 0) {
            break;
        }
        let problem = match parse_frame(buf, pos) {
            Ok((lsn, _, _)) if lsn <= last_lsn => {
                format!("LSN {lsn} does not follow LSN {last_lsn}")
            }
            Ok((lsn, start, end)) => {
                records.push((lsn, buf[start..end].to_vec()));
                last_lsn = lsn;
                pos = end;
                continue;
            }
            Err(problem) => problem,
        };
        if let Some((later, later_lsn)) = valid_record_after(buf, pos, last_lsn) {
            return Err(corrupt(
                path,
                format!(
                    "bad record at byte offset {pos} ({problem}) followed by a valid record \
                     (LSN {later_lsn}) at offset {later}"
                ),
            ));
        }
        return Ok(Parsed {
            records,
            end: pos as u64,
            torn: true,
            version: Some(version),
        });
    }
    Ok(Parsed {
        records,
        end: pos.min(buf.len()) as u64,
        torn: false,
        version: Some(version),
    })
}

/// fsyncs a directory so a create or rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` with `.tmp` appended to its file name.
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

//! The commit journal: segment files of checksummed batches, the redo log in front of sled.
//!
//! [`super::layered::LayeredDb`] encodes each atomic batch into an [`EntryBuffer`] with a
//! sequence number; a group commit appends the buffer to the current segment and
//! `fdatasync`s it (one sequential write); a checkpoint rotates to a new segment and, once
//! sled is flushed, deletes the old ones. On open every intact entry is returned for replay.
//!
//! Entry format (little endian): `len: u32, crc32(body): u32, body` where body is
//! `seq: u64, ops: u32` then per op `kind: u8 (1 put, 2 delete), key_len: u32, key,
//! [value_len: u32, value]`. A torn entry at the end of the last segment is an unacknowledged
//! write and is dropped; damage anywhere else is reported as corruption.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pushgate_engine::error::StoreError;

/// The sled key holding the sequence number of the last batch applied to sled.
pub const SEQUENCE_KEY: &[u8] = b"\x00journal-seq";

const PUT: u8 = 1;
const DELETE: u8 = 2;
const SEGMENT_PREFIX: &str = "segment-";

/// One write of a batch: a key and its new value, or `None` to delete it.
pub type Write1 = (Vec<u8>, Option<Vec<u8>>);

/// A batch read back from the journal.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub writes: Vec<Write1>,
}

/// Encoded batches not yet written to a segment, and the next sequence number.
#[derive(Debug)]
pub struct EntryBuffer {
    bytes: Vec<u8>,
    next_seq: u64,
}

impl EntryBuffer {
    /// An empty buffer whose first batch gets `next_seq`.
    pub fn new(next_seq: u64) -> Self {
        EntryBuffer {
            bytes: Vec::new(),
            next_seq,
        }
    }

    /// Appends a batch; returns the sequence number it got.
    pub fn push(&mut self, writes: &[Write1]) -> u64 {
        let seq = self.next_seq;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 8]);
        self.bytes.extend_from_slice(&seq.to_le_bytes());
        self.bytes
            .extend_from_slice(&(writes.len() as u32).to_le_bytes());
        for (key, value) in writes {
            self.bytes.push(if value.is_some() { PUT } else { DELETE });
            put_bytes(&mut self.bytes, key);
            if let Some(value) = value {
                put_bytes(&mut self.bytes, value);
            }
        }
        let body_len = (self.bytes.len() - start - 8) as u32;
        let crc = crc32fast::hash(&self.bytes[start + 8..]);
        self.bytes[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        self.bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.next_seq += 1;
        seq
    }

    /// Takes the encoded batches; returns them with the sequence number of the last one.
    pub fn take(&mut self) -> (Vec<u8>, u64) {
        (std::mem::take(&mut self.bytes), self.next_seq - 1)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The journal's segment files; the owner serialises access.
pub struct Journal {
    dir: PathBuf,
    file: File,
    number: u64,
}

/// What [`Journal::open`] found on disk.
pub struct Recovered {
    pub journal: Journal,
    /// Every intact entry, oldest first (the caller skips those sled already has).
    pub entries: Vec<Entry>,
    /// Segment numbers holding those entries (delete after they are applied and flushed).
    pub old_segments: Vec<u64>,
}

fn io_error(path: &Path, e: io::Error) -> StoreError {
    StoreError::Backend(format!("journal {}: {e}", path.display()))
}

impl Journal {
    /// Opens the journal directory, reads every segment, and starts a new segment after them.
    pub fn open(dir: &Path) -> Result<Recovered, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut numbers = segment_numbers(dir)?;
        numbers.sort_unstable();
        let mut entries = Vec::new();
        for (i, number) in numbers.iter().enumerate() {
            let path = segment_path(dir, *number);
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            let last = i + 1 == numbers.len();
            let intact = parse_segment(&bytes, &path, last, &mut entries)?;
            if intact < bytes.len() {
                // Cut the torn tail off, so the segment reads cleanly once it is no longer last.
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(intact as u64).and_then(|()| f.sync_all()))
                    .map_err(|e| io_error(&path, e))?;
            }
        }
        let number = numbers.last().map_or(1, |n| n + 1);
        Ok(Recovered {
            journal: Journal {
                dir: dir.to_path_buf(),
                file: create_segment(dir, number)?,
                number,
            },
            entries,
            old_segments: numbers,
        })
    }

    /// Appends encoded batches to the current segment and syncs it to disk.
    pub fn append_synced(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&segment_path(&self.dir, self.number), e))
    }

    /// Starts a new segment; returns the number of the one before it.
    pub fn rotate(&mut self) -> Result<u64, StoreError> {
        let old = self.number;
        self.file = create_segment(&self.dir, old + 1)?;
        self.number = old + 1;
        Ok(old)
    }

    /// Deletes segments numbered `number` and below.
    pub fn remove_through(&self, number: u64) -> Result<(), StoreError> {
        for n in segment_numbers(&self.dir)? {
            if n <= number {
                let path = segment_path(&self.dir, n);
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{number:020}"))
}

fn segment_numbers(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let item = item.map_err(|e| io_error(dir, e))?;
        let name = item.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    Ok(out)
}

fn create_segment(dir: &Path, number: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, number);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    // Make the new file's directory entry durable, so a synced write to it survives a crash.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    Ok(file)
}

/// Reads a little-endian u32 at `*at`, advancing it.
fn read_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let v = bytes.get(*at..*at + 4)?;
    *at += 4;
    Some(u32::from_le_bytes(v.try_into().ok()?))
}

fn read_slice<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = read_u32(bytes, at)? as usize;
    let v = bytes.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(v)
}

fn parse_body(body: &[u8]) -> Option<Entry> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let mut at = 8;
    let count = read_u32(body, &mut at)?;
    let mut writes = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let kind = *body.get(at)?;
        at += 1;
        let key = read_slice(body, &mut at)?.to_vec();
        let value = match kind {
            PUT => Some(read_slice(body, &mut at)?.to_vec()),
            DELETE => None,
            _ => return None,
        };
        writes.push((key, value));
    }
    (at == body.len()).then_some(Entry { seq, writes })
}

/// Appends the segment's intact entries to `out`; returns how many bytes they take.
fn parse_segment(
    bytes: &[u8],
    path: &Path,
    last: bool,
    out: &mut Vec<Entry>,
) -> Result<usize, StoreError> {
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let entry = (|| {
            let len = read_u32(bytes, &mut at)? as usize;
            let crc = read_u32(bytes, &mut at)?;
            let body = bytes.get(at..at.checked_add(len)?)?;
            at += len;
            if crc32fast::hash(body) != crc {
                return None;
            }
            parse_body(body)
        })();
        match entry {
            Some(entry) => out.push(entry),
            // A torn tail of the newest segment: written but never synced, so never
            // acknowledged.
            None if last => {
                tracing::warn!(
                    segment = %path.display(),
                    offset = start,
                    dropped_bytes = bytes.len() - start,
                    "journal ends with an incomplete entry (an unacknowledged write); dropped"
                );
                return Ok(start);
            }
            None => {
                return Err(StoreError::Corrupt {
                    key: path.display().to_string(),
                    reason: format!("damaged journal entry at byte {start}"),
                })
            }
        }
    }
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Write1 {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    /// A new journal in `dir` and a buffer numbering from 1.
    fn fresh(dir: &Path) -> (Journal, EntryBuffer) {
        (
            Journal::open(dir).expect("open").journal,
            EntryBuffer::new(1),
        )
    }

    fn write(journal: &mut Journal, buffer: &mut EntryBuffer, batches: &[&[Write1]]) {
        for batch in batches {
            buffer.push(batch);
        }
        let (bytes, _) = buffer.take();
        journal.append_synced(&bytes).expect("append");
    }

    #[test]
    fn entries_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, mut buffer) = fresh(dir.path());
        write(
            &mut journal,
            &mut buffer,
            &[&[put("a", "1"), (b"b".to_vec(), None)], &[put("a", "2")]],
        );
        buffer.push(&[put("never", "synced")]);
        drop(journal);
        let again = Journal::open(dir.path()).expect("reopen");
        assert_eq!(again.entries.len(), 2);
        assert_eq!(again.entries[0].seq, 1);
        assert_eq!(again.entries[0].writes[1], (b"b".to_vec(), None));
        assert_eq!(again.entries[1].seq, 2);
        assert_eq!(again.entries[1].writes, vec![put("a", "2")]);
    }

    #[test]
    fn a_torn_tail_is_dropped_but_damage_elsewhere_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, mut buffer) = fresh(dir.path());
        write(
            &mut journal,
            &mut buffer,
            &[&[put("a", "1")], &[put("b", "2")]],
        );
        drop(journal);
        let path = segment_path(dir.path(), 1);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("tear");
        let again = Journal::open(dir.path()).expect("reopen");
        assert_eq!(again.entries.len(), 1, "the torn second entry is dropped");
        drop(again);

        // Segment 1 is no longer the newest (segment 2 was created by the reopen): the same
        // damage now means lost data, not an unacknowledged tail.
        let mut flipped = bytes.clone();
        flipped[10] ^= 0xff;
        std::fs::write(&path, &flipped).expect("flip");
        let err = Journal::open(dir.path())
            .err()
            .expect("corruption reported");
        assert!(err.to_string().contains("damaged journal entry"), "{err}");
    }

    #[test]
    fn rotation_and_removal_keep_only_newer_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, mut buffer) = fresh(dir.path());
        write(&mut journal, &mut buffer, &[&[put("a", "1")]]);
        let old = journal.rotate().expect("rotate");
        write(&mut journal, &mut buffer, &[&[put("b", "2")]]);
        journal.remove_through(old).expect("remove");
        drop(journal);
        let again = Journal::open(dir.path()).expect("reopen");
        assert_eq!(again.entries.len(), 1);
        assert_eq!(again.entries[0].writes, vec![put("b", "2")]);
    }
}

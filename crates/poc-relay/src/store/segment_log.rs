//! The relay's durable store: an append-only log of segment files with an
//! index in memory.
//!
//! A relay's store is a queue: an envelope is written once, read once or a
//! few times, and deleted. SQLite paid for what a queue never needs (B-tree
//! pages rewritten on every commit, ~9 KB written per 4 KiB envelope, ~50 us
//! of CPU per envelope in BENCHMARKS.md). Here a deposit is one record
//! appended to a file, an acknowledgement one small record naming the ids it
//! removes, and a segment whose envelopes are all gone is deleted whole.
//!
//! # Files
//!
//! `DIR/NNNNNNNNNNNNNNNN.seg` (the segment's number, 16 hex digits), 0600,
//! in a 0700 directory. A segment starts with a 24-byte header: the magic
//! `POCRLOG1`, its number (u64 LE) and the next envelope id when it was
//! created (u64 LE, so ids are never reused even when every older segment
//! is gone). Then records, each:
//!
//! | field | bytes |
//! | --- | --- |
//! | length of what follows the checksum | u32 LE |
//! | CRC-32 (IEEE) of what follows the checksum | u32 LE |
//! | kind: 1 envelope, 2 removal | 1 |
//! | envelope: id u64 LE, mailbox 16 bytes, expiry u64 LE, the envelope | ... |
//! | removal: ids, u64 LE each | ... |
//!
//! # Why it survives a crash
//!
//! - A record is written with one `pwrite` at the end of the newest
//!   segment. A deposit is answered only after a [`Flusher`] call begun
//!   after the write has returned (the relay's pipelined group commit), so
//!   an answered deposit is on the disk.
//! - A crash can leave the newest segment ending in a torn record. Reading
//!   back stops at the first record whose length or checksum is wrong and
//!   cuts the file there: what follows was never flushed, so never answered.
//!   The same damage in an older segment (flushed before the next one was
//!   created) is an error that names the file: it is not a crash's doing.
//! - A new segment is written under a temporary name, flushed, renamed into
//!   place and the directory flushed, so a segment always has its header.
//! - A removal may name an envelope in an older segment, so segments are
//!   deleted oldest first, and only once none of their envelopes is live.
//!   A long-lived envelope would hold every later segment on the disk: when
//!   the log grows past twice its live bytes, the oldest segment's live
//!   envelopes are copied to the newest (same id), flushed, and the oldest
//!   deleted. Reading back, the later copy of an id wins.
//! - Removals need no flush of their own (as in the SQLite store): a
//!   removal lost in a crash brings an envelope back, and its recipient,
//!   which recorded it, acknowledges the duplicate again.
//!
//! - A failed flush anywhere (the flusher's, or the store's own when it
//!   closes a segment or compacts) fails every later flush: after a failed
//!   fsync the kernel may have dropped pages, and a later fsync could
//!   succeed without them.
//!
//! # What it costs
//!
//! Memory: the index holds every stored envelope's location, about 100
//! bytes each (95 measured over 200,000 envelopes), bounded like the store
//! itself by the mailbox quotas. Disk: at most about twice the live bytes
//! plus two segments, by compaction. The expiry sweep walks the index.
//!
//! Deleted segments are unlinked, not overwritten: what lingers in free
//! disk blocks is ciphertext the relay held anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use poc_proto::Timestamp;
use poc_proto::certificate::MailboxId;

use super::{
    BatchUsage, DepositOutcome, Flusher, NewEnvelope, Page, Quota, RelayStore, StoreError,
    StoredEnvelope, Usage, len64,
};

const MAGIC: &[u8; 8] = b"POCRLOG1";
const HEADER_LEN: usize = 24;
/// Length and checksum in front of every record.
const RECORD_HEAD: usize = 8;
const KIND_ENVELOPE: u8 = 1;
const KIND_REMOVAL: u8 = 2;
/// Kind, id, mailbox and expiry in front of an envelope's bytes.
const ENVELOPE_FIXED: usize = 1 + 8 + 16 + 8;
/// Ids per removal record, so that one stays far below [`MAX_RECORD`].
const REMOVALS_PER_RECORD: usize = 65_536;
/// The longest record read back: the largest envelope the protocol allows
/// with its fields. A longer length can only be damage.
const MAX_RECORD: usize = poc_proto::limits::MAX_ENVELOPE_BYTES + ENVELOPE_FIXED;
/// A segment is closed once it holds this much (a little more by its last
/// record), so a segment is deleted or compacted in one step of bounded
/// size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Held open for the newest segment only: a relay with a large backlog
    /// has many segments, and one descriptor each would run into the
    /// process's limit. Older ones are opened to be read
    /// ([`LogStore::reader`]).
    file: Option<Arc<File>>,
    path: PathBuf,
    /// Bytes of complete records (and header): where the next record goes.
    len: u64,
    /// Envelopes of the index stored in this segment.
    live: u64,
    live_bytes: u64,
}

impl Segment {
    /// The newest segment's file, the only one written.
    fn writable(&self) -> Result<&Arc<File>, StoreError> {
        self.file.as_ref().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: a closed segment was to be written",
                self.path.display()
            ))
        })
    }
}

/// Where an envelope of the index is.
#[derive(Debug, Clone, Copy)]
struct Location {
    mailbox: MailboxId,
    segment: u64,
    /// Offset of the envelope's bytes in the segment file.
    offset: u64,
    len: u32,
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct Mailbox {
    ids: BTreeSet<u64>,
    usage: Usage,
}

/// What the store shares with its [`LogFlusher`].
#[derive(Debug, Default)]
struct Shared {
    /// The newest segment's file and path; `None` only while opening.
    head: Mutex<Option<(Arc<File>, PathBuf)>>,
    /// A flush has failed: no later one may report success.
    flush_failed: AtomicBool,
}

impl Shared {
    fn set_head(&self, file: &Arc<File>, path: &Path) {
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Arc::clone(file), path.to_path_buf()));
    }

    /// Flushes `file`; a failure here or earlier fails it.
    fn sync(&self, file: &File, path: &Path) -> Result<(), StoreError> {
        let result = if self.flush_failed.load(Ordering::Acquire) {
            Err(std::io::Error::other(
                "an earlier flush of the relay log failed; restart the relay",
            ))
        } else {
            file.sync_data()
        };
        result.map_err(|source| {
            self.flush_failed.store(true, Ordering::Release);
            StoreError::Flush {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Envelopes in an append-only segment log (see the module documentation).
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    envelopes: HashMap<u64, Location>,
    mailboxes: HashMap<MailboxId, Mailbox>,
    next_id: u64,
    shared: Arc<Shared>,
    flusher: Option<LogFlusher>,
    /// Records being written, kept to reuse its allocation.
    buf: Vec<u8>,
    /// The closed segment read last, kept open: a fetch or a compaction
    /// reads several envelopes of one segment in a row.
    last_read: std::cell::RefCell<Option<(u64, Arc<File>)>>,
    /// Set when a failed write could not be undone: the newest segment may
    /// end in garbage that a later record would hide behind.
    broken: Option<String>,
}

/// Flushes the newest segment of a [`LogStore`]. A segment is flushed by
/// the store itself before the next one is created, so the newest is the
/// only one that can hold unflushed records.
#[derive(Debug)]
pub struct LogFlusher {
    shared: Arc<Shared>,
}

impl Flusher for LogFlusher {
    fn flush(&mut self) -> Result<(), StoreError> {
        let head = self
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match head {
            Some((file, path)) => self.shared.sync(&file, &path),
            None => Ok(()),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Log {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_name(number: u64) -> String {
    format!("{number:016x}.seg")
}

/// The segment number a file name stands for, if it is a segment's name.
fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Appends one record (kind and body given in pieces) to `buf`.
fn push_record(buf: &mut Vec<u8>, pieces: &[&[u8]]) {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    for piece in pieces {
        crc.update(piece);
    }
    // Callers keep records below MAX_RECORD, far below u32::MAX.
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    for piece in pieces {
        buf.extend_from_slice(piece);
    }
}

/// Appends an envelope record to `buf`; returns where in `buf` the
/// envelope's bytes begin.
fn push_envelope(
    buf: &mut Vec<u8>,
    id: u64,
    mailbox: &MailboxId,
    expires_at: Timestamp,
    envelope: &[u8],
) -> u64 {
    let at = len64(buf) + (RECORD_HEAD + ENVELOPE_FIXED) as u64;
    push_record(
        buf,
        &[
            &[KIND_ENVELOPE],
            &id.to_le_bytes(),
            &mailbox.0,
            &expires_at.0.to_le_bytes(),
            envelope,
        ],
    );
    at
}

/// A record read back from a segment.
enum Record<'a> {
    Envelope {
        id: u64,
        mailbox: MailboxId,
        expires_at: Timestamp,
        /// The envelope.
        bytes: &'a [u8],
    },
    Removal(Vec<u64>),
}

/// The record at the start of `rest`, and its length with its head;
/// `Ok(None)` when the bytes there are not a complete record with a good
/// checksum (a torn write in the newest segment), `Err` when the checksum
/// holds but the content does not parse (not a crash's doing).
fn read_record(rest: &[u8]) -> Result<Option<(Record<'_>, usize)>, String> {
    let (Some(len), Some(crc)) = (u32_at(rest, 0), u32_at(rest, 4)) else {
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_RECORD {
        return Ok(None);
    }
    let Some(payload) = rest.get(RECORD_HEAD..RECORD_HEAD + len) else {
        return Ok(None);
    };
    if crc32fast::hash(payload) != crc {
        return Ok(None);
    }
    let (kind, body) = payload.split_first().ok_or("an empty record")?;
    let record = match *kind {
        KIND_ENVELOPE => {
            let id = u64_at(body, 0).ok_or("an envelope record too short for its id")?;
            let mailbox: [u8; 16] = body
                .get(8..24)
                .and_then(|m| m.try_into().ok())
                .ok_or("an envelope record too short for its mailbox")?;
            let expires_at =
                u64_at(body, 24).ok_or("an envelope record too short for its expiry")?;
            Record::Envelope {
                id,
                mailbox: MailboxId(mailbox),
                expires_at: Timestamp(expires_at),
                bytes: body.get(32..).unwrap_or_default(),
            }
        }
        KIND_REMOVAL => {
            if body.len() % 8 != 0 {
                return Err("a removal record of a length not a multiple of 8".into());
            }
            Record::Removal(
                body.chunks_exact(8)
                    .filter_map(|id| id.try_into().ok().map(u64::from_le_bytes))
                    .collect(),
            )
        }
        other => return Err(format!("a record of unknown kind {other}")),
    };
    Ok(Some((record, RECORD_HEAD + len)))
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`, with segments of
    /// [`DEFAULT_SEGMENT_BYTES`].
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        LogStore::open_with_segment_bytes(dir, DEFAULT_SEGMENT_BYTES)
    }

    /// Opens the log in `dir`, closing segments at `segment_bytes` (small
    /// ones let tests reach segment deletion and compaction quickly).
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<LogStore, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(number) = segment_number(&name) {
                numbers.push(number);
            } else if name.ends_with(".seg.tmp") {
                // A segment whose creation a crash interrupted: never used.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            } else {
                tracing::warn!(file = %entry.path().display(), "not a relay log segment; left alone");
            }
        }
        numbers.sort_unstable();
        for pair in numbers.windows(2) {
            if let [older, newer] = *pair
                && newer != older + 1
            {
                return Err(StoreError::Corrupt(format!(
                    "{}: segment {} is missing between {older:016x} and {newer:016x}",
                    dir.display(),
                    segment_name(older + 1)
                )));
            }
        }

        let mut store = LogStore {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER_LEN as u64 + 1),
            segments: BTreeMap::new(),
            envelopes: HashMap::new(),
            mailboxes: HashMap::new(),
            next_id: 1,
            shared: Arc::new(Shared::default()),
            flusher: None,
            buf: Vec::new(),
            last_read: std::cell::RefCell::new(None),
            broken: None,
        };
        let newest = numbers.last().copied();
        for number in numbers {
            store.replay(number, Some(number) == newest)?;
        }
        match newest {
            Some(number) => {
                let head = store.segment(number)?;
                store.shared.set_head(head.writable()?, &head.path);
            }
            None => store.create_segment(0)?,
        }
        store.release_segments()?;
        store.flusher = Some(LogFlusher {
            shared: Arc::clone(&store.shared),
        });
        Ok(store)
    }

    /// Reads one segment into the index; cuts a torn tail off the newest.
    fn replay(&mut self, number: u64, newest: bool) -> Result<(), StoreError> {
        let path = self.dir.join(segment_name(number));
        let file = OpenOptions::new()
            .read(true)
            .write(newest)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(io_error(&path))?;
        let header = bytes.get(..HEADER_LEN);
        if header.and_then(|h| h.get(..8)) != Some(&MAGIC[..]) || u64_at(&bytes, 8) != Some(number)
        {
            return Err(StoreError::Corrupt(format!(
                "{}: not the header of relay log segment {number:016x}",
                path.display()
            )));
        }
        self.next_id = self.next_id.max(u64_at(&bytes, 16).unwrap_or(0));
        let file = Arc::new(file);
        self.segments.insert(
            number,
            Segment {
                file: newest.then(|| Arc::clone(&file)),
                path: path.clone(),
                len: HEADER_LEN as u64,
                live: 0,
                live_bytes: 0,
            },
        );
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let rest = bytes.get(at..).unwrap_or_default();
            let (record, len) = match read_record(rest) {
                Ok(Some(read)) => read,
                Ok(None) if newest => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = at,
                        dropped_bytes = rest.len(),
                        "the relay log ends in an incomplete record (a crash during a write); cutting it off"
                    );
                    file.set_len(at as u64).map_err(io_error(&path))?;
                    file.sync_data().map_err(io_error(&path))?;
                    break;
                }
                Ok(None) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: damaged record at byte {at} (length or checksum wrong) in a segment \
                         that was complete",
                        path.display()
                    )));
                }
                Err(what) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: {what} at byte {at}",
                        path.display()
                    )));
                }
            };
            match record {
                Record::Envelope {
                    id,
                    mailbox,
                    expires_at,
                    bytes: envelope,
                } => {
                    let offset = (at + RECORD_HEAD + ENVELOPE_FIXED) as u64;
                    let len = u32::try_from(envelope.len()).unwrap_or(u32::MAX);
                    // A copy made by compaction replaces the original.
                    self.remove(id);
                    self.insert(
                        id,
                        Location {
                            mailbox,
                            segment: number,
                            offset,
                            len,
                            expires_at,
                        },
                    );
                    self.next_id = self.next_id.max(id.saturating_add(1));
                }
                Record::Removal(ids) => {
                    for id in ids {
                        // Unknown ids were in segments already deleted.
                        self.remove(id);
                        self.next_id = self.next_id.max(id.saturating_add(1));
                    }
                }
            }
            at += len;
        }
        self.segment_mut(number)?.len = at as u64;
        Ok(())
    }

    fn segment(&self, number: u64) -> Result<&Segment, StoreError> {
        self.segments
            .get(&number)
            .ok_or_else(|| StoreError::Corrupt(format!("segment {number:016x} is not open")))
    }

    fn segment_mut(&mut self, number: u64) -> Result<&mut Segment, StoreError> {
        self.segments
            .get_mut(&number)
            .ok_or_else(|| StoreError::Corrupt(format!("segment {number:016x} is not open")))
    }

    fn newest(&self) -> Result<u64, StoreError> {
        self.segments
            .last_key_value()
            .map(|(number, _)| *number)
            .ok_or_else(|| StoreError::Corrupt("the relay log has no segment".into()))
    }

    /// Creates segment `number` (temporary name, header, flush, rename,
    /// directory flush) and makes it the newest.
    fn create_segment(&mut self, number: u64) -> Result<(), StoreError> {
        let path = self.dir.join(segment_name(number));
        let temporary = self.dir.join(format!("{}.tmp", segment_name(number)));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error(&temporary))?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&number.to_le_bytes());
        header.extend_from_slice(&self.next_id.to_le_bytes());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        let file = Arc::new(file);
        self.shared.set_head(&file, &path);
        self.segments.insert(
            number,
            Segment {
                file: Some(file),
                path,
                len: HEADER_LEN as u64,
                live: 0,
                live_bytes: 0,
            },
        );
        Ok(())
    }

    /// Appends `self.buf` to the newest segment (closing it first if full):
    /// the segment's number and where the records begin. After a failed
    /// write the segment is cut back to its last complete record.
    fn append(&mut self) -> Result<(u64, u64), StoreError> {
        if let Some(why) = &self.broken {
            return Err(StoreError::Corrupt(why.clone()));
        }
        let mut number = self.newest()?;
        if self.segment(number)?.len >= self.segment_bytes {
            // Everything in a closed segment is flushed before the next
            // exists: the flusher only ever syncs the newest.
            let closing = self.segment(number)?;
            self.shared.sync(closing.writable()?, &closing.path)?;
            number += 1;
            self.create_segment(number)?;
            self.segment_mut(number - 1)?.file = None;
        }
        let added = len64(&self.buf);
        let segment = self
            .segments
            .get_mut(&number)
            .ok_or_else(|| StoreError::Corrupt(format!("segment {number:016x} is not open")))?;
        let start = segment.len;
        let file = Arc::clone(segment.writable()?);
        if let Err(source) = file.write_all_at(&self.buf, start) {
            let path = segment.path.clone();
            if let Err(cut) = file.set_len(start) {
                self.broken = Some(format!(
                    "{}: a failed write could not be cut off ({cut}); restart the relay",
                    path.display()
                ));
            }
            return Err(StoreError::Log { path, source });
        }
        segment.len = start + added;
        Ok((number, start))
    }

    fn insert(&mut self, id: u64, location: Location) {
        let len = u64::from(location.len);
        if let Some(segment) = self.segments.get_mut(&location.segment) {
            segment.live += 1;
            segment.live_bytes = segment.live_bytes.saturating_add(len);
        }
        let mailbox = self.mailboxes.entry(location.mailbox).or_default();
        mailbox.ids.insert(id);
        mailbox.usage.envelopes += 1;
        mailbox.usage.bytes = mailbox.usage.bytes.saturating_add(len);
        self.envelopes.insert(id, location);
    }

    fn remove(&mut self, id: u64) -> Option<Location> {
        let location = self.envelopes.remove(&id)?;
        let len = u64::from(location.len);
        if let Some(segment) = self.segments.get_mut(&location.segment) {
            segment.live = segment.live.saturating_sub(1);
            segment.live_bytes = segment.live_bytes.saturating_sub(len);
        }
        if let Some(mailbox) = self.mailboxes.get_mut(&location.mailbox) {
            mailbox.ids.remove(&id);
            mailbox.usage.envelopes = mailbox.usage.envelopes.saturating_sub(1);
            mailbox.usage.bytes = mailbox.usage.bytes.saturating_sub(len);
            if mailbox.ids.is_empty() {
                self.mailboxes.remove(&location.mailbox);
            }
        }
        Some(location)
    }

    /// An open file of segment `number`, to read from.
    fn reader(&self, number: u64) -> Result<Arc<File>, StoreError> {
        let segment = self.segment(number)?;
        if let Some(file) = &segment.file {
            return Ok(Arc::clone(file));
        }
        let mut last = self.last_read.borrow_mut();
        if let Some((held, file)) = last.as_ref()
            && *held == number
        {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(File::open(&segment.path).map_err(io_error(&segment.path))?);
        *last = Some((number, Arc::clone(&file)));
        Ok(file)
    }

    fn read(&self, location: &Location) -> Result<Vec<u8>, StoreError> {
        let file = self.reader(location.segment)?;
        let mut bytes = vec![0; usize::try_from(location.len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut bytes, location.offset)
            .map_err(|source| StoreError::Log {
                path: self.dir.join(segment_name(location.segment)),
                source,
            })?;
        Ok(bytes)
    }

    /// Writes removal records for `ids` (all in the index) and drops them
    /// from the index.
    fn remove_durably(&mut self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for chunk in ids.chunks(REMOVALS_PER_RECORD) {
            let body: Vec<u8> = chunk.iter().flat_map(|id| id.to_le_bytes()).collect();
            push_record(&mut self.buf, &[&[KIND_REMOVAL], &body]);
        }
        self.append()?;
        for id in ids {
            self.remove(*id);
        }
        self.release_segments()?;
        self.compact_oldest_if_sparse()
    }

    /// Deletes the oldest segments while none of their envelopes is live
    /// (never the newest).
    fn release_segments(&mut self) -> Result<(), StoreError> {
        let newest = self.newest()?;
        while let Some(entry) = self.segments.first_entry() {
            if *entry.key() == newest || entry.get().live > 0 {
                break;
            }
            let number = *entry.key();
            let segment = entry.remove();
            let mut last = self.last_read.borrow_mut();
            if last.as_ref().is_some_and(|(held, _)| *held == number) {
                // An open descriptor would keep the file's blocks in use.
                *last = None;
            }
            drop(last);
            std::fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
            // Deleted in order, or a removal could outlive what it removed.
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// When the segments hold more than twice the live envelopes (and more
    /// than two segments' worth), copies the oldest segment's live
    /// envelopes to the newest and deletes it: one segment per call, so
    /// the work per call stays bounded.
    fn compact_oldest_if_sparse(&mut self) -> Result<(), StoreError> {
        let on_disk: u64 = self.segments.values().map(|s| s.len).sum();
        let live: u64 = self.segments.values().map(|s| s.live_bytes).sum();
        let newest = self.newest()?;
        let Some((&oldest, _)) = self.segments.first_key_value() else {
            return Ok(());
        };
        if oldest == newest
            || on_disk
                <= live
                    .saturating_mul(2)
                    .saturating_add(self.segment_bytes * 2)
        {
            return Ok(());
        }
        let mut moving: Vec<(u64, Location)> = self
            .envelopes
            .iter()
            .filter(|(_, location)| location.segment == oldest)
            .map(|(id, location)| (*id, *location))
            .collect();
        if moving.is_empty() {
            return self.release_segments();
        }
        moving.sort_unstable_by_key(|(id, _)| *id);
        let mut copies = Vec::new();
        let mut offsets = Vec::with_capacity(moving.len());
        for (id, location) in &moving {
            let bytes = self.read(location)?;
            offsets.push(push_envelope(
                &mut copies,
                *id,
                &location.mailbox,
                location.expires_at,
                &bytes,
            ));
        }
        self.buf = copies;
        let (number, start) = self.append()?;
        // The copies must be on the disk before the originals go.
        let segment = self.segment(number)?;
        self.shared.sync(segment.writable()?, &segment.path)?;
        for ((id, location), offset) in moving.into_iter().zip(offsets) {
            self.remove(id);
            self.insert(
                id,
                Location {
                    segment: number,
                    offset: start + offset,
                    ..location
                },
            );
        }
        tracing::info!(segment = oldest, "relay log segment compacted");
        self.release_segments()
    }

    /// Segment files on the disk and the bytes they hold, for tests and
    /// metrics.
    pub fn disk_usage(&self) -> (usize, u64) {
        (
            self.segments.len(),
            self.segments.values().map(|s| s.len).sum(),
        )
    }
}

impl RelayStore for LogStore {
    fn take_flusher(&mut self) -> Option<Box<dyn Flusher>> {
        self.flusher.take().map(|f| Box::new(f) as Box<dyn Flusher>)
    }

    fn deposit_batch(
        &mut self,
        batch: &[NewEnvelope],
        quota: Quota,
    ) -> Result<Vec<DepositOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut pending = BatchUsage::new(quota);
        let mut written: Vec<(u64, u64, &NewEnvelope)> = Vec::with_capacity(batch.len());
        self.buf.clear();
        let mut next_id = self.next_id;
        for new in batch {
            if new.bytes.len() > poc_proto::limits::MAX_ENVELOPE_BYTES {
                return Err(StoreError::Corrupt(format!(
                    "an envelope of {} bytes is larger than the protocol allows",
                    new.bytes.len()
                )));
            }
            let len = len64(&new.bytes);
            let held = || {
                self.mailboxes
                    .get(&new.mailbox)
                    .map(|m| m.usage)
                    .unwrap_or_default()
            };
            if let Err(refused) = pending.admit(new.mailbox, len, held) {
                outcomes.push(refused);
                continue;
            }
            let id = next_id;
            next_id += 1;
            let offset = push_envelope(&mut self.buf, id, &new.mailbox, new.expires_at, &new.bytes);
            written.push((id, offset, new));
            outcomes.push(DepositOutcome::Stored(id));
        }
        if written.is_empty() {
            return Ok(outcomes);
        }
        let (segment, start) = self.append()?;
        self.next_id = next_id;
        for (id, offset, new) in written {
            self.insert(
                id,
                Location {
                    mailbox: new.mailbox,
                    segment,
                    offset: start + offset,
                    len: u32::try_from(new.bytes.len()).unwrap_or(u32::MAX),
                    expires_at: new.expires_at,
                },
            );
        }
        Ok(outcomes)
    }

    fn fetch(
        &mut self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut page = Page::new(max_items, max_bytes);
        let Some(held) = self.mailboxes.get(&mailbox) else {
            return Ok(page.envelopes);
        };
        for id in &held.ids {
            let location = self.envelopes.get(id).ok_or_else(|| {
                StoreError::Corrupt(format!("envelope {id} is in a mailbox but not indexed"))
            })?;
            if location.expires_at < now {
                continue;
            }
            if !page.has_room_for(usize::try_from(location.len).unwrap_or(usize::MAX)) {
                break;
            }
            page.push(StoredEnvelope {
                id: *id,
                expires_at: location.expires_at,
                bytes: self.read(location)?,
            });
        }
        Ok(page.envelopes)
    }

    fn ack(&mut self, mailbox: MailboxId, ids: &[u64]) -> Result<u64, StoreError> {
        let mut own: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.envelopes.get(id).is_some_and(|l| l.mailbox == mailbox))
            .collect();
        own.sort_unstable();
        own.dedup();
        self.remove_durably(&own)?;
        Ok(len64_count(own.len()))
    }

    fn expire(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let mut expired: Vec<u64> = self
            .envelopes
            .iter()
            .filter(|(_, location)| location.expires_at < now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        self.remove_durably(&expired)?;
        Ok(len64_count(expired.len()))
    }

    fn usage(&mut self, mailbox: MailboxId) -> Result<Usage, StoreError> {
        Ok(self
            .mailboxes
            .get(&mailbox)
            .map(|m| m.usage)
            .unwrap_or_default())
    }

    fn totals(&mut self) -> Result<Usage, StoreError> {
        Ok(self
            .mailboxes
            .values()
            .fold(Usage::default(), |t, m| Usage {
                envelopes: t.envelopes + m.usage.envelopes,
                bytes: t.bytes.saturating_add(m.usage.bytes),
            }))
    }

    fn disk_bytes(&mut self) -> Option<u64> {
        Some(self.disk_usage().1)
    }
}

fn len64_count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

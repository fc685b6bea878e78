//! The write queue's write-ahead log, written in a few system calls per commit instead of two per
//! page.
//!
//! SQLite writes each page of a commit to the log as a 24-byte frame header and then the page,
//! each its own `pwrite`: about seventy system calls for a group of twelve bookings and releases
//! (bench/load.sh), each a trap into the kernel and a pass through the file system's write path.
//! The write queue's connection opens its files through a thin layer over SQLite's own `unix` file
//! layer (VFS) that gathers a log file's back-to-back writes in a buffer and hands them to the file
//! in one call before anything else touches that file: a sync, a read, a truncation, its size, a
//! file control, its close, or a write elsewhere in it. The file so receives the same bytes in the
//! same order, and holds all of them whenever SQLite syncs or reads it.
//!
//! Other connections read the log only up to the last commit published in the shared index, and
//! with `synchronous = FULL` SQLite syncs the log before it publishes a commit. With `NORMAL` it
//! publishes without a sync, and another connection could look for frames still in the buffer: the
//! layer is used with `FULL` only. A crash loses what is in the buffer, which is what it loses of
//! writes the file system has not written yet: nothing a sync covered, so nothing acknowledged.
//!
//! Hand-written over `libsqlite3-sys`: the crates that implement a VFS (sqlite-vfs, sqlite-plugin)
//! build a file system of their own, not a layer over SQLite's.

use std::cell::Cell;
use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

const VFS_NAME_C: &CStr = c"gpu-market-log-writes";
/// The layer's name, as `Connection::open_with_flags_and_vfs` takes it.
pub(super) const VFS_NAME: &str = match VFS_NAME_C.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the layer's name is UTF-8"),
};

/// The most bytes gathered before they are written: the largest write the unix VFS makes in one
/// call (it masks a write's length to 17 bits, and reports a longer one as a full disk). That is 31
/// frames of 4 KiB pages; a larger commit goes out in steps of this size.
const GATHER_LIMIT: usize = 0x1ffff;

thread_local! {
    /// What this thread's log files were asked to write, and the calls that wrote it. The write
    /// queue's connection is used on its own thread alone, which reads them after each commit.
    static COUNTS: Cell<LogWriteCounts> =
        const { Cell::new(LogWriteCounts { writes: 0, calls: 0 }) };
}

/// Writes SQLite made to a log through the layer, and the calls that carried them to the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LogWriteCounts {
    pub writes: u64,
    pub calls: u64,
}

/// The counts of the calling thread's log files since it last took them.
pub(super) fn take_counts() -> LogWriteCounts {
    COUNTS.take()
}

fn count(writes: u64, calls: u64) {
    COUNTS.set({
        let counts = COUNTS.get();
        LogWriteCounts {
            writes: counts.writes + writes,
            calls: counts.calls + calls,
        }
    });
}

/// The `unix` VFS the layer stands on, once the layer is registered.
struct Underlying(*mut ffi::sqlite3_vfs);

// SAFETY: SQLite's VFS objects are immutable once registered and made to be used from any thread.
unsafe impl Send for Underlying {}
unsafe impl Sync for Underlying {}

static REGISTERED: OnceLock<Result<Underlying, c_int>> = OnceLock::new();

/// Registers the layer with SQLite (once per process); the error is SQLite's code.
pub(super) fn register() -> Result<(), c_int> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find (which initializes SQLite) and sqlite3_vfs_register are
            // thread-safe; the VFS registered is leaked, so it outlives every connection that uses
            // it.
            unsafe {
                let unix = ffi::sqlite3_vfs_find(c"unix".as_ptr());
                if unix.is_null() {
                    return Err(ffi::SQLITE_NOTFOUND);
                }
                // Every VFS method but xOpen is the unix VFS's own: they create, delete and name
                // files, and those files are unix files.
                let mut layer = std::ptr::read(unix);
                layer.zName = VFS_NAME_C.as_ptr();
                layer.pNext = std::ptr::null_mut();
                layer.szOsFile = c_int::try_from(INNER_OFFSET)
                    .ok()
                    .and_then(|header| header.checked_add((*unix).szOsFile))
                    .ok_or(ffi::SQLITE_INTERNAL)?;
                layer.xOpen = Some(open);
                let registered = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(layer)), 0);
                if registered != ffi::SQLITE_OK {
                    return Err(registered);
                }
                Ok(Underlying(unix))
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(|code| *code)
}

fn underlying() -> *mut ffi::sqlite3_vfs {
    match REGISTERED.get() {
        Some(Ok(Underlying(unix))) => *unix,
        // open() is only reachable through a registered layer.
        _ => std::ptr::null_mut(),
    }
}

/// A file opened through the layer. SQLite allocates `szOsFile` bytes for it: this header, then the
/// unix VFS's own file at [`INNER_OFFSET`].
#[repr(C)]
struct LayeredFile {
    /// First, so that SQLite's pointer to the file is a pointer to this.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// The gathered writes of a log file; null for the database file, whose calls pass through.
    gathered: *mut Gathered,
}

/// Back-to-back writes waiting to be written at `start`.
#[derive(Default)]
struct Gathered {
    start: i64,
    bytes: Vec<u8>,
    writes: u64,
}

const INNER_OFFSET: usize = std::mem::size_of::<LayeredFile>().next_multiple_of(16);

unsafe extern "C" fn open(
    _layer: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let unix = underlying();
    // SAFETY: `file` points to szOsFile bytes SQLite allocated for this file (8-aligned); the unix
    // file lives in them after the header.
    unsafe {
        let layered = file.cast::<LayeredFile>();
        let inner = file
            .cast::<u8>()
            .add(INNER_OFFSET)
            .cast::<ffi::sqlite3_file>();
        layered.write(LayeredFile {
            base: ffi::sqlite3_file {
                pMethods: std::ptr::null(),
            },
            inner,
            gathered: std::ptr::null_mut(),
        });
        let Some(unix_open) = unix.as_ref().and_then(|unix| unix.xOpen) else {
            return ffi::SQLITE_INTERNAL;
        };
        let opened = unix_open(unix, name, inner, flags, out_flags);
        // SQLite closes a file whose methods are set even when its open failed: so is this one.
        if !(*inner).pMethods.is_null() {
            if opened == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
                (*layered).gathered = Box::into_raw(Box::default());
            }
            (*layered).base.pMethods = &METHODS;
        }
        opened
    }
}

/// The layer's file and the unix file's methods under it.
///
/// # Safety
/// `file` was opened by [`open`] and not closed.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (&'a mut LayeredFile, &'a ffi::sqlite3_io_methods) {
    // SAFETY: per the contract; the unix file's methods are set (open checked).
    unsafe {
        let layered = &mut *file.cast::<LayeredFile>();
        let methods = &*(*layered.inner).pMethods;
        (layered, methods)
    }
}

/// Writes what is gathered, if anything. A failed write's bytes are dropped with it: SQLite rolls
/// back the transaction that wrote them, and writes that log range anew.
///
/// # Safety
/// As [`parts`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract; `gathered` is null or the Box open() made.
    unsafe {
        let (layered, methods) = parts(file);
        let Some(gathered) = layered.gathered.as_mut() else {
            return ffi::SQLITE_OK;
        };
        if gathered.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // GATHER_LIMIT keeps the length within c_int.
        let length = c_int::try_from(gathered.bytes.len()).unwrap_or(c_int::MAX);
        let written = write(
            layered.inner,
            gathered.bytes.as_ptr().cast(),
            length,
            gathered.start,
        );
        count(std::mem::take(&mut gathered.writes), 1);
        gathered.bytes.clear();
        written
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes a file open() opened and `amount` readable bytes at `data`.
    unsafe {
        let (layered, methods) = parts(file);
        let length = usize::try_from(amount).unwrap_or(0);
        if let Some(gathered) = layered.gathered.as_mut() {
            let follows = gathered.bytes.is_empty()
                || i64::try_from(gathered.bytes.len())
                    .is_ok_and(|gathered_length| gathered.start + gathered_length == offset);
            if !follows || gathered.bytes.len() + length > GATHER_LIMIT {
                let flushed = flush(file);
                if flushed != ffi::SQLITE_OK {
                    return flushed;
                }
            }
            if length <= GATHER_LIMIT {
                if gathered.bytes.is_empty() {
                    gathered.start = offset;
                }
                gathered
                    .bytes
                    .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), length));
                gathered.writes += 1;
                return ffi::SQLITE_OK;
            }
            count(1, 1);
        }
        match methods.xWrite {
            Some(write) => write(layered.inner, data, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file open() set the methods of, once.
    unsafe {
        let flushed = flush(file);
        let (layered, methods) = parts(file);
        if !layered.gathered.is_null() {
            drop(Box::from_raw(layered.gathered));
            layered.gathered = std::ptr::null_mut();
        }
        let closed = methods
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(layered.inner));
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Forwards a call to the unix file after writing what is gathered, for calls that read or change
/// the file as a whole.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite passes a file open() opened, and arguments valid for the call.
            unsafe {
                let flushed = flush(file);
                if flushed != ffi::SQLITE_OK {
                    return flushed;
                }
                let (layered, methods) = parts(file);
                match methods.$method {
                    Some(method) => method(layered.inner, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

/// Forwards a call that neither reads nor writes the file's bytes.
macro_rules! pass_through {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite passes a file open() opened, and arguments valid for the call.
            unsafe {
                let (layered, methods) = parts(file);
                match methods.$method {
                    Some(method) => method(layered.inner, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

after_flush!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64), ffi::SQLITE_IOERR_READ);
after_flush!(truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
after_flush!(sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
after_flush!(file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
after_flush!(file_control, xFileControl, (op: c_int, argument: *mut c_void), ffi::SQLITE_NOTFOUND);
after_flush!(fetch, xFetch, (offset: i64, amount: c_int, mapped: *mut *mut c_void), {
    *mapped = std::ptr::null_mut();
    ffi::SQLITE_OK
});
pass_through!(unfetch, xUnfetch, (offset: i64, mapped: *mut c_void) -> c_int, ffi::SQLITE_OK);
pass_through!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_OK);
pass_through!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_OK);
pass_through!(check_reserved_lock, xCheckReservedLock, (reserved: *mut c_int) -> c_int, {
    *reserved = 0;
    ffi::SQLITE_OK
});
pass_through!(sector_size, xSectorSize, () -> c_int, 4096);
pass_through!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
pass_through!(
    shm_map,
    xShmMap,
    (page: c_int, size: c_int, extend: c_int, mapped: *mut *mut c_void) -> c_int,
    ffi::SQLITE_IOERR_SHMMAP
);
pass_through!(
    shm_lock,
    xShmLock,
    (offset: c_int, n: c_int, flags: c_int) -> c_int,
    ffi::SQLITE_IOERR_SHMLOCK
);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite passes a file open() opened.
    unsafe {
        let (layered, methods) = parts(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(layered.inner);
        }
    }
}
pass_through!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn layered(path: &std::path::Path) -> Connection {
        register().expect("the layer registers");
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            VFS_NAME,
        )
        .expect("opens through the layer");
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .expect("WAL");
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")
            .expect("setup");
        conn
    }

    /// A row's body: 4 000 copies of a letter that depends on its id, so that a page read back
    /// from the wrong bytes shows.
    const BODY: &str = "substr(replace(hex(zeroblob(2000)), '0', char(65 + id % 26)), 1, 4000)";

    /// Checks, from another connection on SQLite's own layer (which reads only what a sync
    /// covered), that the table holds `rows` rows, each with its body, `tagged` of them tagged.
    fn check(path: &std::path::Path, rows: i64, tagged: i64) {
        let reader = Connection::open(path).expect("reader");
        let (count, intact, tags): (i64, i64, i64) = reader
            .query_row(
                &format!("SELECT count(*), sum(body = {BODY}), sum(tag) FROM t"),
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("reads");
        assert_eq!((count, intact, tags), (rows, rows, tagged));
        let integrity: String = reader
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(integrity, "ok");
    }

    fn insert(rows: i64) -> String {
        format!(
            "WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < {rows})
             INSERT INTO t SELECT id, 0, {BODY} FROM n;"
        )
    }

    #[test]
    fn commits_large_and_small_reach_other_connections_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("market.db");
        let writer = layered(&path);
        writer
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, tag INTEGER NOT NULL, body TEXT NOT NULL)",
            )
            .expect("table");
        // Twenty rows of a page each: their frames fit in one gathering.
        take_counts();
        writer.execute_batch(&insert(20)).expect("small commit");
        let counts = take_counts();
        assert!(
            counts.calls > 0 && counts.calls * 8 <= counts.writes,
            "{counts:?}"
        );
        check(&path, 20, 0);

        // About 4 MB in one transaction, 32 times the most gathered at once, with eight cached pages:
        // pages spill to the log before the commit, are read back and rewritten in place.
        writer
            .execute_batch(&format!(
                "PRAGMA cache_size = 8;
                 BEGIN;
                 DELETE FROM t;
                 {}
                 UPDATE t SET tag = 1 WHERE id > 980 OR id % 7 = 0;
                 COMMIT;",
                insert(1000)
            ))
            .expect("large commit");
        check(&path, 1000, 20 + 140);

        // The writer copies the log into the database (reading it through the layer), and its next
        // commit starts the log over from its first byte.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        writer
            .execute_batch(
                "BEGIN;
                 DELETE FROM t WHERE id > 900;
                 UPDATE t SET tag = 1 WHERE id % 5 = 0;
                 COMMIT;",
            )
            .expect("commit after the checkpoint");
        let tagged = 900 / 7 + 900 / 5 - 900 / 35;
        check(&path, 900, tagged);
        drop(writer);
        check(&path, 900, tagged);
    }

    /// The layer's contract, call by call on a log file: a read sees what was gathered, a write
    /// elsewhere and a sync put it in the file first, and so does a close.
    #[test]
    fn a_log_file_holds_what_it_gathered_before_a_read_a_jump_or_a_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The unix VFS takes a log's permissions from its database file.
        std::fs::write(dir.path().join("market.db"), b"").expect("database file");
        let path = dir.path().join("market.db-wal");
        let name = std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("path");
        let on_disk = || std::fs::read(&path).expect("log file");
        register().expect("the layer registers");
        // SAFETY: the layer's VFS is registered; the file gets szOsFile 8-aligned bytes, and every
        // call passes buffers of the stated sizes.
        unsafe {
            let vfs = ffi::sqlite3_vfs_find(VFS_NAME_C.as_ptr());
            let size = usize::try_from((*vfs).szOsFile).expect("size");
            let mut storage = vec![0u64; size.div_ceil(8)];
            let file = storage.as_mut_ptr().cast::<ffi::sqlite3_file>();
            let flags = ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_READWRITE;
            let opened =
                (*vfs).xOpen.expect("xOpen")(vfs, name.as_ptr(), file, flags, std::ptr::null_mut());
            assert_eq!(opened, ffi::SQLITE_OK);
            let methods = &*(*file).pMethods;
            let write = |byte: u8, length: usize, offset: i64| {
                let bytes = vec![byte; length];
                let length = c_int::try_from(length).expect("length");
                let written =
                    methods.xWrite.expect("xWrite")(file, bytes.as_ptr().cast(), length, offset);
                assert_eq!(written, ffi::SQLITE_OK);
            };
            take_counts();

            write(b'a', 100, 0);
            write(b'b', 100, 100);
            assert!(
                on_disk().is_empty(),
                "back-to-back writes wait to be gathered"
            );
            let mut read = vec![0u8; 200];
            let reading = methods.xRead.expect("xRead")(file, read.as_mut_ptr().cast(), 200, 0);
            assert_eq!(reading, ffi::SQLITE_OK);
            let expected: Vec<u8> = [[b'a'; 100], [b'b'; 100]].concat();
            assert_eq!(read, expected, "a read sees what was gathered");
            assert_eq!(on_disk(), expected);

            write(b'c', 100, 200);
            write(b'd', 100, 1000);
            assert_eq!(
                on_disk().len(),
                300,
                "a write elsewhere puts the gathered ones first"
            );
            assert_eq!(
                methods.xSync.expect("xSync")(file, ffi::SQLITE_SYNC_NORMAL),
                ffi::SQLITE_OK
            );
            let synced = on_disk();
            assert_eq!(
                synced.len(),
                1100,
                "a sync puts what was gathered in the file"
            );
            assert_eq!(&synced[1000..], &[b'd'; 100]);

            write(b'e', 100, 0);
            assert_eq!(methods.xClose.expect("xClose")(file), ffi::SQLITE_OK);
            assert_eq!(
                &on_disk()[..100],
                &[b'e'; 100],
                "a close writes what was gathered"
            );
            assert_eq!(
                take_counts(),
                LogWriteCounts {
                    writes: 5,
                    calls: 4
                }
            );
        }
    }
}

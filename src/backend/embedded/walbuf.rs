//! A SQLite VFS that writes each commit's WAL frames with one `pwrite`.
//!
//! SQLite appends a commit to the write-ahead log one frame at a time, with
//! two writes per frame (its 24-byte header, then the page), and syncs after
//! the last. On a durable `dev` that was ≈ 100 `pwrite`s per group commit and
//! 10 % of its CPU, most of it the kernel's per-call page-cache work
//! (docs/benchmarks.md, eleventh sitting). This VFS is the platform's default
//! one (`unix`) for every file, except that the WAL gathers writes that
//! follow each other into one buffer and writes it before anything that
//! depends on it: a sync (so a commit is on disk before it is answered, as
//! before), a read, a size, a truncate, a file control, a mapping, the close,
//! or a write somewhere else. Order on disk is the order SQLite wrote in, so
//! what a crash can leave is what it could leave before: a WAL whose last
//! frames are missing or torn, which recovery ignores (their checksums).
//! A failed write is reported by the call that made it happen; SQLite then
//! fails the commit, as when its own write fails.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the store opens its file with.
pub(super) const NAME: &CStr = c"switchboard-walbuf";

/// At most this many bytes wait in the buffer (a group commit of 256 jobs
/// writes a few hundred KiB).
const LIMIT: usize = 4 << 20;

/// Most bytes in one write of the base VFS: the `unix` VFS writes at most
/// 128 KiB − 1 per call (it masks the length with `0x1ffff`, and a length of
/// exactly 128 KiB becomes 0, which it reports as a full disk).
const CHUNK: usize = 64 << 10;

/// The platform's default VFS, which does the real work.
struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and lives as long as the process;
// SQLite calls it from any thread.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

static BASE: OnceLock<Option<Base>> = OnceLock::new();

/// Registers the VFS (once) and says whether it can be used; `false` when
/// SQLite has no default VFS to build on or refuses the registration (the
/// caller then opens its file with SQLite's default VFS).
pub(super) fn register() -> bool {
    BASE.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns the
        // default VFS or null. The new VFS is leaked: SQLite keeps a pointer
        // to it for the rest of the process.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return None;
            }
            let mut vfs = std::ptr::read(base);
            vfs.szOsFile = (HEADER + (*base).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.xOpen = Some(open);
            let vfs = Box::into_raw(Box::new(vfs));
            if ffi::sqlite3_vfs_register(vfs, 0) != ffi::SQLITE_OK {
                drop(Box::from_raw(vfs));
                return None;
            }
            Some(Base(base))
        }
    })
    .is_some()
}

fn base() -> *mut ffi::sqlite3_vfs {
    match BASE.get() {
        Some(Some(b)) => b.0,
        // `open` is only reachable through a registered VFS.
        _ => unreachable!("the WAL-buffering VFS is used before it is registered"),
    }
}

/// A WAL file: SQLite's handle, then the buffer, then the base VFS's file.
/// Any other file is the base VFS's file alone, at the start of the space
/// SQLite gives (`szOsFile` has room for both layouts).
#[repr(C)]
struct WalFile {
    file: ffi::sqlite3_file,
    /// Bytes not written yet, to go at `start`.
    buf: Vec<u8>,
    start: i64,
    /// Writes made to the base file (what the tests count).
    writes: u64,
}

/// Where the base VFS's file starts in a [`WalFile`] (8-byte aligned).
const HEADER: usize = std::mem::size_of::<WalFile>().next_multiple_of(8);

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

/// The base VFS's file inside WAL file `f`.
unsafe fn inner(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY (callers): `f` is a `WalFile` opened by `open`.
    unsafe { f.cast::<u8>().add(HEADER).cast() }
}

/// The base file's methods (set by its `xOpen`, never null afterwards).
unsafe fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY (callers): `f` is an open base file.
    unsafe { &*(*f).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    // SAFETY: SQLite gives `szOsFile` bytes at `file`, room for a
    // `WalFile` and the base file after it, or for the base file alone.
    unsafe {
        let base_open = (*base).xOpen.expect("a VFS has xOpen");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(base, name, file, flags, out_flags);
        }
        (*file).pMethods = std::ptr::null();
        let rc = base_open(base, name, inner(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let w = file.cast::<WalFile>();
        std::ptr::addr_of_mut!((*w).buf).write(Vec::new());
        std::ptr::addr_of_mut!((*w).start).write(0);
        std::ptr::addr_of_mut!((*w).writes).write(0);
        (*file).pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

/// Writes what waits in `f`'s buffer.
unsafe fn flush(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY (callers): `f` is an open `WalFile`.
    unsafe {
        let w = &mut *f.cast::<WalFile>();
        if w.buf.is_empty() {
            return ffi::SQLITE_OK;
        }
        let real = inner(f);
        let write = methods(real).xWrite.expect("xWrite");
        let mut rc = ffi::SQLITE_OK;
        let mut at = w.start;
        for chunk in w.buf.chunks(CHUNK) {
            // `chunk.len()` ≤ CHUNK fits a c_int.
            rc = write(real, chunk.as_ptr().cast(), chunk.len() as c_int, at);
            w.writes += 1;
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        w.buf.clear();
        rc
    }
}

unsafe extern "C" fn write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `f` is an open `WalFile`; `data` holds `amt` bytes.
    unsafe {
        let w = &mut *f.cast::<WalFile>();
        let end = w.start + w.buf.len() as i64;
        let amt = match usize::try_from(amt) {
            // Nothing to write (and `data` may then be null).
            Ok(0) | Err(_) => return ffi::SQLITE_OK,
            Ok(n) => n,
        };
        if !w.buf.is_empty() && (offset != end || w.buf.len() + amt > LIMIT) {
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if w.buf.is_empty() {
            w.start = offset;
        }
        w.buf
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), amt));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `f` is an open `WalFile`; it is not used after this.
    unsafe {
        let flushed = flush(f);
        let real = inner(f);
        let closed = methods(real).xClose.expect("xClose")(real);
        std::ptr::drop_in_place(std::ptr::addr_of_mut!((*f.cast::<WalFile>()).buf));
        (*f).pMethods = std::ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Writes the buffer, then calls the base file's method through `call`.
macro_rules! after_flush {
    ($f:ident, |$real:ident, $m:ident| $call:expr) => {
        // SAFETY: `$f` is an open `WalFile`.
        unsafe {
            let rc = flush($f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let $real = inner($f);
            let $m = methods($real);
            $call
        }
    };
}

/// Calls the base file's method through `call`, buffer untouched.
macro_rules! pass {
    ($f:ident, |$real:ident, $m:ident| $call:expr) => {
        // SAFETY: `$f` is an open `WalFile`.
        unsafe {
            let $real = inner($f);
            let $m = methods($real);
            $call
        }
    };
}

unsafe extern "C" fn read(
    f: *mut ffi::sqlite3_file,
    out: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    after_flush!(f, |real, m| m.xRead.expect("xRead")(real, out, amt, off))
}

unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_flush!(f, |real, m| m.xTruncate.expect("xTruncate")(real, size))
}

unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_flush!(f, |real, m| m.xSync.expect("xSync")(real, flags))
}

unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_flush!(f, |real, m| m.xFileSize.expect("xFileSize")(real, size))
}

unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    after_flush!(f, |real, m| m.xFileControl.expect("xFileControl")(
        real, op, arg
    ))
}

unsafe extern "C" fn fetch(
    f: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    after_flush!(f, |real, m| match m.xFetch {
        Some(x) if m.iVersion >= 3 => x(real, off, amt, out),
        _ => {
            *out = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn unfetch(f: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    pass!(f, |real, m| match m.xUnfetch {
        Some(x) if m.iVersion >= 3 => x(real, off, p),
        _ => ffi::SQLITE_OK,
    })
}

unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(f, |real, m| m.xLock.expect("xLock")(real, level))
}

unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(f, |real, m| m.xUnlock.expect("xUnlock")(real, level))
}

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    pass!(f, |real, m| m
        .xCheckReservedLock
        .expect("xCheckReservedLock")(real, out))
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    pass!(f, |real, m| m.xSectorSize.expect("xSectorSize")(real))
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    pass!(f, |real, m| m
        .xDeviceCharacteristics
        .expect("xDeviceCharacteristics")(real))
}

unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    pass!(f, |real, m| match m.xShmMap {
        Some(x) => x(real, page, size, extend, out),
        None => ffi::SQLITE_IOERR_SHMMAP,
    })
}

unsafe extern "C" fn shm_lock(
    f: *mut ffi::sqlite3_file,
    off: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    pass!(f, |real, m| match m.xShmLock {
        Some(x) => x(real, off, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    })
}

unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    pass!(f, |real, m| if let Some(x) = m.xShmBarrier {
        x(real)
    })
}

unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    pass!(f, |real, m| match m.xShmUnmap {
        Some(x) => x(real, delete),
        None => ffi::SQLITE_OK,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    /// The writes WAL file of `c` has made so far.
    fn wal_writes(c: &Connection) -> u64 {
        let mut wal: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: the handle is open; in WAL mode the journal pointer is the
        // WAL file, opened through this VFS (checked by its methods).
        unsafe {
            let rc = ffi::sqlite3_file_control(
                c.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&raw mut wal).cast(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            assert!(!wal.is_null());
            assert!(std::ptr::eq((*wal).pMethods, &METHODS), "not our WAL file");
            (*wal.cast::<WalFile>()).writes
        }
    }

    fn insert(c: &Connection, from: i64, n: i64) {
        c.execute_batch("BEGIN").unwrap();
        for k in from..from + n {
            c.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                (k, format!("{k:08}-{}", "x".repeat(200))),
            )
            .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }

    /// A commit of many pages reaches the WAL in one write, a larger one in
    /// chunks the base VFS takes; spills and
    /// frames rewritten within a transaction, a checkpoint and a WAL that
    /// starts over all go through too; and what is on disk without a close
    /// (as after a crash) is a WAL that SQLite's own VFS reads back whole.
    #[test]
    fn each_commit_is_one_write_and_stock_sqlite_reads_the_wal() {
        assert!(register());
        let dir = std::env::temp_dir().join(format!("sb-walbuf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.sqlite3");
        let c = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), NAME).unwrap();
        c.execute_batch(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        )
        .unwrap();
        insert(&c, 0, 50);
        let before = wal_writes(&c);
        for i in 1..20 {
            insert(&c, i * 50, 50);
        }
        // 50 rows of 210 bytes: about 12 pages, 24 writes each without this.
        assert_eq!(wal_writes(&c) - before, 19, "one write per commit");

        // A checkpoint reads the frames back; the WAL then starts over.
        c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            .unwrap();
        insert(&c, 1000, 50);
        // A cache of 5 pages: the updates spill frames before the commit and
        // the commit writes some of them again.
        c.execute_batch(
            "PRAGMA cache_size = 5;
             BEGIN;
             UPDATE t SET v = upper(v);
             UPDATE t SET v = lower(v) || '!';
             COMMIT;",
        )
        .unwrap();
        insert(&c, 2000, 10);
        // About 250 KB in one commit: several writes of at most CHUNK.
        insert(&c, 3000, 1000);
        // Not closed: the files are what a crash would leave.
        let copy = dir.join("copy.sqlite3");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(dir.join("w.sqlite3-wal"), dir.join("copy.sqlite3-wal")).unwrap();
        std::mem::forget(c);

        let stock = Connection::open(&copy).unwrap();
        let check: String = stock
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let (n, bad): (i64, i64) = stock
            .query_row(
                "SELECT COUNT(*), SUM(v <> printf('%08d-', k) || printf('%.*c', 200, 'x') || '!'
                                 AND k < 2000
                          OR k >= 2000 AND v <> printf('%08d-', k) || printf('%.*c', 200, 'x'))
                 FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, bad), (2060, 0));
        drop(stock);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

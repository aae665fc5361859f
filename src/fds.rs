//! The process's file descriptors: the soft limit, how many are open, and
//! the descriptor table grown to the limit before the runtime starts. A
//! leaf: it depends on nothing else in the crate (the gateway's listener
//! watches the count, `main` reserves the table).

/// The largest descriptor table [`reserve_table`] asks for: 512 KiB of
/// kernel memory (8 bytes a slot), none of it in the process's RSS.
#[cfg(target_os = "linux")]
const TABLE_RESERVE: u64 = 1 << 16;

/// Grows this process's descriptor table, once, to hold descriptors up to
/// the soft limit (at most 65,536); returns the size asked for. Call it
/// before starting threads: then it costs nothing.
///
/// Linux grows the table by doubling when a new descriptor does not fit
/// (64, 128, 256, …, 1,024, …) and, in a process with more than one thread,
/// waits for an RCU grace period while doing so (`expand_files` →
/// `synchronize_rcu`). Every thread that opens a descriptor meanwhile (an
/// `accept`, a `socket`) sleeps with it: measured in `dev`, both tokio
/// workers stood still for 9–19 ms when a broadcast's first @connections
/// connections took the process past 1,024 descriptors (docs/benchmarks.md,
/// issue 11, sixth sitting). A single-threaded process skips the wait, and a
/// kernel never shrinks the table, so the placeholder descriptor is closed
/// at once.
#[cfg(target_os = "linux")]
pub fn reserve_table() -> Option<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let size = table_target(soft_limit());
    let top = libc::c_int::try_from(size.checked_sub(1)?).ok()?;
    let null = std::fs::File::open("/dev/null").ok()?;
    // SAFETY: F_DUPFD_CLOEXEC duplicates `null` (open for this call) onto the
    // lowest free descriptor at or above `top`; it never closes or replaces
    // another descriptor. The duplicate is owned here and closed at once.
    let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by fcntl and nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Some(size)
}

/// Elsewhere the table is left to grow by itself.
#[cfg(not(target_os = "linux"))]
pub fn reserve_table() -> Option<u64> {
    None
}

/// The table [`reserve_table`] asks for under soft limit `limit` (`None`:
/// unlimited).
#[cfg(target_os = "linux")]
fn table_target(limit: Option<u64>) -> u64 {
    limit.unwrap_or(TABLE_RESERVE).min(TABLE_RESERVE)
}

/// The soft `RLIMIT_NOFILE`, from /proc/self/limits.
pub fn soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_limit(&text)
}

/// The soft limit on the "Max open files" line ("unlimited": none).
fn parse_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open descriptors: entries of /proc/self/fd (less the one listing it).
pub fn open() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_descriptor_limit_is_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63455                63455                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_soft_limit(text), Some(1024));
        assert_eq!(
            parse_soft_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        // This process has one.
        assert!(soft_limit().is_some());
        assert!(open().unwrap() > 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_table_asked_for_is_the_limit_capped() {
        assert_eq!(table_target(Some(1024)), 1024);
        assert_eq!(table_target(Some(20_000)), 20_000);
        assert_eq!(table_target(Some(1 << 20)), TABLE_RESERVE);
        assert_eq!(table_target(None), TABLE_RESERVE);
    }

    /// `FDSize` in /proc/self/status: the size of the descriptor table.
    #[cfg(target_os = "linux")]
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_table_is_grown_to_the_limit_at_once() {
        let want = table_target(soft_limit());
        assert_eq!(reserve_table(), Some(want));
        assert!(table_size() >= want, "FDSize {}", table_size());
        // The placeholder is closed: the next descriptor is a low one.
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        assert!((f.as_raw_fd() as u64) < 1024);
    }
}

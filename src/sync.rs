//! Small shared pieces every part uses: poison-tolerant locks (mutex, rwlock) and the
//! wall clock in epoch milliseconds. A leaf: it depends on nothing in the crate.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks `m`, taking the data even when another thread panicked while holding
/// it: our critical sections leave the data consistent at every step (jobs run
/// under `catch_unwind`), so a panic elsewhere must not take the lock down too.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for reading an `RwLock`.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for writing an `RwLock`.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Now, epoch seconds (0 if the clock reads before 1970).
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Now, epoch milliseconds (0 if the clock reads before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

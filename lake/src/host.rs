//! What framelake reads from and asks of the host it runs on: the wall clock,
//! and no transparent huge pages.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 before it).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Request and segment buffers come and go many times a second; with
/// transparent huge pages every fresh one faults in (and zeroes) 2 MiB, which
/// measured as a fifth of the receiver's CPU. Databases advise the same. The
/// server and the benchmarks' in-process references both call this, so that
/// they run alike.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not disable transparent huge pages"
        );
    }
}

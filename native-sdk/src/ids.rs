//! Random 16-byte ids for processes and streams, without a dependency:
//! std's randomly keyed SipHash over the time, the process and a counter.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) fn random_id() -> framelake_native_format::Id {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    for (half, salt) in id.chunks_mut(8).zip([0x9e37_79b9_u64, 0x85eb_ca6b]) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.write_i64(crate::ticks::wall_nanos());
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

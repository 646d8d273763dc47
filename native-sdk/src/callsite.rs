//! Descriptors made at run time for the bridges (`tracing`, `log`): one
//! per call site, leaked once (a descriptor must be `'static`: its address
//! is its id), found again through a per-thread cache without locking.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Descriptor, DescriptorKind};

/// A word-at-a-time hash (FxHash's): keys are addresses and short strings.
#[derive(Default)]
pub(crate) struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map with [`Fx`] hashing.
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// The `'static` copy of `s`, leaked (once per call site).
pub(crate) fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// A new descriptor, leaked: it lives as long as the program.
pub(crate) fn descriptor(
    kind: DescriptorKind,
    level: u8,
    name: &'static str,
    target: &'static str,
    file: &'static str,
    line: u32,
) -> &'static Descriptor {
    Box::leak(Box::new(Descriptor {
        kind,
        level,
        line,
        name,
        target,
        file,
        unit: "",
    }))
}

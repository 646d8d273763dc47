//! The clock of events: the CPU's tick counter where there is one (a
//! register read, ~7 ns), else a monotonic clock in nanoseconds.

/// The tick counter now.
#[inline(always)]
pub fn now() -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() as i64 }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let ticks: u64;
        // SAFETY: the virtual counter is readable at EL0 on every OS we run on.
        unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) ticks) };
        ticks as i64
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fallback_nanos()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn fallback_nanos() -> i64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

/// Ticks per second when the CPU says so; 0 when it does not (the server
/// then estimates it from the blocks' calibration points).
pub fn frequency() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0x15: TSC/crystal ratio and the crystal's frequency.
        let max = core::arch::x86_64::__cpuid(0).eax;
        if max >= 0x15 {
            let leaf = core::arch::x86_64::__cpuid(0x15);
            let (denominator, numerator, crystal) = (leaf.eax, leaf.ebx, leaf.ecx);
            if denominator != 0 && numerator != 0 && crystal != 0 {
                return u64::from(crystal) * u64::from(numerator) / u64::from(denominator);
            }
        }
        0
    }
    #[cfg(target_arch = "aarch64")]
    {
        let frequency: u64;
        // SAFETY: CNTFRQ_EL0 is readable at EL0.
        unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) frequency) };
        frequency
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        1_000_000_000
    }
}

/// Unix nanoseconds now.
pub fn wall_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_advance() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::now();
        assert!(b > a, "{a} then {b}");
    }
}

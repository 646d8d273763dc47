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

/// Ticks per second: the CPU's own figure where it gives one, else measured
/// once against the monotonic clock (AMD CPUs and most VMs give none).
///
/// The server turns every block's ticks into times with this one figure. When
/// an SDK sends none, the server estimates it block by block from each block's
/// calibration point, and two estimates differ a little: times of adjacent
/// blocks could then run backwards across their boundary (seen: a span's end
/// 583 ns after its next sibling's begin, under CPU contention), and a trace
/// viewer that nests slices by time nests them wrongly.
pub fn frequency() -> u64 {
    static FREQUENCY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FREQUENCY.get_or_init(|| match reported_frequency() {
        0 => measured_frequency(),
        reported => reported,
    })
}

/// What the CPU says of its counter's frequency; 0 when it does not say.
fn reported_frequency() -> u64 {
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

/// How long [`measured_frequency`] watches the counter: long enough for a
/// precision of a few parts per million, short enough for a program's start.
const MEASURE_FOR: std::time::Duration = std::time::Duration::from_millis(20);

/// The counter's rate against the monotonic clock (the clock wall time runs
/// at, NTP's frequency correction included), over [`MEASURE_FOR`]; 0 if the
/// counter does not advance.
fn measured_frequency() -> u64 {
    let (ticks0, at0) = reading();
    std::thread::sleep(MEASURE_FOR);
    let (ticks1, at1) = reading();
    let nanos = at1.duration_since(at0).as_nanos() as f64;
    let ticks = ticks1.saturating_sub(ticks0) as f64;
    if nanos > 0.0 && ticks > 0.0 {
        (ticks * 1e9 / nanos).round() as u64
    } else {
        0
    }
}

/// The counter and the monotonic clock read together: of a few tries, the
/// one whose clock read took the fewest ticks (a preemption between the
/// reads would skew the pair), with the counter at the middle of it.
fn reading() -> (i64, std::time::Instant) {
    let mut best: Option<(i64, i64, std::time::Instant)> = None;
    for _ in 0..32 {
        let before = now();
        let at = std::time::Instant::now();
        let after = now();
        let spread = after.saturating_sub(before);
        if best.is_none_or(|(s, _, _)| spread < s) {
            best = Some((spread, before + spread / 2, at));
        }
    }
    let (_, ticks, at) = best.expect("at least one try");
    (ticks, at)
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
    fn the_frequency_is_known_and_the_same_for_the_whole_process() {
        let frequency = super::frequency();
        // Counters of current CPUs run between 10 MHz (ARM's generic timer,
        // the nanosecond fallback) and a few GHz (x86's TSC).
        assert!(
            (10_000_000..=10_000_000_000).contains(&frequency),
            "{frequency} ticks per second"
        );
        assert_eq!(super::frequency(), frequency, "measured once");
    }

    #[test]
    fn a_measured_frequency_agrees_with_a_longer_count_and_the_cpu() {
        let measured = super::measured_frequency() as f64;
        // The counter's ticks over ten times as long, by the same clock.
        let (ticks0, at0) = super::reading();
        std::thread::sleep(super::MEASURE_FOR * 10);
        let (ticks1, at1) = super::reading();
        let counted = (ticks1 - ticks0) as f64 * 1e9 / at1.duration_since(at0).as_nanos() as f64;
        let off = |a: f64, b: f64| (a - b).abs() / b;
        assert!(
            off(measured, counted) < 0.01,
            "measured {measured}, counted {counted}"
        );
        match super::reported_frequency() {
            0 => {} // the CPU says nothing (AMD, most VMs): the count is the check
            reported => assert!(
                off(measured, reported as f64) < 0.01,
                "measured {measured}, the CPU says {reported}"
            ),
        }
    }

    #[test]
    fn ticks_advance() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::now();
        assert!(b > a, "{a} then {b}");
    }
}

//! Clocks and the host every benchmark reads: CPU time of this process, of
//! the calling thread and of another process, the CPU model printed beside
//! each table, and medians of repeated runs.

/// The time of a clock, in seconds.
pub(crate) fn clock_seconds(clock: libc::clockid_t) -> Option<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid place for the time.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9)
}

/// CPU time of this process (every thread), in seconds.
pub(crate) fn process_seconds() -> f64 {
    clock_seconds(libc::CLOCK_PROCESS_CPUTIME_ID).expect("this process's CPU clock")
}

/// CPU time of the calling thread, in seconds.
pub(crate) fn thread_seconds() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID).expect("the calling thread's CPU clock")
}

/// Another process's CPU time in seconds: its CPU-time clock
/// (`clock_getcpuclockid`), else `/proc/PID/stat` in clock ticks.
pub(crate) fn process_seconds_of(pid: u32) -> Option<f64> {
    process_cpu_clock(pid).or_else(|| process_cpu_ticks(pid))
}

fn process_cpu_clock(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the id.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    clock_seconds(clock)
}

/// `/proc/PID/stat` in clock ticks (10 ms: 4% of a 20 s phase at the
/// loadgen's load).
fn process_cpu_ticks(pid: u32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// The host CPU model, from /proc/cpuinfo.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The median (the mean of the middle two for an even count; NaN for none).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_cpu_clock_reads_like_proc_stat() {
        let pid = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0);
        }
        let clock = super::process_cpu_clock(pid).expect("own CPU clock");
        let ticks = super::process_cpu_ticks(pid).expect("own /proc stat");
        assert!(clock >= 0.04, "{clock}");
        assert!((clock - ticks).abs() < 0.05, "{clock} against {ticks}");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(vec![0.5, 0.3, 0.4]), 0.4);
        assert_eq!(super::median(vec![0.5, 0.25, 0.75, 0.1]), 0.375);
        assert!(super::median(Vec::new()).is_nan());
    }
}

//! The units LogQL literals carry: durations and byte sizes.

/// Nanoseconds per unit of a duration (Go's `time.ParseDuration` units, and
/// Prometheus's `d`, `w`, `y` for ranges).
fn duration_unit(unit: &str, ranges: bool) -> Option<i128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" if ranges => 86_400_000_000_000,
        "w" if ranges => 7 * 86_400_000_000_000,
        "y" if ranges => 365 * 86_400_000_000_000,
        _ => return None,
    })
}

/// Nanoseconds of `digits` (decimal, with at most one `.`) of a unit,
/// exactly: a fraction is rounded to the nanosecond only once.
fn decimal(digits: &str, unit: i128) -> Option<i128> {
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Digits past the 18th are below a nanosecond of any unit.
    let fraction = &fraction[..fraction.len().min(18)];
    let scale = 10i128.pow(fraction.len() as u32);
    let part: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    whole
        .checked_mul(unit)?
        .checked_add((part * unit + scale / 2) / scale)
}

fn parse_units(text: &str, ranges: bool) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0i128;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = duration_unit(&rest[..unit_len], ranges)?;
        total = total.checked_add(decimal(number, unit)?)?;
        rest = &rest[unit_len..];
    }
    let ns = i64::try_from(total).ok()?;
    Some(if negative { -ns } else { ns })
}

/// A duration as label filters and `duration()` read it (Go's
/// `time.ParseDuration`: `300ms`, `1.5h`, `2h45m`), in nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    parse_units(text, false)
}

/// A range or offset (`5m`, `1h30m`, `7d`, `1w`), in nanoseconds.
pub fn parse_range(text: &str) -> Option<i64> {
    parse_units(text, true).filter(|ns| *ns >= 0)
}

/// A byte size as label filters and `bytes()` read it (`20MB`, `1.5KiB`,
/// `42`, `5 kb`: SI and IEC units, case-insensitive), in bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..digits].parse().ok()?;
    let unit = text[digits..].trim().to_ascii_lowercase();
    let factor: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "e" | "eb" => 1e18,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        "ei" | "eib" => 1024f64.powi(6),
        _ => return None,
    };
    let bytes = number * factor;
    (bytes <= u64::MAX as f64).then_some(bytes as u64)
}

/// A duration in nanoseconds as LogQL writes it (`1h30m`, `250ms`).
pub(crate) fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ns.unsigned_abs();
    if ns < 0 {
        out.push('-');
    }
    for (unit, size) in [
        ("h", 3_600_000_000_000u64),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ranges() {
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_duration("1d"), None, "days only in ranges");
        assert_eq!(parse_duration("5"), None, "a unit is required");
        assert_eq!(parse_range("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_range("1w"), Some(7 * 86_400_000_000_000));
        assert_eq!(format_duration(5_400_000_000_000), "1h30m");
        assert_eq!(format_duration(250_000_000), "250ms");
        assert_eq!(format_duration(86_400_000_000_000), "24h");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("20MB"), Some(20_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Some(1536));
        assert_eq!(parse_bytes("42"), Some(42));
        assert_eq!(parse_bytes("5 kb"), Some(5000));
        assert_eq!(parse_bytes("5 parsecs"), None);
    }
}

//! Wall-clock time formatted for mail: RFC 5322 dates for Received headers
//! and RFC 3339 stamps for the mail log. The only module that reads the clock
//! for text; the pure core gets these strings passed in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and milliseconds since the Unix epoch.
pub fn now() -> (u64, u32) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_millis())
}

/// "Sun, 22 Nov 2026 07:00:00 +0000" (RFC 5322 §3.3).
pub fn rfc5322(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, hh, mm, ss) = civil(secs);
    let weekday = DAYS[((secs / 86_400) % 7) as usize];
    format!("{weekday}, {d} {} {y} {hh:02}:{mm:02}:{ss:02} +0000", MONTHS[m as usize - 1])
}

/// "2026-11-22T07:00:00.123Z".
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
}

/// Unix seconds → (year, month, day, hour, minute, second), proleptic
/// Gregorian (Howard Hinnant's days-from-civil inverse).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        // 2026-11-22 07:00:00 UTC
        assert_eq!(rfc5322(1_795_330_800), "Sun, 22 Nov 2026 07:00:00 +0000");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
    }
}

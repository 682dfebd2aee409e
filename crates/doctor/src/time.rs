//! Calendar arithmetic for log timestamps and report times, in UTC, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2024-05-01T10:00:00Z` for a Unix time.
pub fn format_utc(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    let s = unix.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// The timestamp at the start of an error-log line, as Unix seconds.
///
/// Knows MySQL 5.7/8.0 (`2024-05-01T10:00:00.123456Z`), MariaDB 10.x (`2024-05-01 10:00:00`)
/// and MariaDB/MySQL 5.x (`240501 10:00:00`, `240501  9:00:00`). Times without a zone are
/// taken as UTC: servers on a host in another zone will be off by that zone's offset.
pub fn parse_log_timestamp(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    let num = |s: &[u8]| -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let (y, mo, d, rest) =
        if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && (b[10] == b'T' || b[10] == b' ') {
            (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?, &line[11..])
        } else if b.len() >= 15 && b[6] == b' ' && num(&b[0..6]).is_some() {
            (
                2000 + num(&b[0..2])?,
                num(&b[2..4])?,
                num(&b[4..6])?,
                line[7..].trim_start(),
            )
        } else {
            return None;
        };
    let rb = rest.as_bytes();
    let colon = rest.find(':')?;
    if colon == 0 || colon > 2 || rb.len() < colon + 6 {
        return None;
    }
    let h = num(&rb[..colon])?;
    let mi = num(&rb[colon + 1..colon + 3])?;
    let s = num(&rb[colon + 4..colon + 6])?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

/// Parses `--since`: a duration back from now (`2h`, `30m`) or a date (`2024-05-01`,
/// `2024-05-01 10:00:00`, `2024-05-01T10:00:00Z`).
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    if let Ok(d) = goneaway_connect::parse_duration(text) {
        return Ok(now - d.as_secs() as i64);
    }
    let t = text.trim();
    if t.len() == 10 {
        if let Some(ts) = parse_log_timestamp(&format!("{t} 00:00:00")) {
            return Ok(ts);
        }
    }
    parse_log_timestamp(t).ok_or_else(|| {
        format!("{text:?} is neither a duration (2h) nor a date (2024-05-01 10:00:00)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = parse_log_timestamp("2024-05-01T10:00:00.123456Z 0 [Note]").unwrap();
        assert_eq!(format_utc(t), "2024-05-01T10:00:00Z");
        assert_eq!(
            parse_log_timestamp("2024-05-01 10:00:00 0 [Note] x"),
            Some(t)
        );
        assert_eq!(parse_log_timestamp("240501 10:00:00 [Note] x"), Some(t));
        assert_eq!(
            parse_log_timestamp("240501  9:00:00 [Note] x"),
            Some(t - 3600)
        );
        assert_eq!(parse_log_timestamp("Version: '10.11'"), None);
        assert_eq!(parse_since("2024-05-01", 0).unwrap(), t - 36000);
        assert_eq!(parse_since("1h", 10_000).unwrap(), 6400);
    }
}

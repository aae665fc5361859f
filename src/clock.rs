//! UTC calendar arithmetic and the time formats API Gateway uses (`requestTime`,
//! GetConnection's ISO 8601, SigV4's `X-Amz-Date`, usage-plan months): two short
//! algorithms, shorter than wiring a date crate in for four formats.

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    milli: u32,
}

/// UTC calendar fields of epoch milliseconds (H. Hinnant's days-to-civil).
fn civil(ms: i64) -> Civil {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: tod / 3600,
        minute: tod / 60 % 60,
        second: tod % 60,
        milli,
    }
}

/// The UTC year and month (1–12) of epoch milliseconds.
pub fn year_month(ms: i64) -> (i64, u32) {
    let c = civil(ms);
    (c.year, c.month)
}

/// SigV4's `x-amz-date` of epoch milliseconds: `20240101T000000Z`, ISO 8601
/// basic, UTC, without allocating (once per signed request); all zeros for
/// a year outside 0–9999.
pub fn amz_date(ms: i64) -> [u8; 16] {
    let c = civil(ms);
    let mut out = *b"00000000T000000Z";
    let Ok(year) = u32::try_from(c.year) else {
        return out;
    };
    if year > 9999 {
        return out;
    }
    let mut put = |at: usize, value: u32, digits: u32| {
        for i in 0..digits {
            out[at + i as usize] = b'0' + (value / 10u32.pow(digits - 1 - i) % 10) as u8;
        }
    };
    put(0, year, 4);
    put(4, c.month, 2);
    put(6, c.day, 2);
    put(9, c.hour, 2);
    put(11, c.minute, 2);
    put(13, c.second, 2);
    out
}

/// Epoch milliseconds of SigV4's `x-amz-date` (`20240101T000000Z`, ISO 8601
/// basic, UTC); `None` if it is not one.
pub fn amz_date_ms(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.is_ascii() || &s[8..9] != "T" || &s[15..] != "Z" {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    epoch_ms(
        i64::from(n(0..4)?),
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    )
}

/// Epoch milliseconds of a UTC calendar time (H. Hinnant's days-from-civil);
/// `None` for fields out of range.
pub fn epoch_ms(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(secs * 1000)
}

/// `requestTime` of proxy events: `27/Nov/2024:15:00:00 +0000`.
pub fn clf_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(ms);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// ISO 8601 as the @connections API answers GetConnection:
/// `2024-11-27T15:00:00.120Z`.
pub fn iso_time(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        // 2024-11-27T15:00:00.120Z
        assert_eq!(clf_time(1_732_719_600_120), "27/Nov/2024:15:00:00 +0000");
        assert_eq!(iso_time(1_732_719_600_120), "2024-11-27T15:00:00.120Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        // Leap day.
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // And back.
        assert_eq!(epoch_ms(2000, 2, 29, 0, 0, 0), Some(951_782_400_000));
        assert_eq!(epoch_ms(2024, 11, 27, 15, 0, 0), Some(1_732_719_600_000));
        assert_eq!(epoch_ms(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(epoch_ms(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(year_month(1_732_719_600_120), (2024, 11));
        assert_eq!(clf_time(1_709_251_199_999), "29/Feb/2024:23:59:59 +0000");
    }
}

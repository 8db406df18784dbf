//! RFC 3339 date-times for the `expiration` attribute (RFC 6940 §11.1), without the
//! `time` crate's optional parsing feature.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339 §5.6; `T` and `Z` in either
/// case). Returns the time and whether a time zone was given: a missing one (allowed by
/// `xsd:dateTime`, not by RFC 3339) reads as UTC with `false`.
pub fn parse_datetime(s: &str) -> Result<(OffsetDateTime, bool), String> {
    let bad = |why: &str| format!("'{s}' is not an RFC 3339 date-time: {why}");
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        d.iter().try_fold(0u32, |a, c| {
            a.checked_mul(10)?.checked_add(u32::from(c - b'0'))
        })
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if b.len() < 19
        || !sep(4, b"-")
        || !sep(7, b"-")
        || !sep(10, b"Tt")
        || !sep(13, b":")
        || !sep(16, b":")
    {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(bad("non-digit in a date or time field"));
    };
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return Err(bad("the fraction of a second needs 1 to 9 digits"));
        }
        let frac = num(start..end).ok_or_else(|| bad("bad fraction"))?;
        let scale = 10u32.pow(u32::try_from(9 - (end - start)).unwrap_or(0));
        nanos = frac.saturating_mul(scale);
        i = end;
    }
    let (offset, zoned) = match b.get(i) {
        None => (UtcOffset::UTC, false),
        Some(b'Z' | b'z') if b.len() == i + 1 => (UtcOffset::UTC, true),
        Some(c @ (b'+' | b'-')) if b.len() == i + 6 && sep(i + 3, b":") => {
            let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) else {
                return Err(bad("bad time-zone offset"));
            };
            if oh > 23 || om > 59 {
                return Err(bad("time-zone offset out of range"));
            }
            let sign = if *c == b'-' { -1 } else { 1 };
            let (oh, om) = (
                sign * i8::try_from(oh).unwrap_or(0),
                sign * i8::try_from(om).unwrap_or(0),
            );
            (
                UtcOffset::from_hms(oh, om, 0).map_err(|e| bad(&e.to_string()))?,
                true,
            )
        }
        _ => return Err(bad("expected Z or ±HH:MM after the time")),
    };
    let month = u8::try_from(mo)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| bad("month out of range"))?;
    let date = Date::from_calendar_date(
        i32::try_from(y).unwrap_or(0),
        month,
        u8::try_from(d).unwrap_or(0),
    )
    .map_err(|e| bad(&e.to_string()))?;
    let time = Time::from_hms_nano(
        u8::try_from(h).unwrap_or(99),
        u8::try_from(mi).unwrap_or(99),
        u8::try_from(sec).unwrap_or(99),
        nanos,
    )
    .map_err(|e| bad(&e.to_string()))?;
    Ok((
        PrimitiveDateTime::new(date, time).assume_offset(offset),
        zoned,
    ))
}

/// Writes RFC 3339: `Z` for UTC, the fraction only when not zero (trailing zeros
/// dropped).
pub fn format_datetime(t: OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let f = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    let off = t.offset();
    if off.is_utc() {
        s.push('Z');
    } else {
        let (h, m, _) = off.as_hms();
        let sign = if off.is_negative() { '-' } else { '+' };
        s.push_str(&format!(
            "{sign}{:02}:{:02}",
            h.unsigned_abs(),
            m.unsigned_abs()
        ));
    }
    s
}

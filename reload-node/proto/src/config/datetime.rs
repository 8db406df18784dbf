//! RFC 3339 date-times for the `expiration` attribute (RFC 6940 §11.1), with the `time`
//! crate's RFC 3339 parser and formatter.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (RFC 3339 §5.6). Returns the time
/// and whether a time zone was given: a missing one (allowed by `xsd:dateTime`, not by
/// RFC 3339) reads as UTC with `false`.
pub fn parse_datetime(s: &str) -> Result<(OffsetDateTime, bool), String> {
    let bad = |e: time::error::Parse| format!("'{s}' is not an RFC 3339 date-time: {e}");
    // xsd:dateTime (the grammar's type) separates date and time with `T` only.
    if !s
        .as_bytes()
        .get(10)
        .is_some_and(|c| matches!(c, b'T' | b't'))
    {
        return Err(format!(
            "'{s}' is not an RFC 3339 date-time: expected YYYY-MM-DDTHH:MM:SS"
        ));
    }
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Ok((t, true)),
        Err(first) => {
            // xsd:dateTime allows leaving the zone out; RFC 3339 does not.
            let has_zone =
                s.ends_with(['Z', 'z']) || s.get(19..).is_some_and(|t| t.contains(['+', '-']));
            if has_zone {
                return Err(bad(first));
            }
            OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339)
                .map(|t| (t, false))
                .map_err(|_| bad(first))
        }
    }
}

/// Writes RFC 3339: `Z` for UTC, the fraction only when not zero.
pub fn format_datetime(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

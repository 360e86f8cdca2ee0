//! Lexical rules of the FHIR R4 primitive datatypes, and the date/time values that search
//! compares as ranges (`2020` is the whole year 2020).

use serde_json::Value;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use crate::definitions::Primitive;

/// Checks one JSON value against a primitive datatype; `Err` says what is wrong with it.
pub fn check_primitive(p: Primitive, value: &Value) -> Result<(), String> {
    match p {
        Primitive::Boolean => match value {
            Value::Bool(_) => Ok(()),
            other => Err(format!(
                "expected a JSON boolean (true or false), found {}",
                describe(other)
            )),
        },
        Primitive::Integer | Primitive::PositiveInt | Primitive::UnsignedInt => {
            let Value::Number(n) = value else {
                return Err(format!("expected a JSON number, found {}", describe(value)));
            };
            let text = n.to_string();
            let Ok(i) = text.parse::<i64>() else {
                return Err(format!("'{text}' is not a whole number"));
            };
            let (lo, what) = match p {
                Primitive::PositiveInt => (1, "positiveInt (1 or more)"),
                Primitive::UnsignedInt => (0, "unsignedInt (0 or more)"),
                _ => (i32::MIN as i64, "integer"),
            };
            if i < lo || i > i32::MAX as i64 {
                return Err(format!("{i} is out of range for {what}"));
            }
            Ok(())
        }
        Primitive::Decimal => match value {
            Value::Number(_) => Ok(()),
            other => Err(format!("expected a JSON number, found {}", describe(other))),
        },
        _ => {
            let Value::String(s) = value else {
                return Err(format!("expected a JSON string, found {}", describe(value)));
            };
            check_string_primitive(p, s)
        }
    }
}

fn check_string_primitive(p: Primitive, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty strings are not allowed in FHIR; omit the element instead".into());
    }
    if let Some(c) = control_character(s) {
        return Err(format!(
            "the text holds the control character U+{:04X}, which FHIR strings may not contain (only tab, line feed and carriage return are allowed)",
            c as u32
        ));
    }
    let ok = match p {
        Primitive::String | Primitive::Markdown => true,
        Primitive::Code => {
            !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
                && !s.contains("  ")
                && !s.contains(['\t', '\n', '\r'])
        }
        Primitive::Id => is_id(s),
        Primitive::Uri | Primitive::Url | Primitive::Canonical => !s.contains(char::is_whitespace),
        Primitive::Oid => is_oid(s),
        Primitive::Uuid => is_uuid_urn(s),
        Primitive::Base64Binary => is_base64(s),
        Primitive::Date => {
            return parse_date_time(s, Precision::Day, false).map(|_| ());
        }
        Primitive::DateTime => {
            return parse_date_time(s, Precision::Fraction, false).map(|_| ());
        }
        Primitive::Instant => {
            return parse_date_time(s, Precision::Fraction, false).and_then(|v| {
                if v.precision < Precision::Second || v.offset_minutes.is_none() {
                    Err(format!("'{s}' is not an instant: it needs a full date, time with seconds and a time zone"))
                } else {
                    Ok(())
                }
            });
        }
        Primitive::Time => is_time(s),
        Primitive::Xhtml => {
            let t = s.trim();
            t.starts_with("<div") && t.ends_with("</div>")
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("'{s}' is not a valid {}", p.name()))
    }
}

/// The first character FHIR text may not hold, if any: R4 (datatypes, string) allows none
/// below U+0020 but tab, line feed and carriage return (and PostgreSQL's text cannot even hold
/// U+0000).
pub fn control_character(s: &str) -> Option<char> {
    s.chars()
        .find(|c| (*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut parts = rest.split('.');
    let first_ok = matches!(parts.next(), Some("0" | "1" | "2"));
    let mut count = 0;
    first_ok
        && parts.all(|p| {
            count += 1;
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'))
        })
        && count > 0
}

fn is_uuid_urn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_base64(s: &str) -> bool {
    let mut n = 0usize;
    let mut padding = false;
    for b in s.bytes() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if b == b'=' {
            padding = true;
        } else if padding || !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            return false;
        }
        n += 1;
    }
    n.is_multiple_of(4)
}

fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(sec)) = (two(&b[0..2]), two(&b[3..5]), two(&b[6..8])) else {
        return false;
    };
    if h > 23 || m > 59 || sec > 60 {
        return false;
    }
    match &b[8..] {
        [] => true,
        [b'.', rest @ ..] => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn two(b: &[u8]) -> Option<u32> {
    if b.len() == 2 && b.iter().all(u8::is_ascii_digit) {
        Some(((b[0] - b'0') * 10 + (b[1] - b'0')) as u32)
    } else {
        None
    }
}

/// How much of a date/time was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Minute,
    Second,
    Fraction,
}

/// A parsed FHIR date, dateTime or instant, with the precision it was given at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTimeValue {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
    pub precision: Precision,
    /// The time zone offset in minutes; `None` for dates and zone-less times (taken as UTC).
    pub offset_minutes: Option<i32>,
}

/// A closed interval of instants in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub low: i64,
    pub high: i64,
}

/// The earliest and latest instants an index or a search uses for open ends.
pub const MIN_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
pub const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

impl DateTimeValue {
    /// The instants this value covers: `2020` → the whole of 2020 (UTC unless a zone is given).
    pub fn range(&self) -> Range {
        let month = Month::try_from(self.month.max(1)).unwrap_or(Month::January);
        let date = Date::from_calendar_date(self.year, month, self.day.max(1)).unwrap_or(Date::MIN);
        let start_time =
            Time::from_hms_milli(self.hour, self.minute, self.second.min(59), self.millis)
                .unwrap_or(Time::MIDNIGHT);
        let offset = UtcOffset::from_whole_seconds(self.offset_minutes.unwrap_or(0) * 60)
            .unwrap_or(UtcOffset::UTC);
        let low_dt = PrimitiveDateTime::new(date, start_time).assume_offset(offset);
        let low = (low_dt.unix_timestamp_nanos() / 1_000_000) as i64;
        let high_exclusive = match self.precision {
            Precision::Year => {
                let next = Date::from_calendar_date(self.year + 1, Month::January, 1);
                next.map(|d| ms(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(offset)))
                    .unwrap_or(MAX_MS + 1)
            }
            Precision::Month => {
                let (y, m) = if self.month == 12 {
                    (self.year + 1, 1)
                } else {
                    (self.year, self.month + 1)
                };
                let next =
                    Date::from_calendar_date(y, Month::try_from(m).unwrap_or(Month::January), 1);
                next.map(|d| ms(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(offset)))
                    .unwrap_or(MAX_MS + 1)
            }
            Precision::Day => low + 86_400_000,
            Precision::Minute => low + 60_000,
            Precision::Second => low + 1_000,
            Precision::Fraction => low + 1,
        };
        Range {
            low,
            high: high_exclusive - 1,
        }
    }
}

fn ms(dt: time::OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The start (epoch ms) of a FHIR date, dateTime or instant (a partial date starts at its
/// first moment); `None` when it is not one.
pub fn instant_ms(s: &str) -> Option<i64> {
    parse_date_time(s, Precision::Fraction, false)
        .ok()
        .map(|v| v.range().low)
}

/// Parses a FHIR date/dateTime/instant. `max` is the finest precision allowed (`Day` for
/// `date`); `minutes_ok` allows `hh:mm` without seconds and a missing zone (search values).
pub fn parse_date_time(s: &str, max: Precision, minutes_ok: bool) -> Result<DateTimeValue, String> {
    let bad = || {
        format!(
            "'{s}' is not a valid {}",
            if max == Precision::Day {
                "date (YYYY, YYYY-MM or YYYY-MM-DD)"
            } else {
                "dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"
            }
        )
    };
    let b = s.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let year: i32 = s[..4].parse().map_err(|_| bad())?;
    if year == 0 {
        return Err(bad());
    }
    let mut v = DateTimeValue {
        year,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        millis: 0,
        precision: Precision::Year,
        offset_minutes: None,
    };
    let mut rest = &b[4..];
    if rest.is_empty() {
        return Ok(v);
    }
    if rest[0] != b'-' || rest.len() < 3 {
        return Err(bad());
    }
    let month = two(&rest[1..3]).ok_or_else(bad)?;
    if !(1..=12).contains(&month) {
        return Err(format!("'{s}' has month {month}, which does not exist"));
    }
    v.month = month as u8;
    v.precision = Precision::Month;
    rest = &rest[3..];
    if rest.is_empty() {
        return Ok(v);
    }
    if rest[0] != b'-' || rest.len() < 3 {
        return Err(bad());
    }
    let day = two(&rest[1..3]).ok_or_else(bad)?;
    let month_enum = Month::try_from(v.month).map_err(|_| bad())?;
    if day == 0 || Date::from_calendar_date(year, month_enum, day as u8).is_err() {
        return Err(format!(
            "'{s}' is not a calendar date: {} has no day {day}",
            month_name(v.month, year)
        ));
    }
    v.day = day as u8;
    v.precision = Precision::Day;
    rest = &rest[3..];
    if rest.is_empty() {
        return Ok(v);
    }
    if max == Precision::Day || rest[0] != b'T' {
        return Err(bad());
    }
    rest = &rest[1..];
    if rest.len() < 5 || rest[2] != b':' {
        return Err(bad());
    }
    let h = two(&rest[0..2]).ok_or_else(bad)?;
    let m = two(&rest[3..5]).ok_or_else(bad)?;
    if h > 23 || m > 59 {
        return Err(format!("'{s}' has a time of day that does not exist"));
    }
    v.hour = h as u8;
    v.minute = m as u8;
    v.precision = Precision::Minute;
    rest = &rest[5..];
    if rest.first() == Some(&b':') {
        if rest.len() < 3 {
            return Err(bad());
        }
        let sec = two(&rest[1..3]).ok_or_else(bad)?;
        if sec > 60 {
            return Err(bad());
        }
        v.second = sec as u8;
        v.precision = Precision::Second;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(bad());
            }
            let frac = &rest[1..1 + digits];
            let mut millis = 0u16;
            for i in 0..3 {
                millis = millis * 10 + frac.get(i).map(|d| (d - b'0') as u16).unwrap_or(0);
            }
            v.millis = millis;
            v.precision = Precision::Fraction;
            rest = &rest[1 + digits..];
        }
    } else if !minutes_ok {
        return Err(bad());
    }
    match rest {
        [] if minutes_ok => {}
        [] => {
            return Err(format!(
                "'{s}' has a time but no time zone (add Z or +hh:mm)"
            ));
        }
        [b'Z'] => v.offset_minutes = Some(0),
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = two(&[*oh1, *oh2]).ok_or_else(bad)?;
            let om = two(&[*om1, *om2]).ok_or_else(bad)?;
            if oh > 14 || om > 59 {
                return Err(bad());
            }
            let total = (oh * 60 + om) as i32;
            v.offset_minutes = Some(if *sign == b'-' { -total } else { total });
        }
        _ => return Err(bad()),
    }
    if v.second == 60 {
        v.second = 59;
        v.millis = 999;
    }
    Ok(v)
}

fn month_name(month: u8, year: i32) -> String {
    let names = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format!(
        "{} {year}",
        names[(month as usize).saturating_sub(1).min(11)]
    )
}

/// Formats epoch milliseconds as a FHIR instant (`2026-11-28T01:51:21.123Z`).
pub fn format_instant(epoch_ms: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(epoch_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Formats epoch milliseconds as an HTTP date (`Sat, 28 Nov 2026 01:51:21 GMT`).
pub fn format_http_date(epoch_ms: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(epoch_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        days[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        months[dt.month() as usize - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Describes a JSON value's kind for error messages.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(p: Primitive, v: Value) -> bool {
        check_primitive(p, &v).is_ok()
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert!(check(Primitive::Date, json!("2014")));
        assert!(check(Primitive::Date, json!("2014-02")));
        assert!(check(Primitive::Date, json!("2016-02-29")));
        assert!(!check(Primitive::Date, json!("2015-02-29")));
        assert!(!check(Primitive::Date, json!("2015-13-01")));
        assert!(!check(Primitive::Date, json!("2015-1-01")));
        assert!(!check(Primitive::Date, json!("01/02/2015")));
        assert!(!check(Primitive::Date, json!("2015-01-01T10:00:00Z")));
        assert!(!check(Primitive::Date, json!(20150101)));
        assert!(!check(Primitive::Date, json!("")));
    }

    #[test]
    fn date_times_need_a_zone_with_a_time() {
        assert!(check(
            Primitive::DateTime,
            json!("2015-02-07T13:28:17-05:00")
        ));
        assert!(check(
            Primitive::DateTime,
            json!("2015-02-07T13:28:17.239+02:00")
        ));
        assert!(check(Primitive::DateTime, json!("2015")));
        assert!(!check(Primitive::DateTime, json!("2015-02-07T13:28:17")));
        assert!(!check(Primitive::DateTime, json!("2015-02-07T13:28Z")));
        assert!(!check(Primitive::DateTime, json!("2015-02-07T25:28:17Z")));
        assert!(check(Primitive::Instant, json!("2015-02-07T13:28:17.239Z")));
        assert!(!check(Primitive::Instant, json!("2015-02-07")));
    }

    #[test]
    fn other_primitives() {
        assert!(check(Primitive::Boolean, json!(true)));
        assert!(!check(Primitive::Boolean, json!("true")));
        assert!(check(Primitive::Id, json!("a-B.9")));
        assert!(!check(Primitive::Id, json!("a b")));
        assert!(!check(Primitive::Id, json!("x".repeat(65))));
        assert!(check(Primitive::PositiveInt, json!(1)));
        assert!(!check(Primitive::PositiveInt, json!(0)));
        assert!(!check(Primitive::Integer, json!(1.5)));
        assert!(!check(Primitive::Integer, json!(3_000_000_000i64)));
        assert!(check(Primitive::Code, json!("final")));
        assert!(!check(Primitive::Code, json!(" final")));
        assert!(check(Primitive::Oid, json!("urn:oid:1.2.3")));
        assert!(!check(Primitive::Oid, json!("1.2.3")));
        assert!(check(
            Primitive::Uuid,
            json!("urn:uuid:a76d9bbf-f293-4fb7-ad4c-2851cac77162")
        ));
        assert!(check(Primitive::Base64Binary, json!("aGVsbG8=")));
        assert!(!check(Primitive::Base64Binary, json!("a=b")));
        assert!(check(Primitive::Time, json!("09:30:00")));
        assert!(!check(Primitive::Time, json!("9:30")));
        assert!(!check(Primitive::Uri, json!("http://x y")));
    }

    #[test]
    fn ranges_cover_the_precision_given() {
        let r = parse_date_time("2020", Precision::Fraction, false)
            .unwrap()
            .range();
        assert_eq!(format_instant(r.low), "2020-01-01T00:00:00.000Z");
        assert_eq!(format_instant(r.high), "2020-12-31T23:59:59.999Z");
        let r = parse_date_time("2020-02", Precision::Fraction, false)
            .unwrap()
            .range();
        assert_eq!(format_instant(r.high), "2020-02-29T23:59:59.999Z");
        let r = parse_date_time("2020-02-03T10:00:00+02:00", Precision::Fraction, false)
            .unwrap()
            .range();
        assert_eq!(format_instant(r.low), "2020-02-03T08:00:00.000Z");
        assert_eq!(format_instant(r.high), "2020-02-03T08:00:00.999Z");
        let r = parse_date_time("2020-02-03T10:00", Precision::Fraction, true)
            .unwrap()
            .range();
        assert_eq!(format_instant(r.high), "2020-02-03T10:00:59.999Z");
    }

    #[test]
    fn http_dates() {
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}

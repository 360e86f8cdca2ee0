//! Slots from weekly availability templates: which (start, end) times a schedule offers over
//! the coming weeks, in the alliance's local time (Connecticut: US Eastern, with daylight
//! saving time), minus blocks and holidays. Pure; the caller stores what is new.

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A weekly template: on these days, from `start` to `end` (minutes after local midnight),
/// one slot every `slot_minutes`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklyHours {
    /// ISO weekdays, Monday = 1 … Sunday = 7.
    pub days: Vec<u8>,
    pub start_minute: u32,
    pub end_minute: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub hours: Vec<WeeklyHours>,
    pub slot_minutes: u32,
    /// Periods (epoch ms, start inclusive, end exclusive) with no slots: blocks and holidays.
    pub unavailable: Vec<(i64, i64)>,
}

/// The slots of `template` on the local days starting with the one containing `from_ms`, for
/// `days` days, that start at or after `from_ms`: (start, end) in epoch ms, in time order.
pub fn generate(template: &Template, from_ms: i64, days: u32) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    if template.slot_minutes == 0 {
        return out;
    }
    let step = i64::from(template.slot_minutes) * MINUTE_MS;
    let first_day = local_day(from_ms);
    for d in 0..i64::from(days) {
        let day = first_day + d;
        let weekday = iso_weekday(day);
        for h in template.hours.iter().filter(|h| h.days.contains(&weekday)) {
            let mut minute = i64::from(h.start_minute);
            while minute + i64::from(template.slot_minutes) <= i64::from(h.end_minute) {
                let start = local_to_utc(day, minute);
                let end = start + step;
                minute += i64::from(template.slot_minutes);
                if start < from_ms {
                    continue;
                }
                if template
                    .unavailable
                    .iter()
                    .any(|(a, b)| start < *b && end > *a)
                {
                    continue;
                }
                out.push((start, end));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Days since 1970-01-01 of the local (US Eastern) calendar day containing `utc_ms`.
pub fn local_day(utc_ms: i64) -> i64 {
    (utc_ms + eastern_offset_ms(utc_ms)).div_euclid(DAY_MS)
}

/// ISO weekday (Monday = 1) of a day counted from 1970-01-01 (a Thursday).
fn iso_weekday(day: i64) -> u8 {
    ((day + 3).rem_euclid(7) + 1) as u8
}

/// The UTC instant of `minute` minutes after local midnight on local `day`.
pub fn local_to_utc(day: i64, minute: i64) -> i64 {
    let local = day * DAY_MS + minute * MINUTE_MS;
    // try standard time, then daylight time: the offset that maps back to itself wins
    let standard = local + 5 * HOUR_MS;
    if eastern_offset_ms(standard) == -5 * HOUR_MS {
        standard
    } else {
        local + 4 * HOUR_MS
    }
}

/// US Eastern time's offset from UTC at an instant: −4 h during daylight saving time (from
/// 2:00 local on the second Sunday in March to 2:00 local on the first Sunday in November,
/// the rule since 2007), −5 h otherwise.
pub fn eastern_offset_ms(utc_ms: i64) -> i64 {
    let year = civil_from_days((utc_ms - 5 * HOUR_MS).div_euclid(DAY_MS)).0;
    // second Sunday in March, 2:00 EST = 7:00 UTC
    let march1 = days_from_civil(year, 3, 1);
    let first_sunday = march1 + (7 - i64::from(iso_weekday(march1) % 7)) % 7;
    let dst_start = (first_sunday + 7) * DAY_MS + 7 * HOUR_MS;
    // first Sunday in November, 2:00 EDT = 6:00 UTC
    let nov1 = days_from_civil(year, 11, 1);
    let nov_sunday = nov1 + (7 - i64::from(iso_weekday(nov1) % 7)) % 7;
    let dst_end = nov_sunday * DAY_MS + 6 * HOUR_MS;
    if (dst_start..dst_end).contains(&utc_ms) {
        -4 * HOUR_MS
    } else {
        -5 * HOUR_MS
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day counted from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

/// Parses `HH:MM[:SS]` into minutes after midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let mut it = s.split(':');
    let h: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    (h <= 24 && m < 60).then_some(h * 60 + m)
}

/// FHIR `daysOfWeek` codes (`mon` … `sun`) to ISO weekdays.
pub fn weekday_code(code: &str) -> Option<u8> {
    Some(match code {
        "mon" => 1,
        "tue" => 2,
        "wed" => 3,
        "thu" => 4,
        "fri" => 5,
        "sat" => 6,
        "sun" => 7,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS + min * MINUTE_MS
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 3, 2), 20_514);
        for z in [-1000, 0, 11_016, 20_514, 40_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(iso_weekday(days_from_civil(2026, 11, 28)), 6, "a Saturday");
    }

    #[test]
    fn eastern_time_follows_the_us_daylight_saving_rule() {
        // 2026: DST from Sunday 8 March 07:00 UTC to Sunday 1 November 06:00 UTC
        assert_eq!(eastern_offset_ms(utc(2026, 3, 8, 6, 59)), -5 * HOUR_MS);
        assert_eq!(eastern_offset_ms(utc(2026, 3, 8, 7, 0)), -4 * HOUR_MS);
        assert_eq!(eastern_offset_ms(utc(2026, 11, 1, 5, 59)), -4 * HOUR_MS);
        assert_eq!(eastern_offset_ms(utc(2026, 11, 1, 6, 0)), -5 * HOUR_MS);
        assert_eq!(eastern_offset_ms(utc(2026, 7, 1, 12, 0)), -4 * HOUR_MS);
        assert_eq!(eastern_offset_ms(utc(2026, 12, 1, 12, 0)), -5 * HOUR_MS);
        // 9:00 local is 14:00 UTC in winter, 13:00 UTC in summer
        assert_eq!(
            local_to_utc(days_from_civil(2026, 12, 1), 9 * 60),
            utc(2026, 12, 1, 14, 0)
        );
        assert_eq!(
            local_to_utc(days_from_civil(2026, 7, 1), 9 * 60),
            utc(2026, 7, 1, 13, 0)
        );
    }

    #[test]
    fn a_weekly_template_makes_slots_on_its_days_and_skips_blocks() {
        let t = Template {
            hours: vec![WeeklyHours {
                days: vec![1, 3],
                start_minute: 9 * 60,
                end_minute: 10 * 60 + 30,
            }],
            slot_minutes: 30,
            // Wednesday 2 December 2026, 9:30–10:00 local is blocked
            unavailable: vec![(utc(2026, 12, 2, 14, 30), utc(2026, 12, 2, 15, 0))],
        };
        // from Saturday 28 November 2026, one week
        let slots = generate(&t, utc(2026, 11, 28, 12, 0), 7);
        let starts: Vec<(u32, u32, i64)> = slots
            .iter()
            .map(|(s, _)| {
                let (_, m, d) = civil_from_days(s.div_euclid(DAY_MS));
                (m, d, s.rem_euclid(DAY_MS) / MINUTE_MS)
            })
            .collect();
        assert_eq!(
            starts,
            vec![
                (11, 30, 14 * 60),
                (11, 30, 14 * 60 + 30),
                (11, 30, 15 * 60),
                (12, 2, 14 * 60),
                (12, 2, 15 * 60),
            ]
        );
        assert!(slots.iter().all(|(s, e)| e - s == 30 * MINUTE_MS));
    }

    #[test]
    fn slots_already_begun_are_not_offered_and_a_zero_length_makes_none() {
        let t = Template {
            hours: vec![WeeklyHours {
                days: vec![1, 2, 3, 4, 5, 6, 7],
                start_minute: 0,
                end_minute: 24 * 60,
            }],
            slot_minutes: 60,
            unavailable: vec![],
        };
        let from = utc(2026, 12, 1, 17, 30); // 12:30 local
        let slots = generate(&t, from, 1);
        assert_eq!(slots.first().unwrap().0, utc(2026, 12, 1, 18, 0));
        assert_eq!(slots.len(), 11, "13:00 … 23:00 local");
        let none = Template {
            slot_minutes: 0,
            ..t
        };
        assert!(generate(&none, from, 7).is_empty());
        assert_eq!(parse_time("09:30:00"), Some(570));
        assert_eq!(parse_time("9"), None);
        assert_eq!(weekday_code("sun"), Some(7));
    }
}

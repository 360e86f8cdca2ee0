//! Ages in whole years on a given day, as access rules count them.

use time::{Date, Month, OffsetDateTime};

/// A birth date as recorded: FHIR allows `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthDate {
    pub year: i32,
    pub month: Option<u8>,
    pub day: Option<u8>,
}

impl BirthDate {
    /// Parses a FHIR date (which validation has already checked).
    pub fn parse(s: &str) -> Option<BirthDate> {
        let mut parts = s.split('-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
        let day = parts.next().map(|d| d.parse().ok()).unwrap_or(Some(0))?;
        Some(BirthDate {
            year,
            month: (month > 0).then_some(month),
            day: (day > 0).then_some(day),
        })
    }

    /// The earliest day the person can have been born on. Partial dates are taken at their
    /// earliest, so that a person reaches an age no later than they really do: rules that
    /// protect a teenager's privacy start on time.
    fn earliest(&self) -> (i32, u8, u8) {
        (self.year, self.month.unwrap_or(1), self.day.unwrap_or(1))
    }
}

/// Whole years of age on the UTC day containing `now_ms`. Someone born on 29 February has
/// their birthday on 1 March in common years.
pub fn age_on(birth: BirthDate, now_ms: i64) -> i32 {
    let now = OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (by, bm, bd) = birth.earliest();
    let mut age = now.year() - by;
    if (now.month() as u8, now.day()) < (bm, bd) {
        age -= 1;
    }
    age
}

/// The epoch milliseconds of midnight UTC on a calendar day (for tests and fixtures).
pub fn day_ms(year: i32, month: u8, day: u8) -> i64 {
    let d = Date::from_calendar_date(year, Month::try_from(month).unwrap_or(Month::January), day)
        .unwrap_or(Date::MIN);
    d.midnight().assume_utc().unix_timestamp() * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> BirthDate {
        BirthDate::parse(s).unwrap()
    }

    #[test]
    fn birthdays() {
        assert_eq!(age_on(b("2010-06-15"), day_ms(2022, 6, 14)), 11);
        assert_eq!(age_on(b("2010-06-15"), day_ms(2022, 6, 15)), 12);
        assert_eq!(
            age_on(b("2010-06-15"), day_ms(2028, 6, 14) + 86_399_999),
            17
        );
        assert_eq!(age_on(b("2010-06-15"), day_ms(2028, 6, 15)), 18);
        // leap day
        assert_eq!(age_on(b("2008-02-29"), day_ms(2026, 2, 28)), 17);
        assert_eq!(age_on(b("2008-02-29"), day_ms(2026, 3, 1)), 18);
        // partial dates count from their earliest day
        assert_eq!(age_on(b("2010"), day_ms(2022, 1, 1)), 12);
        assert_eq!(age_on(b("2010-06"), day_ms(2022, 5, 31)), 11);
        assert_eq!(age_on(b("2010-06"), day_ms(2022, 6, 1)), 12);
    }
}

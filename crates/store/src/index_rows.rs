//! The layout of the search index rows that more than one module needs: the width classes of
//! date rows.

/// The width classes of date index rows (the `wide` column): a row of class k spans at most
/// `DATE_SPANS[k]` (a day: dates and instants; 367 days: months, years, periods up to a
/// year), so a bound on its end bounds its start as well; the last class is unbounded.
pub(crate) const DATE_SPANS: [i64; 2] = [86_400_000, 367 * 86_400_000];

/// The width class of a date row.
pub(crate) fn date_class(low: i64, high: i64) -> i64 {
    DATE_SPANS
        .iter()
        .position(|span| high.saturating_sub(low) <= *span)
        .unwrap_or(DATE_SPANS.len()) as i64
}

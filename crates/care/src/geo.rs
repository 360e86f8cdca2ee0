//! Where people and sites are: straight-line distance and an estimated drive time.

/// A point on the Earth, in decimal degrees (WGS84, as FHIR `Location.position`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

/// The mean radius of the Earth in statute miles.
const EARTH_RADIUS_MILES: f64 = 3958.8;

/// Great-circle ("as the crow flies") distance in miles (the haversine formula).
pub fn haversine_miles(a: Point, b: Point) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = (b.lat - a.lat).to_radians();
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_MILES * h.sqrt().min(1.0).asin()
}

/// The centroid of a US ZIP code and its state (from the `zipcodes` crate's embedded copy of
/// the public ZIP code database), for placing a home when no position is recorded.
pub fn zip_centroid(zip: &str) -> Option<(Point, String)> {
    let five: String = zip.trim().chars().take(5).collect();
    if five.len() != 5 || !five.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let found = zipcodes::matching(&five, None).ok()?;
    let z = found.into_iter().next()?;
    let lat: f64 = z.lat.parse().ok()?;
    let lng: f64 = z.long.parse().ok()?;
    Some((Point { lat, lng }, z.state.to_string()))
}

/// The standard (deliverable) ZIP codes of a US state, sorted.
pub fn zips_in_state(state: &str) -> Vec<String> {
    let mut zips: Vec<String> = zipcodes::list_all()
        .into_iter()
        .filter(|z| z.state.eq_ignore_ascii_case(state) && z.zip_code_type == "STANDARD")
        .filter(|z| z.lat.parse::<f64>().is_ok() && z.long.parse::<f64>().is_ok())
        .map(|z| z.zip_code.to_string())
        .collect();
    zips.sort();
    zips.dedup();
    zips
}

/// The town of a ZIP code.
pub fn zip_city(zip: &str) -> Option<String> {
    let found = zipcodes::matching(zip.trim(), None).ok()?;
    found.into_iter().next().map(|z| z.city.to_string())
}

/// Roads are not straight: the estimate takes 1.3 road miles per straight-line mile at an
/// average 35 mph, plus 5 minutes to get going. It is an estimate and is always called one.
pub fn drive_minutes_estimate(miles: f64) -> u32 {
    const DETOUR: f64 = 1.3;
    const MPH: f64 = 35.0;
    (5.0 + miles.max(0.0) * DETOUR / MPH * 60.0).round() as u32
}

/// USPS codes of the states, DC and the territories.
const US_STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "AS", "GU", "MP", "PR", "VI",
];

/// Whether `code` is a USPS state (or DC, or territory) code, in any case.
pub fn is_us_state(code: &str) -> bool {
    US_STATES.iter().any(|s| s.eq_ignore_ascii_case(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARTFORD: Point = Point {
        lat: 41.7658,
        lng: -72.6734,
    };
    const NEW_LONDON: Point = Point {
        lat: 41.3557,
        lng: -72.0995,
    };

    #[test]
    fn hartford_to_new_london_is_about_41_miles() {
        let d = haversine_miles(HARTFORD, NEW_LONDON);
        assert!((d - 41.03).abs() < 0.05, "{d}");
        assert_eq!(haversine_miles(HARTFORD, HARTFORD), 0.0);
        assert!((haversine_miles(NEW_LONDON, HARTFORD) - d).abs() < 1e-9);
    }

    #[test]
    fn zip_codes_place_a_home() {
        let (p, state) = zip_centroid("06320").unwrap();
        assert_eq!(state, "CT");
        assert!(haversine_miles(p, NEW_LONDON) < 3.0, "{p:?}");
        assert!(zip_centroid("06320-1234").is_some());
        assert_eq!(zip_centroid("00000"), None);
        assert_eq!(zip_centroid("abc"), None);
    }

    #[test]
    fn drive_time_is_a_plain_estimate() {
        assert_eq!(drive_minutes_estimate(0.0), 5);
        // 35 straight miles → 45.5 road miles at 35 mph = 78 min, + 5
        assert_eq!(drive_minutes_estimate(35.0), 83);
    }
}

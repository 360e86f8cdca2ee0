//! String normalisation for search: case- and accent-insensitive, as the FHIR search page asks.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-cases, strips accents and collapses runs of white space: `"  Núñez  Ruiz"` →
/// `"nunez ruiz"`.
pub fn normalize_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_string;

    #[test]
    fn folds_case_accents_and_space() {
        assert_eq!(normalize_string("  Núñez   Ruiz "), "nunez ruiz");
        assert_eq!(normalize_string("ÉLODIE"), "elodie");
        assert_eq!(normalize_string("O'Brien"), "o'brien");
    }
}

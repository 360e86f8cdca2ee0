//! Reading an operation's `Parameters`: the parts, checked against the names the operation
//! takes, and the 400 that names the parameter at fault.

use fhir::IssueType;
use serde_json::Value;

use crate::error::ApiError;

/// A 400 about one parameter, naming it.
pub fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueType::Value, msg).at(param)
}

/// The parts of an operation's `Parameters`, refusing any name not in `names` (listed in the
/// answer) or `aliases` (accepted quietly): 400 naming the unknown parameter.
pub fn parameter_list<'a>(
    params: &'a Value,
    op: &str,
    names: &[&str],
    aliases: &[&str],
) -> Result<Vec<&'a Value>, ApiError> {
    let parts: Vec<&Value> = params
        .get("parameter")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for p in &parts {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if !names.contains(&name) && !aliases.contains(&name) {
            return Err(bad(
                name,
                format!("{op} has no parameter '{name}' ({})", names.join(", ")),
            ));
        }
    }
    Ok(parts)
}

/// The id in a `valueReference` to `rt`.
pub fn reference(params: &Value, name: &str, rt: &str) -> Result<Option<String>, ApiError> {
    let found: Vec<&Value> = params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [p] => {
            let r = p
                .pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(name, format!("'{name}' is a valueReference to a {rt}")))?;
            let id = r
                .strip_prefix(rt)
                .and_then(|s| s.strip_prefix('/'))
                .filter(|id| fhir::primitive::is_id(id))
                .ok_or_else(|| bad(name, format!("'{name}' must reference a {rt} ({rt}/id)")))?;
            Ok(Some(id.to_string()))
        }
        _ => Err(bad(name, format!("'{name}' is given more than once"))),
    }
}

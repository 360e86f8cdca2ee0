//! Parsing a FHIR search query string into a typed [`SearchRequest`]: each parameter checked
//! against the R4 definitions of the resource type, each value against its parameter type.

use super::index::split_reference;
use super::normalize::normalize_string;
use super::registry::{Column, ParamType, Registry, SearchParam};
use crate::outcome::{Issue, IssueType};
use crate::primitive::{Precision, Range, parse_date_time};

/// The page size when `_count` is not given.
pub const DEFAULT_COUNT: usize = 50;
/// The largest `_count` accepted.
pub const MAX_COUNT: usize = 1000;

/// How large one search may be: every query, by whatever path it arrives (GET, `POST _search`,
/// conditional headers and URLs, Bundle entries), is refused with 400 `too-costly` beyond these
/// — a query has a cost the server must be able to bound (SQLite refuses an expression more
/// than 1,000 deep, and a statement of more than 32,766 values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Parameters in one query (`name=a&name=b` is two).
    pub terms: usize,
    /// Values of one parameter (`code=a,b,c` is three).
    pub values: usize,
    /// Values across the whole query.
    pub total_values: usize,
    /// `_include` and `_revinclude` parameters together.
    pub includes: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            terms: 100,
            values: 500,
            total_values: 1000,
            includes: 20,
        }
    }
}

/// The values of one parameter's value: its commas not escaped as `\,`, plus one.
fn value_count(value: &str) -> usize {
    let mut n = 1;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => n += 1,
            _ => escaped = false,
        }
    }
    n
}

/// The first limit a query goes beyond, in words, with the parameter to blame.
fn over_limits(params: &[(String, String)], limits: &SearchLimits) -> Option<Issue> {
    if params.len() > limits.terms {
        return Some(Issue::error(
            IssueType::TooCostly,
            format!(
                "this search has {} parameters; at most {} are accepted in one query — narrow it, or split it into several searches",
                params.len(),
                limits.terms
            ),
        ));
    }
    let includes = params
        .iter()
        .filter(|(n, _)| n.starts_with("_include") || n.starts_with("_revinclude"))
        .count();
    if includes > limits.includes {
        return Some(Issue::error(
            IssueType::TooCostly,
            format!(
                "this search has {includes} _include/_revinclude parameters; at most {} are accepted",
                limits.includes
            ),
        ));
    }
    let mut total = 0;
    for (name, value) in params {
        let n = value_count(value);
        if n > limits.values {
            return Some(bad(
                name,
                IssueType::TooCostly,
                format!(
                    "'{name}' has {n} values; at most {} are accepted for one parameter — split the list over several searches",
                    limits.values
                ),
            ));
        }
        total += n;
    }
    (total > limits.total_values).then(|| {
        Issue::error(
            IssueType::TooCostly,
            format!(
                "this search has {total} values in all; at most {} are accepted in one query",
                limits.total_values
            ),
        )
    })
}

/// A parsed search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub resource_type: String,
    /// ANDed clauses; the values inside one clause are ORed.
    pub clauses: Vec<Clause>,
    pub count: usize,
    pub total: TotalMode,
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
    pub sort: Vec<SortKey>,
    /// The opaque paging cursor of a `next` link.
    pub cursor: Option<String>,
    /// The parameters that were applied, for the Bundle's `self` link.
    pub applied: Vec<(String, String)>,
    /// Parameters ignored under `Prefer: handling=lenient`.
    pub ignored: Vec<String>,
    /// `_include` (resources the matches refer to).
    pub includes: Vec<Include>,
    /// `_revinclude` (resources that refer to the matches).
    pub revincludes: Vec<Include>,
}

/// `_include=Observation:subject:Patient` / `_revinclude=Provenance:target` (`:iterate` to
/// apply it once more to what was included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    /// The reference parameter; `None` for `*` (all of them).
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// Default: a total when it costs nothing extra or the page is full.
    Auto,
    None,
    Estimate,
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    False,
    True,
    Text,
    Data,
    Count,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: SortColumn,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    LastUpdated,
    /// A search parameter's indexed value (the lowest ascending, the highest descending).
    Param {
        code: String,
        kind: ParamType,
    },
}

/// One parameter occurrence: `name:modifier=v1,v2`.
#[derive(Debug, Clone)]
pub struct Clause {
    pub param: String,
    pub kind: ParamType,
    pub column: Column,
    pub modifier: Modifier,
    pub values: Vec<SearchValue>,
    /// `subject:Patient.name=x`: follow the reference; the condition is the inner clause.
    pub chain: Option<Box<Chain>>,
    /// `_has:Observation:patient:code=x`: resources referred to by matching ones.
    pub has: Option<Box<Has>>,
}

/// A chained parameter's next hop: for each type the reference may point at, the clause
/// that type must satisfy.
#[derive(Debug, Clone)]
pub struct Chain {
    pub targets: Vec<(String, Clause)>,
}

/// Reverse chaining: resources of `source_type` whose `reference_param` points here and that
/// satisfy `clause`.
#[derive(Debug, Clone)]
pub struct Has {
    pub source_type: String,
    pub reference_param: String,
    pub clause: Clause,
}

impl Clause {
    fn simple(param: &SearchParam, modifier: Modifier, values: Vec<SearchValue>) -> Clause {
        Clause {
            param: param.code.clone(),
            kind: param.kind,
            column: param.column,
            modifier,
            values,
            chain: None,
            has: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Exact,
    Contains,
    Missing(bool),
    Not,
    Text,
    Below,
    Above,
    /// `subject:Patient=...`
    Type(String),
}

/// The comparison prefix of an ordered value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    NoSystem,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// Normalised for default/`:contains`, as given for `:exact`.
    String {
        norm: String,
        exact: String,
    },
    Token {
        system: SystemMatch,
        code: Option<String>,
    },
    /// `:text` on a token: normalised.
    Text(String),
    Reference {
        target_type: Option<String>,
        id: String,
    },
    ReferenceUrl(String),
    Date {
        prefix: Prefix,
        range: Range,
    },
    Number {
        prefix: Prefix,
        low: f64,
        high: f64,
        value: f64,
    },
    Quantity {
        prefix: Prefix,
        low: f64,
        high: f64,
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
    /// For `_id`.
    Id(String),
    /// For `:missing`.
    Missing(bool),
    /// `near=lat|lng|distance|unit`, the distance in kilometres.
    Near {
        lat: f64,
        lng: f64,
        distance_km: f64,
    },
    /// A composite pair: the first part (a token, or a reference as `Type/id`), then the second.
    Composite {
        system: SystemMatch,
        code: String,
        second: Box<SearchValue>,
    },
}

/// What the caller tells the parser.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions<'a> {
    /// `Prefer: handling=lenient`: unknown parameters are ignored rather than rejected.
    pub lenient: bool,
    /// This server's base URL, so absolute references to it match local ones.
    pub base_url: &'a str,
    /// How large the query may be.
    pub limits: SearchLimits,
}

/// Parses search parameters (already percent-decoded) for a resource type.
pub fn parse_search(
    registry: &Registry,
    resource_type: &str,
    params: &[(String, String)],
    opts: &ParseOptions,
) -> Result<SearchRequest, Vec<Issue>> {
    let mut req = SearchRequest {
        resource_type: resource_type.to_string(),
        clauses: Vec::new(),
        count: DEFAULT_COUNT,
        total: TotalMode::Auto,
        summary: Summary::False,
        elements: None,
        sort: Vec::new(),
        cursor: None,
        applied: Vec::new(),
        ignored: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
    };
    if let Some(issue) = over_limits(params, &opts.limits) {
        return Err(vec![issue]);
    }
    // as in FHIR strings
    for (name, value) in params {
        if let Some(c) =
            crate::primitive::control_character(name).or(crate::primitive::control_character(value))
        {
            return Err(vec![bad(
                name,
                IssueType::Value,
                format!(
                    "'{}' holds the control character U+{:04X}, which a search may not contain",
                    name.escape_debug(),
                    c as u32
                ),
            )]);
        }
    }
    let mut issues = Vec::new();
    for (name, value) in params {
        let before = issues.len();
        let applied = parse_one(registry, &mut req, name, value, opts, &mut issues);
        if issues.len() == before && applied {
            req.applied.push((name.clone(), value.clone()));
        }
    }
    if issues.is_empty() {
        Ok(req)
    } else {
        Err(issues)
    }
}

fn bad(name: &str, code: IssueType, msg: impl Into<String>) -> Issue {
    Issue::error(code, msg).at(name.to_string())
}

/// Returns whether the parameter was applied (false when ignored).
fn parse_one(
    registry: &Registry,
    req: &mut SearchRequest,
    name: &str,
    value: &str,
    opts: &ParseOptions,
    issues: &mut Vec<Issue>,
) -> bool {
    match name {
        "_count" => {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_COUNT => req.count = n,
                Ok(n) => issues.push(bad(
                    name,
                    IssueType::TooCostly,
                    format!("_count={n} is over the maximum page size of {MAX_COUNT}"),
                )),
                Err(_) => issues.push(bad(
                    name,
                    IssueType::Value,
                    format!("_count must be a whole number, not '{value}'"),
                )),
            }
            return true;
        }
        // `_totalMethod` is Aidbox's name, sent by fhirpy's count(): a synonym
        "_total" | "_totalMethod" => {
            req.total = match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "accurate" | "count" => TotalMode::Accurate,
                _ => {
                    issues.push(bad(
                        name,
                        IssueType::Value,
                        format!("_total must be none, estimate or accurate, not '{value}'"),
                    ));
                    return false;
                }
            };
            return true;
        }
        "_summary" => {
            req.summary = match value {
                "true" => Summary::True,
                "false" => Summary::False,
                "text" => Summary::Text,
                "data" => Summary::Data,
                "count" => Summary::Count,
                _ => {
                    issues.push(bad(
                        name,
                        IssueType::Value,
                        format!("_summary must be true, false, text, data or count, not '{value}'"),
                    ));
                    return false;
                }
            };
            return true;
        }
        "_elements" => {
            let list: Vec<String> = value
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            req.elements = Some(list);
            return true;
        }
        "_sort" => {
            for key in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                let (descending, code) = match key.strip_prefix('-') {
                    Some(c) => (true, c),
                    None => (false, key),
                };
                let column = match code {
                    "_id" => SortColumn::Id,
                    "_lastUpdated" => SortColumn::LastUpdated,
                    other => match registry.param(&req.resource_type, other) {
                        Some(p)
                            if matches!(
                                p.kind,
                                ParamType::String
                                    | ParamType::Token
                                    | ParamType::Date
                                    | ParamType::Number
                                    | ParamType::Quantity
                                    | ParamType::Reference
                                    | ParamType::Uri
                            ) =>
                        {
                            SortColumn::Param {
                                code: p.code.clone(),
                                kind: p.kind,
                            }
                        }
                        _ => {
                            if opts.lenient {
                                req.ignored.push(format!("_sort={other}"));
                                continue;
                            }
                            issues.push(bad(name, IssueType::NotSupported, format!("cannot sort {} by '{other}': it is not a sortable search parameter of the type", req.resource_type)));
                            continue;
                        }
                    },
                };
                req.sort.push(SortKey { column, descending });
            }
            return true;
        }
        "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
            let iterate = name.ends_with(":iterate");
            let reverse = name.starts_with("_revinclude");
            match parse_include(registry, &req.resource_type, value, iterate, reverse) {
                Ok(inc) => {
                    if reverse {
                        req.revincludes.push(inc)
                    } else {
                        req.includes.push(inc)
                    }
                }
                Err(msg) => issues.push(bad(name, IssueType::Value, msg)),
            }
            return true;
        }
        "_cursor" => {
            req.cursor = Some(value.to_string());
            return false;
        }
        "_format" | "_pretty" => return false,
        _ => {}
    }
    match parse_clause(registry, &req.resource_type, name, value, opts, 0) {
        Ok(clause) => {
            req.clauses.push(clause);
            true
        }
        Err(ClauseError::Unknown(why)) => {
            if opts.lenient {
                req.ignored.push(name.to_string());
                return false;
            }
            let kind = if name.starts_with('_') {
                IssueType::NotSupported
            } else {
                IssueType::NotFound
            };
            issues.push(bad(name, kind, why));
            false
        }
        Err(ClauseError::Bad(kind, why)) => {
            issues.push(bad(name, kind, why));
            false
        }
    }
}

enum ClauseError {
    /// No such parameter (ignored when lenient).
    Unknown(String),
    Bad(IssueType, String),
}

/// The deepest chain or `_has` nesting accepted.
const MAX_CHAIN: usize = 3;

/// Parses `name=value` for `rt`: a plain parameter, a chain (`subject:Patient.name`) or a
/// reverse chain (`_has:Observation:patient:code`).
fn parse_clause(
    registry: &Registry,
    rt: &str,
    name: &str,
    value: &str,
    opts: &ParseOptions,
    depth: usize,
) -> Result<Clause, ClauseError> {
    if depth > MAX_CHAIN {
        return Err(ClauseError::Bad(
            IssueType::TooCostly,
            format!("chains are limited to {MAX_CHAIN} links"),
        ));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(reference), Some(inner)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ClauseError::Bad(
                IssueType::Invalid,
                format!(
                    "'{name}' is not a reverse chain: use _has:Type:reference-parameter:parameter=value"
                ),
            ));
        };
        if !registry.supports(source) {
            return Err(ClauseError::Bad(
                IssueType::NotSupported,
                format!("_has names '{source}', which is not a supported resource type"),
            ));
        }
        let Some(rp) = registry
            .param(source, reference)
            .filter(|p| p.kind == ParamType::Reference)
        else {
            return Err(ClauseError::Bad(
                IssueType::Invalid,
                format!("'{reference}' is not a reference parameter of {source}"),
            ));
        };
        if !rp.targets.is_empty() && !rp.targets.iter().any(|t| t == rt) {
            return Err(ClauseError::Bad(
                IssueType::Invalid,
                format!("{source}.{reference} cannot refer to a {rt}"),
            ));
        }
        let clause = parse_clause(registry, source, inner, value, opts, depth + 1)?;
        return Ok(Clause {
            param: "_has".into(),
            kind: ParamType::Reference,
            column: Column::Index,
            modifier: Modifier::None,
            values: Vec::new(),
            chain: None,
            has: Some(Box::new(Has {
                source_type: source.to_string(),
                reference_param: reference.to_string(),
                clause,
            })),
        });
    }
    if let Some((head, rest)) = name.split_once('.') {
        let (code, type_modifier) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (head, None),
        };
        let Some(param) = registry.param(rt, code) else {
            return Err(ClauseError::Unknown(format!(
                "'{code}' is not a search parameter of {rt}"
            )));
        };
        if param.kind != ParamType::Reference {
            return Err(ClauseError::Bad(
                IssueType::Invalid,
                format!(
                    "'{code}' is a {} parameter; only reference parameters can be chained",
                    param.kind.code()
                ),
            ));
        }
        let candidates: Vec<String> = match type_modifier {
            Some(t) if param.targets.iter().any(|x| x == t) || param.targets.is_empty() => {
                vec![t.to_string()]
            }
            Some(t) => {
                return Err(ClauseError::Bad(
                    IssueType::Invalid,
                    format!(
                        "'{code}' cannot refer to a {t}; it refers to {}",
                        param.targets.join(", ")
                    ),
                ));
            }
            None => param.targets.clone(),
        };
        let next_code = rest.split(['.', ':']).next().unwrap_or(rest);
        let mut targets = Vec::new();
        for t in candidates.iter().filter(|t| registry.supports(t)) {
            if next_code != "_has" && registry.param(t, next_code).is_none() {
                continue;
            }
            targets.push((
                t.clone(),
                parse_clause(registry, t, rest, value, opts, depth + 1)?,
            ));
        }
        if targets.is_empty() {
            return Err(ClauseError::Bad(
                IssueType::Invalid,
                format!(
                    "none of the types '{code}' refers to ({}) has a search parameter '{next_code}'",
                    candidates.join(", ")
                ),
            ));
        }
        let mut clause = Clause::simple(
            param,
            type_modifier
                .map(|t| Modifier::Type(t.to_string()))
                .unwrap_or(Modifier::None),
            Vec::new(),
        );
        clause.chain = Some(Box::new(Chain { targets }));
        return Ok(clause);
    }
    let (code, modifier_text) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let Some(param) = registry.param(rt, code) else {
        let why = if code.starts_with('_') {
            format!("the parameter '{name}' is not supported")
        } else {
            format!("'{code}' is not a search parameter of {rt}")
        };
        return Err(ClauseError::Unknown(why));
    };
    let modifier = parse_modifier(param, modifier_text)
        .map_err(|m| ClauseError::Bad(IssueType::NotSupported, m))?;
    if value.is_empty() {
        return Err(ClauseError::Bad(
            IssueType::Value,
            format!("the parameter '{name}' has no value"),
        ));
    }
    let mut values = Vec::new();
    for raw in split_unescaped(value, ',') {
        values.push(
            parse_value(param, &modifier, &raw, opts)
                .map_err(|m| ClauseError::Bad(IssueType::Value, m))?,
        );
    }
    Ok(Clause::simple(param, modifier, values))
}

fn parse_include(
    registry: &Registry,
    rt: &str,
    value: &str,
    iterate: bool,
    reverse: bool,
) -> Result<Include, String> {
    if value == "*" && !reverse {
        return Ok(Include {
            source_type: rt.to_string(),
            param: None,
            target_type: None,
            iterate,
        });
    }
    let mut parts = value.split(':');
    let source = parts.next().unwrap_or("");
    let param = parts.next();
    let target = parts.next();
    if !registry.supports(source) {
        return Err(format!(
            "'{value}' does not start with a supported resource type (use Type:parameter[:TargetType])"
        ));
    }
    if !reverse && !iterate && source != rt {
        return Err(format!(
            "_include={value} names {source}, but this search returns {rt} (use _include:iterate to follow included resources)"
        ));
    }
    let param = match param {
        None => {
            return Err(format!(
                "'{value}' needs a reference parameter: Type:parameter[:TargetType]"
            ));
        }
        Some("*") => None,
        Some(p) => {
            let def = registry
                .param(source, p)
                .filter(|d| d.kind == ParamType::Reference)
                .ok_or_else(|| format!("'{p}' is not a reference parameter of {source}"))?;
            if let Some(t) = target
                && !def.targets.is_empty()
                && !def.targets.iter().any(|x| x == t)
            {
                return Err(format!("{source}.{p} cannot refer to a {t}"));
            }
            if reverse
                && !def.targets.is_empty()
                && !def.targets.iter().any(|x| x == rt)
                && target.is_none()
            {
                return Err(format!("{source}.{p} cannot refer to a {rt}"));
            }
            Some(p.to_string())
        }
    };
    Ok(Include {
        source_type: source.to_string(),
        param,
        target_type: target.map(str::to_string),
        iterate,
    })
}

fn parse_modifier(param: &SearchParam, m: Option<&str>) -> Result<Modifier, String> {
    let Some(m) = m else {
        return Ok(Modifier::None);
    };
    let ok = match (param.kind, m) {
        (_, "missing") => return Ok(Modifier::Missing(false)),
        (ParamType::String, "exact") => Modifier::Exact,
        (ParamType::String, "contains") => Modifier::Contains,
        (ParamType::Token, "not") => Modifier::Not,
        (ParamType::Token, "text") if param.column == Column::Index => Modifier::Text,
        (ParamType::Uri, "below") => Modifier::Below,
        (ParamType::Uri, "above") => Modifier::Above,
        (ParamType::Reference, t) if param.targets.iter().any(|x| x == t) => {
            Modifier::Type(t.to_string())
        }
        (ParamType::Reference, t) if t.starts_with(char::is_uppercase) => {
            return Err(format!(
                "'{}' cannot refer to a {t}; it refers to {}",
                param.code,
                param.targets.join(", ")
            ));
        }
        _ => {
            return Err(format!(
                "the modifier ':{m}' is not supported on the {} parameter '{}'",
                param.kind.code(),
                param.code
            ));
        }
    };
    Ok(ok)
}

/// Splits on unescaped `sep` and removes the FHIR search escapes (`\,` `\|` `\$` `\\`).
pub fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == sep => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\,", ",")
        .replace("\\|", "|")
        .replace("\\$", "$")
        .replace("\\\\", "\\")
}

fn parse_prefix(v: &str) -> (Prefix, &str) {
    let p = match v.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        _ => return (Prefix::Eq, v),
    };
    (p, &v[2..])
}

/// The implicit range of a decimal as written: `100` → [99.5, 100.5].
fn number_range(s: &str) -> Result<(f64, f64, f64), String> {
    let value: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !value.is_finite() {
        return Err(format!("'{s}' is not a number"));
    }
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (
            &s[..i],
            s[i + 1..]
                .parse::<i32>()
                .map_err(|_| format!("'{s}' is not a number"))?,
        ),
        None => (s, 0),
    };
    let decimals = mantissa
        .split_once('.')
        .map(|(_, d)| d.len() as i32)
        .unwrap_or(0);
    let half = 0.5 * 10f64.powi(exp - decimals);
    Ok((value - half, value + half, value))
}

fn parse_value(
    param: &SearchParam,
    modifier: &Modifier,
    raw: &str,
    opts: &ParseOptions,
) -> Result<SearchValue, String> {
    if let Modifier::Missing(_) = modifier {
        return match raw {
            "true" => Ok(SearchValue::Missing(true)),
            "false" => Ok(SearchValue::Missing(false)),
            _ => Err(format!(":missing takes true or false, not '{raw}'")),
        };
    }
    if param.column == Column::Id {
        let v = unescape(raw);
        if !crate::primitive::is_id(&v) {
            return Err(format!("'{v}' is not a valid resource id"));
        }
        return Ok(SearchValue::Id(v));
    }
    match param.kind {
        ParamType::Token if *modifier == Modifier::Text => {
            Ok(SearchValue::Text(normalize_string(&unescape(raw))))
        }
        ParamType::Reference => parse_reference(param, modifier, &unescape(raw), opts),
        ParamType::Uri => Ok(SearchValue::Uri(unescape(raw))),
        ParamType::Composite => {
            let [first, second] = param.components.as_slice() else {
                return Err("this composite parameter is not supported".into());
            };
            let parts = split_unescaped(raw, '$');
            let [a, b] = parts.as_slice() else {
                return Err(format!(
                    "'{raw}' is not a composite value: write first$second, like http://loinc.org|8480-6$gt100"
                ));
            };
            let (system, code) = match first.kind {
                ParamType::Reference => (SystemMatch::Any, unescape(a)),
                _ => match typed_value(ParamType::Token, a)? {
                    SearchValue::Token {
                        system,
                        code: Some(code),
                    } => (system, code),
                    _ => return Err(format!("the first part of '{raw}' needs a code")),
                },
            };
            Ok(SearchValue::Composite {
                system,
                code,
                second: Box::new(typed_value(second.kind, b)?),
            })
        }
        ParamType::Special => parse_near(raw),
        kind => typed_value(kind, raw),
    }
}

/// `near=lat|lng|distance|unit`: units km (default), m, mi or [mi_i]; distance default 50 km.
fn parse_near(raw: &str) -> Result<SearchValue, String> {
    let parts = split_unescaped(raw, '|');
    let bad = || {
        format!(
            "'{raw}' is not a position: use latitude|longitude|distance|unit, like 41.76|-72.68|20|mi"
        )
    };
    let lat: f64 = parts.first().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let lng: f64 = parts.get(1).and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
        return Err(format!(
            "'{raw}': latitude must be within ±90 and longitude within ±180"
        ));
    }
    let distance: f64 = match parts.get(2).filter(|d| !d.is_empty()) {
        Some(d) => d.parse().map_err(|_| bad())?,
        None => 50.0,
    };
    if distance <= 0.0 || !distance.is_finite() {
        return Err(format!("'{raw}': the distance must be positive"));
    }
    let factor = match parts.get(3).map(|u| u.as_str()).unwrap_or("km") {
        "km" | "" => 1.0,
        "m" => 0.001,
        "mi" | "[mi_i]" | "mile" | "miles" => 1.609_344,
        other => {
            return Err(format!(
                "'{other}' is not a distance unit this server knows (km, m, mi, [mi_i])"
            ));
        }
    };
    Ok(SearchValue::Near {
        lat,
        lng,
        distance_km: distance * factor,
    })
}

/// A value of a string, token, date, number or quantity parameter.
fn typed_value(kind: ParamType, raw: &str) -> Result<SearchValue, String> {
    match kind {
        ParamType::String => {
            let exact = unescape(raw);
            Ok(SearchValue::String {
                norm: normalize_string(&exact),
                exact,
            })
        }
        ParamType::Token => {
            let parts = split_unescaped(raw, '|');
            match parts.as_slice() {
                [code] => Ok(SearchValue::Token {
                    system: SystemMatch::Any,
                    code: Some(unescape(code)),
                }),
                [system, code] => {
                    let system = if system.is_empty() {
                        SystemMatch::NoSystem
                    } else {
                        SystemMatch::Is(unescape(system))
                    };
                    let code = if code.is_empty() {
                        None
                    } else {
                        Some(unescape(code))
                    };
                    if system == SystemMatch::NoSystem && code.is_none() {
                        return Err(
                            "a token needs a system, a code or both ('|' alone matches nothing)"
                                .into(),
                        );
                    }
                    Ok(SearchValue::Token { system, code })
                }
                _ => Err(format!(
                    "'{raw}' is not a token: use code, system|code, |code or system|"
                )),
            }
        }
        ParamType::Date => {
            let (prefix, rest) = parse_prefix(raw);
            if raw.starts_with("ap") {
                return Err("the 'ap' (approximately) prefix is not supported".into());
            }
            let v = parse_date_time(rest, Precision::Fraction, true)?;
            Ok(SearchValue::Date {
                prefix,
                range: v.range(),
            })
        }
        ParamType::Number => {
            let (prefix, rest) = parse_prefix(raw);
            if raw.starts_with("ap") {
                return Err("the 'ap' (approximately) prefix is not supported".into());
            }
            let (low, high, value) = number_range(rest)?;
            Ok(SearchValue::Number {
                prefix,
                low,
                high,
                value,
            })
        }
        ParamType::Quantity => {
            let parts = split_unescaped(raw, '|');
            let (prefix, num) = parse_prefix(&parts[0]);
            if raw.starts_with("ap") {
                return Err("the 'ap' (approximately) prefix is not supported".into());
            }
            let (low, high, value) = number_range(num)?;
            let (system, code) = match parts.len() {
                1 => (None, None),
                3 => (
                    Some(unescape(&parts[1])).filter(|s| !s.is_empty()),
                    Some(unescape(&parts[2])).filter(|s| !s.is_empty()),
                ),
                _ => {
                    return Err(format!(
                        "'{raw}' is not a quantity: use [prefix]number, or [prefix]number|system|code"
                    ));
                }
            };
            Ok(SearchValue::Quantity {
                prefix,
                low,
                high,
                value,
                system,
                code,
            })
        }
        ParamType::Uri => Ok(SearchValue::Uri(unescape(raw))),
        other => Err(format!("{} values are not supported here", other.code())),
    }
}

fn parse_reference(
    param: &SearchParam,
    modifier: &Modifier,
    v: &str,
    opts: &ParseOptions,
) -> Result<SearchValue, String> {
    let typed = match modifier {
        Modifier::Type(t) => Some(t.clone()),
        _ => None,
    };
    let local = v
        .strip_prefix(opts.base_url.trim_end_matches('/'))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|_| !opts.base_url.is_empty())
        .unwrap_or(v);
    if local.contains("://") || local.starts_with("urn:") {
        return Ok(SearchValue::ReferenceUrl(
            v.split('|').next().unwrap_or(v).to_string(),
        ));
    }
    if let Some((rt, id)) = split_reference(local) {
        if !param.targets.is_empty() && !param.targets.iter().any(|t| t == rt) {
            return Err(format!(
                "'{}' cannot refer to a {rt}; it refers to {}",
                param.code,
                param.targets.join(", ")
            ));
        }
        if let Some(t) = &typed
            && t != rt
        {
            return Err(format!("'{v}' is not a {t}"));
        }
        return Ok(SearchValue::Reference {
            target_type: Some(rt.to_string()),
            id: id.to_string(),
        });
    }
    if crate::primitive::is_id(local) {
        let target_type =
            typed.or_else(|| (param.targets.len() == 1).then(|| param.targets[0].clone()));
        return Ok(SearchValue::Reference {
            target_type,
            id: local.to_string(),
        });
    }
    if param.targets.is_empty() || local.contains('/') {
        // a canonical or other URL-like value
        return Ok(SearchValue::ReferenceUrl(
            v.split('|').next().unwrap_or(v).to_string(),
        ));
    }
    Err(format!(
        "'{v}' is not a reference: use an id, Type/id or an absolute URL"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::registry::registry;

    fn parse(rt: &str, q: &[(&str, &str)]) -> Result<SearchRequest, Vec<Issue>> {
        let params: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse_search(
            registry(),
            rt,
            &params,
            &ParseOptions {
                lenient: false,
                base_url: "http://localhost:8080/fhir",
                limits: Default::default(),
            },
        )
    }

    #[test]
    fn tokens_and_escapes() {
        let r = parse("Patient", &[("identifier", "urn:mrn|12\\,3,|x")]).unwrap();
        assert_eq!(
            r.clauses[0].values,
            vec![
                SearchValue::Token {
                    system: SystemMatch::Is("urn:mrn".into()),
                    code: Some("12,3".into())
                },
                SearchValue::Token {
                    system: SystemMatch::NoSystem,
                    code: Some("x".into())
                },
            ]
        );
    }

    #[test]
    fn references_in_every_form() {
        let r = parse(
            "Observation",
            &[
                ("subject", "Patient/1"),
                ("subject:Patient", "2"),
                ("subject", "http://localhost:8080/fhir/Patient/3"),
                ("subject", "http://elsewhere/fhir/Patient/4"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.clauses[0].values[0],
            SearchValue::Reference {
                target_type: Some("Patient".into()),
                id: "1".into()
            }
        );
        assert_eq!(
            r.clauses[1].values[0],
            SearchValue::Reference {
                target_type: Some("Patient".into()),
                id: "2".into()
            }
        );
        assert_eq!(
            r.clauses[2].values[0],
            SearchValue::Reference {
                target_type: Some("Patient".into()),
                id: "3".into()
            }
        );
        assert_eq!(
            r.clauses[3].values[0],
            SearchValue::ReferenceUrl("http://elsewhere/fhir/Patient/4".into())
        );
        assert!(parse("Patient", &[("general-practitioner", "Observation/1")]).is_err());
    }

    #[test]
    fn dates_and_numbers() {
        let r = parse("Patient", &[("birthdate", "ge2010-01")]).unwrap();
        let SearchValue::Date { prefix, range } = &r.clauses[0].values[0] else {
            panic!()
        };
        assert_eq!(*prefix, Prefix::Ge);
        assert_eq!(
            crate::primitive::format_instant(range.high),
            "2010-01-31T23:59:59.999Z"
        );
        assert!(parse("Patient", &[("birthdate", "2010-13")]).is_err());
        let (low, high, _) = number_range("100").unwrap();
        assert_eq!((low, high), (99.5, 100.5));
        let (low, high, _) = number_range("1.50").unwrap();
        assert!((low - 1.495).abs() < 1e-9 && (high - 1.505).abs() < 1e-9);
    }

    #[test]
    fn strictness() {
        let e = parse("Patient", &[("nonsense", "x")]).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("nonsense"));
        assert!(parse("Patient", &[("_count", "5000")]).is_err());
        assert!(parse("Patient", &[("name:fuzzy", "x")]).is_err());
        let params = vec![("nonsense".to_string(), "x".to_string())];
        let ok = parse_search(
            registry(),
            "Patient",
            &params,
            &ParseOptions {
                lenient: true,
                base_url: "",
                limits: Default::default(),
            },
        )
        .unwrap();
        assert_eq!(ok.ignored, vec!["nonsense".to_string()]);
    }

    #[test]
    fn queries_are_held_to_the_limits() {
        assert_eq!(value_count("a"), 1);
        assert_eq!(value_count("a,b,c"), 3);
        assert_eq!(
            value_count("a\\,b,c"),
            2,
            "an escaped comma is part of a value"
        );
        let limits = SearchLimits {
            terms: 3,
            values: 2,
            total_values: 4,
            includes: 1,
        };
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(over_limits(&q(&[("name", "a"), ("name", "b,c")]), &limits).is_none());
        let four = q(&[("name", "a"), ("name", "b"), ("name", "c"), ("name", "d")]);
        let issue = over_limits(&four, &limits).unwrap();
        assert_eq!(issue.code, IssueType::TooCostly);
        assert!(
            issue.diagnostics.contains("4 parameters; at most 3"),
            "{}",
            issue.diagnostics
        );
        let issue = over_limits(&q(&[("code", "a,b,c")]), &limits).unwrap();
        assert_eq!(issue.expression.as_deref(), Some("code"));
        assert!(issue.diagnostics.contains("3 values; at most 2"));
        let issue = over_limits(&q(&[("a", "1,2"), ("b", "1,2"), ("c", "1")]), &limits).unwrap();
        assert!(
            issue.diagnostics.contains("5 values in all"),
            "{}",
            issue.diagnostics
        );
        let two = q(&[
            ("_include", "Patient:organization"),
            ("_revinclude", "Observation:subject"),
        ]);
        assert!(
            over_limits(&two, &limits)
                .unwrap()
                .diagnostics
                .contains("_include")
        );
        // through parse_search, before any parameter is parsed
        let opts = ParseOptions {
            lenient: true,
            base_url: "",
            limits,
        };
        let err = parse_search(super::super::registry(), "Patient", &four, &opts).unwrap_err();
        assert_eq!(err[0].code, IssueType::TooCostly);
    }
}

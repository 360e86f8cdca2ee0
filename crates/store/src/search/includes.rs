//! `_include` and `_revinclude` for a page, under the same access filter as the matches.

use super::*;

pub(super) fn stored_rows(rows: Vec<Vec<SqlValue>>) -> Vec<Stored> {
    rows.into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            Stored {
                rid: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                resource_type: it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
                id: it
                    .next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
                version: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                last_updated: it.next().and_then(|v| v.as_i64()).unwrap_or_default(),
                deleted: false,
                body: it.next().and_then(SqlValue::into_string),
            }
        })
        .collect()
}

/// `_include` and `_revinclude` for a page (then once more for `:iterate`), under the same
/// access filter as the matches.
pub(super) fn includes(
    tx: &mut Tx,
    req: &SearchRequest,
    matches: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    if matches.is_empty() || (req.includes.is_empty() && req.revincludes.is_empty()) {
        return Ok(Vec::new());
    }
    let mut seen: std::collections::HashSet<i64> = matches.iter().map(|m| m.rid).collect();
    let mut out: Vec<Stored> = Vec::new();
    let mut round = |tx: &mut Tx,
                     from: &[Stored],
                     iterate: bool,
                     out: &mut Vec<Stored>|
     -> Result<(), StoreError> {
        let mut found = Vec::new();
        for inc in req
            .includes
            .iter()
            .filter(|i| i.iterate == iterate || !iterate)
        {
            found.extend(include_targets(tx, inc, from, access)?);
        }
        for inc in req
            .revincludes
            .iter()
            .filter(|i| i.iterate == iterate || !iterate)
        {
            found.extend(revinclude_sources(tx, inc, from, access)?);
        }
        for s in found {
            if out.len() >= MAX_INCLUDED {
                break;
            }
            if seen.insert(s.rid) {
                out.push(s);
            }
        }
        Ok(())
    };
    round(tx, matches, false, &mut out)?;
    if req
        .includes
        .iter()
        .chain(&req.revincludes)
        .any(|i| i.iterate)
        && !out.is_empty()
    {
        let first: Vec<Stored> = out.clone();
        round(tx, &first, true, &mut out)?;
    }
    Ok(out)
}

pub(super) fn include_targets(
    tx: &mut Tx,
    inc: &Include,
    from: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    let rids: Vec<i64> = from
        .iter()
        .filter(|s| s.resource_type == inc.source_type)
        .map(|s| s.rid)
        .collect();
    if rids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::default();
    q.push("SELECT DISTINCT t.rid, t.rtype, t.id, t.version, t.last_updated, t.body FROM idx_reference i JOIN resources t ON t.rtype = i.target_type AND t.id = i.target_id WHERE i.rid IN (");
    for (n, rid) in rids.iter().enumerate() {
        if n > 0 {
            q.push(", ");
        }
        q.bind(*rid);
    }
    q.push(")");
    if let Some(p) = &inc.param {
        q.push(" AND i.param = ");
        q.bind(p.as_str());
    }
    if let Some(t) = &inc.target_type {
        q.push(" AND i.target_type = ");
        q.bind(t.as_str());
    }
    q.push(" AND t.deleted = 0");
    q.access(access, "t");
    q.push(" ORDER BY t.rid LIMIT ");
    q.bind(MAX_INCLUDED as i64);
    Ok(stored_rows(tx.conn().query(&q.text, &q.params)?))
}

pub(super) fn revinclude_sources(
    tx: &mut Tx,
    inc: &Include,
    from: &[Stored],
    access: Option<&AccessFilter>,
) -> Result<Vec<Stored>, StoreError> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for s in from {
        if inc
            .target_type
            .as_deref()
            .is_none_or(|t| t == s.resource_type)
        {
            by_type
                .entry(s.resource_type.as_str())
                .or_default()
                .push(s.id.as_str());
        }
    }
    let mut out = Vec::new();
    for (target_type, ids) in by_type {
        let mut q = Sql::default();
        q.push("SELECT t.rid, t.rtype, t.id, t.version, t.last_updated, t.body FROM resources t WHERE t.rtype = ");
        q.bind(inc.source_type.as_str());
        q.push(" AND t.deleted = 0 AND t.rid IN (SELECT rid FROM idx_reference WHERE rtype = ");
        q.bind(inc.source_type.as_str());
        if let Some(p) = &inc.param {
            q.push(" AND param = ");
            q.bind(p.as_str());
        } else {
            // every reference parameter of the source type, so the lookup index serves `*`
            q.push(" AND param IN (");
            let params = fhir::search::registry()
                .params(&inc.source_type)
                .filter(|p| p.kind == ParamType::Reference);
            for (n, p) in params.enumerate() {
                if n > 0 {
                    q.push(", ");
                }
                q.bind(p.code.as_str());
            }
            q.push(")");
        }
        q.push(" AND target_type = ");
        q.bind(target_type);
        q.push(" AND target_id IN (");
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                q.push(", ");
            }
            q.bind(*id);
        }
        q.push("))");
        q.access(access, "t");
        q.push(" ORDER BY t.rid LIMIT ");
        q.bind(MAX_INCLUDED as i64);
        out.extend(stored_rows(tx.conn().query(&q.text, &q.params)?));
    }
    Ok(out)
}

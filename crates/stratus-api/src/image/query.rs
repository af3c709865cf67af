//! The query string of `GET /v2/images`: paging, sorting in both of Glance's syntaxes, and every
//! filter, parsed into the store's filter. Unknown parameters filter on free-form properties, as
//! in Glance (`?__os_type=Linux`, `?hw_disk_bus=scsi`).

use super::GResult;
use crate::error::ApiError;
use stratus_services::limits;
use stratus_services::model::{Cmp, ImageFilter, Scope, SortKey};
use time::format_description::well_known::Iso8601;
use time::OffsetDateTime;

/// Largest page of a listing.
pub const MAX_LIMIT: i64 = limits::PAGE_ITEMS as i64;
pub const DEFAULT_LIMIT: i64 = 25;

pub struct Parsed {
    pub filter: ImageFilter,
    pub marker: Option<String>,
    /// No image can match (`os_hidden=true`: this cloud hides none).
    pub nothing: bool,
}

const SCOPES: &[(&str, Scope)] = &[
    ("public", Scope::Public),
    ("private", Scope::Private),
    ("shared", Scope::Shared),
    ("community", Scope::Community),
    ("all", Scope::All),
];

const CMPS: &[(&str, Cmp)] = &[
    ("eq", Cmp::Eq),
    ("neq", Cmp::Neq),
    ("gt", Cmp::Gt),
    ("gte", Cmp::Gte),
    ("lt", Cmp::Lt),
    ("lte", Cmp::Lte),
];

fn bad<T>(msg: String) -> GResult<T> {
    Err(ApiError::bad_request(msg))
}

fn int(key: &str, v: &str) -> GResult<i64> {
    match v.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        _ => bad(format!(
            "{key} param must be a non-negative integer, not {v:?}"
        )),
    }
}

/// `in:a,b` → both; anything else → itself. At most [`limits::FILTER_VALUES`] values.
fn values(key: &str, v: &str) -> GResult<Vec<String>> {
    let out: Vec<String> = match v.strip_prefix("in:") {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .collect(),
        None => vec![v.to_string()],
    };
    if out.len() > limits::FILTER_VALUES {
        return bad(format!(
            "The {key} filter lists {} values; at most {} are accepted.",
            out.len(),
            limits::FILTER_VALUES
        ));
    }
    Ok(out)
}

/// `gt:2026-01-02T03:04:05Z` (or a bare time, meaning `eq`).
fn time_cmp(key: &str, v: &str) -> GResult<(Cmp, i64)> {
    let (cmp, t) = match v.split_once(':') {
        Some((op, rest)) if CMPS.iter().any(|c| c.0 == op) => {
            (CMPS.iter().find(|c| c.0 == op).map(|c| c.1), rest)
        }
        _ => (Some(Cmp::Eq), v),
    };
    let cmp = cmp.unwrap_or(Cmp::Eq);
    // A time without an offset is UTC.
    let parsed = OffsetDateTime::parse(t, &Iso8601::DEFAULT)
        .or_else(|_| OffsetDateTime::parse(&format!("{t}Z"), &Iso8601::DEFAULT));
    match parsed {
        Ok(t) => Ok((cmp, (t.unix_timestamp_nanos() / 1000) as i64)),
        Err(_) => bad(format!(
            "Invalid {key} filter {v:?}: expected an operator (eq, neq, gt, gte, lt, lte) and an ISO 8601 time, e.g. gt:2026-01-02T03:04:05Z"
        )),
    }
}

fn sort_key(k: &str) -> GResult<SortKey> {
    SortKey::parse(k).map_or_else(
        || {
            bad(format!(
                "Invalid sort key {k:?}: use one of {}",
                SortKey::ALL
                    .iter()
                    .map(|k| k.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        },
        Ok,
    )
}

fn sort_dir(d: &str) -> GResult<bool> {
    match d {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => bad(format!("Invalid sort direction {d:?}: use asc or desc")),
    }
}

pub fn parse(pairs: &[(String, String)]) -> GResult<Parsed> {
    let mut f = ImageFilter::new("", DEFAULT_LIMIT);
    let mut marker = None;
    let mut nothing = false;
    let (mut keys, mut dirs, mut sort) = (Vec::new(), Vec::new(), None);
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => f.limit = int(k, v)?.min(MAX_LIMIT),
            "marker" => marker = Some(v.clone()),
            "sort_key" => keys.push(sort_key(v)?),
            "sort_dir" => dirs.push(sort_dir(v)?),
            "sort" => sort = Some(v.clone()),
            "visibility" => {
                f.scope = match SCOPES.iter().find(|s| s.0 == v) {
                    Some(s) => s.1,
                    None => {
                        return bad(format!(
                    "Invalid visibility value {v:?}: use public, private, shared, community or all"
                ))
                    }
                }
            }
            "member_status" => f.member_status = v.clone(),
            "id" => f.ids.extend(values(k, v)?),
            "name" => f.names.extend(values(k, v)?),
            "status" => f.statuses.extend(values(k, v)?),
            "disk_format" => f.disk_formats.extend(values(k, v)?),
            "container_format" => f.container_formats.extend(values(k, v)?),
            "owner" => f.owner = Some(v.clone()),
            "checksum" => f.checksum = Some(v.clone()),
            "os_hash_value" => f.os_hash_value = Some(v.clone()),
            "tag" => f.tags.push(v.clone()),
            "size_min" => f.size_min = Some(int(k, v)?),
            "size_max" => f.size_max = Some(int(k, v)?),
            "created_at" => f.created_at.push(time_cmp(k, v)?),
            "updated_at" => f.updated_at.push(time_cmp(k, v)?),
            "protected" | "os_hidden" => {
                let b = match v.as_str() {
                    "true" | "True" => true,
                    "false" | "False" => false,
                    _ => return bad(format!("{k} must be true or false, not {v:?}")),
                };
                if k == "protected" {
                    f.protected = Some(b);
                } else {
                    nothing |= b;
                }
            }
            _ => f.properties.push((k.clone(), v.clone())),
        }
    }
    if f.tags.len() + f.properties.len() > limits::IMAGE_FILTERS {
        return bad(format!(
            "At most {} tag and property filters are accepted.",
            limits::IMAGE_FILTERS
        ));
    }
    if let Some(sort) = sort {
        if !keys.is_empty() || !dirs.is_empty() {
            return bad("The sort param cannot be combined with sort_key or sort_dir".into());
        }
        for part in sort.split(',') {
            let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
            f.sort.push((sort_key(k.trim())?, sort_dir(d.trim())?));
        }
    } else {
        f.sort = match (keys.len(), dirs.len()) {
            (_, 0) => keys.iter().map(|k| (*k, false)).collect(),
            (_, 1) => keys.iter().map(|k| (*k, dirs[0])).collect(),
            (n, m) if n == m => keys.into_iter().zip(dirs).collect(),
            _ => return bad(
                "The number of sort_dir values must be one or match the number of sort_key values"
                    .into(),
            ),
        };
    }
    if f.sort.len() > limits::SORT_KEYS {
        return bad(format!(
            "At most {} sort keys are accepted.",
            limits::SORT_KEYS
        ));
    }
    for (n, (k, _)) in f.sort.iter().enumerate() {
        if f.sort[..n].iter().any(|(o, _)| o == k) {
            return bad("Each sort key may be given once.".into());
        }
    }
    if let (Some(min), Some(max)) = (f.size_min, f.size_max) {
        if min > max {
            return bad(format!("size_min {min} is greater than size_max {max}"));
        }
    }
    Ok(Parsed {
        filter: f,
        marker,
        nothing,
    })
}

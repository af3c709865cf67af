//! Every limit on what one request may carry, in one place. Over a limit is a 400 (413 for a
//! body's size) in the called API's own error format, and changes nothing. `SECURITY.md` lists
//! the table below; a test keeps the two the same.

use crate::{Result, ServiceError};
use serde_json::{Map, Value};

/// Bytes of a JSON request body (413 above).
pub const JSON_BODY_BYTES: usize = 1024 * 1024;
/// Nesting of arrays and objects in a JSON body.
pub const JSON_DEPTH: usize = 32;
/// Bytes of any one string in a JSON body (keys included).
pub const JSON_STRING_BYTES: usize = 65_536;
/// Items of any one array in a JSON body.
pub const JSON_ARRAY_ITEMS: usize = 1_000;
/// Members of any one object in a JSON body.
pub const JSON_OBJECT_MEMBERS: usize = 1_000;
/// Bytes of a query string.
pub const QUERY_BYTES: usize = 8_192;
/// Parameters of a query string.
pub const QUERY_PARAMS: usize = 64;
/// Values of one `in:a,b,...` list filter.
pub const FILTER_VALUES: usize = 100;
/// Tag filters and property filters of one image listing, together.
pub const IMAGE_FILTERS: usize = 20;
/// Sort keys of one listing (each key at most once).
pub const SORT_KEYS: usize = 10;
/// Characters of a name (servers, images, volumes, snapshots, users, groups, projects, ...).
pub const NAME_CHARS: usize = 255;
/// Characters of a description.
pub const DESCRIPTION_CHARS: usize = 255;
/// Items of the metadata of a server, volume or snapshot.
pub const METADATA_ITEMS: usize = 128;
/// Characters of a metadata key or value.
pub const METADATA_CHARS: usize = 255;
/// Tags of an image.
pub const IMAGE_TAGS: usize = 128;
/// Characters of a tag.
pub const TAG_CHARS: usize = 255;
/// Additional properties of an image.
pub const IMAGE_PROPERTIES: usize = 128;
/// Characters of an image property's name.
pub const PROPERTY_NAME_CHARS: usize = 255;
/// Characters of an image property's value.
pub const PROPERTY_VALUE_CHARS: usize = 65_535;
/// Members (projects an image is shared with) of an image.
pub const IMAGE_MEMBERS: usize = 128;
/// Items of one listing page.
pub const PAGE_ITEMS: usize = 1_000;
/// Bytes of a kernel command line (`os_command_line`; the kernel's own limit on x86 is 2048).
pub const KERNEL_CMDLINE_BYTES: usize = 1_024;
/// Characters of the name of an image IMS makes (IMS's limit).
pub const IMS_NAME_CHARS: usize = 128;
/// Characters of the description of an image IMS makes (IMS's limit).
pub const IMS_DESCRIPTION_CHARS: usize = 1_024;
/// Tags (`tags` and `image_tags` together) of an image IMS makes (IMS's limit).
pub const IMS_TAGS: usize = 10;
/// Servers of a project one ECS listing considers (its `count` counts at most these).
pub const SERVERS_SCANNED: usize = 10_000;
/// Bytes of an AK/SK `Authorization` header (401 above).
pub const AUTHORIZATION_BYTES: usize = 4_096;
/// Headers an AK/SK signature may name.
pub const SIGNED_HEADERS: usize = 64;

/// `(name, value, what it bounds)` rows, the name taken from the constant itself.
macro_rules! table {
    ($($name:ident: $what:literal,)*) => {
        &[$((stringify!($name), $name, $what)),*]
    };
}

/// The table `SECURITY.md` shows: name, value, what it bounds.
pub const TABLE: &[(&str, usize, &str)] = table! {
    JSON_BODY_BYTES: "bytes of a JSON request body (413 above)",
    JSON_DEPTH: "nesting of arrays and objects in a JSON body",
    JSON_STRING_BYTES: "bytes of any string in a JSON body",
    JSON_ARRAY_ITEMS: "items of any array in a JSON body",
    JSON_OBJECT_MEMBERS: "members of any object in a JSON body",
    QUERY_BYTES: "bytes of a query string",
    QUERY_PARAMS: "parameters of a query string",
    FILTER_VALUES: "values of one `in:` list filter",
    IMAGE_FILTERS: "tag and property filters of one image listing",
    SORT_KEYS: "sort keys of one listing, each at most once",
    NAME_CHARS: "characters of a name",
    DESCRIPTION_CHARS: "characters of a description",
    METADATA_ITEMS: "metadata items of a server, volume or snapshot",
    METADATA_CHARS: "characters of a metadata key or value",
    IMAGE_TAGS: "tags of an image",
    TAG_CHARS: "characters of a tag",
    IMAGE_PROPERTIES: "additional properties of an image",
    PROPERTY_NAME_CHARS: "characters of an image property's name",
    PROPERTY_VALUE_CHARS: "characters of an image property's value",
    IMAGE_MEMBERS: "projects an image is shared with",
    PAGE_ITEMS: "items of one listing page (a larger `limit` is cut to it)",
    KERNEL_CMDLINE_BYTES: "bytes of an image's `os_command_line` when a server boots it (no control characters)",
    IMS_NAME_CHARS: "characters of the name (and OS version) of an image IMS makes of a server",
    IMS_DESCRIPTION_CHARS: "characters of the description of an image IMS makes of a server",
    IMS_TAGS: "tags (`tags` and `image_tags` together) of an image IMS makes of a server",
    SERVERS_SCANNED: "servers of a project one ECS listing (`cloudservers/detail`) considers; its `count` counts at most these",
    AUTHORIZATION_BYTES: "bytes of an AK/SK `Authorization` header (401 above)",
    SIGNED_HEADERS: "headers an AK/SK signature may name (401 above)",
};

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

/// Checks the shape limits of a parsed JSON body: depth, strings, arrays, objects.
pub fn check_json(v: &Value) -> Result<()> {
    fn walk(v: &Value, depth: usize) -> Result<()> {
        if depth > JSON_DEPTH {
            return Err(bad(format!(
                "The request body nests deeper than {JSON_DEPTH} levels."
            )));
        }
        match v {
            Value::String(s) => string(s),
            Value::Array(a) => {
                if a.len() > JSON_ARRAY_ITEMS {
                    return Err(bad(format!(
                        "An array of the request body has {} items; at most {JSON_ARRAY_ITEMS} are accepted.",
                        a.len()
                    )));
                }
                a.iter().try_for_each(|x| walk(x, depth + 1))
            }
            Value::Object(o) => {
                if o.len() > JSON_OBJECT_MEMBERS {
                    return Err(bad(format!(
                        "An object of the request body has {} members; at most {JSON_OBJECT_MEMBERS} are accepted.",
                        o.len()
                    )));
                }
                for (k, x) in o {
                    string(k)?;
                    walk(x, depth + 1)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    fn string(s: &str) -> Result<()> {
        if s.len() > JSON_STRING_BYTES {
            return Err(bad(format!(
                "A string of the request body has {} bytes; at most {JSON_STRING_BYTES} are accepted.",
                s.len()
            )));
        }
        Ok(())
    }
    walk(v, 0)
}

/// Checks the size of a query string and its number of parameters.
pub fn check_query(q: &str) -> Result<()> {
    if q.len() > QUERY_BYTES {
        return Err(bad(format!(
            "The query string has {} bytes; at most {QUERY_BYTES} are accepted.",
            q.len()
        )));
    }
    let n = q.split('&').filter(|p| !p.is_empty()).count();
    if n > QUERY_PARAMS {
        return Err(bad(format!(
            "The query string has {n} parameters; at most {QUERY_PARAMS} are accepted."
        )));
    }
    Ok(())
}

/// Checks a text field of at most `max` characters (`field` names it in the message).
pub fn check_chars(field: &str, s: &str, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n > max {
        return Err(bad(format!(
            "Invalid input for field/attribute {field}: {n} characters; at most {max} are accepted."
        )));
    }
    Ok(())
}

/// Checks an optional description.
pub fn check_description(field: &str, d: Option<&str>) -> Result<()> {
    d.map_or(Ok(()), |d| check_chars(field, d, DESCRIPTION_CHARS))
}

/// Checks the count of a collection.
pub fn check_count(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(bad(format!(
            "Invalid input for field/attribute {field}: {n} items; at most {max} are accepted."
        )));
    }
    Ok(())
}

/// Checks metadata of a server, volume or snapshot: item count, key and value lengths, string
/// values.
pub fn check_metadata(m: &Map<String, Value>) -> Result<()> {
    check_count("metadata", m.len(), METADATA_ITEMS)?;
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > METADATA_CHARS {
            return Err(bad(format!(
                "Invalid metadata key {k:?}: 1 to {METADATA_CHARS} characters."
            )));
        }
        match v.as_str() {
            Some(s) if s.chars().count() <= METADATA_CHARS => {}
            _ => {
                return Err(bad(format!(
                    "Invalid metadata value for {k:?}: a string of at most {METADATA_CHARS} characters."
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_shape_limits_hold() {
        assert!(check_json(&json!({"a": [1, 2, {"b": "c"}]})).is_ok());
        let mut deep = json!(1);
        for _ in 0..=JSON_DEPTH {
            deep = json!([deep]);
        }
        assert!(check_json(&deep).is_err());
        assert!(check_json(&json!("x".repeat(JSON_STRING_BYTES + 1))).is_err());
        assert!(check_json(&json!(vec![0; JSON_ARRAY_ITEMS + 1])).is_err());
        let wide: Map<String, Value> = (0..=JSON_OBJECT_MEMBERS)
            .map(|n| (n.to_string(), json!(n)))
            .collect();
        assert!(check_json(&Value::Object(wide)).is_err());
    }

    #[test]
    fn query_limits_hold() {
        assert!(check_query("a=1&b=2").is_ok());
        let many = vec!["a=1"; QUERY_PARAMS + 1].join("&");
        assert!(check_query(&many).is_err());
        assert!(check_query(&"a".repeat(QUERY_BYTES + 1)).is_err());
    }

    #[test]
    fn the_table_lists_every_limit_once() {
        let mut names: Vec<&str> = TABLE.iter().map(|r| r.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        let src = include_str!("limits.rs");
        let consts = src.matches("\npub const ").count() - 1; // TABLE itself
        assert_eq!(consts, TABLE.len());
    }
}

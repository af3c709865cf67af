//! Conditions: operators over global keys, as tables of data, with typed values compiled at
//! write time so that evaluation does no parsing of the policy.

use crate::action::glob_with;
use std::net::IpAddr;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What a key's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    String,
    Number,
    Date,
    Bool,
    Ip,
}

/// The global condition keys, with their types. `g:SourceIp` is a stratus extension.
pub const GLOBAL_KEYS: &[(&str, KeyType)] = &[
    ("g:CurrentTime", KeyType::Date),
    ("g:DomainName", KeyType::String),
    ("g:MFAPresent", KeyType::Bool),
    ("g:MFAAge", KeyType::Number),
    ("g:ProjectName", KeyType::String),
    ("g:ServiceName", KeyType::String),
    ("g:UserId", KeyType::String),
    ("g:UserName", KeyType::String),
    ("g:SourceIp", KeyType::Ip),
];

/// Looks up a global key case-insensitively; returns its canonical spelling and type.
pub fn global_key(name: &str) -> Option<(&'static str, KeyType)> {
    GLOBAL_KEYS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .copied()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Equals,
    EqualsIgnoreCase,
    Match,
    StartWith,
    EndWith,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
    InNetwork,
    Is,
    Null,
}

/// One operator: its name, the key type it applies to (`None`: any), the comparison, and whether
/// it is the negation of the comparison.
pub struct OperatorDef {
    pub name: &'static str,
    pub key_type: Option<KeyType>,
    pub cmp: Cmp,
    pub negated: bool,
}

const fn op(name: &'static str, key_type: Option<KeyType>, cmp: Cmp, negated: bool) -> OperatorDef {
    OperatorDef {
        name,
        key_type,
        cmp,
        negated,
    }
}

use KeyType as K;
/// Every operator of the policy language (each but `Null` also takes an `IfExists` suffix).
pub const OPERATORS: &[OperatorDef] = &[
    op("StringEquals", Some(K::String), Cmp::Equals, false),
    op("StringNotEquals", Some(K::String), Cmp::Equals, true),
    op(
        "StringEqualsIgnoreCase",
        Some(K::String),
        Cmp::EqualsIgnoreCase,
        false,
    ),
    op(
        "StringNotEqualsIgnoreCase",
        Some(K::String),
        Cmp::EqualsIgnoreCase,
        true,
    ),
    op("StringMatch", Some(K::String), Cmp::Match, false),
    op("StringNotMatch", Some(K::String), Cmp::Match, true),
    op("StringStartWith", Some(K::String), Cmp::StartWith, false),
    op("StringEndWith", Some(K::String), Cmp::EndWith, false),
    op("NumberEquals", Some(K::Number), Cmp::Equals, false),
    op("NumberNotEquals", Some(K::Number), Cmp::Equals, true),
    op("NumberLessThan", Some(K::Number), Cmp::LessThan, false),
    op(
        "NumberLessThanEquals",
        Some(K::Number),
        Cmp::LessThanEquals,
        false,
    ),
    op(
        "NumberGreaterThan",
        Some(K::Number),
        Cmp::GreaterThan,
        false,
    ),
    op(
        "NumberGreaterThanEquals",
        Some(K::Number),
        Cmp::GreaterThanEquals,
        false,
    ),
    op("DateEquals", Some(K::Date), Cmp::Equals, false),
    op("DateNotEquals", Some(K::Date), Cmp::Equals, true),
    op("DateLessThan", Some(K::Date), Cmp::LessThan, false),
    op(
        "DateLessThanEquals",
        Some(K::Date),
        Cmp::LessThanEquals,
        false,
    ),
    op("DateGreaterThan", Some(K::Date), Cmp::GreaterThan, false),
    op(
        "DateGreaterThanEquals",
        Some(K::Date),
        Cmp::GreaterThanEquals,
        false,
    ),
    op("Bool", Some(K::Bool), Cmp::Is, false),
    op("IpAddress", Some(K::Ip), Cmp::InNetwork, false),
    op("NotIpAddress", Some(K::Ip), Cmp::InNetwork, true),
    op("Null", None, Cmp::Null, false),
];

/// A value of a condition, typed by its operator.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    /// Unix time in nanoseconds.
    Date(i128),
    Bool(bool),
    Net {
        addr: IpAddr,
        prefix: u8,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub operator: &'static str,
    pub cmp: Cmp,
    pub negated: bool,
    pub if_exists: bool,
    /// Canonical key name.
    pub key: &'static str,
    pub key_type: KeyType,
    pub values: Vec<Value>,
}

pub fn parse_date(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        None => max,
    };
    Some((addr, prefix))
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

impl Condition {
    /// Builds a condition from an operator name (with optional `IfExists`), a key and its values.
    /// The error names the offending element.
    pub fn new(operator: &str, key: &str, values: &[String]) -> Result<Condition, String> {
        let (base, if_exists) = match operator.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (operator, false),
        };
        let def = OPERATORS
            .iter()
            .find(|o| o.name == base)
            .ok_or_else(|| format!("unknown condition operator {operator:?}"))?;
        if if_exists && def.cmp == Cmp::Null {
            return Err("the Null operator takes no IfExists suffix".into());
        }
        let (canon, key_type) =
            global_key(key).ok_or_else(|| format!("unknown condition key {key:?}"))?;
        if let Some(t) = def.key_type {
            if t != key_type {
                return Err(format!(
                    "operator {operator:?} cannot be applied to key {canon:?} ({key_type:?} values)"
                ));
            }
        }
        if values.is_empty() {
            return Err(format!("condition {operator:?} on {canon:?} has no values"));
        }
        let parsed = values
            .iter()
            .map(|v| {
                let bad = || {
                    format!(
                        "value {v:?} of condition {operator:?} on {canon:?} is not a valid {:?}",
                        def.key_type.unwrap_or(K::Bool)
                    )
                };
                Ok(match (def.cmp, def.key_type) {
                    (Cmp::Null | Cmp::Is, _) => Value::Bool(parse_bool(v).ok_or_else(bad)?),
                    (_, Some(K::Number)) => Value::Num(
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .ok_or_else(bad)?,
                    ),
                    (_, Some(K::Date)) => Value::Date(parse_date(v).ok_or_else(bad)?),
                    (_, Some(K::Ip)) => {
                        let (addr, prefix) = parse_net(v).ok_or_else(bad)?;
                        Value::Net { addr, prefix }
                    }
                    _ => Value::Str(v.clone()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Condition {
            operator: def.name,
            cmp: def.cmp,
            negated: def.negated,
            if_exists,
            key: canon,
            key_type,
            values: parsed,
        })
    }

    /// Evaluates against the request's values of the key (`None`: the key is absent).
    pub fn holds(&self, request: Option<&[String]>) -> bool {
        let present = request.filter(|v| !v.is_empty());
        if self.cmp == Cmp::Null {
            // Like every operator, the values of the list are OR-ed: ["true", "false"] holds
            // whether the key is absent or present.
            let absent = present.is_none();
            return self
                .values
                .iter()
                .any(|v| matches!(v, Value::Bool(b) if *b == absent));
        }
        let Some(values) = present else {
            // An absent key: false, except for negated operators and IfExists.
            return self.if_exists || self.negated;
        };
        let any = values
            .iter()
            .any(|rv| self.values.iter().any(|cv| self.compare(rv, cv)));
        any != self.negated
    }

    fn compare(&self, rv: &str, cv: &Value) -> bool {
        match (self.cmp, cv) {
            (Cmp::Equals, Value::Str(c)) => rv == c,
            (Cmp::EqualsIgnoreCase, Value::Str(c)) => fold(rv) == fold(c),
            (Cmp::Match, Value::Str(c)) => glob_with(c.as_bytes(), rv.as_bytes(), false, true),
            (Cmp::StartWith, Value::Str(c)) => rv.starts_with(c.as_str()),
            (Cmp::EndWith, Value::Str(c)) => rv.ends_with(c.as_str()),
            (cmp, Value::Num(c)) => match rv.trim().parse::<f64>() {
                Ok(r) => ordered(cmp, r.partial_cmp(c)),
                Err(_) => false,
            },
            (cmp, Value::Date(c)) => match parse_date(rv) {
                Some(r) => ordered(cmp, Some(r.cmp(c))),
                None => false,
            },
            (Cmp::Is, Value::Bool(c)) => parse_bool(rv) == Some(*c),
            (Cmp::InNetwork, Value::Net { addr, prefix }) => match rv.trim().parse::<IpAddr>() {
                Ok(ip) => in_net(ip, *addr, *prefix),
                Err(_) => false,
            },
            _ => false,
        }
    }
}

/// Case folding for the `*IgnoreCase` operators: Unicode, not only ASCII (`Ä` and `ä` match).
fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn ordered(cmp: Cmp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (cmp, o) {
        (_, None) => false,
        (Cmp::Equals, Some(o)) => o == Equal,
        (Cmp::LessThan, Some(o)) => o == Less,
        (Cmp::LessThanEquals, Some(o)) => o != Greater,
        (Cmp::GreaterThan, Some(o)) => o == Greater,
        (Cmp::GreaterThanEquals, Some(o)) => o != Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(op: &str, key: &str, vals: &[&str]) -> Condition {
        Condition::new(
            op,
            key,
            &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn v(vals: &[&str]) -> Vec<String> {
        vals.iter().map(|s| s.to_string()).collect()
    }

    /// Every operator: key present and matching, present and not matching, absent, and IfExists.
    #[test]
    fn every_operator_with_present_absent_and_if_exists() {
        // (operator, key, condition value, matching request value, non-matching request value)
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            ("StringEquals", "g:UserName", "alice", "alice", "Alice"),
            (
                "StringEqualsIgnoreCase",
                "g:UserName",
                "alice",
                "ALICE",
                "bob",
            ),
            ("StringMatch", "g:UserName", "al?c*", "alice-x", "bob"),
            (
                "StringStartWith",
                "g:ProjectName",
                "cn-",
                "cn-north-4",
                "eu-west",
            ),
            (
                "StringEndWith",
                "g:DomainName",
                "-corp",
                "acme-corp",
                "acme",
            ),
            ("NumberEquals", "g:MFAAge", "300", "300.0", "301"),
            ("NumberLessThan", "g:MFAAge", "300", "299", "300"),
            ("NumberLessThanEquals", "g:MFAAge", "300", "300", "301"),
            ("NumberGreaterThan", "g:MFAAge", "300", "301", "300"),
            ("NumberGreaterThanEquals", "g:MFAAge", "300", "300", "299"),
            (
                "DateEquals",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2026-01-01T08:00:00+08:00",
                "2026-01-01T00:00:01Z",
            ),
            (
                "DateLessThan",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2025-12-31T23:59:59Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                "DateLessThanEquals",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
            ),
            (
                "DateGreaterThan",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                "DateGreaterThanEquals",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            ("Bool", "g:MFAPresent", "true", "true", "false"),
            (
                "IpAddress",
                "g:SourceIp",
                "10.0.0.0/8",
                "10.1.2.3",
                "192.168.0.1",
            ),
        ];
        for (op, key, cv, yes, no) in cases {
            let cond = c(op, key, &[cv]);
            assert!(cond.holds(Some(&v(&[yes]))), "{op} {key} {cv} vs {yes}");
            assert!(!cond.holds(Some(&v(&[no]))), "{op} {key} {cv} vs {no}");
            assert!(
                !cond.holds(None),
                "{op}: an absent key makes a positive operator false"
            );
            let ie = c(&format!("{op}IfExists"), key, &[cv]);
            assert!(ie.holds(None), "{op}IfExists holds when the key is absent");
            assert!(ie.holds(Some(&v(&[yes]))));
            assert!(
                !ie.holds(Some(&v(&[no]))),
                "{op}IfExists still compares a present key"
            );
        }
        let negated: &[(&str, &str, &str, &str, &str)] = &[
            ("StringNotEquals", "g:UserName", "alice", "bob", "alice"),
            (
                "StringNotEqualsIgnoreCase",
                "g:UserName",
                "alice",
                "bob",
                "ALICE",
            ),
            ("StringNotMatch", "g:UserName", "a*", "bob", "alice"),
            ("NumberNotEquals", "g:MFAAge", "1", "2", "1"),
            (
                "DateNotEquals",
                "g:CurrentTime",
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-01T00:00:00Z",
            ),
            (
                "NotIpAddress",
                "g:SourceIp",
                "10.0.0.0/8",
                "192.168.0.1",
                "10.9.9.9",
            ),
        ];
        for (op, key, cv, yes, no) in negated {
            let cond = c(op, key, &[cv]);
            assert!(cond.holds(Some(&v(&[yes]))), "{op} vs {yes}");
            assert!(!cond.holds(Some(&v(&[no]))), "{op} vs {no}");
            assert!(
                cond.holds(None),
                "{op}: an absent key makes a negated operator true"
            );
            let ie = c(&format!("{op}IfExists"), key, &[cv]);
            assert!(ie.holds(None));
            assert!(!ie.holds(Some(&v(&[no]))));
        }
        let null_true = c("Null", "g:UserName", &["true"]);
        assert!(null_true.holds(None));
        assert!(!null_true.holds(Some(&v(&["x"]))));
        let null_false = c("Null", "g:UserName", &["false"]);
        assert!(!null_false.holds(None));
        assert!(null_false.holds(Some(&v(&["x"]))));
    }

    #[test]
    fn values_in_one_list_are_ored() {
        let cond = c("StringEquals", "g:UserName", &["alice", "bob"]);
        assert!(cond.holds(Some(&v(&["bob"]))));
        assert!(!cond.holds(Some(&v(&["carol"]))));
        // Null too: either answer holds whether the key is there or not.
        let either = c("Null", "g:UserName", &["true", "false"]);
        assert!(either.holds(None));
        assert!(either.holds(Some(&v(&["x"]))));
        let either = c("Null", "g:UserName", &["false", "true"]);
        assert!(either.holds(None));
    }

    #[test]
    fn ignore_case_folds_unicode() {
        let cond = c("StringEqualsIgnoreCase", "g:UserName", &["Äsa-ÖRN"]);
        assert!(cond.holds(Some(&v(&["äsa-örn"]))));
        assert!(!cond.holds(Some(&v(&["asa-orn"]))));
        let not = c("StringNotEqualsIgnoreCase", "g:UserName", &["ΣΟΦΊΑ"]);
        assert!(!not.holds(Some(&v(&["σοφία"]))));
    }

    #[test]
    fn write_time_errors_name_the_element() {
        let e = |op: &str, key: &str, val: &str| {
            Condition::new(op, key, &[val.to_string()]).unwrap_err()
        };
        assert!(e("StringEqual", "g:UserName", "x").contains("StringEqual"));
        assert!(e("StringEquals", "g:UserNam", "x").contains("g:UserNam"));
        assert!(e("NumberEquals", "g:MFAAge", "ten").contains("ten"));
        assert!(e("DateLessThan", "g:CurrentTime", "yesterday").contains("yesterday"));
        assert!(e("IpAddress", "g:SourceIp", "10.0.0.0/40").contains("10.0.0.0/40"));
        assert!(e("NullIfExists", "g:UserName", "true").contains("IfExists"));
        assert!(e("NumberEquals", "g:UserName", "1").contains("g:UserName"));
    }
}

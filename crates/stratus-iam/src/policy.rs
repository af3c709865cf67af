//! Policy documents (Huawei `Version "1.1"`): parsing and write-time validation.

use crate::action::{glob, ActionPattern};
use crate::condition::Condition;
use serde_json::Value;

/// Limits of custom policies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_statements: usize,
    pub max_actions_per_statement: usize,
    pub max_conditions_per_statement: usize,
    pub max_bytes: usize,
    /// Whether statements may name resources. New custom policies may not: no route names the
    /// resource it acts on to the decision, so a `Resource` would silently do nothing.
    pub resources: bool,
}

impl Limits {
    pub const CUSTOM: Limits = Limits {
        max_statements: 8,
        max_actions_per_statement: 100,
        max_conditions_per_statement: 10,
        max_bytes: 6144,
        resources: false,
    };
    /// System policies are shipped data; they are validated for form, not size.
    pub const SYSTEM: Limits = Limits {
        max_statements: usize::MAX,
        max_actions_per_statement: usize::MAX,
        max_conditions_per_statement: usize::MAX,
        max_bytes: usize::MAX,
        resources: true,
    };
}

/// How many custom policies one domain may hold.
pub const MAX_CUSTOM_POLICIES_PER_DOMAIN: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A resource pattern `service:region:account:type:path`, each segment a `*`-glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePattern {
    raw: String,
}

impl ResourcePattern {
    pub fn parse(raw: &str) -> Result<ResourcePattern, String> {
        let segs: Vec<&str> = raw.splitn(5, ':').collect();
        if segs.len() != 5 || segs.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "resource {raw:?} must have the form service:region:account:resourceType:resourcePath"
            ));
        }
        if segs[0].bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "the service of resource {raw:?} must be lower case"
            ));
        }
        Ok(ResourcePattern {
            raw: raw.to_string(),
        })
    }

    pub fn matches(&self, urn: &str) -> bool {
        let p: Vec<&str> = self.raw.splitn(5, ':').collect();
        let r: Vec<&str> = urn.splitn(5, ':').collect();
        p.len() == 5
            && r.len() == 5
            && p.iter()
                .zip(&r)
                .all(|(p, r)| glob(p.as_bytes(), r.as_bytes(), false))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<ActionPattern>,
    /// `None`: every resource.
    pub resources: Option<Vec<ResourcePattern>>,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
}

/// A policy that cannot be stored; the message names the offending element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                other => err(format!("{what} must hold strings, found {other}")),
            })
            .collect(),
        other => err(format!("{what} must be a list of strings, found {other}")),
    }
}

/// Parses and validates a policy document. `known` says whether an action pattern matches at
/// least one action of the catalogue: a pattern that matches nothing is an error, so a typo can
/// never silently grant or deny nothing.
pub fn parse_policy(
    text: &str,
    limits: &Limits,
    known: &dyn Fn(&ActionPattern) -> bool,
) -> Result<PolicyDocument, PolicyError> {
    if text.len() > limits.max_bytes {
        return err(format!(
            "the policy is {} bytes, more than the limit of {} bytes",
            text.len(),
            limits.max_bytes
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError(format!("the policy is not valid JSON: {e}")))?;
    parse_policy_value(&v, limits, known)
}

/// `Depends` names the policies a policy needs (Huawei's format): a list of policy names, or of
/// objects with `catalog` and `display_name`. Anything else is refused, not ignored.
fn check_depends(d: &Value) -> Result<(), PolicyError> {
    let bad = || {
        PolicyError(
            "Depends must be a list of policy names or of {\"catalog\", \"display_name\"} objects"
                .into(),
        )
    };
    let list = d.as_array().ok_or_else(bad)?;
    if list.len() > 32 {
        return err("Depends names more than 32 policies");
    }
    for item in list {
        let ok = match item {
            Value::String(s) => !s.is_empty() && s.len() <= 255,
            Value::Object(o) => {
                !o.is_empty()
                    && o.iter().all(|(k, v)| {
                        matches!(k.as_str(), "catalog" | "display_name")
                            && v.as_str().is_some_and(|s| s.len() <= 255)
                    })
            }
            _ => false,
        };
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

pub fn parse_policy_value(
    v: &Value,
    limits: &Limits,
    known: &dyn Fn(&ActionPattern) -> bool,
) -> Result<PolicyDocument, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PolicyError("the policy must be a JSON object".into()))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "Version" | "Statement" | "Depends") {
            return err(format!("unknown policy element {k:?}"));
        }
    }
    if let Some(d) = obj.get("Depends") {
        check_depends(d)?;
    }
    match obj.get("Version") {
        Some(Value::String(s)) if s == "1.1" => {}
        Some(other) => {
            return err(format!(
                "unsupported policy Version {other}: expected \"1.1\""
            ))
        }
        None => return err("the policy has no Version"),
    }
    let stmts = obj
        .get("Statement")
        .and_then(Value::as_array)
        .ok_or_else(|| PolicyError("the policy needs a Statement list".into()))?;
    if stmts.is_empty() {
        return err("the policy has no statements");
    }
    if stmts.len() > limits.max_statements {
        return err(format!(
            "the policy has {} statements, more than the limit of {}",
            stmts.len(),
            limits.max_statements
        ));
    }
    let mut statements = Vec::with_capacity(stmts.len());
    for (i, s) in stmts.iter().enumerate() {
        let at = format!("Statement[{i}]");
        let s = s
            .as_object()
            .ok_or_else(|| PolicyError(format!("{at} must be an object")))?;
        for k in s.keys() {
            if !matches!(k.as_str(), "Effect" | "Action" | "Resource" | "Condition") {
                return err(format!("{at}: unknown element {k:?}"));
            }
        }
        let effect = match s.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            Some(other) => {
                return err(format!(
                    "{at}: Effect must be \"Allow\" or \"Deny\", not {other:?}"
                ))
            }
            None => return err(format!("{at} has no Effect")),
        };
        let raw_actions = strings(
            s.get("Action")
                .ok_or_else(|| PolicyError(format!("{at} has no Action")))?,
            &format!("{at}.Action"),
        )?;
        if raw_actions.is_empty() {
            return err(format!("{at}.Action is empty"));
        }
        if raw_actions.len() > limits.max_actions_per_statement {
            return err(format!(
                "{at} has {} actions, more than the limit of {}",
                raw_actions.len(),
                limits.max_actions_per_statement
            ));
        }
        let mut actions = Vec::with_capacity(raw_actions.len());
        for a in &raw_actions {
            let p = ActionPattern::parse(a)
                .map_err(|e| PolicyError(format!("{at}: invalid action {a:?}: {e}")))?;
            if !known(&p) {
                return err(format!(
                    "{at}: action {a:?} matches no action of any service"
                ));
            }
            actions.push(p);
        }
        let resources = match s.get("Resource") {
            None => None,
            Some(_) if !limits.resources => {
                return err(format!(
                    "{at}.Resource: statements cannot be limited to resources here (actions and \
                     conditions decide); leave Resource out"
                ))
            }
            Some(r) => Some(
                strings(r, &format!("{at}.Resource"))?
                    .iter()
                    .map(|r| {
                        ResourcePattern::parse(r).map_err(|e| PolicyError(format!("{at}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let mut conditions = Vec::new();
        if let Some(c) = s.get("Condition") {
            let c = c
                .as_object()
                .ok_or_else(|| PolicyError(format!("{at}.Condition must be an object")))?;
            for (op, keys) in c {
                let keys = keys.as_object().ok_or_else(|| {
                    PolicyError(format!("{at}.Condition.{op} must be an object of keys"))
                })?;
                for (key, vals) in keys {
                    let vals = strings(vals, &format!("{at}.Condition.{op}.{key}"))?;
                    let cond = Condition::new(op, key, &vals)
                        .map_err(|e| PolicyError(format!("{at}: {e}")))?;
                    conditions.push(cond);
                }
            }
            if conditions.len() > limits.max_conditions_per_statement {
                return err(format!(
                    "{at} has {} conditions, more than the limit of {}",
                    conditions.len(),
                    limits.max_conditions_per_statement
                ));
            }
        }
        statements.push(Statement {
            effect,
            actions,
            resources,
            conditions,
        });
    }
    Ok(PolicyDocument { statements })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let known = |p: &ActionPattern| {
            [
                "ecs:servers:createImage",
                "ecs:servers:get",
                "ims:images:get",
                "evs:snapshots:create",
            ]
            .iter()
            .any(|a| p.matches(a))
        };
        parse_policy(text, &Limits::CUSTOM, &known)
    }

    #[test]
    fn a_valid_policy() {
        let p = parse(
            r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:*:*"],
               "Condition":{"StringEquals":{"g:UserName":["alice"]},"BoolIfExists":{"g:MFAPresent":["true"]}}},
               {"Effect":"Deny","Action":"ims:images:get"}]}"#,
        )
        .unwrap();
        assert_eq!(p.statements.len(), 2);
        assert_eq!(p.statements[0].conditions.len(), 2);
        assert_eq!(p.statements[1].effect, Effect::Deny);
    }

    #[test]
    fn depends_must_name_policies() {
        let with = |d: &str| {
            parse(&format!(
                r#"{{"Version":"1.1","Statement":[{{"Effect":"Allow","Action":["ecs:servers:get"]}}],"Depends":{d}}}"#
            ))
        };
        assert!(with(r#"["ECS FullAccess"]"#).is_ok());
        assert!(with(r#"[{"catalog":"BASE","display_name":"ECS FullAccess"}]"#).is_ok());
        for bad in ["5", r#""x""#, "[5]", r#"[{"name":"x"}]"#, "{}", r#"[""]"#] {
            let e = with(bad).unwrap_err();
            assert!(e.0.contains("Depends"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_offending_element() {
        let cases = [
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:servers:crateImage"]}]}"#,
                "crateImage",
            ),
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:servers:get"],"Condition":{"StringEqual":{"g:UserName":["a"]}}}]}"#,
                "StringEqual",
            ),
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:servers:get"],"Condition":{"StringEquals":{"g:UserNme":["a"]}}}]}"#,
                "g:UserNme",
            ),
            (r#"{"Version":"1.0","Statement":[]}"#, "Version"),
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Permit","Action":["ecs:servers:get"]}]}"#,
                "Permit",
            ),
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:servers:get"],"Resources":[]}]}"#,
                "Resources",
            ),
            (
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ECS:servers:get"]}]}"#,
                "lower case",
            ),
            (r#"{"Version":"1.1""#, "not valid JSON"),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().0;
            assert!(e.contains(needle), "{text}\n=> {e}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let stmt = r#"{"Effect":"Allow","Action":["ecs:servers:get"]}"#;
        let nine = format!(
            r#"{{"Version":"1.1","Statement":[{}]}}"#,
            [stmt; 9].join(",")
        );
        assert!(parse(&nine).unwrap_err().0.contains("9 statements"));
        let actions = ["\"ecs:servers:get\""; 101].join(",");
        let many = format!(
            r#"{{"Version":"1.1","Statement":[{{"Effect":"Allow","Action":[{actions}]}}]}}"#
        );
        assert!(parse(&many).unwrap_err().0.contains("101 actions"));
        // Eleven conditions, over distinct operators (keys of one object must differ).
        let ops = [
            "StringEquals",
            "StringNotEquals",
            "StringEqualsIgnoreCase",
            "StringNotEqualsIgnoreCase",
            "StringMatch",
            "StringNotMatch",
            "StringStartWith",
            "StringEndWith",
            "StringEqualsIfExists",
            "StringNotEqualsIfExists",
            "StringMatchIfExists",
        ];
        let cond: Vec<String> = ops
            .iter()
            .map(|o| format!(r#""{o}":{{"g:UserName":["x"]}}"#))
            .collect();
        let text = format!(
            r#"{{"Version":"1.1","Statement":[{{"Effect":"Allow","Action":["ecs:servers:get"],"Condition":{{{}}}}}]}}"#,
            cond.join(",")
        );
        assert!(parse(&text).unwrap_err().0.contains("11 conditions"));
        let big = format!(
            r#"{{"Version":"1.1","Statement":[{stmt}],"Depends":["{}"]}}"#,
            "x".repeat(7000)
        );
        assert!(parse(&big).unwrap_err().0.contains("bytes"));
    }
}

//! Action patterns `service:resourceType:operation`, with `*` matching any run of characters
//! within a segment. The service segment is lower case and matched exactly; the resource type
//! and the operation match case-insensitively.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionPattern {
    raw: String,
    service: String,
    /// Lower-cased.
    resource_type: String,
    /// Lower-cased.
    operation: String,
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'_' | b'.'))
}

impl ActionPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<ActionPattern, String> {
        let parts: Vec<&str> = raw.split(':').collect();
        let [service, resource_type, operation] = parts.as_slice() else {
            return Err("an action has three segments, service:resourceType:operation".into());
        };
        for (name, seg) in [
            ("service", service),
            ("resource type", resource_type),
            ("operation", operation),
        ] {
            if !segment_ok(seg) {
                return Err(format!(
                    "the {name} segment {seg:?} must be letters, digits, '-', '_', '.' or '*'"
                ));
            }
        }
        if service.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "the service segment {service:?} must be lower case"
            ));
        }
        Ok(ActionPattern {
            raw: raw.to_string(),
            service: service.to_string(),
            resource_type: resource_type.to_ascii_lowercase(),
            operation: operation.to_ascii_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// True if the concrete action `service:type:op` matches.
    pub fn matches(&self, action: &str) -> bool {
        let mut it = action.splitn(3, ':');
        let (Some(s), Some(t), Some(o)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        glob(self.service.as_bytes(), s.as_bytes(), false)
            && glob(self.resource_type.as_bytes(), t.as_bytes(), true)
            && glob(self.operation.as_bytes(), o.as_bytes(), true)
    }
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `*`-glob match of `text` against `pat`; with `ci`, `pat` is already lower case and `text` is
/// compared case-insensitively. Linear-time backtracking on the last `*`.
pub fn glob(pat: &[u8], text: &[u8], ci: bool) -> bool {
    glob_with(pat, text, ci, false)
}

/// Like [`glob`], with `?` matching any one character when `question` is set.
pub fn glob_with(pat: &[u8], text: &[u8], ci: bool, question: bool) -> bool {
    let eq = |p: u8, t: u8| {
        if ci {
            p == t.to_ascii_lowercase()
        } else {
            p == t
        }
    };
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && ((question && pat[p] == b'?') || eq(pat[p], text[t])) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        ActionPattern::parse(p).unwrap().matches(a)
    }

    #[test]
    fn wildcards_and_case() {
        assert!(m("ecs:*:*", "ecs:servers:createImage"));
        assert!(m("ecs:*:get*", "ecs:servers:get"));
        assert!(m("ecs:*:get*", "ecs:flavors:getDetail"));
        assert!(!m("ecs:*:get*", "ecs:servers:list"));
        assert!(m("ecs:SERVERS:CREATEIMAGE", "ecs:servers:createImage"));
        assert!(m("ecs:servers:createimage", "ecs:Servers:CreateImage"));
        assert!(!m("ims:*:*", "ecs:servers:get"));
        assert!(m("*:*:*", "iam:users:listUsers"));
        assert!(m("e*:*:*", "evs:volumes:get"));
        assert!(m("ecs:servers:*Image", "ecs:servers:createImage"));
        assert!(!m("ecs:servers:*Image", "ecs:servers:createImages"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "ecs",
            "ecs:servers",
            "ecs:servers:get:x",
            "ECS:servers:get",
            "ecs::get",
            "ecs:ser vers:get",
            "",
        ] {
            assert!(ActionPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn glob_basics() {
        assert!(glob(b"a*b*c", b"aXXbYYc", false));
        assert!(!glob(b"a*b*c", b"aXXbYY", false));
        assert!(glob(b"*", b"", false));
        assert!(glob_with(b"a?c", b"abc", false, true));
        assert!(!glob(b"a?c", b"abc", false));
    }
}

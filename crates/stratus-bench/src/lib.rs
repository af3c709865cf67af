//! Shared set-up of the authorization benchmark: ten policies (system and custom, with
//! wildcards and conditions) reaching one user, and the createImage request.

use std::sync::Arc;
use stratus_iam::engine::{CompiledPolicy, Context, GrantScope, PrincipalPolicies};
use stratus_iam::{parse_for, Catalogue, Limits};

pub const SEED: [&str; 8] = stratus_iam::SEED_ROW;

/// The ten policies, as Version 1.1 documents.
pub fn policies() -> Vec<(&'static str, String)> {
    let system: serde_json::Value = serde_json::from_str(include_str!(
        "../../stratus-services/data/system-policies.json"
    ))
    .unwrap();
    let mut out = Vec::new();
    for name in [
        "ECS FullAccess",
        "ECS ReadOnlyAccess",
        "IMS ReadOnlyAccess",
        "EVS ReadOnlyAccess",
        "Tenant Guest",
    ] {
        let p = system
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["display_name"] == name)
            .unwrap();
        out.push((name, p["policy"].to_string()));
    }
    out.push(("custom-1", r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:*:get*","ecs:servers:list"],
        "Condition":{"StringEquals":{"g:UserName":["alice","bob"]}}}]}"#.into()));
    out.push((
        "custom-2",
        r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["evs:snapshots:*"],
        "Condition":{"IpAddress":{"g:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}}]}"#
            .into(),
    ));
    out.push((
        "custom-3",
        r#"{"Version":"1.1","Statement":[{"Effect":"Deny","Action":["ims:images:share"],
        "Condition":{"DateLessThan":{"g:CurrentTime":["2020-01-01T00:00:00Z"]}}}]}"#
            .into(),
    ));
    out.push(("custom-4", r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ims:*:*"],
        "Condition":{"BoolIfExists":{"g:MFAPresent":["true"]},"StringStartWith":{"g:ProjectName":["cn-"]}}}]}"#.into()));
    out.push(("custom-5", r#"{"Version":"1.1","Statement":[{"Effect":"Deny","Action":["ecs:servers:delete","evs:volumes:delete"]},
        {"Effect":"Allow","Action":["ecs:servers:*Image"],"Condition":{"NumberLessThanEquals":{"g:MFAAge":["3600"]}}}]}"#.into()));
    out
}

pub fn principal(cat: &Catalogue) -> PrincipalPolicies {
    let project = policies()
        .into_iter()
        .map(|(name, text)| {
            let doc = parse_for(cat, &text, &Limits::SYSTEM).expect("valid policy");
            (
                GrantScope::Project,
                Arc::new(CompiledPolicy::compile(name, name, doc, cat)),
            )
        })
        .collect();
    PrincipalPolicies {
        project,
        ..Default::default()
    }
}

pub fn context() -> Context {
    let mut c = Context::default();
    for (k, v) in [
        ("g:UserName", "alice"),
        ("g:SourceIp", "10.1.2.3"),
        ("g:CurrentTime", "2026-11-28T10:00:00Z"),
        ("g:ProjectName", "cn-north-4"),
        ("g:MFAAge", "120"),
    ] {
        c.set(k, vec![v.to_string()]).unwrap();
    }
    c
}

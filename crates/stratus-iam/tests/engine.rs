//! Decision semantics of SPEC §4, as examples and as properties.

use proptest::prelude::*;
use std::sync::Arc;
use stratus_iam::engine::{
    decide, CompiledPolicy, Context, Decision, GrantScope, PrincipalPolicies, Request,
};
use stratus_iam::{parse_for, Catalogue, Limits};

const SEED: &[&str] = &stratus_iam::SEED_ROW;

fn cat() -> Catalogue {
    Catalogue::shipped().expect("shipped catalogue")
}

fn policy(cat: &Catalogue, id: &str, json: &str) -> Arc<CompiledPolicy> {
    let doc = parse_for(cat, json, &Limits::CUSTOM).expect("valid policy");
    Arc::new(CompiledPolicy::compile(id, id, doc, cat))
}

fn allow(actions: &[&str]) -> String {
    format!(
        r#"{{"Version":"1.1","Statement":[{{"Effect":"Allow","Action":{}}}]}}"#,
        serde_json::to_string(actions).unwrap()
    )
}

fn deny(actions: &[&str]) -> String {
    format!(
        r#"{{"Version":"1.1","Statement":[{{"Effect":"Deny","Action":{}}}]}}"#,
        serde_json::to_string(actions).unwrap()
    )
}

fn ask<'a>(
    cat: &Catalogue,
    p: &PrincipalPolicies,
    actions: &[&'a str],
    ep: Option<&'a str>,
    ctx: &'a Context,
) -> stratus_iam::Outcome {
    let mut req = Request::new(cat, actions, ctx);
    req.enterprise_project = ep;
    decide(p, &req)
}

#[test]
fn deny_beats_allow() {
    let c = cat();
    let p = PrincipalPolicies {
        project: vec![
            (
                GrantScope::Project,
                policy(&c, "a", &allow(&["ecs:*:*", "evs:*:*", "ims:*:*"])),
            ),
            (
                GrantScope::AllProjects,
                policy(&c, "d", &deny(&["ims:images:delete"])),
            ),
        ],
        ..Default::default()
    };
    let ctx = Context::default();
    let o = ask(&c, &p, SEED, None, &ctx);
    assert_eq!(o.decision, Decision::ExplicitDeny);
    assert_eq!(o.denied(), ["ims:images:delete"]);
    let r = &o.results[7];
    assert_eq!(r.scope, Some(GrantScope::AllProjects));
    assert_eq!(&*r.matched[0].policy_id, "d");
    assert_eq!(r.matched[0].statement, 0);
    assert!(o.results[..7]
        .iter()
        .all(|r| r.decision == Decision::Allowed));
}

#[test]
fn project_decision_is_final_before_enterprise_projects() {
    let c = cat();
    let ctx = Context::default();
    // Project Deny, EP Allow: denied.
    let mut p = PrincipalPolicies {
        project: vec![(
            GrantScope::Project,
            policy(&c, "d", &deny(&["ecs:servers:get"])),
        )],
        ..Default::default()
    };
    p.enterprise
        .insert("ep1".into(), vec![policy(&c, "a", &allow(&["ecs:*:*"]))]);
    let o = ask(&c, &p, &["ecs:servers:get"], Some("ep1"), &ctx);
    assert_eq!(o.decision, Decision::ExplicitDeny);
    // Project Allow, EP Deny: allowed, decided at the project.
    let mut p = PrincipalPolicies {
        project: vec![(
            GrantScope::Project,
            policy(&c, "a", &allow(&["ecs:servers:get"])),
        )],
        ..Default::default()
    };
    p.enterprise
        .insert("ep1".into(), vec![policy(&c, "d", &deny(&["ecs:*:*"]))]);
    let o = ask(&c, &p, &["ecs:servers:get"], Some("ep1"), &ctx);
    assert_eq!(o.decision, Decision::Allowed);
    assert_eq!(o.results[0].scope, Some(GrantScope::Project));
    // Nothing at the project: the EP decides, when the route supports it.
    let mut p = PrincipalPolicies::default();
    p.enterprise
        .insert("ep1".into(), vec![policy(&c, "a", &allow(&["ecs:*:*"]))]);
    let o = ask(&c, &p, &["ecs:servers:get"], Some("ep1"), &ctx);
    assert_eq!(o.decision, Decision::Allowed);
    assert_eq!(o.results[0].scope, Some(GrantScope::EnterpriseProject));
    // ... and only the resource's EP.
    let o = ask(&c, &p, &["ecs:servers:get"], Some("ep2"), &ctx);
    assert_eq!(o.decision, Decision::ImplicitDeny);
}

#[test]
fn enterprise_grants_are_ignored_where_the_route_does_not_support_them() {
    let c = cat();
    let ctx = Context::default();
    let mut p = PrincipalPolicies::default();
    p.enterprise.insert(
        "0".into(),
        vec![policy(
            &c,
            "ecs-full",
            &allow(&["ecs:*:*", "evs:*:*", "ims:*:*"]),
        )],
    );
    // createImage does not support enterprise projects: the request carries none.
    let o = ask(&c, &p, SEED, None, &ctx);
    assert_eq!(o.decision, Decision::ImplicitDeny);
    assert_eq!(o.denied().len(), 8);
    assert!(o
        .results
        .iter()
        .all(|r| r.scope.is_none() && r.matched.is_empty()));
}

#[test]
fn conditions_gate_statements() {
    let c = cat();
    let p = PrincipalPolicies {
        project: vec![(
            GrantScope::Project,
            policy(
                &c,
                "mfa",
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ecs:*:*"],
                    "Condition":{"Bool":{"g:MFAPresent":["true"]},"IpAddress":{"g:SourceIp":["10.0.0.0/8"]}}}]}"#,
            ),
        )],
        ..Default::default()
    };
    let mut ctx = Context::default();
    assert_eq!(
        ask(&c, &p, &["ecs:servers:get"], None, &ctx).decision,
        Decision::ImplicitDeny
    );
    ctx.set("g:MFAPresent", vec!["true".into()]).unwrap();
    assert_eq!(
        ask(&c, &p, &["ecs:servers:get"], None, &ctx).decision,
        Decision::ImplicitDeny
    );
    ctx.set("g:sourceip", vec!["10.2.3.4".into()]).unwrap();
    assert_eq!(
        ask(&c, &p, &["ecs:servers:get"], None, &ctx).decision,
        Decision::Allowed
    );
    ctx.set("g:SourceIp", vec!["11.2.3.4".into()]).unwrap();
    assert_eq!(
        ask(&c, &p, &["ecs:servers:get"], None, &ctx).decision,
        Decision::ImplicitDeny
    );
}

#[test]
fn actions_outside_the_catalogue_are_matched_too() {
    let c = cat();
    let p = PrincipalPolicies {
        project: vec![(
            GrantScope::Project,
            policy(&c, "a", &allow(&["ecs:*:get*"])),
        )],
        ..Default::default()
    };
    let ctx = Context::default();
    assert_eq!(
        ask(&c, &p, &["ecs:things:getMany"], None, &ctx).decision,
        Decision::Allowed
    );
    assert_eq!(
        ask(&c, &p, &["ecs:things:list"], None, &ctx).decision,
        Decision::ImplicitDeny
    );
}

// ---------------------------------------------------------------------------------------------
// properties

fn arb_pattern() -> impl Strategy<Value = String> {
    let services = prop::sample::select(vec!["ecs", "evs", "ims", "*", "e*"]);
    let types = prop::sample::select(vec![
        "servers",
        "SERVERS",
        "volumes",
        "snapshots",
        "images",
        "*",
        "ser*",
    ]);
    let ops = prop::sample::select(vec![
        "get",
        "GET",
        "get*",
        "create*",
        "createImage",
        "delete",
        "list",
        "*",
        "update",
    ]);
    // Only patterns a policy may hold (matching some catalogue action), so no case is vacuous.
    (services, types, ops)
        .prop_map(|(s, t, o)| format!("{s}:{t}:{o}"))
        .prop_filter("matches a catalogue action", |p| {
            CAT.knows(&stratus_iam::action::ActionPattern::parse(p).unwrap())
        })
}

static CAT: std::sync::LazyLock<Catalogue> = std::sync::LazyLock::new(cat);

fn arb_statement() -> impl Strategy<Value = (bool, Vec<String>)> {
    (any::<bool>(), prop::collection::vec(arb_pattern(), 1..4))
}

fn doc(statements: &[(bool, Vec<String>)]) -> String {
    let s: Vec<String> = statements
        .iter()
        .map(|(allow, actions)| {
            format!(
                r#"{{"Effect":"{}","Action":{}}}"#,
                if *allow { "Allow" } else { "Deny" },
                serde_json::to_string(actions).unwrap()
            )
        })
        .collect();
    format!(r#"{{"Version":"1.1","Statement":[{}]}}"#, s.join(","))
}

fn rank(d: Decision) -> u8 {
    match d {
        Decision::Allowed => 2,
        Decision::ImplicitDeny => 1,
        Decision::ExplicitDeny => 0,
    }
}

proptest! {
    /// Adding a Deny statement never turns a deny into an allow (nor an allow into a better allow).
    #[test]
    fn adding_a_deny_never_allows_more(
        stmts in prop::collection::vec(arb_statement(), 1..6),
        extra in prop::collection::vec(arb_pattern(), 1..3),
    ) {
        let c = cat();
        let ctx = Context::default();
        let d1 = parse_for(&c, &doc(&stmts), &Limits::CUSTOM).unwrap();
        let mut more = stmts.clone();
        more.push((false, extra));
        let d2 = parse_for(&c, &doc(&more), &Limits::CUSTOM).unwrap();
        let p1 = PrincipalPolicies { project: vec![(GrantScope::Project, Arc::new(CompiledPolicy::compile("p", "p", d1, &c)))], ..Default::default() };
        let p2 = PrincipalPolicies { project: vec![(GrantScope::Project, Arc::new(CompiledPolicy::compile("p", "p", d2, &c)))], ..Default::default() };
        for a in c.actions() {
            let o1 = ask(&c, &p1, &[a.as_str()], None, &ctx);
            let o2 = ask(&c, &p2, &[a.as_str()], None, &ctx);
            prop_assert!(rank(o2.decision) <= rank(o1.decision), "{a}: {:?} then {:?}", o1.decision, o2.decision);
        }
    }

    /// The decision of a whole request is allowed exactly when every action is.
    #[test]
    fn a_request_is_allowed_only_if_every_action_is(stmts in prop::collection::vec(arb_statement(), 1..6)) {
        let c = cat();
        let ctx = Context::default();
        let d = parse_for(&c, &doc(&stmts), &Limits::CUSTOM).unwrap();
        let p = PrincipalPolicies { project: vec![(GrantScope::Project, Arc::new(CompiledPolicy::compile("p", "p", d, &c)))], ..Default::default() };
        let whole = ask(&c, &p, SEED, None, &ctx);
        let each: Vec<Decision> = SEED.iter().map(|a| ask(&c, &p, &[a], None, &ctx).decision).collect();
        prop_assert_eq!(whole.decision == Decision::Allowed, each.iter().all(|d| *d == Decision::Allowed));
        prop_assert_eq!(whole.results.iter().map(|r| r.decision).collect::<Vec<_>>(), each);
    }

    /// Type and operation match case-insensitively; the compiled table agrees with matching.
    #[test]
    fn case_rules_and_compiled_table_agree(pattern in arb_pattern(), upper in any::<bool>()) {
        let c = cat();
        let ctx = Context::default();
        let d = parse_for(&c, &allow(&[pattern.as_str()]), &Limits::CUSTOM).unwrap();
        let p = PrincipalPolicies { project: vec![(GrantScope::Project, Arc::new(CompiledPolicy::compile("p", "p", d, &c)))], ..Default::default() };
        let pat = stratus_iam::action::ActionPattern::parse(&pattern).unwrap();
        for a in c.actions() {
            let (s, rest) = a.split_once(':').unwrap();
            let asked = if upper { format!("{s}:{}", rest.to_uppercase()) } else { a.clone() };
            // By table (catalogue spelling) and by matching (other spelling) the answer is the same.
            let by_table = ask(&c, &p, &[a.as_str()], None, &ctx).decision == Decision::Allowed;
            let by_match = ask(&c, &p, &[asked.as_str()], None, &ctx).decision == Decision::Allowed;
            prop_assert_eq!(by_table, pat.matches(a));
            prop_assert_eq!(by_match, by_table);
        }
    }
}

/// A stored policy (checked as stored ones are: new custom policies may not name resources).
fn stored(cat: &Catalogue, id: &str, json: &str) -> Arc<CompiledPolicy> {
    let doc = parse_for(cat, json, &Limits::SYSTEM).expect("valid policy");
    Arc::new(CompiledPolicy::compile(id, id, doc, cat))
}

#[test]
fn resource_statements_apply_only_to_matching_resources() {
    let c = cat();
    let p = PrincipalPolicies {
        project: vec![(
            GrantScope::Project,
            stored(
                &c,
                "r",
                r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["ims:images:get"],
                    "Resource":["ims:*:*:image:public-*"]}]}"#,
            ),
        )],
        ..Default::default()
    };
    let ctx = Context::default();
    let ask_on = |urn: Option<&'static str>| {
        let mut req = Request::new(&c, &["ims:images:get"], &ctx);
        req.resource = urn;
        decide(&p, &req).decision
    };
    assert_eq!(
        ask_on(Some("ims:cn-north-4:d1:image:public-debian")),
        Decision::Allowed
    );
    assert_eq!(
        ask_on(Some("ims:cn-north-4:d1:image:private-debian")),
        Decision::ImplicitDeny
    );
    // An Allow limited to resources grants nothing to a request that names none...
    assert_eq!(ask_on(None), Decision::ImplicitDeny);
    // ... and a Deny limited to resources still denies it: never silently nothing.
    let deny = PrincipalPolicies {
        project: vec![
            (
                GrantScope::Project,
                policy(&c, "a", &allow(&["ims:images:*"])),
            ),
            (
                GrantScope::Project,
                stored(
                    &c,
                    "d",
                    r#"{"Version":"1.1","Statement":[{"Effect":"Deny","Action":["ims:images:delete"],
                        "Resource":["ims:*:*:image:*"]}]}"#,
                ),
            ),
        ],
        ..Default::default()
    };
    let req = Request::new(&c, &["ims:images:delete"], &ctx);
    assert_eq!(decide(&deny, &req).decision, Decision::ExplicitDeny);
    // New custom policies cannot name resources at all: the statement is refused, named.
    let e = parse_for(
        &c,
        r#"{"Version":"1.1","Statement":[{"Effect":"Deny","Action":["ims:images:delete"],"Resource":["ims:*:*:image:*"]}]}"#,
        &Limits::CUSTOM,
    )
    .unwrap_err();
    assert!(e.0.contains("Statement[0].Resource"), "{e}");
}

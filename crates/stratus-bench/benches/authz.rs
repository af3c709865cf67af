//! The createImage decision (8 actions) for a user holding 10 policies, by stratus and, side by
//! side, by Cedar over the same policies written in Cedar.

use cedar_policy::{
    Authorizer, Context as CedarContext, Decision as CedarDecision, Entities, EntityUid, PolicySet,
    Request as CedarRequest,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stratus_bench::{context, principal, SEED};
use stratus_iam::engine::{decide, Decision, Request};
use stratus_iam::Catalogue;

/// The same ten policies in Cedar. Cedar has no action wildcards, so each pattern is expanded
/// into the catalogue actions it matches, as one would have to write it.
fn cedar_policies(cat: &Catalogue) -> PolicySet {
    let expand = |patterns: &[&str]| -> String {
        let acts: Vec<String> = cat
            .actions()
            .iter()
            .filter(|a| {
                patterns.iter().any(|p| {
                    stratus_iam::action::ActionPattern::parse(p)
                        .unwrap()
                        .matches(a)
                })
            })
            .map(|a| format!("Action::\"{a}\""))
            .collect();
        format!("[{}]", acts.join(", "))
    };
    let mut src = String::new();
    let mut permit = |patterns: &[&str], when: &str| {
        src.push_str(&format!(
            "permit(principal, action in {}, resource){when};\n",
            expand(patterns)
        ));
    };
    // ECS FullAccess, ECS ReadOnlyAccess, IMS ReadOnlyAccess, EVS ReadOnlyAccess, Tenant Guest.
    permit(
        &[
            "ecs:*:*",
            "evs:*:get*",
            "evs:*:list*",
            "evs:volumes:create",
            "evs:volumes:delete",
            "evs:volumes:attach",
            "evs:volumes:detach",
            "evs:volumes:update",
            "evs:snapshots:create",
            "ims:images:*",
            "ims:quotas:get",
        ],
        "",
    );
    permit(
        &[
            "ecs:*:get*",
            "ecs:*:list*",
            "evs:*:get*",
            "evs:*:list*",
            "ims:*:get*",
            "ims:*:list*",
        ],
        "",
    );
    permit(&["ims:*:get*", "ims:*:list*"], "");
    permit(&["evs:*:get*", "evs:*:list*"], "");
    permit(
        &[
            "ecs:*:get*",
            "ecs:*:list*",
            "evs:*:get*",
            "evs:*:list*",
            "ims:*:get*",
            "ims:*:list*",
            "eps:*:get*",
            "eps:*:list*",
        ],
        "",
    );
    // The five custom policies.
    permit(
        &["ecs:*:get*", "ecs:servers:list"],
        " when { context.user_name == \"alice\" || context.user_name == \"bob\" }",
    );
    permit(&["evs:snapshots:*"], " when { context.source_ip.isInRange(ip(\"10.0.0.0/8\")) || context.source_ip.isInRange(ip(\"192.168.0.0/16\")) }");
    let deny_share = format!(
        "forbid(principal, action in {}, resource) when {{ context.now < 1577836800 }};\n",
        expand(&["ims:images:share"])
    );
    permit(&["ims:*:*"], " when { (!(context has mfa_present) || context.mfa_present) && context.project_name like \"cn-*\" }");
    permit(&["ecs:servers:*Image"], " when { context.mfa_age <= 3600 }");
    let deny_delete = format!(
        "forbid(principal, action in {}, resource);\n",
        expand(&["ecs:servers:delete", "evs:volumes:delete"])
    );
    src.push_str(&deny_share);
    src.push_str(&deny_delete);
    src.parse().expect("cedar policies")
}

fn bench(c: &mut Criterion) {
    let cat = Catalogue::shipped().unwrap();
    let principal = principal(&cat);
    let ctx = context();

    // Enforcement decides without recording matches; simulation explains.
    let ask = |explain: bool| {
        let mut req = Request::new(&cat, &SEED, &ctx);
        req.explain = explain;
        decide(&principal, &req)
    };
    assert_eq!(
        ask(false).decision,
        Decision::Allowed,
        "the benchmark decides an allowed request"
    );

    let policies = cedar_policies(&cat);
    let authorizer = Authorizer::new();
    let entities = Entities::empty();
    let principal_uid: EntityUid = r#"User::"alice""#.parse().unwrap();
    let resource: EntityUid = r#"Server::"s1""#.parse().unwrap();
    let cedar_ctx = serde_json::json!({
        "user_name": "alice", "source_ip": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}},
        "now": 1_795_860_000i64, "project_name": "cn-north-4", "mfa_age": 120,
    });
    let requests: Vec<CedarRequest> = SEED
        .iter()
        .map(|a| {
            let action: EntityUid = format!("Action::\"{a}\"").parse().unwrap();
            let ctx = CedarContext::from_json_value(cedar_ctx.clone(), None).unwrap();
            CedarRequest::new(principal_uid.clone(), action, resource.clone(), ctx, None).unwrap()
        })
        .collect();
    let cedar = || {
        requests.iter().all(|r| {
            authorizer.is_authorized(r, &policies, &entities).decision() == CedarDecision::Allow
        })
    };
    assert!(cedar(), "Cedar allows the same request");

    let mut g = c.benchmark_group("createImage decision, 8 actions, 10 policies");
    g.bench_function("stratus", |b| b.iter(|| black_box(ask(false))));
    g.bench_function("stratus, explained", |b| b.iter(|| black_box(ask(true))));
    g.bench_function("cedar", |b| b.iter(|| black_box(cedar())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

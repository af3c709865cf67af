//! IAM over real HTTP: the seed row through the simulation API, custom policies and their
//! validation, grants on every kind of scope, and enforcement of identity routes.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CREATE_IMAGE_PATH: &str = "/compute/v2.1/{project_id}/servers/{server_id}/action";
const SEED: [&str; 8] = stratus_iam::SEED_ROW;

async fn simulate(c: &TestCloud, token: &str, body: Value) -> (StatusCode, Value) {
    let (s, b) = c
        .post(
            token,
            "/identity/v3/stratus/policy-simulate",
            json!({ "simulate": body }),
        )
        .await;
    (s, b)
}

fn result<'a>(b: &'a Value, action: &str) -> &'a Value {
    b["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["action"] == action)
        .unwrap_or_else(|| panic!("no result for {action}: {b}"))
}

/// A user in their own group, with the given policies granted on the demo project.
async fn user_with(c: &TestCloud, admin: &str, name: &str, policies: &[&str]) -> String {
    let uid = c.create_user(admin, name, "pw").await;
    let gid = c.group_with(admin, &format!("g-{name}"), &uid).await;
    let demo = c.project_id(admin, "demo").await;
    for p in policies {
        let rid = c.role_id(admin, p).await;
        c.grant_project(admin, &demo, &gid, &rid).await;
    }
    uid
}

async fn seed_row_through_simulation(c: &TestCloud) {
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let route = json!({"method": "POST", "path": CREATE_IMAGE_PATH, "body_key": "createImage"});

    // ECS FullAccess on the project: allowed, every action decided at the project.
    let full = user_with(c, &admin, "full", &["ECS FullAccess"]).await;
    let (s, b) = simulate(
        c,
        &admin,
        json!({"user_id": full, "project_id": demo, "route": route}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["decision"], "allowed", "{b}");
    assert_eq!(b["results"].as_array().unwrap().len(), 8);
    for a in SEED {
        assert_eq!(result(&b, a)["decision"], "allowed");
        assert_eq!(result(&b, a)["scope"], "project");
        assert_eq!(result(&b, a)["matched"][0]["policy_name"], "ECS FullAccess");
    }

    // ECS FullAccess only on an enterprise project: implicit deny (the route does not support EPs).
    let uid = c.create_user(&admin, "ep-only", "pw").await;
    let gid = c.group_with(&admin, "g-ep-only", &uid).await;
    let rid = c.role_id(&admin, "ECS FullAccess").await;
    c.grant(
        &admin,
        &format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/0/groups/{gid}/roles/{rid}"),
    )
    .await;
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo, "enterprise_project_id": "0", "route": route}),
    )
    .await;
    assert_eq!(b["decision"], "implicitDeny", "{b}");
    assert_eq!(
        result(&b, "ecs:servers:createImage")["decision"],
        "implicitDeny"
    );
    assert_eq!(result(&b, "ecs:servers:createImage")["scope"], "none");
    // The same grant does count for an action list with an EP (as for routes that support EPs).
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo, "enterprise_project_id": "0", "actions": ["ecs:servers:get"]}),
    )
    .await;
    assert_eq!(b["decision"], "allowed", "{b}");
    assert_eq!(result(&b, "ecs:servers:get")["scope"], "enterprise_project");

    // ECS ReadOnlyAccess: createImage denied, ims:images:get allowed.
    let ro = user_with(c, &admin, "ro", &["ECS ReadOnlyAccess"]).await;
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": ro, "project_id": demo, "route": route}),
    )
    .await;
    assert_eq!(b["decision"], "implicitDeny");
    assert_eq!(
        result(&b, "ecs:servers:createImage")["decision"],
        "implicitDeny"
    );
    assert_eq!(result(&b, "ims:images:get")["decision"], "allowed");

    // A custom policy lacking only evs:snapshots:create: exactly that action is denied.
    let mut all_but: Vec<&str> = SEED.to_vec();
    all_but.retain(|a| *a != "evs:snapshots:create");
    let pid = c
        .custom_policy(
            &admin,
            "all but snapshots",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": all_but}]}),
        )
        .await;
    let uid = c.create_user(&admin, "nosnap", "pw").await;
    let gid = c.group_with(&admin, "g-nosnap", &uid).await;
    c.grant_project(&admin, &demo, &gid, &pid).await;
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo, "route": route}),
    )
    .await;
    let denied: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["decision"] != "allowed")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["evs:snapshots:create"], "{b}");

    // A Deny on ims:images:delete next to ECS FullAccess: explicit deny naming that statement.
    let deny_id = c
        .custom_policy(
            &admin,
            "no image deletion",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]},
                                                    {"Effect": "Deny", "Action": ["ims:images:delete"]}]}),
        )
        .await;
    let uid = user_with(c, &admin, "denied", &["ECS FullAccess"]).await;
    let groups = c
        .get(&admin, &format!("/identity/v3/users/{uid}/groups"))
        .await
        .1;
    let gid = groups["groups"][0]["id"].as_str().unwrap().to_string();
    c.grant_project(&admin, &demo, &gid, &deny_id).await;
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo, "route": route}),
    )
    .await;
    assert_eq!(b["decision"], "explicitDeny", "{b}");
    let r = result(&b, "ims:images:delete");
    assert_eq!(r["decision"], "explicitDeny");
    assert_eq!(
        r["matched"],
        json!([{"policy_id": deny_id, "policy_name": "no image deletion", "statement": 1}])
    );
    assert!(
        SEED[..7]
            .iter()
            .all(|a| result(&b, a)["decision"] == "allowed"),
        "{b}"
    );
}
on_both_stores!(seed_row_through_simulation);

async fn simulation_needs_its_own_action_and_checks_input(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "plain", "pw").await;
    let demo = c.project_id(&admin, "demo").await;
    c.project_member(&admin, &uid, &demo).await;
    let t = c.token_for("plain", "pw", Some("demo")).await;
    let (s, b) = simulate(
        c,
        &t,
        json!({"user_id": uid, "actions": ["ecs:servers:get"]}),
    )
    .await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow iam:policies:simulate to be performed."
    );
    for (body, code) in [
        (json!({"user_id": uid}), StatusCode::BAD_REQUEST),
        (
            json!({"user_id": uid, "actions": ["ecs:servers:get"], "route": {"method": "GET", "path": "/"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"user_id": uid, "actions": ["not an action"]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"user_id": uid, "route": {"method": "GET", "path": "/nope"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"user_id": uid, "actions": ["ecs:servers:get"], "context": {"g:Nope": "x"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"user_id": "no-such-user", "actions": ["ecs:servers:get"]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"user_id": uid, "project_id": "nope", "actions": ["ecs:servers:get"]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"user_id": uid, "actions": ["ecs:servers:get"], "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, b) = simulate(c, &admin, body.clone()).await;
        assert_keystone_error(s, &b, code);
    }
    // Context is used: a condition on the source address.
    let pid = c
        .custom_policy(
            &admin,
            "from the office",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"],
                   "Condition": {"IpAddress": {"g:SourceIp": ["10.0.0.0/8"]}}}]}),
        )
        .await;
    let demo = c.project_id(&admin, "demo").await;
    let gid = c.group_with(&admin, "office", &uid).await;
    c.grant_project(&admin, &demo, &gid, &pid).await;
    let ask = |ip: &'static str| json!({"user_id": uid, "project_id": demo, "actions": ["ecs:servers:get"], "context": {"g:SourceIp": ip}});
    assert_eq!(
        simulate(c, &admin, ask("10.1.2.3")).await.1["decision"],
        "allowed"
    );
    assert_eq!(
        simulate(c, &admin, ask("192.168.1.1")).await.1["decision"],
        "implicitDeny"
    );
}
on_both_stores!(simulation_needs_its_own_action_and_checks_input);

async fn custom_policies_are_validated_at_write_time(c: &TestCloud) {
    let admin = c.admin_token().await;
    let post = |policy: Value, name: &str| {
        let body = json!({"role": {"display_name": name, "type": "XA", "policy": policy}});
        let c = &c;
        let admin = admin.clone();
        async move {
            c.call(
                Method::POST,
                "/identity/v3.0/OS-ROLE/roles",
                Some(&admin),
                Some(body),
            )
            .await
        }
    };
    let stmt =
        |a: Value| json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": a}]});
    let cases: Vec<(Value, &str)> = vec![
        (
            stmt(json!(["ecs:servers:crateImage"])),
            "ecs:servers:crateImage",
        ),
        (stmt(json!(["ecs:servers"])), "three segments"),
        (
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"],
            "Condition": {"StringEqual": {"g:UserName": ["a"]}}}]}),
            "StringEqual",
        ),
        (
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"],
            "Condition": {"StringEquals": {"g:UserNam": ["a"]}}}]}),
            "g:UserNam",
        ),
        (
            json!({"Version": "1.1", "Statement": vec![json!({"Effect": "Allow", "Action": ["ecs:servers:get"]}); 9]}),
            "9 statements",
        ),
        (stmt(json!(vec!["ecs:servers:get"; 101])), "101 actions"),
        (
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]}], "Depends": ["x".repeat(7000)]}),
            "bytes",
        ),
        (json!("not an object"), "object"),
    ];
    for (policy, needle) in cases {
        let (s, _, b) = post(policy, "bad").await;
        assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {b}"
        );
    }
    // Nothing was stored.
    let (_, b) = c.get(&admin, "/identity/v3.0/OS-ROLE/roles").await;
    assert_eq!(b["roles"].as_array().unwrap().len(), 0, "{b}");

    // Create, read, rename, conflict, update, delete; system policies are read-only.
    let id = c
        .custom_policy(&admin, "mine", stmt(json!(["ecs:*:get*"])))
        .await;
    let (s, _, b) = post(stmt(json!(["ecs:*:get*"])), "mine").await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (s, b) = c
        .get(&admin, &format!("/identity/v3.0/OS-ROLE/roles/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["role"]["catalog"], "CUSTOMED");
    assert_eq!(
        b["role"]["policy"]["Statement"][0]["Action"],
        json!(["ecs:*:get*"])
    );
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &format!("/identity/v3.0/OS-ROLE/roles/{id}"),
            Some(&admin),
            Some(json!({"role": {"policy": stmt(json!(["ecs:servers:nope"]))}})),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &format!("/identity/v3.0/OS-ROLE/roles/{id}"),
            Some(&admin),
            Some(json!({"role": {"display_name": "renamed", "policy": stmt(json!(["ims:*:*"]))}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role"]["display_name"], "renamed");
    let sys = c.role_id(&admin, "ECS FullAccess").await;
    let (s, b) = c
        .delete(&admin, &format!("/identity/v3.0/OS-ROLE/roles/{sys}"))
        .await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    let (s, _) = c
        .delete(&admin, &format!("/identity/v3.0/OS-ROLE/roles/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c
        .get(&admin, &format!("/identity/v3.0/OS-ROLE/roles/{id}"))
        .await;
    assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
}
on_both_stores!(custom_policies_are_validated_at_write_time);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_200_custom_policies_per_domain() {
    let c = TestCloud::start(Backend::Sqlite).await.expect("sqlite");
    let admin = c.admin_token().await;
    let policy = json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]}]});
    for i in 0..200 {
        c.custom_policy(&admin, &format!("p{i}"), policy.clone())
            .await;
    }
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3.0/OS-ROLE/roles",
            json!({"role": {"display_name": "p200", "policy": policy}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 200"),
        "{b}"
    );
    c.stop().await;
}

async fn grants_on_every_scope_take_effect_at_the_next_request(c: &TestCloud) {
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "ops", "pw").await;
    let gid = c.group_with(&admin, "ops", &uid).await;
    let demo_id = c.project_id(&admin, "demo").await;
    c.project_member(&admin, &uid, &demo_id).await;
    let t = c.token_for("ops", "pw", Some("demo")).await;
    let (s, b) = c.get(&t, "/identity/v3/users").await;
    assert_keystone_error(s, &b, StatusCode::FORBIDDEN);
    assert_eq!(
        b["error"]["message"],
        "Policy doesn't allow iam:users:listUsers to be performed."
    );

    // Security Administrator on a project does not reach the global IAM service ...
    let secu = c.role_id(&admin, "Security Administrator").await;
    let demo = c.project_id(&admin, "demo").await;
    let on_project = format!("/identity/v3/projects/{demo}/groups/{gid}/roles/{secu}");
    c.grant(&admin, &on_project).await;
    let (s, _) = c.head(&admin, &on_project).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.get(&t, "/identity/v3/users").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // ... on the domain it does, at once, with the same token.
    let on_domain = format!("/identity/v3/domains/default/groups/{gid}/roles/{secu}");
    c.grant(&admin, &on_domain).await;
    let (s, _) = c.get(&t, "/identity/v3/users").await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = c
        .get(
            &admin,
            &format!("/identity/v3/domains/default/groups/{gid}/roles"),
        )
        .await;
    assert_eq!(b["roles"][0]["id"], secu.as_str());
    // Revoked: refused again at once.
    let (s, _) = c.delete(&admin, &on_domain).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.get(&t, "/identity/v3/users").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // On all projects (inherited) it reaches global services too.
    let on_all = format!(
        "/identity/v3/OS-INHERIT/domains/default/groups/{gid}/roles/{secu}/inherited_to_projects"
    );
    c.grant(&admin, &on_all).await;
    let (s, _) = c.get(&t, "/identity/v3/users").await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = c
        .get(
            &admin,
            &format!(
                "/identity/v3/OS-INHERIT/domains/default/groups/{gid}/roles/inherited_to_projects"
            ),
        )
        .await;
    assert_eq!(b["roles"].as_array().unwrap().len(), 1);
    let (s, _) = c.delete(&admin, &on_all).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = c.head(&admin, &on_all).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Grants naming things that do not exist, or exist elsewhere, are 404 and change nothing.
    for path in [
        format!("/identity/v3/projects/nope/groups/{gid}/roles/{secu}"),
        format!("/identity/v3/projects/{demo}/groups/nope/roles/{secu}"),
        format!("/identity/v3/projects/{demo}/groups/{gid}/roles/nope"),
        format!(
            "/identity/v3/OS-INHERIT/domains/other/groups/{gid}/roles/{secu}/inherited_to_projects"
        ),
        format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/nope/groups/{gid}/roles/{secu}"),
    ] {
        let (s, _, b) = c.call(Method::PUT, &path, Some(&admin), None).await;
        assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
    }
}
on_both_stores!(grants_on_every_scope_take_effect_at_the_next_request);

async fn enterprise_projects_crud(c: &TestCloud) {
    let admin = c.admin_token().await;
    let (s, b) = c.get(&admin, "/identity/v3.0/enterprise-projects").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["enterprise_projects"][0]["id"], "0");
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "web", "description": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["enterprise_project"]["id"].as_str().unwrap().to_string();
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "web"}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::CONFLICT);
    let (s, _, b) = c
        .call(
            Method::PATCH,
            &format!("/identity/v3.0/enterprise-projects/{id}"),
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["enterprise_project"]["status"], 2);
    for (m, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"enabled": false}))),
    ] {
        let (s, _, b) = c
            .call(
                m,
                "/identity/v3.0/enterprise-projects/0",
                Some(&admin),
                body,
            )
            .await;
        assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    }
    let (s, _) = c
        .delete(&admin, &format!("/identity/v3.0/enterprise-projects/{id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = c
        .get(&admin, &format!("/identity/v3.0/enterprise-projects/{id}"))
        .await;
    assert_keystone_error(s, &b, StatusCode::NOT_FOUND);
}
on_both_stores!(enterprise_projects_crud);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_through_one_node_is_honoured_by_the_other() {
    let Some(a) = TestCloud::start(Backend::Postgres).await else {
        return;
    };
    let b = a.second_node().await.expect("postgres");
    let admin = a.admin_token().await;
    let uid = a.create_user(&admin, "ops", "pw").await;
    let gid = a.group_with(&admin, "ops", &uid).await;
    let demo_id = a.project_id(&admin, "demo").await;
    a.project_member(&admin, &uid, &demo_id).await;
    let t = a.token_for("ops", "pw", Some("demo")).await;
    let list_on_b = || {
        let http = a.http.clone();
        let url = format!("{}/identity/v3/users", b.public_url);
        let t = t.clone();
        async move {
            http.get(url)
                .header("X-Auth-Token", t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(list_on_b().await, StatusCode::FORBIDDEN);
    let secu = a.role_id(&admin, "Security Administrator").await;
    a.grant(
        &admin,
        &format!("/identity/v3/domains/default/groups/{gid}/roles/{secu}"),
    )
    .await;
    assert_eq!(list_on_b().await, StatusCode::OK);
    b.shutdown().await.unwrap();
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_override_adds_dependencies() {
    let key = "POST /compute/v2.1/{project_id}/servers/{server_id}/action createImage";
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        let mut deps: Vec<String> = SEED[1..].iter().map(|s| s.to_string()).collect();
        deps.extend(["ecs:servers:list".to_string(), "ims:quotas:get".to_string()]);
        cfg.catalogue.dependencies.insert(key.to_string(), deps);
    })
    .await
    .expect("sqlite");
    let admin = c.admin_token().await;
    let demo = c.project_id(&admin, "demo").await;
    let pid = c
        .custom_policy(
            &admin,
            "exactly the seed row",
            json!({"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": SEED}]}),
        )
        .await;
    let uid = c.create_user(&admin, "seed", "pw").await;
    let gid = c.group_with(&admin, "seed", &uid).await;
    c.grant_project(&admin, &demo, &gid, &pid).await;
    let route = json!({"method": "POST", "path": CREATE_IMAGE_PATH, "body_key": "createImage"});
    let (_, b) = simulate(
        &c,
        &admin,
        json!({"user_id": uid, "project_id": demo, "route": route}),
    )
    .await;
    assert_eq!(b["results"].as_array().unwrap().len(), 10, "{b}");
    let denied: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["decision"] != "allowed")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["ecs:servers:list", "ims:quotas:get"]);
    c.stop().await;
}

/// Simulation answers what enforcement does: the same request context (`g:ServiceName`
/// included), the same scopes per action (domain grants for IAM actions in a mixed list,
/// enterprise-project grants only where the action's routes take them), and the same refusal of
/// an ambiguous context.
async fn simulation_and_enforcement_agree(c: &TestCloud) {
    let admin = c.admin_token().await;
    let domain_gid = {
        let uid = c.create_user(&admin, "sim", "pw").await;
        c.group_with(&admin, "g-sim", &uid).await
    };
    let uid = c.get(&admin, "/identity/v3/users?name=sim").await.1["users"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // IAM read on the domain; ECS only when the request's service is ecs; ECS FullAccess on an
    // enterprise project.
    let secu = c.role_id(&admin, "secu_admin").await;
    c.grant(
        &admin,
        &format!("/identity/v3/domains/default/groups/{domain_gid}/roles/{secu}"),
    )
    .await;
    let demo = c.project_id(&admin, "demo").await;
    let by_service = c
        .custom_policy(
            &admin,
            "ecs by service",
            json!({"Version": "1.1", "Statement": [{
            "Effect": "Allow", "Action": ["ecs:servers:list", "ecs:servers:get",
                "ecs:serverVolumes:use", "ecs:diskConfigs:use", "ecs:securityGroups:use",
                "ecs:serverKeypairs:get"],
            "Condition": {"StringEquals": {"g:ServiceName": ["ecs"]}}}]}),
        )
        .await;
    c.grant_project(&admin, &demo, &domain_gid, &by_service)
        .await;
    let (_, ep) = c
        .post(
            &admin,
            "/identity/v3.0/enterprise-projects",
            json!({"name": "ep-sim"}),
        )
        .await;
    let ep = ep["enterprise_project"]["id"].as_str().unwrap().to_string();
    let ecs_full = c.role_id(&admin, "system_all_ecs_full").await;
    c.grant(&admin, &format!("/identity/v3.0/OS-PERMISSION/enterprise-projects/{ep}/groups/{domain_gid}/roles/{ecs_full}")).await;

    // Enforcement: the list of servers is allowed (g:ServiceName is ecs), users too (domain).
    let t = c.token_for("sim", "pw", Some("demo")).await;
    let (s, _) = c.get(&t, "/compute/v2.1/servers").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = c.get(&t, "/identity/v3/users").await;
    assert_eq!(s, StatusCode::OK);

    // The route simulation says the same.
    let (s, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo,
        "route": {"method": "GET", "path": "/compute/v2.1/{project_id}/servers"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["decision"], "allowed", "{b}");
    // A mixed list: the IAM action in the domain's scope, the ECS one in the project's.
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo,
        "actions": ["iam:users:listUsers", "ecs:servers:list"]}),
    )
    .await;
    assert_eq!(
        result(&b, "iam:users:listUsers")["decision"],
        "allowed",
        "{b}"
    );
    assert_eq!(result(&b, "ecs:servers:list")["decision"], "allowed", "{b}");
    // Enterprise-project grants do not count for createImage (its routes do not take them) ...
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo,
        "enterprise_project_id": ep, "actions": ["ecs:servers:createImage"]}),
    )
    .await;
    assert_eq!(
        result(&b, "ecs:servers:createImage")["decision"],
        "implicitDeny",
        "{b}"
    );
    // ... but do for an action whose route takes them (ECS FullAccess reads images too).
    let (_, b) = simulate(
        c,
        &admin,
        json!({"user_id": uid, "project_id": demo,
        "enterprise_project_id": ep, "actions": ["ims:images:get"]}),
    )
    .await;
    assert_eq!(result(&b, "ims:images:get")["decision"], "allowed", "{b}");
    assert_eq!(
        result(&b, "ims:images:get")["scope"],
        "enterprise_project",
        "{b}"
    );
    // A context key twice, in two cases: which one counted would be chance.
    let (s, b) = simulate(c, &admin, json!({"user_id": uid, "project_id": demo,
        "actions": ["ecs:servers:list"], "context": {"g:SourceIp": "10.0.0.1", "g:sourceip": "10.0.0.2"}})).await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    // A custom policy with an element that would do nothing is refused.
    let (s, b) = c
        .post(
            &admin,
            "/identity/v3.0/OS-ROLE/roles",
            json!({"role": {"display_name": "depends", "type": "XA", "policy": {"Version": "1.1",
            "Statement": [{"Effect": "Allow", "Action": ["ecs:servers:get"]}], "Depends": 5}}}),
        )
        .await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
}
on_both_stores!(simulation_and_enforcement_agree);

/// `g:SourceIp` is the client's address: the connection's peer, or the address a trusted proxy
/// names in `X-Forwarded-For` (and only a trusted one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_conditions_see_the_client() {
    let c = TestCloud::start_with(Backend::Sqlite, |cfg| {
        cfg.trusted_proxies = vec!["127.0.0.2".parse().unwrap(), "10.9.0.0/16".parse().unwrap()];
    })
    .await
    .unwrap();
    let admin = c.admin_token().await;
    let uid = c.create_user(&admin, "ip", "pw").await;
    let gid = c.group_with(&admin, "g-ip", &uid).await;
    let demo = c.project_id(&admin, "demo").await;
    let policy = c
        .custom_policy(
            &admin,
            "by address",
            json!({"Version": "1.1", "Statement": [
            {"Effect": "Allow", "Action": ["ecs:*:*"],
             "Condition": {"NotIpAddress": {"g:SourceIp": ["10.0.0.0/8"]}}},
            {"Effect": "Deny", "Action": ["ecs:servers:list"],
             "Condition": {"IpAddress": {"g:SourceIp": ["127.0.0.0/8"]}}}]}),
        )
        .await;
    c.grant_project(&admin, &demo, &gid, &policy).await;
    let t = c.token_for("ip", "pw", Some("demo")).await;
    let list = |xff: Option<&'static str>, bind: Option<&'static str>| {
        let t = t.clone();
        let url = c.url.clone();
        async move {
            let mut b = reqwest::Client::builder();
            if let Some(local) = bind {
                b = b.local_address(local.parse::<std::net::IpAddr>().unwrap());
            }
            let mut req = b
                .build()
                .unwrap()
                .get(format!("{url}/compute/v2.1/servers"))
                .header("X-Auth-Token", &t);
            if let Some(x) = xff {
                req = req.header("X-Forwarded-For", x);
            }
            req.send().await.unwrap().status()
        }
    };
    // From 127.0.0.1 the Deny fires (and an X-Forwarded-For from an untrusted peer is ignored).
    assert_eq!(list(None, None).await, StatusCode::FORBIDDEN);
    assert_eq!(list(Some("192.0.2.7"), None).await, StatusCode::FORBIDDEN);
    // Through the trusted proxy at 127.0.0.2 the client is the forwarded address.
    let server_port = c.url.rsplit(':').next().unwrap().to_string();
    assert!(!server_port.is_empty());
    assert_eq!(
        list(Some("192.0.2.7"), Some("127.0.0.2")).await,
        StatusCode::OK
    );
    // A client in 10/8 is not allowed by the NotIpAddress statement; one it forged before a
    // trusted hop does not count.
    assert_eq!(
        list(Some("10.1.2.3"), Some("127.0.0.2")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        list(Some("10.1.2.3, 192.0.2.7"), Some("127.0.0.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        list(Some("192.0.2.7, 10.9.1.1"), Some("127.0.0.2")).await,
        StatusCode::OK
    );
    c.stop().await;
}

/// A statement limited to resources would never apply (no route names its resource to the
/// decision): it is refused when written, naming it, instead of being stored to do nothing.
async fn resource_statements_are_refused(c: &TestCloud) {
    let admin = c.admin_token().await;
    let (s, b) = c.post(&admin, "/identity/v3.0/OS-ROLE/roles", json!({"role": {"display_name": "no deletes", "type": "XA", "policy": {"Version": "1.1",
                "Statement": [{"Effect": "Deny", "Action": ["ims:images:delete"], "Resource": ["ims:*:*:image:*"]}]}}})).await;
    assert_keystone_error(s, &b, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Statement[0].Resource"),
        "{b}"
    );
}
on_both_stores!(resource_statements_are_refused);

//! Every served route has exactly one action-catalogue entry, and every entry a served route.

use std::collections::BTreeSet;
use stratus_iam::Catalogue;

/// Entries of services whose routes are not served yet. Serving them must empty this list.
const NOT_YET_SERVED: &[&str] = &[];

#[test]
fn served_routes_and_catalogue_entries_match_one_to_one() {
    let cat = Catalogue::shipped().expect("catalogue");
    let table = stratus_api::routes();
    let served: Vec<(String, String)> = table
        .served()
        .iter()
        .map(|(m, p)| (m.as_str().to_string(), p.clone()))
        .collect();
    assert!(
        served.len() > 60,
        "the route table lists {} routes",
        served.len()
    );
    let mut problems = Vec::new();

    let mut seen = BTreeSet::new();
    for (m, p) in &served {
        if !seen.insert((m.clone(), p.clone())) {
            problems.push(format!("route {m} {p} is served twice"));
        }
        let plain = cat.entry(m, p, None).is_some();
        let keyed = cat
            .entries()
            .iter()
            .filter(|e| &e.method == m && &e.path == p && e.body_key.is_some())
            .count();
        if !plain && keyed == 0 {
            problems.push(format!("served route {m} {p} has no catalogue entry"));
        }
        if plain && keyed > 0 {
            problems.push(format!(
                "served route {m} {p} has both a plain and body-keyed entries"
            ));
        }
    }
    for e in cat.entries() {
        let routed = served.iter().any(|(m, p)| *m == e.method && *p == e.path);
        let pending = NOT_YET_SERVED.contains(&e.key().as_str());
        match (routed, pending) {
            (false, false) => problems.push(format!(
                "catalogue entry {} matches no served route",
                e.key()
            )),
            (true, true) => problems.push(format!(
                "{} is served now: remove it from NOT_YET_SERVED",
                e.key()
            )),
            _ => {}
        }
        if !e.public && e.action.is_none() && e.self_service {
            problems.push(format!(
                "{}: a self-service entry needs an action for non-self callers",
                e.key()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

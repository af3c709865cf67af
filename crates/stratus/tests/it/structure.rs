//! The structure of the workspace: no crate has two modules that import each other, directly
//! or through others (modules are the files and directories right under `src/`; a path
//! `crate::m::...` or `super::m::...` outside comments and unit tests is an import of `m`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules named after `crate::` or `super::` in `code`.
fn imported(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        for (at, _) in code.match_indices(prefix) {
            let name: String = code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// The module graph of one crate: top-level module → the top-level modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |p: &Path| {
        let rel = p.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let names: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        let deps = imported(&code(&std::fs::read_to_string(f).unwrap()));
        let entry = g.entry(m.clone()).or_default();
        for d in deps {
            if names.contains(&d) && d != m && d != "lib" && d != "main" {
                entry.insert(d);
            }
        }
    }
    g
}

/// A path of imports from `from` back to itself, if there is one.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if d == from {
                return Some([path.clone(), vec![d.clone()]].concat());
            }
            if seen.insert(d.clone()) {
                stack.push((d.clone(), [path.clone(), vec![d.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    let mut cycles = Vec::new();
    for e in std::fs::read_dir(&crates).unwrap() {
        let src = e.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let g = graph(&src);
        checked += g.len();
        for m in g.keys() {
            if let Some(c) = cycle_through(&g, m) {
                cycles.push(format!("{}: {}", src.display(), c.join(" → ")));
            }
        }
    }
    assert!(checked > 40, "only {checked} modules found");
    assert!(cycles.is_empty(), "{cycles:#?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let a = imported(&code("use crate::b::X;\n// crate::c is a comment\n"));
    assert_eq!(a, BTreeSet::from(["b".to_string()]));
    let g = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        cycle_through(&g, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(cycle_through(&g, "c"), None);
}

/// The names in the `[dependencies]` table of a crate's manifest.
fn dependencies(krate: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let deps = text.split("[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    deps.lines()
        .filter_map(|l| l.split(['.', '=', ' ']).next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_layers_depend_one_way() {
    // What each crate must not depend on: the wire stays in the API, I/O out of the engine and
    // the model, the database out of the API.
    let rules: &[(&str, &[&str])] = &[
        (
            "stratus-iam",
            &["tokio", "sqlx", "axum", "reqwest", "stratus-store"],
        ),
        (
            "stratus-model",
            &["tokio", "axum", "stratus-store", "stratus-services"],
        ),
        (
            "stratus-store",
            &["axum", "stratus-services", "stratus-api"],
        ),
        ("stratus-services", &["axum", "http", "stratus-api"]),
        ("stratus-api", &["stratus-store", "sqlx"]),
    ];
    for (krate, forbidden) in rules {
        let deps = dependencies(krate);
        assert!(deps.len() >= 3, "{krate}: {deps:?}");
        for f in *forbidden {
            assert!(!deps.contains(*f), "{krate} depends on {f}");
        }
    }
    // The API names no store item even through a re-export.
    let mut files = Vec::new();
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stratus-api/src");
    rust_files(&api, &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("stratus_store"), "{}", f.display());
        assert!(!text.contains("services::store"), "{}", f.display());
    }
}

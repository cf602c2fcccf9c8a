//! The dependency rules of `docs/ARCHITECTURE.md`, checked over `cargo
//! metadata` (each workspace crate's direct dependencies) and, where the
//! metadata cannot tell, a scan of the sources. A rule changes only with its
//! reason in the architecture document; its exceptions are named here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Each workspace crate's normal (non-dev, non-build) dependencies.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let mut crates = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        crates.insert(p["name"].as_str().unwrap_or_default().to_owned(), deps);
    }
    crates
}

/// Rule 1: domain crates (and the `domain` module of a service crate) name
/// no wire types.
const DOMAIN_CRATES: &[&str] = &[
    "focusforge-core",
    "focusforge-tasks",
    "focusforge-users",
    "focusforge-memory",
    "focusforge-chain",
    "focusforge-planner",
];
const WIRE: &[&str] = &[
    "tonic",
    "tonic-prost",
    "tonic-web",
    "tonic-health",
    "tonic-reflection",
    "tonic-types",
    "prost",
    "prost-types",
    "http",
    "hyper",
    "focusforge-proto",
    "focusforge-grpc",
];

/// Rules 2 and 3: who may name a driver, a model runtime or an HTTP client,
/// with the rule each belongs to.
const ONLY_IN: &[(u8, &str, &[&str])] = &[
    (
        2,
        "rusqlite",
        &["focusforge-store", "focusforge-jobs", "focusforge-events"],
    ),
    (2, "mongodb", &["focusforge-store"]),
    (2, "bson", &["focusforge-store"]),
    (
        2,
        "deadpool-redis",
        &["focusforge-cache", "focusforge-jobs", "focusforge-events"],
    ),
    (
        2,
        "redis",
        &["focusforge-cache", "focusforge-jobs", "focusforge-events"],
    ),
    (2, "moka", &["focusforge-cache"]),
    (2, "lance", &["focusforge-vector"]),
    (2, "lance-index", &["focusforge-vector"]),
    (2, "lance-linalg", &["focusforge-vector"]),
    (3, "candle-core", &["focusforge-embed", "focusforge-llm"]),
    (3, "candle-nn", &["focusforge-embed", "focusforge-llm"]),
    (3, "tokenizers", &["focusforge-embed", "focusforge-llm"]),
    (
        3,
        "reqwest",
        &[
            "focusforge-auth",
            "focusforge-llm",
            "focusforge-calendar",
            "focusforge-integrations",
        ],
    ),
];

/// Rule 3: the files that may hold `unsafe` code.
const UNSAFE_ALLOWED: &[&str] = &["crates/focusforge-llm/src/kernels.rs"];

/// Every broken rule, one line each.
fn violations() -> Vec<String> {
    let crates = dependencies();
    let mut broken = Vec::new();
    for name in DOMAIN_CRATES {
        let deps = crates
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not in the workspace"));
        for wire in WIRE.iter().filter(|w| deps.contains(**w)) {
            broken.push(format!("rule 1: domain crate {name} depends on {wire}"));
        }
    }
    for (rule, dep, allowed) in ONLY_IN {
        for (name, deps) in &crates {
            if deps.contains(*dep) && !allowed.contains(&name.as_str()) {
                broken.push(format!(
                    "rule {rule}: {name} depends on {dep} (only {} may)",
                    allowed.join(", ")
                ));
            }
        }
    }
    let root = root();
    let mut files = Vec::new();
    for dir in ["crates", "gateway", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("tests/it/rules.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if !UNSAFE_ALLOWED.contains(&rel.as_str()) && has_unsafe(&code) {
            broken.push(format!("rule 3: {rel} has unsafe code"));
        }
        // A service crate's domain module is held to rule 1 by its source.
        if rel.contains("/src/domain")
            && let Some(word) = [
                "tonic",
                "prost",
                "focusforge_proto",
                "focusforge_grpc",
                "http::",
            ]
            .iter()
            .find(|w| code.contains(**w))
        {
            broken.push(format!("rule 1: {rel} names {word}"));
        }
    }
    // `unsafe_code = "forbid"` comes from the workspace lints: every crate
    // must take them.
    // The crate of the kernels keeps the same lints with `unsafe_code`
    // denied rather than forbidden, so `kernels.rs` alone can allow it.
    for (name, manifest) in crates
        .keys()
        .filter_map(|name| Some((name, manifest_of(&root, name)?)))
    {
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        let own_lints = name == "focusforge-llm" && text.contains("unsafe_code = \"deny\"");
        if !text.contains("[lints]\nworkspace = true") && !own_lints {
            broken.push(format!(
                "rule 3: {} does not take the workspace lints",
                manifest.display()
            ));
        }
    }
    broken
}

fn manifest_of(root: &Path, name: &str) -> Option<PathBuf> {
    let dir = match name {
        "focusforge-gateway" => root.join("gateway"),
        "focusforge-tests" => root.join("tests"),
        _ => root.join("crates").join(name),
    };
    Some(dir.join("Cargo.toml")).filter(|p| p.exists())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `unsafe` as a keyword (a block, fn, impl or trait), not inside a word.
fn has_unsafe(code: &str) -> bool {
    code.match_indices("unsafe").any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + "unsafe".len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after) && !code[..i].ends_with('"')
    })
}

#[test]
fn the_dependency_rules_hold() {
    let broken = violations();
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_see_the_crates_they_talk_about() {
    // A rule over crates that are not there would pass for nothing.
    let crates = dependencies();
    for name in DOMAIN_CRATES.iter().chain(
        [
            "focusforge-store",
            "focusforge-cache",
            "focusforge-jobs",
            "focusforge-vector",
            "focusforge-llm",
            "focusforge-embed",
        ]
        .iter(),
    ) {
        assert!(crates.contains_key(*name), "{name} missing");
    }
    assert!(crates["focusforge-store"].contains("rusqlite"));
    assert!(crates["focusforge-vector"].contains("lance"));
    assert!(has_unsafe("fn f() { unsafe { g() } }"));
    assert!(!has_unsafe("let unsafe_code = 1; // forbid"));
    assert!(!has_unsafe("#![forbid(unsafe_code)]"));
}

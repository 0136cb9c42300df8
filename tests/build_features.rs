//! `cargo build` (the set-up's build, the binary on PATH) and `cargo test` must resolve every shared
//! dependency with the same features: otherwise each compiles its own copy of the crates above the
//! difference, the model engine (mistralrs-core, minutes on 2 cores) among them. A dev-dependency
//! that turns on a feature of a crate the build also uses does exactly that; the fix is to ask for
//! that feature in `[dependencies]` too (see the `getrandom` line in Cargo.toml).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each crate (`name version`) of the graph with these edges, and the feature sets it is built with.
fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", edges])
        .args(["-f", "{p}|{f}", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut crates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // `name vX.Y.Z (path)` → `name vX.Y.Z`: a crate is its name and version.
        let id: Vec<&str> = package.split_whitespace().take(2).collect();
        crates
            .entry(id.join(" "))
            .or_default()
            .insert(features.trim().to_string());
    }
    crates
}

#[test]
fn cargo_build_and_cargo_test_resolve_shared_dependencies_with_the_same_features() {
    let build = features("normal,build");
    let test = features("normal,build,dev");
    assert!(build.len() > 100, "{build:?}");
    let differing: Vec<String> = build
        .iter()
        .filter(|(id, features)| test.get(*id) != Some(features))
        .map(|(id, features)| format!("{id}: build {features:?}, test {:?}", test.get(id)))
        .collect();
    assert!(
        differing.is_empty(),
        "these crates get other features under `cargo test` (a dev-dependency turns them on), so \
         they and everything built on them are compiled twice; ask for the same features in \
         [dependencies]:\n{}",
        differing.join("\n")
    );
}

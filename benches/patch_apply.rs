//! Edit-engine speed: a 50-hunk unified diff applied to a 20,000-line file, parsed and matched in
//! memory (no disk I/O). Run: `cargo bench --no-default-features --bench patch_apply`.

use agent::patch::{apply_hunks, parse_any};
use criterion::{criterion_group, criterion_main, Criterion};

fn file_and_patch() -> (String, String, String) {
    let old: String = (0..20_000)
        .map(|i| format!("    let value_{i} = compute({i}, \"item {i}\");\n"))
        .collect();
    let mut new_lines: Vec<String> = old.lines().map(str::to_string).collect();
    for h in 0..50 {
        let at = 200 + h * 390;
        new_lines[at] = format!("    let value_{at} = compute_faster({at}, \"item {at}\");");
    }
    let new: String = new_lines.iter().map(|l| format!("{l}\n")).collect();
    let patch = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("a/f.rs", "b/f.rs")
        .to_string();
    (old, new, patch)
}

fn bench(c: &mut Criterion) {
    let (old, new, patch) = file_and_patch();
    let (_, files) = parse_any(&patch).unwrap();
    assert_eq!(files[0].hunks.len(), 50);
    assert_eq!(
        apply_hunks("f.rs", &old, &files[0].hunks, true).unwrap(),
        new
    );
    c.bench_function("parse + apply 50 hunks to 20k lines", |b| {
        b.iter(|| {
            let (_, files) = parse_any(&patch).unwrap();
            apply_hunks("f.rs", &old, &files[0].hunks, true).unwrap()
        })
    });
    // Worst realistic case: every hunk's context drifted (indentation), so each falls through the exact
    // and trailing-whitespace levels before matching.
    let drifted: String = patch
        .lines()
        .map(|l| {
            if l.starts_with(' ') || (l.starts_with('-') && !l.starts_with("---")) {
                format!("{}  {}\n", &l[..1], &l[1..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    c.bench_function(
        "parse + apply 50 indentation-drifted hunks to 20k lines",
        |b| {
            b.iter(|| {
                let (_, files) = parse_any(&drifted).unwrap();
                apply_hunks("f.rs", &old, &files[0].hunks, true).unwrap()
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

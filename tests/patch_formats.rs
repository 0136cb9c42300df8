//! The edit formats as their own projects document them (Codex's `apply_patch` envelope, Aider's
//! SEARCH/REPLACE and unified-diff formats), applied to real files in a temp dir through the same
//! planning the agent's `apply_patch` tool and `agent apply` use. Each case is ours, written from the
//! formats' descriptions; docs/patch-formats.md states every policy tested here.

use agent::hostfs::Beneath;
use agent::patch::{parse_any, plan, write_all_or_nothing, PatchError};

/// Apply `patch` to a directory holding `files`; the files afterwards, or the refusal.
fn apply(files: &[(&str, &str)], patch: &str) -> Result<Vec<(String, String)>, String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    let fs = Beneath::open(dir.path()).unwrap();
    let (_, parsed) = parse_any(patch).map_err(|e| e.to_string())?;
    let changes = plan(&parsed, &fs).map_err(|e: PatchError| e.to_string())?;
    let writes: Vec<_> = changes
        .iter()
        .map(|c| (c.path.clone(), c.content.clone()))
        .collect();
    write_all_or_nothing(&fs, &writes).unwrap();
    let mut out = Vec::new();
    for entry in walk(dir.path()) {
        let rel = entry
            .strip_prefix(dir.path())
            .unwrap()
            .display()
            .to_string();
        out.push((rel, std::fs::read_to_string(&entry).unwrap()));
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn one(path: &str, text: &str) -> Vec<(String, String)> {
    vec![(path.to_string(), text.to_string())]
}

#[test]
fn envelope_end_of_file_and_pure_additions() {
    // `*** End of File`: the hunk is the file's end, even where the same lines occur earlier.
    let file = "tail\nmiddle\ntail\n";
    let patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n-tail\n+TAIL\n*** End of File\n*** End Patch\n";
    assert_eq!(
        apply(&[("a.txt", file)], patch),
        Ok(one("a.txt", "tail\nmiddle\nTAIL\n"))
    );
    // A hunk of only `+` lines, with no context and no anchor: appended at the end.
    let patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n+one\n+two\n*** End Patch\n";
    assert_eq!(
        apply(&[("a.txt", "x\n")], patch),
        Ok(one("a.txt", "x\none\ntwo\n"))
    );
    // A file without a final newline whose last line the envelope replaces ends with one.
    let patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n-last\n+new last\n*** End Patch\n";
    assert_eq!(
        apply(&[("a.txt", "first\nlast")], patch),
        Ok(one("a.txt", "first\nnew last\n"))
    );
}

#[test]
fn envelope_refuses_unknown_markers_and_overwrites() {
    let err = apply(
        &[("a.txt", "x\n")],
        "*** Begin Patch\n*** Frobnicate File: a.txt\n+y\n*** End Patch\n",
    )
    .unwrap_err();
    assert!(
        err.contains("line 2") && err.contains("`*** Frobnicate File: a.txt` is not a marker"),
        "{err}"
    );
    let err = apply(
        &[("a.txt", "x\n")],
        "*** Begin Patch\n*** Add File: b.txt\n+y\n*** Frobnicate File: a.txt\n*** End Patch\n",
    )
    .unwrap_err();
    assert!(err.contains("not a marker"), "{err}");
    // Add File over an existing file: refused (its text would be lost), unless it is the same text.
    let err = apply(
        &[("a.txt", "keep me\n")],
        "*** Begin Patch\n*** Add File: a.txt\n+new\n*** End Patch\n",
    )
    .unwrap_err();
    assert!(err.contains("already exists (1 lines)"), "{err}");
    assert_eq!(
        apply(
            &[("a.txt", "same\n")],
            "*** Begin Patch\n*** Add File: a.txt\n+same\n*** End Patch\n"
        ),
        Ok(one("a.txt", "same\n"))
    );
    // Move onto an existing file: refused.
    let err = apply(
        &[("a.txt", "from\n"), ("b.txt", "other\n")],
        "*** Begin Patch\n*** Update File: a.txt\n*** Move to: b.txt\n@@\n-from\n+to\n*** End Patch\n",
    )
    .unwrap_err();
    assert!(err.contains("would overwrite"), "{err}");
}

#[test]
fn unified_dev_null_with_removed_lines_is_a_whole_file_replacement_only_when_they_are_the_file() {
    let patch =
        "--- /dev/null\n+++ b/a.py\n@@ -0,0 +1,2 @@\n-old one\n-old two\n+new one\n+new two\n";
    assert_eq!(
        apply(&[("a.py", "old one\nold two\n")], patch),
        Ok(one("a.py", "new one\nnew two\n"))
    );
    let err = apply(&[("a.py", "something else\n")], patch).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    let err = apply(&[], patch).unwrap_err();
    assert!(
        err.contains("does not exist, yet the patch creates it"),
        "{err}"
    );
}

#[test]
fn aider_blocks_with_source_fences_elisions_and_sequential_edits() {
    let file = "def a():\n    return 1\n\ndef b():\n    return 2\n";
    let patch = "Here is the change:\n\nm.py\n<source>python\n<<<<<<< SEARCH\ndef a():\n    return 1\n=======\ndef a():\n    return 10\n>>>>>>> REPLACE\n</source>\n\n...\n\n<source>python\n<<<<<<< SEARCH\n    return 10\n\ndef b():\n=======\n    return 10\n\n\ndef b():\n>>>>>>> REPLACE\n</source>\n";
    assert_eq!(
        apply(&[("m.py", file)], patch),
        Ok(one(
            "m.py",
            "def a():\n    return 10\n\n\ndef b():\n    return 2\n"
        ))
    );
    // An empty SEARCH on an existing file appends, and the tool says so.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.py"), "x = 1\n").unwrap();
    let fs = Beneath::open(dir.path()).unwrap();
    let (_, parsed) = parse_any("m.py\n<<<<<<< SEARCH\n=======\ny = 2\n>>>>>>> REPLACE\n").unwrap();
    let changes = plan(&parsed, &fs).unwrap();
    assert_eq!(changes[0].content.as_deref(), Some(&b"x = 1\ny = 2\n"[..]));
    assert!(
        changes[0].describe().contains("end of the file"),
        "{}",
        changes[0].describe()
    );
}

#[test]
fn a_repeated_divider_never_lands_in_the_file() {
    let patch = "m.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n=======\n>>>>>>> REPLACE\n";
    assert_eq!(
        apply(&[("m.py", "x = 1\n")], patch),
        Ok(one("m.py", "x = 2\n"))
    );
    let patch = "m.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n=======\nx = 3\n>>>>>>> REPLACE\n";
    assert!(apply(&[("m.py", "x = 1\n")], patch).is_err());
}

#[test]
fn ambiguity_is_refused_with_every_place_shown() {
    let file = "a()\nx = 1\nb()\nx = 1\n";
    let err = apply(
        &[("m.py", file)],
        "--- a/m.py\n+++ b/m.py\n@@\n-x = 1\n+x = 2\n",
    )
    .unwrap_err();
    assert!(err.contains("matches in 2 places (lines 2, 4)"), "{err}");
    assert!(err.contains("1| a()") && err.contains("3| b()"), "{err}");
}

#[test]
fn lone_carriage_returns_are_line_ends_and_stay() {
    let patch = "--- a/old.txt\n+++ b/old.txt\n@@\n a\n-b\n+B\n";
    assert_eq!(
        apply(&[("old.txt", "a\rb\rc\r")], patch),
        Ok(one("old.txt", "a\rB\rc\r"))
    );
}

#[test]
fn envelope_anchors_narrow_down_one_after_another() {
    // `@@ class B` then `@@ def f`: the method of the second class, not the first.
    let file = "class A:\n    def f(self):\n        return 1\n\nclass B:\n    def f(self):\n        return 1\n";
    let patch = "*** Begin Patch\n*** Update File: m.py\n@@ class B:\n@@     def f(self):\n-        return 1\n+        return 2\n*** End Patch\n";
    assert_eq!(
        apply(&[("m.py", file)], patch),
        Ok(one(
            "m.py",
            "class A:\n    def f(self):\n        return 1\n\nclass B:\n    def f(self):\n        return 2\n"
        ))
    );
}

#[test]
fn aider_udiff_hunks_without_numbers_in_a_diff_fence() {
    let file = "import math\n\nclass Web:\n    pass\n\ndef is_prime(x):\n    return x > 1\n\ndef nth(n):\n    return is_prime(n)\n";
    let patch = "```diff\n--- web.py\n+++ web.py\n@@ ... @@\n-class Web:\n+import sympy\n+\n+class Web:\n@@ ... @@\n-def nth(n):\n-    return is_prime(n)\n+def nth(n):\n+    return sympy.isprime(n)\n```\n";
    assert_eq!(
        apply(&[("web.py", file)], patch),
        Ok(one(
            "web.py",
            "import math\n\nimport sympy\n\nclass Web:\n    pass\n\ndef is_prime(x):\n    return x > 1\n\ndef nth(n):\n    return sympy.isprime(n)\n"
        ))
    );
}

#[test]
fn aider_elisions_apply_piece_by_piece_and_a_real_ellipsis_still_matches_whole() {
    let file = "def a():\n    x = 1\n    y = 3\n    return x\n";
    let patch = "m.py\n<<<<<<< SEARCH\ndef a():\n    x = 1\n...\n    return x\n=======\ndef a():\n    x = 2\n...\n    return x + 1\n>>>>>>> REPLACE\n";
    assert_eq!(
        apply(&[("m.py", file)], patch),
        Ok(one(
            "m.py",
            "def a():\n    x = 2\n    y = 3\n    return x + 1\n"
        ))
    );
    let stub = "def b():\n    ...\n";
    let patch = "m.py\n<<<<<<< SEARCH\ndef b():\n    ...\n=======\ndef b():\n    ...\n    return 1\n>>>>>>> REPLACE\n";
    assert_eq!(
        apply(&[("m.py", stub)], patch),
        Ok(one("m.py", "def b():\n    ...\n    return 1\n"))
    );
}

#[test]
fn git_renames_with_and_without_hunks_move_the_file_once() {
    let pure = "diff --git a/old.txt b/sub/new.txt\nsimilarity index 100%\nrename from old.txt\nrename to sub/new.txt\n";
    assert_eq!(
        apply(&[("old.txt", "a\n")], pure),
        Ok(one("sub/new.txt", "a\n"))
    );
    let edited = "diff --git a/old.txt b/new.txt\nsimilarity index 50%\nrename from old.txt\nrename to new.txt\nindex 1..2 100644\n--- a/old.txt\n+++ b/new.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n";
    assert_eq!(
        apply(&[("old.txt", "a\nb\n")], edited),
        Ok(one("new.txt", "a\nB\n"))
    );
}

#[test]
fn aider_paths_in_bold_with_colons_and_in_the_fence_info() {
    let block = "<<<<<<< SEARCH\n    return 1\n=======\n    return 2\n>>>>>>> REPLACE\n```\n";
    let file = "def f():\n    return 1\n";
    for above in [
        "**pkg/m.py**:\n```python\n",
        "```pkg/m.py\n",
        "# `pkg/m.py`\n```python\n",
    ] {
        assert_eq!(
            apply(&[("pkg/m.py", file)], &format!("{above}{block}")),
            Ok(one("pkg/m.py", "def f():\n    return 2\n")),
            "{above:?}"
        );
    }
}

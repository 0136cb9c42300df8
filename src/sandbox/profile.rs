//! Sandbox profiles (`sandboxes/*.toml`): what a command may write, which environment it sees, whether
//! it has network, and its limits. `default` and `fetch` are built in (compiled from this repository's
//! `sandboxes/`); `--profile` also takes a path to a TOML file, or a name found in
//! `$XDG_CONFIG_HOME/agent/sandboxes/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../../sandboxes/default.toml")),
    ("fetch", include_str!("../../sandboxes/fetch.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub network: bool,
    /// With `network`: the only hosts reachable, through the agent's registry proxy (HTTPS on port
    /// 443; `*.example.org` for its subdomains). Empty: the host's network, unfiltered.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    #[serde(default)]
    pub writable: Vec<String>,
    /// Cache variables (`CARGO_TARGET_DIR`, `AGENT_PYDEPS`) whose directories commands may write;
    /// the other caches the agent names are bound read-only.
    #[serde(default)]
    pub writable_env: Vec<String>,
    pub env: Vec<String>,
    pub limits: ProfileLimits,
    #[serde(skip)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLimits {
    pub file_size_mb: u64,
    pub data_size_mb: u64,
    pub open_files: u64,
    pub tmp_size_mb: u64,
    pub pids: u64,
    pub memory_mb: u64,
    /// A command is stopped when the worktree's file system has less free than this (MiB).
    #[serde(default)]
    pub min_free_disk_mb: Option<u64>,
}

impl Profile {
    /// Load a profile by built-in name, config-dir name, or path.
    pub fn load(name: &str) -> Result<Self, String> {
        let (label, text) = if name.ends_with(".toml") || name.contains('/') {
            let text = std::fs::read_to_string(name)
                .map_err(|e| format!("cannot read sandbox profile {name}: {e}"))?;
            (name.to_string(), text)
        } else if let Some(text) = crate::dirs::config_dir()
            .map(|d| d.join("sandboxes").join(format!("{name}.toml")))
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            (name.to_string(), text)
        } else if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
            (name.to_string(), text.to_string())
        } else {
            let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "no sandbox profile {name:?}; built in: {}; or give a path to a .toml file",
                known.join(", ")
            ));
        };
        let mut profile: Profile =
            toml::from_str(&text).map_err(|e| format!("sandbox profile {label}: {e}"))?;
        profile.name = label;
        Ok(profile)
    }

    /// The extra writable paths, with `~/` expanded against `home`.
    pub fn writable_paths(&self, home: Option<&Path>) -> Vec<PathBuf> {
        self.writable
            .iter()
            .filter_map(|p| match (p.strip_prefix("~/"), home) {
                (Some(rest), Some(home)) => Some(home.join(rest)),
                (Some(_), None) => None,
                (None, _) => Some(PathBuf::from(p)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_parse_and_unknown_names_are_explained() {
        let default = Profile::load("default").unwrap();
        assert!(!default.network && default.env.contains(&"PATH".to_string()));
        let fetch = Profile::load("fetch").unwrap();
        assert!(fetch.network);
        assert_eq!(
            fetch.writable_paths(Some(Path::new("/home/u")))[0],
            Path::new("/home/u/.cargo/registry")
        );
        assert!(Profile::load("nope")
            .unwrap_err()
            .contains("built in: default, fetch"));
    }
}

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

    /// This profile with `hosts` added to the hosts its registry proxy lets through. Only a profile
    /// that already reaches the network through the proxy (like `fetch`) can take more: adding
    /// hosts to an offline profile would open it, and one with unfiltered network has nothing to
    /// filter.
    pub fn with_registries(mut self, hosts: &[String]) -> Result<Self, String> {
        if hosts.is_empty() {
            return Ok(self);
        }
        if !self.network || self.allow_hosts.is_empty() {
            return Err(format!(
                "the sandbox profile {} has no registry proxy to add hosts to (only a profile with network = true and allow_hosts, like `fetch`, has one)",
                self.name
            ));
        }
        for host in hosts {
            if let Some(problem) = check_host(host) {
                return Err(problem);
            }
            if !self.allow_hosts.contains(host) {
                self.allow_hosts.push(host.clone());
            }
        }
        Ok(self)
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

/// Why `host` cannot be a registry host (`name.example.org` or `*.example.org`), or None.
pub fn check_host(host: &str) -> Option<String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels_ok = name.split('.').count() >= 2
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    let numeric = name
        .split('.')
        .all(|l| l.chars().all(|c| c.is_ascii_digit()));
    (!labels_ok || numeric || name.len() > 253).then(|| {
        format!(
            "registry host {host:?} must be a lower-case DNS name like registry.example.org (or *.example.org for its subdomains), not an address or a URL"
        )
    })
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

    #[test]
    fn registries_are_added_only_to_a_proxied_profile_and_only_as_host_names() {
        let more = |hosts: &[&str]| {
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            Profile::load("fetch").unwrap().with_registries(&hosts)
        };
        let fetch = more(&["npm.example.org", "*.corp.example", "pypi.org"]).unwrap();
        assert!(fetch
            .allow_hosts
            .ends_with(&["npm.example.org".into(), "*.corp.example".into()]));
        assert_eq!(
            fetch
                .allow_hosts
                .iter()
                .filter(|h| *h == "pypi.org")
                .count(),
            1
        );
        for bad in [
            "https://x.org",
            "127.0.0.1",
            "localhost",
            "X.org",
            "a..b",
            "*.",
            "x.org:8080",
        ] {
            assert!(
                more(&[bad])
                    .unwrap_err()
                    .contains("must be a lower-case DNS name"),
                "{bad}"
            );
        }
        let offline = Profile::load("default").unwrap();
        assert!(offline
            .with_registries(&["a.example.org".into()])
            .unwrap_err()
            .contains("has no registry proxy"));
    }
}

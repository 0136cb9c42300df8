//! Where the agent keeps its own files on the host: the cache (models, dependency caches, compiled
//! plugins), the state (run records) and the user's config. A leaf: it imports nothing of the crate,
//! and never creates a folder itself.
//!
//! The XDG layout on every Unix, macOS included (etcetera's "base strategy"), so that the paths match
//! what scripts/setup.sh, scripts/fetch-model.py and the docs name; `XDG_*_HOME` is honoured only when
//! absolute, as the XDG spec says.

use std::path::PathBuf;

use etcetera::BaseStrategy;

fn strategy() -> Option<impl BaseStrategy> {
    etcetera::choose_base_strategy().ok()
}

/// `$XDG_CACHE_HOME/agent`, else `~/.cache/agent`: models, dependency caches, compiled plugins.
/// Without a home directory, a folder under the system's temporary directory.
pub fn cache_dir() -> PathBuf {
    strategy()
        .map(|s| s.cache_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("agent")
}

/// `$XDG_STATE_HOME/agent`, else `~/.local/state/agent`: run records and saved patches, outside
/// every repository. Without a home directory, a folder under the system's temporary directory.
pub fn state_dir() -> PathBuf {
    strategy()
        .and_then(|s| s.state_dir())
        .unwrap_or_else(std::env::temp_dir)
        .join("agent")
}

/// `$XDG_CONFIG_HOME/agent`, else `~/.config/agent`: sandbox profiles and plugins of the user. None
/// without a home directory (there is then no user config to read).
pub fn config_dir() -> Option<PathBuf> {
    strategy().map(|s| s.config_dir().join("agent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_folders_are_distinct_and_named_agent() {
        let (cache, state) = (cache_dir(), state_dir());
        assert!(cache.ends_with("agent") && state.ends_with("agent"));
        assert_ne!(cache, state);
        if let Some(config) = config_dir() {
            assert!(config.ends_with("agent"));
            assert_ne!(config, cache);
        }
    }
}

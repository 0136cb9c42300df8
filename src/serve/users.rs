//! Who may use `agent serve`, and how much they used: `users.toml` (names, SHA-256 hashes of their
//! API keys, per-user limits) and `usage.json` (request and token counts, today and in total), both in
//! the server's state folder.
//!
//! A key is shown once, when it is made, and never stored: only its hash is, and a presented key is
//! checked against every user's hash in constant time. Nothing here ever holds a prompt or a reply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every key this server makes, so that a leaked key is recognisable in a scan.
const KEY_PREFIX: &str = "agent-";

/// One user of the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// SHA-256 of the key, hex. The key itself is never written down.
    pub key_sha256: String,
    /// When the user was added, in seconds since 1970.
    pub created: u64,
    /// Model requests a minute; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens a day (UTC); none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
}

/// `users.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

impl Users {
    pub fn path(state: &Path) -> PathBuf {
        state.join("users.toml")
    }

    /// The users file of `state`; no file means no users (every request is refused).
    pub fn load(state: &Path) -> anyhow::Result<Self> {
        let path = Self::path(state);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, state: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        write_private(&Self::path(state), text.as_bytes())
    }

    /// Add `name` with a new key; returns the key, which is shown once and stored only as a hash.
    pub fn add(
        &mut self,
        name: &str,
        requests_per_minute: Option<u32>,
        tokens_per_day: Option<u64>,
    ) -> anyhow::Result<String> {
        check_name(name)?;
        if self.users.iter().any(|u| u.name == name) {
            anyhow::bail!(
                "a user named {name:?} already exists; remove it first (agent serve user remove {name}) to give them a new key"
            );
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
        let key = format!("{KEY_PREFIX}{}", hex(&secret));
        self.users.push(User {
            name: name.to_string(),
            key_sha256: hex(&Sha256::digest(key.as_bytes())),
            created: now_secs(),
            requests_per_minute,
            tokens_per_day,
        });
        Ok(key)
    }

    /// Remove `name`; false when there is no such user.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        self.users.len() != before
    }

    /// The user whose key this is. Every user's hash is compared, in constant time, so the answer's
    /// timing says nothing about which hash came close.
    pub fn authenticate(&self, presented: &str) -> Option<&User> {
        let digest = hex(&Sha256::digest(presented.trim().as_bytes()));
        let mut found = None;
        for user in &self.users {
            if bool::from(digest.as_bytes().ct_eq(user.key_sha256.as_bytes())) {
                found = Some(user);
            }
        }
        found
    }
}

/// Names are shown in tables and used as keys of the usage file: short, printable, no spaces.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        anyhow::bail!("user name {name:?}: use 1 to 64 letters, digits, '-', '_', '.' or '@'")
    }
}

/// What one user used: requests, tokens, and the time the model spent on them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counts {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub model_ms: u64,
}

impl Counts {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.model_ms += other.model_ms;
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserUsage {
    pub total: Counts,
    /// The UTC day `today` counts, in days since 1970.
    pub day: u64,
    pub today: Counts,
}

/// `usage.json`: per user, counts only.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageBook {
    pub users: BTreeMap<String, UserUsage>,
}

impl UsageBook {
    pub fn path(state: &Path) -> PathBuf {
        state.join("usage.json")
    }

    pub fn load(state: &Path) -> anyhow::Result<Self> {
        let path = Self::path(state);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, state: &Path) -> anyhow::Result<()> {
        write_private(&Self::path(state), &serde_json::to_vec_pretty(self)?)
    }

    /// Tokens `name` used today (UTC).
    pub fn tokens_today(&self, name: &str) -> u64 {
        self.users
            .get(name)
            .filter(|u| u.day == today())
            .map_or(0, |u| u.today.tokens())
    }

    pub fn record(&mut self, name: &str, counts: &Counts) {
        let entry = self.users.entry(name.to_string()).or_default();
        let day = today();
        if entry.day != day {
            entry.day = day;
            entry.today = Counts::default();
        }
        entry.today.add(counts);
        entry.total.add(counts);
    }
}

/// Write `bytes` to `file` readable by its owner only, replacing it whole (a reader never sees half).
fn write_private(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // NamedTempFile is created with mode 0600.
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.persist(file)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Today, UTC, in days since 1970.
pub fn today() -> u64 {
    now_secs() / 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_hashes_and_only_the_right_key_is_let_in() {
        let state = tempfile::tempdir().unwrap();
        let mut users = Users::default();
        let alice = users.add("alice", Some(10), None).unwrap();
        let bob = users.add("bob", None, Some(1000)).unwrap();
        assert!(users.add("alice", None, None).is_err());
        assert!(users.add("bad name", None, None).is_err());
        users.save(state.path()).unwrap();
        let text = std::fs::read_to_string(Users::path(state.path())).unwrap();
        assert!(!text.contains(&alice) && !text.contains(&alice[KEY_PREFIX.len()..]));
        let users = Users::load(state.path()).unwrap();
        assert_eq!(users.authenticate(&alice).unwrap().name, "alice");
        assert_eq!(users.authenticate(&bob).unwrap().name, "bob");
        assert!(users.authenticate("agent-00").is_none());
        assert!(users.authenticate("").is_none());
        let mut wrong = alice.clone();
        wrong.pop();
        assert!(users.authenticate(&wrong).is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(Users::path(state.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "users.toml is private: {mode:o}");
    }

    #[test]
    fn usage_adds_up_and_today_starts_afresh_each_day() {
        let mut book = UsageBook::default();
        let one = Counts {
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            model_ms: 7,
        };
        book.record("alice", &one);
        book.record("alice", &one);
        assert_eq!(book.tokens_today("alice"), 30);
        book.users.get_mut("alice").unwrap().day -= 1;
        assert_eq!(book.tokens_today("alice"), 0);
        book.record("alice", &one);
        let alice = &book.users["alice"];
        assert_eq!(alice.today.requests, 1);
        assert_eq!(alice.total.requests, 3);
        assert_eq!(alice.total.tokens(), 45);
    }
}

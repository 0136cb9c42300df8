//! The GitHub REST endpoints a draft pull request needs: list open pulls by head branch, create a
//! draft pull, update a pull's title and body. `GITHUB_API_URL` is honoured (GitHub Enterprise).

use serde_json::{json, Value};

/// A repository on a GitHub API.
pub struct GitHub {
    api: String,
    repo: String,
    token: String,
}

/// The pull request that was created or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub number: u64,
    pub url: String,
    pub created: bool,
}

impl GitHub {
    /// From `GITHUB_TOKEN`, `GITHUB_REPOSITORY` (`owner/name`) and `GITHUB_API_URL`; `None` unless the
    /// first two are set.
    pub fn from_env() -> Option<Self> {
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())?;
        let repo = std::env::var("GITHUB_REPOSITORY")
            .ok()
            .filter(|r| r.contains('/'))?;
        let api = std::env::var("GITHUB_API_URL")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "https://api.github.com".into());
        Some(Self {
            api: api.trim_end_matches('/').to_string(),
            repo,
            token,
        })
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        ureq::request(method, &format!("{}/repos/{}{path}", self.api, self.repo))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Accept", "application/vnd.github+json")
            .set("X-GitHub-Api-Version", "2022-11-28")
            .set("User-Agent", concat!("agent/", env!("CARGO_PKG_VERSION")))
    }

    /// Create the draft pull request from `branch` into `base`, or update the open one for `branch`.
    pub fn create_or_update(
        &self,
        branch: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<Pull, String> {
        let owner = self.repo.split('/').next().unwrap_or_default();
        let open: Value = self
            .request("GET", "/pulls")
            .query("head", &format!("{owner}:{branch}"))
            .query("state", "open")
            .call()
            .map_err(|e| describe("listing pull requests", e))?
            .into_json()
            .map_err(|e| format!("listing pull requests: {e}"))?;
        if let Some(existing) = open.as_array().and_then(|pulls| pulls.first()) {
            let number = existing["number"].as_u64().unwrap_or_default();
            let updated: Value = self
                .request("PATCH", &format!("/pulls/{number}"))
                .send_json(json!({"title": title, "body": body}))
                .map_err(|e| describe("updating the pull request", e))?
                .into_json()
                .map_err(|e| format!("updating the pull request: {e}"))?;
            return Ok(Pull {
                number,
                url: updated["html_url"].as_str().unwrap_or_default().to_string(),
                created: false,
            });
        }
        let created: Value = self
            .request("POST", "/pulls")
            .send_json(json!({
                "title": title,
                "head": branch,
                "base": base,
                "body": body,
                "draft": true,
                "maintainer_can_modify": true,
            }))
            .map_err(|e| describe("creating the pull request", e))?
            .into_json()
            .map_err(|e| format!("creating the pull request: {e}"))?;
        Ok(Pull {
            number: created["number"].as_u64().unwrap_or_default(),
            url: created["html_url"].as_str().unwrap_or_default().to_string(),
            created: true,
        })
    }
}

fn describe(what: &str, error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            let hint = match status {
                401 => " (is GITHUB_TOKEN valid?)",
                403 | 404 => " (the workflow needs `permissions: pull-requests: write`)",
                422 => " (is the branch pushed, and is the base branch right?)",
                _ => "",
            };
            format!(
                "{what}: GitHub answered {status}{hint}: {}",
                crate::text::first_line(&body, 300)
            )
        }
        other => format!("{what}: {other}"),
    }
}

/// The command that opens the same draft pull request by hand.
pub fn gh_command(branch: &str, base: &str, title: &str, body_file: &std::path::Path) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    format!(
        "gh pr create --draft --head {} --base {} --title {} --body-file {}",
        quote(branch),
        quote(base),
        quote(title),
        quote(&body_file.display().to_string())
    )
}

//! Branch-name slugs from task text.

/// Longest slug, so branch names stay readable.
const MAX_SLUG: usize = 40;

/// `"Make the tests in tests/acronym.rs pass!"` → `"make-the-tests-in-tests-acronym-rs-pass"`. Only
/// `[a-z0-9-]`, so the result is always a valid ref component; never empty.
pub fn slugify(text: &str) -> String {
    let title = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= MAX_SLUG {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "task".to_string()
    } else {
        slug.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_safe_ref_components() {
        assert_eq!(
            slugify("Make the tests in tests/acronym.rs pass!"),
            "make-the-tests-in-tests-acronym-rs-pass"
        );
        assert_eq!(slugify("# Instructions\n\nRest"), "instructions");
        assert_eq!(slugify("../../.lock ~^:"), "lock");
        assert_eq!(slugify("¿¿??"), "task");
        assert_eq!(slugify(""), "task");
        assert!(slugify(&"word ".repeat(50)).len() <= 40);
    }
}

//! Branch-name slugs from task text.

/// Longest slug, so branch names stay readable.
const MAX_SLUG: usize = 40;

/// Headings that say nothing about the task; the next line names it better.
const GENERIC_TITLES: &[&str] = &["instructions", "task", "description", "issue", "problem"];

/// `"Make the tests in tests/acronym.rs pass!"` → `"make-the-tests-in-tests-acronym-rs-pass"`. Only
/// `[a-z0-9-]`, so the result is always a valid ref component; never empty. A generic first heading
/// such as `# Instructions` is skipped in favour of the line after it.
pub fn slugify(text: &str) -> String {
    let mut lines = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter(|l| !l.is_empty());
    let first = slug_of(lines.next().unwrap_or(""));
    if GENERIC_TITLES.contains(&first.as_str()) {
        if let Some(next) = lines.next().map(slug_of).filter(|s| !s.is_empty()) {
            return next;
        }
    }
    if first.is_empty() {
        "task".to_string()
    } else {
        first
    }
}

fn slug_of(line: &str) -> String {
    let mut slug = String::new();
    for c in line.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= MAX_SLUG {
            break;
        }
    }
    slug.trim_end_matches('-').to_string()
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
        assert_eq!(
            slugify("# Instructions\n\nConvert a phrase to its acronym."),
            "convert-a-phrase-to-its-acronym"
        );
        assert_eq!(slugify("# Instructions"), "instructions");
        assert_eq!(slugify("../../.lock ~^:"), "lock");
        assert_eq!(slugify("¿¿??"), "task");
        assert_eq!(slugify(""), "task");
        assert!(slugify(&"word ".repeat(50)).len() <= 40);
    }
}

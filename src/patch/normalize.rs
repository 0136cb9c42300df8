//! The tolerance levels of the matcher, and re-indentation of replacement lines.

use std::borrow::Cow;

/// How loosely a hunk's lines are compared with the file's, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Exact,
    /// Trailing whitespace ignored (editors and models drop or add it).
    TrailingWhitespace,
    /// Leading and trailing whitespace ignored; the replacement is re-indented to match the file.
    SurroundingWhitespace,
    /// As above, with typographic punctuation (smart quotes, dashes, NBSP) folded to ASCII.
    Unicode,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::Exact,
        Level::TrailingWhitespace,
        Level::SurroundingWhitespace,
        Level::Unicode,
    ];

    pub fn normalize<'a>(self, line: &'a str) -> Cow<'a, str> {
        match self {
            Level::Exact => Cow::Borrowed(line),
            Level::TrailingWhitespace => Cow::Borrowed(line.trim_end()),
            Level::SurroundingWhitespace => Cow::Borrowed(line.trim()),
            Level::Unicode => fold_unicode(line.trim()),
        }
    }
}

/// Typographic punctuation as models (and word processors) write it, folded to what code uses.
pub fn fold_unicode(line: &str) -> Cow<'_, str> {
    if line.is_ascii() {
        return Cow::Borrowed(line);
    }
    let folded: String = line
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => '\'',
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => '"',
            '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
            | '\u{2212}' => '-',
            '\u{00A0}' | '\u{2002}' | '\u{2003}' | '\u{2007}' | '\u{2009}' | '\u{202F}' => ' ',
            other => other,
        })
        .collect();
    Cow::Owned(folded)
}

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// How the file's indentation relates to the hunk's, learned from the lines both contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reindent {
    Same,
    /// The file has this extra prefix on every line.
    Add(String),
    /// The hunk has this extra prefix on every line.
    Remove(String),
    /// The file indents with tabs where the hunk uses this many spaces, or the reverse.
    SpacesToTabs(usize),
    TabsToSpaces(usize),
    /// No single rule fits (the hunk drifted differently per line, e.g. the header kept and the body
    /// de-indented by 2): each of the hunk's indentations stands for one of the file's, as the old
    /// lines matched. Deeper indentations keep their extra whitespace on top of the nearest known one.
    PerLine(Vec<(String, String)>),
}

impl Reindent {
    /// Learn the relation from (hunk line, file line) pairs; `None` when no single rule explains all.
    pub fn learn(pairs: &[(&str, &str)]) -> Option<Reindent> {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(h, f)| !h.trim().is_empty() && !f.trim().is_empty())
            .map(|(h, f)| (indent_of(h), indent_of(f)))
            .collect();
        let mut candidates = vec![Reindent::Same];
        if let Some((h, f)) = pairs.first() {
            if let Some(extra) = f.strip_prefix(h) {
                candidates.push(Reindent::Add(extra.to_string()));
            }
            if let Some(extra) = h.strip_prefix(f) {
                candidates.push(Reindent::Remove(extra.to_string()));
            }
        }
        for width in [4, 2, 8] {
            candidates.push(Reindent::SpacesToTabs(width));
            candidates.push(Reindent::TabsToSpaces(width));
        }
        candidates
            .into_iter()
            .find(|rule| {
                pairs
                    .iter()
                    .all(|(h, f)| rule.indent(h).as_deref() == Some(*f))
            })
            .or_else(|| Self::per_line(&pairs))
    }

    /// The line-by-line mapping, when it is one: no indentation of the hunk stands for two different
    /// ones in the file, and deeper in the hunk is deeper in the file.
    fn per_line(pairs: &[(&str, &str)]) -> Option<Reindent> {
        let mut map: Vec<(String, String)> = Vec::new();
        for (h, f) in pairs {
            match map.iter().find(|(k, _)| k == h) {
                Some((_, v)) if v != f => return None,
                Some(_) => {}
                None => map.push((h.to_string(), f.to_string())),
            }
        }
        map.sort_by_key(|(k, _)| k.len());
        let monotonic = map
            .windows(2)
            .all(|w| w[1].0.starts_with(w[0].0.as_str()) && w[1].1.len() > w[0].1.len());
        monotonic.then_some(Reindent::PerLine(map))
    }

    fn indent(&self, indent: &str) -> Option<String> {
        match self {
            Reindent::Same => Some(indent.to_string()),
            Reindent::Add(extra) => Some(format!("{extra}{indent}")),
            Reindent::Remove(extra) => indent.strip_prefix(extra.as_str()).map(str::to_string),
            Reindent::SpacesToTabs(width) => {
                let spaces = indent.chars().all(|c| c == ' ').then_some(indent.len())?;
                Some(format!(
                    "{}{}",
                    "\t".repeat(spaces / width),
                    " ".repeat(spaces % width)
                ))
            }
            Reindent::TabsToSpaces(width) => Some(indent.replace('\t', &" ".repeat(*width))),
            Reindent::PerLine(map) => map
                .iter()
                .rev()
                .find(|(k, _)| indent.starts_with(k.as_str()))
                .map(|(k, v)| format!("{v}{}", &indent[k.len()..])),
        }
    }

    /// Apply the rule to an added line; `None` when the line's indentation does not fit the rule.
    pub fn apply(&self, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            // Whitespace-only lines follow the rule when they can, and are kept as written otherwise.
            return Some(self.indent(line).unwrap_or_else(|| line.to_string()));
        }
        let indent = indent_of(line);
        self.indent(indent)
            .map(|new| format!("{new}{}", &line[indent.len()..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_typographic_punctuation() {
        assert_eq!(
            fold_unicode("say(\u{201C}hi\u{201D}) \u{2014} it\u{2019}s\u{00A0}ok"),
            "say(\"hi\") - it's ok"
        );
        assert!(matches!(fold_unicode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn learns_uniform_indentation_changes() {
        assert_eq!(
            Reindent::learn(&[("a", "    a"), ("  b", "      b")]),
            Some(Reindent::Add("    ".into()))
        );
        assert_eq!(
            Reindent::learn(&[("    a", "a"), ("      b", "  b")]),
            Some(Reindent::Remove("    ".into()))
        );
        assert_eq!(
            Reindent::learn(&[("    a", "\ta"), ("        b", "\t\tb")]),
            Some(Reindent::SpacesToTabs(4))
        );
        assert_eq!(
            Reindent::learn(&[("\ta", "  a")]),
            Some(Reindent::TabsToSpaces(2))
        );
        assert_eq!(
            Reindent::learn(&[("a", "  a"), ("b", "    b")]),
            None,
            "not uniform"
        );
        assert_eq!(
            Reindent::SpacesToTabs(4).apply("        x"),
            Some("\t\tx".into())
        );
        assert_eq!(Reindent::Remove("  ".into()).apply("x"), None);
    }

    #[test]
    fn learns_per_line_drift_and_refuses_what_it_cannot_map() {
        // The header kept, the body de-indented by 2.
        let rule = Reindent::learn(&[
            ("    def f():", "    def f():"),
            ("      return 1", "        return 1"),
        ])
        .unwrap();
        assert!(matches!(rule, Reindent::PerLine(_)), "{rule:?}");
        assert_eq!(
            rule.apply("      return 2"),
            Some("        return 2".into())
        );
        assert_eq!(
            rule.apply("        deeper"),
            Some("          deeper".into())
        );
        assert_eq!(rule.apply("  shallower"), None);
        // One indentation of the hunk standing for two in the file cannot be mapped.
        assert_eq!(
            Reindent::learn(&[("  a", "  a"), ("  b", "      b"), ("c", "c")]),
            None
        );
    }
}

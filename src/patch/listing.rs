//! A file listing against the file it is to replace: the whole new file, or — as small models write
//! back only the function they fixed, whatever they are asked — the changed definitions merged into
//! the file, or a fragment that fits nowhere. Pure text; callers read and write the files.

/// What a file listing amounts to against the file it lists.
#[derive(Debug, PartialEq)]
pub enum Listing {
    /// The whole new file.
    Whole(String),
    /// Some of the file's definitions, each put in place of the file's own of the same first line.
    Merged(String),
    /// Part of the file that fits no single place.
    Partial,
}

/// A listing much shorter than the file is taken for the changed definitions only (small models
/// write back just the function they fixed, whatever the prompt says): each piece that starts at the
/// listing's outermost indentation replaces the definition in the file whose first line is the same
/// (found once, by its text without indentation), through the lines indented deeper than it and a
/// closing bracket at its own depth. A piece that matches no line, or several, makes it `Partial` —
/// unless the listing opens with the file's own first line (its header, imports): then it is a
/// rewrite of the whole file, shorter than before (a refactoring), and taken as `Whole`.
pub fn whole_or_merged(original: &str, listed: &str) -> Listing {
    match merged(original, listed) {
        Listing::Partial if same_opening(original, listed) => Listing::Whole(listed.to_string()),
        listing => listing,
    }
}

fn same_opening(original: &str, listed: &str) -> bool {
    let first = |text: &str| {
        text.lines()
            .map(str::trim_end)
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    };
    first(original).is_some() && first(original) == first(listed)
}

fn merged(original: &str, listed: &str) -> Listing {
    let old: Vec<&str> = original.lines().collect();
    let new: Vec<&str> = listed.lines().collect();
    if old.len() <= 4 || new.len() * 2 >= old.len() {
        return Listing::Whole(listed.to_string());
    }
    let indent = |line: &str| line.len() - line.trim_start().len();
    let outer = new
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut pieces: Vec<Vec<&str>> = Vec::new();
    for line in &new {
        let starts = !line.trim().is_empty() && indent(line) == outer;
        match pieces.last_mut() {
            Some(piece) if !starts || line.trim_start().starts_with(['}', ')', ']']) => {
                piece.push(line)
            }
            _ if line.trim().is_empty() => {}
            _ => pieces.push(vec![line]),
        }
    }
    let mut text: Vec<String> = old.iter().map(|l| l.to_string()).collect();
    for piece in pieces {
        let head = piece[0].trim();
        let mut at = text.iter().enumerate().filter(|(_, l)| l.trim() == head);
        let (Some((start, _)), None) = (at.next(), at.next()) else {
            return Listing::Partial;
        };
        let depth = indent(&text[start]);
        let mut end = start + 1;
        while end < text.len() {
            let line = &text[end];
            let inside = line.trim().is_empty() || indent(line) > depth;
            let closes = indent(line) == depth && line.trim_start().starts_with(['}', ')', ']']);
            if !(inside || closes) {
                break;
            }
            end += 1;
            if closes {
                break;
            }
        }
        // Blank lines after the definition stay the file's.
        while end > start + 1 && text[end - 1].trim().is_empty() {
            end -= 1;
        }
        let shift = |line: &str| match line.trim().is_empty() {
            true => String::new(),
            false => format!("{}{}", " ".repeat(depth), &line[outer.min(indent(line))..]),
        };
        let mut body: Vec<String> = piece.iter().map(|l| shift(l)).collect();
        while body.last().is_some_and(|l| l.is_empty()) {
            body.pop();
        }
        text.splice(start..end, body);
    }
    let mut merged = text.join("\n");
    if original.ends_with('\n') {
        merged.push('\n');
    }
    Listing::Merged(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIANGLE: &str = "def valid(sides):\n    return sum(sorted(sides)[:2]) >= sorted(sides)[2]\n\n\ndef equilateral(sides):\n    return valid(sides) and len(set(sides)) == 1\n\n\ndef isosceles(sides):\n    return valid(sides) or len(set(sides)) <= 2\n\n\ndef scalene(sides):\n    return valid(sides) and len(set(sides)) == 3\n";

    #[test]
    fn a_listing_of_one_function_replaces_that_function_only() {
        let fixed = "def isosceles(sides):\n    return valid(sides) and len(set(sides)) <= 2\n";
        assert_eq!(
            whole_or_merged(TRIANGLE, fixed),
            Listing::Merged(TRIANGLE.replace("valid(sides) or", "valid(sides) and"))
        );
        // Two functions, one of them indented as in a class body and grown by a line.
        let two = "    def valid(sides):\n        s = sorted(sides)\n        return s[0] + s[1] >= s[2]\n\n    def scalene(sides):\n        return False\n";
        let Listing::Merged(merged) = whole_or_merged(TRIANGLE, two) else {
            panic!("not merged");
        };
        assert!(merged.starts_with("def valid(sides):\n    s = sorted(sides)\n    return s[0] + s[1] >= s[2]\n\n\ndef equilateral"), "{merged}");
        assert!(
            merged.ends_with("def scalene(sides):\n    return False\n"),
            "{merged}"
        );
        // Brace languages: through the closing brace.
        let rust = "fn a() {\n    1\n}\n\nfn b() {\n    2\n}\n\nfn c() {\n    3\n}\n";
        assert_eq!(
            whole_or_merged(rust, "fn b() {\n    20\n}\n"),
            Listing::Merged(rust.replace("    2\n", "    20\n"))
        );
    }

    #[test]
    fn a_listing_that_fits_nowhere_is_partial_and_a_long_one_is_whole() {
        assert_eq!(
            whole_or_merged(TRIANGLE, "def right(sides):\n    return True\n"),
            Listing::Partial
        );
        // A line the file holds twice cannot say where the piece goes.
        let twice = "x = 1\nif a:\n    x = 1\nif b:\n    x = 1\ny = 2\nz = 3\n";
        assert_eq!(whole_or_merged(twice, "    x = 1\n"), Listing::Partial);
        let whole = TRIANGLE.replace(" or ", " and ");
        assert_eq!(
            whole_or_merged(TRIANGLE, &whole),
            Listing::Whole(whole.clone())
        );
        assert_eq!(whole_or_merged("", "new\n"), Listing::Whole("new\n".into()));
    }

    #[test]
    fn a_shorter_rewrite_that_opens_as_the_file_does_is_whole() {
        // A refactoring: new definitions, old ones gone, the same header.
        let old =
            format!("from datetime import datetime\n\n\nclass Entry:\n    pass\n\n\n{TRIANGLE}");
        let new = "from datetime import datetime\n\n\ndef table(rows):\n    return rows\n";
        assert_eq!(whole_or_merged(&old, new), Listing::Whole(new.into()));
        // The same new definition alone is still a fragment.
        assert_eq!(
            whole_or_merged(&old, "def table(rows):\n    return rows\n"),
            Listing::Partial
        );
    }
}

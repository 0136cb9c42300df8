//! Small text helpers shared by every layer (a leaf: it imports nothing of the crate).

/// At most `max` bytes of `text`, cut on a character boundary, and how many bytes were left out.
pub fn head(text: &str, max: usize) -> (&str, usize) {
    let end = text.floor_char_boundary(max);
    (&text[..end], text.len() - end)
}

/// The first non-blank line of `text`, trimmed and shortened to `max` characters (with `…`).
pub fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

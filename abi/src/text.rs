//! Plugin text made safe to print (`SEC-3`).

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character escaped: C0 and C1 controls, DEL,
/// and the line and paragraph separators. Line breaks and escape sequences
/// from a plugin must not reach a terminal raw: they could move the cursor,
/// rewrite earlier lines or forge a record of their own. Printable text,
/// non-ASCII and backslashes included, is kept as it is, so that messages
/// quoting a pattern or a path read as written.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs(c) => {
                let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape_controls("plain — ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nb"), "a\\nb");
        assert_eq!(escape_controls("\x1b[2J\x1b[H"), "\\u{1b}[2J\\u{1b}[H");
        assert_eq!(escape_controls("x\u{7f}\u{85}\u{2028}y"), "x\\u{7f}\\u{85}\\u{2028}y");
        assert_eq!(escape_controls("back\\slash\r\t"), "back\\slash\\r\\t");
    }
}

//! Quoting client input inside error messages.
//!
//! Error messages sometimes name what the client sent (an unknown key id, a service name, a
//! grant type). Echoing that text raw would let a client put control characters, fake log
//! fields or megabytes of text into responses and logs, so every echo goes through [`quoted`]:
//! escaped like a Rust string literal (quotes, backslashes, control and non-ASCII characters
//! become escapes) and cut to [`QUOTE_LIMIT`] characters.

use std::fmt::Write as _;

/// The most characters of client input an error message repeats.
pub const QUOTE_LIMIT: usize = 64;

/// `input` in double quotes, escaped, at most [`QUOTE_LIMIT`] characters of it (then `…`).
pub fn quoted(input: &str) -> String {
    let mut out = String::with_capacity(input.len().min(QUOTE_LIMIT) + 8);
    out.push('"');
    let mut chars = input.chars();
    for c in chars.by_ref().take(QUOTE_LIMIT) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_quoted() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped() {
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("x\n\r\u{1b}[31m"), r#""x\u{a}\u{d}\u{1b}[31m""#);
        assert_eq!(quoted("é"), r#""\u{e9}""#);
    }

    #[test]
    fn long_input_is_cut() {
        let q = quoted(&"a".repeat(10_000));
        assert_eq!(q, format!("\"{}…\"", "a".repeat(QUOTE_LIMIT)));
        assert_eq!(quoted(&"b".repeat(QUOTE_LIMIT)).len(), QUOTE_LIMIT + 2);
    }
}

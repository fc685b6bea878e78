//! [`guest_text`]: the one way text that a module controls (an `err(...)` string, a trap reason with
//! its function names, an export name, a compile error quoting the file) reaches logs, `last_error`,
//! `policy check`/`policy test` output and API answers.
//!
//! Escaped so that it stays on the line it was written on: a module cannot start a log line of its
//! own ("... INFO admin key accepted"), move the cursor with terminal escapes or reorder text with
//! bidirectional controls. Bounded so that it cannot flood a log or a status.

use std::fmt::Write as _;

/// Longest guest text kept in a failure message, a log line or a status, in bytes (before escaping
/// grows it by at most a constant factor).
pub const MAX_GUEST_TEXT: usize = 1024;

/// `text` with every control or invisible formatting character escaped (`\n`, `\r`, `\t`, `\\`,
/// `\u{1b}`, ...) and cut after `max` bytes of the original at a character boundary (marked `…`).
pub fn guest_text(text: &str, max: usize) -> String {
    let (kept, cut) = match text.char_indices().find(|(i, c)| i + c.len_utf8() > max) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    };
    let mut out = String::with_capacity(kept.len() + 8);
    for c in kept.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// Control characters, and the Unicode ones that break or reorder lines without being controls:
/// line and paragraph separators, bidirectional overrides and isolates, zero-width marks, BOM.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{85}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_controls_stay_on_one_line() {
        let forged =
            "oops\n2026-01-01T00:00:00Z  INFO gpu_market: admin key accepted\r\x1b[2K\u{202e}";
        let escaped = guest_text(forged, 1000);
        assert!(
            !escaped.contains(['\n', '\r', '\x1b', '\u{202e}']),
            "{escaped}"
        );
        assert_eq!(
            escaped,
            "oops\\n2026-01-01T00:00:00Z  INFO gpu_market: admin key accepted\\r\\u{1b}[2K\\u{202e}"
        );
        // A backslash is escaped too, so an escaped text cannot be mistaken for another one.
        assert_eq!(guest_text("a\\nb", 100), "a\\\\nb");
    }

    #[test]
    fn length_is_bounded_at_a_character_boundary() {
        assert_eq!(guest_text("abcdef", 3), "abc…");
        assert_eq!(guest_text("ééé", 3), "é…");
        assert_eq!(guest_text("abc", 3), "abc");
        assert!(guest_text(&"x".repeat(1 << 20), MAX_GUEST_TEXT).len() <= MAX_GUEST_TEXT + 3);
    }
}

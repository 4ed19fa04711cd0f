//! String literals for the text formats petrel writes (JSON for scripts, TOML for the
//! configuration file): one escaper whose output is valid in both.

/// `s` as a double-quoted string literal: quotes, backslashes and every control character
/// escaped (`\n`, `\r`, `\t`, else `\u00XX`), everything else as it is. The escapes used are
/// the ones JSON (RFC 8259 §7) and TOML basic strings have in common.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character is at most U+009F, so four hex digits hold it.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_for_toml() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        let parsed: std::collections::BTreeMap<String, String> =
            basic_toml::from_str(&format!("k = {}", quote("del \u{7f} bell \u{7} cr \r"))).unwrap();
        assert_eq!(parsed["k"], "del \u{7f} bell \u{7} cr \r");
    }

    #[test]
    fn json_strings_escape_what_rfc_8259_requires() {
        assert_eq!(quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let parsed: String = serde_json::from_str(&quote("tab\there \u{7f}\u{1f}")).unwrap();
        assert_eq!(parsed, "tab\there \u{7f}\u{1f}");
    }
}

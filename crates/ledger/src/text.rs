//! Text people read in a list or a panel: which characters a name or a label may not hold.

/// True for a character that must not appear in a name or a label: a
/// control character, or an invisible formatting one — bidirectional
/// overrides and isolates, which make `"rtl \u{202e} gnp.exe"` read as
/// `rtl exe.png`, zero-width spaces and joiners, which make two names look
/// alike, and the rest of Unicode's format characters (category Cf).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// True when `text` holds a character [`is_hidden_or_control`] refuses.
pub fn has_hidden_or_control(text: &str) -> bool {
    text.chars().any(is_hidden_or_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidirectional_overrides_and_zero_width_characters_are_hidden() {
        for text in [
            "rtl \u{202e} gnp.exe",
            "is\u{2066}olate",
            "zero\u{200b}width",
            "join\u{200d}er",
            "bom\u{feff}",
            "mark\u{200f}",
            "tag\u{e0041}",
            "soft\u{ad}hyphen",
            "nul\u{0}",
            "line\nbreak",
        ] {
            assert!(has_hidden_or_control(text), "{text:?}");
        }
    }

    #[test]
    fn ordinary_text_in_any_script_is_kept() {
        for text in [
            "Ada Lovelace",
            "100 积分",
            "Créditos (BR)",
            "مرحبا",
            "😀 emoji",
            "Straße",
        ] {
            assert!(!has_hidden_or_control(text), "{text:?}");
        }
    }
}

//! Localized text: one text for every reader, or one per locale with English as the fallback.

use std::collections::BTreeMap;

use super::DomainError;

/// The most locales one text may have.
pub const LOCALES_MAX: usize = 32;

/// The longest text of one locale, in characters.
pub const TEXT_LEN_MAX: usize = 1024;

/// The locale picked when the reader's own is missing.
pub const FALLBACK_LOCALE: &str = "en";

/// A name or a description shown to customers: either one text, or texts by
/// locale such as `{"en": "100 Credits", "zh": "100 积分"}`.
///
/// Always valid: at least one text, each non-empty, at most
/// [`TEXT_LEN_MAX`] characters and free of control characters, under at most
/// [`LOCALES_MAX`] distinct locale tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalizedText(Texts);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Texts {
    One(String),
    ByLocale(BTreeMap<String, String>),
}

impl LocalizedText {
    /// One text for every locale.
    pub fn one(text: impl Into<String>) -> Result<LocalizedText, DomainError> {
        let text = text.into();
        check_text(&text)?;
        Ok(LocalizedText(Texts::One(text)))
    }

    /// Texts by locale tag. Refuses an empty map, more than [`LOCALES_MAX`]
    /// locales, a malformed tag (see [`is_locale`]), two tags that differ
    /// only in case, and any text that [`one`](LocalizedText::one) refuses.
    pub fn by_locale(texts: BTreeMap<String, String>) -> Result<LocalizedText, DomainError> {
        if texts.is_empty() {
            return Err(DomainError::InvalidText(
                "localized text needs at least one locale",
            ));
        }
        if texts.len() > LOCALES_MAX {
            return Err(DomainError::InvalidText(
                "localized text has at most 32 locales",
            ));
        }
        for (i, (locale, text)) in texts.iter().enumerate() {
            if !is_locale(locale) {
                return Err(DomainError::InvalidLocale(
                    "a locale is 2 or 3 lowercase letters, optionally followed by - and 2 to 8 \
                     letters or digits, such as en, zh or pt-BR",
                ));
            }
            // A reader's locale is matched ignoring case, so `pt-BR` and
            // `pt-br` would make the pick depend on sort order. At most
            // LOCALES_MAX tags make comparing every pair cheap.
            if texts
                .keys()
                .skip(i + 1)
                .any(|other| other.eq_ignore_ascii_case(locale))
            {
                return Err(DomainError::InvalidLocale(
                    "two locales differ only in case",
                ));
            }
            check_text(text)?;
        }
        Ok(LocalizedText(Texts::ByLocale(texts)))
    }

    /// The text when there is one for every locale, else `None`.
    pub fn as_one(&self) -> Option<&str> {
        match &self.0 {
            Texts::One(text) => Some(text),
            Texts::ByLocale(_) => None,
        }
    }

    /// The texts by locale when there are several, else `None`.
    pub fn by_locale_map(&self) -> Option<&BTreeMap<String, String>> {
        match &self.0 {
            Texts::One(_) => None,
            Texts::ByLocale(texts) => Some(texts),
        }
    }

    /// The text to show a reader who asked for `locale`.
    ///
    /// Picks, in order: the locale asked for, ignoring case; else the first
    /// locale of the same language in tag order (for `pt-PT`, `pt` before
    /// `pt-BR`); else `en`; else the first locale in tag order. A single text
    /// is shown whatever the locale.
    pub fn pick(&self, locale: Option<&str>) -> &str {
        let texts = match &self.0 {
            Texts::One(text) => return text,
            Texts::ByLocale(texts) => texts,
        };
        let find = |wanted: &dyn Fn(&str) -> bool| {
            texts
                .iter()
                .find(|(tag, _)| wanted(tag))
                .map(|(_, text)| text.as_str())
        };
        let asked = locale.and_then(|asked| {
            find(&|tag| tag.eq_ignore_ascii_case(asked)).or_else(|| {
                let language = language_of(asked);
                find(&|tag| language_of(tag).eq_ignore_ascii_case(language))
            })
        });
        asked
            .or_else(|| texts.get(FALLBACK_LOCALE).map(String::as_str))
            .or_else(|| texts.values().next().map(String::as_str))
            .expect("localized text has at least one locale")
    }
}

/// True for a locale tag: 2 or 3 lowercase ASCII letters (a language), then
/// optionally `-` and 2 to 8 ASCII letters or digits (a region or script):
/// `en`, `zh`, `pt-BR`, `es-419`, `zh-Hant`.
pub fn is_locale(tag: &str) -> bool {
    let (language, rest) = match tag.split_once('-') {
        Some((language, rest)) => (language, Some(rest)),
        None => (tag, None),
    };
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && rest.is_none_or(|rest| {
            (2..=8).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The locale an `Accept-Language` header prefers: of the tags it lists
/// that are locales (see [`is_locale`]; the language's case ignored), the
/// one of highest weight, the first of equal ones. `None` when it lists
/// none, or only with `q=0`.
///
/// `zh-CN,zh;q=0.9,en;q=0.8` prefers `zh-CN`; `*` and malformed entries are
/// skipped; weights are read as thousandths, so no float is involved.
pub fn preferred_locale(header: &str) -> Option<String> {
    let mut best: Option<(u16, String)> = None;
    for entry in header.split(',').take(ACCEPT_LANGUAGE_ENTRIES_MAX) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let (language, rest) = match tag.split_once('-') {
            Some((language, rest)) => (language, Some(rest)),
            None => (tag, None),
        };
        let tag = match rest {
            Some(rest) => format!("{}-{rest}", language.to_ascii_lowercase()),
            None => language.to_ascii_lowercase(),
        };
        if !is_locale(&tag) {
            continue;
        }
        let mut weight = Some(1000);
        for parameter in parts {
            if let Some(q) = parameter.trim().strip_prefix("q=") {
                weight = quality(q);
            }
        }
        let Some(weight) = weight.filter(|w| *w > 0) else {
            continue;
        };
        if best.as_ref().is_none_or(|(top, _)| weight > *top) {
            best = Some((weight, tag));
        }
    }
    best.map(|(_, tag)| tag)
}

/// The most entries of an `Accept-Language` header looked at.
const ACCEPT_LANGUAGE_ENTRIES_MAX: usize = 32;

/// A weight of `Accept-Language` (`1`, `0.8`, `0.125`) in thousandths.
fn quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The locales Stripe's hosted Checkout page is shown in (its `locale`
/// parameter), besides `auto`.
const CHECKOUT_LOCALES: [&str; 40] = [
    "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr", "fr-CA",
    "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "pt-BR",
    "ro", "ru", "sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW",
];

/// The hosted checkout page's locale for a reader's `locale`: the same
/// tag when the page speaks it (ignoring case), else its language when the
/// page speaks that, else `None` (the page then picks by the browser).
pub fn checkout_locale(locale: &str) -> Option<&'static str> {
    CHECKOUT_LOCALES
        .iter()
        .find(|tag| tag.eq_ignore_ascii_case(locale))
        .or_else(|| {
            let language = language_of(locale);
            CHECKOUT_LOCALES
                .iter()
                .find(|tag| tag.eq_ignore_ascii_case(language))
        })
        .copied()
}

/// The language part of a tag: what comes before the first `-`.
fn language_of(tag: &str) -> &str {
    tag.split('-').next().unwrap_or(tag)
}

fn check_text(text: &str) -> Result<(), DomainError> {
    if text.is_empty() {
        return Err(DomainError::InvalidText("a text must not be empty"));
    }
    if text.chars().count() > TEXT_LEN_MAX {
        return Err(DomainError::InvalidText(
            "a text is at most 1024 characters",
        ));
    }
    if ledger::has_hidden_or_control(text) {
        return Err(DomainError::InvalidText(
            "a text must not contain control characters, bidirectional controls or zero-width \
             characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_locale(pairs: &[(&str, &str)]) -> Result<LocalizedText, DomainError> {
        LocalizedText::by_locale(
            pairs
                .iter()
                .map(|(locale, text)| (locale.to_string(), text.to_string()))
                .collect(),
        )
    }

    fn code<T>(result: Result<T, DomainError>) -> Option<&'static str> {
        result.err().map(|e| e.code())
    }

    #[test]
    fn the_readers_locale_is_picked_and_english_when_it_is_missing() {
        let name = by_locale(&[("en", "100 Credits"), ("zh", "100 积分")]).unwrap();
        assert_eq!(name.pick(Some("zh")), "100 积分");
        assert_eq!(name.pick(Some("en")), "100 Credits");
        assert_eq!(name.pick(Some("fr")), "100 Credits");
        assert_eq!(name.pick(None), "100 Credits");
        assert_eq!(name.pick(Some("")), "100 Credits");
    }

    #[test]
    fn without_english_the_first_locale_in_tag_order_is_picked() {
        let name = by_locale(&[("zh", "积分"), ("de", "Guthaben")]).unwrap();
        assert_eq!(name.pick(Some("fr")), "Guthaben");
        assert_eq!(name.pick(None), "Guthaben");
    }

    #[test]
    fn a_locale_is_matched_ignoring_case_and_then_by_its_language() {
        let name = by_locale(&[
            ("en", "Credits"),
            ("pt-BR", "Créditos (BR)"),
            ("zh", "积分"),
        ])
        .unwrap();
        assert_eq!(name.pick(Some("pt-br")), "Créditos (BR)");
        assert_eq!(name.pick(Some("pt-PT")), "Créditos (BR)");
        assert_eq!(name.pick(Some("pt")), "Créditos (BR)");
        assert_eq!(name.pick(Some("zh-TW")), "积分");
        assert_eq!(name.pick(Some("ZH")), "积分");
        let both = by_locale(&[("pt", "Créditos"), ("pt-BR", "Créditos (BR)")]).unwrap();
        assert_eq!(both.pick(Some("pt-PT")), "Créditos");
        assert_eq!(both.pick(Some("pt-br")), "Créditos (BR)");
    }

    #[test]
    fn one_text_is_shown_to_every_reader() {
        let name = LocalizedText::one("100 Credits").unwrap();
        assert_eq!(name.pick(Some("zh")), "100 Credits");
        assert_eq!(name.pick(None), "100 Credits");
        assert_eq!(name.as_one(), Some("100 Credits"));
        assert_eq!(name.by_locale_map(), None);
    }

    #[test]
    fn locale_tags_are_a_lowercase_language_and_an_optional_region_or_script() {
        for tag in [
            "en",
            "zh",
            "fil",
            "pt-BR",
            "es-419",
            "zh-Hant",
            "en-abcdefgh",
        ] {
            assert!(is_locale(tag), "{tag:?}");
        }
        for tag in [
            "",
            "e",
            "engl",
            "EN",
            "En",
            "en_US",
            "en-",
            "en-x",
            "en-abcdefghi",
            "en-US-x",
            "-US",
            "en-U$",
            "zh-汉字",
            " en",
            "en ",
        ] {
            assert!(!is_locale(tag), "{tag:?}");
            assert_eq!(
                code(by_locale(&[(tag, "text")])),
                Some("invalid_locale"),
                "{tag:?}"
            );
        }
    }

    #[test]
    fn two_locales_that_differ_only_in_case_are_refused() {
        assert_eq!(
            code(by_locale(&[("pt-BR", "a"), ("pt-br", "b")])),
            Some("invalid_locale")
        );
        assert_eq!(
            code(by_locale(&[("pt-BR", "a"), ("pt-Br", "b"), ("en", "c")])),
            Some("invalid_locale")
        );
    }

    #[test]
    fn empty_long_or_control_character_texts_are_refused() {
        let longest = "积".repeat(TEXT_LEN_MAX - 1) + "a";
        assert_eq!(longest.chars().count(), TEXT_LEN_MAX);
        assert!(LocalizedText::one(longest.clone()).is_ok());
        for text in [
            String::new(),
            longest + "a",
            "two\nlines".to_owned(),
            "tab\t".to_owned(),
            "bell\u{7}".to_owned(),
            "del\u{7f}".to_owned(),
            "c1\u{85}".to_owned(),
            "rtl \u{202e} gnp.exe".to_owned(),
            "zero\u{200b}width".to_owned(),
        ] {
            assert_eq!(code(LocalizedText::one(text.clone())), Some("invalid_text"));
            assert_eq!(code(by_locale(&[("en", &text)])), Some("invalid_text"));
        }
    }

    #[test]
    fn localized_text_has_one_to_thirty_two_locales() {
        assert_eq!(code(by_locale(&[])), Some("invalid_text"));
        let tags: Vec<String> = (0..=LOCALES_MAX)
            .map(|i| {
                let letter = |n: usize| char::from(b'a' + (n % 26) as u8);
                format!("{}{}", letter(i / 26), letter(i))
            })
            .collect();
        let texts = |n: usize| -> BTreeMap<String, String> {
            tags[..n]
                .iter()
                .map(|tag| (tag.clone(), "text".to_owned()))
                .collect()
        };
        assert!(LocalizedText::by_locale(texts(LOCALES_MAX)).is_ok());
        assert_eq!(
            code(LocalizedText::by_locale(texts(LOCALES_MAX + 1))),
            Some("invalid_text")
        );
    }

    #[test]
    fn accept_language_prefers_its_heaviest_locale() {
        assert_eq!(
            preferred_locale("zh-CN,zh;q=0.9,en;q=0.8").as_deref(),
            Some("zh-CN")
        );
        assert_eq!(
            preferred_locale("en;q=0.5, de;q=0.7, fr;q=0.7").as_deref(),
            Some("de")
        );
        assert_eq!(preferred_locale("ZH").as_deref(), Some("zh"));
        assert_eq!(preferred_locale("*, pt-BR;q=0.1").as_deref(), Some("pt-BR"));
        assert_eq!(preferred_locale("en;q=0, *").as_deref(), None);
        assert_eq!(preferred_locale("").as_deref(), None);
        assert_eq!(preferred_locale("en_US, x").as_deref(), None);
        // A malformed weight makes its entry unusable, not the header.
        assert_eq!(preferred_locale("ja;q=2, ko;q=0.3").as_deref(), Some("ko"));
        assert_eq!(
            preferred_locale("ja;q=0.1234, ko;q=0.001").as_deref(),
            Some("ko")
        );
    }

    #[test]
    fn the_checkout_page_speaks_the_locale_or_its_language() {
        assert_eq!(checkout_locale("zh"), Some("zh"));
        assert_eq!(checkout_locale("zh-tw"), Some("zh-TW"));
        assert_eq!(checkout_locale("zh-CN"), Some("zh"));
        assert_eq!(checkout_locale("pt-PT"), Some("pt"));
        assert_eq!(checkout_locale("xx"), None);
    }

    fn tags() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{2,3}",
            "[a-z]{2,3}-[A-Z]{2}",
            "(en|zh|pt)(-(BR|TW|PT))?",
        ]
    }

    proptest! {
        #[test]
        fn the_pick_is_always_one_of_the_texts_and_the_asked_locale_when_present(
            texts in prop::collection::btree_map(tags(), "[a-zA-Z0-9 ]{1,12}", 1..8),
            asked in prop::option::of(tags()),
        ) {
            // Random tags may clash in case; those are refused, not picked from.
            let Ok(localized) = LocalizedText::by_locale(texts.clone()) else {
                return Ok(());
            };
            let picked = localized.pick(asked.as_deref());
            prop_assert!(texts.values().any(|text| text == picked));
            if let Some(text) = asked.as_ref().and_then(|asked| texts.get(asked)) {
                prop_assert_eq!(picked, text.as_str());
            }
            let speaks_language = |language: &str| {
                texts.keys().any(|tag| language_of(tag).eq_ignore_ascii_case(language))
            };
            if let Some(english) = texts.get(FALLBACK_LOCALE)
                && !asked.as_deref().is_some_and(|asked| speaks_language(language_of(asked)))
            {
                prop_assert_eq!(picked, english.as_str());
            }
        }
    }
}

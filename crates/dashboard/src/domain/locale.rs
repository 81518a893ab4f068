//! The languages the pages speak, and which one a visitor gets.

/// A language every text of the pages is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locale {
    /// English, the default.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Locale {
    /// Every language, in a fixed order.
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Zh];

    /// The language's tag, as `lang` and the API's `locale` take it.
    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Zh => "zh",
        }
    }

    /// The language a tag names (`zh`, `zh-CN`, `en-GB`), by its primary
    /// subtag; none for a language the pages are not written in.
    pub fn of_tag(tag: &str) -> Option<Locale> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Locale::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// The language a visitor gets: the one the session was opened in when
    /// the pages speak it, else the first of the browser's
    /// `Accept-Language` they speak (by weight), else English.
    pub fn choose(session: Option<&str>, accept_language: Option<&str>) -> Locale {
        session
            .and_then(Locale::of_tag)
            .or_else(|| accept_language.and_then(Locale::preferred))
            .unwrap_or(Locale::En)
    }

    /// The first language of an `Accept-Language` header the pages speak,
    /// highest weight first, the header's order among equal weights.
    fn preferred(header: &str) -> Option<Locale> {
        let mut offered: Vec<(u16, usize, Locale)> = header
            .split(',')
            .enumerate()
            .filter_map(|(at, part)| {
                let mut pieces = part.split(';');
                let locale = Locale::of_tag(pieces.next()?)?;
                let weight = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1000), weight_of)?;
                (weight > 0).then_some((weight, at, locale))
            })
            .collect();
        offered.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        offered.first().map(|(_, _, locale)| *locale)
    }
}

/// A `q=` weight in thousandths (`0.8` → 800), none when malformed.
fn weight_of(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = whole.parse().ok().filter(|w| *w <= 1)?;
    let fraction: u16 = format!("{fraction:0<3}").parse().ok()?;
    let weight = whole * 1000 + fraction;
    (weight <= 1000).then_some(weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_locale_wins_over_the_browser() {
        assert_eq!(Locale::choose(Some("zh"), Some("en-US,en")), Locale::Zh);
    }

    #[test]
    fn a_session_locale_the_pages_do_not_speak_falls_back_to_the_browser() {
        assert_eq!(
            Locale::choose(Some("fr"), Some("zh-CN,zh;q=0.9")),
            Locale::Zh
        );
    }

    #[test]
    fn the_browser_language_with_the_highest_weight_is_taken() {
        assert_eq!(
            Locale::choose(None, Some("fr;q=1, en;q=0.5, zh-TW;q=0.8")),
            Locale::Zh
        );
        assert_eq!(Locale::choose(None, Some("zh;q=0.5, en")), Locale::En);
    }

    #[test]
    fn a_language_weighted_zero_is_refused_by_the_browser() {
        assert_eq!(Locale::choose(None, Some("zh;q=0, de")), Locale::En);
    }

    #[test]
    fn nothing_known_means_english() {
        assert_eq!(Locale::choose(None, None), Locale::En);
        assert_eq!(Locale::choose(None, Some("de-DE,fr;q=0.4")), Locale::En);
        assert_eq!(Locale::choose(None, Some("zh;q=banana")), Locale::En);
    }
}

//! Where a checkout may send the customer back to: under the public URL, or on an origin the
//! operator listed.

use url::Url;

/// The longest return URL accepted, in bytes.
pub const RETURN_URL_LEN_MAX: usize = 2048;

/// Why a return URL is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnRefused {
    /// Not an absolute `http` or `https` URL of at most
    /// [`RETURN_URL_LEN_MAX`] bytes without credentials or a fragment.
    Malformed,
    /// Neither under the public URL nor on a listed origin.
    NotAllowed,
}

/// The origin of an absolute `http(s)` URL, as browsers write it
/// (`https://app.example.com`, `http://localhost:3000`); `None` for anything
/// else.
pub fn origin_of(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// True for an origin as an operator lists it: `scheme://host[:port]`, with
/// nothing after it but an optional `/`.
pub fn is_origin(text: &str) -> bool {
    origin_of(text).is_some_and(|origin| origin == text.trim_end_matches('/'))
}

/// Checks a return URL a checkout request names: it must be under `public`
/// (the same origin, and a path at or below the public URL's), or on one
/// of `origins`.
pub fn check_return_url(text: &str, public: &str, origins: &[String]) -> Result<(), ReturnRefused> {
    if text.len() > RETURN_URL_LEN_MAX || text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ReturnRefused::Malformed);
    }
    let url = Url::parse(text).map_err(|_| ReturnRefused::Malformed)?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(ReturnRefused::Malformed);
    }
    let origin = url.origin().ascii_serialization();
    if origins
        .iter()
        .any(|listed| listed.trim_end_matches('/') == origin)
    {
        return Ok(());
    }
    let Ok(public) = Url::parse(public) else {
        return Err(ReturnRefused::NotAllowed);
    };
    if public.origin().ascii_serialization() != origin {
        return Err(ReturnRefused::NotAllowed);
    }
    // `https://app.example.com/billing` allows `/billing` and `/billing/…`,
    // not `/billing-evil`.
    let base = public.path().trim_end_matches('/');
    let path = url.path();
    let under = base.is_empty()
        || path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'));
    if under {
        Ok(())
    } else {
        Err(ReturnRefused::NotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = "https://app.example.com";

    #[test]
    fn a_url_under_the_public_url_is_allowed() {
        for url in [
            "https://app.example.com/credits?session_id={CHECKOUT_SESSION_ID}",
            "https://app.example.com",
            "https://APP.example.com:443/x",
        ] {
            assert_eq!(check_return_url(url, PUBLIC, &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn a_public_url_with_a_path_allows_only_what_is_below_it() {
        let public = "https://example.com/app/";
        assert_eq!(
            check_return_url("https://example.com/app/credits", public, &[]),
            Ok(())
        );
        assert_eq!(
            check_return_url("https://example.com/app", public, &[]),
            Ok(())
        );
        for url in [
            "https://example.com/app-evil",
            "https://example.com/",
            "https://example.com/other",
        ] {
            assert_eq!(
                check_return_url(url, public, &[]),
                Err(ReturnRefused::NotAllowed),
                "{url}"
            );
        }
    }

    #[test]
    fn another_origin_is_allowed_only_when_listed() {
        let listed = vec![
            "https://shop.example.org".to_owned(),
            "http://localhost:3000/".to_owned(),
        ];
        assert_eq!(
            check_return_url("https://shop.example.org/done", PUBLIC, &listed),
            Ok(())
        );
        assert_eq!(
            check_return_url("http://localhost:3000/credits", PUBLIC, &listed),
            Ok(())
        );
        for url in [
            "https://evil.example.net/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "http://localhost:3001/",
            "https://shop.example.org.evil.net/",
        ] {
            assert_eq!(
                check_return_url(url, PUBLIC, &listed),
                Err(ReturnRefused::NotAllowed),
                "{url}"
            );
        }
    }

    #[test]
    fn credentials_fragments_and_other_schemes_are_malformed() {
        for url in [
            "https://app.example.com@evil.net/",
            "https://user:pw@app.example.com/",
            "https://app.example.com/#x",
            "javascript:alert(1)",
            "/relative",
            "ftp://app.example.com/",
            "https://app.example.com/a b",
            "",
        ] {
            assert_eq!(
                check_return_url(url, PUBLIC, &[]),
                Err(ReturnRefused::Malformed),
                "{url}"
            );
        }
        let long = format!("{PUBLIC}/{}", "a".repeat(RETURN_URL_LEN_MAX));
        assert_eq!(
            check_return_url(&long, PUBLIC, &[]),
            Err(ReturnRefused::Malformed)
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert!(is_origin("https://app.example.com"));
        assert!(is_origin("http://localhost:3000/"));
        assert!(!is_origin("https://app.example.com/path"));
        assert!(!is_origin("app.example.com"));
        assert!(!is_origin("https://app.example.com:443"));
        assert_eq!(
            origin_of("https://App.Example.com:443/x").as_deref(),
            Some("https://app.example.com")
        );
    }
}

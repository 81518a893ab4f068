//! The edge: request bodies, path ids, query strings and idempotency keys,
//! parsed into ledger types or refused with a clear error.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use ledger::{AccountId, Amount, AmountError, Metadata, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use store::{IdempotencyKey, Store};

use crate::error::ApiError;

/// The largest request body accepted.
pub const BODY_LEN_MAX: usize = 64 * 1024;
/// The longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

/// A write request: its JSON body and its idempotency key, if it sent one.
pub struct Write {
    /// The raw body; empty when none was sent.
    pub body: Bytes,
    /// The key, scoped and fingerprinted with the request.
    pub idempotency: Option<IdempotencyKey>,
}

impl<S: Send + Sync> FromRequest<S> for Write {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let method = request.method().clone();
        let target = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |pq| pq.as_str().to_owned(),
        );
        let key = idempotency_header(request.headers())?;
        // Keys are kept per API key, so that two keys never share one.
        let scope = request
            .extensions()
            .get::<crate::Principal>()
            .map_or_else(|| "anonymous".into(), |p| p.key_id.clone());
        let headers = request.headers().clone();
        let body = read_body(request, state).await?;
        check_content_type(&headers, &body)?;
        let idempotency = key.map(|key| {
            let mut digest = Sha256::new();
            digest.update(method.as_str());
            digest.update([0]);
            digest.update(target.as_bytes());
            digest.update([0]);
            digest.update(&body);
            IdempotencyKey {
                key: format!("{scope}:{key}"),
                fingerprint: digest.finalize().to_vec(),
                render: crate::render::outcome,
            }
        });
        Ok(Write { body, idempotency })
    }
}

/// The body of a request that changes nothing, read as a write's is but
/// without an idempotency key: there is nothing to replay.
pub struct ReadBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ReadBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let body = read_body(request, state).await?;
        check_content_type(&headers, &body)?;
        Ok(ReadBody(body))
    }
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit_bytes: BODY_LEN_MAX,
                }
            } else {
                ApiError::InvalidRequest(format!("could not read the body: {rejection}"))
            }
        })
}

/// The one rule of every JSON route: a body is sent as `application/json`,
/// with `charset=utf-8` or no charset; anything else, or a body without a
/// content type, is 415. A request without a body needs none.
pub fn check_content_type(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(ApiError::UnsupportedMediaType)
        };
    };
    if is_json_content_type(value.to_str().unwrap_or("")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// `application/json`, optionally with `charset=utf-8` (any case, quoted
/// or not) and no other parameter.
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return parameter.trim().is_empty();
        };
        name.trim().eq_ignore_ascii_case("charset")
            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

/// Headers a request may send at most once: with two, which one counts
/// would be a guess.
const SINGLE_HEADERS: [header::HeaderName; 4] = [
    header::HeaderName::from_static("idempotency-key"),
    header::AUTHORIZATION,
    header::HeaderName::from_static("x-api-key"),
    header::CONTENT_TYPE,
];

/// Refuses a request that repeats a header it may send only once, or names
/// two different keys, one in `Authorization` and one in `x-api-key`.
pub async fn refuse_repeated_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let headers = request.headers();
    for name in &SINGLE_HEADERS {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(ApiError::InvalidRequest(format!(
                "send the {name} header at most once"
            )));
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().as_bytes());
    let api_key = headers.get("x-api-key").map(|v| v.as_bytes());
    if let (Some(bearer), Some(api_key)) = (bearer, api_key)
        && bearer != api_key
    {
        return Err(ApiError::InvalidRequest(
            "send one API key: Authorization and x-api-key name different keys".into(),
        ));
    }
    Ok(next.run(request).await)
}

/// The request's `Idempotency-Key`: 1 to 255 printable ASCII characters,
/// or 400.
pub fn idempotency_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidRequest(format!(
            "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"
        ))
    };
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_LEN_MAX
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// Parses a JSON body into `T`, telling malformed JSON apart from JSON of the wrong shape.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    read_json(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            // A wrong type may be found before the end of text that is not
            // JSON at all (`[` where an object belongs): that is malformed.
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::InvalidRequest(plain_message(&e)),
                Err(syntax) => {
                    ApiError::MalformedJson(format!("the body is not valid JSON: {syntax}"))
                }
            }
        }
        _ => ApiError::MalformedJson(format!("the body is not valid JSON: {e}")),
    })
}

/// Reads JSON into `T` as `serde_json::from_slice` does, except that
/// structs are read from JSON objects only, at any depth
/// ([`Objects`](crate::json_objects::Objects)).
pub fn read_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = T::deserialize(crate::json_objects::Objects(&mut de))?;
    de.end()?;
    Ok(value)
}

/// A serde message in the API's words: serde names the Rust type it
/// expected ("expected struct UsageBody"), which means nothing to a client.
fn plain_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find("expected struct ") {
        Some(at) => {
            let rest = &text[at + "expected struct ".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            format!("{}expected a JSON object{}", &text[..at], &rest[end..])
        }
        None => text,
    }
}

/// Deserializes a whole number however JSON writes it: `8` or `8.0` (JSON
/// has one number type, and JSON Schema calls both integers); a fraction or
/// a value out of `T`'s range is refused.
pub fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    whole_of(&number)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {number}")))
}

/// Like [`whole`], for an optional field (absent or null is `None`).
pub fn whole_opt<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(number) => whole_of(&number)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("expected a whole number, got {number}"))
            }),
    }
}

/// A JSON number's value when it is whole: `8` and `8.0` alike.
pub fn whole_of(number: &serde_json::Number) -> Option<i64> {
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let float = number.as_f64()?;
    // Within ±2^53 every whole f64 is exact, and so is the cast.
    (float.fract() == 0.0 && float.abs() <= 9_007_199_254_740_992.0).then_some(float as i64)
}

/// Reads a text field: at most `len_max` characters, no control characters (a
/// NUL would not even fit in PostgreSQL's text), and no invisible
/// formatting ones that would make a panel show it as something else.
pub fn text(value: String, field: &str, len_max: usize) -> Result<String, ApiError> {
    if value.chars().count() > len_max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} is longer than {len_max} characters"
        )));
    }
    if ledger::has_hidden_or_control(&value) {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must not contain control characters, bidirectional controls or zero-width \
             characters"
        )));
    }
    Ok(value)
}

/// Like [`parse_json`], but an empty body, or `null`, reads as `{}`.
pub fn parse_optional_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        parse_json(b"{}")
    } else {
        parse_json(body)
    }
}

/// Deserializes a field as its raw JSON text, so amounts never pass through a float.
pub fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    Option::<&'de RawValue>::deserialize(d)
}

/// Deserializes an optional raw field so that one sent as `null`
/// (`Some(None)`) is told from one not sent (`None`).
pub fn raw_or_null<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<&'de RawValue>>, D::Error> {
    let raw = <&'de RawValue>::deserialize(d)?;
    Ok(Some((raw.get().trim() != "null").then_some(raw)))
}

/// Deserializes an optional field so that one sent as `null`
/// (`Some(None)`) is told from one not sent (`None`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// What sign an amount must have where it appears.
#[derive(Clone, Copy)]
pub enum Sign {
    /// Above zero.
    Positive,
    /// Zero or above.
    NotNegative,
}

/// Reads an amount from a JSON string (`"12.5"`) or an exact JSON number (`12.5`).
pub fn amount(raw: &RawValue, field: &str, sign: Sign) -> Result<Amount, ApiError> {
    let text = raw.get();
    let parsed = if text.starts_with('"') {
        let unquoted: String = serde_json::from_str(text).map_err(|_| {
            ApiError::InvalidAmount(format!("{field} must be a decimal string or number"))
        })?;
        // As a string, money is written in plain decimal notation only.
        Amount::parse_decimal(&unquoted)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Amount::parse(text)
    } else {
        return Err(ApiError::InvalidAmount(format!(
            "{field} must be a decimal string or number"
        )));
    };
    let amount = parsed.map_err(|e| {
        ApiError::InvalidAmount(match e {
            AmountError::Syntax => format!("{field} must be a decimal such as \"12.5\""),
            AmountError::TooPrecise => format!("{field} has more than 6 fractional digits"),
            AmountError::TooLarge => format!("{field} is larger than 10^12 credits"),
        })
    })?;
    match sign {
        Sign::Positive if !amount.is_positive() => Err(ApiError::InvalidAmount(format!(
            "{field} must be greater than zero"
        ))),
        Sign::NotNegative if amount.is_negative() => Err(ApiError::InvalidAmount(format!(
            "{field} must not be negative"
        ))),
        _ => Ok(amount),
    }
}

/// Reads a required amount field.
pub fn required_amount(
    raw: Option<&RawValue>,
    field: &str,
    sign: Sign,
) -> Result<Amount, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::InvalidRequest(format!("missing field `{field}`")))?;
    amount(raw, field, sign)
}

/// How deeply metadata may nest objects and arrays: deep enough for any
/// real use, shallow enough for every common JSON parser.
pub const METADATA_DEPTH_MAX: usize = 16;

/// How deeply a JSON text nests objects and arrays.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Reads metadata: a JSON object of at most 4 KiB nesting at most 16
/// levels; absent or null is `{}`.
pub fn metadata(raw: Option<&RawValue>) -> Result<Metadata, ApiError> {
    let Some(raw) = raw else {
        return Ok(Metadata::empty());
    };
    let text = raw.get();
    if text == "null" {
        return Ok(Metadata::empty());
    }
    if !text.starts_with('{') {
        return Err(ApiError::InvalidMetadata(
            "metadata must be a JSON object".to_owned(),
        ));
    }
    if json_depth(text) > METADATA_DEPTH_MAX {
        return Err(ApiError::InvalidMetadata(format!(
            "metadata must nest at most {METADATA_DEPTH_MAX} levels of objects and arrays"
        )));
    }
    Metadata::from_json_object(text.to_owned()).ok_or_else(|| {
        ApiError::InvalidMetadata(format!(
            "metadata must be at most {} bytes of JSON",
            ledger::METADATA_LEN_MAX
        ))
    })
}

/// Reads an optional RFC 3339 instant.
pub fn timestamp(text: Option<&str>, field: &str) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        Timestamp::parse_rfc3339(t).map_err(|_| {
            ApiError::InvalidTimestamp(format!(
                "{field} must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z"
            ))
        })
    })
    .transpose()
}

/// Reads an account id.
pub fn account_id(text: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text).map_err(|_| {
        ApiError::InvalidId(
            "account ids are 1 to 128 characters of A-Za-z0-9_.:-, not only dots".to_owned(),
        )
    })
}

/// Whether `text` is `prefix` and then exactly `digits` lower-case hex
/// digits: the shape of the ids creditd makes for its records (`aud_…`,
/// `evt_…`, `we_…`).
pub fn is_hex_id(text: &str, prefix: &str, digits: usize) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == digits
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads an external id.
pub fn external_id(text: Option<String>) -> Result<Option<ledger::ExternalId>, ApiError> {
    text.map(|t| {
        ledger::ExternalId::parse(&t).map_err(|_| {
            ApiError::InvalidId(format!(
                "external_id must be 1 to {} printable ASCII characters without spaces",
                ledger::EXTERNAL_ID_LEN_MAX
            ))
        })
    })
    .transpose()
}

/// Reads a prefixed numeric id such as `lot_12`.
pub fn numbered_id<T>(
    text: &str,
    parse: fn(&str) -> Result<T, ledger::IdError>,
    what: &str,
) -> Result<T, ApiError> {
    parse(text).map_err(|_| ApiError::InvalidId(format!("{text:?} is not a {what} id")))
}

/// The one path parameter of a route, as text.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(text)| PathParam(text))
            .map_err(|e| ApiError::InvalidId(e.body_text()))
    }
}

/// The `{account_id}` of a route's path, read as an account id: 400
/// `invalid_id` when it is not one. Whether the account exists is left to
/// the handler, whose ledger write or record read answers that itself.
pub struct PathAccount(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for PathAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Read by name, as a route may have parameters after it.
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidId(e.body_text()))?;
        let text = params
            .get("account_id")
            .ok_or_else(|| ApiError::Internal("the route's path has no {account_id}".into()))?;
        account_id(text).map(PathAccount)
    }
}

/// The `{account_id}` of a route's path, naming an account that exists: 400
/// `invalid_id` when it is not an account id, 404 `account_not_found` when
/// no account has it.
pub struct ExistingAccount(pub AccountId);

impl<S: HasStore + Send + Sync> FromRequestParts<S> for ExistingAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathAccount(account) = PathAccount::from_request_parts(parts, state).await?;
        match state.store().account(account.clone()).await? {
            Some(_) => Ok(ExistingAccount(account)),
            None => Err(ApiError::Rejected(ledger::Reject::AccountNotFound)),
        }
    }
}

/// A route's state that reaches the store, for the extractors that read it
/// ([`ExistingAccount`]).
pub trait HasStore {
    /// The ledger's storage.
    fn store(&self) -> &dyn Store;
}

impl<T: HasStore> HasStore for Arc<T> {
    fn store(&self) -> &dyn Store {
        T::store(self)
    }
}

impl HasStore for crate::AppState {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// A query string parsed into `T`; unknown parameters are refused.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::InvalidRequest(format!("bad query string: {e}")))
    }
}

/// `?limit=&cursor=`, the query of a list of keys.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyPageQuery {
    /// The page size, a whole number from 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page, a key id; the keys after it
    /// follow.
    #[param(value_type = Option<crate::openapi::schema::KeyId>)]
    pub cursor: Option<String>,
}

/// Reads a cursor that a previous page returned.
pub fn cursor<T>(
    text: Option<&str>,
    parse: impl Fn(&str) -> Result<T, ledger::IdError>,
) -> Result<Option<T>, ApiError> {
    text.map(|c| {
        parse(c).map_err(|_| ApiError::InvalidRequest("cursor is not one this API returned".into()))
    })
    .transpose()
}

/// Reads the cursor of a list of records in id order: the id of the last
/// record of the previous page. An empty one is refused, not read as none.
pub fn id_cursor(text: Option<String>) -> Result<Option<store::records::RecordCursor>, ApiError> {
    match text {
        Some(c) if c.is_empty() => Err(ApiError::InvalidRequest(
            "cursor is empty; leave it out for the first page".into(),
        )),
        Some(c) => Ok(Some(store::records::RecordCursor {
            key: c.clone(),
            id: c,
        })),
        None => Ok(None),
    }
}

/// The page size from `?limit=`: 1 to 100, 20 when absent.
pub fn limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else { return Ok(20) };
    match text.parse::<usize>() {
        Ok(n) if (1..=store::PAGE_LIMIT_MAX).contains(&n) => Ok(n),
        _ => Err(ApiError::InvalidRequest(format!(
            "limit must be a whole number from 1 to {}",
            store::PAGE_LIMIT_MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn amounts_come_from_strings_or_exact_numbers() {
        assert_eq!(
            amount(raw("\"12.5\""), "a", Sign::Positive).unwrap(),
            Amount::from_micros(12_500_000)
        );
        assert_eq!(
            amount(raw("12.5"), "a", Sign::Positive).unwrap(),
            Amount::from_micros(12_500_000)
        );
        assert_eq!(
            amount(raw("0"), "a", Sign::NotNegative).unwrap(),
            Amount::ZERO
        );
    }

    #[test]
    fn bad_amounts_are_invalid_amount() {
        for (text, sign) in [
            ("\"-1\"", Sign::Positive),
            ("0", Sign::Positive),
            ("-0.5", Sign::NotNegative),
            ("\"1.0000001\"", Sign::Positive),
            ("1e13", Sign::Positive),
            ("true", Sign::Positive),
            ("null", Sign::Positive),
            ("{}", Sign::Positive),
            ("[1]", Sign::Positive),
            ("\"abc\"", Sign::Positive),
            ("\" 1\"", Sign::Positive),
        ] {
            assert!(
                matches!(
                    amount(raw(text), "a", sign),
                    Err(ApiError::InvalidAmount(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn metadata_must_be_a_small_object() {
        assert_eq!(metadata(None).unwrap(), Metadata::empty());
        assert_eq!(metadata(Some(raw("null"))).unwrap(), Metadata::empty());
        assert_eq!(
            metadata(Some(raw("{\"a\":1}"))).unwrap().as_str(),
            "{\"a\":1}"
        );
        assert!(matches!(
            metadata(Some(raw("[1]"))),
            Err(ApiError::InvalidMetadata(_))
        ));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
        assert!(matches!(
            metadata(Some(raw(&big))),
            Err(ApiError::InvalidMetadata(_))
        ));
    }

    #[test]
    fn an_amount_string_in_exponent_notation_is_refused() {
        for text in ["\"1e3\"", "\"1E3\"", "\"1.5e-2\""] {
            assert!(
                matches!(
                    amount(raw(text), "a", Sign::Positive),
                    Err(ApiError::InvalidAmount(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn metadata_nested_too_deeply_is_refused_but_brackets_in_strings_do_not_count() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(16), "]".repeat(16));
        assert!(matches!(
            metadata(Some(raw(&deep))),
            Err(ApiError::InvalidMetadata(_))
        ));
        let fine = format!("{{\"a\":{}1{}}}", "[".repeat(15), "]".repeat(15));
        assert!(metadata(Some(raw(&fine))).is_ok());
        let strings = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(40), "{".repeat(40));
        assert!(metadata(Some(raw(&strings))).is_ok(), "{strings}");
    }

    #[test]
    fn a_wrong_shape_is_described_without_rust_type_names() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct UsageBody {
            amount: String,
        }
        let Err(ApiError::InvalidRequest(message)) = parse_json::<UsageBody>(b"\"x\"") else {
            panic!("not refused");
        };
        assert!(!message.contains("UsageBody"), "{message}");
        assert!(message.contains("expected a JSON object"), "{message}");
    }

    #[test]
    fn text_with_a_control_character_is_refused() {
        assert!(text("Ada".into(), "name", 10).is_ok());
        assert!(text("A\0da".into(), "name", 10).is_err());
        assert!(text("x".repeat(11), "name", 10).is_err());
    }

    #[test]
    fn json_is_application_json_in_utf_8_or_nothing() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
        ] {
            assert!(is_json_content_type(good), "{good}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=utf-16",
            "application/json; charset=latin1",
            "application/merge-patch+json",
            "application/json; boundary=x",
            "",
        ] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
        let none = HeaderMap::new();
        assert!(check_content_type(&none, b"").is_ok());
        assert!(matches!(
            check_content_type(&none, b"{}"),
            Err(ApiError::UnsupportedMediaType)
        ));
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction() {
        #[derive(Debug, Deserialize)]
        struct Body {
            #[serde(deserialize_with = "whole")]
            n: u8,
            #[serde(default, deserialize_with = "whole_opt")]
            m: Option<i64>,
        }
        let read = |text: &str| serde_json::from_str::<Body>(text);
        assert_eq!(read(r#"{"n": 8}"#).unwrap().n, 8);
        assert_eq!(read(r#"{"n": 8.0, "m": 3.0}"#).unwrap().m, Some(3));
        assert_eq!(read(r#"{"n": 1, "m": null}"#).unwrap().m, None);
        for bad in [
            r#"{"n": 8.5}"#,
            r#"{"n": 256}"#,
            r#"{"n": -1}"#,
            r#"{"n": "8"}"#,
            r#"{"n": 1e300}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_one_to_a_hundred() {
        assert_eq!(limit(None).unwrap(), 20);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }

    /// Fuzzing of request decoding: any JSON text in an amount or metadata
    /// field, and any bytes as a body, are read or refused with a 4xx code,
    /// never panicked on. `PROPTEST_CASES=100000 cargo test -p server fuzz_`
    /// runs it longer.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn json_text() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_owned()),
                Just("true".to_owned()),
                "-?[0-9]{0,20}(\\.[0-9]{0,8})?([eE][-+]?[0-9]{1,3})?",
                "\"[-+0-9.eE a-z]{0,16}\"",
                "\"(\\\\u00[0-1][0-9a-f]|.){0,8}\"",
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    prop::collection::vec(("[a-z\\u{80}-\\u{2FF}]{0,6}", inner), 0..5).prop_map(
                        |kv| {
                            let fields: Vec<String> = kv
                                .into_iter()
                                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
                                .collect();
                            format!("{{{}}}", fields.join(","))
                        }
                    ),
                ]
            })
        }

        proptest! {
            #[test]
            fn fuzz_amounts_and_metadata_are_read_or_refused_with_a_4xx(text in json_text()) {
                let Ok(raw) = serde_json::from_str::<&RawValue>(&text) else {
                    return Ok(());
                };
                for sign in [Sign::Positive, Sign::NotNegative] {
                    match amount(raw, "amount", sign) {
                        Ok(a) => prop_assert!(a.micros() >= 0, "{text}"),
                        Err(e) => prop_assert!(e.status().is_client_error(), "{text}: {e:?}"),
                    }
                }
                if let Err(e) = metadata(Some(raw)) {
                    prop_assert!(e.status().is_client_error(), "{}: {:?}", text, e);
                }
            }

            #[test]
            fn fuzz_any_body_is_read_or_refused_with_a_4xx(body in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Err(e) = parse_optional_json::<serde_json::Value>(&body) {
                    prop_assert!(e.status().is_client_error(), "{:?}", e);
                }
            }
        }
    }
}

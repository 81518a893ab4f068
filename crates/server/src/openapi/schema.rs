//! The schemas of the API's plain values (amounts, instants, ids, codes) and
//! of its path and header parameters, written out where no Rust type of this
//! crate can derive them.

use std::borrow::Cow;

use axum::http::StatusCode;
use ledger::{Source, TxKind};
use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::ApiError;
use crate::extract::IDEMPOTENCY_KEY_LEN_MAX;
use crate::render::{Decimal, Instant, Meta, Page};

/// Declares types that stand for a schema in `#[schema(value_type = ...)]`
/// and `#[utoipa::path]` attributes; they have no values.
macro_rules! schemas {
    ($($(#[$doc:meta])* $name:ident => $schema:expr;)*) => {$(
        $(#[$doc])*
        pub enum $name {}

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    )*};
}

/// Text shown to people (names, labels, projects, reasons): no control
/// characters and no invisible formatting ones, as
/// `ledger::is_hidden_or_control` refuses them.
pub const SHOWN_TEXT_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\
    \\u0890\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\
    \\uFFF9-\\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\
    \u{E0001}\u{E0020}-\u{E007F}]*$";

/// A string of text shown to people, of `min` to `max` characters.
pub fn shown_text(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(SHOWN_TEXT_PATTERN))
}

/// An upstream's error body as the upstream wrote it, passed on by a model
/// call: an object with an `error`, whose shape is the provider's.
pub fn upstream_error_body() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            ObjectBuilder::new().description(Some(
                "The provider's error: OpenAI's `{\"message\", \"type\", \"param\", \
                 \"code\"}`, Anthropic's `{\"type\", \"message\"}` beside a top-level \
                 `\"type\": \"error\"`, or another compatible server's own.",
            )),
        )
        .required("error")
        .description(Some(
            "An upstream's refusal of a model call, passed on as the upstream wrote it: its \
             status and its body. creditd charged nothing for it.",
        ))
}

/// A string with a pattern, a description and one example.
fn text(pattern: &str, description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
}

/// A string that is one of `codes`.
fn codes<'a>(codes: impl IntoIterator<Item = &'a str>, description: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes))
        .description(Some(description))
}

/// Account and feature ids: 1 to 128 characters of `A-Za-z0-9_.:-`, not
/// only dots (a path segment of dots is resolved away by clients).
const NAME_ID_PATTERN: &str = "^(?!\\.+$)[A-Za-z0-9_.:-]{1,128}$";

/// A non-negative decimal amount as a string: plain decimal notation, no
/// leading zeros, at most six fractional digits that are not zero, at most
/// 10^12 (`-0` reads as zero).
const NON_NEGATIVE_DECIMAL: &str =
    "^(-?0(\\.0+)?|(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6}0*)?|1000000000000(\\.0+)?)$";

/// A positive decimal amount as a string, as [`NON_NEGATIVE_DECIMAL`] but
/// above zero.
const POSITIVE_DECIMAL: &str = "^([1-9][0-9]{0,11}(\\.[0-9]{1,6}0*)?\
    |0\\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}\
    |0000[1-9][0-9]?|00000[1-9])0*|1000000000000(\\.0+)?)$";

/// An amount in a request that is above zero, or zero or more.
fn amount_schema(positive: bool) -> OneOfBuilder {
    let (pattern, number, which) = if positive {
        (
            POSITIVE_DECIMAL,
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0)),
            "greater than zero",
        )
    } else {
        (
            NON_NEGATIVE_DECIMAL,
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0.0)),
            "zero or more",
        )
    };
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        )
        .item(number.maximum(Some(1e12)).multiple_of(Some(0.000001)))
        .description(Some(format!(
            "An amount of credits, {which}: a decimal string such as \"12.5\" (recommended) \
             or an exact JSON number such as 12.5 or 1e3. At most 6 fractional digits that are \
             not zero, at most 10^12 credits, no leading zeros; a string is plain decimal \
             notation, without exponent or whitespace. A bad value is `invalid_amount`."
        )))
        .examples(["12.5"])
}

schemas! {
    /// A display name or a label: at most 256 characters, none of them
    /// control or invisible formatting characters.
    Name => shown_text(0, 256).description(Some(
        "At most 256 characters, none of them a control character, a bidirectional control \
         or a zero-width character.",
    ));

    /// A name that may not be empty.
    RequiredName => shown_text(1, 256).description(Some(
        "1 to 256 characters, none of them a control character, a bidirectional control or a \
         zero-width character.",
    ));

    /// A customer key's project.
    Project => shown_text(1, 128).description(Some(
        "1 to 128 characters, none of them a control character, a bidirectional control or a \
         zero-width character.",
    ));

    /// A grant's reason.
    Reason => shown_text(0, 500).description(Some(
        "At most 500 characters, none of them a control character, a bidirectional control or \
         a zero-width character.",
    ));

    /// An amount in a request that must be above zero.
    PositiveAmount => amount_schema(true);

    /// An amount in a request that may be zero.
    NonNegativeAmount => amount_schema(false);

    /// An instant in a request.
    TimestampInput => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "An RFC 3339 instant, such as 2026-01-31T12:00:00Z or \
             2026-01-31T13:00:00.5+01:00: a `Z` or `±HH:MM` offset is required, fractions \
             beyond microseconds are truncated, leap seconds are refused. A bad value is \
             `invalid_timestamp`.",
        ))
        .examples(["2026-01-31T12:00:00Z"]);

    /// Metadata in a request.
    MetadataInput => AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Object))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(format!(
            "A free-form JSON object of at most {} bytes of JSON text, nesting objects and \
             arrays at most {} levels deep; absent or null stores `{{}}`. Anything else is \
             `invalid_metadata`.",
            ledger::METADATA_LEN_MAX,
            crate::extract::METADATA_DEPTH_MAX,
        )))
        .examples([json!({"request_id": "req_81f2"})]);

    /// An account id.
    AccountId => text(
        NAME_ID_PATTERN,
        "The operator's own id for a customer (a user or an organisation): 1 to 128 \
         characters of A-Za-z0-9 and `_ . : -`, not only dots.",
        "user_42",
    );

    /// A feature id.
    FeatureId => text(
        NAME_ID_PATTERN,
        "A feature id: 1 to 128 characters of A-Za-z0-9 and `_ . : -`, not only dots.",
        "small-model-tokens",
    );

    /// A lot's id, which is its grant's.
    GrantId => text(
        "^lot_[1-9][0-9]{0,17}$",
        "A lot id, `lot_` followed by a positive number; larger numbers are newer.",
        "lot_12",
    );

    /// A hold's id.
    HoldId => text(
        "^hold_[1-9][0-9]{0,17}$",
        "A hold id, `hold_` followed by a positive number.",
        "hold_7",
    );

    /// A transaction's id.
    TransactionId => text(
        "^tx_[1-9][0-9]{0,17}$",
        "A transaction id, `tx_` followed by a positive number; larger numbers are newer.",
        "tx_42",
    );

    /// An API key's id.
    KeyId => text(
        "^key_[0-9a-z_]+$",
        "An API key's id: `key_` followed by 16 hexadecimal digits for the keys this API \
         creates; the admin key generated at first start is `key_initial`.",
        "key_3f9a1c0d5e7b2a64",
    );

    /// An external id.
    ExternalId => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[!-~]+$"))
        .min_length(Some(1))
        .max_length(Some(ledger::EXTERNAL_ID_LEN_MAX))
        .description(Some(format!(
            "What caused a grant or a consume, in the caller's own terms (a payment's id, a \
             subscription period, a day): 1 to {} printable ASCII characters without spaces. \
             Unique per account and kept forever: a write that names an external id the \
             account already used answers what the first write did, marked \
             `Idempotent-Replayed: true`, when it asks for the same thing, and is 409 \
             `external_id_conflict` when it asks for something else. Anything else is \
             `invalid_id`.",
            ledger::EXTERNAL_ID_LEN_MAX,
        )))
        .examples(["pi_3PqX2L"]);

    /// An account in the double entry.
    LedgerAccount => text(
        "^(lot_[1-9][0-9]*|hold_[1-9][0-9]*|debt|issuance|usage|expiry|void)$",
        "A ledger account in the double entry. `lot_<n>` (a lot), `hold_<n>` (a hold's \
         escrow) and `debt` belong to the transaction's account; `issuance` (where granted \
         credits come from), `usage` (where spent credits go), `expiry` and `void` are \
         system-wide.",
        "lot_12",
    );

    /// Where a lot's credits came from.
    GrantSource => codes(
        Source::ALL.iter().map(|s| s.code()),
        "Where a lot's credits came from. `refund` is also the source of lots the server \
         creates when a refund returns credits whose debt was already repaid."
            .to_owned(),
    );

    /// A burn priority.
    Priority => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(ledger::PRIORITY_MAX))
        .description(Some(format!(
            "Burn priority from 0 to {}; lower numbers are spent first. Defaults by source: \
             {}.",
            ledger::PRIORITY_MAX,
            Source::ALL
                .iter()
                .map(|s| format!("{} {}", s.code(), s.default_priority()))
                .collect::<Vec<_>>()
                .join(", "),
        )));

    /// What a transaction did.
    TransactionType => codes(
        TxKind::ALL.iter().map(|k| k.code()),
        TxKind::ALL
            .iter()
            .map(|k| format!("`{}`: {}", k.code(), tx_kind(*k)))
            .collect::<Vec<_>>()
            .join(" "),
    );

    /// Where a hold stands.
    HoldStatus => codes(
        HOLD_STATUSES.iter().map(|s| s.code()),
        HOLD_STATUSES
            .iter()
            .map(|s| format!("`{}`: {}", s.code(), hold_status(*s)))
            .collect::<Vec<_>>()
            .join(" "),
    );

    /// An error code.
    ErrorCode => error_code(&[]);
}

/// Every status a hold can be in.
const HOLD_STATUSES: [ledger::HoldStatus; 4] = [
    ledger::HoldStatus::Pending,
    ledger::HoldStatus::Committed,
    ledger::HoldStatus::Released,
    ledger::HoldStatus::Expired,
];

fn tx_kind(kind: TxKind) -> &'static str {
    match kind {
        TxKind::Grant => "credits issued into a new lot.",
        TxKind::Consume => "credits spent directly.",
        TxKind::Hold => "credits moved from lots into a hold's escrow.",
        TxKind::HoldCommit => "a hold turned into usage.",
        TxKind::HoldRelease => "escrow returned to its lots, by release or on expiry.",
        TxKind::Expire => "a lot's remaining credits removed at its expiry.",
        TxKind::Void => "a lot's remaining credits removed by an operator.",
        TxKind::Refund => "usage handed back.",
        TxKind::DebtRepayment => "spendable credits used to pay off debt.",
        TxKind::Rollover => "what was left of a period's plan credits carried into a rollover lot.",
        TxKind::DebtSettlement => {
            "debt cleared to the receivable account, billed as an overage charge."
        }
        TxKind::ClawBack => {
            "credits of a refunded purchase taken back: from its lot, then other lots, the rest as debt."
        }
    }
}

fn hold_status(status: ledger::HoldStatus) -> &'static str {
    match status {
        ledger::HoldStatus::Pending => "reserving credits.",
        ledger::HoldStatus::Committed => "turned into usage.",
        ledger::HoldStatus::Released => "cancelled by the caller.",
        ledger::HoldStatus::Expired => "released by itself when its time-to-live ran out.",
    }
}

/// The schema of error codes: the core's, and those `extra` capabilities
/// answer with.
pub fn error_code(extra: &[(&'static str, StatusCode)]) -> ObjectBuilder {
    let all: Vec<(&'static str, StatusCode)> = ApiError::codes()
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    codes(all.iter().map(|(code, _)| *code), error_codes(&all))
}

/// The codes by status, as the description of [`ErrorCode`] lists them.
fn error_codes(all: &[(&'static str, StatusCode)]) -> String {
    let mut by_status: Vec<(StatusCode, Vec<&str>)> = Vec::new();
    for (code, status) in all.iter().copied() {
        match by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, codes)) => codes.push(code),
            None => by_status.push((status, vec![code])),
        }
    }
    by_status.sort_by_key(|(status, _)| *status);
    let lines: Vec<String> = by_status
        .into_iter()
        .map(|(status, codes)| format!("{}: {}.", status.as_u16(), codes.join(", ")))
        .collect();
    format!(
        "The stable, machine-readable code; never renamed. {}",
        lines.join(" ")
    )
}

impl PartialSchema for Decimal {
    fn schema() -> RefOr<Schema> {
        text(
            "^-?(0|[1-9][0-9]*)(\\.[0-9]{0,5}[1-9])?$",
            "A number of credits written as the shortest exact decimal string, such as \
             \"12.5\", \"-3\" or \"0.000001\". Amounts are exact to 6 fractional digits \
             (micro-credits) and never pass through floating point.",
            "12.5",
        )
        .into()
    }
}

impl ToSchema for Decimal {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Amount")
    }
}

impl PartialSchema for Instant {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "An instant in UTC as the server writes it: RFC 3339 with exactly six \
                 fractional digits.",
            ))
            .examples(["2026-01-31T12:00:00.000000Z"])
            .into()
    }
}

impl ToSchema for Instant {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl PartialSchema for Meta<'_> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The free-form JSON object the operator attached, returned as it was given; \
                 `{}` when none was given.",
            ))
            .into()
    }
}

impl ToSchema for Meta<'_> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Metadata")
    }
}

impl<T: ToSchema> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!("A page of `{}` items.", T::name())))
            .property(
                "data",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(T::name()))
                    .description(Some("The items, in the list's order.")),
            )
            .required("data")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "Set when the page is full (it holds `limit` items): pass it as \
                         `cursor` for the next page, which may be empty. Null otherwise.",
                    )),
            )
            .required("next_cursor")
            .into()
    }
}

impl<T: ToSchema> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}Page", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// A path parameter whose schema is a reference to `S`.
fn path_parameter<S: ToSchema>(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(Ref::from_schema_name(S::name())))
        .build()
}

/// Declares a type standing for one path parameter.
macro_rules! path_parameters {
    ($($(#[$doc:meta])* $name:ident($param:literal: $schema:ty, $description:literal);)*) => {$(
        $(#[$doc])*
        pub enum $name {}

        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![path_parameter::<$schema>($param, $description)]
            }
        }
    )*};
}

path_parameters! {
    /// `{account_id}`
    AccountPath("account_id": AccountId, "The account id.");
    /// `{grant_id}`
    GrantPath("grant_id": GrantId, "The grant's lot id, such as `lot_12`.");
    /// `{hold_id}`
    HoldPath("hold_id": HoldId, "The hold id, such as `hold_7`.");
    /// `{tx_id}`
    TxPath("tx_id": TransactionId, "The transaction id, such as `tx_42`.");
    /// `{feature_id}`
    FeaturePath("feature_id": FeatureId, "The feature id.");
    /// `{key_id}`
    KeyPath("key_id": KeyId, "The key's id, such as `key_3f9a1c0d5e7b2a64`.");
}

/// The `Idempotency-Key` header of a write.
pub enum IdempotencyKey {}

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let description = format!(
            "Makes a write safe to retry: 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII \
             characters (anything else is 400 `invalid_request`). A repeat with the same key \
             and the same request (method, path with query string, and byte-identical body) \
             does not run again: it returns the first answer's status and body, including \
             refusals such as 402 or 404 decided by the ledger, with the header \
             `Idempotent-Replayed: true`. The same key with a different request is 409 \
             `idempotency_conflict`. Requests refused before reaching the ledger (unreadable \
             or malformed bodies, most bad field values, 401, 403, 413, 415) and 500/503 \
             failures are not recorded, so they can be retried under the same key; refusals \
             decided by the ledger are recorded and replayed, a few 400s among them (for \
             example an `expires_at` already in the past). Keys are kept per API key and \
             shared by all routes, for at least 24 hours (48 hours by default)."
        );
        vec![idempotency_parameter(description)]
    }
}

/// The `Idempotency-Key` header described as `description` says a route
/// honours it.
pub fn idempotency_parameter(description: String) -> Parameter {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(IDEMPOTENCY_KEY_LEN_MAX))
        .pattern(Some("^[!-~]+$"));
    ParameterBuilder::new()
        .name(IDEMPOTENCY_KEY)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(json!("req-7f3a")))
        .build()
}

/// How a route that keeps its answers honours an `Idempotency-Key`.
pub fn kept_idempotency_description() -> String {
    format!(
        "Makes a write safe to retry: 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters \
         (anything else is 400 `invalid_request`). The first answer under a key, whatever its \
         status below 500, is kept; a repeat with the same key and the same request (method, \
         path with query string, and byte-identical body) does not run again: it returns that \
         answer's status and body with the header `Idempotent-Replayed: true`. The same key \
         with a different request is 409 `idempotency_conflict`; while the first request still \
         runs, 409 `idempotency_in_progress` (retry shortly). A 5xx is not kept, so the request \
         can be retried under the same key. Keys are kept per API key for at least 24 hours \
         (48 hours by default)."
    )
}

/// The name of the idempotency header, as the description writes it.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The schemas every description holds, whether or not a route's body
/// names them: path parameters and codes refer to them.
pub fn common() -> Vec<(String, RefOr<Schema>)> {
    fn entry<S: ToSchema>() -> (String, RefOr<Schema>) {
        (S::name().into_owned(), S::schema())
    }
    vec![
        entry::<AccountId>(),
        entry::<FeatureId>(),
        entry::<GrantId>(),
        entry::<HoldId>(),
        entry::<TransactionId>(),
        entry::<KeyId>(),
        entry::<Decimal>(),
        entry::<Instant>(),
        entry::<ErrorCode>(),
    ]
}

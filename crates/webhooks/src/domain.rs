//! The rules of outbound webhooks, pure: which events a journal entry gives rise to, how an
//! event is signed, when a failed delivery is tried again, when an endpoint is given up on, and
//! which URLs an endpoint may have. No IO and no clock: time is passed in.

use hmac::{Hmac, KeyInit, Mac};
use ledger::{Amount, Source, Timestamp, Transaction, TxKind};
use serde_json::json;
use server::events::{Attempt, Delivery, DeliveryStatus, EventType};
use sha2::Sha256;

/// How long a delivery is tried before it is given up, and an endpoint
/// failing every delivery before it is disabled: three days.
pub const GIVE_UP_AFTER_MICROS: i64 = 3 * 24 * 3600 * MICROS;

/// The wait before the first retry.
pub const RETRY_FIRST_SECS: i64 = 30;

/// The longest wait between two attempts.
pub const RETRY_MAX_SECS: i64 = 6 * 3600;

const MICROS: i64 = ledger::MICROS_PER_SECOND;

/// The longest URL an endpoint may have, in characters.
pub const URL_LEN_MAX: usize = 2048;

/// An event a journal entry gives rise to.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    /// Its type.
    pub event_type: EventType,
    /// What caused it, unique per type: the same entry read twice gives the
    /// same event.
    pub cause: String,
    /// Its figures (the account id is added when it is written).
    pub data: serde_json::Value,
    /// When it is due to be sent.
    pub deliver_at: Timestamp,
}

/// What is known of a journal entry beyond itself, read by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// The account's available balance before the entry.
    pub before: Amount,
    /// The account's low-balance threshold, if it has one.
    pub threshold: Option<Amount>,
    /// For a grant: when its lot expires.
    pub lot_expires_at: Option<Timestamp>,
    /// For a hold's release: whether it was released by its expiry.
    pub hold_expired: bool,
    /// How many days before an expiry `grant.expiring` is sent.
    pub expiring_days: u32,
}

/// The events `tx` gives rise to, in the order they are sent.
pub fn derive(tx: &Transaction, context: Context) -> Vec<Derived> {
    let mut out = Vec::new();
    let at = tx.created_at;
    let id = tx.id.0;
    let event = |event_type: EventType, data: serde_json::Value, deliver_at: Timestamp| Derived {
        event_type,
        cause: format!("tx/{id}"),
        data,
        deliver_at,
    };
    if tx.kind == TxKind::Grant {
        let source = tx.source.map(Source::code);
        let data = json!({
            "transaction_id": tx.id.to_string(),
            "grant_id": tx.lot.map(|l| l.to_string()),
            "amount": tx.amount.to_string(),
            "source": source,
            "available": tx.balance_after.to_string(),
            "expires_at": context.lot_expires_at.map(|t| t.to_string()),
        });
        out.push(event(EventType::CreditsGranted, data.clone(), at));
        if tx.source == Some(Source::AutoTopup) {
            out.push(event(EventType::TopupSucceeded, data.clone(), at));
        }
        if let Some(expires) = context.lot_expires_at {
            let warn_at = expires
                .checked_add_micros(-i64::from(context.expiring_days) * 86_400 * MICROS)
                .unwrap_or(expires);
            // A grant that expires sooner than the warning's lead is warned
            // of at once.
            out.push(event(EventType::GrantExpiring, data, warn_at.max(at)));
        }
    }
    if tx.kind == TxKind::HoldRelease && context.hold_expired {
        out.push(event(
            EventType::HoldExpired,
            json!({
                "transaction_id": tx.id.to_string(),
                "hold_id": tx.hold.map(|h| h.to_string()),
                "available": tx.balance_after.to_string(),
            }),
            at,
        ));
    }
    for crossed in crossings(context.before, tx.balance_after, context.threshold) {
        out.push(event(
            crossed,
            json!({
                "transaction_id": tx.id.to_string(),
                "available": tx.balance_after.to_string(),
                "threshold": match crossed {
                    EventType::BalanceLow => context.threshold.map(|t| t.to_string()),
                    _ => Some("0".to_owned()),
                },
            }),
            at,
        ));
    }
    out
}

/// The thresholds crossed downwards when the available balance moves from
/// `before` to `after`: `balance.low` when it falls from above the
/// threshold to it or below, `balance.depleted` when it falls from above
/// zero to zero or below. Once below, nothing more until it has been back
/// above.
pub fn crossings(before: Amount, after: Amount, threshold: Option<Amount>) -> Vec<EventType> {
    let mut crossed = Vec::new();
    if let Some(t) = threshold
        && t.is_positive()
        && before > t
        && after <= t
    {
        crossed.push(EventType::BalanceLow);
    }
    if before.is_positive() && !after.is_positive() {
        crossed.push(EventType::BalanceDepleted);
    }
    crossed
}

/// The `creditd-Signature` header of `body` sent at `t` (seconds): one
/// `v1` per secret in force, each the hex HMAC-SHA256 of `"{t}.{body}"`,
/// as Stripe signs its own events.
pub fn signature(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex(&mac(secret, t, body)));
    }
    header
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `header` signs `body` with `secret` within `tolerance_secs` of
/// `now_secs`: what an endpoint does with the header.
pub fn verify(header: &str, body: &[u8], secret: &str, now_secs: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_secs - t).abs() > tolerance_secs {
        return false;
    }
    let expected = hex(&mac(secret, t, body));
    signatures
        .iter()
        .any(|s| s.len() == expected.len() && constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The wait before attempt `failures + 1` after `failures` failures (one
/// or more): 30 s doubling up to 6 h, less up to a fifth at random
/// (`jitter` in 0..=1000 thousandths of that fifth), so endpoints that fail
/// together are not tried again together.
pub fn retry_wait_secs(failures: u32, jitter: u32) -> i64 {
    let base = RETRY_FIRST_SECS
        .saturating_mul(1i64 << (failures.saturating_sub(1)).min(20))
        .min(RETRY_MAX_SECS);
    base - base / 5 * i64::from(jitter.min(1000)) / 1000
}

/// What an attempt makes of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// The endpoint took it.
    Delivered,
    /// Tried again at this instant.
    RetryAt(Timestamp),
    /// Every attempt for three days failed: given up.
    GiveUp,
}

/// Decides what follows an attempt of a delivery whose first attempt was at
/// `first_at`, with `failures` failed attempts before this one.
pub fn after_attempt(
    succeeded: bool,
    first_at: Timestamp,
    failures: u32,
    now: Timestamp,
    jitter: u32,
) -> AfterAttempt {
    if succeeded {
        return AfterAttempt::Delivered;
    }
    let wait = retry_wait_secs(failures.saturating_add(1), jitter) * MICROS;
    let next = now.checked_add_micros(wait).unwrap_or(now);
    if next.micros() - first_at.micros() > GIVE_UP_AFTER_MICROS {
        AfterAttempt::GiveUp
    } else {
        AfterAttempt::RetryAt(next)
    }
}

/// Applies an attempt to a delivery: the attempt kept (the newest
/// [`server::events::ATTEMPTS_KEPT`]), its status and next try decided.
pub fn record_attempt(
    delivery: &Delivery,
    attempt: Attempt,
    now: Timestamp,
    jitter: u32,
) -> Delivery {
    let succeeded = attempt.status_code.is_some_and(|s| (200..300).contains(&s));
    let first_at = delivery
        .attempts
        .first()
        .map_or(now, |a| Timestamp::from_micros(a.at_micros));
    let failures = delivery
        .attempts
        .iter()
        .rev()
        .take_while(|a| !a.status_code.is_some_and(|s| (200..300).contains(&s)))
        .count() as u32;
    let mut attempts = delivery.attempts.clone();
    attempts.push(attempt);
    let excess = attempts.len().saturating_sub(server::events::ATTEMPTS_KEPT);
    attempts.drain(..excess);
    let (status, next_at_micros) = match after_attempt(succeeded, first_at, failures, now, jitter) {
        AfterAttempt::Delivered => (DeliveryStatus::Succeeded, None),
        AfterAttempt::RetryAt(at) => (DeliveryStatus::Pending, Some(at.micros())),
        AfterAttempt::GiveUp => (DeliveryStatus::Failed, None),
    };
    Delivery {
        endpoint: delivery.endpoint.clone(),
        status,
        next_at_micros,
        attempts,
    }
}

/// What a delivery's outcome does to its endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Healthy: no failure since the last success.
    Healthy,
    /// Failing since this instant, not yet for three days.
    FailingSince(Timestamp),
    /// Failing for three days: disabled, and the operator told.
    Disable,
}

/// The endpoint's health after a delivery attempt: healthy on a success;
/// failing since its first failure otherwise; disabled when the attempt
/// gave up a delivery (`gave_up`: that delivery's first attempt) that
/// failed every time for three days while the endpoint took nothing.
pub fn health_after(
    failing_since: Option<Timestamp>,
    succeeded: bool,
    gave_up: Option<Timestamp>,
    now: Timestamp,
) -> Health {
    if succeeded {
        return Health::Healthy;
    }
    let since = failing_since.unwrap_or(now);
    match gave_up {
        Some(first) if since <= first => Health::Disable,
        _ => Health::FailingSince(since),
    }
}

/// Checks an endpoint's URL: `https://` (or `http://`) with a host, no
/// credentials, at most [`URL_LEN_MAX`] characters; a private, loopback or
/// link-local address, or a name of one label, only when the operator
/// allows private webhooks. Names are checked again when they are resolved.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    if url.chars().count() > URL_LEN_MAX {
        return Err(format!("url is longer than {URL_LEN_MAX} characters"));
    }
    let parsed = url::Url::parse(url).map_err(|_| "url is not a URL".to_owned())?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("url must start with https:// or http://".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    let Some(private) = server::outbound::host_is_private(&parsed) else {
        return Err("url has no host".into());
    };
    if private && !allow_private {
        return Err(
            "url points to a private, loopback or link-local address or to a name of one label, \
             which the operator does not allow (CREDITD_ALLOW_PRIVATE_WEBHOOKS)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{AccountId, LotId, Metadata, TxId};

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn credits(n: i64) -> Amount {
        Amount::credits(n)
    }

    fn tx(kind: TxKind, amount: i64, after: i64) -> Transaction {
        Transaction {
            id: TxId(42),
            account: AccountId::parse("acme").unwrap(),
            kind,
            postings: Vec::new(),
            sources: Vec::new(),
            amount: credits(amount),
            balance_after: credits(after),
            created_at: T0,
            metadata: Metadata::empty(),
            lot: (kind == TxKind::Grant).then_some(LotId(7)),
            hold: None,
            refund_of: None,
            feature: None,
            external_id: None,
            reason: None,
            actor: None,
            source: (kind == TxKind::Grant).then_some(Source::AutoTopup),
        }
    }

    fn context(before: i64, threshold: Option<i64>) -> Context {
        Context {
            before: credits(before),
            threshold: threshold.map(credits),
            lot_expires_at: None,
            hold_expired: false,
            expiring_days: 3,
        }
    }

    #[test]
    fn the_low_balance_event_is_sent_once_per_crossing() {
        let t = Some(credits(10));
        assert_eq!(
            crossings(credits(50), credits(10), t),
            vec![EventType::BalanceLow]
        );
        assert_eq!(crossings(credits(10), credits(5), t), vec![]);
        assert_eq!(crossings(credits(5), credits(20), t), vec![]);
        assert_eq!(
            crossings(credits(20), credits(9), t),
            vec![EventType::BalanceLow]
        );
        assert_eq!(
            crossings(credits(50), credits(-3), t),
            vec![EventType::BalanceLow, EventType::BalanceDepleted]
        );
        assert_eq!(crossings(credits(0), credits(-3), t), vec![]);
        assert_eq!(
            crossings(credits(1), credits(0), None),
            vec![EventType::BalanceDepleted]
        );
        assert_eq!(
            crossings(credits(50), credits(1), Some(Amount::ZERO)),
            vec![]
        );
    }

    #[test]
    fn a_top_up_grant_is_granted_credits_and_a_top_up_and_warns_of_its_expiry() {
        let mut context = context(0, None);
        context.lot_expires_at = Some(T0.plus_secs(30 * 86_400));
        let events = derive(&tx(TxKind::Grant, 100, 100), context);
        let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            vec![
                EventType::CreditsGranted,
                EventType::TopupSucceeded,
                EventType::GrantExpiring
            ]
        );
        assert_eq!(events[0].data["amount"], "100");
        assert_eq!(events[0].data["grant_id"], "lot_7");
        assert_eq!(events[2].deliver_at, T0.plus_secs(27 * 86_400));
        // Every event of one entry has one cause per type: read twice, the
        // same events.
        assert_eq!(events, derive(&tx(TxKind::Grant, 100, 100), context));
        // An expiry sooner than the lead is warned of at once.
        context.lot_expires_at = Some(T0.plus_secs(3600));
        assert_eq!(derive(&tx(TxKind::Grant, 1, 1), context)[2].deliver_at, T0);
    }

    #[test]
    fn a_release_is_an_expired_hold_only_when_its_expiry_released_it() {
        let mut context = context(5, None);
        assert!(derive(&tx(TxKind::HoldRelease, 0, 10), context).is_empty());
        context.hold_expired = true;
        let events = derive(&tx(TxKind::HoldRelease, 0, 10), context);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::HoldExpired);
    }

    #[test]
    fn a_consume_to_zero_depletes_with_the_figures() {
        let events = derive(&tx(TxKind::Consume, -10, 0), context(10, Some(8)));
        let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            vec![EventType::BalanceLow, EventType::BalanceDepleted]
        );
        assert_eq!(events[0].data["threshold"], "8");
        assert_eq!(events[1].data["available"], "0");
    }

    #[test]
    fn signatures_verify_with_their_secret_only_and_within_the_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature(&["whsec_a"], 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(&header, body, "whsec_a", 1_700_000_100, 300));
        assert!(!verify(&header, body, "whsec_b", 1_700_000_100, 300));
        assert!(!verify(&header, b"{}", "whsec_a", 1_700_000_100, 300));
        assert!(!verify(&header, body, "whsec_a", 1_700_001_000, 300));
        // While a rotated secret is in force both sign: either verifies.
        let both = signature(&["whsec_new", "whsec_old"], 1_700_000_000, body);
        assert!(verify(&both, body, "whsec_new", 1_700_000_000, 300));
        assert!(verify(&both, body, "whsec_old", 1_700_000_000, 300));
        // The known answer: HMAC-SHA256("key", "1.{}").
        assert_eq!(
            signature(&["key"], 1, b"{}"),
            format!("t=1,v1={}", hex(&mac("key", 1, b"{}")))
        );
    }

    #[test]
    fn retries_back_off_with_jitter_and_give_up_after_three_days() {
        assert_eq!(retry_wait_secs(1, 0), 30);
        assert_eq!(retry_wait_secs(2, 0), 60);
        assert_eq!(retry_wait_secs(1, 1000), 24);
        assert_eq!(retry_wait_secs(30, 0), RETRY_MAX_SECS);
        assert_eq!(after_attempt(true, T0, 5, T0, 0), AfterAttempt::Delivered);
        assert_eq!(
            after_attempt(false, T0, 0, T0, 0),
            AfterAttempt::RetryAt(T0.plus_secs(30))
        );
        let late = T0.plus_secs(3 * 86_400 - 60);
        assert_eq!(after_attempt(false, T0, 20, late, 0), AfterAttempt::GiveUp);
        // Failing attempts, kept, until three days have passed.
        let mut delivery = Delivery {
            endpoint: "we_1".into(),
            status: DeliveryStatus::Pending,
            next_at_micros: Some(T0.micros()),
            attempts: Vec::new(),
        };
        let mut now = T0;
        let mut tries = 0;
        while delivery.status == DeliveryStatus::Pending {
            let attempt = Attempt {
                at_micros: now.micros(),
                status_code: Some(500),
                error: None,
                duration_ms: 1,
            };
            delivery = record_attempt(&delivery, attempt, now, 500);
            tries += 1;
            if let Some(next) = delivery.next_at_micros {
                now = Timestamp::from_micros(next);
            }
        }
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert!(now.micros() - T0.micros() <= GIVE_UP_AFTER_MICROS);
        assert!((15..=30).contains(&tries), "{tries} tries");
        assert!(delivery.attempts.len() <= server::events::ATTEMPTS_KEPT);
    }

    #[test]
    fn an_endpoint_failing_for_three_days_is_disabled() {
        assert_eq!(
            health_after(None, false, None, T0),
            Health::FailingSince(T0)
        );
        assert_eq!(
            health_after(Some(T0), true, None, T0.plus_secs(9)),
            Health::Healthy
        );
        let late = T0.plus_secs(3 * 86_400);
        assert_eq!(
            health_after(Some(T0), false, Some(T0), late),
            Health::Disable
        );
        // A delivery given up while the endpoint took others since is that
        // event's failure, not the endpoint's.
        assert_eq!(
            health_after(Some(T0.plus_secs(60)), false, Some(T0), late),
            Health::FailingSince(T0.plus_secs(60))
        );
    }

    #[test]
    fn endpoint_urls_are_public_http_unless_the_operator_allows_private_ones() {
        assert!(check_url("https://hooks.example.com/creditd", false).is_ok());
        for bad in [
            "ftp://x.example.com",
            "https://u:p@x.example.com",
            "not a url",
        ] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
        for private in [
            "http://127.0.0.1:9000/",
            "http://localhost/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://10.0.0.5/",
        ] {
            assert!(check_url(private, false).is_err(), "{private}");
            assert!(check_url(private, true).is_ok(), "{private}");
        }
        assert!(
            check_url(
                &format!("https://x.example.com/{}", "a".repeat(URL_LEN_MAX)),
                true
            )
            .is_err()
        );
    }
}

//! The outbox of events creditd tells operators about (outbound webhooks): each event a record,
//! written in the same transaction as the change that caused it, and the state of its delivery
//! to each endpoint. The webhooks capability fills in and sends; any part may emit.

use ledger::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::records::{self, Expect, Kind, Lookup, RecordWrite};

/// What happened, as the event's `type` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// The available balance fell to or below the account's low-balance threshold.
    #[serde(rename = "balance.low")]
    BalanceLow,
    /// The available balance fell to zero or below.
    #[serde(rename = "balance.depleted")]
    BalanceDepleted,
    /// Credits were granted.
    #[serde(rename = "credits.granted")]
    CreditsGranted,
    /// An auto top-up was paid and its credits granted.
    #[serde(rename = "topup.succeeded")]
    TopupSucceeded,
    /// An auto top-up failed (declined, or no payment method).
    #[serde(rename = "topup.failed")]
    TopupFailed,
    /// A grant's credits expire within the configured days.
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    /// A hold reached its expiry uncommitted and was released.
    #[serde(rename = "hold.expired")]
    HoldExpired,
    /// A subscription entered a new period.
    #[serde(rename = "subscription.renewed")]
    SubscriptionRenewed,
    /// A subscription's payment failed.
    #[serde(rename = "subscription.past_due")]
    SubscriptionPastDue,
    /// Overage was billed to the customer.
    #[serde(rename = "overage.charged")]
    OverageCharged,
}

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [EventType; 10] = [
        EventType::BalanceLow,
        EventType::BalanceDepleted,
        EventType::CreditsGranted,
        EventType::TopupSucceeded,
        EventType::TopupFailed,
        EventType::GrantExpiring,
        EventType::HoldExpired,
        EventType::SubscriptionRenewed,
        EventType::SubscriptionPastDue,
        EventType::OverageCharged,
    ];

    /// The name as the API writes it.
    pub const fn code(self) -> &'static str {
        match self {
            EventType::BalanceLow => "balance.low",
            EventType::BalanceDepleted => "balance.depleted",
            EventType::CreditsGranted => "credits.granted",
            EventType::TopupSucceeded => "topup.succeeded",
            EventType::TopupFailed => "topup.failed",
            EventType::GrantExpiring => "grant.expiring",
            EventType::HoldExpired => "hold.expired",
            EventType::SubscriptionRenewed => "subscription.renewed",
            EventType::SubscriptionPastDue => "subscription.past_due",
            EventType::OverageCharged => "overage.charged",
        }
    }

    /// The type named `code`, if there is one.
    pub fn parse(code: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }
}

/// Where an event's delivery to one endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; tried again at `next_at`.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Given up on: every attempt for three days failed, or the endpoint
    /// was disabled or deleted.
    Failed,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was sent, in micros.
    pub at_micros: i64,
    /// The endpoint's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it failed without an answer (timeout, refused, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// An event's delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The endpoint's id.
    pub endpoint: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// When it is tried next (pending only), in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at_micros: Option<i64>,
    /// Every attempt, oldest first (the last [`ATTEMPTS_KEPT`]).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// The attempts an event keeps per endpoint.
pub const ATTEMPTS_KEPT: usize = 30;

/// Where an event stands as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Written by its change; not yet given to the endpoints subscribed.
    New,
    /// Given to the endpoints subscribed at the time: see its deliveries.
    Dispatched,
    /// No longer true when it came due (a grant used up before its expiry
    /// came near): sent to nobody.
    Canceled,
}

/// An event, as a record of kind `webhook_event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The account it is about.
    pub account: String,
    /// When it happened, in micros.
    pub created_at_micros: i64,
    /// Given to endpoints no earlier than this, in micros (an expiry's
    /// warning waits for its day).
    pub deliver_at_micros: i64,
    /// The figures the type needs; always holds `account_id`.
    pub data: serde_json::Value,
    /// Where it stands.
    pub state: EventState,
    /// Its deliveries, one per endpoint subscribed when it was dispatched.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
}

/// The instant an event next needs work: its dispatch, or its next
/// pending delivery; none when nothing is left to do.
pub fn due_at(event: &Event) -> Option<i64> {
    match event.state {
        EventState::New => Some(event.deliver_at_micros),
        EventState::Canceled => None,
        EventState::Dispatched => event
            .deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .filter_map(|d| d.next_at_micros)
            .min(),
    }
}

/// The `listed` lookup's value of an event created at `at_micros`: values
/// sort newest first.
pub fn listed_value(at_micros: i64) -> String {
    format!("{:020}", u64::MAX - ((at_micros as u64) ^ (1 << 63)))
}

impl Kind for Event {
    const KIND: &'static str = "webhook_event";

    fn lookups(&self) -> Vec<Lookup> {
        let order = listed_value(self.created_at_micros);
        let mut lookups = vec![
            Lookup::ordered("listed", order.clone()),
            Lookup::ordered("account", format!("{}/{order}", self.account)),
        ];
        for delivery in &self.deliveries {
            lookups.push(Lookup::ordered(
                "endpoint",
                format!("{}/{order}", delivery.endpoint),
            ));
        }
        if let Some(at) = due_at(self) {
            lookups.push(Lookup::instant("due", Timestamp::from_micros(at)));
        }
        lookups
    }
}

/// The id of the event that `cause` gives rise to: the same cause, the
/// same id, so an event is written once however often its cause is seen.
pub fn event_id(event_type: EventType, cause: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{cause}", event_type.code()).as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

/// An event of `event_type` about `account`, caused by `cause`, with `data`
/// (an object; `account_id` is added), to be delivered from `deliver_at`.
pub fn new_event(
    event_type: EventType,
    account: &AccountId,
    data: serde_json::Value,
    now: Timestamp,
    deliver_at: Timestamp,
) -> Event {
    let mut data = match data {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    data.insert("account_id".into(), account.as_str().into());
    Event {
        event_type,
        account: account.as_str().to_owned(),
        created_at_micros: now.micros(),
        deliver_at_micros: deliver_at.micros(),
        data: serde_json::Value::Object(data),
        state: EventState::New,
        deliveries: Vec::new(),
    }
}

/// The write of an event caused by `cause`, to join the command of the
/// change that caused it: the change and its event commit together. The
/// change's own guard (its expected version, its external id) makes it
/// apply once; were the same cause written again, the event would be
/// written over and sent again, never the change refused for it.
pub fn emit(
    event_type: EventType,
    cause: &str,
    account: &AccountId,
    data: serde_json::Value,
    now: Timestamp,
) -> RecordWrite {
    let event = new_event(event_type, account, data, now, now);
    records::put(&event_id(event_type, cause), &event, Expect::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_id_is_its_causes_and_its_types() {
        let a = event_id(EventType::TopupFailed, "acme/3");
        assert_eq!(a, event_id(EventType::TopupFailed, "acme/3"));
        assert_ne!(a, event_id(EventType::TopupFailed, "acme/4"));
        assert_ne!(a, event_id(EventType::TopupSucceeded, "acme/3"));
        assert!(a.starts_with("evt_") && a.len() == 28);
    }

    #[test]
    fn types_read_back_from_their_codes() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.code()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.code());
        }
        assert_eq!(EventType::parse("balance.lo"), None);
    }

    #[test]
    fn newer_events_list_first_and_work_is_due_when_pending() {
        assert!(listed_value(2_000_000) < listed_value(1_000_000));
        assert!(listed_value(1) < listed_value(-1));
        let account = AccountId::parse("acme").unwrap();
        let now = Timestamp::from_secs(1_800_000_000);
        let mut event = new_event(
            EventType::CreditsGranted,
            &account,
            serde_json::json!({"amount": "5"}),
            now,
            now,
        );
        assert_eq!(event.data["account_id"], "acme");
        assert_eq!(due_at(&event), Some(now.micros()));
        event.state = EventState::Dispatched;
        assert_eq!(due_at(&event), None);
        event.deliveries = vec![
            Delivery {
                endpoint: "we_1".into(),
                status: DeliveryStatus::Pending,
                next_at_micros: Some(now.micros() + 7),
                attempts: Vec::new(),
            },
            Delivery {
                endpoint: "we_2".into(),
                status: DeliveryStatus::Succeeded,
                next_at_micros: None,
                attempts: Vec::new(),
            },
        ];
        assert_eq!(due_at(&event), Some(now.micros() + 7));
        assert_eq!(
            event
                .lookups()
                .iter()
                .filter(|l| l.name == "endpoint")
                .count(),
            2
        );
    }
}

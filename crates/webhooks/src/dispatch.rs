//! The webhooks' background work, safe on every node at once: reading the journal as it grows
//! into events, handing each event to the endpoints subscribed, delivering what is due one
//! attempt at a time per event, and forgetting old events.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use futures_util::StreamExt;
use ledger::{AccountId, Amount, HoldStatus, Timestamp, Transaction, TxKind};
use serde::{Deserialize, Serialize};
use server::account_billing;
use server::events::{self, Attempt, Delivery, DeliveryStatus, Event, EventState, EventType};
use store::records::{self, Doc, Expect, Kind, Lookup, RecordFilter, RecordWrite, Written};
use store::{Command, Executed, JournalPosition, Op, StoreError, TxFilter};

use crate::Webhooks;
use crate::domain::{self, Context, Health};
use crate::endpoint::{self, Disabled, Endpoint};

/// How far the journal has been read into events, as the record
/// `webhook_cursor/journal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The position read up to.
    pub position: JournalPosition,
}

impl Kind for Cursor {
    const KIND: &'static str = "webhook_cursor";

    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

/// The cursor record's id.
pub const CURSOR_ID: &str = "journal";

/// Journal entries read per page, and pages per round.
const PAGE: usize = 500;
const PAGES_PER_ROUND: usize = 20;

/// Events delivered per round, and at once.
const DELIVERIES_PER_ROUND: usize = 200;
const DELIVERIES_AT_ONCE: usize = 16;

/// How long a node holds an event it is delivering beyond the time its
/// attempts may take, before another node may take it: a node that died
/// mid-delivery delays the event by its attempts' time and this much.
const CLAIM_MARGIN_MICROS: i64 = 5 * ledger::MICROS_PER_SECOND;

/// How long events are kept.
pub const KEPT_FOR_MICROS: i64 = 30 * 86_400 * ledger::MICROS_PER_SECOND;

/// The types read from the journal.
const JOURNAL_TYPES: [EventType; 6] = [
    EventType::CreditsGranted,
    EventType::TopupSucceeded,
    EventType::GrantExpiring,
    EventType::HoldExpired,
    EventType::BalanceLow,
    EventType::BalanceDepleted,
];

/// What a round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Journal entries read.
    pub read: usize,
    /// Events written from them.
    pub written: usize,
    /// Events handed to endpoints.
    pub dispatched: usize,
    /// Attempts made.
    pub attempts: usize,
    /// Old events forgotten.
    pub pruned: usize,
}

impl Webhooks {
    /// One round of all the webhooks' work.
    pub async fn run_once(&self) -> Result<Round, StoreError> {
        let endpoints = self.endpoints().await?;
        let (read, written) = self.read_journal(&endpoints).await?;
        let (dispatched, attempts) = self.deliver_due(&endpoints).await?;
        let pruned = self.prune().await?;
        Ok(Round {
            read,
            written,
            dispatched,
            attempts,
            pruned,
        })
    }

    /// Every endpoint, by id.
    pub async fn endpoints(&self) -> Result<HashMap<String, Doc<Endpoint>>, StoreError> {
        Ok(
            records::list_all::<Endpoint>(self.store.as_ref(), RecordFilter::All)
                .await?
                .into_iter()
                .map(|doc| (doc.id.clone(), doc))
                .collect(),
        )
    }

    /// Reads the journal after the cursor into events of the types some
    /// endpoint receives, each page's events written with the cursor's
    /// advance in one command at the cursor's version: another node reading
    /// the same page is refused, so each entry gives its events once.
    async fn read_journal(
        &self,
        endpoints: &HashMap<String, Doc<Endpoint>>,
    ) -> Result<(usize, usize), StoreError> {
        let store = self.store.as_ref();
        let wanted: BTreeSet<EventType> = JOURNAL_TYPES
            .into_iter()
            .filter(|t| endpoints.values().any(|e| e.body.receives(*t)))
            .collect();
        if endpoints.is_empty() {
            // No endpoint: nothing to read, nothing written.
            return Ok((0, 0));
        }
        let Some(mut cursor) = records::get::<Cursor>(store, CURSOR_ID).await? else {
            self.start_reading(&HashMap::new()).await?;
            return Ok((0, 0));
        };
        if wanted.is_empty() {
            // Nobody listens: the cursor follows the journal's end unread.
            let head = store.journal_head().await?;
            if head > cursor.body.position {
                let write = records::put(
                    CURSOR_ID,
                    &Cursor { position: head },
                    Expect::Version(cursor.version),
                );
                records::write::<Cursor>(store, write).await?;
            }
            return Ok((0, 0));
        }
        let settings = billing::settings::read(store, &self.billing.env).await?;
        let mut reader = Reader {
            webhooks: self,
            wanted: &wanted,
            default_threshold: settings.low_balance_threshold,
            expiring_days: settings.grant_expiring_days,
            balances: HashMap::new(),
            thresholds: HashMap::new(),
        };
        let (mut read, mut written) = (0, 0);
        for _ in 0..PAGES_PER_ROUND {
            let (txs, next) = store.journal_after(cursor.body.position, PAGE).await?;
            if txs.is_empty() && next == cursor.body.position {
                break;
            }
            let mut writes = Vec::new();
            for tx in &txs {
                writes.extend(reader.events_of(tx).await?);
            }
            let advance = records::put(
                CURSOR_ID,
                &Cursor { position: next },
                Expect::Version(cursor.version),
            );
            let count = writes.len();
            let command = Command::new(Op::Record(advance)).with_records(writes);
            match store.execute(command).await? {
                Executed::Fresh(Ok(store::Outcome::RecordPut(record))) => {
                    cursor = Doc::from_record(record)?;
                }
                // Another node read this page first.
                _ => break,
            }
            read += txs.len();
            written += count;
            if txs.len() < PAGE {
                break;
            }
        }
        Ok((read, written))
    }

    /// Places the journal's reading at its end when nobody was reading it
    /// (`before`: the endpoints before the change that calls this): events
    /// begin with the endpoint that listens first, nothing before it is
    /// sent, and a reading left behind while nobody listened is not caught
    /// up on.
    pub async fn start_reading(
        &self,
        before: &HashMap<String, Doc<Endpoint>>,
    ) -> Result<(), StoreError> {
        let store = self.store.as_ref();
        let listened = JOURNAL_TYPES
            .into_iter()
            .any(|t| before.values().any(|e| e.body.receives(t)));
        let position = store.journal_head().await?;
        let expect = match records::get::<Cursor>(store, CURSOR_ID).await? {
            None => Expect::Absent,
            Some(doc) if !listened && doc.body.position < position => Expect::Version(doc.version),
            Some(_) => return Ok(()),
        };
        // Refused: another node moved it first.
        records::write::<Cursor>(store, records::put(CURSOR_ID, &Cursor { position }, expect))
            .await?;
        Ok(())
    }

    /// Delivers what is due: new events handed to the endpoints subscribed
    /// now, then each pending delivery whose time has come, several events
    /// at once, one attempt at a time per event.
    async fn deliver_due(
        &self,
        endpoints: &HashMap<String, Doc<Endpoint>>,
    ) -> Result<(usize, usize), StoreError> {
        let now = self.clock.now();
        let filter = RecordFilter::Range {
            name: "due".into(),
            from: None,
            to: Some(records::sortable_instant(Timestamp::from_micros(
                now.micros() + 1,
            ))),
        };
        let due =
            records::list::<Event>(self.store.as_ref(), filter, None, DELIVERIES_PER_ROUND).await?;
        let results: Vec<Result<(usize, usize), StoreError>> = futures_util::stream::iter(due)
            .map(|doc| self.work_on(doc, endpoints, now))
            .buffer_unordered(DELIVERIES_AT_ONCE)
            .collect()
            .await;
        let (mut dispatched, mut attempts) = (0, 0);
        for result in results {
            let (d, a) = result?;
            dispatched += d;
            attempts += a;
        }
        Ok((dispatched, attempts))
    }

    async fn work_on(
        &self,
        mut doc: Doc<Event>,
        endpoints: &HashMap<String, Doc<Endpoint>>,
        now: Timestamp,
    ) -> Result<(usize, usize), StoreError> {
        let store = self.store.as_ref();
        let mut dispatched = 0;
        if doc.body.state == EventState::New {
            let mut event = doc.body.clone();
            if self.still_true(&event).await? {
                event.state = EventState::Dispatched;
                let mut ids: Vec<&String> = endpoints
                    .iter()
                    .filter(|(_, e)| e.body.receives(event.event_type))
                    .map(|(id, _)| id)
                    .collect();
                ids.sort();
                event.deliveries = ids
                    .into_iter()
                    .map(|id| Delivery {
                        endpoint: id.clone(),
                        status: DeliveryStatus::Pending,
                        next_at_micros: Some(now.micros()),
                        attempts: Vec::new(),
                    })
                    .collect();
            } else {
                event.state = EventState::Canceled;
            }
            match put_at(store, &doc, &event).await? {
                Some(next) => doc = next,
                None => return Ok((0, 0)),
            }
            dispatched = 1;
        }
        // Claim the deliveries due: no other node takes them until the
        // claim lapses, so one attempt at a time is made per event.
        let due: Vec<String> = doc
            .body
            .deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .filter(|d| d.next_at_micros.is_some_and(|at| at <= now.micros()))
            .map(|d| d.endpoint.clone())
            .collect();
        if due.is_empty() {
            return Ok((dispatched, 0));
        }
        // Attempts are made one after another, each within the attempt's time.
        let attempts_micros = i64::try_from(self.config.attempt_timeout.as_micros())
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(due.len() as i64);
        let claim_until = now.micros() + attempts_micros + CLAIM_MARGIN_MICROS;
        let mut claimed = doc.body.clone();
        for delivery in &mut claimed.deliveries {
            if due.contains(&delivery.endpoint) {
                delivery.next_at_micros = Some(claim_until);
            }
        }
        let Some(doc) = put_at(store, &doc, &claimed).await? else {
            return Ok((dispatched, 0));
        };
        let body = event_body(&doc.id, &doc.body);
        let mut outcomes = Vec::new();
        for id in &due {
            let attempt = match endpoints.get(id) {
                Some(endpoint) if endpoint.body.disabled.is_none() => {
                    Some(self.send(id, &endpoint.body, &body).await)
                }
                // Deleted or disabled since: given up.
                _ => None,
            };
            outcomes.push((id.clone(), attempt));
        }
        let attempts = outcomes.iter().filter(|(_, a)| a.is_some()).count();
        let given_up = self.record_outcomes(&doc.id, &outcomes).await?;
        for (id, attempt) in &outcomes {
            if let Some(attempt) = attempt {
                let gave_up = given_up.get(id).copied();
                self.note_health(id, succeeded(attempt), gave_up).await?;
            }
        }
        Ok((dispatched, attempts))
    }

    /// Whether an event still holds when it comes due: a grant's expiry
    /// warning only while the grant has credits left and has not expired.
    async fn still_true(&self, event: &Event) -> Result<bool, StoreError> {
        if event.event_type != EventType::GrantExpiring {
            return Ok(true);
        }
        let Some(lot) = event.data["grant_id"]
            .as_str()
            .and_then(|id| ledger::LotId::parse(id).ok())
        else {
            return Ok(false);
        };
        let now = self.clock.now();
        Ok(self.store.lot(lot).await?.is_some_and(|lot| {
            lot.remaining.is_positive()
                && lot.voided_at.is_none()
                && lot.expires_at.is_some_and(|at| at > now)
        }))
    }

    /// Sends `body` to an endpoint once, signed with its secrets in force.
    async fn send(&self, id: &str, endpoint: &Endpoint, body: &[u8]) -> Attempt {
        let now = self.clock.now();
        let started = Instant::now();
        let secrets = match &self.keyring {
            Some(keyring) => endpoint::secrets(keyring, id, endpoint, now),
            None => Err(server::sealing::OpenError::UnknownVersion(
                endpoint.secret.key_version,
            )),
        };
        let failed = |error: String| Attempt {
            at_micros: now.micros(),
            status_code: None,
            error: Some(error),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let secrets = match secrets {
            Ok(secrets) => secrets,
            Err(error) => {
                tracing::error!(endpoint = id, ?error, "a webhook secret cannot be opened");
                return failed("the signing secret cannot be opened on this node".into());
            }
        };
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signature = domain::signature(&refs, now.micros() / ledger::MICROS_PER_SECOND, body);
        let sent = self
            .http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("user-agent", "creditd-webhooks/1")
            .header("creditd-signature", signature)
            .timeout(self.config.attempt_timeout)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                // The answer's body is not needed; it is read only so the
                // connection can be reused, within the same time limit.
                let _ = tokio::time::timeout(self.config.attempt_timeout, response.bytes()).await;
                let attempt = Attempt {
                    at_micros: now.micros(),
                    status_code: Some(status),
                    error: None,
                    duration_ms: started.elapsed().as_millis() as u64,
                };
                self.count_delivery(succeeded(&attempt));
                attempt
            }
            Err(error) => {
                self.count_delivery(false);
                let why = if error.is_timeout() {
                    "timed out".to_owned()
                } else if error.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "the request failed".to_owned()
                };
                tracing::info!(endpoint = id, error = %why, "a webhook delivery failed");
                failed(why)
            }
        }
    }

    /// Writes what the attempts did to the event, on the event as it is
    /// now; answers the deliveries given up, with their first attempts.
    async fn record_outcomes(
        &self,
        id: &str,
        outcomes: &[(String, Option<Attempt>)],
    ) -> Result<HashMap<String, Timestamp>, StoreError> {
        let now = self.clock.now();
        let jitter = random_below(1001);
        let mut given_up = HashMap::new();
        records::update::<Event>(self.store.as_ref(), id, |event| {
            given_up.clear();
            let mut next = event.clone();
            for delivery in &mut next.deliveries {
                let Some((_, attempt)) = outcomes.iter().find(|(e, _)| *e == delivery.endpoint)
                else {
                    continue;
                };
                if delivery.status != DeliveryStatus::Pending {
                    continue;
                }
                *delivery = match attempt {
                    Some(attempt) => {
                        let after = domain::record_attempt(delivery, attempt.clone(), now, jitter);
                        if after.status == DeliveryStatus::Failed
                            && let Some(first) = after.attempts.first()
                        {
                            given_up.insert(
                                after.endpoint.clone(),
                                Timestamp::from_micros(first.at_micros),
                            );
                        }
                        after
                    }
                    None => Delivery {
                        status: DeliveryStatus::Failed,
                        next_at_micros: None,
                        ..delivery.clone()
                    },
                };
            }
            Some(next)
        })
        .await?;
        Ok(given_up)
    }

    /// Keeps an endpoint's health: failing since its first failure after a
    /// success, disabled when a delivery is given up after three days of
    /// failures with no success between.
    async fn note_health(
        &self,
        id: &str,
        succeeded: bool,
        gave_up: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let updated = records::update::<Endpoint>(self.store.as_ref(), id, |endpoint| {
            let since = endpoint.failing_since_micros.map(Timestamp::from_micros);
            let mut next = endpoint.clone();
            match domain::health_after(since, succeeded, gave_up, now) {
                Health::Healthy => next.failing_since_micros = None,
                Health::FailingSince(at) => next.failing_since_micros = Some(at.micros()),
                Health::Disable if endpoint.disabled.is_none() => {
                    next.disabled = Some(Disabled::Failing);
                    next.disabled_at_micros = Some(now.micros());
                }
                Health::Disable => {}
            }
            (next != *endpoint).then_some(next)
        })
        .await?;
        if let records::Updated::Changed(doc) = updated
            && doc.body.disabled == Some(Disabled::Failing)
            && doc.body.disabled_at_micros == Some(now.micros())
        {
            tracing::warn!(endpoint = id, url = %doc.body.url, "a webhook endpoint failed every delivery for three days and is disabled");
        }
        Ok(())
    }

    /// Forgets events older than [`KEPT_FOR_MICROS`] with nothing left to do.
    async fn prune(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let filter = RecordFilter::Range {
            name: "listed".into(),
            from: Some(events::listed_value(now.micros() - KEPT_FOR_MICROS)),
            to: None,
        };
        let old = records::list::<Event>(self.store.as_ref(), filter, None, 500).await?;
        let mut pruned = 0;
        for doc in old {
            if events::due_at(&doc.body).is_some() {
                continue;
            }
            let write = records::delete::<Event>(&doc.id, Expect::Version(doc.version));
            if let Written::Deleted = records::write::<Event>(self.store.as_ref(), write).await? {
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}

/// Writes `event` over `doc` at its version: the record as written, or
/// none when another node changed it first.
async fn put_at(
    store: &dyn store::Store,
    doc: &Doc<Event>,
    event: &Event,
) -> Result<Option<Doc<Event>>, StoreError> {
    let write = records::put(&doc.id, event, Expect::Version(doc.version));
    Ok(match records::write::<Event>(store, write).await? {
        Written::Stored(doc) => Some(doc),
        _ => None,
    })
}

fn succeeded(attempt: &Attempt) -> bool {
    attempt.status_code.is_some_and(|s| (200..300).contains(&s))
}

/// The body every attempt of an event sends: `{"id", "type", "created_at", "data"}`.
pub fn event_body(id: &str, event: &Event) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "type": event.event_type.code(),
        "created_at": Timestamp::from_micros(event.created_at_micros).to_string(),
        "data": event.data,
    }))
    .expect("an event serializes")
}

/// A random number below `n`.
fn random_below(n: u32) -> u32 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("random bytes");
    u32::from_le_bytes(bytes) % n
}

/// Turns journal entries into event writes, reading what an entry alone
/// does not say (the balance before it, the account's threshold, a lot's
/// expiry, how a hold ended), once per account or object.
struct Reader<'a> {
    webhooks: &'a Webhooks,
    wanted: &'a BTreeSet<EventType>,
    default_threshold: Option<Amount>,
    expiring_days: u32,
    balances: HashMap<AccountId, Amount>,
    thresholds: HashMap<AccountId, Option<Amount>>,
}

impl Reader<'_> {
    async fn events_of(&mut self, tx: &Transaction) -> Result<Vec<RecordWrite>, StoreError> {
        let store = self.webhooks.store.as_ref();
        let crossing = self.wanted.contains(&EventType::BalanceLow)
            || self.wanted.contains(&EventType::BalanceDepleted);
        let before = match self.balances.get(&tx.account) {
            Some(before) => *before,
            None if crossing => {
                let mut filter = TxFilter::new(tx.account.clone(), 1);
                filter.before = Some(tx.id);
                store
                    .transactions(filter)
                    .await?
                    .first()
                    .map_or(Amount::ZERO, |t| t.balance_after)
            }
            None => Amount::ZERO,
        };
        self.balances.insert(tx.account.clone(), tx.balance_after);
        let threshold = if self.wanted.contains(&EventType::BalanceLow) {
            match self.thresholds.get(&tx.account) {
                Some(threshold) => *threshold,
                None => {
                    let (billing, _) = account_billing::read(store, &tx.account).await?;
                    let threshold = billing
                        .low_balance_threshold_micros
                        .map(Amount::from_micros)
                        .or(self.default_threshold);
                    self.thresholds.insert(tx.account.clone(), threshold);
                    threshold
                }
            }
        } else {
            None
        };
        let lot_expires_at = match (tx.kind, tx.lot) {
            (TxKind::Grant, Some(lot)) if self.wanted.contains(&EventType::GrantExpiring) => {
                store.lot(lot).await?.and_then(|lot| lot.expires_at)
            }
            _ => None,
        };
        let hold_expired = match (tx.kind, tx.hold) {
            (TxKind::HoldRelease, Some(hold)) if self.wanted.contains(&EventType::HoldExpired) => {
                store
                    .hold(hold)
                    .await?
                    .is_some_and(|h| h.status == HoldStatus::Expired)
            }
            _ => false,
        };
        let context = Context {
            before,
            threshold,
            lot_expires_at,
            hold_expired,
            expiring_days: self.expiring_days,
        };
        Ok(domain::derive(tx, context)
            .into_iter()
            .filter(|d| self.wanted.contains(&d.event_type))
            .map(|d| {
                let event = events::new_event(
                    d.event_type,
                    &tx.account,
                    d.data,
                    tx.created_at,
                    d.deliver_at,
                );
                records::put(
                    &events::event_id(d.event_type, &d.cause),
                    &event,
                    Expect::Absent,
                )
            })
            .collect())
    }
}

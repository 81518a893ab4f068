//! Records: low-volume entities (settings, API keys, plans, packages, prices,
//! payment events) kept as versioned JSON documents with declared lookups,
//! in two generic tables that every kind shares.
//!
//! A kind is a serde type with a [`Kind`] name; it needs no SQL of its own.
//! A record write goes through the writer like any ledger write, so it can
//! join a ledger operation and commit in the same transaction (see
//! [`crate::Command::records`]).

use ledger::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{BoxFuture, Command, Executed, Op, Outcome, Refused, Store, StoreError};

/// The longest kind name, lookup name or record id accepted, in bytes.
pub const RECORD_NAME_LEN_MAX: usize = 255;
/// The longest lookup value accepted, in bytes.
pub const LOOKUP_VALUE_LEN_MAX: usize = 512;
/// The largest record body accepted, in bytes of JSON.
pub const RECORD_BODY_LEN_MAX: usize = 256 * 1024;

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What kind of entity it is, such as `api_key`.
    pub kind: String,
    /// Its id, unique within its kind.
    pub id: String,
    /// Starts at 1 and grows by one with every write.
    pub version: u64,
    /// The entity as JSON text.
    pub body: String,
    /// The lookups it is found by.
    pub lookups: Vec<Lookup>,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
}

/// A value a record can be found by: unique within its kind and name (an API
/// key by its hash), or shared and ordered for range scans (subscriptions by
/// the instant they renew).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lookup {
    /// The lookup's name, such as `hash`.
    pub name: String,
    /// The value; values of one name sort bytewise.
    pub value: String,
    /// At most one record of the kind holds each value.
    pub unique: bool,
}

impl Lookup {
    /// A value that at most one record of the kind may hold.
    pub fn unique(name: &str, value: impl Into<String>) -> Lookup {
        Lookup {
            name: name.to_owned(),
            value: value.into(),
            unique: true,
        }
    }

    /// A value that several records may share, scanned in order.
    pub fn ordered(name: &str, value: impl Into<String>) -> Lookup {
        Lookup {
            name: name.to_owned(),
            value: value.into(),
            unique: false,
        }
    }

    /// An instant as an ordered value: values sort as the instants do.
    pub fn instant(name: &str, at: Timestamp) -> Lookup {
        Lookup::ordered(name, sortable_instant(at))
    }
}

/// An instant as text that sorts bytewise as the instants do.
pub fn sortable_instant(at: Timestamp) -> String {
    // Shifted into the unsigned range so that negative instants sort first.
    format!("{:020}", (at.micros() as u64) ^ (1 << 63))
}

/// What version a write expects the record to be at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever it is, or absent.
    Any,
    /// Absent: the write creates it.
    Absent,
    /// Exactly this version.
    Version(u64),
}

/// A write of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordWrite {
    /// Creates or replaces it.
    Put {
        /// The kind.
        kind: String,
        /// The id.
        id: String,
        /// The new body, JSON text.
        body: String,
        /// The new lookups; they replace the old ones.
        lookups: Vec<Lookup>,
        /// The version it must be at.
        expect: Expect,
    },
    /// Removes it.
    Delete {
        /// The kind.
        kind: String,
        /// The id.
        id: String,
        /// The version it must be at.
        expect: Expect,
    },
}

impl RecordWrite {
    /// The record it writes.
    pub fn key(&self) -> (&str, &str) {
        match self {
            RecordWrite::Put { kind, id, .. } | RecordWrite::Delete { kind, id, .. } => (kind, id),
        }
    }

    /// The version it expects.
    pub fn expect(&self) -> Expect {
        match self {
            RecordWrite::Put { expect, .. } | RecordWrite::Delete { expect, .. } => *expect,
        }
    }

    /// Checks the sizes and names, so that a store never holds a record it
    /// could not index; a failure is a bug in the caller.
    pub fn check(&self) -> Result<(), StoreError> {
        let name_ok = |text: &str| {
            !text.is_empty()
                && text.len() <= RECORD_NAME_LEN_MAX
                && !text.bytes().any(|b| b.is_ascii_control())
        };
        let (kind, id) = self.key();
        let bad = |what: String| Err(StoreError::Internal(format!("record {kind}/{id}: {what}")));
        if !name_ok(kind) || !name_ok(id) {
            return bad("bad kind or id".into());
        }
        if let RecordWrite::Put { body, lookups, .. } = self {
            if body.len() > RECORD_BODY_LEN_MAX {
                return bad(format!("body over {RECORD_BODY_LEN_MAX} bytes"));
            }
            for lookup in lookups {
                if !name_ok(&lookup.name)
                    || lookup.value.len() > LOOKUP_VALUE_LEN_MAX
                    || lookup.value.contains('\0')
                {
                    return bad(format!("bad lookup {:?}", lookup.name));
                }
            }
            let mut names: Vec<(&str, &str)> = lookups
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return bad("a lookup given twice".into());
            }
        }
        Ok(())
    }
}

/// Which records of a kind to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordFilter {
    /// All of them, in id order.
    All,
    /// Those holding exactly this value under this lookup, in id order.
    Equals {
        /// The lookup's name.
        name: String,
        /// The value.
        value: String,
    },
    /// Those holding a lookup of this name with a value in `from..to`
    /// (either end open when absent), in (value, id) order.
    Range {
        /// The lookup's name.
        name: String,
        /// The first value included.
        from: Option<String>,
        /// The first value excluded.
        to: Option<String>,
    },
    /// Those written at or after an instant, in (updated_at, id) order.
    ChangedSince(Timestamp),
}

/// Where a page of records ends: the sort key of its last record (its id,
/// its lookup value, or its update instant in micros) and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordCursor {
    /// The sort key.
    pub key: String,
    /// The id.
    pub id: String,
}

/// A page of records of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordQuery {
    /// The kind.
    pub kind: String,
    /// Which ones.
    pub filter: RecordFilter,
    /// Only those after this point.
    pub after: Option<RecordCursor>,
    /// At most this many; at most [`RECORD_PAGE_MAX`].
    pub limit: usize,
}

/// The largest page of records a store returns.
pub const RECORD_PAGE_MAX: usize = 1000;

impl Record {
    /// The cursor that continues a listing after this record.
    pub fn cursor(&self, filter: &RecordFilter) -> RecordCursor {
        let key = match filter {
            RecordFilter::All | RecordFilter::Equals { .. } => self.id.clone(),
            RecordFilter::Range { name, .. } => self
                .lookups
                .iter()
                .find(|l| &l.name == name)
                .map(|l| l.value.clone())
                .unwrap_or_default(),
            RecordFilter::ChangedSince(_) => self.updated_at.micros().to_string(),
        };
        RecordCursor {
            key,
            id: self.id.clone(),
        }
    }
}

/// Decides a record write against the record as it stands (`current`):
/// the record it leaves, or why it changes nothing. Unique lookups are
/// checked by the caller, which knows who holds each value.
pub fn decide_write(
    write: &RecordWrite,
    current: Option<&Record>,
    now: Timestamp,
) -> Result<Option<Record>, Refused> {
    let conflict = || Refused::VersionConflict {
        kind: write.key().0.to_owned(),
        id: write.key().1.to_owned(),
        current: current.map(|r| r.version),
    };
    match (write.expect(), current) {
        (Expect::Any, _) | (Expect::Absent, None) => {}
        (Expect::Version(v), Some(record)) if record.version == v => {}
        _ => return Err(conflict()),
    }
    Ok(match write {
        RecordWrite::Put {
            kind,
            id,
            body,
            lookups,
            ..
        } => Some(Record {
            kind: kind.clone(),
            id: id.clone(),
            version: current.map_or(1, |r| r.version + 1),
            body: body.clone(),
            lookups: lookups.clone(),
            created_at: current.map_or(now, |r| r.created_at),
            updated_at: now,
        }),
        RecordWrite::Delete { .. } => None,
    })
}

/// A kind of record: a serde type with a name and the lookups it declares.
pub trait Kind: Serialize + DeserializeOwned {
    /// The kind's name in the store; never renamed.
    const KIND: &'static str;

    /// The values this record is found by.
    fn lookups(&self) -> Vec<Lookup> {
        Vec::new()
    }
}

/// A record read back as its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc<T> {
    /// The id.
    pub id: String,
    /// The version read.
    pub version: u64,
    /// When it was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// The entity.
    pub body: T,
}

impl<T: Kind> Doc<T> {
    /// Decodes a record of kind `T`.
    pub fn from_record(record: Record) -> Result<Doc<T>, StoreError> {
        let body = serde_json::from_str(&record.body).map_err(|e| {
            StoreError::Corrupt(format!("record {}/{}: {e}", record.kind, record.id))
        })?;
        Ok(Doc {
            id: record.id,
            version: record.version,
            created_at: record.created_at,
            updated_at: record.updated_at,
            body,
        })
    }
}

/// A write that stores `body` as record `id` of kind `T`.
pub fn put<T: Kind>(id: &str, body: &T, expect: Expect) -> RecordWrite {
    RecordWrite::Put {
        kind: T::KIND.to_owned(),
        id: id.to_owned(),
        body: serde_json::to_string(body).expect("record bodies serialize"),
        lookups: body.lookups(),
        expect,
    }
}

/// A write that removes record `id` of kind `T`.
pub fn delete<T: Kind>(id: &str, expect: Expect) -> RecordWrite {
    RecordWrite::Delete {
        kind: T::KIND.to_owned(),
        id: id.to_owned(),
        expect,
    }
}

/// Reads record `id` of kind `T`.
pub async fn get<T: Kind>(store: &dyn Store, id: &str) -> Result<Option<Doc<T>>, StoreError> {
    store
        .record(T::KIND.to_owned(), id.to_owned())
        .await?
        .map(Doc::from_record)
        .transpose()
}

/// The record of kind `T` holding `value` under the unique lookup `name`.
pub async fn find<T: Kind>(
    store: &dyn Store,
    name: &str,
    value: &str,
) -> Result<Option<Doc<T>>, StoreError> {
    let filter = RecordFilter::Equals {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let page = list::<T>(store, filter, None, 1).await?;
    Ok(page.into_iter().next())
}

/// Every record of kind `T` that `filter` selects, read a page at a time:
/// for kinds that stay few (plans, prices), or a job that visits each.
pub async fn list_all<T: Kind>(
    store: &dyn Store,
    filter: RecordFilter,
) -> Result<Vec<Doc<T>>, StoreError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .records(RecordQuery {
                kind: T::KIND.to_owned(),
                filter: filter.clone(),
                after,
                limit: RECORD_PAGE_MAX,
            })
            .await?;
        let full = page.len() == RECORD_PAGE_MAX;
        after = page.last().map(|r| r.cursor(&filter));
        for record in page {
            found.push(Doc::from_record(record)?);
        }
        if !full {
            return Ok(found);
        }
    }
}

/// A page of records of kind `T`.
pub async fn list<T: Kind>(
    store: &dyn Store,
    filter: RecordFilter,
    after: Option<RecordCursor>,
    limit: usize,
) -> Result<Vec<Doc<T>>, StoreError> {
    store
        .records(RecordQuery {
            kind: T::KIND.to_owned(),
            filter,
            after,
            limit,
        })
        .await?
        .into_iter()
        .map(Doc::from_record)
        .collect()
}

/// Up to `limit` records of kind `T` that `filter` lists after `after` and
/// `keep` keeps, reading pages of the most a store answers until the limit
/// is reached or the list ends; `key_of` gives a record's sort key under
/// `filter` (its lookup value, for a range), from which the next read goes on.
pub async fn collect<T: Kind>(
    store: &dyn Store,
    filter: &RecordFilter,
    mut after: Option<RecordCursor>,
    limit: usize,
    key_of: impl Fn(&Doc<T>) -> String,
    keep: impl Fn(&Doc<T>) -> bool,
) -> Result<Vec<Doc<T>>, StoreError> {
    let mut kept = Vec::with_capacity(limit);
    while kept.len() < limit {
        let page = list::<T>(store, filter.clone(), after.clone(), RECORD_PAGE_MAX).await?;
        let more = page.len() == RECORD_PAGE_MAX;
        for doc in page {
            after = Some(RecordCursor {
                key: key_of(&doc),
                id: doc.id.clone(),
            });
            if keep(&doc) {
                kept.push(doc);
                if kept.len() == limit {
                    break;
                }
            }
        }
        if !more {
            break;
        }
    }
    Ok(kept)
}

/// How a record write alone ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written<T> {
    /// Stored; here is what was stored.
    Stored(Doc<T>),
    /// Removed (or it was absent and any version was accepted).
    Deleted,
    /// The record was not at the expected version, or a unique lookup value
    /// is held by another record; nothing changed.
    Refused(Refused),
}

/// Applies one record write through the store's writer.
pub async fn write<T: Kind>(
    store: &dyn Store,
    write: RecordWrite,
) -> Result<Written<T>, StoreError> {
    match store.execute(Command::new(Op::Record(write))).await? {
        Executed::Fresh(Ok(Outcome::RecordPut(record))) => {
            Ok(Written::Stored(Doc::from_record(record)?))
        }
        Executed::Fresh(Ok(Outcome::RecordDeleted)) => Ok(Written::Deleted),
        Executed::Fresh(Err(refused)) => Ok(Written::Refused(refused)),
        other => Err(StoreError::Internal(format!(
            "a record write answered {other:?}"
        ))),
    }
}

/// How many times a read-modify-write of a record is tried when another
/// write got in between its read and its write: the one retry budget of
/// every record update, ledger command joined or not.
pub const RETRIES_MAX: usize = 16;

/// What a read-modify-write does with the record it read. Short-lived, and
/// moved once: its size is of no account.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Step<R> {
    /// Writes nothing, and answers `R`.
    Done(R),
    /// Executes the command — the record's write at the version read, alone
    /// or joined to a ledger operation and other records — and answers `R`
    /// with what the command did.
    Write(Command, R),
}

/// How [`modify`] ended. Short-lived, and moved once: its size is of no
/// account.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Modified<R> {
    /// Nothing was written.
    Done(R),
    /// The command was executed: what it answered (anything but a version
    /// conflict, which reads and decides again).
    Written(Executed, R),
}

/// Reads the record `id`, lets `step` decide what to write (it may read
/// more first), and executes that as one command: the record's write and
/// any ledger operation joined to it commit together or not at all. When
/// another write moved the record between the read and the write (a version
/// conflict on it), it reads and decides again, at most [`RETRIES_MAX`]
/// times: a read-modify-write safe between nodes.
pub async fn modify<'a, T: Kind, R, E: From<StoreError>>(
    store: &dyn Store,
    id: &str,
    mut step: impl FnMut(Option<Doc<T>>) -> BoxFuture<'a, Result<Step<R>, E>>,
) -> Result<Modified<R>, E> {
    for _ in 0..RETRIES_MAX {
        let current = get::<T>(store, id).await?;
        match step(current).await? {
            Step::Done(answer) => return Ok(Modified::Done(answer)),
            Step::Write(command, answer) => match store.execute(command).await? {
                // Only this record's conflict is settled by reading it again;
                // another joined record's is its caller's to answer.
                Executed::Fresh(Err(Refused::VersionConflict {
                    kind,
                    id: conflicted,
                    ..
                })) if kind == T::KIND && conflicted == id => continue,
                executed => return Ok(Modified::Written(executed, answer)),
            },
        }
    }
    Err(StoreError::Unavailable(format!("the {} record {id} kept changing; retry", T::KIND)).into())
}

/// How [`update`] ended.
#[derive(Debug)]
pub enum Updated<T> {
    /// Changed: the record as written.
    Changed(Doc<T>),
    /// Left as it was: absent, or the change changed nothing.
    Unchanged,
    /// Refused for another reason than a concurrent write (a unique lookup
    /// value another record holds).
    Refused(Refused),
}

/// Changes the record `id` by `change` ([`modify`] for a record alone):
/// written at the version it was read at, and read again when another write
/// got in first, within [`RETRIES_MAX`]. `change` answers the new body, or
/// none to leave the record as it is.
pub async fn update<T: Kind>(
    store: &dyn Store,
    id: &str,
    mut change: impl FnMut(&T) -> Option<T> + Send,
) -> Result<Updated<T>, StoreError> {
    update_joined(store, id, |body, _| {
        change(body).map(|next| (next, Vec::new()))
    })
    .await
}

/// [`update`] with other records written in the same transaction as the
/// change: `change` is given the body and the version it was read at, and
/// answers the new body with the writes to join (an event the change
/// causes), or none to leave the record as it is.
pub async fn update_joined<T: Kind>(
    store: &dyn Store,
    id: &str,
    mut change: impl FnMut(&T, u64) -> Option<(T, Vec<RecordWrite>)> + Send,
) -> Result<Updated<T>, StoreError> {
    let modified = modify::<T, (), StoreError>(store, id, |current| {
        let step = match current {
            Some(doc) => match change(&doc.body, doc.version) {
                Some((next, joined)) => Step::Write(
                    Command::new(Op::Record(put(id, &next, Expect::Version(doc.version))))
                        .with_records(joined),
                    (),
                ),
                None => Step::Done(()),
            },
            None => Step::Done(()),
        };
        Box::pin(std::future::ready(Ok(step)))
    })
    .await?;
    match modified {
        Modified::Done(()) => Ok(Updated::Unchanged),
        Modified::Written(Executed::Fresh(Ok(Outcome::RecordPut(record))), ()) => {
            Ok(Updated::Changed(Doc::from_record(record)?))
        }
        Modified::Written(Executed::Fresh(Ok(Outcome::RecordDeleted)), ()) => {
            Ok(Updated::Unchanged)
        }
        Modified::Written(Executed::Fresh(Err(refused)), ()) => Ok(Updated::Refused(refused)),
        Modified::Written(other, ()) => Err(StoreError::Internal(format!(
            "a record update answered {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_write(expect: Expect) -> RecordWrite {
        RecordWrite::Put {
            kind: "plan".into(),
            id: "pro".into(),
            body: "{}".into(),
            lookups: vec![Lookup::unique("slug", "pro")],
            expect,
        }
    }

    fn stored(version: u64) -> Record {
        Record {
            kind: "plan".into(),
            id: "pro".into(),
            version,
            body: "{\"old\":true}".into(),
            lookups: Vec::new(),
            created_at: Timestamp::from_secs(5),
            updated_at: Timestamp::from_secs(6),
        }
    }

    #[test]
    fn a_new_record_starts_at_version_one_and_an_update_keeps_its_creation() {
        let now = Timestamp::from_secs(10);
        let created = decide_write(&put_write(Expect::Absent), None, now)
            .unwrap()
            .unwrap();
        assert_eq!((created.version, created.created_at), (1, now));
        let old = stored(3);
        let updated = decide_write(&put_write(Expect::Version(3)), Some(&old), now)
            .unwrap()
            .unwrap();
        assert_eq!(updated.version, 4);
        assert_eq!(updated.created_at, old.created_at);
        assert_eq!(updated.updated_at, now);
    }

    #[test]
    fn a_write_expecting_another_version_is_refused_with_the_current_one() {
        let now = Timestamp::from_secs(10);
        let old = stored(3);
        for (expect, current) in [
            (Expect::Version(2), Some(&old)),
            (Expect::Absent, Some(&old)),
            (Expect::Version(1), None),
        ] {
            assert_eq!(
                decide_write(&put_write(expect), current, now),
                Err(Refused::VersionConflict {
                    kind: "plan".into(),
                    id: "pro".into(),
                    current: current.map(|r| r.version),
                })
            );
        }
        let delete = RecordWrite::Delete {
            kind: "plan".into(),
            id: "pro".into(),
            expect: Expect::Any,
        };
        assert_eq!(decide_write(&delete, None, now), Ok(None));
        assert_eq!(decide_write(&delete, Some(&old), now), Ok(None));
    }

    #[test]
    fn instants_sort_as_text_as_they_do_in_time() {
        let instants = [i64::MIN, -5, 0, 7, 1_800_000_000_000_000, i64::MAX];
        let texts: Vec<String> = instants
            .iter()
            .map(|m| sortable_instant(Timestamp::from_micros(*m)))
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        assert!(texts.iter().all(|t| t.len() == 20));
    }

    #[test]
    fn a_write_with_a_control_character_or_a_repeated_lookup_is_a_bug() {
        let mut write = put_write(Expect::Any);
        assert!(write.check().is_ok());
        if let RecordWrite::Put { lookups, .. } = &mut write {
            lookups.push(Lookup::unique("slug", "pro"));
        }
        assert!(write.check().is_err());
        let bad_id = RecordWrite::Delete {
            kind: "plan".into(),
            id: "a\nb".into(),
            expect: Expect::Any,
        };
        assert!(bad_id.check().is_err());
    }
}

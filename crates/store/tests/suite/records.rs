//! Records: versioned JSON documents with lookups, written alone or joined to a ledger write.

use ledger::{Reject, Timestamp};
use store::records::{
    Expect, Lookup, Record, RecordCursor, RecordFilter, RecordWrite, sortable_instant,
};
use store::{Command, Executed, Op, Outcome, RecordQuery, Refused, Store};

use crate::common::*;

fn put(id: &str, body: &str, lookups: Vec<Lookup>, expect: Expect) -> RecordWrite {
    RecordWrite::Put {
        kind: "plan".into(),
        id: id.into(),
        body: body.into(),
        lookups,
        expect,
    }
}

fn delete(id: &str, expect: Expect) -> RecordWrite {
    RecordWrite::Delete {
        kind: "plan".into(),
        id: id.into(),
        expect,
    }
}

/// Writes one record alone; answers what was stored or why nothing was.
async fn write(store: &dyn Store, write: RecordWrite) -> Result<Option<Record>, Refused> {
    match store
        .execute(Command::new(Op::Record(write)))
        .await
        .unwrap()
    {
        Executed::Fresh(Ok(Outcome::RecordPut(record))) => Ok(Some(record)),
        Executed::Fresh(Ok(Outcome::RecordDeleted)) => Ok(None),
        Executed::Fresh(Err(refused)) => Err(refused),
        other => panic!("{other:?}"),
    }
}

async fn page(
    store: &dyn Store,
    filter: RecordFilter,
    after: Option<RecordCursor>,
    limit: usize,
) -> Vec<String> {
    store
        .records(RecordQuery {
            kind: "plan".into(),
            filter,
            after,
            limit,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn conflict(id: &str, current: Option<u64>) -> Refused {
    Refused::VersionConflict {
        kind: "plan".into(),
        id: id.into(),
        current,
    }
}

store_test! {
    #[tokio::test]
    async fn a_record_is_stored_read_back_and_versioned(store) {
        let created = write(&*store, put("pro", r#"{"credits":100}"#, vec![], Expect::Absent))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((created.version, created.created_at), (1, START));
        store.clock.advance_secs(10);
        let updated = write(&*store, put("pro", r#"{"credits":200}"#, vec![], Expect::Version(1)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.created_at, START);
        assert_eq!(updated.updated_at, START.plus_secs(10));
        let read = store.record("plan".into(), "pro".into()).await.unwrap().unwrap();
        assert_eq!(read, updated);
        assert_eq!(read.body, r#"{"credits":200}"#);
        assert!(store.record("plan".into(), "free".into()).await.unwrap().is_none());
        assert!(store.record("package".into(), "pro".into()).await.unwrap().is_none());

        // Survives a restart, as every acknowledged write does.
        store.reopen().await;
        let reopened = store.record("plan".into(), "pro".into()).await.unwrap().unwrap();
        assert_eq!(reopened, updated);
    }
}

store_test! {
    #[tokio::test]
    async fn a_write_at_the_wrong_version_changes_nothing(store) {
        write(&*store, put("pro", "{}", vec![], Expect::Absent)).await.unwrap();
        assert_eq!(
            write(&*store, put("pro", r#"{"x":1}"#, vec![], Expect::Absent)).await,
            Err(conflict("pro", Some(1)))
        );
        assert_eq!(
            write(&*store, put("pro", r#"{"x":1}"#, vec![], Expect::Version(7))).await,
            Err(conflict("pro", Some(1)))
        );
        assert_eq!(
            write(&*store, put("free", "{}", vec![], Expect::Version(1))).await,
            Err(conflict("free", None))
        );
        assert_eq!(
            write(&*store, delete("pro", Expect::Version(2))).await,
            Err(conflict("pro", Some(1)))
        );
        let read = store.record("plan".into(), "pro".into()).await.unwrap().unwrap();
        assert_eq!((read.version, read.body.as_str()), (1, "{}"));
        assert!(store.record("plan".into(), "free".into()).await.unwrap().is_none());

        // Deleted at the right version; deleting what is gone is no error
        // when any version will do.
        assert_eq!(write(&*store, delete("pro", Expect::Version(1))).await, Ok(None));
        assert!(store.record("plan".into(), "pro".into()).await.unwrap().is_none());
        assert_eq!(write(&*store, delete("pro", Expect::Any)).await, Ok(None));
        // Created again, it starts over.
        let again = write(&*store, put("pro", "{}", vec![], Expect::Absent)).await.unwrap().unwrap();
        assert_eq!(again.version, 1);
    }
}

store_test! {
    #[tokio::test]
    async fn a_unique_lookup_value_belongs_to_one_record_at_a_time(store) {
        let slug = |v: &str| vec![Lookup::unique("slug", v), Lookup::ordered("tier", "paid")];
        write(&*store, put("pro", "{}", slug("pro"), Expect::Any)).await.unwrap();
        assert_eq!(
            write(&*store, put("pro-2", "{}", slug("pro"), Expect::Any)).await,
            Err(Refused::LookupTaken { kind: "plan".into(), name: "slug".into() })
        );
        assert!(store.record("plan".into(), "pro-2".into()).await.unwrap().is_none());
        // The record keeps its own value when written again.
        write(&*store, put("pro", r#"{"v":2}"#, slug("pro"), Expect::Version(1)))
            .await
            .unwrap();
        // Once the holder moves to another value, or is deleted, the value is free.
        write(&*store, put("pro", "{}", slug("pro-old"), Expect::Any)).await.unwrap();
        write(&*store, put("pro-2", "{}", slug("pro"), Expect::Any)).await.unwrap();
        write(&*store, delete("pro", Expect::Any)).await.unwrap();
        write(&*store, put("pro-3", "{}", slug("pro-old"), Expect::Any)).await.unwrap();
        let found = page(
            &*store,
            RecordFilter::Equals { name: "slug".into(), value: "pro".into() },
            None,
            10,
        )
        .await;
        assert_eq!(found, ["pro-2"]);
        let read = store.record("plan".into(), "pro-2".into()).await.unwrap().unwrap();
        let mut lookups = read.lookups.clone();
        lookups.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(lookups, slug("pro"));
        // Ordered values may be shared.
        let paid = page(
            &*store,
            RecordFilter::Equals { name: "tier".into(), value: "paid".into() },
            None,
            10,
        )
        .await;
        assert_eq!(paid, ["pro-2", "pro-3"]);
    }
}

store_test! {
    #[tokio::test]
    async fn two_writes_racing_for_one_unique_value_store_one(store) {
        let store = store.shared();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let lookups = vec![Lookup::unique("slug", "taken")];
                    write(&*store, put(&format!("p{i}"), "{}", lookups, Expect::Absent)).await
                })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => stored += 1,
                Err(Refused::LookupTaken { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(stored, 1);
    }
}

store_test! {
    #[tokio::test]
    async fn records_are_listed_in_pages_by_id_by_lookup_range_and_by_change(store) {
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            store.clock.advance_secs(1);
            let renews = Timestamp::from_secs(1_000 - i as i64 * 100);
            let lookups = vec![Lookup::instant("renews_at", renews)];
            write(&*store, put(id, "{}", lookups, Expect::Any)).await.unwrap();
        }
        // By id, two at a time.
        let first = page(&*store, RecordFilter::All, None, 2).await;
        assert_eq!(first, ["a", "b"]);
        let cursor = |id: &str| Some(RecordCursor { key: id.into(), id: id.into() });
        assert_eq!(page(&*store, RecordFilter::All, cursor("b"), 2).await, ["c", "d"]);
        assert_eq!(page(&*store, RecordFilter::All, cursor("d"), 2).await, ["e"]);

        // Due for renewal before an instant, soonest first: e (600), d (700), c (800).
        let due = RecordFilter::Range {
            name: "renews_at".into(),
            from: None,
            to: Some(sortable_instant(Timestamp::from_secs(801))),
        };
        let soonest = store
            .records(RecordQuery { kind: "plan".into(), filter: due.clone(), after: None, limit: 2 })
            .await
            .unwrap();
        let ids: Vec<&str> = soonest.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["e", "d"]);
        let next = page(&*store, due.clone(), Some(soonest[1].cursor(&due)), 2).await;
        assert_eq!(next, ["c"]);
        let from = RecordFilter::Range {
            name: "renews_at".into(),
            from: Some(sortable_instant(Timestamp::from_secs(900))),
            to: None,
        };
        assert_eq!(page(&*store, from, None, 10).await, ["b", "a"]);

        // Changed since an instant, in the order they were written.
        store.clock.advance_secs(1);
        write(&*store, put("a", r#"{"v":2}"#, vec![], Expect::Any)).await.unwrap();
        let since = RecordFilter::ChangedSince(START.plus_secs(4));
        let changed = store
            .records(RecordQuery { kind: "plan".into(), filter: since.clone(), after: None, limit: 1 })
            .await
            .unwrap();
        assert_eq!(changed[0].id, "d");
        let rest = page(&*store, since.clone(), Some(changed[0].cursor(&since)), 10).await;
        assert_eq!(rest, ["e", "a"]);
    }
}

store_test! {
    #[tokio::test]
    async fn a_record_joined_to_a_grant_commits_with_it_or_not_at_all(store) {
        run(&store, create("a")).await.unwrap();
        let event = |expect| put("evt_1", r#"{"processed":true}"#, vec![], expect);
        let granted = store
            .execute(Command::new(grant("a", 10)).with_records(vec![event(Expect::Absent)]))
            .await
            .unwrap();
        assert!(matches!(granted, Executed::Fresh(Ok(Outcome::Granted { .. }))));
        assert!(store.record("plan".into(), "evt_1".into()).await.unwrap().is_some());
        assert_eq!(available(&store, "a", START).await, c(10));

        // The record is already there: nothing of the command applies.
        let again = store
            .execute(Command::new(grant("a", 10)).with_records(vec![event(Expect::Absent)]))
            .await
            .unwrap();
        assert_eq!(again, Executed::Fresh(Err(conflict("evt_1", Some(1)))));
        assert_eq!(available(&store, "a", START).await, c(10));

        // The ledger refuses: the record is not written.
        let refused = store
            .execute(
                Command::new(grant("nobody", 10))
                    .with_records(vec![put("evt_2", "{}", vec![], Expect::Absent)]),
            )
            .await
            .unwrap();
        assert_eq!(refused, Executed::Fresh(Err(Refused::Ledger(Reject::AccountNotFound))));
        assert!(store.record("plan".into(), "evt_2".into()).await.unwrap().is_none());
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    /// A payment event retried: the grant's external id answers first, so
    /// the retry is the first grant again, not a conflict on the event.
    #[tokio::test]
    async fn a_retried_grant_with_its_event_record_is_the_first_grant_again(store) {
        run(&store, create("a")).await.unwrap();
        let grant = || {
            let mut op = grant("a", 10);
            if let Op::Grant { grant, .. } = &mut op {
                grant.external_id = Some(ledger::ExternalId::parse("cs_1").unwrap());
            }
            Command::new(op).with_records(vec![put("evt_1", "{}", vec![], Expect::Absent)])
        };
        let first = store.execute(grant()).await.unwrap();
        let Executed::Fresh(Ok(Outcome::Granted { tx, .. })) = first else { panic!("{first:?}") };
        let again = store.execute(grant()).await.unwrap();
        let Executed::Existing(Outcome::Granted { tx: same, .. }) = again else {
            panic!("{again:?}")
        };
        assert_eq!(same.id, tx.id);
        assert_eq!(store.record("plan".into(), "evt_1".into()).await.unwrap().unwrap().version, 1);
        assert_eq!(available(&store, "a", START).await, c(10));
    }
}

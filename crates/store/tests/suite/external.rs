//! External ids: a grant or consume names its cause, and the same cause applies once, forever.

use ledger::{ExternalId, Metadata, NewGrant, Reject, Source};
use store::{Charge, Clock, Command, Executed, Op, Outcome};

use crate::common::*;

fn ext(text: &str) -> Option<ExternalId> {
    Some(ExternalId::parse(text).unwrap())
}

fn grant_for(account: &str, credits: i64, external: &str) -> Op {
    Op::Grant {
        account: id(account),
        grant: NewGrant {
            amount: c(credits),
            source: Source::Purchase,
            priority: None,
            effective_at: None,
            expires_at: None,
            metadata: Metadata::empty(),
            external_id: ext(external),
            actor: None,
            reason: None,
        },
    }
}

fn consume_for(account: &str, credits: i64, external: &str) -> Op {
    Op::Consume {
        account: id(account),
        charge: Charge::Amount(c(credits)),
        metadata: Metadata::empty(),
        external_id: ext(external),
    }
}

store_test! {
    #[tokio::test]
    async fn a_grant_sent_again_with_its_external_id_answers_the_first_and_grants_nothing(store) {
        run(&store, create("a")).await.unwrap();
        let Outcome::Granted { lot, tx } = run(&store, grant_for("a", 10, "cs_1")).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(lot.external_id, ext("cs_1"));
        assert_eq!(tx.external_id, ext("cs_1"));
        // Three days later, long after any idempotency key is forgotten.
        store.clock.advance_secs(3 * 86_400);
        store.reopen().await;
        let again = execute(&store, Command::new(grant_for("a", 10, "cs_1"))).await;
        let Executed::Existing(Outcome::Granted { lot: first_lot, tx: first_tx }) = again else {
            panic!("{again:?}")
        };
        assert_eq!((first_lot.id, first_tx.id), (lot.id, tx.id));
        assert_eq!(first_tx.created_at, START);
        assert_eq!(available(&store, "a", store.clock.now()).await, c(10));
        // Read back, the lot and the transaction carry it.
        assert_eq!(store.lot(lot.id).await.unwrap().unwrap().external_id, ext("cs_1"));
        assert_eq!(store.transaction(tx.id).await.unwrap().unwrap().external_id, ext("cs_1"));
    }
}

store_test! {
    #[tokio::test]
    async fn an_external_id_used_with_different_content_is_a_conflict(store) {
        run(&store, create("a")).await.unwrap();
        run(&store, grant_for("a", 10, "cs_1")).await.unwrap();
        assert_eq!(run(&store, grant_for("a", 11, "cs_1")).await, Err(Reject::ExternalIdConflict));
        // One namespace per account, across grants and consumes.
        assert_eq!(run(&store, consume_for("a", 1, "cs_1")).await, Err(Reject::ExternalIdConflict));
        assert_eq!(available(&store, "a", START).await, c(10));
        // Another account has namespaces of its own.
        run(&store, create("b")).await.unwrap();
        run(&store, grant_for("b", 5, "cs_1")).await.unwrap();
        assert_eq!(available(&store, "b", START).await, c(5));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_consume_sent_again_with_its_external_id_spends_once(store) {
        open_account(&store, "a", 10).await;
        let Outcome::Consumed { tx, .. } = run(&store, consume_for("a", 4, "call_1")).await.unwrap()
        else {
            panic!()
        };
        store.clock.advance_secs(5);
        let again = execute(&store, Command::new(consume_for("a", 4, "call_1"))).await;
        let Executed::Existing(Outcome::Consumed { tx: first, balance }) = again else {
            panic!("{again:?}")
        };
        assert_eq!(first.id, tx.id);
        assert_eq!(balance.available, c(6));
        assert_eq!(available(&store, "a", store.clock.now()).await, c(6));
    }
}

store_test! {
    #[tokio::test]
    async fn one_external_id_sent_many_times_at_once_applies_once(store) {
        open_account(&store, "a", 100).await;
        let shared = store.shared();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = shared.clone();
                tokio::spawn(async move {
                    store.execute(Command::new(consume_for("a", 7, "call_1"))).await.unwrap()
                })
            })
            .collect();
        let (mut fresh, mut existing) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Executed::Fresh(Ok(_)) => fresh += 1,
                Executed::Existing(_) => existing += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((fresh, existing), (1, 15));
        assert_eq!(available(&store, "a", START).await, c(93));
    }
}

store_test! {
    #[tokio::test]
    async fn a_refused_write_does_not_use_up_its_external_id(store) {
        open_account(&store, "a", 3).await;
        assert!(matches!(
            run(&store, consume_for("a", 5, "call_1")).await,
            Err(Reject::InsufficientCredits { .. })
        ));
        run(&store, grant("a", 10)).await.unwrap();
        let done = execute(&store, Command::new(consume_for("a", 5, "call_1"))).await;
        assert!(matches!(done, Executed::Fresh(Ok(Outcome::Consumed { .. }))), "{done:?}");
        let refused = execute(&store, Command::new(consume_for("a", 5, "call_1"))).await;
        assert!(matches!(refused, Executed::Existing(_)), "{refused:?}");
        // A duplicate writes none of the records joined to it.
        let joined = Command::new(consume_for("a", 5, "call_1")).with_records(vec![
            store::records::RecordWrite::Put {
                kind: "usage_event".into(),
                id: "call_1".into(),
                body: "{}".into(),
                lookups: Vec::new(),
                expect: store::records::Expect::Absent,
            },
        ]);
        assert!(matches!(execute(&store, joined).await, Executed::Existing(_)));
        assert!(store.record("usage_event".into(), "call_1".into()).await.unwrap().is_none());
    }
}

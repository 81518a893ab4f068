//! Idempotency keys: the first answer is replayed, a different request is refused, old keys go.

use ledger::Reject;
use store::{Executed, Refused, StoredResponse};

use crate::common::*;

store_test! {
    #[tokio::test]
    async fn idempotency_key_replays_the_first_answer_and_rejects_a_different_request(store) {
        open_account(&store, "a", 10).await;
        let first = store
            .execute(keyed(consume("a", 4), "k1", b"same"))
            .await
            .unwrap();
        let Executed::Fresh(Ok(outcome)) = &first else {
            panic!("{first:?}")
        };
        let again = store
            .execute(keyed(consume("a", 4), "k1", b"same"))
            .await
            .unwrap();
        assert_eq!(again, Executed::Replayed(render(&Ok(outcome.clone()))));
        let other = store
            .execute(keyed(consume("a", 5), "k1", b"different"))
            .await
            .unwrap();
        assert_eq!(other, Executed::Fresh(Err(Refused::Ledger(Reject::IdempotencyConflict))));
        assert_eq!(available(&store, "a", START).await, c(6));

        // A rejection is an answer too, and is replayed.
        let refused = store
            .execute(keyed(consume("a", 50), "k2", b"big"))
            .await
            .unwrap();
        assert!(matches!(
            refused,
            Executed::Fresh(Err(Refused::Ledger(Reject::InsufficientCredits { .. })))
        ));
        run(&store, grant("a", 100)).await.unwrap();
        let replayed = store
            .execute(keyed(consume("a", 50), "k2", b"big"))
            .await
            .unwrap();
        assert!(matches!(
            replayed,
            Executed::Replayed(StoredResponse { status: 402, .. })
        ));
        assert_eq!(available(&store, "a", START).await, c(106));
    }
}

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_key_sent_concurrently_applies_once(store) {
        open_account(&store, "a", 100).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.shared();
                tokio::spawn(async move {
                    store
                        .execute(keyed(consume("a", 10), "once", b"x"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut fresh = 0;
        for task in tasks {
            if let Executed::Fresh(result) = task.await.unwrap() {
                result.unwrap();
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1);
        assert_eq!(available(&store, "a", START).await, c(90));
    }
}

store_test! {
    #[tokio::test]
    async fn idempotency_keys_are_kept_until_pruned_by_age(store) {
        open_account(&store, "a", 10).await;
        store
            .execute(keyed(consume("a", 1), "old", b"x"))
            .await
            .unwrap();
        store.clock.advance_secs(25 * 3600);
        store
            .execute(keyed(consume("a", 1), "new", b"x"))
            .await
            .unwrap();
        // Pruning what is older than 24 hours keeps the recent key only.
        let pruned = store
            .prune_idempotency(START.plus_secs(25 * 3600 - 24 * 3600))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        let old = store
            .execute(keyed(consume("a", 1), "old", b"x"))
            .await
            .unwrap();
        assert!(matches!(old, Executed::Fresh(Ok(_))));
        let new = store
            .execute(keyed(consume("a", 1), "new", b"x"))
            .await
            .unwrap();
        assert!(matches!(new, Executed::Replayed(_)));
    }
}

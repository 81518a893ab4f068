//! Past balances: an account's book as it stood at an earlier instant.

use ledger::{Amount, Metadata, NewGrant, Source, Timestamp};
use store::{Op, Outcome};

use crate::common::*;
use crate::support::TestStore;

/// The available and held balances of `account` as they stood at `at`.
async fn balance_at(store: &TestStore, account: &str, at: Timestamp) -> (Amount, Amount) {
    let book = store.book(id(account), Some(at)).await.unwrap().unwrap();
    let balance = book.balance(at);
    (balance.available, balance.held)
}

store_test! {
    #[tokio::test]
    async fn balance_at_a_past_instant_is_rebuilt_from_the_journal(store) {
        open_account(&store, "a", 100).await;
        store.clock.advance_secs(10);
        run(&store, consume("a", 30)).await.unwrap();
        store.clock.advance_secs(10);
        let hold = place_hold(&store, "a", 20).await;
        store.clock.advance_secs(10);
        run(
            &store,
            Op::Commit {
                hold,
                amount: c(5),
                metadata: Metadata::empty(),
            },
        )
        .await
        .unwrap();

        let at = |secs: i64| balance_at(&store, "a", START.plus_secs(secs));
        assert_eq!(at(5).await, (c(100), c(0)));
        assert_eq!(at(15).await, (c(70), c(0)));
        assert_eq!(at(25).await, (c(50), c(20)));
        assert_eq!(at(35).await, (c(65), c(0)));
        // Before the account had anything.
        assert_eq!(at(-5).await, (c(0), c(0)));
    }
}

store_test! {
    #[tokio::test]
    async fn a_past_balance_counts_what_a_later_void_or_expiry_took_away(store) {
        run(&store, create("a")).await.unwrap();
        let Outcome::Granted { lot, .. } = run(&store, grant("a", 10)).await.unwrap() else {
            panic!()
        };
        let reward = NewGrant {
            amount: c(5),
            source: Source::DailyReward,
            priority: None,
            effective_at: None,
            expires_at: Some(START.plus_secs(30)),
            metadata: Metadata::empty(),
            external_id: None,
            actor: None,
            reason: None,
        };
        let reward = Op::Grant {
            account: id("a"),
            grant: reward,
        };
        run(&store, reward).await.unwrap();
        store.clock.advance_secs(10);
        let void = Op::Void {
            lot: lot.id,
            metadata: Metadata::empty(),
        };
        run(&store, void).await.unwrap();
        // The reward's expiry is written long after it happened.
        store.clock.advance_secs(90);
        let settled = run(&store, Op::Settle { account: id("a") }).await.unwrap();
        assert_eq!(settled, Outcome::Settled { transactions: 1 });

        let at = |secs: i64| balance_at(&store, "a", START.plus_secs(secs));
        assert_eq!(at(5).await, (c(15), c(0)));
        let before_the_void = store
            .book(id("a"), Some(START.plus_secs(9)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before_the_void.lot(lot.id).unwrap().voided_at, None);
        assert_eq!(at(10).await, (c(5), c(0)));
        assert_eq!(at(29).await, (c(5), c(0)));
        assert_eq!(at(30).await, (c(0), c(0)));
        assert_eq!(at(100).await, (c(0), c(0)));
    }
}

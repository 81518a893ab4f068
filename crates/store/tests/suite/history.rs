//! Past balances: an account's book as it stood at an earlier instant.

use ledger::{Amount, Metadata, Timestamp};
use store::Op;

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

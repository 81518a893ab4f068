//! Reads of the present: books, lots and standings as the writes left them.

use ledger::{Amount, Timestamp};
use store::{Op, Outcome};

use crate::common::*;
use crate::support::TestStore;

store_test! {
    /// A book read in one statement (as PostgreSQL reads it) or from memory
    /// (as SQLite keeps it) brings the account, every live lot and every
    /// pending hold, and nothing spent, expired or resolved.
    #[tokio::test]
    async fn a_book_read_brings_the_live_lots_and_pending_holds(store) {
        run(&store, create("r")).await.unwrap();
        run(&store, grant("r", 10)).await.unwrap();
        run(&store, grant("r", 5)).await.unwrap();
        // Empties the first lot (burn-down is oldest first at equal priority).
        run(&store, consume("r", 10)).await.unwrap();
        run(&store, hold("r", 2)).await.unwrap();
        let Outcome::Held { hold: released, .. } = run(&store, hold("r", 1)).await.unwrap() else {
            panic!("not a hold");
        };
        run(&store, release(released.id)).await.unwrap();

        let book = store.book(id("r"), None).await.unwrap().unwrap();
        assert_eq!(book.account.id, id("r"));
        assert_eq!(book.lots().len(), 1, "{book:?}");
        assert_eq!(book.holds().len(), 1, "{book:?}");
        assert_eq!(book.holds()[0].amount, c(2));
        let balance = book.balance(START);
        assert_eq!((balance.available, balance.held), (c(3), c(2)));
        assert!(store.book(id("nobody"), None).await.unwrap().is_none());
    }
}

store_test! {
    #[tokio::test]
    async fn a_lot_is_live_while_credits_remain_in_it(store) {
        // Lots whose `live` flag disagrees with what remains in them, and live lots.
        const OUT_OF_STEP: &str = "SELECT count(*) FROM lots WHERE live != (remaining > 0)";
        const LIVE: &str = "SELECT count(*) FROM lots WHERE live";
        open_account(&store, "l", 10).await;
        run(&store, consume("l", 4)).await.unwrap();
        assert_eq!(store.select_int(OUT_OF_STEP).await, 0);
        // Emptied: the book no longer loads it.
        run(&store, consume("l", 6)).await.unwrap();
        assert_eq!(store.select_int(OUT_OF_STEP).await, 0);
        run(&store, grant("l", 5)).await.unwrap();
        // A hold escrows everything from the new lot, emptying it...
        let hold = place_hold(&store, "l", 5).await;
        assert_eq!(
            (
                store.select_int(OUT_OF_STEP).await,
                store.select_int(LIVE).await
            ),
            (0, 0)
        );
        // ...and releasing it refills the lot, which is live again.
        run(&store, release(hold)).await.unwrap();
        assert_eq!(
            (
                store.select_int(OUT_OF_STEP).await,
                store.select_int(LIVE).await
            ),
            (0, 1)
        );
        // A book read from the database afresh, after a restart.
        store.reopen().await;
        let book = store.book(id("l"), None).await.unwrap().unwrap();
        let remaining: Vec<Amount> = book.lots().iter().map(|l| l.remaining).collect();
        assert_eq!(remaining, vec![c(5)]);
    }
}

/// The available balance a check at `now` would see, from the standing,
/// which must cover `now`.
async fn checked(store: &TestStore, account: &str, now: Timestamp) -> Amount {
    let standing = store.standing(id(account), now).await.unwrap().unwrap();
    assert!(standing.covers(now));
    standing.available
}

store_test! {
    #[tokio::test]
    async fn a_standing_follows_every_write_and_the_clock(store) {
        open_account(&store, "a", 10).await;
        let mut expiring = grant("a", 5);
        if let Op::Grant { grant, .. } = &mut expiring {
            grant.expires_at = Some(START.plus_secs(100));
        }
        run(&store, expiring).await.unwrap();
        assert_eq!(checked(&store, "a", START).await, c(15));
        // A write changes the standing before it is answered.
        run(&store, consume("a", 3)).await.unwrap();
        assert_eq!(checked(&store, "a", START).await, c(12));
        // The expiring lot went first; once it expires, the standing read
        // for that instant no longer counts it.
        assert_eq!(checked(&store, "a", START.plus_secs(100)).await, c(10));
        assert!(store.standing(id("nobody"), START).await.unwrap().is_none());

        // After a restart, standings are read again, and writes replace them.
        store.reopen().await;
        assert_eq!(checked(&store, "a", START).await, c(12));
        run(&store, consume("a", 2)).await.unwrap();
        assert_eq!(checked(&store, "a", START).await, c(10));
    }
}

store_test! {
    /// The pending holds are counted and summed across every account; a
    /// released hold is neither.
    #[tokio::test]
    async fn pending_holds_are_counted_and_summed_across_accounts(store) {
        let none = store.pending_holds().await.unwrap();
        assert_eq!((none.count, none.amount), (0, Amount::ZERO));
        open_account(&store, "p1", 10).await;
        open_account(&store, "p2", 10).await;
        place_hold(&store, "p1", 2).await;
        place_hold(&store, "p2", 3).await;
        let released = place_hold(&store, "p2", 4).await;
        run(&store, release(released)).await.unwrap();

        let pending = store.pending_holds().await.unwrap();
        assert_eq!((pending.count, pending.amount), (2, c(5)));
    }
}

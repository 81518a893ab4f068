//! Journal pages filtered by kinds and by the source of a grant's lot, and
//! what an account spent in a window.

use ledger::{Source, TxId, TxKind};
use store::{Op, Outcome, TxFilter};

use crate::common::*;
use crate::support::TestStore;

/// A grant of `credits` from `source`.
fn grant_from(account: &str, credits: i64, source: Source) -> Op {
    let mut op = grant(account, credits);
    if let Op::Grant { grant, .. } = &mut op {
        grant.source = source;
    }
    op
}

/// Writes `op` and answers its transaction's id.
async fn tx_of(store: &TestStore, op: Op) -> TxId {
    match run(store, op).await.unwrap() {
        Outcome::Granted { tx, .. } | Outcome::Consumed { tx, .. } => tx.id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Every page of `filter`, followed cursor by cursor, as ids newest first.
async fn all_pages(store: &TestStore, mut filter: TxFilter) -> Vec<TxId> {
    let mut listed = Vec::new();
    loop {
        let page = store.transactions(filter.clone()).await.unwrap();
        listed.extend(page.iter().map(|t| t.id));
        match filter.next_cursor(&page) {
            Some(next) => filter.before = Some(next),
            None => return listed,
        }
    }
}

/// An account with grants of three sources between consumes, and the ids
/// of its purchases and promotions, oldest first.
async fn mixed_history(store: &TestStore) -> (Vec<TxId>, Vec<TxId>) {
    run(store, create("a")).await.unwrap();
    let (mut purchases, mut promos) = (Vec::new(), Vec::new());
    for round in 0..5 {
        purchases.push(tx_of(store, grant_from("a", 10, Source::Purchase)).await);
        tx_of(store, consume("a", 1)).await;
        if round % 2 == 0 {
            promos.push(tx_of(store, grant_from("a", 3, Source::Promo)).await);
        }
        tx_of(store, grant_from("a", 1, Source::Admin)).await;
        tx_of(store, consume("a", 2)).await;
    }
    (purchases, promos)
}

store_test! {
    #[tokio::test]
    async fn grants_are_listed_by_source_page_by_page(store) {
        let (purchases, promos) = mixed_history(&store).await;
        let mut filter = TxFilter::new(id("a"), 2);
        filter.sources = vec![Source::Purchase];
        let newest_first: Vec<TxId> = purchases.iter().rev().copied().collect();
        assert_eq!(all_pages(&store, filter.clone()).await, newest_first);

        filter.sources = vec![Source::Promo, Source::Purchase];
        filter.kinds = vec![TxKind::Consume, TxKind::Grant];
        let mut both: Vec<TxId> = purchases.iter().chain(&promos).copied().collect();
        both.sort_by(|a, b| b.cmp(a));
        assert_eq!(all_pages(&store, filter.clone()).await, both);

        // A source keeps only grants: with kinds that leave grants out, nothing.
        filter.kinds = vec![TxKind::Consume];
        assert!(store.transactions(filter).await.unwrap().is_empty());
    }
}

store_test! {
    #[tokio::test]
    async fn several_kinds_are_listed_together_within_a_time_window(store) {
        run(&store, create("a")).await.unwrap();
        tx_of(&store, grant("a", 100)).await;
        store.clock.advance_secs(10);
        let consumed = tx_of(&store, consume("a", 5)).await;
        let hold = place_hold(&store, "a", 10).await;
        let committed = match run(&store, Op::Commit {
            hold,
            amount: c(4),
            metadata: ledger::Metadata::empty(),
        })
        .await
        .unwrap()
        {
            Outcome::Committed { tx, .. } => tx.id,
            other => panic!("unexpected outcome {other:?}"),
        };
        store.clock.advance_secs(10);
        tx_of(&store, consume("a", 1)).await;

        let mut filter = TxFilter::new(id("a"), 1);
        filter.kinds = vec![TxKind::Consume, TxKind::HoldCommit];
        filter.from = Some(START.plus_secs(5));
        filter.to = Some(START.plus_secs(15));
        assert_eq!(all_pages(&store, filter).await, vec![committed, consumed]);
    }
}

store_test! {
    #[tokio::test]
    async fn spending_in_a_window_counts_usage_net_of_refunds(store) {
        open_account(&store, "a", 100).await;
        tx_of(&store, consume("a", 7)).await;
        store.clock.advance_secs(10);
        let spent = tx_of(&store, consume("a", 20)).await;
        run(&store, Op::Refund {
            tx: spent,
            amount: Some(c(5)),
            metadata: ledger::Metadata::empty(),
        })
        .await
        .unwrap();
        // Another account's spending is not this one's.
        open_account(&store, "b", 100).await;
        tx_of(&store, consume("b", 50)).await;
        store.clock.advance_secs(10);

        let window = |from: i64| store.usage_between(id("a"), START.plus_secs(from), START.plus_secs(60));
        assert_eq!(window(5).await.unwrap(), c(15));
        assert_eq!(window(0).await.unwrap(), c(22));
        assert_eq!(window(15).await.unwrap(), c(0));
    }
}

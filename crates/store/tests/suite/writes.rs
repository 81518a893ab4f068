//! Writes: grants, consumes, refunds, voids, feature prices and settling, and their answers.

use ledger::{Amount, Feature, FeatureId, Metadata, NewGrant, Reject, Source, TxKind};
use store::{Charge, Op, Outcome, TxFilter};

use crate::common::*;

store_test! {
    #[tokio::test]
    async fn a_grant_and_a_consume_round_trip(store) {
        run(&store, create("a")).await.unwrap();
        run(&store, grant("a", 10)).await.unwrap();
        let Outcome::Consumed { balance, .. } = run(&store, consume("a", 4)).await.unwrap() else {
            panic!()
        };
        assert_eq!(balance.available, c(6));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn acknowledged_writes_survive_reopening(store) {
        open_account(&store, "a", 10).await;
        let Outcome::Consumed { tx: before, .. } = run(&store, consume("a", 3)).await.unwrap()
        else {
            panic!()
        };
        store.reopen().await;
        assert_eq!(available(&store, "a", START).await, c(7));
        // Ids continue after the ones already used.
        let Outcome::Consumed { tx, .. } = run(&store, consume("a", 1)).await.unwrap() else {
            panic!()
        };
        assert!(tx.id.0 > before.id.0, "{} after {}", tx.id, before.id);
    }
}

store_test! {
    #[tokio::test]
    async fn consume_and_refund_in_one_batch_see_each_other(store) {
        open_account(&store, "a", 10).await;
        let Outcome::Consumed { tx, .. } = run(&store, consume("a", 4)).await.unwrap() else {
            panic!()
        };
        // Two refunds of the whole amount race: exactly one succeeds.
        let refund = || Op::Refund {
            tx: tx.id,
            amount: None,
            metadata: Metadata::empty(),
        };
        let (a, b) = tokio::join!(run(&store, refund()), run(&store, refund()));
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "{a:?} {b:?}"
        );
        assert_eq!(available(&store, "a", START).await, c(10));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_void_removes_what_remains_of_a_grant_once(store) {
        run(&store, create("a")).await.unwrap();
        let Outcome::Granted { lot, .. } = run(&store, grant("a", 10)).await.unwrap() else {
            panic!()
        };
        run(&store, consume("a", 4)).await.unwrap();
        let void = || Op::Void {
            lot: lot.id,
            metadata: Metadata::empty(),
        };
        let Outcome::Voided { lot: voided, tx } = run(&store, void()).await.unwrap() else {
            panic!()
        };
        assert_eq!((voided.remaining, voided.voided_at), (c(0), Some(START)));
        assert_eq!((tx.kind, tx.amount), (TxKind::Void, c(-6)));
        assert_eq!(available(&store, "a", START).await, c(0));
        assert_eq!(run(&store, void()).await, Err(Reject::GrantVoided));
        assert!(matches!(
            run(&store, consume("a", 1)).await,
            Err(Reject::InsufficientCredits { .. })
        ));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn consume_by_feature_uses_the_stored_price(store) {
        open_account(&store, "a", 1000).await;
        let by_feature = |quantity| Op::Consume {
            account: id("a"),
            charge: Charge::Feature {
                feature: FeatureId::parse("tokens").unwrap(),
                quantity: c(quantity),
            },
            metadata: Metadata::empty(),
            external_id: None,
        };
        let missing = run(&store, by_feature(10)).await;
        assert_eq!(missing, Err(Reject::FeatureNotFound));
        let price = Feature::new(
            FeatureId::parse("tokens").unwrap(),
            Amount::parse("0.1").unwrap(),
            START,
        )
        .unwrap();
        run(&store, Op::PutFeature(price)).await.unwrap();
        let Outcome::Consumed { tx, balance } = run(&store, by_feature(1500)).await.unwrap() else {
            panic!()
        };
        assert_eq!(tx.amount, c(-150));
        assert_eq!(balance.available, c(850));
        assert_eq!(tx.feature.unwrap().1, c(1500));
    }
}

store_test! {
    #[tokio::test]
    async fn sweep_finds_and_settles_due_accounts(store) {
        open_account(&store, "a", 0).await;
        open_account(&store, "b", 10).await;
        run(
            &store,
            Op::Grant {
                account: id("a"),
                grant: NewGrant {
                    amount: c(5),
                    source: Source::DailyReward,
                    priority: None,
                    effective_at: None,
                    expires_at: Some(START.plus_secs(60)),
                    metadata: Metadata::empty(),
                    external_id: None,
                    actor: None,
                    reason: None,
                },
            },
        )
        .await
        .unwrap();
        assert!(store.due_accounts(START, 10).await.unwrap().is_empty());
        store.clock.advance_secs(60);
        let due = store.due_accounts(START.plus_secs(60), 10).await.unwrap();
        assert_eq!(due, vec![id("a")]);
        let settled = run(&store, Op::Settle { account: id("a") }).await.unwrap();
        assert_eq!(settled, Outcome::Settled { transactions: 1 });
        assert!(
            store
                .due_accounts(START.plus_secs(60), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let txs = store
            .transactions(TxFilter {
                account: id("a"),
                kinds: vec![TxKind::Expire],
                sources: Vec::new(),
                from: None,
                to: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].amount, c(-5));
    }
}

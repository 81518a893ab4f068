//! Claw-backs: credits of a grant found by its external id taken back, into debt if spent, once.

use ledger::{ExternalId, Metadata, NewGrant, Origin, Reject, Share, Source, TxKind};
use store::{Charge, Clock, Command, Executed, Op, Outcome};

use crate::common::*;

fn ext(text: &str) -> ExternalId {
    ExternalId::parse(text).unwrap()
}

fn purchase(account: &str, credits: i64, external: &str) -> Op {
    Op::Grant {
        account: id(account),
        grant: NewGrant {
            amount: c(credits),
            source: Source::Purchase,
            priority: None,
            effective_at: None,
            expires_at: None,
            metadata: Metadata::empty(),
            external_id: Some(ext(external)),
            actor: None,
            reason: None,
        },
    }
}

fn claw_back(account: &str, grant: &str, credits: i64, external: Option<&str>) -> Op {
    Op::ClawBack {
        account: id(account),
        grant: ext(grant),
        amount: c(credits),
        metadata: Metadata::empty(),
        external_id: external.map(ext),
    }
}

store_test! {
    #[tokio::test]
    async fn a_claw_back_of_spent_credits_runs_into_debt_once(store) {
        run(&store, create("a")).await.unwrap();
        let Outcome::Granted { lot, .. } =
            run(&store, purchase("a", 10, "checkout:cs_1")).await.unwrap()
        else {
            panic!()
        };
        run(&store, consume("a", 7)).await.unwrap();
        let op = || claw_back("a", "checkout:cs_1", 10, Some("refund:re_1"));
        let Outcome::ClawedBack { tx, balance } = run(&store, op()).await.unwrap() else {
            panic!()
        };
        assert_eq!((tx.kind, tx.amount, tx.lot), (TxKind::ClawBack, c(-10), Some(lot.id)));
        assert_eq!(tx.external_id, Some(ext("refund:re_1")));
        assert_eq!(
            tx.sources,
            vec![
                Share { origin: Origin::Lot(lot.id), amount: c(3) },
                Share { origin: Origin::Debt, amount: c(7) },
            ]
        );
        // Debt beyond the overdraft limit of zero.
        assert_eq!((balance.available, balance.debt), (c(-7), c(7)));
        assert_eq!(store.lot(lot.id).await.unwrap().unwrap().remaining, c(0));
        assert_eq!(store.transaction(tx.id).await.unwrap().unwrap(), tx);

        // Retried later, from what the database holds: the same write.
        store.clock.advance_secs(60);
        store.reopen().await;
        let again = execute(&store, Command::new(op())).await;
        let Executed::Existing(Outcome::ClawedBack { tx: first, balance }) = again else {
            panic!("{again:?}")
        };
        assert_eq!(first.id, tx.id);
        assert_eq!((balance.available, balance.debt), (c(-7), c(7)));
        // The same external id with other content is a conflict.
        assert_eq!(
            run(&store, claw_back("a", "checkout:cs_1", 5, Some("refund:re_1"))).await,
            Err(Reject::ExternalIdConflict)
        );
        let book = store.book(id("a"), None).await.unwrap().unwrap();
        assert_eq!(book.account.debt, c(7));
        assert_eq!(available(&store, "a", store.clock.now()).await, c(-7));
        assert!(store.audit().await.unwrap().is_clean());

        // A later purchase repays the debt first.
        run(&store, grant("a", 10)).await.unwrap();
        assert_eq!(available(&store, "a", store.clock.now()).await, c(3));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_claw_back_takes_what_its_lot_lacks_from_the_other_lots(store) {
        run(&store, create("a")).await.unwrap();
        let Outcome::Granted { lot, .. } =
            run(&store, purchase("a", 10, "checkout:cs_1")).await.unwrap()
        else {
            panic!()
        };
        let Outcome::Granted { lot: other, .. } = run(&store, grant("a", 20)).await.unwrap() else {
            panic!()
        };
        run(&store, Op::Void { lot: lot.id, metadata: Metadata::empty() }).await.unwrap();
        let Outcome::ClawedBack { tx, balance } =
            run(&store, claw_back("a", "checkout:cs_1", 8, None)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(tx.sources, vec![Share { origin: Origin::Lot(other.id), amount: c(8) }]);
        assert_eq!((balance.available, balance.debt), (c(12), c(0)));
        assert_eq!(store.lot(other.id).await.unwrap().unwrap().remaining, c(12));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_claw_back_needs_a_grant_of_the_account_by_its_external_id(store) {
        run(&store, create("a")).await.unwrap();
        run(&store, purchase("a", 10, "checkout:cs_1")).await.unwrap();
        run(
            &store,
            Op::Consume {
                account: id("a"),
                charge: Charge::Amount(c(1)),
                metadata: Metadata::empty(),
                external_id: Some(ext("call_1")),
            },
        )
        .await
        .unwrap();
        run(&store, create("b")).await.unwrap();
        assert_eq!(
            run(&store, claw_back("a", "checkout:cs_404", 1, None)).await,
            Err(Reject::GrantNotFound)
        );
        // A consume's external id names no grant.
        assert_eq!(
            run(&store, claw_back("a", "call_1", 1, None)).await,
            Err(Reject::GrantNotFound)
        );
        // Nor does another account's grant.
        assert_eq!(
            run(&store, claw_back("b", "checkout:cs_1", 1, None)).await,
            Err(Reject::GrantNotFound)
        );
        assert_eq!(
            run(&store, claw_back("nobody", "checkout:cs_1", 1, None)).await,
            Err(Reject::AccountNotFound)
        );
        assert!(matches!(
            run(&store, claw_back("a", "checkout:cs_1", 0, Some("refund:re_1"))).await,
            Err(Reject::InvalidAmount(_))
        ));
        // Nothing was taken, and the refused claw-back did not use up its external id.
        assert_eq!(available(&store, "a", START).await, c(9));
        let done = execute(
            &store,
            Command::new(claw_back("a", "checkout:cs_1", 4, Some("refund:re_1"))),
        )
        .await;
        assert!(
            matches!(done, Executed::Fresh(Ok(Outcome::ClawedBack { .. }))),
            "{done:?}"
        );
        assert_eq!(available(&store, "a", START).await, c(5));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

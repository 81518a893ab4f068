//! The writes billing builds on: an account opened with grants, a period's renewal, lifetime totals.

use ledger::{
    Amount, Carry, ExternalId, Metadata, NewAccount, NewGrant, Reject, Renewal, Source, Timestamp,
};
use store::{Command, Executed, Op, Outcome};

use crate::common::*;

fn plan_grant(credits: i64, period: &str, expires_at: Option<Timestamp>) -> NewGrant {
    NewGrant {
        amount: c(credits),
        source: Source::Subscription,
        priority: None,
        effective_at: None,
        expires_at,
        metadata: Metadata::empty(),
        external_id: Some(ExternalId::parse(period).unwrap()),
        reason: None,
        actor: None,
    }
}

fn open_with(account: &str, grants: Vec<NewGrant>) -> Op {
    Op::CreateAccount {
        account: NewAccount::new(id(account), None, Metadata::empty(), Amount::ZERO).unwrap(),
        grants,
    }
}

store_test! {
    #[tokio::test]
    async fn an_account_opens_with_its_grants_or_not_at_all(store) {
        let mut bonus = plan_grant(50, "signup", None);
        bonus.source = Source::SignupBonus;
        let opened = run(&store, open_with("a", vec![bonus, plan_grant(500, "p0", None)]))
            .await
            .unwrap();
        let Outcome::AccountCreated { lots, .. } = opened else { panic!("{opened:?}") };
        assert_eq!(lots.len(), 2);
        assert_eq!(available(&store, "a", START).await, c(550));
        let external = store
            .external(id("a"), ExternalId::parse("p0").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(external.lot, Some(lots[1].id));

        // A grant the ledger refuses leaves no account behind.
        let mut bad = plan_grant(5, "bad", Some(START));
        bad.effective_at = Some(START.plus_secs(10));
        let refused = run(&store, open_with("b", vec![plan_grant(5, "ok", None), bad])).await;
        assert!(matches!(refused, Err(Reject::InvalidTimestamp(_))), "{refused:?}");
        assert!(store.account(id("b")).await.unwrap().is_none());
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_period_renews_once_however_often_it_is_sent(store) {
        run(&store, open_with("a", vec![plan_grant(100, "sub:pro:0", None)])).await.unwrap();
        open_account(&store, "a2", 0).await;
        run(&store, consume("a", 30)).await.unwrap();
        store.clock.advance_secs(30 * 86_400);
        let renewal = Renewal {
            close: true,
            carry: Carry::Rollover { cap: c(50) },
            settle_debt: None,
            overdraft_limit: None,
            grant: Some(plan_grant(100, "sub:pro:1", None)),
        };
        let renew = || Op::Renew { account: id("a"), renewal: renewal.clone() };
        let shared = store.shared();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = shared.clone();
                let op = renew();
                tokio::spawn(async move { store.execute(Command::new(op)).await.unwrap() })
            })
            .collect();
        let (mut fresh, mut again) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Executed::Fresh(Ok(Outcome::Renewed { renewed, .. })) => {
                    fresh += 1;
                    assert_eq!((renewed.carried, renewed.expired), (c(50), c(20)));
                }
                Executed::Existing(_) => again += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((fresh, again), (1, 3));
        // 50 rolled over and 100 for the new period.
        assert_eq!(available(&store, "a", store_now(&store)).await, c(150));
        let totals = store.totals(id("a"), None).await.unwrap().unwrap().1;
        assert_eq!(totals.granted, vec![(Source::Subscription, c(200))]);
        assert_eq!((totals.spent, totals.expired), (c(30), c(20)));
        assert!(store.totals(id("nobody"), None).await.unwrap().is_none());
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test]
    async fn a_renewal_settles_the_debt_before_the_new_grant(store) {
        run(&store, create("a")).await.unwrap();
        let patch = ledger::AccountPatch::new(None, None, Some(c(1_000))).unwrap();
        run(&store, Op::UpdateAccount { account: id("a"), patch }).await.unwrap();
        run(&store, consume("a", 40)).await.unwrap();
        let renewed = run(
            &store,
            Op::Renew {
                account: id("a"),
                renewal: Renewal {
                    close: false,
                    carry: Carry::Reset,
                    settle_debt: Some(c(40)),
            overdraft_limit: None,
                    grant: Some(plan_grant(100, "sub:pro:1", None)),
                },
            },
        )
        .await
        .unwrap();
        let Outcome::Renewed { renewed, balance, .. } = renewed else { panic!() };
        assert_eq!(renewed.settled, c(40));
        assert_eq!((balance.available, balance.debt), (c(100), c(0)));
        let totals = store.totals(id("a"), None).await.unwrap().unwrap().1;
        assert_eq!(totals.settled, c(40));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

fn store_now(store: &crate::support::TestStore) -> Timestamp {
    use store::Clock;
    store.clock.now()
}

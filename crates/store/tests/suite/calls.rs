//! Gateway calls: recorded only with the write that settles them, paged newest first, and
//! added up by hour.

use ledger::{Metadata, Timestamp};
use store::usage::{Call, CallQuery, CallTokens, hour_of};
use store::{Command, Executed, Op, Outcome, Refused, Store};

use crate::common::*;

fn call(request: &str, model: &str, cost: i64) -> Call {
    Call {
        id: request.into(),
        account: id("a"),
        key_id: Some("key_1".into()),
        project: Some("web".into()),
        provider: "openai".into(),
        model: model.into(),
        mode: "credits".into(),
        tokens: CallTokens {
            input: 100,
            cached: 20,
            cache_write: 0,
            output: 10,
            reasoning: 3,
        },
        cost: ledger::Amount::from_micros(cost),
        list_cost: ledger::Amount::from_micros(cost - 1),
        status: 200,
        outcome: "ok".into(),
        latency_ms: 12,
        tx: None,
        at: Timestamp::from_micros(0),
    }
}

async fn commit_with(store: &dyn Store, hold: ledger::HoldId, micros: i64, call: Call) -> Executed {
    let op = Op::Commit {
        hold,
        amount: ledger::Amount::from_micros(micros),
        metadata: Metadata::empty(),
    };
    store
        .execute(Command::new(op).with_call(call))
        .await
        .unwrap()
}

async fn all_calls(
    store: &dyn Store,
    before: Option<(Timestamp, String)>,
    limit: usize,
) -> Vec<Call> {
    store
        .calls(CallQuery {
            account: id("a"),
            from: START,
            to: START.plus_secs(86_400),
            before,
            limit,
        })
        .await
        .unwrap()
}

store_test! {
    #[tokio::test]
    async fn a_call_is_recorded_with_the_commit_that_settles_it(store) {
        open_account(&store, "a", 100).await;
        let hold = place_hold(&store, "a", 10).await;
        store.clock.advance_secs(5);
        let executed = commit_with(&*store, hold, 4_000_000, call("req_1", "m1", 4_000_000)).await;
        let Executed::Fresh(Ok(Outcome::Committed { tx, .. })) = executed else {
            panic!("{executed:?}");
        };
        let calls = all_calls(&*store, None, 10).await;
        assert_eq!(calls.len(), 1);
        let recorded = &calls[0];
        assert_eq!(recorded.tx, Some(tx.id));
        assert_eq!(recorded.at, START.plus_secs(5));
        assert_eq!(recorded.tokens.reasoning, 3);
        assert_eq!(recorded.project.as_deref(), Some("web"));
        assert_eq!(recorded.cost, ledger::Amount::from_micros(4_000_000));

        // A second commit of the same hold is refused, and records nothing.
        let again = commit_with(&*store, hold, 1, call("req_2", "m1", 1)).await;
        assert!(matches!(again, Executed::Fresh(Err(Refused::Ledger(_)))), "{again:?}");
        assert_eq!(all_calls(&*store, None, 10).await.len(), 1);

        // Survives a restart.
        store.reopen().await;
        assert_eq!(all_calls(&*store, None, 10).await, calls);
    }
}

store_test! {
    #[tokio::test]
    async fn calls_page_newest_first_and_add_up_by_hour(store) {
        open_account(&store, "a", 1000).await;
        for (i, model) in ["m1", "m2", "m1", "m1"].into_iter().enumerate() {
            let hold = place_hold(&store, "a", 1).await;
            let executed = commit_with(&*store, hold, 10, call(&format!("req_{i}"), model, 10)).await;
            assert!(matches!(executed, Executed::Fresh(Ok(_))), "{executed:?}");
            store.clock.advance_secs(1800);
        }
        // A released hold records its call too, at no cost.
        let hold = place_hold(&store, "a", 1).await;
        let mut failed = call("req_failed", "m1", 0);
        failed.cost = ledger::Amount::ZERO;
        failed.list_cost = ledger::Amount::ZERO;
        failed.status = 502;
        failed.outcome = "upstream_error".into();
        let release = Op::Release { hold, metadata: Metadata::empty() };
        let executed = store.execute(Command::new(release).with_call(failed)).await.unwrap();
        assert!(matches!(executed, Executed::Fresh(Ok(Outcome::Released { .. }))), "{executed:?}");

        let first = all_calls(&*store, None, 2).await;
        assert_eq!(first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["req_failed", "req_3"]);
        let cursor = first.last().map(|c| (c.at, c.id.clone()));
        let second = all_calls(&*store, cursor, 10).await;
        assert_eq!(second.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["req_2", "req_1", "req_0"]);

        let start = hour_of(START);
        let buckets = store.usage_buckets(id("a"), start, start + 48).await.unwrap();
        let calls: i64 = buckets.iter().map(|b| b.calls).sum();
        let cost: i64 = buckets.iter().map(|b| b.cost.micros()).sum();
        let input: i64 = buckets.iter().map(|b| b.tokens.input).sum();
        assert_eq!((calls, cost, input), (5, 40, 500));
        let m1_first_hour: Vec<_> = buckets
            .iter()
            .filter(|b| b.model == "m1" && b.hour == start && b.mode == "credits")
            .collect();
        assert_eq!(m1_first_hour.len(), 1);
        assert_eq!(m1_first_hour[0].calls, 1);
        assert!(store.usage_buckets(id("a"), start + 3, start + 48).await.unwrap().is_empty());
        assert!(store.usage_buckets(id("b"), start, start + 48).await.unwrap().is_empty());
    }
}

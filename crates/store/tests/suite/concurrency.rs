//! Many writes and reads at once: nothing is spent twice and no read sees half a batch.

use ledger::Reject;

use crate::common::*;

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_consumes_never_overspend(store) {
        open_account(&store, "hot", 100).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let store = store.shared();
                tokio::spawn(async move { run(&store, consume("hot", 1)).await })
            })
            .collect();
        let mut ok = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(Reject::InsufficientCredits { .. }) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!((ok, refused), (100, 100));
        assert_eq!(available(&store, "hot", START).await, c(0));
        assert!(store.audit().await.unwrap().is_clean());
    }
}

store_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn reads_see_whole_batches_only(store) {
        open_account(&store, "a", 100).await;
        let writer = {
            let store = store.shared();
            tokio::spawn(async move {
                for _ in 0..300 {
                    let hold = place_hold(&store, "a", 100).await;
                    run(&store, release(hold)).await.unwrap();
                }
            })
        };
        let mut reads = 0;
        let mut audits = 0;
        while !writer.is_finished() {
            let book = store.book(id("a"), None).await.unwrap().unwrap();
            let balance = book.balance(START);
            // A hold moves credits from the lot to escrow in one batch: a read
            // sees either side of it, never both or neither.
            assert_eq!(
                balance.available.checked_add(balance.held),
                Some(c(100)),
                "{balance:?}"
            );
            reads += 1;
            if reads % 10 == 0 {
                let report = store.audit().await.unwrap();
                assert!(report.is_clean(), "{report:?}");
                audits += 1;
            }
        }
        writer.await.unwrap();
        assert!(reads > 20 && audits > 0, "{reads} reads, {audits} audits");
    }
}

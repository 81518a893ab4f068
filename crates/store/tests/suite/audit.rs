//! The audit, and rows that break the ledger's laws.

use store::{Command, Executed, StoreError};

use crate::common::*;

store_test! {
    #[tokio::test]
    async fn audit_reports_a_tampered_balance(store) {
        open_account(&store, "a", 10).await;
        run(&store, consume("a", 3)).await.unwrap();
        assert!(store.audit().await.unwrap().is_clean());
        store
            .sql_while_closed(
                "UPDATE lots SET remaining = remaining + 1000000; \
                 UPDATE transactions SET postings = 'usage=1' WHERE kind = 'consume';",
            )
            .await;
        let report = store.audit().await.unwrap();
        assert!(!report.is_clean());
        let text: Vec<String> = report
            .violations
            .iter()
            .map(|(_, v)| v.to_string())
            .collect();
        assert!(text.iter().any(|v| v.contains("not zero")), "{text:?}");
        assert!(text.iter().any(|v| v.contains("remaining")), "{text:?}");
    }
}

store_test! {
    #[tokio::test]
    async fn one_corrupt_account_does_not_fail_the_rest_of_its_batch(store) {
        open_account(&store, "good", 10).await;
        open_account(&store, "bad", 10).await;
        store
            .sql_while_open("UPDATE lots SET source = 'bogus' WHERE account_id = 'bad'")
            .await;
        let (bad, good) = tokio::join!(
            store.execute(Command::new(consume("bad", 1))),
            store.execute(Command::new(consume("good", 1))),
        );
        assert!(matches!(bad, Err(StoreError::Corrupt(_))), "{bad:?}");
        assert!(matches!(good, Ok(Executed::Fresh(Ok(_)))), "{good:?}");
        assert_eq!(available(&store, "good", START).await, c(9));
    }
}

//! The usual way SaaS teams build credits, for comparison: one row per
//! account, one PL/pgSQL function per consume that locks the row, checks,
//! updates it and inserts a usage row, committed durably on its own.

use anyhow::Context;
use tokio_postgres::{NoTls, Statement};

use super::driver::Outcome;

const SCHEMA: &str = "
DROP SCHEMA IF EXISTS creditd_baseline CASCADE;
CREATE SCHEMA creditd_baseline;
CREATE TABLE creditd_baseline.credits (
    account_id TEXT PRIMARY KEY,
    tokens     BIGINT NOT NULL
);
CREATE TABLE creditd_baseline.credit_transactions (
    id            BIGSERIAL PRIMARY KEY,
    account_id    TEXT NOT NULL,
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ON creditd_baseline.credit_transactions (account_id, created_at);
CREATE FUNCTION creditd_baseline.consume_credits(p_account TEXT, p_amount BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    current BIGINT;
BEGIN
    SELECT tokens INTO current FROM creditd_baseline.credits
     WHERE account_id = p_account FOR UPDATE;
    IF current IS NULL OR current < p_amount THEN
        RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'P0001';
    END IF;
    UPDATE creditd_baseline.credits SET tokens = tokens - p_amount
     WHERE account_id = p_account;
    INSERT INTO creditd_baseline.credit_transactions (account_id, amount, balance_after)
    VALUES (p_account, -p_amount, current - p_amount);
    RETURN current - p_amount;
END $$;
";

/// The baseline's database.
pub struct Baseline {
    url: String,
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Baseline {
    /// Connects, checks that commits are durable, and creates the schema afresh.
    pub async fn connect(url: &str) -> anyhow::Result<Baseline> {
        let client = connect(url).await?;
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .get(0);
        anyhow::ensure!(
            sync != "off",
            "synchronous_commit is off: the baseline would not be durable"
        );
        client.batch_execute(SCHEMA).await?;
        Ok(Baseline {
            url: url.to_owned(),
        })
    }

    /// One row per account with `credits` tokens.
    pub async fn setup(&self, accounts: &[String], credits: i64) -> anyhow::Result<()> {
        let client = connect(&self.url).await?;
        client
            .execute(
                "INSERT INTO creditd_baseline.credits (account_id, tokens) \
                 SELECT a, $2 FROM UNNEST($1::text[]) AS a",
                &[&accounts, &(credits * 1_000_000)],
            )
            .await?;
        // Measure steady state: plans made with the tables' real sizes.
        client
            .batch_execute("ANALYZE creditd_baseline.credits")
            .await?;
        Ok(())
    }

    /// A client with its own connection and prepared statements.
    pub async fn client(&self) -> anyhow::Result<BaselineClient> {
        let client = connect(&self.url).await?;
        let consume = client
            .prepare("SELECT creditd_baseline.consume_credits($1, $2)")
            .await?;
        let check = client
            .prepare("SELECT tokens FROM creditd_baseline.credits WHERE account_id = $1")
            .await?;
        Ok(BaselineClient {
            client,
            consume,
            check,
        })
    }
}

/// One baseline client.
pub struct BaselineClient {
    client: tokio_postgres::Client,
    consume: Statement,
    check: Statement,
}

impl BaselineClient {
    /// Consumes one credit (in micro-credits, as creditd does).
    pub async fn consume(&mut self, account: &str) -> Outcome {
        match self
            .client
            .query_one(&self.consume, &[&account, &1_000_000i64])
            .await
        {
            Ok(_) => Outcome::Ok,
            Err(e) if e.code().is_some_and(|c| c.code() == "P0001") => Outcome::Rejected,
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    /// Reads the balance and compares it with one credit.
    pub async fn check(&mut self, account: &str) -> Outcome {
        match self.client.query_opt(&self.check, &[&account]).await {
            Ok(Some(row)) if row.get::<_, i64>(0) >= 1_000_000 => Outcome::Ok,
            Ok(Some(_)) => Outcome::Rejected,
            Ok(None) => Outcome::Error("no such account".into()),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }
}

/// Refreshes the planner's statistics of a database.
pub async fn analyze(url: &str) -> anyhow::Result<()> {
    connect(url).await?.batch_execute("ANALYZE").await?;
    Ok(())
}

//! The gateway through the real binary with the official `openai` and `anthropic` Python
//! clients as its callers, a fake provider behind it: each client sees its reply and usage as
//! it would from the provider, and each call moves the balance by exactly its priced usage,
//! to the micro-credit, on SQLite and on PostgreSQL.
//!
//! The clients run in the Python given by `CREDITD_TEST_PYTHON` (default `python3`). When it
//! cannot import both packages the tests are skipped with a notice, except under `CI=true`,
//! where that fails them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, fresh_db, get, post, send};
use testkit::TestDatabase;
use testkit::upstream::{Behaviour, FAKE_EMBEDDING, FakeUpstream, FakeUsage, REPLY_TEXT};

/// The scenarios, one client call each.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/gateway_clients.py"
);

/// The operator's keys for the fake provider; callers never see them.
const OPENAI_UPSTREAM_KEY: &str = "sk-upstream-openai";
const ANTHROPIC_UPSTREAM_KEY: &str = "sk-upstream-anthropic";

const CHAT_MODEL: &str = "gpt-sdk";
const CLAUDE_MODEL: &str = "claude-sdk";
const EMBED_MODEL: &str = "embed-sdk";

/// The account the calls are charged to, granted 100 credits.
const ACCOUNT: &str = "sdk";
/// An account of 0.001 credits, too little for any call's worst case.
const POOR: &str = "sdk-poor";
/// Where customers short of credits are sent to buy more.
const TOP_UP_URL: &str = "https://shop.example.com/credits";

/// Prices in units of 10⁻⁴ USD per million tokens, so that the expected
/// cost is integer arithmetic: 0.15 USD is 1 500.
const CHAT_INPUT: u64 = 1_500;
const CHAT_CACHED: u64 = 750;
const CHAT_OUTPUT: u64 = 6_000;
const CLAUDE_INPUT: u64 = 30_000;
const CLAUDE_CACHED: u64 = 3_000;
const CLAUDE_CACHE_WRITE: u64 = 37_500;
const CLAUDE_OUTPUT: u64 = 150_000;
const EMBED_INPUT: u64 = 200;

/// What a call of `tokens` at `price` (pairs of a token count and its price
/// in 10⁻⁴ USD per million) costs in micro-credits: a token at p USD per
/// million is p × 10⁻⁶ USD, × 100 credits per USD, × 10⁶ micro-credits per
/// credit, × 1.10 for the markup, so p × 110 micro-credits; with p in
/// 10⁻⁴ USD, Σ tokens × p × 110 / 10⁴, rounded up once for the call.
fn cost_micros(tokens_at_price: &[(u64, u64)]) -> i64 {
    let sum: u64 = tokens_at_price.iter().map(|(tokens, p)| tokens * p).sum();
    i64::try_from((sum * 110).div_ceil(10_000)).expect("a small cost")
}

/// Micro-credits in a decimal string of credits such as `"99.984135"`.
fn micros(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a decimal string, not {value}"));
    ledger::Amount::parse_decimal(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .micros()
}

/// The Python that runs the clients, or `None` outside CI when there is
/// none that can import both packages (said once per test binary).
fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(find_python).as_deref()
}

fn find_python() -> Option<PathBuf> {
    support::python_with(
        "openai, anthropic",
        "the gateway's tests with the official openai and anthropic clients",
        "pip install openai anthropic",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_clients_see_their_replies_and_pay_exactly_their_usage_on_sqlite() {
    let Some(python) = python() else { return };
    let (_dir, db) = fresh_db();
    run_suite(&format!("sqlite://{}", db.display()), python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_clients_see_their_replies_and_pay_exactly_their_usage_on_postgres() {
    let Some(python) = python() else { return };
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    run_suite(&database.url, python).await;
}

/// A server in front of a fake provider, with priced models, a funded
/// account and a poor one, each with a customer key.
struct Suite<'a> {
    python: &'a Path,
    client: reqwest::Client,
    fake: FakeUpstream,
    server: Server,
    key: String,
    poor_key: String,
}

/// Starts the fake provider and a server on the database at `url`, sets
/// them up, and runs every scenario in turn.
async fn run_suite(url: &str, python: &Path) {
    let fake = FakeUpstream::start().await;
    let openai_base = format!("{}/v1", fake.base_url());
    let anthropic_base = fake.base_url();
    let server = Server::start_with(
        url,
        &[
            ("CREDITD_LOG", "warn"),
            ("CREDITD_UPSTREAM_BASE_URL", &openai_base),
            ("CREDITD_UPSTREAM_API_KEY", OPENAI_UPSTREAM_KEY),
            ("CREDITD_ANTHROPIC_BASE_URL", &anthropic_base),
            ("CREDITD_ANTHROPIC_API_KEY", ANTHROPIC_UPSTREAM_KEY),
            ("CREDITD_TOP_UP_URL", TOP_UP_URL),
        ],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();

    let prices = [
        (
            CHAT_MODEL,
            json!({"provider": "openai", "input": "0.15", "cached_input": "0.075",
                   "output": "0.6", "max_output_tokens": 1000}),
        ),
        (
            CLAUDE_MODEL,
            json!({"provider": "anthropic", "input": "3", "cached_input": "0.3",
                   "cache_write": "3.75", "output": "15", "max_output_tokens": 1000}),
        ),
        (
            EMBED_MODEL,
            json!({"provider": "openai", "mode": "embedding", "input": "0.02", "output": "0"}),
        ),
    ];
    for (model, price) in prices {
        let url = format!("{base}/v1/prices/{model}");
        let (status, body) = send(&client, reqwest::Method::PUT, url, Some(price)).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut keys = Vec::new();
    for (account, amount) in [(ACCOUNT, "100"), (POOR, "0.001")] {
        let (status, body) = post(
            &client,
            format!("{base}/v1/accounts"),
            json!({"id": account}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = post(
            &client,
            format!("{base}/v1/accounts/{account}/grants"),
            json!({"amount": amount, "source": "purchase"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = post(
            &client,
            format!("{base}/v1/accounts/{account}/keys"),
            json!({"name": "sdk"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["key"].as_str().expect("the new key").to_owned());
    }
    let poor_key = keys.pop().expect("the poor account's key");
    let key = keys.pop().expect("the account's key");
    let suite = Suite {
        python,
        client,
        fake,
        server,
        key,
        poor_key,
    };

    suite.chat().await;
    suite.chat_stream().await;
    suite.chat_stream_usage().await;
    suite.embeddings().await;
    suite.models().await;
    suite.messages().await;
    suite.messages_stream().await;
    suite.bad_key().await;
    suite.insufficient().await;
    suite.retry().await;
}

impl Suite<'_> {
    /// Runs `scenario` with `key` (and `model` when it calls one); answers
    /// the JSON line the script printed.
    async fn run(&self, scenario: &str, key: &str, model: Option<&str>) -> Value {
        let mut command = Command::new(self.python);
        command
            .arg(SCRIPT)
            .arg(scenario)
            .env("CREDITD_BASE", &self.server.base)
            .env("CREDITD_KEY", key)
            .env("CREDITD_MODEL", model.unwrap_or(""))
            // The server is on loopback: no proxy between them.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        // The clients read these too, and an Anthropic auth token would be
        // sent beside the key.
        for name in [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_ORG_ID",
            "OPENAI_PROJECT_ID",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
        ] {
            command.env_remove(name);
        }
        // Blocking for seconds, so off the runtime's workers, which serve
        // the fake provider meanwhile.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the Python task")
            .expect("running Python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the {scenario} scenario failed ({}):\n{stderr}\n{stdout}\nthe server's log:\n{}",
            output.status,
            self.server.log()
        );
        let line = stdout.lines().last().unwrap_or("");
        let observed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the {scenario} scenario printed {stdout:?}: {e}"));
        assert_eq!(observed["scenario"], scenario);
        observed
    }

    /// The account's available micro-credits once no call holds any: a
    /// call is settled just after its answer is sent.
    async fn settled(&self, account: &str) -> i64 {
        let url = format!("{}/v1/accounts/{account}/balance", self.server.base);
        support::until(
            &format!("{account}'s calls to settle"),
            Duration::from_secs(10),
            || async {
                let (status, balance) = get(&self.client, url.clone()).await;
                assert_eq!(status, 200, "{balance}");
                (balance["held"] == "0").then(|| micros(&balance["available"]))
            },
        )
        .await
    }

    /// The account's recorded calls, newest first.
    async fn calls(&self, account: &str) -> Vec<Value> {
        let url = format!(
            "{}/v1/accounts/{account}/usage/calls?limit=100",
            self.server.base
        );
        let (status, page) = get(&self.client, url).await;
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().expect("calls").clone()
    }

    /// Runs a scenario of one charged call that the fake answers with
    /// `usage` after `failures` failed attempts; checks the balance moved
    /// by exactly `cost` micro-credits, once, and that the call was
    /// recorded with `tokens` (input, cached, cache write, output) and
    /// `cost`, with the operator's key upstream. Answers what the client saw.
    async fn charged(
        &self,
        scenario: &str,
        model: &str,
        usage: FakeUsage,
        failures: usize,
        tokens: [i64; 4],
        cost: i64,
    ) -> Value {
        self.fake.set_usage(usage);
        for _ in 0..failures {
            self.fake.push(Behaviour::Fail(500));
        }
        let before = self.settled(ACCOUNT).await;
        let calls_before = self.calls(ACCOUNT).await.len();
        let seen_before = self.fake.requests().len();

        let observed = self.run(scenario, &self.key, Some(model)).await;

        let after = self.settled(ACCOUNT).await;
        assert_eq!(
            before - after,
            cost,
            "{scenario}: the balance moved from {before} to {after} micro-credits"
        );
        let seen = self.fake.requests();
        let seen = &seen[seen_before..];
        assert_eq!(seen.len(), 1 + failures, "{scenario}: {seen:#?}");
        for request in seen {
            assert_eq!(request.body["model"], model, "{scenario}");
            if request.path == "/v1/messages" {
                assert_eq!(
                    request.x_api_key.as_deref(),
                    Some(ANTHROPIC_UPSTREAM_KEY),
                    "{scenario}"
                );
            } else {
                let bearer = format!("Bearer {OPENAI_UPSTREAM_KEY}");
                assert_eq!(
                    request.authorization.as_deref(),
                    Some(bearer.as_str()),
                    "{scenario}"
                );
            }
        }

        let calls = self.calls(ACCOUNT).await;
        let new = &calls[..calls.len() - calls_before];
        let ok: Vec<&Value> = new.iter().filter(|c| c["outcome"] == "ok").collect();
        assert_eq!(ok.len(), 1, "{scenario}: {new:#?}");
        let call = ok[0];
        assert_eq!(call["model"], model, "{call}");
        let recorded = [
            "input_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "output_tokens",
        ]
        .map(|field| call[field].as_i64().expect("a token count"));
        assert_eq!(recorded, tokens, "{scenario}: {call}");
        assert_eq!(micros(&call["cost"]), cost, "{scenario}: {call}");
        for failed in new.iter().filter(|c| c["outcome"] != "ok") {
            assert_eq!(micros(&failed["cost"]), 0, "{scenario}: {failed}");
        }
        observed
    }

    /// Runs a scenario that must reach neither the provider nor the
    /// account's balance; answers what the client saw.
    async fn free(&self, scenario: &str, key: &str, model: Option<&str>) -> Value {
        let balances = (self.settled(ACCOUNT).await, self.settled(POOR).await);
        let seen_before = self.fake.requests().len();
        let observed = self.run(scenario, key, model).await;
        assert_eq!(
            (self.settled(ACCOUNT).await, self.settled(POOR).await),
            balances,
            "{scenario}"
        );
        let seen = self.fake.requests();
        assert_eq!(
            seen.len(),
            seen_before,
            "{scenario}: {:#?}",
            &seen[seen_before..]
        );
        observed
    }

    async fn chat(&self) {
        let usage = FakeUsage {
            prompt_tokens: 1234,
            cached_tokens: 1001,
            completion_tokens: 57,
            ..FakeUsage::default()
        };
        // 233 × 0.15 + 1001 × 0.075 + 57 × 0.6 = 34.95 + 75.075 + 34.2
        // = 144.225; × 110 = 15 864.75, rounded up to 15 865 micro-credits.
        let cost = cost_micros(&[(233, CHAT_INPUT), (1001, CHAT_CACHED), (57, CHAT_OUTPUT)]);
        assert_eq!(cost, 15_865);
        let seen = self
            .charged("chat", CHAT_MODEL, usage, 0, [233, 1001, 0, 57], cost)
            .await;
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["finish_reason"], "stop", "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"prompt_tokens": 1234, "cached_tokens": 1001, "completion_tokens": 57,
                   "total_tokens": 1291}),
        );
    }

    async fn chat_stream(&self) {
        let usage = FakeUsage {
            prompt_tokens: 321,
            cached_tokens: 0,
            completion_tokens: 77,
            ..FakeUsage::default()
        };
        // 321 × 0.15 + 77 × 0.6 = 48.15 + 46.2 = 94.35; × 110 = 10 378.5,
        // rounded up to 10 379 micro-credits.
        let cost = cost_micros(&[(321, CHAT_INPUT), (77, CHAT_OUTPUT)]);
        assert_eq!(cost, 10_379);
        let seen = self
            .charged("chat_stream", CHAT_MODEL, usage, 0, [321, 0, 0, 77], cost)
            .await;
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["finish_reason"], "stop", "{seen}");
        // The caller asked for no usage, so it sees none, even though the
        // call was priced from the provider's.
        assert_eq!(seen["usage_chunks"], 0, "{seen}");
        assert_eq!(seen["empty_choice_chunks"], 0, "{seen}");
        assert_eq!(seen["usage"], Value::Null, "{seen}");
    }

    async fn chat_stream_usage(&self) {
        let usage = FakeUsage {
            prompt_tokens: 2048,
            cached_tokens: 1024,
            completion_tokens: 9,
            ..FakeUsage::default()
        };
        // 1024 × 0.15 + 1024 × 0.075 + 9 × 0.6 = 153.6 + 76.8 + 5.4 = 235.8;
        // × 110 = 25 938 micro-credits exactly.
        let cost = cost_micros(&[(1024, CHAT_INPUT), (1024, CHAT_CACHED), (9, CHAT_OUTPUT)]);
        assert_eq!(cost, 25_938);
        let seen = self
            .charged(
                "chat_stream_usage",
                CHAT_MODEL,
                usage,
                0,
                [1024, 1024, 0, 9],
                cost,
            )
            .await;
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["usage_chunks"], 1, "{seen}");
        assert_eq!(seen["empty_choice_chunks"], 1, "{seen}");
        assert_eq!(seen["last_chunk_has_choices"], false, "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"prompt_tokens": 2048, "cached_tokens": 1024, "completion_tokens": 9,
                   "total_tokens": 2057}),
        );
    }

    async fn embeddings(&self) {
        let usage = FakeUsage {
            prompt_tokens: 37,
            ..FakeUsage::default()
        };
        // 37 × 0.02 = 0.74; × 110 = 81.4, rounded up to 82 micro-credits.
        let cost = cost_micros(&[(37, EMBED_INPUT)]);
        assert_eq!(cost, 82);
        let seen = self
            .charged("embeddings", EMBED_MODEL, usage, 0, [37, 0, 0, 0], cost)
            .await;
        // The client asked for base64 on its own and decoded it.
        let request = self.fake.requests().pop().expect("the embeddings request");
        assert_eq!(request.body["encoding_format"], "base64");
        assert_eq!(seen["count"], 2, "{seen}");
        assert_eq!(seen["indexes"], json!([0, 1]), "{seen}");
        assert_eq!(seen["embedding"], json!(FAKE_EMBEDDING), "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"prompt_tokens": 37, "total_tokens": 37})
        );
    }

    async fn models(&self) {
        let seen = self.free("models", &self.key, None).await;
        assert_eq!(
            seen["ids"],
            json!([CLAUDE_MODEL, EMBED_MODEL, CHAT_MODEL]),
            "{seen}"
        );
    }

    async fn messages(&self) {
        let usage = FakeUsage {
            input_tokens: 800,
            cache_read_input_tokens: 2000,
            cache_creation_input_tokens: 301,
            output_tokens: 45,
            ..FakeUsage::default()
        };
        // 800 × 3 + 2000 × 0.3 + 301 × 3.75 + 45 × 15 = 2400 + 600 + 1128.75
        // + 675 = 4803.75; × 110 = 528 412.5, rounded up to 528 413.
        let cost = cost_micros(&[
            (800, CLAUDE_INPUT),
            (2000, CLAUDE_CACHED),
            (301, CLAUDE_CACHE_WRITE),
            (45, CLAUDE_OUTPUT),
        ]);
        assert_eq!(cost, 528_413);
        let seen = self
            .charged(
                "messages",
                CLAUDE_MODEL,
                usage,
                0,
                [800, 2000, 301, 45],
                cost,
            )
            .await;
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["stop_reason"], "end_turn", "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"input_tokens": 800, "cache_read_input_tokens": 2000,
                   "cache_creation_input_tokens": 301, "output_tokens": 45}),
        );
    }

    async fn messages_stream(&self) {
        let usage = FakeUsage {
            input_tokens: 25,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
            output_tokens: 333,
            ..FakeUsage::default()
        };
        // 25 × 3 + 333 × 15 = 75 + 4995 = 5070; × 110 = 557 700 exactly.
        let cost = cost_micros(&[(25, CLAUDE_INPUT), (333, CLAUDE_OUTPUT)]);
        assert_eq!(cost, 557_700);
        let seen = self
            .charged(
                "messages_stream",
                CLAUDE_MODEL,
                usage,
                0,
                [25, 0, 0, 333],
                cost,
            )
            .await;
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["final_text"], REPLY_TEXT, "{seen}");
        assert_eq!(seen["stop_reason"], "end_turn", "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"input_tokens": 25, "cache_read_input_tokens": 0,
                   "cache_creation_input_tokens": 0, "output_tokens": 333}),
        );
    }

    async fn bad_key(&self) {
        let seen = self.free("bad_key", "sk-not-a-creditd-key", None).await;
        assert_eq!(
            seen["error"],
            json!({"class": "AuthenticationError", "status": 401, "code": "unauthorized",
                   "type": "authentication_error", "body_code": "unauthorized",
                   "top_up_url": null}),
        );
    }

    async fn insufficient(&self) {
        let seen = self
            .free("insufficient", &self.poor_key, Some(CHAT_MODEL))
            .await;
        assert_eq!(seen["error"]["status"], 402, "{seen}");
        assert_eq!(seen["error"]["body_code"], "insufficient_credits", "{seen}");
        assert_eq!(seen["error"]["code"], "insufficient_credits", "{seen}");
        assert_eq!(seen["error"]["top_up_url"], TOP_UP_URL, "{seen}");
        assert_eq!(self.settled(POOR).await, 1_000);
        assert_eq!(self.calls(POOR).await, Vec::<Value>::new());
    }

    async fn retry(&self) {
        let usage = FakeUsage {
            prompt_tokens: 99,
            cached_tokens: 0,
            completion_tokens: 11,
            ..FakeUsage::default()
        };
        // 99 × 0.15 + 11 × 0.6 = 14.85 + 6.6 = 21.45; × 110 = 2 359.5,
        // rounded up to 2 360 micro-credits, charged once: the attempt that
        // failed upstream answered 502 and charged nothing, and the client
        // retried on its own.
        let cost = cost_micros(&[(99, CHAT_INPUT), (11, CHAT_OUTPUT)]);
        assert_eq!(cost, 2_360);
        let seen = self
            .charged("retry", CHAT_MODEL, usage, 1, [99, 0, 0, 11], cost)
            .await;
        // The client's own retry, not one inside the server: its first
        // attempt was answered the 502.
        assert_eq!(seen["retries_taken"], 1, "{seen}");
        assert_eq!(seen["text"], REPLY_TEXT, "{seen}");
        assert_eq!(
            seen["usage"],
            json!({"prompt_tokens": 99, "cached_tokens": 0, "completion_tokens": 11,
                   "total_tokens": 110}),
        );
    }
}

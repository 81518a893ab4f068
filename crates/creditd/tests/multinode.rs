//! Three `creditd serve` processes on one PostgreSQL: never a double spend.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::{KEY, Server, get, post, run_url};
use testkit::TestDatabase;
use tokio::sync::Semaphore;

/// Requests in flight at once, across all nodes.
const IN_FLIGHT: usize = 48;

/// Sends every request, spread round-robin over the nodes with a bound on
/// concurrency, and returns each answer in order.
async fn spread(
    client: &reqwest::Client,
    nodes: &[String],
    requests: Vec<(String, Value)>,
) -> Vec<(u16, Value)> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, (path, body)) in requests.into_iter().enumerate() {
        let url = format!("{}{path}", nodes[i % nodes.len()]);
        let client = client.clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            post(&client, url, body).await
        }));
    }
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_never_spend_a_credit_twice() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    // Started together: their migrations race and must not conflict.
    let servers: Vec<Server> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Server::start_url(&database.url)))
            .collect();
        starts.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let nodes: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let client = reqwest::Client::new();

    // One hot account with 300 credits, and 1,000 accounts with 3 each.
    let mut setup = vec![("/v1/accounts".to_owned(), json!({"id": "hot"}))];
    setup.extend((0..1000).map(|i| {
        (
            "/v1/accounts".to_owned(),
            json!({"id": format!("acc-{i:04}")}),
        )
    }));
    for (status, body) in spread(&client, &nodes, setup).await {
        assert_eq!(status, 201, "{body}");
    }
    let mut grants = vec![(
        "/v1/accounts/hot/grants".to_owned(),
        json!({"amount": "300", "source": "purchase"}),
    )];
    grants.extend((0..1000).map(|i| {
        (
            format!("/v1/accounts/acc-{i:04}/grants"),
            json!({"amount": "3", "source": "purchase"}),
        )
    }));
    for (status, body) in spread(&client, &nodes, grants).await {
        assert_eq!(status, 201, "{body}");
    }

    // The hot account: 400 consumes and 100 holds of 1, interleaved.
    let hot: Vec<(String, Value)> = (0..500)
        .map(|i| {
            if i % 5 == 0 {
                ("/v1/accounts/hot/holds".to_owned(), json!({"amount": "1"}))
            } else {
                (
                    "/v1/accounts/hot/consume".to_owned(),
                    json!({"amount": "1"}),
                )
            }
        })
        .collect();
    // The 1,000 accounts: five consumes of 1 each, for 3 credits.
    let spread_out: Vec<(String, Value)> = (0..5000)
        .map(|i| {
            (
                format!("/v1/accounts/acc-{:04}/consume", i % 1000),
                json!({"amount": "1"}),
            )
        })
        .collect();
    let (hot_answers, spread_answers) = tokio::join!(
        spread(&client, &nodes, hot),
        spread(&client, &nodes, spread_out)
    );

    let mut acknowledged = Vec::new();
    let mut holds = Vec::new();
    let mut hot_ok = 0;
    for (status, body) in &hot_answers {
        match status {
            200 => {
                hot_ok += 1;
                acknowledged.push(body["transaction"]["id"].as_str().unwrap().to_owned());
            }
            201 => {
                hot_ok += 1;
                holds.push(body["hold"]["id"].as_str().unwrap().to_owned());
            }
            402 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(hot_ok, 300, "exactly as many succeed as there were credits");

    let mut spread_ok = 0;
    for (status, body) in &spread_answers {
        match status {
            200 => {
                spread_ok += 1;
                acknowledged.push(body["transaction"]["id"].as_str().unwrap().to_owned());
            }
            402 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(spread_ok, 3000);

    // Commit every hold, on a different node than most were placed on.
    let commits: Vec<(String, Value)> = holds
        .iter()
        .map(|h| (format!("/v1/holds/{h}/commit"), json!({"amount": "1"})))
        .collect();
    for (status, body) in spread(&client, &nodes[1..], commits).await {
        assert_eq!(status, 200, "{body}");
        acknowledged.push(body["transaction"]["id"].as_str().unwrap().to_owned());
    }

    // Every acknowledged write is there, seen from any node.
    for (i, tx) in acknowledged.iter().enumerate() {
        let (status, _) = get(&client, format!("{}/v1/transactions/{tx}", nodes[i % 3])).await;
        assert_eq!(status, 200, "{tx} is missing");
    }
    for node in &nodes {
        let (_, balance) = get(&client, format!("{node}/v1/accounts/hot/balance")).await;
        assert_eq!(
            (balance["available"].as_str(), balance["held"].as_str()),
            (Some("0"), Some("0"))
        );
    }
    let (_, sample) = get(
        &client,
        format!("{}/v1/accounts/acc-0500/balance", nodes[2]),
    )
    .await;
    assert_eq!(sample["available"], "0");

    drop(servers);
    let verify = run_url(&database.url, &["verify"]);
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains("checked 1001 accounts"), "{report}");
}

/// Asks `node` with `key` until it answers `want`, for at most `within`.
async fn answers_within(
    client: &reqwest::Client,
    node: &str,
    key: &str,
    want: u16,
    within: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let status = client
            .get(format!("{node}/v1/accounts"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == want {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_or_revoked_on_one_node_is_known_to_the_other_within_two_seconds() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = (
        Server::start_url(&database.url),
        Server::start_url(&database.url),
    );
    let client = reqwest::Client::new();
    let (status, created) = post(
        &client,
        format!("{}/v1/keys", a.base),
        json!({"kind": "service", "name": "backend"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    // B has never seen it: an unknown key makes it look at once.
    let first = client
        .get(format!("{}/v1/accounts", b.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);

    let revoked = client
        .delete(format!("{}/v1/keys/{id}", a.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    assert!(answers_within(&client, &a.base, key, 401, std::time::Duration::ZERO).await);
    assert!(
        answers_within(
            &client,
            &b.base,
            key,
            401,
            std::time::Duration::from_secs(2)
        )
        .await,
        "the other node still takes the revoked key"
    );
}

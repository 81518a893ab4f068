//! Limits, through the real binary: connections that send nothing or half
//! a request's head are closed and keep nobody else waiting, a connection
//! beyond the cap is refused clearly, requests beyond the places in flight
//! are refused at once while the rest are served, a request past its time
//! limit is answered, and SIGTERM ends the server within its grace whatever
//! its clients do.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use testkit::upstream::{Behaviour, FakeUpstream};

/// A raw connection to the server at `base` (`http://host:port`).
fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).expect("connecting")
}

/// Reads `stream` until the server closes it, for at most `within`: what
/// it sent, or `None` when it was still open then.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            // Reset by the server: closed too.
            Err(_) => return Some(got),
        }
    }
}

const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: creditd\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: creditd\r\n\r\n";

/// Sends one whole request on `stream` and reads its answer's head and
/// body (`/healthz`'s is small and sent at once).
fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_connections_are_closed_and_keep_nobody_waiting() {
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_HEADER_READ_TIMEOUT", "0.5"),
            ("CREDITD_IDLE_TIMEOUT", "2"),
            ("CREDITD_SHUTDOWN_GRACE", "1"),
        ],
    );
    let mut silent: Vec<TcpStream> = (0..100).map(|_| connect(&server.base)).collect();
    let mut half: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = connect(&server.base);
            stream.write_all(HALF_HEAD).unwrap();
            stream
        })
        .collect();
    // With all of them open, the server answers everyone else.
    let client = reqwest::Client::new();
    let (status, _) = get(&client, format!("{}/healthz", server.base)).await;
    assert_eq!(status, 200);

    // Half a head is cut once its time runs out; a silent connection once
    // it has been idle for its own, longer, time.
    for stream in &mut half {
        assert!(
            closed_within(stream, Duration::from_secs(5)).is_some(),
            "a connection that sent half a head is still open"
        );
    }
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(6)).is_some(),
            "a silent connection is still open"
        );
    }

    // A kept-alive connection may rest between requests for longer than a
    // head may take: the head's time runs from its first byte.
    let mut kept = connect(&server.base);
    assert!(exchange(&mut kept, HEALTHZ).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(exchange(&mut kept, HEALTHZ).starts_with("HTTP/1.1 200"));

    // SIGTERM with a silent and a half-sent connection open: the server
    // ends within its grace.
    let _idle = connect(&server.base);
    let mut stuck = connect(&server.base);
    stuck.write_all(HALF_HEAD).unwrap();
    let asked = Instant::now();
    server.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_cap_is_refused_clearly() {
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[("CREDITD_MAX_CONNECTIONS", "8")],
    );
    let client = reqwest::Client::new();
    let (status, _) = get(&client, format!("{}/healthz", server.base)).await;
    assert_eq!(status, 200);
    drop(client);
    let open: Vec<TcpStream> = (0..8).map(|_| connect(&server.base)).collect();
    // The eighth may still be on its way in: the ninth is refused once it is.
    let mut refused = until("a refusal", Duration::from_secs(5), || async {
        let mut ninth = connect(&server.base);
        let _ = ninth.write_all(HEALTHZ);
        let answer = closed_within(&mut ninth, Duration::from_secs(2)).unwrap_or_default();
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.starts_with("HTTP/1.1 503").then_some(text)
    })
    .await;
    refused.make_ascii_lowercase();
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("\"code\":\"overloaded\""), "{refused}");
    drop(open);
    // Their places free, a connection is served again.
    until(
        "a connection served again",
        Duration::from_secs(5),
        || async {
            let mut stream = connect(&server.base);
            exchange(&mut stream, HEALTHZ)
                .starts_with("HTTP/1.1 200")
                .then_some(())
        },
    )
    .await;
}

/// Opens an account `id` holding `credits`, and a customer key for it.
async fn funded(client: &reqwest::Client, base: &str, id: &str, credits: &str) -> String {
    let (status, body) = post(client, format!("{base}/v1/accounts"), json!({"id": id})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts/{id}/grants"),
        json!({"amount": credits, "source": "purchase"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        client,
        format!("{base}/v1/accounts/{id}/keys"),
        json!({"name": "limits"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_place_taken_a_request_is_refused_at_once_and_a_slow_answer_is_cut() {
    let fake = FakeUpstream::start().await;
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_LOG", "warn"),
            (
                "CREDITD_UPSTREAM_BASE_URL",
                &format!("{}/v1", fake.base_url()),
            ),
            ("CREDITD_UPSTREAM_API_KEY", "sk-upstream"),
            ("CREDITD_MAX_IN_FLIGHT", "2"),
            ("CREDITD_UPSTREAM_TIMEOUT", "2"),
        ],
    );
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        format!("{base}/v1/prices/gpt-limits"),
        Some(json!({"provider": "openai", "input": "1", "output": "1", "max_output_tokens": 100})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key = funded(&client, &base, "ada", "100").await;

    // Two calls the model does not answer take both places.
    fake.push(Behaviour::Stall);
    fake.push(Behaviour::Stall);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                let response = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(key)
                    .json(&json!({"model": "gpt-limits",
                        "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                let retry = response.headers().get("retry-after").cloned();
                (
                    response.status().as_u16(),
                    retry,
                    response.json::<serde_json::Value>().await.unwrap(),
                )
            })
        })
        .collect();
    until("both calls upstream", Duration::from_secs(5), || async {
        (fake.requests().len() == 2).then_some(())
    })
    .await;

    // Any other request is refused at once, and says when to come back.
    let response = client
        .get(format!("{base}/v1/accounts/ada/balance"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // The probes are answered all the same.
    assert_eq!(get(&client, format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&client, format!("{base}/metrics")).await.0, 200);

    // Past the model's time limit, each call is answered in OpenAI's format.
    for call in calls {
        let (status, retry, body) = call.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.unwrap(), "1");
        assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    }
    // The places are free again.
    let (status, body) = get(&client, format!("{base}/v1/accounts/ada/balance")).await;
    assert_eq!(status, 200, "{body}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |reason: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "creditd_http_refused_requests_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("overloaded"), 1, "{metrics}");
    assert_eq!(count("request_timeout"), 2, "{metrics}");
    fake.release_stalled();
}

/// 32 clients each consuming 1 credit of `bank` 40 times at `base`, under
/// idempotency keys starting with `prefix`; answers how many were applied
/// and shed, and how long each took.
async fn consume_load(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
) -> (u64, u64, Vec<Duration>, Vec<Duration>) {
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let (client, base, prefix) = (client.clone(), base.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                let (mut applied, mut shed) = (0u64, 0u64);
                let (mut accepted_took, mut shed_took) = (Vec::new(), Vec::new());
                for n in 0..40 {
                    let started = Instant::now();
                    let response = client
                        .post(format!("{base}/v1/accounts/bank/consume"))
                        .bearer_auth(KEY)
                        .header("idempotency-key", format!("{prefix}-{c}-{n}"))
                        .json(&json!({"amount": "1"}))
                        .send()
                        .await
                        .unwrap();
                    let took = started.elapsed();
                    match response.status().as_u16() {
                        200 | 201 => {
                            applied += 1;
                            accepted_took.push(took);
                        }
                        503 => {
                            shed_took.push(took);
                            assert_eq!(response.headers()["retry-after"], "1");
                            let body: serde_json::Value = response.json().await.unwrap();
                            assert_eq!(body["error"]["code"], "overloaded", "{body}");
                            shed += 1;
                        }
                        other => panic!("{other}: {}", response.text().await.unwrap()),
                    }
                }
                (applied, shed, accepted_took, shed_took)
            })
        })
        .collect();
    let (mut applied, mut shed) = (0, 0);
    let (mut accepted_took, mut shed_took) = (Vec::new(), Vec::new());
    for client in clients {
        let (a, s, at, st) = client.await.unwrap();
        applied += a;
        shed += s;
        accepted_took.extend(at);
        shed_took.extend(st);
    }
    (applied, shed, accepted_took, shed_took)
}

/// The `p`th percentile of `took`, in milliseconds; 0 when empty.
fn percentile_ms(took: &mut [Duration], p: usize) -> f64 {
    if took.is_empty() {
        return 0.0;
    }
    took.sort();
    let at = (took.len() * p / 100).min(took.len() - 1);
    took[at].as_secs_f64() * 1_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_four_times_its_places_the_server_applies_what_it_accepts_once_and_sheds_the_rest() {
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[
            ("CREDITD_MAX_IN_FLIGHT", "8"),
            ("CREDITD_HEADER_READ_TIMEOUT", "0.5"),
        ],
    );
    let base = server.base.clone();
    let client = reqwest::Client::new();
    funded(&client, &base, "bank", "1000000").await;

    // Slow clients, a byte at a time, all the while.
    let slow_base = base.clone();
    let slow = std::thread::spawn(move || {
        let mut streams: Vec<Option<TcpStream>> =
            (0..20).map(|_| Some(connect(&slow_base))).collect();
        for byte in HEALTHZ.iter().take(15) {
            for slot in &mut streams {
                if slot
                    .as_mut()
                    .is_some_and(|s| s.write_all(&[*byte]).is_err())
                {
                    *slot = None;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Cut by the server: written to in vain, or closed when read.
        streams
            .into_iter()
            .filter(|slot| match slot {
                None => true,
                Some(stream) => {
                    let mut stream = stream.try_clone().unwrap();
                    closed_within(&mut stream, Duration::from_secs(3)).is_some()
                }
            })
            .count()
    });

    // One client alone first, for the latency an accepted request has
    // without the load (reported, not asserted: speed is a benchmark's).
    let mut alone = Vec::new();
    for n in 0..40 {
        let started = std::time::Instant::now();
        let response = client
            .post(format!("{base}/v1/accounts/bank/consume"))
            .bearer_auth(KEY)
            .header("idempotency-key", format!("alone-{n}"))
            .json(&json!({"amount": "1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        alone.push(started.elapsed());
    }

    // 32 clients, four times the places, each consuming 1 credit 40 times
    // under its own idempotency keys.
    let (applied, shed, mut accepted_took, mut shed_took) =
        consume_load(&client, &base, "load").await;
    assert_eq!(applied + shed, 32 * 40);
    // Written to the terminal directly: the harness captures print macros.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "\noverload, 8 places, 32 clients: alone p50 {:.2} ms; accepted {applied} (p50 {:.2} \
             ms, p99 {:.2} ms); shed {shed}, {:.0} % (p50 {:.2} ms, p99 {:.2} ms)\n",
            percentile_ms(&mut alone, 50),
            percentile_ms(&mut accepted_took, 50),
            percentile_ms(&mut accepted_took, 99),
            shed as f64 * 100.0 / (32.0 * 40.0),
            percentile_ms(&mut shed_took, 50),
            percentile_ms(&mut shed_took, 99),
        ),
    );
    assert!(applied > 0, "nothing was served");
    assert!(shed > 0, "nothing was shed at four times the places");
    // Each accepted consume applied exactly once, none of the shed ones.
    let (_, balance) = get(&client, format!("{base}/v1/accounts/bank/balance")).await;
    let available: u64 = balance["available"].as_str().unwrap().parse().unwrap();
    assert_eq!(available, 1_000_000 - 40 - applied);
    assert_eq!(
        tokio::task::spawn_blocking(move || slow.join().unwrap())
            .await
            .unwrap(),
        20
    );
    server.stop();
    let verified = run(&db, &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // The same load on a node with places for all: every request queues,
    // for the figures beside (reported, not asserted).
    let (_open_dir, open_db) = fresh_db();
    let open = Server::start(&open_db);
    funded(&client, &open.base, "bank", "1000000").await;
    let (applied, shed, mut took, _) = consume_load(&client, &open.base, "open").await;
    assert_eq!((applied, shed), (32 * 40, 0));
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "the same load with places for all: {applied} accepted (p50 {:.2} ms, p99 {:.2} ms)\n",
            percentile_ms(&mut took, 50),
            percentile_ms(&mut took, 99),
        ),
    );
    open.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinds_rate_holds_its_keys_and_says_so() {
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[("CREDITD_RATE_LIMIT_ADMIN", "3")],
    );
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = client
            .get(format!("{}/v1/accounts", server.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        let status = response.status().as_u16();
        if status == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    // A burst of three passes; the next ones, a few milliseconds later,
    // find the bucket empty.
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
    // The probes have no key and no rate.
    for _ in 0..6 {
        assert_eq!(
            get(&client, format!("{}/healthz", server.base)).await.0,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_node_is_ready_with_its_store_migrated_and_its_jobs_running() {
    let (_dir, db) = fresh_db();
    let server = Server::start(&db);
    let client = reqwest::Client::new();
    let (status, body) = get(&client, format!("{}/readyz", server.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["jobs"], "running");
    assert_eq!(body["stalled_jobs"], json!([]));
    assert_eq!(body["migrations"]["applied"], body["migrations"]["known"]);
}

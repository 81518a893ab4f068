//! Schemathesis, from PyPI, against the real binary's served `/openapi.json`: every operation
//! fuzzed from its description and walked statefully, once with an admin key and once with a
//! customer key, with a bounded number of examples and a fixed seed. Any failure fails the test but
//! the two `hooks.py` names: the documented `503 payments_not_configured` of a server without
//! Stripe, and `400 amount_overflow` for a valid amount that would take an account's totals past the
//! largest amount. `schemathesis.toml` says where a check does not apply to an operation, and why.
//!
//! The gateway forwards to a local fake upstream and BYOK has a master key, so that no other
//! route answers that it is not configured.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::{KEY, Server, fresh_db, post};

/// Runs `st run` against the server with `key`; answers its exit status and output.
fn schemathesis(python: &Path, base: &str, key: &str, name: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    // Schemathesis and Hypothesis keep what they found in the working
    // directory and replay it the next time: each run starts afresh.
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(python)
        .current_dir(work.path())
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
        .env("PYTHONPATH", &dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("running schemathesis");
    let text = format!(
        "== schemathesis with the {name} key\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_description_holds_under_schemathesis_as_admin_and_as_customer() {
    let Some(python) = support::python_with(
        "schemathesis",
        "the API fuzzing test",
        "pip install 'schemathesis>=4.32,<5'",
    ) else {
        return;
    };
    let upstream = testkit::upstream::FakeUpstream::start().await;
    let base_url = upstream.base_url();
    let (_dir, db) = fresh_db();
    let url = format!("sqlite://{}", db.display());
    let openai = format!("{base_url}/v1");
    let server = Server::start_with(
        &url,
        &[
            ("CREDITD_UPSTREAM_BASE_URL", &openai),
            ("CREDITD_UPSTREAM_API_KEY", "sk-fuzz-upstream"),
            ("CREDITD_ANTHROPIC_BASE_URL", &base_url),
            ("CREDITD_ANTHROPIC_API_KEY", "sk-fuzz-upstream"),
            ("CREDITD_MASTER_KEY", &"5a".repeat(32)),
        ],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let (status, reply) = post(
        &client,
        format!("{base}/v1/accounts"),
        json!({"id": "acme"}),
    )
    .await;
    assert_eq!(status, 201, "{reply}");

    let mut failed = Vec::new();
    for name in ["admin", "customer"] {
        // The admin run may delete prices, overwrite the feature, spend the
        // credits and revoke keys: each run starts from the same data.
        seed(&client, &base).await;
        let key = match name {
            "admin" => KEY.to_owned(),
            _ => {
                let (status, customer) = post(
                    &client,
                    format!("{base}/v1/accounts/acme/keys"),
                    json!({"name": "fuzz"}),
                )
                .await;
                assert_eq!(status, 201, "{customer}");
                customer["key"].as_str().unwrap().to_owned()
            }
        };
        let (ok, text) = schemathesis(&python, &base, &key, name);
        // Written to the terminal directly: the harness hides the output of
        // a passing test, and this is worth reading either way.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
        if !ok {
            failed.push(name);
        }
    }
    server.stop();
    assert!(
        failed.is_empty(),
        "schemathesis found failures with the {failed:?} key(s); see the output above"
    );
}

/// Credits on `acme`, which pays in credits, the feature and the models
/// `schemathesis.toml` offers its generator, each priced.
async fn seed(client: &reqwest::Client, base: &str) {
    let (status, reply) = support::send(
        client,
        reqwest::Method::PATCH,
        format!("{base}/v1/accounts/acme"),
        Some(json!({"billing_mode": "credits"})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(
        client,
        format!("{base}/v1/accounts/acme/grants"),
        json!({"amount": "1000000", "source": "promo"}),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let chat = json!({"provider": "openai", "input": "2", "output": "8"});
    let embedding =
        json!({"provider": "openai", "mode": "embedding", "input": "0.02", "output": "0"});
    let messages = json!({"provider": "anthropic", "input": "3", "output": "15"});
    for (path, body) in [
        (
            "/v1/features/fuzz-feature",
            json!({"credits_per_unit": "0.5"}),
        ),
        ("/v1/prices/gpt-fuzz", chat),
        ("/v1/prices/emb-fuzz", embedding),
        ("/v1/prices/claude-fuzz", messages),
    ] {
        let (status, reply) = support::send(
            client,
            reqwest::Method::PUT,
            format!("{base}{path}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
}

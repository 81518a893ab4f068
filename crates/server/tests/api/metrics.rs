//! `/metrics`: what it counts, under which labels, and that docs/operations.md lists exactly
//! what it exports.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};

use crate::support::TestApp;

/// The operations guide, whose metrics table must match what `/metrics` exports.
const OPERATIONS: &str = include_str!("../../../../docs/operations.md");

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric family as `# TYPE` declares it, with the label names its samples carry.
#[derive(Debug, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// A parsed `/metrics` page.
struct Scrape {
    families: BTreeMap<String, Family>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Fetches and parses `/metrics`, checking its content type.
    async fn of(app: &TestApp) -> Scrape {
        let reply = app.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            reply.headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Scrape::parse(&reply.text)
    }

    fn parse(text: &str) -> Scrape {
        let mut families = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').unwrap();
                let family = Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                };
                assert!(families.insert(name.to_owned(), family).is_none(), "{line}");
            } else if !line.starts_with('#') && !line.is_empty() {
                samples.push(parse_sample(line));
            }
        }
        for sample in &samples {
            let name = family_name(&families, &sample.name);
            let family = families.get_mut(&name).unwrap();
            family.labels.extend(
                sample
                    .labels
                    .keys()
                    .filter(|label| !(family.kind == "histogram" && *label == "le"))
                    .cloned(),
            );
        }
        Scrape { families, samples }
    }

    /// The samples named `name` whose labels include every one of `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }
}

/// The family a sample belongs to: its own name, or a histogram's name
/// without the `_bucket`, `_sum` or `_count` suffix.
fn family_name(families: &BTreeMap<String, Family>, sample: &str) -> String {
    if families.contains_key(sample) {
        return sample.to_owned();
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| sample.strip_suffix(suffix))
        .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
        .unwrap_or_else(|| panic!("{sample} belongs to no declared family"))
        .to_owned()
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap();
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            inner = inner.strip_prefix(',').unwrap_or(inner);
            let (key, after) = inner.split_once("=\"").unwrap();
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().unwrap() {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            inner = &after[end + 1..];
        }
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        other => other.parse().unwrap_or_else(|_| panic!("{line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// The metrics table of docs/operations.md: each row's name, type and labels.
fn documented() -> BTreeMap<String, Family> {
    let section = OPERATIONS
        .split("\n## ")
        .find(|s| s.starts_with("Metrics"))
        .expect("docs/operations.md has a metrics section");
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty() && *l != "—")
            .map(str::to_owned)
            .collect();
        let family = Family {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(rows.insert(name, family).is_none(), "{line}");
    }
    rows
}

store_test! {
    #[tokio::test]
    async fn every_exported_metric_is_documented_and_every_documented_one_exported(app) {
        app.account_with("u", "10").await;
        let scrape = Scrape::of(&app).await;
        let documented = documented();
        assert!(!documented.is_empty());
        for (name, family) in &scrape.families {
            assert_eq!(documented.get(name), Some(family), "{name} as exported");
        }
        for name in documented.keys() {
            // The process's metrics are read from /proc, which only Linux has.
            if !cfg!(target_os = "linux") && name.contains("process_") {
                continue;
            }
            // The gateway's appear once it has had a call; the gateway's
            // tests see them.
            if name.starts_with("creditd_gateway_") {
                continue;
            }
            assert!(scrape.families.contains_key(name), "{name} is documented but not exported");
        }
        assert!(OPERATIONS.contains(&format!(
            "`content-type: {}`",
            server::metrics::CONTENT_TYPE
        )));
    }
}

store_test! {
    #[tokio::test]
    async fn a_request_is_counted_in_its_latency_buckets(app) {
        app.account_with("u", "10").await;
        app.balance("u").await;
        let scrape = Scrape::of(&app).await;
        let route = [("method", "GET"), ("route", "/v1/accounts/{account_id}/balance")];
        let name = "creditd_http_request_duration_seconds";
        assert_eq!(scrape.value(&format!("{name}_count"), &route), 1.0);
        let seconds = scrape.value(&format!("{name}_sum"), &route);
        assert!(seconds > 0.0, "{seconds}");
        let mut buckets: Vec<(f64, f64)> = scrape
            .find(&format!("{name}_bucket"), &route)
            .iter()
            .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(buckets.len(), 19, "{buckets:?}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 1.0));
        // The buckets are cumulative: the request is in every bucket from
        // the first whose bound its duration does not exceed.
        for (bound, count) in &buckets {
            let expected = if seconds <= *bound { 1.0 } else { 0.0 };
            assert_eq!(*count, expected, "le={bound} for {seconds}s: {buckets:?}");
        }
        assert_eq!(
            scrape.value(
                "creditd_http_requests_total",
                &[("method", "GET"), ("route", "/v1/accounts/{account_id}/balance"), ("status", "200")]
            ),
            1.0
        );
        // No label carries an account id.
        for sample in &scrape.samples {
            for value in sample.labels.values() {
                assert!(!value.contains("/u/") && !value.ends_with("/u"), "{sample:?}");
            }
        }
    }
}

store_test! {
    #[tokio::test]
    async fn unrouted_paths_and_unserved_methods_are_counted_under_fixed_labels(app) {
        let missing = app.get("/v1/acct_7f3a/no/such/route").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
        let unserved = app.send(Method::DELETE, "/v1/accounts", None).await;
        assert_eq!(unserved.status, StatusCode::METHOD_NOT_ALLOWED, "{unserved:?}");
        let unknown = Method::from_bytes(b"PURGE").unwrap();
        let unknown = app.send(unknown, "/v1/accounts/acct_7f3a", None).await;
        assert_eq!(unknown.status, StatusCode::METHOD_NOT_ALLOWED, "{unknown:?}");

        let scrape = Scrape::of(&app).await;
        let requests = "creditd_http_requests_total";
        let counted = [
            [("method", "GET"), ("route", "unmatched"), ("status", "404")],
            [("method", "DELETE"), ("route", "/v1/accounts"), ("status", "405")],
            [("method", "OTHER"), ("route", "/v1/accounts/{account_id}"), ("status", "405")],
        ];
        for labels in counted {
            assert_eq!(scrape.value(requests, &labels), 1.0, "{labels:?}");
            let route = &labels[..2];
            let count = "creditd_http_request_duration_seconds_count";
            assert_eq!(scrape.value(count, route), 1.0, "{route:?}");
        }
        for sample in &scrape.samples {
            for value in sample.labels.values() {
                assert!(!value.contains("acct_7f3a"), "{sample:?}");
            }
        }
    }
}

#[cfg(target_os = "linux")]
store_test! {
    #[tokio::test]
    async fn the_process_is_described_on_linux(app) {
        let scrape = Scrape::of(&app).await;
        let value = |name: &str| scrape.value(name, &[]);
        let resident = value("process_resident_memory_bytes");
        assert!(resident > 0.0);
        assert!(value("process_virtual_memory_bytes") >= resident);
        assert_eq!(value("creditd_process_resident_bytes"), resident);
        let open = value("process_open_fds");
        // At least the listening socket and the database are open.
        assert!(open >= 2.0, "{open}");
        assert!(value("process_max_fds") >= open);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        // The server runs inside this test's process, which started
        // within the last hour and not after now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(started <= now + 1.0 && started > now - 3600.0, "{started} {now}");
    }
}

store_test! {
    #[tokio::test]
    async fn batches_are_measured_and_pending_holds_counted(app) {
        app.account_with("u", "10").await;
        let held = app.post("/v1/accounts/u/holds", serde_json::json!({"amount": "2.5"})).await;
        assert_eq!(held.status, StatusCode::CREATED, "{held:?}");
        let scrape = Scrape::of(&app).await;
        // Three writes: the account, its grant, the hold; each its own batch here.
        let batches = scrape.value("creditd_store_batch_size_count", &[]);
        assert!(batches >= 3.0, "{batches}");
        assert_eq!(scrape.value("creditd_store_batch_size_sum", &[]), scrape.value("creditd_store_commands_total", &[]));
        assert_eq!(scrape.value("creditd_store_batch_commit_seconds_count", &[]), batches);
        assert_eq!(scrape.value("creditd_holds_pending", &[]), 1.0);
        assert_eq!(scrape.value("creditd_holds_pending_credits", &[]), 2.5);
    }
}

//! The description the real binary serves, with every capability plugged in:
//! the checked-in copy readers see is it, and the operations guide lists
//! every error code it can answer under its status.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Server, fresh_db, get};

/// The checked-in copy of the description, for readers of the repository.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

/// What `creditd serve` describes with the test clock on, so that its
/// routes are in it too.
async fn served() -> (String, Value) {
    let (_dir, db) = fresh_db();
    let server = Server::start_with(
        &format!("sqlite://{}", db.display()),
        &[("CREDITD_TEST_CLOCK", "true")],
    );
    let text = reqwest::get(format!("{}/openapi.json", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (status, _) = get(&reqwest::Client::new(), format!("{}/v1/plans", server.base)).await;
    assert_eq!(status, 200, "billing is plugged in");
    server.stop();
    let spec = serde_json::from_str(&text).unwrap();
    (text, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checked_in_copy_is_the_served_description() {
    let (served, spec) = served().await;
    assert!(spec["paths"]["/v1/test-clock/advance"].is_object());
    if std::env::var_os("CREDITD_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == served,
        "docs/openapi.json is not the description creditd serves; regenerate it with \
         `CREDITD_UPDATE_OPENAPI=1 cargo test -p creditd --test openapi`"
    );
}

/// The (status, code) pairs of the description's `ErrorCode`, whose
/// description lists the codes by status: `404: a, b. 409: c.`
fn described_codes(spec: &Value) -> BTreeSet<(u16, String)> {
    let schema = &spec["components"]["schemas"]["ErrorCode"];
    let description = schema["description"].as_str().unwrap();
    let mut pairs = BTreeSet::new();
    for sentence in description.split(". ") {
        let Some((status, codes)) = sentence.split_once(": ") else {
            continue;
        };
        let Ok(status) = status.parse::<u16>() else {
            continue;
        };
        for code in codes.trim_end_matches('.').split(", ") {
            pairs.insert((status, code.to_owned()));
        }
    }
    let listed: BTreeSet<String> = schema["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let described: BTreeSet<String> = pairs.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(listed, described, "every code is described under a status");
    pairs
}

/// The (status, code) pairs of the operations guide's errors table: the
/// quoted words outside parentheses of each row.
fn guide_codes(guide: &str) -> BTreeSet<(u16, String)> {
    let table = guide
        .split("## Errors")
        .nth(1)
        .expect("docs/operations.md has an errors section");
    let mut listed = BTreeSet::new();
    for row in table
        .lines()
        .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
    {
        let mut cells = row.split('|').map(str::trim).skip(1);
        let status: u16 = cells.next().unwrap().parse().unwrap();
        let mut outside = String::new();
        let mut depth = 0;
        for c in cells.next().unwrap().chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        for code in outside.split('`').skip(1).step_by(2) {
            listed.insert((status, code.to_owned()));
        }
    }
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_guide_lists_every_error_code_under_its_status() {
    let (_, spec) = served().await;
    let guide = include_str!("../../../docs/operations.md");
    assert_eq!(guide_codes(guide), described_codes(&spec));
}

/// The tests `docs/security.md` cites: each a `crates/…rs` file followed,
/// in the same bullet, by the names of functions in it.
fn cited_tests(guide: &str) -> Vec<(String, String)> {
    let mut cited = Vec::new();
    for item in guide.split("\n- ").flat_map(|part| part.split("\n\n")) {
        let mut file: Option<String> = None;
        for (i, token) in item.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if token.starts_with("crates/") && token.ends_with(".rs") {
                file = Some(token.to_owned());
            } else if let Some(file) = &file
                && token.contains('_')
                && token
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                cited.push((file.clone(), token.to_owned()));
            }
        }
    }
    cited
}

#[test]
fn the_security_guide_cites_only_tests_that_exist() {
    let guide = include_str!("../../../docs/security.md");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cited = cited_tests(guide);
    assert!(cited.len() >= 10, "{cited:?}");
    for (file, name) in cited {
        let text =
            std::fs::read_to_string(root.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.contains(&format!("fn {name}(")),
            "docs/security.md cites {name} in {file}, which has no such function"
        );
    }
    for area in 1..=10 {
        assert!(
            guide.contains(&format!("## API{area} ")),
            "API{area} is not covered"
        );
    }
}

/// Every `$ref` in `value`, as the names of the schemas it points to.
fn schema_refs(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(name) = inner
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    into.insert(name.to_owned());
                }
                schema_refs(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| schema_refs(i, into)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_the_description_points_to_is_in_it() {
    let (_, spec) = served().await;
    let mut referred = BTreeSet::new();
    schema_refs(&spec, &mut referred);
    let defined: BTreeSet<String> = spec["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let dangling: Vec<&String> = referred.difference(&defined).collect();
    assert!(
        dangling.is_empty(),
        "referred to but not defined: {dangling:?}"
    );
}

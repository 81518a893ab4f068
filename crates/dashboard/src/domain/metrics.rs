//! A few figures read from the server's metrics in the Prometheus text
//! format, for the admin panel's health page.

/// The sum of the samples of metric `name` whose labels `keep` admits (a
/// metric without labels is given `""`); none when no sample is found.
pub fn sum(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => match labelled.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Some(value) = value.split_whitespace().next() else {
            continue;
        };
        if let Ok(value) = value.parse::<f64>()
            && keep(labels)
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// The sum of every sample of metric `name`.
pub fn total(text: &str, name: &str) -> Option<f64> {
    sum(text, name, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP creditd_http_requests HTTP requests answered.
# TYPE creditd_http_requests counter
creditd_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 3
creditd_http_requests_total{method=\"POST\",route=\"/v1/x\",status=\"503\"} 2
creditd_store_batches_total 7
creditd_store_batches_total_other 100
# EOF
";

    #[test]
    fn samples_of_a_metric_are_summed() {
        assert_eq!(total(TEXT, "creditd_http_requests_total"), Some(5.0));
    }

    #[test]
    fn labels_choose_the_samples_counted() {
        let errors = sum(TEXT, "creditd_http_requests_total", |l| {
            l.contains("status=\"5")
        });
        assert_eq!(errors, Some(2.0));
    }

    #[test]
    fn a_name_matches_whole_and_a_missing_metric_is_none() {
        assert_eq!(total(TEXT, "creditd_store_batches_total"), Some(7.0));
        assert_eq!(total(TEXT, "creditd_store_commands_total"), None);
    }
}

//! The usage chart: credits spent per day as stacked bars, one colour per
//! group (a model, a feature, a project), drawn as SVG on the server.

use ledger::{Amount, Timestamp};

use super::format;

/// The chart's drawing area, in SVG user units; the page scales it.
const WIDTH: i64 = 720;
const HEIGHT: i64 = 240;
/// Room for the axis labels.
const LEFT: i64 = 56;
const BOTTOM: i64 = 24;
const TOP: i64 = 12;

/// The colours of the groups, in order; a group past the last shares the
/// last one ("other"). Each has a contrast of 3:1 or more on white.
pub const PALETTE: [&str; 6] = [
    "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#6b7280",
];

/// One group's credits spent on each day of the chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// The group's name, shown in the legend.
    pub name: String,
    /// Credits spent on each day, in the chart's day order.
    pub per_day: Vec<Amount>,
}

/// Folds every group past the palette's last colour but one into one
/// group named `other`, so that the chart has at most as many colours as
/// the palette.
pub fn fold(mut series: Vec<Series>, other: &str) -> Vec<Series> {
    if series.len() <= PALETTE.len() {
        return series;
    }
    let rest = series.split_off(PALETTE.len() - 1);
    let days = rest.first().map_or(0, |s| s.per_day.len());
    let mut folded = Series {
        name: other.to_owned(),
        per_day: vec![Amount::ZERO; days],
    };
    for group in rest {
        for (sum, spent) in folded.per_day.iter_mut().zip(group.per_day) {
            *sum = sum.checked_add(spent).unwrap_or(*sum);
        }
    }
    series.push(folded);
    series
}

/// The SVG of `series` over the days starting at `days` (one bar each),
/// titled `label` for assistive technology. Names are escaped here.
pub fn draw(days: &[Timestamp], series: &[Series], label: &str) -> String {
    let totals: Vec<i64> = (0..days.len())
        .map(|day| {
            series
                .iter()
                .map(|s| s.per_day.get(day).map_or(0, |a| a.micros().max(0)))
                .fold(0i64, i64::saturating_add)
        })
        .collect();
    let top = nice_ceiling(totals.iter().copied().max().unwrap_or(0));
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT) / (days.len().max(1) as i64);
    let bar = (slot * 7 / 10).max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label)
    );
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{WIDTH}\" y2=\"{y}\" stroke=\"#9ca3af\"/>",
        y = HEIGHT - BOTTOM
    ));
    svg.push_str(&format!(
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" font-size=\"11\" fill=\"#374151\">{}</text>",
        format::credits(Amount::from_micros(top)),
        x = LEFT - 6,
        y = TOP + 10,
    ));
    svg.push_str(&format!(
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" font-size=\"11\" fill=\"#374151\">0</text>",
        x = LEFT - 6,
        y = HEIGHT - BOTTOM,
    ));
    for (day, start) in days.iter().enumerate() {
        let x = LEFT + day as i64 * slot + (slot - bar) / 2;
        let mut base = HEIGHT - BOTTOM;
        for (at, group) in series.iter().enumerate() {
            let spent = group.per_day.get(day).map_or(0, |a| a.micros().max(0));
            let height = scaled(spent, top, plot_height);
            if height == 0 {
                continue;
            }
            base -= height;
            svg.push_str(&format!(
                "<rect x=\"{x}\" y=\"{base}\" width=\"{bar}\" height=\"{height}\" fill=\"{}\">\
                 <title>{} {}: {}</title></rect>",
                PALETTE[at.min(PALETTE.len() - 1)],
                format::date(*start),
                escape(&group.name),
                format::credits(Amount::from_micros(spent)),
            ));
        }
        if day.is_multiple_of(7) {
            let civil = start.civil();
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" \
                 fill=\"#374151\">{:02}-{:02}</text>",
                x + bar / 2,
                HEIGHT - 6,
                civil.month,
                civil.day
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The height of `value` on an axis from 0 to `top` drawn `height` high,
/// at least one unit for anything spent.
fn scaled(value: i64, top: i64, height: i64) -> i64 {
    if value <= 0 || top <= 0 {
        return 0;
    }
    let scaled = i128::from(value) * i128::from(height) / i128::from(top);
    (scaled as i64).clamp(1, height)
}

/// The axis' top: the smallest 1, 2 or 5 times a power of ten credits at
/// or above `max` micros (one credit when nothing was spent).
fn nice_ceiling(max: i64) -> i64 {
    let mut step: i64 = ledger::MICROS_PER_CREDIT;
    loop {
        for factor in [1, 2, 5] {
            let top = step.saturating_mul(factor);
            if top >= max || top == i64::MAX {
                return top;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// Escapes text for SVG's text and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize) -> Vec<Timestamp> {
        let start = Timestamp::parse_rfc3339("2026-11-01T00:00:00Z").unwrap();
        (0..n).map(|d| start.plus_secs(d as i64 * 86_400)).collect()
    }

    fn series(name: &str, per_day: &[i64]) -> Series {
        Series {
            name: name.into(),
            per_day: per_day.iter().map(|c| Amount::credits(*c)).collect(),
        }
    }

    #[test]
    fn the_axis_top_is_a_round_figure_at_or_above_the_tallest_day() {
        assert_eq!(nice_ceiling(0), 1_000_000);
        assert_eq!(nice_ceiling(1_500_000), 2_000_000);
        assert_eq!(nice_ceiling(7_000_000_000), 10_000_000_000);
        assert_eq!(nice_ceiling(50_000_000), 50_000_000);
    }

    #[test]
    fn a_day_twice_as_costly_has_a_bar_twice_as_tall() {
        let svg = draw(&days(2), &[series("gpt-4o", &[25, 50])], "Usage");
        assert!(svg.contains("height=\"102\""), "{svg}");
        assert!(svg.contains("height=\"204\""), "{svg}");
    }

    #[test]
    fn groups_stack_on_one_bar_per_day_each_in_its_colour() {
        let svg = draw(&days(1), &[series("a", &[10]), series("b", &[10])], "Usage");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
    }

    #[test]
    fn a_day_with_nothing_spent_draws_no_bar() {
        let svg = draw(&days(3), &[series("a", &[0, 4, 0])], "Usage");
        assert_eq!(svg.matches("<rect").count(), 1);
    }

    #[test]
    fn names_are_escaped() {
        let svg = draw(&days(1), &[series("<script>&", &[1])], "a \"label\"");
        assert!(svg.contains("&lt;script&gt;&amp;"));
        assert!(svg.contains("aria-label=\"a &quot;label&quot;\""));
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn groups_past_the_palette_fold_into_other() {
        let many: Vec<Series> = (0..9).map(|i| series(&format!("m{i}"), &[1, 2])).collect();
        let folded = fold(many, "other");
        assert_eq!(folded.len(), PALETTE.len());
        let other = folded.last().unwrap();
        assert_eq!(other.name, "other");
        assert_eq!(other.per_day, vec![Amount::credits(4), Amount::credits(8)]);
    }
}

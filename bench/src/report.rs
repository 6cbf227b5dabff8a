//! Medians over repeated runs, as a Markdown table and an SVG chart of
//! broadcast deliveries/s and p99 latency against the number of clients.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

type Key = (String, String, u64); // scenario, server, clients

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

struct Group {
    runs: Vec<Value>,
    /// The invalid runs: counted, and read for the generator's CPU share.
    rejected: Vec<Value>,
}

impl Group {
    fn median(&self, field: &str) -> f64 {
        median(self.runs.iter().filter_map(|r| r[field].as_f64()).collect())
    }
}

fn load(input: &Path) -> Result<BTreeMap<Key, Group>, String> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let run: Value =
            serde_json::from_str(line).map_err(|e| format!("bad line {line:?}: {e}"))?;
        let key = (
            run["scenario"].as_str().unwrap_or("?").to_owned(),
            run["server"].as_str().unwrap_or("?").to_owned(),
            run["clients"].as_u64().unwrap_or(0),
        );
        let group = groups.entry(key).or_insert(Group {
            runs: Vec::new(),
            rejected: Vec::new(),
        });
        if run["valid"].as_bool() == Some(true) {
            group.runs.push(run);
        } else {
            group.rejected.push(run);
        }
    }
    Ok(groups)
}

/// The headline figure of each scenario, and its unit.
fn headline(scenario: &str) -> (&'static str, &'static str) {
    match scenario {
        "idle" => ("rss_per_connection_bytes", "bytes/conn"),
        "connect" => ("connects_per_s", "conn/s"),
        "direct" => ("messages_per_s", "msg/s"),
        _ => ("deliveries_per_s", "deliveries/s"),
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{:.0}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// The server every other one is divided by.
const CEILING: &str = "ceiling";

pub fn write(input: &Path, markdown: &Path, chart: &Path) -> Result<(), String> {
    let groups = load(input)?;
    let mut md = String::from(
        "| scenario | clients | server | runs (invalid) | headline | ÷ ceiling | p50 ms | p99 ms | p999 ms | max ms | POST p50 ms | POST p99 ms | server RSS at idle, MiB | server CPU at idle | generator CPU |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((scenario, server, clients), group) in &groups {
        let (field, unit) = headline(scenario);
        let value = group.median(field);
        let ceiling = groups
            .get(&(scenario.clone(), CEILING.into(), *clients))
            .map(|g| g.median(field))
            .unwrap_or(f64::NAN);
        let ratio = if server == CEILING || ceiling.is_nan() || value.is_nan() {
            String::from("–")
        } else {
            format!("{:.2}×", value / ceiling)
        };
        let ms = |f: &str| fmt(group.median(f) / 1000.0);
        md.push_str(&format!(
            "| {scenario} | {clients} | {server} | {} ({}) | {} {unit} | {ratio} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            group.runs.len(),
            group.rejected.len(),
            fmt(value),
            ms("p50_us"),
            ms("p99_us"),
            ms("p999_us"),
            ms("max_us"),
            ms("post_p50_us"),
            ms("post_p99_us"),
            if scenario == "idle" {
                format!(
                    "{:.1} → {:.1}",
                    group.median("rss_before_kib") / 1024.0,
                    group.median("rss_after_kib") / 1024.0
                )
            } else {
                String::from("–")
            },
            if scenario == "idle" {
                format!("{:.1} %", group.median("server_idle_cpu") * 100.0)
            } else {
                String::from("–")
            },
            generator_cpu(group),
        ));
    }
    md.push_str(
        "\n÷ ceiling: the median headline over the ceiling server's (bench/src/bin/ceiling.rs) in the \
         same scenario; for idle (bytes per connection) lower is better. generator CPU: the highest \
         share of one core the load generator used over the measured phase, among all runs of the \
         row (valid and invalid; a run above 90 % is invalid). POST: the publisher's round trip \
         (request sent to answer read) while the server fans out; delivery latencies (p50 to max) \
         are from the publish to the client's read. server RSS at idle: the whole server's RSS before the \
         clients connect and while they are held (the headline is the difference per connection). \
         server CPU at idle: the server's CPU over the idle \
         hold, as a share of one core (heartbeats and timers only). herald-redis: two herald nodes \
         on one Redis (all three on the server's core), clients spread over both, publishers on the \
         first; its memory is the two nodes'.\n",
    );
    std::fs::write(markdown, md).map_err(|e| format!("{}: {e}", markdown.display()))?;
    draw(&groups, chart).map_err(|e| format!("{}: {e}", chart.display()))
}

/// The highest generator CPU share among a row's runs, as a percentage.
fn generator_cpu(group: &Group) -> String {
    let highest = group
        .runs
        .iter()
        .chain(&group.rejected)
        .filter_map(|r| r["generator_cpu"].as_f64())
        .fold(f64::NAN, f64::max);
    if highest.is_nan() {
        String::from("–")
    } else {
        format!("{:.0} %", highest * 100.0)
    }
}

fn draw(groups: &BTreeMap<Key, Group>, chart: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut series: BTreeMap<String, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for ((scenario, server, clients), group) in groups {
        if scenario == "broadcast" && !group.runs.is_empty() {
            let rate = group.median("deliveries_per_s");
            let p99_ms = group.median("p99_us") / 1000.0;
            series
                .entry(server.clone())
                .or_default()
                .push((*clients, rate, p99_ms));
        }
    }
    let root = SVGBackend::new(chart, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let max_clients = series.values().flatten().map(|p| p.0).max().unwrap_or(1) as f64;
    let max_rate = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let max_p99 = series.values().flatten().map(|p| p.2).fold(1.0, f64::max);
    let colors = [
        RGBColor(200, 60, 40),
        RGBColor(40, 90, 200),
        RGBColor(40, 150, 70),
        RGBColor(150, 90, 170),
    ];

    let mut rate_chart = ChartBuilder::on(&left)
        .caption("broadcast deliveries/s", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_clients * 1.05, 0.0..max_rate * 1.1)?;
    rate_chart
        .configure_mesh()
        .x_desc("clients")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()?;
    let mut p99_chart = ChartBuilder::on(&right)
        .caption("broadcast p99 latency (ms)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_clients * 1.05, 0.0..max_p99 * 1.1)?;
    p99_chart
        .configure_mesh()
        .x_desc("clients")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;

    for (i, (server, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let rates: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.1)).collect();
        let p99s: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.2)).collect();
        rate_chart
            .draw_series(LineSeries::new(rates.clone(), color.stroke_width(2)))?
            .label(server.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        rate_chart.draw_series(rates.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        p99_chart.draw_series(LineSeries::new(p99s.clone(), color.stroke_width(2)))?;
        p99_chart.draw_series(p99s.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    rate_chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_to_the_ceiling_and_the_generator_cpu_is_shown() {
        let dir = std::env::temp_dir().join(format!("herald-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |server: &str, rate: f64, cpu: f64, valid: bool| {
            format!(
                r#"{{"scenario":"broadcast","server":"{server}","clients":100,"deliveries_per_s":{rate},"p50_us":1000,"p99_us":2000,"p999_us":3000,"max_us":4000,"generator_cpu":{cpu},"valid":{valid}}}"#
            )
        };
        let input = [
            line("ceiling", 200.0, 0.40, true),
            line("herald", 100.0, 0.30, true),
            line("herald", 1.0, 0.95, false),
            line("socketio", 50.0, 0.20, true),
        ]
        .join("\n");
        std::fs::write(dir.join("results.jsonl"), input).unwrap();
        write(
            &dir.join("results.jsonl"),
            &dir.join("summary.md"),
            &dir.join("chart.svg"),
        )
        .unwrap();
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        let row = |server: &str| {
            md.lines()
                .find(|l| l.contains(&format!("| {server} |")))
                .unwrap()
                .to_owned()
        };
        assert!(row("ceiling").contains("| 200 deliveries/s | – |"), "{md}");
        // The invalid run is left out of the median but not of the CPU.
        assert!(
            row("herald").contains("| 1 (1) | 100 deliveries/s | 0.50× |"),
            "{md}"
        );
        assert!(row("herald").ends_with("| 95 % |"), "{md}");
        assert!(row("socketio").contains("| 0.25× |"), "{md}");
        assert!(row("socketio").ends_with("| 20 % |"), "{md}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn idle_rows_show_the_whole_servers_memory_beside_the_growth_per_connection() {
        let dir = std::env::temp_dir().join(format!("herald-bench-idle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |server: &str, before: u64, after: u64| {
            format!(
                r#"{{"scenario":"idle","server":"{server}","clients":1000,"rss_per_connection_bytes":{},"rss_before_kib":{before},"rss_after_kib":{after},"server_idle_cpu":0.01,"generator_cpu":0.1,"valid":true}}"#,
                (after - before) * 1024 / 1000
            )
        };
        let input = [line("ceiling", 3072, 11264), line("herald", 20480, 25600)].join("\n");
        std::fs::write(dir.join("results.jsonl"), input).unwrap();
        write(
            &dir.join("results.jsonl"),
            &dir.join("summary.md"),
            &dir.join("chart.svg"),
        )
        .unwrap();
        let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        let row = |server: &str| {
            md.lines()
                .find(|l| l.contains(&format!("| {server} |")))
                .unwrap()
                .to_owned()
        };
        // herald grows less per connection but starts higher: both show.
        assert!(
            row("herald").contains("| 5242 bytes/conn | 0.62× |"),
            "{md}"
        );
        assert!(row("herald").contains("| 20.0 → 25.0 | 1.0 % |"), "{md}");
        assert!(row("ceiling").contains("| 3.0 → 11.0 |"), "{md}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

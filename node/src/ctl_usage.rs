//! `floodgate ctl usage` and `floodgate ctl traces`: the projector's usage JSON API
//! (`--projector`) printed as tables, or as the API's JSON with `--json`. `ctl usage
//! --parked` lists the event log's messages the projector parked as unreadable.
//!
//! Ranges are `--since` (a duration back from now, default 24h) or `--from`/`--to` (Unix
//! seconds). Money prints in dollars from integer micro-dollars; latencies in ms.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floodgate_projector::parked::ParkedView;
use floodgate_projector::query::{Point, TopReport, UsageReport};
use floodgate_projector::view::TraceView;
use serde_json::Value;

/// Filters and range shared by `ctl usage` and `ctl traces`.
#[derive(Debug, clap::Args)]
pub struct Scope {
    /// The projector's usage JSON API.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    projector: String,
    /// How far back from now (`15m`, `24h`, `7d`); ignored with `--from`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// Start, Unix seconds.
    #[arg(long)]
    from: Option<i64>,
    /// End, Unix seconds (default: now).
    #[arg(long)]
    to: Option<i64>,
    /// Only this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only this provider.
    #[arg(long)]
    provider: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this gateway key id.
    #[arg(long)]
    key: Option<String>,
    /// Only this team.
    #[arg(long)]
    team: Option<String>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this status class (`2xx`, `4xx`, `5xx`, `499`).
    #[arg(long)]
    status: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `floodgate ctl usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    scope: Scope,
    /// Bucket width: `minute`, `hour` or `day`.
    #[arg(long, default_value = "hour")]
    granularity: String,
    /// Group by these dimensions (comma-separated: endpoint, provider, model, key, team,
    /// user, status).
    #[arg(long, value_delimiter = ',')]
    group_by: Vec<String>,
    /// Print one row per bucket instead of one per group.
    #[arg(long)]
    buckets: bool,
    /// Rank the values of this dimension instead (`key`, `team`, `endpoint`, `model`, ...).
    #[arg(long)]
    top: Option<String>,
    /// With `--top`: rank by `cost`, `tokens` or `requests`.
    #[arg(long, default_value = "cost")]
    by: String,
    /// With `--top` or `--parked`: how many.
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// List the messages of the event log the projector parked because they are not
    /// readable events (garbage, an unknown schema version) instead; the range and filters
    /// do not apply.
    #[arg(long, conflicts_with = "top")]
    parked: bool,
    /// With `--parked`: only messages after this sequence.
    #[arg(long, default_value_t = 0, requires = "parked")]
    after: u64,
}

/// `floodgate ctl traces`.
#[derive(Debug, clap::Args)]
pub struct TracesArgs {
    #[command(flatten)]
    scope: Scope,
    /// Show one trace (an event id or request id), payloads included.
    #[arg(long)]
    id: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

impl Scope {
    fn params(&self) -> Vec<(String, String)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let to = self.to.unwrap_or(now);
        let back = i64::try_from(self.since.as_secs()).unwrap_or(i64::MAX);
        let from = self.from.unwrap_or(to.saturating_sub(back));
        let mut params = vec![
            ("from".to_owned(), from.to_string()),
            ("to".to_owned(), to.to_string()),
        ];
        for (name, value) in [
            ("endpoint", &self.endpoint),
            ("provider", &self.provider),
            ("model", &self.model),
            ("key", &self.key),
            ("team", &self.team),
            ("user", &self.user),
            ("status", &self.status),
        ] {
            if let Some(value) = value {
                params.push((name.to_owned(), value.clone()));
            }
        }
        params
    }

    async fn get(&self, path: &str, params: &[(String, String)]) -> Result<Value, String> {
        let base = self.projector.trim_end_matches('/');
        let url = url::Url::parse_with_params(&format!("{base}/usage/v1/{path}"), params)
            .map_err(|e| format!("bad --projector URL {base}: {e}"))?;
        let response = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot reach the projector at {base}: {e}"))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| format!("the projector answered {status} without JSON: {e}"))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(serde_json::to_string_pretty(&value).unwrap_or_else(|_| status.to_string()))
        }
    }
}

fn dollars(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn ms(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1_000.0)
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

const POINT_HEADER: [&str; 10] = [
    "requests",
    "errors",
    "err%",
    "in_tok",
    "out_tok",
    "cost",
    "unpriced",
    "p50_ms",
    "p99_ms",
    "ttft_p50_ms",
];

fn point_cells(p: &Point) -> Vec<String> {
    vec![
        p.requests.to_string(),
        p.errors.to_string(),
        format!("{:.1}", p.error_rate * 100.0),
        p.tokens.input.to_string(),
        p.tokens.output.to_string(),
        dollars(p.cost_micros),
        p.unknown_cost.to_string(),
        ms(p.latency_us.p50),
        ms(p.latency_us.p99),
        ms(p.ttft_us.p50),
    ]
}

/// The usage table: one row per group (or per group and bucket).
pub fn usage_table(report: &UsageReport, group_by: &[String], buckets: bool) -> String {
    let mut header: Vec<&str> = group_by.iter().map(String::as_str).collect();
    if buckets {
        header.push("bucket");
    }
    header.extend(POINT_HEADER);
    let mut rows = Vec::new();
    for series in &report.series {
        let group: Vec<String> = group_by
            .iter()
            .map(|d| series.group.get(d).cloned().unwrap_or_default())
            .collect();
        let points: Vec<&Point> = if buckets {
            series.points.iter().collect()
        } else {
            vec![&series.total]
        };
        for point in points {
            let mut row = group.clone();
            if buckets {
                row.push(point.start.to_string());
            }
            row.extend(point_cells(point));
            rows.push(row);
        }
    }
    table(&header, &rows)
}

/// The ranking table.
pub fn top_table(report: &TopReport, dimension: &str) -> String {
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|e| {
            vec![
                e.value.clone(),
                e.requests.to_string(),
                e.errors.to_string(),
                e.tokens.to_string(),
                dollars(e.cost_micros),
                e.unknown_cost.to_string(),
            ]
        })
        .collect();
    table(
        &[
            dimension, "requests", "errors", "tokens", "cost", "unpriced",
        ],
        &rows,
    )
}

/// The parked messages table.
pub fn parked_table(parked: &[ParkedView]) -> String {
    let rows: Vec<Vec<String>> = parked
        .iter()
        .map(|p| {
            vec![
                p.sequence.to_string(),
                p.parked_at_unix_us.to_string(),
                p.size.to_string(),
                p.reason.clone(),
            ]
        })
        .collect();
    table(&["sequence", "parked_at_us", "bytes", "reason"], &rows)
}

/// The trace list table.
pub fn traces_table(traces: &[TraceView]) -> String {
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            vec![
                t.time_unix_us.to_string(),
                t.request_id.clone(),
                t.endpoint.clone(),
                t.model.clone(),
                t.key_id.clone(),
                t.status.to_string(),
                t.attempts.len().to_string(),
                (t.tokens.input + t.tokens.output).to_string(),
                t.cost_micros.map_or_else(|| "unknown".to_owned(), dollars),
                ms(t.total_latency_us),
            ]
        })
        .collect();
    table(
        &[
            "time_us",
            "request_id",
            "endpoint",
            "model",
            "key",
            "status",
            "attempts",
            "tokens",
            "cost",
            "latency_ms",
        ],
        &rows,
    )
}

fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("unexpected answer from the projector: {e}"))
}

/// Runs `ctl usage`; the text to print.
pub async fn usage(args: UsageArgs) -> Result<String, String> {
    let json = args.scope.json;
    if args.parked {
        let params = [
            ("after".to_owned(), args.after.to_string()),
            ("limit".to_owned(), args.limit.to_string()),
        ];
        let value = args.scope.get("parked", &params).await?;
        if json {
            return Ok(pretty(&value));
        }
        let next = value["next_after"].as_u64();
        let parked: Vec<ParkedView> = decode(value["parked"].clone())?;
        let mut out = parked_table(&parked);
        if let Some(next) = next {
            let _ = writeln!(out, "more: --after {next}");
        }
        return Ok(out);
    }
    let mut params = args.scope.params();
    if let Some(dimension) = &args.top {
        params.extend([
            ("dimension".to_owned(), dimension.clone()),
            ("by".to_owned(), args.by.clone()),
            ("limit".to_owned(), args.limit.to_string()),
        ]);
        let value = args.scope.get("top", &params).await?;
        if json {
            return Ok(pretty(&value));
        }
        return Ok(top_table(&decode(value)?, dimension));
    }
    params.push(("granularity".to_owned(), args.granularity.clone()));
    if !args.group_by.is_empty() {
        params.push(("group_by".to_owned(), args.group_by.join(",")));
    }
    let value = args.scope.get("usage", &params).await?;
    if json {
        return Ok(pretty(&value));
    }
    Ok(usage_table(&decode(value)?, &args.group_by, args.buckets))
}

/// Runs `ctl traces`; the text to print.
pub async fn traces(args: TracesArgs) -> Result<String, String> {
    if let Some(id) = &args.id {
        let value = args.scope.get(&format!("traces/{id}"), &[]).await?;
        return Ok(pretty(&value));
    }
    let mut params = args.scope.params();
    params.push(("limit".to_owned(), args.limit.to_string()));
    if let Some(cursor) = &args.cursor {
        params.push(("cursor".to_owned(), cursor.clone()));
    }
    let value = args.scope.get("traces", &params).await?;
    if args.scope.json {
        return Ok(pretty(&value));
    }
    let next = value["next_cursor"].as_str().map(str::to_owned);
    let traces: Vec<TraceView> = decode(value["traces"].clone())?;
    let mut out = traces_table(&traces);
    if let Some(next) = next {
        let _ = writeln!(out, "more: --cursor {next}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use floodgate_projector::query::{Series, TopEntry};

    use super::*;

    #[test]
    fn usage_rows_show_groups_money_and_latency() {
        let mut total = Point {
            requests: 4,
            errors: 1,
            error_rate: 0.25,
            cost_micros: 1_500_042,
            ..Point::default()
        };
        total.latency_us.p50 = 12_300;
        let report = UsageReport {
            series: vec![Series {
                group: [("key".to_owned(), "k1".to_owned())].into(),
                points: Vec::new(),
                total,
            }],
        };
        let text = usage_table(&report, &["key".to_owned()], false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("key  requests  errors  err%"));
        assert!(lines[1].starts_with("k1   4         1       25.0"));
        assert!(lines[1].contains("$1.500042"));
        assert!(lines[1].contains("12.3"));
    }

    #[test]
    fn parked_rows_show_sequence_size_and_reason() {
        let text = parked_table(&[ParkedView {
            sequence: 12,
            parked_at_unix_us: 1_700_000_000_000_000,
            reason: "unknown event schema version 2".into(),
            size: 3,
            payload_hex: "000102".into(),
        }]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("sequence  parked_at_us"), "{text}");
        assert!(lines[1].starts_with("12 "), "{text}");
        assert!(
            lines[1].ends_with("3      unknown event schema version 2"),
            "{text}"
        );
    }

    #[test]
    fn top_rows_keep_the_ranking_order() {
        let report = TopReport {
            entries: vec![
                TopEntry {
                    value: "team-a".into(),
                    cost_micros: 9,
                    ..TopEntry::default()
                },
                TopEntry {
                    value: "team-b".into(),
                    cost_micros: 3,
                    ..TopEntry::default()
                },
            ],
        };
        let text = top_table(&report, "team");
        let values: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(values, ["team-a", "team-b"]);
        assert!(text.contains("$0.000009"));
    }
}

//! Printing results: aligned tables for people, JSON for scripts.

use serde_json::Value;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// Renders rows under headers with columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints `value` as JSON, or `rows` as a table.
pub fn print(format: Format, value: &Value, headers: &[&str], rows: &[Vec<String>]) {
    match format {
        Format::Json => meridian_common::outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
        ),
        Format::Table => meridian_common::out!("{}", table(headers, rows)),
    }
}

/// A millisecond timestamp as RFC 3339 (UTC), or `-` for 0.
pub fn time(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A QUIC path RTT in microseconds as milliseconds (`0.4 ms`), or `-` for 0 (never recorded).
pub fn path_rtt(us: u64) -> String {
    if us == 0 {
        return "-".into();
    }
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// A site's measured RTTs per region (`paris 30 ms, berlin 5 ms`), or `-` for none.
pub fn measured_rtts(rtts: &[meridian_proto::v1::MeasuredRttRecord]) -> String {
    if rtts.is_empty() {
        return "-".into();
    }
    rtts.iter()
        .map(|m| format!("{} {} ms", m.region, m.rtt_ms))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_times_render() {
        let t = table(
            &["ID", "STATE"],
            &[
                vec!["wl-1".into(), "active".into()],
                vec!["wl-12345".into(), "pending".into()],
            ],
        );
        assert_eq!(t, "ID        STATE\nwl-1      active\nwl-12345  pending\n");
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rtts_render() {
        assert_eq!(path_rtt(0), "-");
        assert_eq!(path_rtt(430), "0.4 ms");
        assert_eq!(path_rtt(31_250), "31.2 ms");
        assert_eq!(measured_rtts(&[]), "-");
        let m = |region: &str, rtt_ms| meridian_proto::v1::MeasuredRttRecord {
            site: "edge-1".into(),
            region: region.into(),
            rtt_ms,
            measured_at_ms: 1,
        };
        assert_eq!(
            measured_rtts(&[m("berlin", 5), m("paris", 30)]),
            "berlin 5 ms, paris 30 ms"
        );
    }
}

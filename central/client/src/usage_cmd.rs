//! `meridian usage ...`: metered usage for billing export, and a tenant's totals.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use meridian_proto::v1 as proto;
use serde_json::{Value, json};

use super::CliError;
use super::client::Clients;
use super::output::{Format, print, time};

/// Usage commands. Periods are UTC hours; a period is final once every site that can have
/// usage in it has reported past its end (a site cut off from central keeps it open).
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Usage rows per period, tenant, workload, site and resource, as CSV or JSON lines.
    Export {
        /// Start: RFC 3339 (`2026-12-01T00:00:00Z`) or a date (`2026-12-01`, midnight UTC).
        #[arg(long)]
        from: String,
        /// End (exclusive), same forms; at most 31 days after --from.
        #[arg(long)]
        to: String,
        /// Only this tenant's usage (tenant users: their own, always).
        #[arg(long)]
        tenant: Option<String>,
        /// csv or jsonl.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write here instead of standard output (replaced only once the export is complete).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// A tenant's totals per resource over a range, and whether they are final.
    Totals {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// The tenant (tenant users: their own, the default).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// The columns of an export, in order.
pub const COLUMNS: [&str; 9] = [
    "period_start",
    "tenant",
    "workload",
    "site",
    "resource",
    "detail",
    "amount",
    "unit",
    "final",
];

fn resource(raw: i32) -> (&'static str, &'static str) {
    match proto::UsageResource::try_from(raw) {
        Ok(proto::UsageResource::Gpu) => ("gpu", "gpu_seconds"),
        Ok(proto::UsageResource::MigSlice) => ("mig_slice", "slice_seconds"),
        Ok(proto::UsageResource::CpuCore) => ("cpu_core", "core_seconds"),
        Ok(proto::UsageResource::Storage) => ("storage", "gib_hours"),
        Ok(proto::UsageResource::Egress) => ("egress", "bytes"),
        _ => ("unknown", ""),
    }
}

/// `2026-12-01T00:00:00Z` or `2026-12-01` as unix ms; errors name the flag.
pub fn parse_time(flag: &str, text: &str) -> Result<i64, CliError> {
    use time::format_description::well_known::Rfc3339;
    let bad = || {
        CliError::usage(format!(
            "--{flag} {text}: use RFC 3339 (2026-12-01T00:00:00Z) or a date (2026-12-01)"
        ))
    };
    let t = match time::OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(text, &format)
                .map_err(|_| bad())?
                .midnight()
                .assume_utc()
        }
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

fn row_fields(r: &proto::UsageRow) -> [String; 9] {
    let (name, unit) = resource(r.resource);
    [
        time(r.period_start_ms),
        r.tenant.clone(),
        r.workload.clone(),
        r.site.clone(),
        name.to_owned(),
        r.detail.clone(),
        format!("{:.3}", r.amount),
        unit.to_owned(),
        r.r#final.to_string(),
    ]
}

/// The export as bytes in `format`.
pub fn render(rows: &[proto::UsageRow], format: ExportFormat) -> Result<Vec<u8>, CliError> {
    let fail = |e: &dyn std::fmt::Display| CliError {
        code: 1,
        message: format!("cannot write the export: {e}"),
    };
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(COLUMNS).map_err(|e| fail(&e))?;
            for r in rows {
                w.write_record(row_fields(r)).map_err(|e| fail(&e))?;
            }
            w.into_inner().map_err(|e| fail(&e))
        }
        ExportFormat::Jsonl => {
            let mut out = Vec::new();
            for r in rows {
                let (name, unit) = resource(r.resource);
                let line = json!({
                    "period_start": time(r.period_start_ms),
                    "period_start_ms": r.period_start_ms,
                    "tenant": r.tenant,
                    "workload": r.workload,
                    "site": r.site,
                    "resource": name,
                    "detail": r.detail,
                    "amount": r.amount,
                    "unit": unit,
                    "final": r.r#final,
                });
                serde_json::to_writer(&mut out, &line).map_err(|e| fail(&e))?;
                out.push(b'\n');
            }
            Ok(out)
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so a reader never
/// sees half an export.
fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError {
        code: 1,
        message: format!("cannot write {}: {e}", path.display()),
    };
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Periods not final, as a warning line for people.
fn not_final(periods: &[proto::UsagePeriod]) -> Option<String> {
    let open: Vec<&proto::UsagePeriod> = periods.iter().filter(|p| !p.r#final).collect();
    let first = open.first()?;
    let mut sites: Vec<&str> = open
        .iter()
        .flat_map(|p| p.sites_behind.iter().map(String::as_str))
        .collect();
    sites.sort_unstable();
    sites.dedup();
    Some(format!(
        "{} of {} periods not final yet (from {}): waiting for reports from {}",
        open.len(),
        periods.len(),
        time(first.start_ms),
        sites.join(", ")
    ))
}

/// Runs one usage command.
pub async fn usage(c: &mut Clients, format: Format, cmd: UsageCommand) -> Result<(), CliError> {
    match cmd {
        UsageCommand::Export {
            from,
            to,
            tenant,
            format: export,
            file,
        } => {
            let r = c
                .usage
                .export_usage(proto::ExportUsageRequest {
                    from_ms: parse_time("from", &from)?,
                    to_ms: parse_time("to", &to)?,
                    tenant: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let bytes = render(&r.rows, export)?;
            match file {
                Some(path) => {
                    write_file(&path, &bytes)?;
                    eprintln!("wrote {} rows to {}", r.rows.len(), path.display());
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)
                        .and_then(|()| out.flush())
                        .map_err(|e| CliError {
                            code: 1,
                            message: format!("cannot write to standard output: {e}"),
                        })?;
                }
            }
            if let Some(warning) = not_final(&r.periods) {
                eprintln!("meridian: {warning}");
            }
            Ok(())
        }
        UsageCommand::Totals { from, to, tenant } => {
            let r = c
                .usage
                .get_usage_totals(proto::GetUsageTotalsRequest {
                    tenant: tenant.unwrap_or_default(),
                    from_ms: parse_time("from", &from)?,
                    to_ms: parse_time("to", &to)?,
                })
                .await?
                .into_inner();
            let value = json!({
                "tenant": r.tenant,
                "final": r.r#final,
                "totals": r.totals.iter().map(|t| {
                    let (name, unit) = resource(t.resource);
                    json!({"resource": name, "detail": t.detail, "amount": t.amount, "unit": unit})
                }).collect::<Vec<Value>>(),
                "periods_not_final": r.periods.iter().filter(|p| !p.r#final).map(|p| json!({
                    "start_ms": p.start_ms, "sites_behind": p.sites_behind,
                })).collect::<Vec<Value>>(),
            });
            let rows: Vec<Vec<String>> = r
                .totals
                .iter()
                .map(|t| {
                    let (name, unit) = resource(t.resource);
                    vec![
                        name.to_owned(),
                        t.detail.clone(),
                        format!("{:.3}", t.amount),
                        unit.to_owned(),
                    ]
                })
                .collect();
            print(
                format,
                &value,
                &["RESOURCE", "DETAIL", "AMOUNT", "UNIT"],
                &rows,
            );
            if format == Format::Table {
                match not_final(&r.periods) {
                    Some(w) => println!("\nnot final: {w}"),
                    None => println!("\nfinal: every period is complete"),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_dates_and_bad_ones_name_the_flag() {
        assert_eq!(
            parse_time("from", "2026-12-01T00:00:00Z").unwrap(),
            1_796_083_200_000
        );
        assert_eq!(parse_time("from", "2026-12-01").unwrap(), 1_796_083_200_000);
        let e = parse_time("to", "yesterday").unwrap_err();
        assert!(e.message.starts_with("--to yesterday"), "{}", e.message);
    }

    #[test]
    fn csv_and_jsonl_carry_every_column() {
        let rows = [proto::UsageRow {
            period_start_ms: 1_796_083_200_000,
            tenant: "acme".into(),
            workload: "wl-1".into(),
            site: "fra-1".into(),
            resource: proto::UsageResource::MigSlice as i32,
            detail: "A100-80GB 3g.40gb, \"big\"".into(),
            amount: 1800.0,
            r#final: true,
        }];
        let csv = String::from_utf8(render(&rows, ExportFormat::Csv).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "2026-12-01T00:00:00Z,acme,wl-1,fra-1,mig_slice,\"A100-80GB 3g.40gb, \"\"big\"\"\",1800.000,slice_seconds,true"
        );
        let jsonl = String::from_utf8(render(&rows, ExportFormat::Jsonl).unwrap()).unwrap();
        let v: Value = serde_json::from_str(jsonl.trim_end()).unwrap();
        assert_eq!(v["unit"], "slice_seconds");
        assert_eq!(v["amount"], 1800.0);
        assert_eq!(v["final"], true);
    }
}

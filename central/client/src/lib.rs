//! The API client library (connect, authenticate, typed calls) and `meridian`, the tenant and
//! operator command line built on it. It speaks only the public gRPC API: it depends on
//! `meridian-proto` and `meridian-common` among Meridian's crates, never on central (checked by
//! `sim/tests/architecture.rs`).
//!
//! Exit codes scripts can rely on (also in `docs/cli.md`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | any other failure |
//! | 2 | bad usage: flags, files, configuration |
//! | 3 | not found |
//! | 4 | the server refused the input (names the field) |
//! | 5 | not authenticated or not allowed |
//! | 6 | central unreachable or unavailable |
//! | 7 | conflict: exists already, changed meanwhile, or wrong state |
//! | 8 | rate limited or over a limit |

mod client;
mod commands;
mod cost_cmd;
mod output;
mod server_cmd;
pub mod spec;
mod usage_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tonic::Code;

pub use client::{Clients, DEFAULT_ENDPOINT, Target};
pub use output::Format;

/// A failure with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// The process exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl CliError {
    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        let (code, hint) = match s.code() {
            Code::NotFound => (3, ""),
            Code::InvalidArgument => (4, ""),
            Code::Unauthenticated => (5, " (check the token: `meridian token list`)"),
            Code::PermissionDenied => (5, ""),
            Code::Unavailable | Code::DeadlineExceeded => (
                6,
                " (is central running, and are --endpoint and --ca right?)",
            ),
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => (7, ""),
            Code::ResourceExhausted => (8, ""),
            _ => (1, ""),
        };
        let detail = if s.message().is_empty() {
            format!("{:?}", s.code())
        } else {
            s.message().to_owned()
        };
        CliError {
            code,
            message: format!("{detail}{hint}"),
        }
    }
}

/// Meridian command line: workloads, tenants, users, tokens and the fleet.
#[derive(Debug, Parser)]
#[command(name = "meridian", version, about)]
pub struct Args {
    /// API endpoint.
    #[arg(long, env = "MERIDIAN_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// API token secret.
    #[arg(long, env = "MERIDIAN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the API token secret.
    #[arg(long, env = "MERIDIAN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed central's API certificate.
    #[arg(long, env = "MERIDIAN_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Config file (default ~/.config/meridian/config.toml).
    #[arg(long, env = "MERIDIAN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Workloads: apply, get, list, delete, explain, watch.
    #[command(subcommand)]
    Workload(commands::WorkloadCommand),
    /// Tenants and their quota usage.
    #[command(subcommand)]
    Tenant(commands::TenantCommand),
    /// Users.
    #[command(subcommand)]
    User(commands::UserCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Sites, drift, revocation, bootstrap tokens.
    #[command(subcommand)]
    Site(commands::SiteCommand),
    /// Servers: show, drain, undrain, reboot, power-cycle, reprovision, actions.
    #[command(subcommand)]
    Server(server_cmd::ServerCommand),
    /// Regions.
    #[command(subcommand)]
    Region(commands::RegionCommand),
    /// Datasets.
    #[command(subcommand)]
    Dataset(commands::DatasetCommand),
    /// Cost of a million tokens: provider inputs, per endpoint, per site, sizing, break-even.
    #[command(subcommand)]
    Cost(cost_cmd::CostCommand),
    /// Metered usage: billing export (CSV, JSON lines) and a tenant's totals.
    #[command(subcommand)]
    Usage(usage_cmd::UsageCommand),
}

/// Runs the command line; returns the exit code.
pub async fn run(args: Args) -> u8 {
    match run_inner(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("meridian: {}", e.message);
            e.code
        }
    }
}

async fn run_inner(args: Args) -> Result<(), CliError> {
    let target = Target::resolve(
        args.endpoint,
        args.token,
        args.token_file,
        args.ca,
        args.config.as_deref(),
    )?;
    let clients = target.connect().await?;
    commands::dispatch(clients, args.output, args.command).await
}

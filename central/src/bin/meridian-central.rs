//! `meridian-central`: the orchestrator server. Parses its config, sets up telemetry, starts
//! the library and waits for SIGINT or SIGTERM. Operator subcommands (`token`, `site revoke`,
//! `admin-token`, `audit verify`) work on central's store while central is stopped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meridian_central::config::{CentralConfig, ENV_PREFIX};
use meridian_central::offline::Offline;
use meridian_central::server::Central;
use meridian_common::config::{EXIT_BAD_CONFIG, ProcessEnv};
use meridian_common::ids::{SiteId, TokenId};

/// Meridian central orchestrator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; `MERIDIAN_CENTRAL_*` variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bootstrap tokens (central must be stopped).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sites (central must be stopped).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Creates a provider-admin API token for the `meridian` CLI (central must be stopped);
    /// creates the admin user on first use.
    AdminToken {
        /// The provider admin user.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30)]
        ttl_days: u64,
        /// Write the secret here (mode 0600) instead of printing it.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// The audit log (central must be stopped).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the hash chain; exits 1 and names the first bad record if it was tampered with.
    Verify,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Creates a one-time token for a site and prints (or writes) its bootstrap file.
    Create {
        #[arg(long)]
        site: String,
        /// Lifetime in seconds (default: channel.token_ttl_s).
        #[arg(long)]
        ttl_s: Option<u64>,
        /// Central address for the file, host:port (repeatable; default: channel.advertise).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Write the bootstrap file here (mode 0600) instead of printing it.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Lists tokens (never their secrets).
    List {
        #[arg(long)]
        site: Option<String>,
    },
    /// Revokes a token.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Revokes a site's certificates; it must enrol again with a new token.
    Revoke { site: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: CentralConfig =
        match meridian_common::config::load(args.config.as_deref(), ENV_PREFIX, &ProcessEnv) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("meridian-central: bad configuration: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG as u8);
            }
        };
    if args.check_config {
        meridian_common::outln!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Some(command) = args.command {
        return match operator(config, command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "meridian-central: {}",
                    meridian_common::telemetry::error_chain(e.as_ref())
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = meridian_common::telemetry::init(&config.telemetry) {
        eprintln!("meridian-central: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG as u8);
    }
    let stop = meridian_central::server::shutdown_signal();
    let central = match Central::open(config).await {
        Ok(central) => central,
        Err(e) => {
            tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "central failed to start");
            return ExitCode::FAILURE;
        }
    };
    stop.await;
    tracing::info!("shutting down");
    central.shutdown().await;
    ExitCode::SUCCESS
}

async fn operator(
    config: CentralConfig,
    command: Command,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let offline = Offline::open(config)?;
    let actor = "operator-cli";
    match command {
        Command::Token(TokenCommand::Create {
            site,
            ttl_s,
            addresses,
            export,
        }) => {
            let site = SiteId::parse(&site)?;
            let (token, file) = offline
                .create_token(&site, ttl_s.map(Duration::from_secs), addresses, actor)
                .await?;
            match export {
                Some(path) => {
                    meridian_common::config::write_secret(&path, &file)?;
                    meridian_common::outln!(
                        "token {} for site {site} written to {}",
                        token.token.id,
                        path.display()
                    );
                }
                None => meridian_common::out!("{file}"),
            }
        }
        Command::Token(TokenCommand::List { site }) => {
            let site = site.as_deref().map(SiteId::parse).transpose()?;
            for t in offline.list_tokens(site.as_ref()).await? {
                meridian_common::outln!(
                    "{}\tsite={}\texpires_at={}\tused_at={}\trevoked={}",
                    t.id,
                    t.site,
                    t.expires_at,
                    t.used_at,
                    t.revoked
                );
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            offline.revoke_token(&TokenId::parse(&id)?, actor).await?;
            meridian_common::outln!("token {id} revoked");
        }
        Command::AdminToken {
            user,
            ttl_days,
            export,
        } => {
            let user = meridian_common::ids::UserId::parse(&user)?;
            if ttl_days == 0 || ttl_days > 366 {
                return Err("--ttl-days must be between 1 and 366".into());
            }
            let token = meridian_central::accounts::bootstrap_admin(
                &offline.tables,
                &user,
                Duration::from_secs(ttl_days * 86_400),
                meridian_central::clock::now(),
            )
            .await?;
            match export {
                Some(path) => {
                    meridian_common::config::write_secret(&path, &format!("{}\n", token.secret))?;
                    meridian_common::outln!(
                        "provider-admin token {} for user {user} written to {}",
                        token.token.id,
                        path.display()
                    );
                }
                None => meridian_common::outln!("{}", token.secret),
            }
        }
        Command::Audit(AuditCommand::Verify) => {
            use meridian_central::audit::{Auditor, Verdict};
            match Auditor::new(offline.tables.clone()).verify().await? {
                Verdict::Intact { records, head } => meridian_common::outln!(
                    "audit log intact: {records} records, head {}",
                    hex::encode(head)
                ),
                Verdict::Broken { at, why } => {
                    return Err(format!("audit log tampered with at record {at}: {why}").into());
                }
            }
        }
        Command::Site(SiteCommand::Revoke { site }) => {
            offline.revoke_site(&SiteId::parse(&site)?, actor).await?;
            meridian_common::outln!("site {site} revoked; it must enrol again with a new token");
        }
    }
    Ok(())
}

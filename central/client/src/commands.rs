//! The commands: parse flags and files, call the API, print.

use std::path::PathBuf;

use clap::Subcommand;
use meridian_common::model::{
    Dataset, Placement, Region, Site, Tenant, Workload, WorkloadEndpoint, WorkloadSpec,
};
use meridian_proto::v1 as proto;
use serde_json::{Value, json};

use super::client::Clients;
use super::output::{Format, measured_rtts, path_rtt, print, time};
use super::{CliError, spec};

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Submits the workload spec in a YAML file (`-`: stdin).
    Apply {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The tenant to act for (provider users only).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Shows a workload and its placement.
    Get { id: String },
    /// Lists workloads.
    List {
        /// Only this state: pending, approved, active, completed, canceled, failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Cancels a live workload, or removes a finished one.
    Delete { id: String },
    /// Dry run: where the spec would go and why, without placing it.
    Explain {
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Prints each state change until the workload is over.
    Watch { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Creates a tenant from a YAML file.
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    Get {
        id: String,
    },
    List,
    /// Deletes a tenant with no live workloads or datasets.
    Delete {
        id: String,
    },
    /// Shows quota limits and current use.
    Quota {
        #[arg(default_value = "")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user.
    Create {
        id: String,
        /// provider-admin, site-operator, tenant-admin, tenant-member or viewer.
        #[arg(long)]
        role: String,
        /// The tenant (tenant roles; a tenant admin's own by default).
        #[arg(long, default_value = "")]
        tenant: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    List {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    Delete {
        id: String,
    },
    /// Sets a user's console password, read from a file (never from an argument).
    SetPassword {
        /// The user (`name@tenant`; a tenant's callers may give their users' plain names).
        id: String,
        /// The file whose first line is the password (`-`: stdin); its trailing newline is
        /// dropped. At least 12 characters.
        #[arg(long, value_name = "PATH")]
        password_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates an API token and prints its secret once.
    Create {
        /// The user (default: yourself).
        #[arg(long, default_value = "")]
        user: String,
        /// A role no higher than the user's (default: the user's).
        #[arg(long)]
        role: Option<String>,
        /// Lifetime in days (default 30).
        #[arg(long)]
        ttl_days: Option<u64>,
    },
    List {
        #[arg(long, default_value = "")]
        user: String,
    },
    Revoke {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Creates a site from a YAML file.
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, default_value = "")]
        country: String,
    },
    /// Desired, acknowledged and applied intent generations.
    Drift {
        id: String,
    },
    /// Refuses the site's certificates until it enrols again.
    Revoke {
        id: String,
    },
    /// Takes the site out of service for good.
    Decommission {
        id: String,
    },
    /// Creates a bootstrap token and writes the site's bootstrap file.
    Bootstrap {
        id: String,
        /// Write the bootstrap file here (mode 0600).
        #[arg(long)]
        export: PathBuf,
        #[arg(long)]
        ttl_days: Option<u64>,
    },
    /// Lists the servers of a site.
    Servers {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    Create {
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    Get {
        id: String,
        /// The dataset's tenant (dataset IDs are scoped per tenant); provider users need it
        /// when several tenants hold the ID.
        #[arg(long, default_value = "")]
        tenant: String,
    },
    List {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    Delete {
        id: String,
        /// The dataset's tenant, as for `get`.
        #[arg(long, default_value = "")]
        tenant: String,
    },
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn model<W, M: TryFrom<W, Error = meridian_common::convert::ConvertError>>(
    wire: Option<W>,
    what: &str,
) -> Result<M, CliError> {
    let wire = wire.ok_or_else(|| CliError {
        code: 1,
        message: format!("the server answered without a {what}"),
    })?;
    M::try_from(wire).map_err(|e| CliError {
        code: 1,
        message: format!("the server sent a {what} this CLI cannot read: {e}"),
    })
}

fn models<W, M: TryFrom<W, Error = meridian_common::convert::ConvertError>>(
    wire: Vec<W>,
    what: &str,
) -> Result<Vec<M>, CliError> {
    wire.into_iter().map(|w| model(Some(w), what)).collect()
}

fn parse_role(s: &str) -> Result<proto::Role, CliError> {
    meridian_common::role::Role::parse(s)
        .map(proto::Role::from)
        .ok_or_else(|| {
            CliError::usage(format!(
                "--role {s}: use provider-admin, site-operator, tenant-admin, tenant-member or viewer"
            ))
        })
}

fn days_ms(days: Option<u64>) -> Result<i64, CliError> {
    match days {
        None => Ok(0),
        Some(d) if (1..=366).contains(&d) => Ok((d * 86_400_000) as i64),
        Some(_) => Err(CliError::usage("--ttl-days must be between 1 and 366")),
    }
}

fn role_name(role: i32) -> String {
    meridian_common::role::Role::try_from(role)
        .map_or_else(|_| role.to_string(), |r| r.name().to_owned())
}

fn workload_row(w: &Workload, p: Option<&Placement>) -> Vec<String> {
    let sites = p.map_or_else(
        || "-".to_owned(),
        |p| {
            let mut s: Vec<String> = p.assignments.iter().map(|a| a.site.to_string()).collect();
            s.dedup();
            s.join(",")
        },
    );
    let state = match &w.state {
        meridian_common::model::ReservationState::Failed { reason } => format!("failed: {reason}"),
        s => s.name().to_owned(),
    };
    vec![
        w.id.to_string(),
        w.tenant.to_string(),
        w.spec.name.to_string(),
        w.spec.replicas.to_string(),
        sites,
        state,
    ]
}

const WORKLOAD_HEADERS: [&str; 6] = ["ID", "TENANT", "NAME", "REPLICAS", "SITES", "STATE"];

fn phase_of(name: &str) -> Result<i32, CliError> {
    let p = match name {
        "pending" => proto::ReservationPhase::Pending,
        "approved" => proto::ReservationPhase::Approved,
        "active" => proto::ReservationPhase::Active,
        "completed" => proto::ReservationPhase::Completed,
        "canceled" => proto::ReservationPhase::Canceled,
        "failed" => proto::ReservationPhase::Failed,
        _ => {
            return Err(CliError::usage(format!(
                "--state {name}: use pending, approved, active, completed, canceled or failed"
            )));
        }
    };
    Ok(p as i32)
}

/// Runs one command.
pub async fn dispatch(
    mut c: Clients,
    format: Format,
    command: super::Command,
) -> Result<(), CliError> {
    use super::Command as C;
    match command {
        C::Workload(cmd) => workload(&mut c, format, cmd).await,
        C::Tenant(cmd) => tenant(&mut c, format, cmd).await,
        C::User(cmd) => user(&mut c, format, cmd).await,
        C::Token(cmd) => token(&mut c, format, cmd).await,
        C::Site(cmd) => site(&mut c, format, cmd).await,
        C::Server(cmd) => super::server_cmd::server(&mut c, format, cmd).await,
        C::Region(cmd) => region(&mut c, format, cmd).await,
        C::Dataset(cmd) => dataset(&mut c, format, cmd).await,
        C::Cost(cmd) => super::cost_cmd::cost(&mut c, format, cmd).await,
        C::Usage(cmd) => super::usage_cmd::usage(&mut c, format, cmd).await,
    }
}

async fn workload(c: &mut Clients, format: Format, cmd: WorkloadCommand) -> Result<(), CliError> {
    match cmd {
        WorkloadCommand::Apply { file, tenant } => {
            let spec: WorkloadSpec = spec::read(&file, &[])?;
            let r = c
                .placement
                .create_workload(proto::CreateWorkloadRequest {
                    spec: Some(spec.into()),
                    tenant,
                })
                .await?
                .into_inner();
            let w: Workload = model(r.workload, "workload")?;
            print(
                format,
                &to_json(&w),
                &WORKLOAD_HEADERS,
                &[workload_row(&w, None)],
            );
        }
        WorkloadCommand::Get { id } => {
            let r = c
                .placement
                .get_workload(proto::GetWorkloadRequest { id })
                .await?
                .into_inner();
            let w: Workload = model(r.workload, "workload")?;
            let p: Option<Placement> = r
                .placement
                .map(|p| model(Some(p), "placement"))
                .transpose()?;
            let endpoints: Vec<WorkloadEndpoint> = models(r.endpoints, "endpoint")?;
            match format {
                Format::Json => print(
                    format,
                    &json!({
                        "workload": to_json(&w),
                        "placement": to_json(&p),
                        "endpoints": to_json(&endpoints),
                    }),
                    &[],
                    &[],
                ),
                Format::Table => {
                    print(
                        format,
                        &Value::Null,
                        &WORKLOAD_HEADERS,
                        &[workload_row(&w, p.as_ref())],
                    );
                    if let Some(p) = &p {
                        meridian_common::outln!(
                            "\nscore {:.3} (latency {:.3}, data {:.3}, price {:.3}, packing {:.3})",
                            p.score.total,
                            p.score.latency,
                            p.score.data,
                            p.score.price,
                            p.score.packing
                        );
                        for a in &p.assignments {
                            meridian_common::outln!(
                                "  replica {} -> {}/{} {:?}",
                                a.replica,
                                a.site,
                                a.server,
                                a.slot
                            );
                        }
                        if !p.explanation.is_empty() {
                            meridian_common::outln!("why: {}", p.explanation);
                        }
                    }
                    if let Some(name) = endpoints.iter().find_map(|e| e.dns_name.as_deref()) {
                        meridian_common::outln!(
                            "dns name {name} (A records: the published endpoints' public addresses)"
                        );
                    }
                    for e in &endpoints {
                        let x = &e.exposure;
                        meridian_common::outln!(
                            "endpoint {}:{}/{} at {} -> {}:{} ({})",
                            x.public_ip,
                            x.public_port,
                            x.protocol.as_str(),
                            e.site,
                            x.backend_ip,
                            x.backend_port,
                            if e.applied {
                                "published"
                            } else {
                                "pending: the site has not applied it yet"
                            }
                        );
                    }
                }
            }
        }
        WorkloadCommand::List { state, tenant } => {
            let state = state.as_deref().map(phase_of).transpose()?;
            let mut all = Vec::new();
            let mut placements = std::collections::HashMap::new();
            let mut page_token = String::new();
            loop {
                let r = c
                    .placement
                    .list_workloads(proto::ListWorkloadsRequest {
                        page_size: 500,
                        page_token,
                        state,
                        tenant: tenant.clone(),
                    })
                    .await?
                    .into_inner();
                for w in r.workloads {
                    all.push(model::<_, Workload>(Some(w), "workload")?);
                }
                for p in r.placements {
                    let p: Placement = model(Some(p), "placement")?;
                    placements.insert(p.workload.clone(), p);
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|w| workload_row(w, placements.get(&w.id)))
                .collect();
            print(format, &to_json(&all), &WORKLOAD_HEADERS, &rows);
        }
        WorkloadCommand::Delete { id } => {
            let r = c
                .placement
                .delete_workload(proto::DeleteWorkloadRequest { id })
                .await?
                .into_inner();
            let w: Workload = model(r.workload, "workload")?;
            print(
                format,
                &to_json(&w),
                &WORKLOAD_HEADERS,
                &[workload_row(&w, None)],
            );
        }
        WorkloadCommand::Explain { file, tenant } => {
            let spec: WorkloadSpec = spec::read(&file, &[])?;
            let r = c
                .placement
                .dry_run(proto::DryRunRequest {
                    spec: Some(spec.into()),
                    tenant,
                    max_near_misses: 5,
                })
                .await?
                .into_inner();
            let placement: Option<Placement> = r
                .placement
                .map(|p| model(Some(p), "placement"))
                .transpose()?;
            let rejections: Vec<Value> = r
                .rejections
                .iter()
                .map(|x| json!({"reason": proto::RejectReason::try_from(x.reason).map_or_else(|_| x.reason.to_string(), |r| r.as_str_name().to_lowercase()), "sites": x.count}))
                .collect();
            let near: Vec<Value> = r
                .near_misses
                .iter()
                .map(|n| json!({"site": n.site, "detail": n.detail}))
                .collect();
            match format {
                Format::Json => print(
                    format,
                    &json!({"placement": to_json(&placement), "rejections": rejections, "near_misses": near, "explanation": r.explanation}),
                    &[],
                    &[],
                ),
                Format::Table => {
                    match &placement {
                        Some(p) => {
                            meridian_common::outln!(
                                "would place {} replica(s), score {:.3}",
                                p.assignments.len(),
                                p.score.total
                            );
                            for a in &p.assignments {
                                meridian_common::outln!(
                                    "  replica {} -> {}/{}",
                                    a.replica,
                                    a.site,
                                    a.server
                                );
                            }
                        }
                        None => meridian_common::outln!("cannot be placed"),
                    }
                    for x in &rejections {
                        meridian_common::outln!(
                            "  rejected {} site(s): {}",
                            x["sites"],
                            x["reason"].as_str().unwrap_or("")
                        );
                    }
                    for n in &r.near_misses {
                        meridian_common::outln!("  near miss {}: {}", n.site, n.detail);
                    }
                    meridian_common::outln!("why: {}", r.explanation);
                }
            }
        }
        WorkloadCommand::Watch { id } => {
            let mut stream = c
                .placement
                .watch_workload(proto::WatchWorkloadRequest { id })
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                let w: Workload = model(event.workload, "workload")?;
                match format {
                    Format::Json => meridian_common::outln!(
                        "{}",
                        json!({"at": event.at, "state": w.state.name(), "message": event.message})
                    ),
                    Format::Table => {
                        meridian_common::outln!("{}  {}  {}", time(event.at), w.id, event.message)
                    }
                }
            }
        }
    }
    Ok(())
}

async fn tenant(c: &mut Clients, format: Format, cmd: TenantCommand) -> Result<(), CliError> {
    let headers = ["ID", "NAME", "RESIDENCY", "MAX PRIORITY"];
    let row = |t: &Tenant| {
        vec![
            t.id.to_string(),
            t.name.to_string(),
            to_json(&t.residency).to_string(),
            t.max_priority.to_string(),
        ]
    };
    match cmd {
        TenantCommand::Create { file } => {
            let t: Tenant = spec::read(&file, &[])?;
            let r = c
                .tenants
                .create_tenant(proto::CreateTenantRequest {
                    tenant: Some(t.into()),
                })
                .await?
                .into_inner();
            let t: Tenant = model(r.tenant, "tenant")?;
            print(format, &to_json(&t), &headers, &[row(&t)]);
        }
        TenantCommand::Get { id } => {
            let r = c
                .tenants
                .get_tenant(proto::GetTenantRequest { id })
                .await?
                .into_inner();
            let t: Tenant = model(r.tenant, "tenant")?;
            print(format, &to_json(&t), &headers, &[row(&t)]);
        }
        TenantCommand::List => {
            let r = c
                .tenants
                .list_tenants(proto::ListTenantsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            let all: Vec<Tenant> = models(r.tenants, "tenant")?;
            print(
                format,
                &to_json(&all),
                &headers,
                &all.iter().map(row).collect::<Vec<_>>(),
            );
        }
        TenantCommand::Delete { id } => {
            c.tenants
                .delete_tenant(proto::DeleteTenantRequest { id: id.clone() })
                .await?;
            print(format, &json!({"deleted": id}), &["DELETED"], &[vec![id]]);
        }
        TenantCommand::Quota { tenant } => {
            let r = c
                .tenants
                .get_quota_usage(proto::GetQuotaUsageRequest { tenant })
                .await?
                .into_inner();
            let u = r.usage.unwrap_or_default();
            let limits = u.limits.unwrap_or_default();
            let used = u.used.unwrap_or_default();
            let mut rows = vec![
                vec![
                    "mig_slices".into(),
                    used.mig_slices.to_string(),
                    limits.mig_slices.to_string(),
                ],
                vec![
                    "concurrent_reservations".into(),
                    used.concurrent_reservations.to_string(),
                    limits.concurrent_reservations.to_string(),
                ],
                vec![
                    "sites".into(),
                    used.sites.to_string(),
                    limits.sites.to_string(),
                ],
                vec![
                    "storage_mib".into(),
                    used.storage_mib.to_string(),
                    limits.storage_mib.to_string(),
                ],
            ];
            let mut models: std::collections::BTreeSet<&String> =
                limits.gpus_per_model.keys().collect();
            models.extend(used.gpus_per_model.keys());
            for m in models {
                rows.push(vec![
                    format!("gpus {m}"),
                    used.gpus_per_model.get(m).copied().unwrap_or(0).to_string(),
                    limits
                        .gpus_per_model
                        .get(m)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                ]);
            }
            let value = json!({
                "tenant": u.tenant,
                "used": {"gpus_per_model": used.gpus_per_model, "mig_slices": used.mig_slices, "concurrent_reservations": used.concurrent_reservations, "sites": used.sites},
                "limits": {"gpus_per_model": limits.gpus_per_model, "mig_slices": limits.mig_slices, "concurrent_reservations": limits.concurrent_reservations, "sites": limits.sites},
            });
            print(format, &value, &["QUOTA", "USED", "LIMIT"], &rows);
        }
    }
    Ok(())
}

fn user_json(u: &proto::User) -> Value {
    json!({"id": u.id, "tenant": u.tenant, "role": role_name(u.role), "display_name": u.display_name, "created_at": u.created_at})
}

async fn user(c: &mut Clients, format: Format, cmd: UserCommand) -> Result<(), CliError> {
    let headers = ["ID", "TENANT", "ROLE", "NAME"];
    let row = |u: &proto::User| {
        vec![
            u.id.clone(),
            u.tenant.clone(),
            role_name(u.role),
            u.display_name.clone(),
        ]
    };
    match cmd {
        UserCommand::Create {
            id,
            role,
            tenant,
            name,
        } => {
            let r = c
                .tenants
                .create_user(proto::CreateUserRequest {
                    user: Some(proto::User {
                        id,
                        tenant,
                        role: parse_role(&role)? as i32,
                        display_name: name,
                        created_at: 0,
                    }),
                })
                .await?
                .into_inner();
            let u = r.user.unwrap_or_default();
            print(format, &user_json(&u), &headers, &[row(&u)]);
        }
        UserCommand::List { tenant } => {
            let r = c
                .tenants
                .list_users(proto::ListUsersRequest {
                    page_size: 1000,
                    page_token: String::new(),
                    tenant,
                })
                .await?
                .into_inner();
            let all: Vec<Value> = r.users.iter().map(user_json).collect();
            print(
                format,
                &Value::Array(all),
                &headers,
                &r.users.iter().map(row).collect::<Vec<_>>(),
            );
        }
        UserCommand::Delete { id } => {
            c.tenants
                .delete_user(proto::DeleteUserRequest { id: id.clone() })
                .await?;
            print(format, &json!({"deleted": id}), &["DELETED"], &[vec![id]]);
        }
        UserCommand::SetPassword { id, password_file } => {
            let password = read_password(&password_file)?;
            c.tenants
                .set_user_password(proto::SetUserPasswordRequest {
                    user: id.clone(),
                    password,
                })
                .await?;
            print(
                format,
                &json!({"user": id, "password": "set"}),
                &["USER", "PASSWORD"],
                &[vec![id, "set".into()]],
            );
        }
    }
    Ok(())
}

/// Most bytes of a password file read (the server takes passwords of at most 1024 bytes).
const MAX_PASSWORD_FILE_BYTES: u64 = 64 * 1024;

/// The password on the first line of `path` (`-`: stdin), without its line ending. Errors
/// name `--password-file`, never the password.
fn read_password(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::{BufRead, BufReader, Read};
    let bad = |m: String| CliError::usage(format!("--password-file {}: {m}", path.display()));
    let mut line = Vec::new();
    let read = if path == std::path::Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD_FILE_BYTES)
            .read_until(b'\n', &mut line)
    } else {
        std::fs::File::open(path).and_then(|f| {
            BufReader::new(f.take(MAX_PASSWORD_FILE_BYTES)).read_until(b'\n', &mut line)
        })
    };
    read.map_err(|e| bad(format!("cannot read it: {e}")))?;
    first_line(&line).map_err(|m| bad(m.into()))
}

/// The first line of `raw` without its `\n` or `\r\n`.
fn first_line(raw: &[u8]) -> Result<String, &'static str> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("the first line is empty; write the password there");
    }
    String::from_utf8(line.to_vec()).map_err(|_| "the password is not UTF-8 text")
}

fn token_json(t: &proto::ApiToken) -> Value {
    json!({"id": t.id, "user": t.user, "role": role_name(t.role), "expires_at": t.expires_at, "revoked": t.revoked, "created_at": t.created_at})
}

async fn token(c: &mut Clients, format: Format, cmd: TokenCommand) -> Result<(), CliError> {
    let headers = ["ID", "USER", "ROLE", "EXPIRES", "REVOKED"];
    let row = |t: &proto::ApiToken| {
        vec![
            t.id.clone(),
            t.user.clone(),
            role_name(t.role),
            time(t.expires_at),
            t.revoked.to_string(),
        ]
    };
    match cmd {
        TokenCommand::Create {
            user,
            role,
            ttl_days,
        } => {
            let role = role
                .as_deref()
                .map(parse_role)
                .transpose()?
                .map(|r| r as i32);
            let r = c
                .tenants
                .create_api_token(proto::CreateApiTokenRequest {
                    user,
                    role,
                    ttl_ms: days_ms(ttl_days)?,
                })
                .await?
                .into_inner();
            let t = r.token.unwrap_or_default();
            match format {
                Format::Json => {
                    let mut v = token_json(&t);
                    v["secret"] = Value::String(r.secret);
                    print(format, &v, &[], &[]);
                }
                Format::Table => {
                    print(format, &Value::Null, &headers, &[row(&t)]);
                    meridian_common::outln!("\nsecret (shown once; keep it safe):\n{}", r.secret);
                }
            }
        }
        TokenCommand::List { user } => {
            let r = c
                .tenants
                .list_api_tokens(proto::ListApiTokensRequest {
                    page_size: 1000,
                    page_token: String::new(),
                    user,
                })
                .await?
                .into_inner();
            let all: Vec<Value> = r.tokens.iter().map(token_json).collect();
            print(
                format,
                &Value::Array(all),
                &headers,
                &r.tokens.iter().map(row).collect::<Vec<_>>(),
            );
        }
        TokenCommand::Revoke { id } => {
            let r = c
                .tenants
                .revoke_api_token(proto::RevokeApiTokenRequest { id })
                .await?
                .into_inner();
            let t = r.token.unwrap_or_default();
            print(format, &token_json(&t), &headers, &[row(&t)]);
        }
    }
    Ok(())
}

async fn site(c: &mut Clients, format: Format, cmd: SiteCommand) -> Result<(), CliError> {
    let headers = ["ID", "NAME", "TIER", "COUNTRY", "STATE", "STORAGE GIB"];
    let row = |s: &Site| {
        vec![
            s.id.to_string(),
            s.name.to_string(),
            to_json(&s.tier).as_str().unwrap_or("").to_owned(),
            s.country.to_string(),
            to_json(&s.state).as_str().unwrap_or("").to_owned(),
            (s.storage_mib / 1024).to_string(),
        ]
    };
    match cmd {
        SiteCommand::Create { file } => {
            let s: Site = spec::read(&file, &[("state", json!("pending"))])?;
            let r = c
                .fleet
                .create_site(proto::CreateSiteRequest {
                    site: Some(s.into()),
                })
                .await?
                .into_inner();
            let s: Site = model(r.site, "site")?;
            print(format, &to_json(&s), &headers, &[row(&s)]);
        }
        SiteCommand::Get { id } => {
            let r = c
                .fleet
                .get_site(proto::GetSiteRequest { id })
                .await?
                .into_inner();
            let s: Site = model(r.site, "site")?;
            print(format, &to_json(&s), &headers, &[row(&s)]);
        }
        SiteCommand::List { country } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = c
                    .fleet
                    .list_sites(proto::ListSitesRequest {
                        page_size: 1000,
                        page_token,
                        state: None,
                        tier: None,
                        country: country.clone(),
                    })
                    .await?
                    .into_inner();
                for s in r.sites {
                    all.push(model::<_, Site>(Some(s), "site")?);
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            print(
                format,
                &to_json(&all),
                &headers,
                &all.iter().map(row).collect::<Vec<_>>(),
            );
        }
        SiteCommand::Drift { id } => {
            let r = c
                .fleet
                .get_site_drift(proto::GetSiteDriftRequest { site: id })
                .await?
                .into_inner();
            let d = r.drift.unwrap_or_default();
            let rtts: Vec<Value> = d
                .measured_rtts
                .iter()
                .map(|m| json!({"region": m.region, "rtt_ms": m.rtt_ms, "measured_at": m.measured_at_ms}))
                .collect();
            let v = json!({"site": d.site, "desired_generation": d.desired_generation, "acknowledged_generation": d.acknowledged_generation, "applied_generation": d.applied_generation, "last_seen_at": d.last_seen_at, "failure_reason": d.failure_reason, "path_rtt_us": d.path_rtt_us, "measured_rtts": rtts});
            print(
                format,
                &v,
                &[
                    "SITE",
                    "DESIRED",
                    "ACKED",
                    "APPLIED",
                    "LAST SEEN",
                    "PATH RTT",
                    "MEASURED RTT",
                    "FAILURE",
                ],
                &[vec![
                    d.site.clone(),
                    d.desired_generation.to_string(),
                    d.acknowledged_generation.to_string(),
                    d.applied_generation.to_string(),
                    time(d.last_seen_at),
                    path_rtt(d.path_rtt_us),
                    measured_rtts(&d.measured_rtts),
                    d.failure_reason.clone(),
                ]],
            );
        }
        SiteCommand::Revoke { id } => {
            let r = c
                .fleet
                .revoke_site(proto::RevokeSiteRequest {
                    id,
                    reason: String::new(),
                })
                .await?
                .into_inner();
            let s: Site = model(r.site, "site")?;
            print(format, &to_json(&s), &headers, &[row(&s)]);
        }
        SiteCommand::Decommission { id } => {
            let r = c
                .fleet
                .decommission_site(proto::DecommissionSiteRequest { id })
                .await?
                .into_inner();
            let s: Site = model(r.site, "site")?;
            print(format, &to_json(&s), &headers, &[row(&s)]);
        }
        SiteCommand::Bootstrap {
            id,
            export,
            ttl_days,
        } => {
            let r = c
                .fleet
                .create_bootstrap_token(proto::CreateBootstrapTokenRequest {
                    site: id.clone(),
                    ttl_ms: days_ms(ttl_days)?,
                })
                .await?
                .into_inner();
            let f = r.bootstrap_file.unwrap_or_default();
            let file = meridian_common::channel::bootstrap::BootstrapFile {
                central_addresses: f.central_addresses,
                ca_fingerprint: hex::decode(&f.ca_fingerprint_sha256)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| CliError {
                        code: 1,
                        message: "the server sent a bad CA fingerprint".into(),
                    })?,
                site: meridian_common::ids::SiteId::parse(&f.site).map_err(|e| CliError {
                    code: 1,
                    message: format!("the server sent a bad site: {e}"),
                })?,
                token: f.token,
                expires_at: meridian_common::ids::Timestamp::from_millis(f.expires_at),
            };
            meridian_common::config::write_secret(&export, &file.render())
                .map_err(|e| CliError::usage(format!("cannot write {}: {e}", export.display())))?;
            let token = r.token.unwrap_or_default();
            print(
                format,
                &json!({"token": token.id, "site": id, "file": export, "expires_at": token.expires_at}),
                &["TOKEN", "SITE", "FILE", "EXPIRES"],
                &[vec![
                    token.id,
                    id,
                    export.display().to_string(),
                    time(token.expires_at),
                ]],
            );
        }
        SiteCommand::Servers { id } => {
            let r = c
                .fleet
                .list_servers(proto::ListServersRequest {
                    page_size: 1000,
                    page_token: String::new(),
                    site: id,
                    phase: None,
                })
                .await?
                .into_inner();
            let all: Vec<meridian_common::model::Server> = models(r.servers, "server")?;
            let rows = all
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        s.gpus.len().to_string(),
                        s.gpus
                            .first()
                            .map(|g| g.model.as_str().to_owned())
                            .unwrap_or_default(),
                        to_json(&s.state).to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            print(
                format,
                &to_json(&all),
                &["ID", "GPUS", "MODEL", "STATE"],
                &rows,
            );
        }
    }
    Ok(())
}

async fn region(c: &mut Clients, format: Format, cmd: RegionCommand) -> Result<(), CliError> {
    let headers = ["ID", "NAME", "COUNTRY"];
    let row = |r: &Region| vec![r.id.to_string(), r.name.to_string(), r.country.to_string()];
    match cmd {
        RegionCommand::Create { file } => {
            let region: Region = spec::read(&file, &[])?;
            let r = c
                .fleet
                .create_region(proto::CreateRegionRequest {
                    region: Some(region.into()),
                })
                .await?
                .into_inner();
            let region: Region = model(r.region, "region")?;
            print(format, &to_json(&region), &headers, &[row(&region)]);
        }
        RegionCommand::List => {
            let r = c
                .fleet
                .list_regions(proto::ListRegionsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            let all: Vec<Region> = models(r.regions, "region")?;
            print(
                format,
                &to_json(&all),
                &headers,
                &all.iter().map(row).collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

async fn dataset(c: &mut Clients, format: Format, cmd: DatasetCommand) -> Result<(), CliError> {
    let headers = ["ID", "TENANT", "NAME", "BYTES", "REPLICAS"];
    let row = |d: &Dataset| {
        vec![
            d.id.to_string(),
            d.tenant.to_string(),
            d.name.to_string(),
            d.size_bytes.to_string(),
            d.replicas
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ]
    };
    match cmd {
        DatasetCommand::Create { file } => {
            let d: Dataset = spec::read(&file, &[("tenant", json!("unset"))])?;
            let mut wire = proto::Dataset::from(d);
            if wire.tenant == "unset" {
                wire.tenant.clear();
            }
            let r = c
                .fleet
                .create_dataset(proto::CreateDatasetRequest {
                    dataset: Some(wire),
                })
                .await?
                .into_inner();
            let d: Dataset = model(r.dataset, "dataset")?;
            print(format, &to_json(&d), &headers, &[row(&d)]);
        }
        DatasetCommand::Get { id, tenant } => {
            let r = c
                .fleet
                .get_dataset(proto::GetDatasetRequest { id, tenant })
                .await?
                .into_inner();
            let d: Dataset = model(r.dataset, "dataset")?;
            print(format, &to_json(&d), &headers, &[row(&d)]);
        }
        DatasetCommand::List { tenant } => {
            let r = c
                .fleet
                .list_datasets(proto::ListDatasetsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                    tenant,
                })
                .await?
                .into_inner();
            let all: Vec<Dataset> = models(r.datasets, "dataset")?;
            print(
                format,
                &to_json(&all),
                &headers,
                &all.iter().map(row).collect::<Vec<_>>(),
            );
        }
        DatasetCommand::Delete { id, tenant } => {
            c.fleet
                .delete_dataset(proto::DeleteDatasetRequest {
                    id: id.clone(),
                    tenant,
                })
                .await?;
            print(format, &json!({"deleted": id}), &["DELETED"], &[vec![id]]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_gives_its_first_line_without_the_line_ending() {
        assert_eq!(
            first_line(b"correct horse battery\n").unwrap(),
            "correct horse battery"
        );
        assert_eq!(
            first_line(b"no newline at all").unwrap(),
            "no newline at all"
        );
        assert_eq!(first_line(b"dos line\r\nsecond\n").unwrap(), "dos line");
        // Spaces are the password's own.
        assert_eq!(first_line(b"  spaced  \n").unwrap(), "  spaced  ");
        assert!(first_line(b"").is_err());
        assert!(first_line(b"\nsecond line\n").is_err());
        assert!(first_line(b"\xff\xfe password\n").is_err());
    }

    #[test]
    fn a_missing_password_file_is_named_by_its_flag() {
        let e = read_password(std::path::Path::new("/nonexistent/meridian-password")).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message
                .starts_with("--password-file /nonexistent/meridian-password: cannot read it"),
            "{}",
            e.message
        );
    }
}

//! `meridian server ...`: a server's state, drain and actions (provider roles).

use clap::Subcommand;
use meridian_proto::v1 as proto;
use serde_json::{Value, json};

use super::CliError;
use super::client::Clients;
use super::output::{Format, print, time};

/// Server commands. Each action gets a request ID; the site's agent carries out reboot,
/// power-cycle and reprovision at most once per request, and `server actions` shows how far
/// each got.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// A server with its drain status and recent actions.
    Show { site: String, server: String },
    /// No new placement lands on the server; done when its allocations end or move.
    Drain { site: String, server: String },
    /// The server takes placements again.
    Undrain { site: String, server: String },
    /// Restart the server now (Redfish ForceRestart).
    Reboot { site: String, server: String },
    /// Power the server off, then on.
    PowerCycle { site: String, server: String },
    /// Re-image and clean the server (its allocations' images are installed again).
    Reprovision { site: String, server: String },
    /// A site's action requests (of one server with --server), newest first.
    Actions {
        site: String,
        #[arg(long)]
        server: Option<String>,
    },
}

const HEADERS: [&str; 7] = [
    "REQUEST",
    "SERVER",
    "OP",
    "PHASE",
    "DETAIL",
    "BY",
    "REQUESTED",
];

fn op_name(op: i32) -> &'static str {
    match proto::ServerOp::try_from(op) {
        Ok(proto::ServerOp::Drain) => "drain",
        Ok(proto::ServerOp::Undrain) => "undrain",
        Ok(proto::ServerOp::Reboot) => "reboot",
        Ok(proto::ServerOp::PowerCycle) => "power-cycle",
        Ok(proto::ServerOp::Reprovision) => "reprovision",
        _ => "unknown",
    }
}

fn phase_name(phase: i32) -> &'static str {
    match proto::ActionPhase::try_from(phase) {
        Ok(proto::ActionPhase::Running) => "running",
        Ok(proto::ActionPhase::Done) => "done",
        Ok(proto::ActionPhase::Failed) => "failed",
        _ => "pending",
    }
}

fn action_json(a: &proto::ServerActionRecord) -> Value {
    json!({
        "request": a.request,
        "site": a.site,
        "server": a.server,
        "op": op_name(a.op),
        "phase": phase_name(a.phase),
        "detail": a.detail,
        "requested_by": a.requested_by,
        "requested_at": a.requested_at,
        "finished_at": a.finished_at,
    })
}

fn action_row(a: &proto::ServerActionRecord) -> Vec<String> {
    vec![
        a.request.to_string(),
        a.server.clone(),
        op_name(a.op).to_owned(),
        phase_name(a.phase).to_owned(),
        a.detail.clone(),
        a.requested_by.clone(),
        time(a.requested_at),
    ]
}

/// Runs one server command.
pub async fn server(c: &mut Clients, format: Format, cmd: ServerCommand) -> Result<(), CliError> {
    let (site, server, op) = match cmd {
        ServerCommand::Show { site, server } => return show(c, format, site, server).await,
        ServerCommand::Actions { site, server } => {
            let r = c
                .fleet
                .list_server_actions(proto::ListServerActionsRequest {
                    site,
                    server: server.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let rows: Vec<_> = r.actions.iter().map(action_row).collect();
            let value = Value::Array(r.actions.iter().map(action_json).collect());
            print(format, &value, &HEADERS, &rows);
            return Ok(());
        }
        ServerCommand::Drain { site, server } => (site, server, proto::ServerOp::Drain),
        ServerCommand::Undrain { site, server } => (site, server, proto::ServerOp::Undrain),
        ServerCommand::Reboot { site, server } => (site, server, proto::ServerOp::Reboot),
        ServerCommand::PowerCycle { site, server } => (site, server, proto::ServerOp::PowerCycle),
        ServerCommand::Reprovision { site, server } => (site, server, proto::ServerOp::Reprovision),
    };
    let r = c
        .fleet
        .request_server_action(proto::RequestServerActionRequest {
            site,
            server,
            op: op as i32,
        })
        .await?
        .into_inner();
    let a = r.action.unwrap_or_default();
    print(format, &action_json(&a), &HEADERS, &[action_row(&a)]);
    Ok(())
}

async fn show(c: &mut Clients, format: Format, site: String, id: String) -> Result<(), CliError> {
    let r = c
        .fleet
        .get_server(proto::GetServerRequest { site, id })
        .await?
        .into_inner();
    let server: meridian_common::model::Server = r
        .server
        .ok_or_else(|| CliError {
            code: 1,
            message: "the server answered without a server".into(),
        })?
        .try_into()
        .map_err(|e| CliError {
            code: 1,
            message: format!("the server sent a server this CLI cannot read: {e}"),
        })?;
    let drain = r.drain.unwrap_or_default();
    let drain_text = if !drain.drained {
        "no".to_owned()
    } else if drain.remaining.is_empty() {
        format!("drained (request {})", drain.request)
    } else {
        format!(
            "draining (request {}): {} left: {}",
            drain.request,
            drain.remaining.len(),
            drain.remaining.join(", ")
        )
    };
    let value = json!({
        "server": serde_json::to_value(&server).unwrap_or(Value::Null),
        "drain": {"drained": drain.drained, "request": drain.request, "remaining": drain.remaining},
        "actions": r.actions.iter().map(action_json).collect::<Vec<_>>(),
    });
    if format == Format::Json {
        print(format, &value, &[], &[]);
        return Ok(());
    }
    print(
        format,
        &value,
        &["ID", "SITE", "GPUS", "STATE", "DRAINED"],
        &[vec![
            server.id.to_string(),
            server.site.to_string(),
            server.gpus.len().to_string(),
            serde_json::to_value(&server.state)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            drain_text,
        ]],
    );
    if !r.actions.is_empty() {
        println!();
        let rows: Vec<_> = r.actions.iter().map(action_row).collect();
        print(format, &Value::Null, &HEADERS, &rows);
    }
    Ok(())
}

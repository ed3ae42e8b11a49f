//! Operators' server actions through the real API (an in-process central on 127.0.0.1):
//! provider roles only and audited; each request gets the next request ID; bad input names
//! its field; drains are refused twice and undrains of undrained servers are refused; an agent
//! action rides in the site's intent until a report makes it final, then leaves it; a report
//! never moves a final request and never touches another site's.

mod api_support;

use std::time::{Duration, Instant};

use meridian_central::server_actions::fold_report as fold_action_report;
use meridian_common::ids::SiteId;
use meridian_common::model::{ActionPhase, PowerAction, ServerActionKind};
use meridian_proto::v1 as proto;
use meridian_store::Txn;
use meridian_store::schema::site_dirty_marker;
use meridian_store::tables::Table;
use tonic::Code;

async fn request(
    c: &mut meridian_client::Clients,
    site: &str,
    server: &str,
    op: proto::ServerOp,
) -> Result<proto::ServerActionRecord, tonic::Status> {
    c.fleet
        .request_server_action(proto::RequestServerActionRequest {
            site: site.into(),
            server: server.into(),
            op: op as i32,
        })
        .await
        .map(|r| r.into_inner().action.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_actions_are_numbered_checked_audited_and_carried_in_the_intent() {
    let api = api_support::start(3, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let token = |name: &str| {
        people
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, t)| t.clone())
            .unwrap()
    };
    let tables = api.central.tables();
    let server = tables.servers().list_all(None, 10).await.unwrap()[0].clone();
    let (site, srv) = (server.site.to_string(), server.id.to_string());
    let mut admin = api.clients(&api.admin).await;
    let mut ops = api.clients(&token("ops")).await;

    // Tenants and fleet viewers may not; a site operator may.
    for who in ["acme-admin", "auditor"] {
        let mut c = api.clients(&token(who)).await;
        let e = request(&mut c, &site, &srv, proto::ServerOp::Reboot)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e}");
    }
    // Bad input names the field; unknown objects are not found.
    let e = request(&mut admin, &site, &srv, proto::ServerOp::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("op"), "{e}");
    let e = request(&mut admin, "Bad Site", &srv, proto::ServerOp::Reboot)
        .await
        .unwrap_err();
    assert!(e.message().contains("site"), "{e}");
    let e = request(&mut admin, &site, "no-such-server", proto::ServerOp::Reboot)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");

    // Numbered in order; a drain twice and an undrain of an undrained server are refused.
    let drain = request(&mut ops, &site, &srv, proto::ServerOp::Drain)
        .await
        .unwrap();
    let e = request(&mut ops, &site, &srv, proto::ServerOp::Drain)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let reboot = request(&mut ops, &site, &srv, proto::ServerOp::Reboot)
        .await
        .unwrap();
    assert_eq!(reboot.request, drain.request + 1);
    assert_eq!(reboot.requested_by, "user:ops");
    let undrain = request(&mut ops, &site, &srv, proto::ServerOp::Undrain)
        .await
        .unwrap();
    assert_eq!(undrain.phase, proto::ActionPhase::Done as i32);
    let e = request(&mut ops, &site, &srv, proto::ServerOp::Undrain)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    // Every call is audited, refusals included.
    let audit = tables.audit().list_all(None, 1000).await.unwrap();
    let of_server: Vec<_> = audit
        .iter()
        .filter(|r| r.action.ends_with("RequestServerAction"))
        .collect();
    assert!(of_server.len() >= 8, "{of_server:?}");
    assert!(
        of_server
            .iter()
            .any(|r| r.result == proto::AuditResult::Denied as i32),
        "{of_server:?}"
    );

    // The reboot rides in the site's intent.
    let site_id = SiteId::parse(&site).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let carried = loop {
        let intent = tables.intents().get(&site_id).await.unwrap();
        if let Some(i) = intent
            && let Some(a) = i
                .record
                .server_actions
                .iter()
                .find(|a| a.request.get() == reboot.request)
        {
            break (i.record.generation, a.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the reboot never reached the intent"
        );
        api.central.lifecycle().wake();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        carried.1.action,
        ServerActionKind::Power(PowerAction::Reboot)
    );
    assert_eq!(carried.1.server, server.id);

    // `GetServer` shows the request; `ListServerActions` lists newest first.
    let got = admin
        .fleet
        .get_server(proto::GetServerRequest {
            site: site.clone(),
            id: srv.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.drain.unwrap().drained);
    assert_eq!(got.actions[0].request, undrain.request);
    let list = admin
        .fleet
        .list_server_actions(proto::ListServerActionsRequest {
            site: site.clone(),
            server: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    let ids: Vec<u64> = list.iter().map(|a| a.request).collect();
    assert_eq!(ids, [undrain.request, reboot.request, drain.request]);

    // A final report folds into the record once; a final record never moves again.
    let done = fold_action_report(&reboot, ActionPhase::Done, "restarted", 5).unwrap();
    assert_eq!(done.phase, proto::ActionPhase::Done as i32);
    assert_eq!(done.finished_at, 5);
    assert!(fold_action_report(&done, ActionPhase::Running, "again", 6).is_none());
    assert!(fold_action_report(&done, ActionPhase::Failed, "late", 7).is_none());
    let running = fold_action_report(&reboot, ActionPhase::Running, "issuing", 3).unwrap();
    assert_eq!(running.finished_at, 0);
    assert!(fold_action_report(&running, ActionPhase::Running, "issuing", 4).is_none());

    // Stored final with the site's marker (as ingest writes it), the request leaves the
    // site's next intent.
    tables
        .store()
        .txn(
            Txn::new()
                .then(Table::<proto::ServerActionRecord>::put_op(&done).unwrap())
                .then(site_dirty_marker(&site_id)),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = tables
            .intents()
            .get(&site_id)
            .await
            .unwrap()
            .unwrap()
            .record;
        if i.generation > carried.0
            && !i
                .server_actions
                .iter()
                .any(|a| a.request.get() == reboot.request)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the done reboot stayed in the intent"
        );
        api.central.lifecycle().wake();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

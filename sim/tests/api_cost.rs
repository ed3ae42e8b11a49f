//! The cost API (`CostService`) and `meridian cost ...` against a real central with a
//! generated fleet:
//!
//! - the provider's inputs are checked with every bad field named (nothing stored then), set by
//!   provider roles only, audited, and read back;
//! - an inference endpoint's cost per million tokens matches docs/economics.md's hand
//!   computation: at the assumed utilisation before anything is measured, then at the busy
//!   utilisation of its own GPUs from stored agent summaries (other GPUs' do not count);
//! - a site's cost per GPU model, sizing for a demand and a budget, break-even against the API;
//! - another tenant's endpoint is answered NOT_FOUND exactly like a missing one, and tenants
//!   may not ask about sites or the inputs;
//! - the CLI: a bad inputs file names its field (exit 4), the endpoint's cost as JSON and a
//!   sizing as a table; the console's cost page lists the endpoint at its measured cost.

mod api_support;
mod console_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use api_support::{ACME, TestApi};
use meridian_common::ids::{Generation, Sequence, ServerId, SiteId, Timestamp};
use meridian_common::model::{GpuUtilisation, MetricsPeriod, ReportBody, SiteReport};
use meridian_proto::v1 as proto;
use meridian_store::{Op, Txn};
use meridian_testkit::processes::{binary, clean};
use tonic::Code;

/// docs/economics.md's worked example: an H100 at 10,977.24 a year serving 3,000 tokens/s.
const INPUTS: &str = "gpus:
  H100-80GB: {capex: 30000, amortisation_years: 4, redundancy: 0.1, maintenance_per_year: 1500, power_kw: 1.0, price_per_kwh: 0.10, pue: 1.4}
throughput:
  - {gpu_model: H100-80GB, model_size: 70b, tokens_per_second: 3000}
api_prices: {70b: 0.50}
assumed_utilisation: 0.5
";
const YEARLY: f64 = 10_977.24;
/// 10,977.24 / (3,000 x 31,557,600) x 10^6.
const AT_FULL: f64 = YEARLY / 94_672.8;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

fn secret<'a>(people: &'a [(String, proto::Role, String)], name: &str) -> &'a str {
    &people.iter().find(|p| p.0 == name).unwrap().2
}

fn inputs() -> proto::CostInputs {
    let model: meridian_common::economics::CostInputs =
        meridian_common::yaml::parse(INPUTS, &[]).unwrap();
    model.into()
}

/// Runs the `meridian` binary with `token` against `api`.
fn meridian(api: &TestApi, token: &str, args: &[&str]) -> Output {
    let child = clean(Command::new(binary("meridian", "meridian-client")))
        .env("MERIDIAN_ENDPOINT", &api.endpoint)
        .env("MERIDIAN_CA", &api.ca)
        .env("MERIDIAN_TOKEN", token)
        .env("HOME", api.dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

/// An agent's utilisation summary of `site` over `[start, start + length)`: `gpus` as
/// (server, index, busy %), stored as ingest stores it.
async fn summary(
    api: &TestApi,
    site: &SiteId,
    start: i64,
    length_ms: u64,
    gpus: &[(ServerId, u32, f64)],
) {
    let report = SiteReport {
        site: site.clone(),
        sequence: Sequence::new(1),
        generation: Generation::new(1),
        at: Timestamp::from_millis(start + length_ms as i64),
        body: ReportBody::Metrics {
            gpu_utilisation_pct: 0.0,
            power_watts: 0.0,
            period: Some(MetricsPeriod {
                start: Timestamp::from_millis(start),
                length_ms,
                gpus: gpus
                    .iter()
                    .map(|(server, gpu, busy)| GpuUtilisation {
                        server: server.clone(),
                        gpu: *gpu,
                        mig_slot: None,
                        samples: 12,
                        busy_samples: 12,
                        busy_pct: *busy,
                        memory_busy_pct: 10.0,
                        memory_used_pct: 50.0,
                    })
                    .collect(),
            }),
        },
    };
    let tables = api.central.tables();
    let ops = meridian_central::channel::utilisation::ops(&tables, site, [report].iter())
        .await
        .unwrap();
    let mut txn = Txn::new();
    for op in ops {
        assert!(matches!(op, Op::Put { .. }));
        txn = txn.then(op);
    }
    assert!(tables.store().txn(txn).await.unwrap().succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_costs_follow_measured_utilisation_within_each_tenant() {
    let api = api_support::start(8, |c| c.api.rate_per_second = 100_000.0).await;
    let people = api.people().await;
    let mut admin = api.clients(&api.admin).await;
    let mut acme = api.clients(secret(&people, "acme-dev")).await;
    let mut globex = api.clients(secret(&people, "globex-admin")).await;

    // Inputs: checked field by field, nothing stored while bad; provider roles only.
    let mut bad = inputs();
    bad.gpus[0].costs.as_mut().unwrap().pue = 0.9;
    bad.throughput[0].tokens_per_second = 0.0;
    bad.assumed_utilisation = 2.0;
    let e = admin
        .cost
        .set_cost_inputs(proto::SetCostInputsRequest { inputs: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    for field in [
        "inputs.gpus.H100-80GB.pue",
        "inputs.throughput[0].tokens_per_second",
        "inputs.assumed_utilisation",
    ] {
        assert!(e.message().contains(field), "{field} in {}", e.message());
    }
    let mut unknown = inputs();
    unknown.gpus[0].gpu_model = "H900".into();
    let e = admin
        .cost
        .set_cost_inputs(proto::SetCostInputsRequest {
            inputs: Some(unknown),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("inputs.gpus[0].gpu_model"),
        "{}",
        e.message()
    );
    let none = admin
        .cost
        .get_cost_inputs(proto::GetCostInputsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(none.inputs.is_none(), "nothing stored: {none:?}");
    for tenant_user in ["acme-admin", "globex-admin"] {
        let mut c = api.clients(secret(&people, tenant_user)).await;
        let e = c
            .cost
            .set_cost_inputs(proto::SetCostInputsRequest {
                inputs: Some(inputs()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{tenant_user}");
    }
    let set = admin
        .cost
        .set_cost_inputs(proto::SetCostInputsRequest {
            inputs: Some(inputs()),
        })
        .await
        .unwrap()
        .into_inner()
        .inputs
        .unwrap();
    assert_eq!(set.updated_by, "admin");
    let got = admin
        .cost
        .get_cost_inputs(proto::GetCostInputsRequest {})
        .await
        .unwrap()
        .into_inner()
        .inputs
        .unwrap();
    assert_eq!(got, set);
    let audit = api
        .central
        .tables()
        .audit()
        .list_all(None, 1000)
        .await
        .unwrap();
    let changes: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "CostService/SetCostInputs")
        .map(|r| (r.actor.as_str(), r.result))
        .collect();
    // The admin's refused input, the admin's unknown model, two tenants denied, one success.
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert_eq!(
        changes[4],
        ("user:admin", proto::AuditResult::Success as i32)
    );

    // An inference endpoint of acme on two whole H100s, placed (no agent applies it here).
    let spec: meridian_common::model::WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": "chat",
        "kind": "inference_endpoint",
        "replicas": 1,
        "resources": {"accelerator": {"whole_gpus": {"model": "H100-80GB", "count": 2}}},
        "constraints": {}
    }))
    .unwrap();
    let id = acme
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec.into()),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
        .id;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let placement = loop {
        let w = acme
            .placement
            .get_workload(proto::GetWorkloadRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        if let Some(p) = w.placement {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never placed: {:?}",
            w.workload
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let a = &placement.assignments[0];
    let site = SiteId::parse(&a.site).unwrap();
    let server = ServerId::parse(&a.server).unwrap();
    let held: Vec<u32> = match a.slot.as_ref().and_then(|s| s.kind.clone()) {
        Some(proto::gpu_slot::Kind::WholeGpus(w)) => w.indices,
        other => panic!("{other:?}"),
    };
    assert_eq!(held.len(), 2);

    // Nothing measured, never applied: the assumed 50 %.
    let ask = |c: &mut meridian_client::Clients, workload: &str| {
        let mut c = c.clone();
        let workload = workload.to_owned();
        async move {
            c.cost
                .get_endpoint_cost(proto::GetEndpointCostRequest {
                    workload,
                    model_size: String::new(),
                    window_hours: 24,
                })
                .await
        }
    };
    let r = ask(&mut acme, &id).await.unwrap().into_inner();
    assert_eq!(
        (r.gpu_model.as_str(), r.model_size.as_str()),
        ("H100-80GB", "70b")
    );
    let t = r.total.unwrap();
    assert_eq!(t.basis, proto::UtilisationBasis::Assumed as i32);
    assert_eq!(
        (t.utilisation, t.busy_utilisation, t.allocated_utilisation),
        (0.5, None, Some(0.0))
    );
    assert!(close(t.cost_per_million, AT_FULL / 0.5), "{t:?}");

    // The agent's summaries of the last hour: the endpoint's GPUs 40 % busy, another GPU of the
    // same server 90 % (not the endpoint's: it does not count).
    let servers = api
        .central
        .tables()
        .servers()
        .list_all(Some(&site), 100)
        .await
        .unwrap();
    let other = servers
        .iter()
        .find(|s| s.id == server)
        .unwrap()
        .gpus
        .iter()
        .map(|g| g.index)
        .find(|i| !held.contains(i));
    let now = meridian_central::clock::now().as_millis();
    let mut gpus: Vec<(ServerId, u32, f64)> =
        held.iter().map(|i| (server.clone(), *i, 40.0)).collect();
    if let Some(o) = other {
        gpus.push((server.clone(), o, 90.0));
    }
    summary(&api, &site, now - 3_600_000, 3_600_000, &gpus).await;
    let r = ask(&mut acme, &id).await.unwrap().into_inner();
    let t = r.total.unwrap();
    assert_eq!(t.basis, proto::UtilisationBasis::Busy as i32, "{t:?}");
    assert!(close(t.utilisation, 0.4), "{t:?}");
    // By hand: 0.11595 per million at 100 %, / 0.4 = 0.28987; two GPUs 21,954.48 a year;
    // 2 x 3,000 x 0.4 = 2,400 tokens/s; break-even against 0.50: 23.19 %.
    assert!(close(t.cost_per_million, AT_FULL / 0.4), "{t:?}");
    assert_eq!(format!("{:.5}", t.cost_per_million), "0.28987");
    assert!(close(t.cost_per_million_at_full, AT_FULL));
    assert_eq!(format!("{:.5}", t.cost_per_million_at_full), "0.11595");
    assert!(close(t.cost_per_year, 21_954.48));
    assert!(close(t.gpus, 2.0));
    assert!(close(t.tokens_per_second, 2_400.0));
    assert_eq!(t.api_price_per_million, Some(0.5));
    assert!(close(t.break_even_utilisation.unwrap(), 0.231_898_496_717));
    assert_eq!(r.sites.len(), 1);
    assert_eq!(r.sites[0].site, site.as_str());
    assert_eq!(
        r.sites[0].cost.as_ref().unwrap().cost_per_million,
        t.cost_per_million
    );
    // A tenant's viewer may ask too.
    let mut viewer = api.clients(secret(&people, "acme-viewer")).await;
    assert!(ask(&mut viewer, &id).await.is_ok());
    // A model size the inputs do not know is named.
    let e = acme
        .cost
        .get_endpoint_cost(proto::GetEndpointCostRequest {
            workload: id.clone(),
            model_size: "8b".into(),
            window_hours: 24,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("model_size"), "{}", e.message());

    // Another tenant's endpoint is answered exactly like a missing one.
    let theirs = ask(&mut globex, &id).await.unwrap_err();
    let missing = ask(&mut globex, "wl-000000000000").await.unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!(
        theirs.message().replace(&id, "<id>"),
        missing.message().replace("wl-000000000000", "<id>")
    );
    // Tenants see no site, sizing or inputs.
    let e = acme
        .cost
        .get_site_cost(proto::GetSiteCostRequest {
            site: site.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = acme
        .cost
        .get_cost_inputs(proto::GetCostInputsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The site's H100s: busy over the GPUs measured, allocated from the placements.
    let s = admin
        .cost
        .get_site_cost(proto::GetSiteCostRequest {
            site: site.to_string(),
            model_size: String::new(),
            window_hours: 24,
        })
        .await
        .unwrap()
        .into_inner();
    let h100 = s
        .models
        .iter()
        .find(|m| m.gpu_model == "H100-80GB")
        .unwrap();
    let c = h100.cost.as_ref().unwrap();
    let busy = if other.is_some() {
        (0.4 * 2.0 + 0.9) / 3.0
    } else {
        0.4
    };
    assert_eq!(c.basis, proto::UtilisationBasis::Busy as i32);
    assert!(close(c.busy_utilisation.unwrap(), busy), "{c:?}");
    assert!(close(c.cost_per_million, AT_FULL / busy));

    // Sizing (docs/economics.md): 20,000 tokens/s at 70 % needs 10 GPUs, 100,000 buys 9, a
    // fleet of 16 is over-provisioned.
    let z = admin
        .cost
        .size_fleet(proto::SizeFleetRequest {
            gpu_model: "H100-80GB".into(),
            model_size: "70b".into(),
            demand_tokens_per_second: 20_000.0,
            budget_per_year: 100_000.0,
            target_utilisation: None,
            fleet_gpus: 16,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((z.gpus_needed, z.gpus_affordable), (10, 9));
    assert!(!z.within_budget);
    assert!(close(z.cost_needed_per_year, 109_772.4));
    assert_eq!(z.provisioning, proto::Provisioning::Over as i32);
    assert!(close(z.fleet_utilisation, 20_000.0 / 48_000.0));
    let b = admin
        .cost
        .get_break_even(proto::GetBreakEvenRequest {
            gpu_model: "H100-80GB".into(),
            model_size: "70b".into(),
            api_price_per_million: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(close(b.break_even_utilisation, 0.231_898_496_717));
    assert!(close(b.yearly_cost_per_gpu, YEARLY));

    // The CLI: a bad file names its field (exit 4); the endpoint as JSON; sizing as a table.
    let bad = api.dir.path().join("bad-costs.yaml");
    std::fs::write(&bad, INPUTS.replace("pue: 1.4", "pue: 0.5")).unwrap();
    let out = meridian(
        &api,
        &api.admin,
        &["cost", "inputs", "set", bad.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("inputs.gpus.H100-80GB.pue"), "{stderr}");
    let toml_file = api.dir.path().join("costs.toml");
    std::fs::write(
        &toml_file,
        "assumed_utilisation = 0.5\n[api_prices]\n70b = 0.5\n[gpus.H100-80GB]\ncapex = 30000.0\n\
         amortisation_years = 4.0\nredundancy = 0.1\nmaintenance_per_year = 1500.0\npower_kw = 1.0\n\
         price_per_kwh = 0.1\npue = 1.4\n[[throughput]]\ngpu_model = \"H100-80GB\"\n\
         model_size = \"70b\"\ntokens_per_second = 3000.0\n",
    )
    .unwrap();
    let out = meridian(
        &api,
        &api.admin,
        &["cost", "inputs", "set", toml_file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("10977.24") && shown.contains("70b"),
        "{shown}"
    );
    let out = meridian(
        &api,
        secret(&people, "acme-dev"),
        &["cost", "endpoint", &id, "-o", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tenant"], ACME);
    assert_eq!(json["total"]["basis"], "busy");
    assert!(close(
        json["total"]["cost_per_million"].as_f64().unwrap(),
        AT_FULL / 0.4
    ));
    let out = meridian(
        &api,
        secret(&people, "globex-admin"),
        &["cost", "endpoint", &id],
    );
    assert_eq!(out.status.code(), Some(3), "not found");
    let out = meridian(
        &api,
        &api.admin,
        &[
            "cost",
            "size",
            "--demand-tokens-per-second",
            "20000",
            "--budget-per-year",
            "100000",
            "--model",
            "H100-80GB",
            "--model-size",
            "70b",
            "--fleet-gpus",
            "16",
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("GPUS NEEDED")
            && table.contains("over-provisioned")
            && table.contains("109772.40"),
        "{table}"
    );
    let out = meridian(
        &api,
        &api.admin,
        &[
            "cost",
            "break-even",
            "--model",
            "H100-80GB",
            "--model-size",
            "70b",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("23.2 %"));

    // The console's cost page lists the endpoint at its measured cost, beside the calculator.
    let addr = api
        .central
        .console()
        .expect("the console is on")
        .local_addr();
    let mut console = console_support::Browser::new(addr, &api.ca);
    console.login_token(&api.admin).await;
    let page = console.get("/cost").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("endpoint-costs"), "{}", page.body);
    assert!(
        page.body.contains(&id)
            && page.body.contains("0.2899")
            && page.body.contains("40.0 % busy"),
        "{}",
        page.body
    );
    let page = console.get(&format!("/utilisation?site={site}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("busy-mean"), "{}", page.body);
    let _ = std::io::stdout().flush();
    api.central.shutdown().await;
}

//! Enrolment end to end with the real binaries: `meridian-central` (operator subcommand to
//! create the token and export the bootstrap file, then the server) and `meridian-agent`, as
//! processes on 127.0.0.1.

use std::path::Path;
use std::process::{Command, Stdio};

use meridian_common::model::SiteState;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::processes::{Reaped, binary, clean, free_port, terminate, wait_log};

fn central_cmd(data: &Path, port: u16) -> Command {
    let mut c = clean(Command::new(binary("meridian-central", "meridian-central")));
    c.env("MERIDIAN_CENTRAL_DATA_DIR", data)
        .env(
            "MERIDIAN_CENTRAL_CHANNEL__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("MERIDIAN_CENTRAL_CHANNEL__DISCONNECT_AFTER_MS", "2000")
        .env("MERIDIAN_CENTRAL_API__LISTEN", "127.0.0.1:0")
        .env("MERIDIAN_CENTRAL_CONSOLE__LISTEN", "127.0.0.1:0")
        .env("MERIDIAN_CENTRAL_METRICS__LISTEN", "127.0.0.1:0");
    c
}

fn agent(data: &Path, boot: &Path, log: &Path) -> Reaped {
    let mut c = clean(Command::new(binary("meridian-agent", "meridian-agent")));
    c.env("MERIDIAN_AGENT_DATA_DIR", data)
        .env("MERIDIAN_AGENT_BOOTSTRAP_FILE", boot)
        .env("MERIDIAN_AGENT_BIND", "127.0.0.1:0")
        .env("MERIDIAN_AGENT_HEARTBEAT_INTERVAL_MS", "300")
        .env("MERIDIAN_AGENT_BACKOFF_MAX_MS", "500")
        .env("MERIDIAN_AGENT_METRICS__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Reaped(c.spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binaries_enrol_connect_and_refuse_a_replayed_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("central");
    let port = free_port(true);
    // The operator creates the site (through the library here) ...
    {
        let central = meridian_central::server::Central::open(test_central::config(
            &data,
            test_central::any_port(),
            Liveness::Quick,
        ))
        .await
        .unwrap();
        enrol::add_site(&central, "edge-bin").await.unwrap();
        central.shutdown().await;
    }
    // ... then a token and its bootstrap file with the CLI, central stopped.
    let boot = dir.path().join("bootstrap.toml");
    let out = central_cmd(&data, port)
        .args(["token", "create", "--site", "edge-bin", "--export"])
        .arg(&boot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&boot).unwrap();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");

    let central_log = dir.path().join("central.log");
    let central = Reaped(
        central_cmd(&data, port)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&central_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_log(&central_log, "agent channel listening");

    let log = dir.path().join("agent.log");
    let agent1 = agent(&dir.path().join("agent"), &boot, &log);
    wait_log(&log, "session open");
    // A second machine with the same bootstrap file: the token is spent.
    let log2 = dir.path().join("agent2.log");
    let agent2 = agent(&dir.path().join("agent2"), &boot, &log2);
    wait_log(&log2, "already used");
    terminate(agent2);
    terminate(agent1);
    terminate(central);

    // Central recorded the site (Online, since the agent connected) and spent the token.
    let central = meridian_central::server::Central::open(test_central::config(
        &data,
        test_central::any_port(),
        Liveness::Quick,
    ))
    .await
    .unwrap();
    let site = central
        .tables()
        .sites()
        .get(&site_id("edge-bin"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            site.record.state,
            SiteState::Online | SiteState::Disconnected | SiteState::Enrolled
        ),
        "{:?}",
        site.record.state
    );
    let tokens = central
        .channel()
        .tokens()
        .list(Some(&site_id("edge-bin")))
        .await
        .unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].used_at > 0);
    central.shutdown().await;
    // The agent kept its key and certificate in its own database.
    let store = meridian_agent::store::AgentStore::open(&dir.path().join("agent")).unwrap();
    assert_eq!(store.identity().unwrap().unwrap().site, site_id("edge-bin"));
}

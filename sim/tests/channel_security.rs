//! R5 (token replay, expiry, revocation, foreign token), R6 (impersonation, revoked site) and
//! bad input, against a real central over QUIC on 127.0.0.1.

use std::time::{Duration, Instant};

use meridian_agent::enroll::{EnrollError, enroll};
use meridian_agent::tls;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::{CENTRAL_SERVER_NAME, frame};
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use meridian_store::RangeRequest;
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::wait::{LIMIT, wait_for};
use proto::EnrollErrorCode as Code;

fn endpoint() -> quinn::Endpoint {
    tls::client_endpoint("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap()
}

async fn audit_count(
    central: &meridian_central::server::Central,
    action: &str,
    result: proto::AuditResult,
) -> usize {
    let all =
        meridian_central::audit::list_records::<proto::AuditRecord>(&central.tables(), "audit/")
            .await
            .unwrap();
    all.iter()
        .filter(|r| r.action == action && r.result == result as i32)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_replayed_expired_revoked_and_foreign_tokens_never_enrol() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(dir.path()).await.unwrap();
    enrol::add_site(&central, "site-a").await.unwrap();
    enrol::add_site(&central, "site-b").await.unwrap();
    let tokens = central.channel().tokens();
    let now = meridian_central::clock::now();
    let ep = endpoint();
    let file = |t: &meridian_central::tokens::NewToken| {
        t.bootstrap_file(central.channel().advertised(), central.ca().fingerprint())
    };
    let refused = |r: Result<_, EnrollError>| match r {
        Err(EnrollError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    };

    let good = tokens
        .create(&site_id("site-a"), Duration::from_secs(600), now, "t")
        .await
        .unwrap();
    let first = enroll(&ep, &file(&good), 1 << 20, 0).await.unwrap();
    assert_eq!(first.site, site_id("site-a"));
    for _ in 0..100 {
        assert_eq!(
            refused(enroll(&ep, &file(&good), 1 << 20, 0).await),
            Code::TokenUsed
        );
    }
    let expired = tokens
        .create(
            &site_id("site-a"),
            Duration::from_secs(1),
            Timestamp::from_millis(now.as_millis() - 60_000),
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        refused(enroll(&ep, &file(&expired), 1 << 20, 0).await),
        Code::TokenExpired
    );
    let revoked = tokens
        .create(&site_id("site-a"), Duration::from_secs(600), now, "t")
        .await
        .unwrap();
    tokens
        .revoke(
            &meridian_common::ids::TokenId::parse(&revoked.token.id).unwrap(),
            now,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        refused(enroll(&ep, &file(&revoked), 1 << 20, 0).await),
        Code::TokenRevoked
    );
    // A token of site B presented for site A.
    let foreign = tokens
        .create(&site_id("site-b"), Duration::from_secs(600), now, "t")
        .await
        .unwrap();
    let mut as_a = file(&foreign);
    as_a.site = site_id("site-a");
    assert_eq!(
        refused(enroll(&ep, &as_a, 1 << 20, 0).await),
        Code::WrongSite
    );
    let mut guessed: BootstrapFile = file(&good);
    guessed.token = format!("{}.{}", good.token.id, "0".repeat(64));
    assert_eq!(
        refused(enroll(&ep, &guessed, 1 << 20, 0).await),
        Code::TokenUnknown
    );

    // Exactly one enrolment; every refusal audited; site B untouched.
    assert_eq!(
        audit_count(&central, "channel/Enroll", proto::AuditResult::Success).await,
        1
    );
    assert_eq!(
        audit_count(&central, "channel/Enroll", proto::AuditResult::Denied).await,
        104
    );
    let b = central
        .tables()
        .sites()
        .get(&site_id("site-b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.record.state, SiteState::Pending);
    // The secret is stored hashed only.
    let raw = central
        .store()
        .range(RangeRequest::prefix("tokens/bootstrap/"))
        .await
        .unwrap();
    for kv in raw.kvs {
        assert!(
            !String::from_utf8_lossy(&kv.value).contains(&good.secret[good.token.id.len() + 1..])
        );
    }
    central.shutdown().await;
}

/// Opens a raw session with an identity and sends `hello`; returns the connection and streams.
async fn raw_session(
    ep: &quinn::Endpoint,
    central: &meridian_central::server::Central,
    id: &meridian_agent::store::Identity,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    let cfg = tls::session_config(
        &id.ca_pem,
        &id.cert_pem,
        &id.key_pem,
        Duration::from_secs(2),
        1 << 20,
    )
    .unwrap();
    let conn = ep
        .connect_with(cfg, central.channel().local_addr(), CENTRAL_SERVER_NAME)
        .unwrap()
        .await?;
    let (send, recv) = conn.open_bi().await?;
    Ok((conn, send, recv))
}

async fn send(s: &mut quinn::SendStream, kind: proto::agent_message::Kind) {
    let bytes = frame::encode_message(&proto::AgentMessage { kind: Some(kind) }, 1 << 20).unwrap();
    let _ = s.write_all(&bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_a_certificate_cannot_speak_for_b_and_a_revoked_site_is_refused_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(&dir.path().join("c")).await.unwrap();
    enrol::add_site(&central, "site-a").await.unwrap();
    enrol::add_site(&central, "site-b").await.unwrap();
    let ep = endpoint();
    let now = meridian_central::clock::now();
    let tokens = central.channel().tokens();
    let mut ids = Vec::new();
    for s in ["site-a", "site-b"] {
        let t = tokens
            .create(&site_id(s), Duration::from_secs(600), now, "t")
            .await
            .unwrap();
        let f = t.bootstrap_file(central.channel().advertised(), central.ca().fingerprint());
        ids.push(enroll(&ep, &f, 1 << 20, 0).await.unwrap());
    }
    let (a, _b) = (&ids[0], &ids[1]);
    central
        .tables()
        .intents()
        .upsert(&empty_intent(&site_id("site-b"), 7))
        .await
        .unwrap();

    // A's certificate with a Hello naming B: the session is closed, nothing is pushed.
    let (conn, mut s, mut r) = raw_session(&ep, &central, a).await.unwrap();
    send(
        &mut s,
        proto::agent_message::Kind::Hello(proto::Hello {
            site: "site-b".into(),
            ..Default::default()
        }),
    )
    .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(LIMIT, r.read_to_end(1 << 20))
        .await
        .map(|x| x.map(|b| buf = b));
    assert!(buf.is_empty(), "central sent something to an impersonator");
    let _ = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();

    // A's certificate, honest Hello, then a report claiming to be B's: refused, not stored.
    let (conn, mut s, _r) = raw_session(&ep, &central, a).await.unwrap();
    send(
        &mut s,
        proto::agent_message::Kind::Hello(proto::Hello {
            site: "site-a".into(),
            ..Default::default()
        }),
    )
    .await;
    let report = proto::SiteReport {
        site: "site-b".into(),
        sequence: 1,
        generation: 0,
        at: 1,
        body: Some(proto::site_report::Body::Event(proto::Event {
            severity: 1,
            resource: "x".into(),
            message: "y".into(),
        })),
    };
    send(
        &mut s,
        proto::agent_message::Kind::ReportBatch(proto::ReportBatch {
            first_sequence: 1,
            reports: vec![report],
            dropped: 0,
        }),
    )
    .await;
    let _ = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    let stored = central
        .store()
        .range(RangeRequest::prefix("reports/"))
        .await
        .unwrap();
    assert!(stored.kvs.is_empty());
    let b_channel = central
        .channel()
        .site_channel(&site_id("site-b"))
        .await
        .unwrap();
    assert_eq!(b_channel.received_generation, Generation::new(0));

    // Revoke A while its session is live: the session closes and new handshakes are refused
    // within a second.
    let (conn, mut s, _r) = raw_session(&ep, &central, a).await.unwrap();
    send(
        &mut s,
        proto::agent_message::Kind::Hello(proto::Hello {
            site: "site-a".into(),
            ..Default::default()
        }),
    )
    .await;
    wait_for("session registered", LIMIT, || async {
        central.channel().connected_sites() == 1
    })
    .await;
    let tables = central.tables();
    let audit = meridian_central::audit::Auditor::new(tables.clone());
    meridian_central::sites::Sites::new(tables, audit)
        .revoke(&site_id("site-a"), "test", now)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let closed = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    // In TLS 1.3 the client finishes its side before central checks the certificate, so the
    // refusal arrives as a TLS alert closing the connection (QUIC crypto error 0x100 + alert).
    let refusal = match raw_session(&ep, &central, a).await {
        Err(e) => e,
        Ok((conn, mut s, _r)) => {
            send(
                &mut s,
                proto::agent_message::Kind::Hello(proto::Hello {
                    site: "site-a".into(),
                    ..Default::default()
                }),
            )
            .await;
            tokio::time::timeout(LIMIT, conn.closed()).await.unwrap()
        }
    };
    let elapsed = revoked_at.elapsed();
    let code = match &refusal {
        quinn::ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        quinn::ConnectionError::TransportError(t) => u64::from(t.code),
        other => panic!("revoked certificate not refused at the handshake: {other:?}"),
    };
    assert_eq!(
        code,
        0x100 + 44,
        "expected the certificate_revoked alert, got {refusal:?}"
    );
    assert!(elapsed < Duration::from_secs(1), "refusal took {elapsed:?}");
    assert_eq!(central.channel().connected_sites(), 0);
    // B is unaffected.
    let (_conn, mut s, mut r) = raw_session(&ep, &central, &ids[1]).await.unwrap();
    send(
        &mut s,
        proto::agent_message::Kind::Hello(proto::Hello {
            site: "site-b".into(),
            ..Default::default()
        }),
    )
    .await;
    let body = tokio::time::timeout(LIMIT, meridian_channel::read_frame(&mut r, 1 << 20))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let msg: proto::CentralMessage = prost::Message::decode(body.as_slice()).unwrap();
    assert!(
        matches!(msg.kind, Some(proto::central_message::Kind::IntentPush(p)) if p.generation == 7)
    );
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_neither_crashes_central_nor_stalls_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(&dir.path().join("c")).await.unwrap();
    enrol::add_site(&central, "good").await.unwrap();
    enrol::add_site(&central, "bad").await.unwrap();
    let boot = enrol::write_bootstrap(&central, "good", vec![], dir.path())
        .await
        .unwrap();
    let (agent, _) = agents::start_recording(agents::config(&dir.path().join("agent"), &boot, 300))
        .await
        .unwrap();
    wait_for("good site connected", LIMIT, || async {
        agent.status().unwrap().connected
    })
    .await;

    let ep = endpoint();
    let t = central
        .channel()
        .tokens()
        .create(
            &site_id("bad"),
            Duration::from_secs(600),
            meridian_central::clock::now(),
            "t",
        )
        .await
        .unwrap();
    let bad = enroll(
        &ep,
        &t.bootstrap_file(central.channel().advertised(), central.ca().fingerprint()),
        1 << 20,
        0,
    )
    .await
    .unwrap();

    // Clients that never finish their handshake: raw UDP garbage and a lone Initial-sized blob.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let mut junk = vec![0xc3u8; 1200];
        junk[1..5].copy_from_slice(&i.to_be_bytes());
        let _ = udp.send_to(&junk, central.channel().local_addr());
    }
    // Oversized frame header, malformed protobuf, unknown message type, truncated frame.
    let cases: Vec<Vec<u8>> = vec![
        (u32::MAX).to_be_bytes().to_vec(),
        frame::encode(&[0xff, 0xff, 0xff, 0xff], 1 << 20).unwrap(),
        {
            let mut hello = frame::encode_message(
                &proto::AgentMessage {
                    kind: Some(proto::agent_message::Kind::Hello(proto::Hello {
                        site: "bad".into(),
                        ..Default::default()
                    })),
                },
                1 << 20,
            )
            .unwrap();
            // Field 99 (unknown message type) as a length-delimited field.
            hello.extend(frame::encode(&[0x9a, 0x06, 0x01, 0x00], 1 << 20).unwrap());
            hello.extend(frame::encode(&[0x0a, 0xff], 1 << 20).unwrap());
            hello
        },
        vec![0, 0, 0, 10, 1, 2],
    ];
    for bytes in cases {
        if let Ok((conn, mut s, _r)) = raw_session(&ep, &central, &bad).await {
            let _ = s.write_all(&bytes).await;
            let _ = s.finish();
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        }
    }
    // A half-open session: handshake done, stream never opened. Central times it out.
    let (idle, _, _) = raw_session(&ep, &central, &bad).await.unwrap();
    // Meanwhile the good site is served: a push arrives.
    central
        .tables()
        .intents()
        .upsert(&empty_intent(&site_id("good"), 2))
        .await
        .unwrap();
    wait_for("good site got its intent", LIMIT, || async {
        agent.status().unwrap().held == Generation::new(2)
    })
    .await;
    let closed = tokio::time::timeout(LIMIT, idle.closed()).await;
    assert!(
        closed.is_ok(),
        "central kept a session that never said Hello"
    );
    assert!(
        central
            .channel()
            .counters()
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    agent.shutdown().await;
    central.shutdown().await;
}

//! Users' console passwords against a real central: `TenantService/SetUserPassword` over
//! gRPC (who may set whose, validation, nothing stored on a refusal, the password never in
//! the audit log, deleted with its user), logging in with
//! `Services::authenticate_password` (the caller it gives, one answer for every failure, the
//! per-user and per-address limits), and `meridian user set-password --password-file` with
//! the real CLI binary.

mod api_support;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use api_support::TestApi;
use meridian_central::services::passwords::{LOGIN_ACTION, LOGIN_FAILED};
use meridian_central::services::{ApiError, PASSWORD_LOGIN_TOKEN, Role, Services};
use meridian_client::Clients;
use meridian_proto::v1 as proto;
use meridian_store::tables::KeyPath;
use meridian_testkit::processes::{binary, clean};
use tonic::Code;

const DEV_PASSWORD: &str = "correct horse battery staple";

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn secret_of<'a>(people: &'a [(String, proto::Role, String)], name: &str) -> &'a str {
    &people.iter().find(|p| p.0 == name).unwrap().2
}

async fn set(c: &mut Clients, user: &str, password: &str) -> Result<(), tonic::Status> {
    c.tenants
        .set_user_password(proto::SetUserPasswordRequest {
            user: user.into(),
            password: password.into(),
        })
        .await
        .map(|_| ())
}

async fn stored(api: &TestApi, user: &str) -> Option<proto::PasswordRecord> {
    api.central
        .tables()
        .passwords()
        .get(&KeyPath(user.into()))
        .await
        .unwrap()
        .map(|v| v.record)
}

fn services(api: &TestApi) -> Arc<Services> {
    Arc::clone(api.central.api().services())
}

fn assert_login_failed(r: Result<meridian_central::services::Caller, ApiError>, what: &str) {
    match r {
        Err(ApiError::Unauthenticated(m)) => assert_eq!(m, LOGIN_FAILED, "{what}"),
        other => panic!("{what}: expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_set_within_scope_and_logins_are_limited_per_user_and_address() {
    // A small per-address budget, so that its refusal shows within a few attempts.
    let api = api_support::start(2, |c| {
        c.api.rate_per_second = 100_000.0;
        c.api.auth_failure_burst = 4.0;
        c.api.auth_failures_per_second = 0.01;
    })
    .await;
    let people = api.people().await;
    let services = services(&api);
    let mut admin = api.clients(&api.admin).await;

    // A provider admin sets a tenant user's password; only an argon2id hash is stored.
    set(&mut admin, "acme-dev@acme", DEV_PASSWORD)
        .await
        .unwrap();
    let record = stored(&api, "acme-dev@acme").await.expect("stored");
    assert_eq!(record.user, "acme-dev@acme");
    assert!(
        record.hash.starts_with("$argon2id$v=19$"),
        "{}",
        record.hash
    );
    assert!(!record.hash.contains(DEV_PASSWORD));
    assert!(record.set_at_ms > 0);

    // The login: the user's ID, tenant and role, and the fixed login token ID.
    let caller = services
        .authenticate_password(ip("127.0.1.1"), "acme-dev@acme", DEV_PASSWORD)
        .await
        .unwrap();
    assert_eq!(caller.user.as_str(), "acme-dev@acme");
    assert_eq!(caller.tenant.as_ref().map(|t| t.as_str()), Some("acme"));
    assert_eq!(caller.role, Role::TenantMember);
    assert_eq!(caller.token.as_str(), PASSWORD_LOGIN_TOKEN);
    // What the console does with it is what any caller does: admitted like a token's.
    services
        .admit(&caller, meridian_central::services::Rpc::ListWorkloads)
        .await
        .unwrap();

    // A wrong password, an unknown user, a user without a password, a name that is no user
    // ID: one answer (each from its own address, so no address budget runs out).
    assert_login_failed(
        services
            .authenticate_password(
                ip("127.0.1.2"),
                "acme-dev@acme",
                "correct horse battery stapler",
            )
            .await,
        "wrong password",
    );
    assert_login_failed(
        services
            .authenticate_password(ip("127.0.1.3"), "nobody@acme", DEV_PASSWORD)
            .await,
        "unknown user",
    );
    assert_login_failed(
        services
            .authenticate_password(ip("127.0.1.4"), "acme-viewer@acme", DEV_PASSWORD)
            .await,
        "user without a password",
    );
    assert_login_failed(
        services
            .authenticate_password(ip("127.0.1.5"), "Not A User!", DEV_PASSWORD)
            .await,
        "not a user ID",
    );
    // The plain name is not the user: logins name the user in full.
    assert_login_failed(
        services
            .authenticate_password(ip("127.0.1.6"), "acme-dev", DEV_PASSWORD)
            .await,
        "plain name",
    );

    // Another tenant's admin: acme's user is not found, exactly like a missing one, and its
    // password is unchanged.
    let mut globex_admin = api.clients(secret_of(&people, "globex-admin")).await;
    for (user, expected) in [
        ("acme-dev@acme", "user acme-dev@acme not found"),
        ("nobody@acme", "user nobody@acme not found"),
        ("admin", "user admin@globex not found"),
    ] {
        let e = set(&mut globex_admin, user, "an intruder's password")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{user}: {e:?}");
        assert_eq!(e.message(), expected);
    }
    assert_eq!(stored(&api, "acme-dev@acme").await, Some(record.clone()));

    // A member sets its own (by full name, by plain name, or by naming no one), not another's.
    let mut dev = api.clients(secret_of(&people, "acme-dev")).await;
    set(&mut dev, "acme-dev@acme", "a member's own password 1")
        .await
        .unwrap();
    set(&mut dev, "acme-dev", "a member's own password 2")
        .await
        .unwrap();
    set(&mut dev, "", "a member's own password 3")
        .await
        .unwrap();
    let e = set(&mut dev, "acme-admin", "a member's coup attempt")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(stored(&api, "acme-admin@acme").await, None);
    let caller = services
        .authenticate_password(
            ip("127.0.1.7"),
            "acme-dev@acme",
            "a member's own password 3",
        )
        .await
        .unwrap();
    assert_eq!(caller.role, Role::TenantMember);
    assert_login_failed(
        services
            .authenticate_password(ip("127.0.1.8"), "acme-dev@acme", DEV_PASSWORD)
            .await,
        "the old password",
    );

    // A tenant admin sets its tenant's users' passwords, not a provider user's.
    let mut acme_admin = api.clients(secret_of(&people, "acme-admin")).await;
    set(&mut acme_admin, "acme-viewer", "the viewer's new password")
        .await
        .unwrap();
    let e = set(&mut acme_admin, "ops", "an operator's password")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(stored(&api, "ops").await, None);
    // A provider user (not an admin) sets only its own.
    let mut ops = api.clients(secret_of(&people, "ops")).await;
    set(&mut ops, "", "the operator's own password")
        .await
        .unwrap();
    let e = set(&mut ops, "auditor", "not the operator's to set")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let caller = services
        .authenticate_password(ip("127.0.1.9"), "ops", "the operator's own password")
        .await
        .unwrap();
    assert_eq!((caller.tenant, caller.role), (None, Role::SiteOperator));

    // Bad passwords name the field and store nothing.
    for bad in [
        "short",
        "eleven char",
        "            ",
        "\t\t\t\t\t\t\t\t\t\t\t\t\t",
        &"x".repeat(1025),
    ] {
        let e = set(&mut admin, "acme-admin@acme", bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
        assert!(e.message().starts_with("password: "), "{}", e.message());
        assert!(!e.message().contains(bad.trim()) || bad.trim().is_empty());
    }
    assert_eq!(stored(&api, "acme-admin@acme").await, None);
    let e = set(&mut admin, "no-such-user", "a long enough password")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Per user: after 5 failures, from 5 addresses, the user is refused from a sixth address
    // even with the right password (nothing is verified), while others still log in.
    set(
        &mut admin,
        "globex-dev@globex",
        "globex's developer password",
    )
    .await
    .unwrap();
    for i in 1..=5 {
        assert_login_failed(
            services
                .authenticate_password(
                    ip(&format!("127.0.2.{i}")),
                    "globex-dev@globex",
                    "a guess at the password",
                )
                .await,
            &format!("guess {i}"),
        );
    }
    match services
        .authenticate_password(
            ip("127.0.2.6"),
            "globex-dev@globex",
            "globex's developer password",
        )
        .await
    {
        Err(ApiError::RateLimited { key, retry_after }) => {
            assert_eq!(key, "user globex-dev@globex (failed logins)");
            assert!(retry_after.as_secs_f64() > 1.0, "{retry_after:?}");
        }
        other => panic!("the sixth login: {other:?}"),
    }
    services
        .authenticate_password(
            ip("127.0.2.6"),
            "acme-viewer@acme",
            "the viewer's new password",
        )
        .await
        .unwrap();

    // Per address: its budget of failed authentications (4 here) is shared with API tokens;
    // past it, even a right password from there is refused unread.
    for i in 0..4 {
        assert_login_failed(
            services
                .authenticate_password(
                    ip("127.0.3.1"),
                    &format!("ghost-{i}@acme"),
                    "whatever it may be",
                )
                .await,
            &format!("ghost {i}"),
        );
    }
    match services
        .authenticate_password(
            ip("127.0.3.1"),
            "acme-viewer@acme",
            "the viewer's new password",
        )
        .await
    {
        Err(ApiError::RateLimited { key, .. }) => {
            assert_eq!(key, "address 127.0.3.1 (failed authentications)")
        }
        other => panic!("past the address's budget: {other:?}"),
    }
    // Successful logins spend nothing.
    for _ in 0..6 {
        services
            .authenticate_password(
                ip("127.0.4.1"),
                "acme-viewer@acme",
                "the viewer's new password",
            )
            .await
            .unwrap();
    }

    // Audited: the sets on `user/{id}`, logins and failed logins; never a password.
    let audit = api
        .central
        .tables()
        .audit()
        .list_all(None, 10_000)
        .await
        .unwrap();
    let has = |action: &str, object: &str, result: proto::AuditResult, actor: &str| {
        audit.iter().any(|r| {
            r.action == action
                && r.object == object
                && r.result == result as i32
                && r.actor == actor
        })
    };
    assert!(has(
        "TenantService/SetUserPassword",
        "user/acme-dev@acme",
        proto::AuditResult::Success,
        "user:admin"
    ));
    assert!(has(
        "TenantService/SetUserPassword",
        "user/acme-dev@acme",
        proto::AuditResult::Denied,
        "user:globex-admin@globex"
    ));
    assert!(has(
        "TenantService/SetUserPassword",
        "user/acme-admin@acme",
        proto::AuditResult::Failed,
        "user:admin"
    ));
    assert!(has(
        LOGIN_ACTION,
        "user/acme-dev@acme",
        proto::AuditResult::Success,
        "user:acme-dev@acme"
    ));
    assert!(has(
        LOGIN_ACTION,
        "user/acme-dev@acme",
        proto::AuditResult::Denied,
        "user:acme-dev@acme"
    ));
    assert!(has(
        LOGIN_ACTION,
        "user/",
        proto::AuditResult::Denied,
        "anonymous"
    ));
    // Refused logins are not audited (a flood must not fill the log).
    let refused = audit
        .iter()
        .filter(|r| r.action == LOGIN_ACTION && r.detail.contains("127.0.2.6"))
        .count();
    assert_eq!(refused, 1, "only the viewer's login from 127.0.2.6");
    for r in &audit {
        let text = format!("{} {} {} {}", r.actor, r.action, r.object, r.detail);
        for secret in [
            DEV_PASSWORD,
            "a member's own password",
            "an intruder's password",
            "the viewer's new password",
            "eleven char",
            "a guess at the password",
            "globex's developer password",
        ] {
            assert!(
                !text.contains(secret),
                "audit record {} holds a password: {text}",
                r.seq
            );
        }
    }

    // Deleting a user deletes its password; a new user of the same ID has none.
    admin
        .tenants
        .delete_user(proto::DeleteUserRequest {
            id: "acme-viewer@acme".into(),
        })
        .await
        .unwrap();
    assert_eq!(stored(&api, "acme-viewer@acme").await, None);
    assert_login_failed(
        services
            .authenticate_password(
                ip("127.0.4.2"),
                "acme-viewer@acme",
                "the viewer's new password",
            )
            .await,
        "a deleted user",
    );
    admin
        .tenants
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                id: "acme-viewer".into(),
                tenant: "acme".into(),
                role: proto::Role::Viewer as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(stored(&api, "acme-viewer@acme").await, None);
    assert_login_failed(
        services
            .authenticate_password(
                ip("127.0.4.3"),
                "acme-viewer@acme",
                "the viewer's new password",
            )
            .await,
        "the same ID, a new user",
    );
    api.central.shutdown().await;
}

/// Runs the `meridian` binary with `token` against `api`, `stdin` on its standard input.
fn meridian(api: &TestApi, token: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = clean(Command::new(binary("meridian", "meridian-client")))
        .env("MERIDIAN_ENDPOINT", &api.endpoint)
        .env("MERIDIAN_CA", &api.ca)
        .env("MERIDIAN_TOKEN", token)
        .env("HOME", api.dir.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_passwords_from_a_file_or_stdin_never_an_argument() {
    let api = api_support::start(2, |_| {}).await;
    let people = api.people().await;
    let services = services(&api);
    let admin = api.admin.clone();

    // From stdin: the first line, its newline dropped.
    let out = meridian(
        &api,
        &admin,
        &[
            "user",
            "set-password",
            "acme-dev@acme",
            "--password-file",
            "-",
            "-o",
            "json",
        ],
        &format!("{DEV_PASSWORD}\nsecond line ignored\n"),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"user": "acme-dev@acme", "password": "set"})
    );
    assert!(!stdout.contains(DEV_PASSWORD) && !stderr.contains(DEV_PASSWORD));
    services
        .authenticate_password(ip("127.0.5.1"), "acme-dev@acme", DEV_PASSWORD)
        .await
        .unwrap();

    // From a file, by a tenant admin naming its user plainly (CRLF line ending).
    let file = api.dir.path().join("viewer.password");
    std::fs::write(&file, "the viewer's file password\r\n").unwrap();
    let acme_admin = secret_of(&people, "acme-admin");
    let out = meridian(
        &api,
        acme_admin,
        &[
            "user",
            "set-password",
            "acme-viewer",
            "--password-file",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("acme-viewer") && table.contains("set"),
        "{table}"
    );
    services
        .authenticate_password(
            ip("127.0.5.2"),
            "acme-viewer@acme",
            "the viewer's file password",
        )
        .await
        .unwrap();

    // The server's refusal names the field (exit 4); nothing is stored.
    let out = meridian(
        &api,
        &admin,
        &[
            "user",
            "set-password",
            "acme-admin@acme",
            "--password-file",
            "-",
        ],
        "too short\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("password: must be at least 12 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("too short"), "{stderr}");
    assert_eq!(stored(&api, "acme-admin@acme").await, None);
    // Another tenant's user: not found (exit 3).
    let globex_admin = secret_of(&people, "globex-admin");
    let out = meridian(
        &api,
        globex_admin,
        &[
            "user",
            "set-password",
            "acme-dev@acme",
            "--password-file",
            "-",
        ],
        "an intruder's password\n",
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Usage errors name the flag (exit 2): no flag, no such file, an empty first line; and a
    // password is never taken as an argument.
    for (args, stdin, expected) in [
        (
            vec!["user", "set-password", "acme-dev@acme"],
            "",
            "--password-file",
        ),
        (
            vec![
                "user",
                "set-password",
                "acme-dev@acme",
                "--password-file",
                "/nonexistent/pw",
            ],
            "",
            "--password-file /nonexistent/pw: cannot read it",
        ),
        (
            vec![
                "user",
                "set-password",
                "acme-dev@acme",
                "--password-file",
                "-",
            ],
            "\nsecond line\n",
            "--password-file -: the first line is empty",
        ),
        (
            vec![
                "user",
                "set-password",
                "acme-dev@acme",
                "--password",
                "hunter2hunter2",
            ],
            "",
            "--password",
        ),
    ] {
        let out = meridian(&api, &admin, &args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // None of those changed the password.
    services
        .authenticate_password(ip("127.0.5.3"), "acme-dev@acme", DEV_PASSWORD)
        .await
        .unwrap();
    api.central.shutdown().await;
}

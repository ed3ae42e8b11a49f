//! The operator console over real HTTPS against a real central: login by password and by API
//! token, session fixation, CSRF, logout, another tenant's objects, the role table on forms,
//! login rate limits, and bad input naming its field with nothing stored.

mod api_support;
mod console_support;

use api_support::{ACME, GLOBEX};
use console_support::{Browser, csrf_of, form};

const PASSWORD: &str = "correct horse battery staple";

fn browser(api: &api_support::TestApi) -> Browser {
    let addr = api
        .central
        .console()
        .expect("the console is on by default")
        .local_addr();
    Browser::new(addr, &api.ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_scoping_and_bad_input() {
    let api = api_support::start(6, |c| {
        c.api.rate_per_second = 100_000.0;
        // A small per-address budget of failed logins, so the test reaches it quickly.
        c.api.auth_failure_burst = 8.0;
        c.api.auth_failures_per_second = 0.1;
    })
    .await;
    let people = api.people().await;
    let secret = |name: &str| people.iter().find(|p| p.0 == name).unwrap().2.clone();
    api.set_password("admin", PASSWORD).await;
    let site = api
        .central
        .tables()
        .sites()
        .list(None, None, 1)
        .await
        .unwrap()
        .items[0]
        .record
        .id
        .to_string();

    // Not logged in: every page sends to the login form.
    let mut anon = browser(&api);
    let page = anon.get("/fleet").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );

    // Session fixation: a session cookie planted before login is not the one after it, and
    // it opens nothing.
    let mut admin = browser(&api);
    admin
        .cookies
        .insert("__Host-meridian-session".into(), "planted".into());
    let page = admin.login_password("admin", PASSWORD).await;
    let session = admin.cookies["__Host-meridian-session"].clone();
    assert_ne!(session, "planted");
    let cookie = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-meridian-session="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    let mut planted = browser(&api);
    planted
        .cookies
        .insert("__Host-meridian-session".into(), "planted".into());
    assert_eq!(planted.get("/fleet").await.status, 303);

    // Every page renders for the provider admin.
    for path in [
        "/fleet",
        &format!("/sites/{site}"),
        "/tenants",
        &format!("/tenants/{ACME}"),
        "/workloads",
        "/reservations",
        "/what-if",
        "/audit",
        "/utilisation",
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains("<title>"), "{path} has a title");
    }

    let page = admin.get(&format!("/utilisation?site={site}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("Allocated and busy utilisation of site {site}")),
        "{}",
        page.body
    );
    assert_eq!(admin.get("/utilisation?site=nowhere").await.status, 404);

    // The cost calculator: the worked example of docs/economics.md by default; a bad input is
    // named.
    let page = admin.get("/cost").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("10977.24"), "yearly cost: {}", page.body);
    assert!(
        page.body.contains("0.1656"),
        "cost per million at 70 %: {}",
        page.body
    );
    assert!(page.body.contains("23.2 %"), "break-even: {}", page.body);
    assert!(page.body.contains("over-provisioned"), "{}", page.body);
    let page = admin.get("/cost?capex=lots&pue=0.5").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("capex: must be a number"),
        "{}",
        page.body
    );

    // CSRF: no token, a wrong token -> 403 and no bootstrap token created.
    let before = api.bootstrap_tokens(&site).await;
    let path = format!("/sites/{site}/bootstrap-tokens");
    let page = admin.post(&path, form(&[("ttl_hours", "24")])).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let page = admin
        .post(&path, form(&[("csrf", "0000"), ("ttl_hours", "24")]))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(api.bootstrap_tokens(&site).await, before);

    // Bad input names its field; nothing stored.
    let csrf = admin.csrf().await;
    let page = admin
        .post(&path, form(&[("csrf", &csrf), ("ttl_hours", "soon")]))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("ttl_hours"), "{}", page.body);
    assert_eq!(api.bootstrap_tokens(&site).await, before);
    let page = admin
        .post(
            &format!("/sites/{site}/server-actions"),
            form(&[("csrf", &csrf), ("server", "x"), ("op", "explode")]),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("op"), "{}", page.body);
    let page = admin
        .post(
            &format!("/sites/{site}/server-actions"),
            form(&[
                ("csrf", &csrf),
                ("server", "NOT A SERVER"),
                ("op", "reboot"),
            ]),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("server"), "{}", page.body);
    let page = admin.get("/reservations?site=NOT%20A%20SITE").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("site"), "{}", page.body);
    let page = admin
        .post(
            "/what-if",
            form(&[
                ("csrf", &csrf),
                ("tenant", ACME),
                (
                    "spec",
                    "name: x\nkind: inference_endpoint\nreplicas: lots\n",
                ),
            ]),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("replicas"), "{}", page.body);

    // With the right token the form works and shows the bootstrap file once.
    let page = admin
        .post(&path, form(&[("csrf", &csrf), ("ttl_hours", "24")]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"bootstrap-file\""), "{}", page.body);
    assert_eq!(api.bootstrap_tokens(&site).await, before + 1);

    // A viewer sees the fleet but no form that changes anything, and a forged POST with its
    // own valid CSRF token is refused by the role table.
    let mut viewer = browser(&api);
    viewer.login_token(&secret("auditor")).await;
    let page = viewer.get(&format!("/sites/{site}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let posts = page.body.matches("method=\"post\"").count();
    assert_eq!(posts, 1, "only the logout form: {}", page.body);
    let csrf = csrf_of(&page.body);
    let page = viewer
        .post(&path, form(&[("csrf", &csrf), ("ttl_hours", "24")]))
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(api.bootstrap_tokens(&site).await, before + 1);

    // A tenant's admin: another tenant's objects are answered exactly like missing ones.
    let mut acme = browser(&api);
    acme.login_token(&secret("acme-admin")).await;
    assert_eq!(acme.get(&format!("/tenants/{ACME}")).await.status, 200);
    let other = acme.get(&format!("/tenants/{GLOBEX}")).await;
    let missing = acme.get("/tenants/nobody").await;
    assert_eq!((other.status, missing.status), (404, 404));
    assert_eq!(
        other.body.replace(GLOBEX, "X"),
        missing.body.replace("nobody", "X")
    );
    let fleet = acme.get("/fleet").await;
    assert_eq!(fleet.status, 403, "a tenant sees no fleet: {}", fleet.body);

    // Logout ends the session on the server: the old cookie no longer works.
    let csrf = admin.csrf().await;
    let page = admin.post("/logout", form(&[("csrf", &csrf)])).await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );
    let mut replay = browser(&api);
    replay
        .cookies
        .insert("__Host-meridian-session".into(), session);
    let page = replay.get("/fleet").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );

    // A new password ends the sessions opened with the old one.
    let mut again = browser(&api);
    again.login_password("admin", PASSWORD).await;
    assert_eq!(again.get("/fleet").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    api.set_password("admin", PASSWORD).await;
    let page = again.get("/fleet").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );

    // Brute force: wrong passwords for one user are refused, then even the right one is
    // refused for a while (rate limited), with nothing revealed about which part was wrong.
    let mut attacker = browser(&api);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let page = attacker.get("/login").await;
        let csrf = csrf_of(&page.body);
        let page = attacker
            .post(
                "/login",
                form(&[
                    ("csrf", &csrf),
                    ("user", "admin"),
                    ("password", "wrong password!!"),
                ]),
            )
            .await;
        statuses.push(page.status);
    }
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "repeated failures are rate-limited: {statuses:?}"
    );
    let page = attacker.get("/login").await;
    let csrf = csrf_of(&page.body);
    let page = attacker
        .post(
            "/login",
            form(&[("csrf", &csrf), ("user", "admin"), ("password", PASSWORD)]),
        )
        .await;
    assert_eq!(page.status, 429, "{}", page.body);

    // The per-address budget: failures for many different users from one address are
    // refused past it, before any password is checked.
    let mut sprayer = browser(&api);
    let mut statuses = Vec::new();
    for i in 0..12 {
        let page = sprayer.get("/login").await;
        let csrf = csrf_of(&page.body);
        let user = format!("nobody-{i}");
        let page = sprayer
            .post(
                "/login",
                form(&[
                    ("csrf", &csrf),
                    ("user", &user),
                    ("password", "wrong password!!"),
                ]),
            )
            .await;
        statuses.push(page.status);
    }
    // Each user failed at most once (far below the per-user budget of 5), so the 429s are
    // the address's budget (8, partly spent by the attempts above) running out.
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let page = sprayer.get("/login").await;
    let csrf = csrf_of(&page.body);
    let page = sprayer
        .post(
            "/login",
            form(&[("csrf", &csrf), ("user", ""), ("password", "x")]),
        )
        .await;
    assert!(
        page.body.contains("user"),
        "an empty user is named: {}",
        page.body
    );

    // A login form without its cookie's CSRF token is refused.
    let mut bare = browser(&api);
    let page = bare
        .post("/login", form(&[("csrf", "x"), ("token", &api.admin)]))
        .await;
    assert_eq!(page.status, 403);
    api.central.shutdown().await;
}

//! The operator console end to end in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver, `fantoccini`) against a real central with a generated fleet and one
//! site whose real agent talks to central through the fault proxy.
//!
//! One Chromium session for every step (CI time): log in with a password through the form; the
//! fleet map has a point per site; a bootstrap token created from the site page shows its file;
//! the map follows a WAN cut and its heal live (server-sent events, no reload); what-if explains
//! a valid spec and names the field of a bad one; every other page renders; axe-core finds no
//! serious or critical accessibility violation on any page visited; a provider viewer logged in
//! with an API token sees no form that changes anything and a forged POST is refused (403) with
//! nothing created. Each step leaves a PNG screenshot in `target/console-screenshots/`.
//!
//! Needs `chromium`, `chromium-driver` (Debian) and `sim/tests/browser/node_modules/axe-core`
//! (`npm ci --prefix sim/tests/browser`); scripts/test.sh installs all three.

mod api_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use meridian_agent::Agent;
use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::server::Central;
use meridian_common::model::SiteState;
use meridian_emulators::proxy::FaultProxy;
use meridian_sim::fleet::{self, FleetSpec};
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::observe::site_state;
use meridian_testkit::wait::{LIMIT, wait_for};
use meridian_testkit::{agents, enrol};
use serde_json::{Value as Json, json};

/// The admin's console password (at least 12 characters).
const PASSWORD: &str = "correct horse battery staple";
/// The site with a real agent behind the fault proxy.
const SITE: &str = "browser-edge-1";
/// How long any one thing may take to show in the browser.
const SHOW: Duration = Duration::from_secs(30);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver started by this test, and the browser it started: ended on drop (also when the
/// test panics), by process ID.
struct Chromedriver {
    child: Child,
    port: u16,
    /// Chromium's profile (`--user-data-dir`), fresh for this run.
    profile: tempfile::TempDir,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (scripts/test.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Chromedriver {
            child,
            port,
            profile: tempfile::tempdir().expect("a temporary profile directory"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < SHOW,
                "chromedriver did not listen on port {port} within {SHOW:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Chromium's capabilities: headless, quiet, a fresh profile, central's private CA accepted.
    fn capabilities(&self) -> fantoccini::wd::Capabilities {
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-quic".to_owned(),
            format!("--user-data-dir={}", self.profile.path().display()),
            "--window-size=1400,1000".to_owned(),
        ];
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        match caps {
            Json::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }
}

/// The processes below `root` (children, their children, ...), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver: end the browser processes it started too.
        let browser = descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in browser {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One page's serious and critical axe-core violations.
struct Axe {
    page: &'static str,
    serious: usize,
    critical: usize,
    /// Rule IDs with their impact and where, for the report.
    details: Vec<String>,
}

/// The browser session shared by every step.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    axe_source: String,
    axe: Vec<Axe>,
}

impl Browser {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn goto(&self, path: &str) {
        self.client.goto(&self.url(path)).await.expect(path);
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(SHOW)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("{css} on {}: {e}", self.path().await),
        }
    }

    async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    async fn js(&self, script: &str, args: Vec<Json>) -> Json {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(name), png).expect("the screenshot folder is writable");
    }

    /// Waits for `#main h1` to read `title` (the page has loaded).
    async fn title_is(&self, title: &str) {
        let xpath = format!("//main/h1[normalize-space()='{title}']");
        if let Err(e) = self
            .client
            .wait()
            .at_most(SHOW)
            .for_element(Locator::XPath(&xpath))
            .await
        {
            let source = self.client.source().await.unwrap_or_default();
            panic!(
                "no page titled {title:?} at {}: {e}\n{source}",
                self.path().await
            );
        }
    }

    /// Checks that axe-core, injected into the current page, finds a violation planted there
    /// (an image without a text alternative): the checks that find none are real.
    async fn axe_control(&self) {
        self.js(
            &format!("{}\n;return typeof window.axe;", self.axe_source),
            vec![],
        )
        .await;
        let found = self
            .client
            .execute_async(
                r##"const done = arguments[arguments.length - 1];
                const planted = document.createElement("div");
                planted.id = "axe-control";
                planted.innerHTML = '<img src="data:,">';
                document.body.appendChild(planted);
                axe.run("#axe-control", { runOnly: ["image-alt"] })
                  .then(r => { planted.remove(); done(r.violations.map(v => v.id + ":" + v.impact)); })
                  .catch(e => done(String(e)));"##,
                vec![],
            )
            .await
            .expect("axe.run answers");
        assert_eq!(
            found,
            json!(["image-alt:critical"]),
            "axe-core finds a planted violation"
        );
    }

    /// Asserts that the current page has no form or button that changes anything: only the
    /// logout form posts, and every other button belongs to a GET form (filters).
    async fn changes_nothing(&self) {
        let forms = self
            .js(
                r#"const posts = [...document.forms].filter(f => f.method === "post")
                    .map(f => new URL(f.action).pathname);
                const buttons = [...document.querySelectorAll("button, input[type=submit]")]
                    .filter(e => !e.closest("form.logout") && !(e.form && e.form.method === "get"))
                    .map(e => e.outerHTML);
                return { posts, buttons };"#,
                vec![],
            )
            .await;
        let page = self.path().await;
        assert_eq!(
            forms["posts"],
            json!(["/logout"]),
            "{page}: only the logout form posts"
        );
        assert_eq!(
            forms["buttons"],
            json!([]),
            "{page}: no button that changes anything"
        );
    }

    /// Runs axe-core on the current page; records its serious and critical violations.
    async fn check_a11y(&mut self, page: &'static str) {
        let loaded = self
            .js(
                &format!("{}\n;return typeof window.axe;", self.axe_source),
                vec![],
            )
            .await;
        assert_eq!(loaded, json!("object"), "axe-core loads on {page}");
        let result = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] })
                  .then(r => done({ passed: r.passes.length, violations: r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
                    targets: v.nodes.slice(0, 3).map(n => n.target.join(" ")) })) }))
                  .catch(e => done({ error: String(e) }));"#,
                vec![],
            )
            .await
            .expect("axe.run answers");
        let Some(violations) = result["violations"].as_array() else {
            panic!("axe.run failed on {page}: {result}");
        };
        let passed = result["passed"].as_u64().unwrap_or(0);
        assert!(passed > 0, "axe-core checked nothing on {page}");
        let mut axe = Axe {
            page,
            serious: 0,
            critical: 0,
            details: Vec::new(),
        };
        let mut minor = Vec::new();
        for v in violations {
            let impact = v["impact"].as_str().unwrap_or("");
            let line = format!(
                "{} ({impact}, {} nodes: {}): {}",
                v["id"].as_str().unwrap_or("?"),
                v["nodes"],
                v["targets"],
                v["help"].as_str().unwrap_or("")
            );
            match impact {
                "serious" => axe.serious += 1,
                "critical" => axe.critical += 1,
                _ => {
                    minor.push(line);
                    continue;
                }
            }
            axe.details.push(line);
        }
        println!(
            "axe {page}: {} serious, {} critical ({} violations in all, {passed} rules passed){}",
            axe.serious,
            axe.critical,
            violations.len(),
            axe.details
                .iter()
                .chain(&minor)
                .map(|l| format!("\n    {l}"))
                .collect::<String>()
        );
        self.axe.push(axe);
    }
}

/// Milliseconds since the Unix epoch (the browser's `Date.now()` clock).
fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// When central's sites table was seen to change.
struct Recorded {
    /// `epoch_ms` of the last poll that did not see the change and of the one that did.
    before: i64,
    after: i64,
    at: Instant,
}

/// Polls central's sites table every millisecond until `SITE` is in `state`.
async fn table_change(central: &Central, state: SiteState) -> Recorded {
    let start = Instant::now();
    loop {
        let before = epoch_ms();
        if site_state(central, SITE).await == state {
            return Recorded {
                before,
                after: epoch_ms(),
                at: Instant::now(),
            };
        }
        assert!(start.elapsed() < LIMIT, "{SITE} never became {state:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prints how long after central recorded `SITE`'s change (between two polls of the table) the
/// page showed it (`shown`, the page's clock).
fn latency(state: &str, since: Instant, recorded: &Recorded, shown: i64) {
    println!(
        "live update: {SITE} {state} in central's table {:?} after the proxy's change; \
         on screen {}..{} ms after central recorded it",
        recorded.at - since,
        shown - recorded.after,
        shown - recorded.before,
    );
}

/// Waits (without reloading) until `SITE`'s point is in the map's `state` group; returns when the
/// page moved it (`Date.now()` in the page, from the observer `watch_point` installed).
async fn on_screen(b: &Browser, state: &str) -> i64 {
    let start = Instant::now();
    loop {
        let seen = b
            .js(
                r#"const [site, state] = arguments;
                const point = document.querySelector(
                  'g[data-state="' + state + '"] > circle#m-' + CSS.escape(site));
                const moves = (window.__moves || []).filter(m => m.state === state);
                return { marker: window.__marker === 1, here: point !== null,
                  at: moves.length ? moves[moves.length - 1].at : null };"#,
                vec![json!(SITE), json!(state)],
            )
            .await;
        assert_eq!(seen["marker"], json!(true), "the fleet page was reloaded");
        if seen["here"] == json!(true) {
            return seen["at"]
                .as_i64()
                .expect("the page's observer saw the point move");
        }
        assert!(
            start.elapsed() < SHOW,
            "{SITE} not shown {state} within {SHOW:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let started = Instant::now();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shots = shots.canonicalize().unwrap();
    println!("screenshots: {}", shots.display());
    let axe_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    let axe_source = std::fs::read_to_string(&axe_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `npm ci --prefix sim/tests/browser` (scripts/test.sh does)",
            axe_path.display()
        )
    });
    // Chromium starts while central does; the guard ends both on any exit.
    let driver = Chromedriver::start();
    let session = {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(driver.capabilities());
        let url = driver.url();
        tokio::spawn(async move { builder.connect(&url).await })
    };

    // Central with a generated fleet, the admin's token and password, two tenants and a user of
    // every role.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("central");
    let mut cfg = test_central::config(&data, "127.0.0.1:0".parse().unwrap(), Liveness::Quick);
    cfg.api.listen = "127.0.0.1:0".parse().unwrap();
    cfg.console.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = "127.0.0.1:0".parse().unwrap();
    cfg.api.rate_per_second = 100_000.0;
    let central = Central::open(cfg).await.unwrap();
    let generated = fleet::generate(&FleetSpec::with_sites(42, 20));
    let admin = fleet::load_with_admin(&central, &generated).await.unwrap();
    // A generated site with servers (the enrolled one has none).
    let busy = generated.servers[0].site.to_string();
    let api = api_support::TestApi {
        endpoint: format!("https://{}", central.api().local_addr()),
        ca: data.join("ca").join("ca.crt"),
        central,
        dir,
        admin,
    };
    let people = api.people().await;
    let secret = |name: &str| people.iter().find(|p| p.0 == name).unwrap().2.clone();
    api.set_password("admin", PASSWORD).await;
    let mut acme = api.clients(&secret("acme-dev")).await;
    let workload = api_support::create(&mut acme, "chat-1").await;

    // One site with a real agent through the fault proxy.
    let central = &api.central;
    let proxy = FaultProxy::new(central.channel().local_addr(), 7);
    enrol::add_site(central, SITE).await.unwrap();
    let port = proxy.add_site(SITE).await.unwrap();
    let boot = enrol::write_bootstrap(central, SITE, vec![port.to_string()], api.dir.path())
        .await
        .unwrap();
    let agent = Agent::start(
        agents::config(&api.dir.path().join("agent"), &boot, 300),
        Arc::new(RecordingReconciler::default()),
    )
    .await
    .unwrap();
    wait_for(&format!("{SITE} online"), LIMIT, || async {
        site_state(central, SITE).await == SiteState::Online
    })
    .await;
    let sites = central
        .tables()
        .sites()
        .list(None, None, 10_000)
        .await
        .unwrap()
        .items
        .len();
    println!(
        "setup: central, {sites} sites, agent online in {:?}",
        started.elapsed()
    );

    let client = session.await.unwrap().expect("a Chromium session");
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(SHOW),
            Some(SHOW),
            Some(Duration::ZERO),
        ))
        .await
        .unwrap();
    let console = central.console().expect("the console is on").local_addr();
    let mut b = Browser {
        client,
        base: format!("https://{console}"),
        shots,
        axe_source,
        axe: Vec::new(),
    };
    println!("browser ready at {:?}", started.elapsed());

    // 1. Log in with the admin's password through the form.
    b.goto("/login").await;
    b.title_is("Log in").await;
    b.axe_control().await;
    b.check_a11y("login").await;
    b.shot("01-login.png").await;
    b.find("#user").await.send_keys("admin").await.unwrap();
    b.find("#password").await.send_keys(PASSWORD).await.unwrap();
    b.find("#login-password").await.click().await.unwrap();

    // 2. The fleet map has a point per site.
    b.title_is("Fleet").await;
    assert_eq!(b.path().await, "/fleet");
    let circles = b
        .client
        .find_all(Locator::Css("#fleet-map circle"))
        .await
        .unwrap()
        .len();
    assert_eq!(circles, sites, "one point per site");
    b.find(&format!(r#"g[data-state="online"] > circle#m-{SITE}"#))
        .await;
    b.check_a11y("fleet").await;
    b.shot("02-fleet.png").await;

    // 3. A site with servers has every action for the admin; the enrolled site: create a
    // bootstrap token; its file is shown.
    b.goto(&format!("/sites/{busy}")).await;
    b.title_is(&format!("Site {busy}")).await;
    for action in ["#request-action", "#create-token", "#revoke-site"] {
        b.find(action).await;
    }
    b.check_a11y("site+srv").await;
    b.shot("03a-site-servers.png").await;
    b.goto(&format!("/sites/{SITE}")).await;
    b.title_is(&format!("Site {SITE}")).await;
    let tokens = api.bootstrap_tokens(SITE).await;
    b.find("#create-token").await.click().await.unwrap();
    let file = b.find("#bootstrap-file").await.text().await.unwrap();
    assert!(
        file.contains(SITE),
        "the bootstrap file names the site: {file}"
    );
    assert_eq!(api.bootstrap_tokens(SITE).await, tokens + 1);
    b.check_a11y("site").await;
    b.shot("03-site.png").await;

    // 4. Live updates: the map follows a WAN cut and its heal without a reload.
    b.goto("/fleet").await;
    b.title_is("Fleet").await;
    b.client
        .wait()
        .at_most(SHOW)
        .for_element(Locator::XPath("//*[@id='live-status' and text()='Live']"))
        .await
        .expect("the live-update stream opens");
    let initial = b
        .js(
            r#"const id = "m-" + arguments[0];
            window.__marker = 1;
            window.__moves = [];
            const state = () => {
              const p = document.getElementById(id);
              return p && p.parentNode ? p.parentNode.getAttribute("data-state") : null;
            };
            let last = state();
            new MutationObserver(() => {
              const now = state();
              if (now !== last) { last = now; window.__moves.push({ state: now, at: Date.now() }); }
            }).observe(document.getElementById("fleet-map"), { childList: true, subtree: true });
            return last;"#,
            vec![json!(SITE)],
        )
        .await;
    assert_eq!(initial, json!("online"));
    let cut = Instant::now();
    proxy.cut_site(SITE, Duration::from_secs(3600));
    let recorded = table_change(central, SiteState::Disconnected).await;
    let shown = on_screen(&b, "disconnected").await;
    latency("disconnected", cut, &recorded, shown);
    let count = b
        .find(r#"[data-count-state="disconnected"]"#)
        .await
        .text()
        .await
        .unwrap();
    let in_group = b
        .client
        .find_all(Locator::Css(r#"g[data-state="disconnected"] > circle"#))
        .await
        .unwrap()
        .len();
    assert_eq!(count, in_group.to_string(), "the count follows the map");
    b.shot("03b-fleet-disconnected.png").await;
    let heal = Instant::now();
    proxy.heal_site(SITE);
    let recorded = table_change(central, SiteState::Online).await;
    let shown = on_screen(&b, "online").await;
    latency("online", heal, &recorded, shown);
    b.shot("03c-fleet-online.png").await;

    // 5. What-if: a valid spec is explained, a bad one names its field.
    b.goto("/what-if").await;
    b.title_is("What-if").await;
    let spec = "name: chat-eu\nkind: inference_endpoint\nreplicas: 1\npriority: 10\n\
                resources:\n  accelerator: { whole_gpus: { model: H100-80GB, count: 1 } }\n  \
                cpu_cores: 4\n  memory_mib: 16384\nconstraints: {}\n";
    let tenant = b.find("#wi-tenant").await;
    tenant.clear().await.unwrap();
    tenant.send_keys(api_support::ACME).await.unwrap();
    let area = b.find("#wi-spec").await;
    area.clear().await.unwrap();
    area.send_keys(spec).await.unwrap();
    b.find("#dry-run").await.click().await.unwrap();
    let explanation = b.find("#explanation").await.text().await.unwrap();
    assert!(!explanation.trim().is_empty(), "an explanation");
    b.check_a11y("what-if").await;
    b.shot("07-what-if.png").await;
    let area = b.find("#wi-spec").await;
    area.clear().await.unwrap();
    area.send_keys(&spec.replace("replicas: 1", "replicas: lots"))
        .await
        .unwrap();
    b.find("#dry-run").await.click().await.unwrap();
    let error = b.find("#what-if-error").await.text().await.unwrap();
    assert!(
        error.contains("replicas"),
        "the error names the field: {error}"
    );
    b.check_a11y("what-if (error)").await;
    b.shot("07b-what-if-error.png").await;

    // 6. Every other page.
    let pages: [(&str, String, String, &str); 11] = [
        (
            "tenants",
            "/tenants".into(),
            "Tenants".into(),
            "04-tenants.png",
        ),
        (
            "tenant",
            format!("/tenants/{}", api_support::ACME),
            format!("Tenant {}", api_support::ACME),
            "05-tenant.png",
        ),
        (
            "workloads",
            "/workloads".into(),
            "Workloads".into(),
            "06-workloads.png",
        ),
        (
            "workload",
            format!("/workloads/{workload}"),
            format!("Workload {workload}"),
            "06b-workload.png",
        ),
        (
            "reservations",
            "/reservations".into(),
            "Reservations".into(),
            "08-reservations.png",
        ),
        ("audit", "/audit".into(), "Audit".into(), "09-audit.png"),
        (
            "utilisation",
            "/utilisation".into(),
            "Utilisation".into(),
            "10-utilisation.png",
        ),
        (
            "utilisation site",
            format!("/utilisation?site={busy}"),
            "Utilisation".into(),
            "10b-utilisation-site.png",
        ),
        (
            "cost",
            "/cost".into(),
            "Cost per million tokens".into(),
            "13-cost.png",
        ),
        ("usage", "/usage".into(), "Usage".into(), "14-usage.png"),
        (
            "usage by site",
            "/usage?by=site&hours=48".into(),
            "Usage".into(),
            "14b-usage-by-site.png",
        ),
    ];
    metered_spans(&api, &workload, &busy).await;
    busy_summaries(&api, &busy).await;
    for (name, path, title, shot) in &pages {
        b.goto(path).await;
        b.title_is(title).await;
        b.check_a11y(name).await;
        b.shot(shot).await;
    }

    // 8. A provider viewer, logged in with an API token, can change nothing.
    b.find("form.logout button").await.click().await.unwrap();
    b.title_is("Log in").await;
    b.find("#token")
        .await
        .send_keys(&secret("auditor"))
        .await
        .unwrap();
    b.find("#login-token").await.click().await.unwrap();
    b.find("form.logout").await;
    b.goto(&format!("/sites/{busy}")).await;
    b.title_is(&format!("Site {busy}")).await;
    b.changes_nothing().await;
    b.check_a11y("viewer site+srv").await;
    b.shot("11b-viewer-site-servers.png").await;
    b.goto(&format!("/sites/{SITE}")).await;
    b.title_is(&format!("Site {SITE}")).await;
    b.changes_nothing().await;
    b.check_a11y("viewer site").await;
    b.shot("11-viewer-site.png").await;
    let tokens = api.bootstrap_tokens(SITE).await;
    b.js(
        r#"const form = document.createElement("form");
        form.method = "post";
        form.action = "/sites/" + arguments[0] + "/bootstrap-tokens";
        const csrf = document.querySelector("form.logout input[name=csrf]").value;
        for (const [name, value] of [["csrf", csrf], ["ttl_hours", "24"]]) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value;
          form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();"#,
        vec![json!(SITE)],
    )
    .await;
    b.title_is("Forbidden").await;
    let message = b.find("main .error").await.text().await.unwrap();
    assert!(
        !message.contains("CSRF"),
        "refused by role, not by CSRF: {message}"
    );
    assert_eq!(
        api.bootstrap_tokens(SITE).await,
        tokens,
        "no token was created"
    );
    b.check_a11y("forbidden").await;
    b.shot("12-viewer-forbidden.png").await;

    // 7. No serious or critical accessibility violation on any page.
    println!("axe-core, serious/critical violations per page:");
    for a in &b.axe {
        println!(
            "  {:<16} {} serious, {} critical",
            a.page, a.serious, a.critical
        );
    }
    let failing: Vec<String> = b
        .axe
        .iter()
        .filter(|a| a.serious + a.critical > 0)
        .map(|a| format!("{}: {}", a.page, a.details.join("; ")))
        .collect();
    assert!(
        failing.is_empty(),
        "accessibility violations:\n{}",
        failing.join("\n")
    );

    b.client.close().await.unwrap();
    drop(driver);
    agent.shutdown().await;
    proxy.shutdown().await;
    let api_support::TestApi { central, dir, .. } = api;
    central.shutdown().await;
    drop(dir);
    println!("done in {:?}", started.elapsed());
}

/// Two metered spans of acme's workload at `site` (a closed one and one still running), as
/// ingest records them from the site's reports, so the usage page has something to chart.
async fn metered_spans(api: &api_support::TestApi, workload: &str, site: &str) {
    use meridian_proto::v1 as proto;
    let now = meridian_central::clock::now().as_millis();
    let hour = 3_600_000;
    for (start, end, gpus) in [
        (now - 5 * hour, now - 2 * hour, 2.0),
        (now - 3 * hour, 0, 1.0),
    ] {
        let record = proto::UsageIntervalRecord {
            site: site.into(),
            tenant: api_support::ACME.into(),
            workload: workload.into(),
            subject: format!("alloc/{workload}/srv-{start}"),
            start_ms: start,
            end_ms: end,
            quantities: vec![proto::UsageQuantity {
                resource: proto::UsageResource::Gpu as i32,
                detail: "H100-80GB".into(),
                amount: gpus,
            }],
        };
        api.central
            .tables()
            .usage_intervals()
            .upsert(&record)
            .await
            .unwrap();
    }
}

/// The GPU utilisation summaries `site`'s agent would have reported over the last six hours
/// (its GPUs 35 % busy), stored as ingest stores them, so the utilisation page charts busy
/// beside allocated utilisation.
async fn busy_summaries(api: &api_support::TestApi, site: &str) {
    use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
    use meridian_common::model::{GpuUtilisation, MetricsPeriod, ReportBody, SiteReport};
    let site = SiteId::parse(site).unwrap();
    let tables = api.central.tables();
    let servers = tables.servers().list_all(Some(&site), 100).await.unwrap();
    let now = meridian_central::clock::now().as_millis();
    let hours = 6;
    let report = SiteReport {
        site: site.clone(),
        sequence: Sequence::new(1),
        generation: Generation::new(1),
        at: Timestamp::from_millis(now),
        body: ReportBody::Metrics {
            gpu_utilisation_pct: 35.0,
            power_watts: 0.0,
            period: Some(MetricsPeriod {
                start: Timestamp::from_millis(now - hours * 3_600_000),
                length_ms: hours as u64 * 3_600_000,
                gpus: servers
                    .iter()
                    .flat_map(|s| s.gpus.iter().map(move |g| (s.id.clone(), g.index)))
                    .map(|(server, gpu)| GpuUtilisation {
                        server,
                        gpu,
                        mig_slot: None,
                        samples: 720,
                        busy_samples: 720,
                        busy_pct: 35.0,
                        memory_busy_pct: 12.0,
                        memory_used_pct: 60.0,
                    })
                    .collect(),
            }),
        },
    };
    let ops = meridian_central::channel::utilisation::ops(&tables, &site, [report].iter())
        .await
        .unwrap();
    let mut txn = meridian_store::Txn::new();
    for op in ops {
        txn = txn.then(op);
    }
    assert!(tables.store().txn(txn).await.unwrap().succeeded);
}

//! An HTTPS client for the console tests: cookies kept per client, forms posted urlencoded,
//! central's CA as the only trust anchor.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use meridian_drivers::http_client::{HttpEndpoint, TlsTrust};

/// One browser-like client of the console.
pub struct Browser {
    endpoint: HttpEndpoint,
    pub cookies: BTreeMap<String, String>,
}

/// An answer: status, headers, body text.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub set_cookies: Vec<String>,
}

fn ca_der(path: &Path) -> rustls_pki_types::CertificateDer<'static> {
    let pem = std::fs::read_to_string(path).unwrap();
    meridian_central::ca::pem_to_der(&pem).expect("central's CA is PEM")
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k,
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `<input ... name="csrf" value="...">` in a page.
pub fn csrf_of(body: &str) -> String {
    let at = body
        .find(r#"name="csrf" value=""#)
        .expect("the page has a CSRF field");
    let rest = &body[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

impl Browser {
    /// A client of the console at `addr` trusting central's CA at `ca`.
    pub fn new(addr: SocketAddr, ca: &Path) -> Browser {
        let endpoint = HttpEndpoint::new(
            &format!("https://{addr}"),
            Some(&TlsTrust::Roots(vec![ca_der(ca)])),
        )
        .unwrap();
        Browser {
            endpoint,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Page {
        let resp: Response<Bytes> =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.endpoint.send(req))
                .await
                .expect("the console answers within 30 s")
                .unwrap();
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get(hyper::header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            body: String::from_utf8_lossy(resp.body()).into_owned(),
            set_cookies,
        }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Page {
        let req = Request::get(path)
            .header(hyper::header::COOKIE, self.cookie_header())
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    /// `POST path` with a urlencoded form.
    pub async fn post(&mut self, path: &str, body: String) -> Page {
        let req = Request::post(path)
            .header(hyper::header::COOKIE, self.cookie_header())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(req).await
    }

    /// Logs in with a password; panics unless it succeeds.
    pub async fn login_password(&mut self, user: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        let csrf = csrf_of(&page.body);
        let page = self
            .post(
                "/login",
                form(&[("csrf", &csrf), ("user", user), ("password", password)]),
            )
            .await;
        assert_eq!(page.status, 303, "login of {user}: {}", page.body);
        page
    }

    /// Logs in with an API token; panics unless it succeeds.
    pub async fn login_token(&mut self, token: &str) -> Page {
        let page = self.get("/login").await;
        let csrf = csrf_of(&page.body);
        let page = self
            .post("/login", form(&[("csrf", &csrf), ("token", token)]))
            .await;
        assert_eq!(page.status, 303, "token login: {}", page.body);
        page
    }

    /// The session's CSRF token (from a page that has a form).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/tenants").await;
        assert_eq!(page.status, 200, "{}", page.body);
        csrf_of(&page.body)
    }
}

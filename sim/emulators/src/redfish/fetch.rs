//! Fetching an image over plain HTTP, as a BMC does for virtual media and `SimpleUpdate`:
//! [`open`] connects and reads the status line and headers (so an unreachable or missing image
//! is known at once), [`Opened::drain`] reads the body to its end in the background.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri, header};
use hyper_util::rt::TokioIo;

/// Why an image could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported image URL {0:?}: only http:// is supported")]
    BadUrl(String),
    /// No connection within the time limit, or refused.
    #[error("cannot connect to {0}")]
    Connect(String, #[source] std::io::Error),
    /// The connection timed out.
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// HTTP failed.
    #[error("HTTP failure fetching {0}")]
    Http(String, #[source] hyper::Error),
    /// The server answered with an error status.
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
}

/// A response whose body is still to be read.
#[derive(Debug)]
pub(crate) struct Opened {
    url: String,
    response: Response<Incoming>,
}

/// Connects to `url` and reads the response head. A 2xx status is required.
pub(crate) async fn open(url: &str, limit: Duration) -> Result<Opened, FetchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::BadUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::BadUrl(url.to_owned()));
    }
    let host = uri
        .host()
        .ok_or_else(|| FetchError::BadUrl(url.to_owned()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = format!("{host}:{port}");
    let work = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| FetchError::Connect(authority.clone(), e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Http(url.to_owned(), e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let req = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, "meridian-bmc-emulator")
            .body(Empty::<Bytes>::new())
            .map_err(|_| FetchError::BadUrl(url.to_owned()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| FetchError::Http(url.to_owned(), e))
    };
    let response = tokio::time::timeout(limit, work)
        .await
        .map_err(|_| FetchError::Timeout(url.to_owned()))??;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    Ok(Opened {
        url: url.to_owned(),
        response,
    })
}

impl Opened {
    /// Reads the body to its end; returns its length.
    pub(crate) async fn drain(self) -> Result<u64, FetchError> {
        let mut body = self.response.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Http(self.url.clone(), e))?;
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
            }
        }
        Ok(total)
    }
}

//! Counting the gRPC API's calls by method and status code: a tower layer around every service
//! of the API server.
//!
//! The status of a call is its `grpc-status`: in the response headers when the call failed
//! before answering (a "trailers-only" response), else in the trailers at the end of the
//! body, which the layer reads as they pass. A call whose body is dropped before its trailers
//! (the client went away) counts as `CANCELLED`.
//!
//! Method labels are bounded: the API's own RPCs ([`Rpc::ALL`]), the health check and
//! reflection keep their path; any other path (a scanner, a client of a newer API) is
//! `other`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::codegen::http;

use super::families::ApiLabels;
use crate::services::access::Rpc;

/// The label of any method outside the known set.
pub const OTHER_METHOD: &str = "other";

/// Paths served besides the API's RPCs.
const EXTRA_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method path that keeps its own label.
fn known_methods() -> &'static HashSet<&'static str> {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        Rpc::ALL
            .iter()
            .map(|rpc| &*Box::leak(format!("/meridian.v1.{}", rpc.name()).into_boxed_str()))
            .chain(EXTRA_METHODS)
            .collect()
    })
}

/// The `method` label of a request path: the path when it is a known method, else
/// [`OTHER_METHOD`].
pub fn method_label(path: &str) -> &'static str {
    known_methods().get(path).copied().unwrap_or(OTHER_METHOD)
}

/// gRPC's status code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `code` label of a `grpc-status` value; anything unparseable is `UNKNOWN`.
pub fn code_label(value: &[u8]) -> &'static str {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("UNKNOWN")
}

/// The layer; see the module documentation.
#[derive(Debug, Clone)]
pub struct ApiMetricsLayer {
    requests: Family<ApiLabels, Counter>,
}

impl ApiMetricsLayer {
    /// Counts into `requests`.
    pub fn new(requests: Family<ApiLabels, Counter>) -> Self {
        ApiMetricsLayer { requests }
    }
}

impl<S> tower::Layer<S> for ApiMetricsLayer {
    type Service = ApiMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiMetrics {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// The service the layer wraps around the API.
#[derive(Debug, Clone)]
pub struct ApiMetrics<S> {
    inner: S,
    requests: Family<ApiLabels, Counter>,
}

/// A call not yet counted: where it goes once its status is known.
#[derive(Debug)]
struct Pending {
    requests: Family<ApiLabels, Counter>,
    method: &'static str,
}

impl Pending {
    fn count(self, code: &'static str) {
        self.requests
            .get_or_create(&ApiLabels {
                method: self.method,
                code,
            })
            .inc();
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ApiMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let pending = Pending {
            requests: self.requests.clone(),
            method: method_label(request.uri().path()),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(r) => r,
                Err(e) => {
                    // The transport failed the call before it had an answer.
                    pending.count("UNAVAILABLE");
                    return Err(e);
                }
            };
            let (parts, body) = response.into_parts();
            let pending = match parts.headers.get("grpc-status") {
                Some(status) => {
                    pending.count(code_label(status.as_bytes()));
                    None
                }
                None => Some(pending),
            };
            Ok(http::Response::from_parts(
                parts,
                CountedBody {
                    inner: body,
                    pending,
                },
            ))
        })
    }
}

/// A response body that counts its call when its trailers pass (or when it is dropped early).
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.count("CANCELLED");
        }
    }
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(p) = self.pending.take()
                {
                    p.count(
                        trailers
                            .get("grpc-status")
                            .map_or("UNKNOWN", |v| code_label(v.as_bytes())),
                    );
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(p) = self.pending.take() {
                    p.count("INTERNAL");
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: not a gRPC answer (an HTTP-level refusal).
                if let Some(p) = self.pending.take() {
                    p.count("UNKNOWN");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_api_fold_into_other() {
        assert_eq!(
            method_label("/meridian.v1.PlacementService/CreateWorkload"),
            "/meridian.v1.PlacementService/CreateWorkload"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for path in [
            "/meridian.v1.PlacementService/NoSuchCall",
            "/wp-login.php",
            "",
            "/meridian.v1.PlacementService/CreateWorkload/extra",
        ] {
            assert_eq!(method_label(path), OTHER_METHOD, "{path}");
        }
        // The label set is bounded by the API's RPC table, whatever clients send.
        assert_eq!(known_methods().len(), Rpc::ALL.len() + EXTRA_METHODS.len());
    }

    #[test]
    fn status_codes_are_named() {
        assert_eq!(code_label(b"0"), "OK");
        assert_eq!(code_label(b"5"), "NOT_FOUND");
        assert_eq!(code_label(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_label(b"17"), "UNKNOWN");
        assert_eq!(code_label(b"x"), "UNKNOWN");
    }
}

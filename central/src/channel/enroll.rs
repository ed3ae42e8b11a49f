//! Enrolment (`meridian-enroll/1`): the agent opens one bidirectional stream, sends one
//! `EnrollRequest` frame (site, token, CSR) and reads one `EnrollResponse` frame.
//!
//! Central checks the token (known, bound to that site, unrevoked, unused, unexpired), signs
//! the CSR with the site's current certificate epoch, and in one store transaction marks the
//! token used, records the site `Enrolled` and clears any revocation. A refusal answers with
//! an `EnrollErrorCode` and writes an audit record; so does a success.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::channel::close;
use meridian_common::channel::frame;
use meridian_common::ids::{SiteId, Timestamp};
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use prost::Message;

use super::Shared;
use crate::audit::{AuditEntry, Outcome};
use crate::tokens::{TokenError, TokenRefusal, mark_used};
use meridian_store::schema::{self as state, SiteAuth, SiteRecord};
use meridian_store::tables::{Table, TableError};
use meridian_store::{Compare, Op, Txn};

/// Largest enrolment request, bytes.
pub const MAX_ENROLL_REQUEST: usize = 64 * 1024;
/// How long an enrolling client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an enrolment failed on central's side (refusals are answers, not errors).
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrolment stream failed")]
    Stream(#[from] std::io::Error),
    #[error("enrolment request is not a valid frame")]
    Frame(#[from] frame::FrameError),
    #[error("enrolment request does not decode")]
    Decode(#[from] prost::DecodeError),
    #[error("token store failed")]
    Token(#[from] TokenError),
    #[error("store failed")]
    Table(#[from] TableError),
    #[error("client sent no request in time")]
    Timeout,
}

impl From<meridian_store::StoreError> for EnrollError {
    fn from(e: meridian_store::StoreError) -> Self {
        EnrollError::Table(e.into())
    }
}

/// Serves one enrolment connection.
pub async fn serve(shared: Arc<Shared>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    match serve_inner(&shared, &connection).await {
        Ok(()) => {}
        Err(e) => {
            tracing::info!(%remote, error = %meridian_common::telemetry::error_chain(&e), "enrolment failed");
            connection.close(close::PROTOCOL.into(), b"bad enrolment request");
        }
    }
}

async fn serve_inner(shared: &Shared, connection: &quinn::Connection) -> Result<(), EnrollError> {
    let (mut send, mut recv) = tokio::time::timeout(REQUEST_TIMEOUT, connection.accept_bi())
        .await
        .map_err(|_| EnrollError::Timeout)?
        .map_err(std::io::Error::other)?;
    let body = tokio::time::timeout(
        REQUEST_TIMEOUT,
        meridian_channel::read_frame(&mut recv, MAX_ENROLL_REQUEST),
    )
    .await
    .map_err(|_| EnrollError::Timeout)??
    .ok_or(EnrollError::Timeout)?;
    let request = proto::EnrollRequest::decode(body.as_slice())?;
    let response = enroll(shared, &request, shared.clock.now()).await?;
    let bytes = frame::encode_message(&response, shared.config.max_frame_bytes)?;
    send.write_all(&bytes)
        .await
        .map_err(std::io::Error::other)?;
    let _ = send.finish();
    // Let the response reach the agent before the connection goes away.
    let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
    Ok(())
}

fn refusal(code: proto::EnrollErrorCode, message: String) -> proto::EnrollResponse {
    proto::EnrollResponse {
        outcome: Some(proto::enroll_response::Outcome::Error(proto::EnrollError {
            code: code as i32,
            message,
        })),
    }
}

/// Decides one enrolment request at `now` (the transport-free core, also used by tests).
pub async fn enroll(
    shared: &Shared,
    request: &proto::EnrollRequest,
    now: Timestamp,
) -> Result<proto::EnrollResponse, EnrollError> {
    let object = format!("site/{}", request.site.chars().take(64).collect::<String>());
    let deny = |code: proto::EnrollErrorCode, message: String| async move {
        shared
            .audit
            .append(
                AuditEntry {
                    actor: "agent",
                    action: "channel/Enroll",
                    object: &object,
                    outcome: Outcome::Denied,
                    detail: &message,
                },
                now,
            )
            .await?;
        tracing::info!(site = %request.site, ?code, %message, "enrolment refused");
        Ok::<_, EnrollError>(refusal(code, message))
    };
    let Ok(site) = SiteId::parse(&request.site) else {
        return deny(
            proto::EnrollErrorCode::WrongSite,
            "site id in the request is not valid".into(),
        )
        .await;
    };
    let token = match shared.tokens.check(&site, &request.token, now).await? {
        Ok(t) => t,
        Err(r) => return deny(r.code(), r.to_string()).await,
    };
    let store = shared.tables.store();
    let Some(site_record) = shared.tables.sites().get(&site).await? else {
        return deny(
            proto::EnrollErrorCode::WrongSite,
            format!("site {site} does not exist"),
        )
        .await;
    };
    if site_record.record.state == SiteState::Decommissioned {
        return deny(
            TokenRefusal::Revoked.code(),
            format!("site {site} is decommissioned"),
        )
        .await;
    }
    let auth_key = state::auth_key(&site);
    let current_auth = state::read_site_record::<SiteAuth>(store.as_ref(), &auth_key).await?;
    let epoch = current_auth.map_or(1, |(a, _)| a.epoch.max(1));
    let issued = match shared.ca.sign_site_csr(
        &request.csr_pem,
        &site,
        epoch,
        shared.config.site_cert_lifetime(),
        now,
    ) {
        Ok(i) => i,
        Err(e) => return deny(proto::EnrollErrorCode::BadCsr, e.to_string()).await,
    };
    let mut site_after = site_record.record.clone();
    site_after.state = SiteState::Enrolled;
    let mut txn = Txn::new()
        .when(Compare::ModRevision(
            Table::<proto::BootstrapTokenRecord>::store_key(&token.record.key_path_str()),
            token.revision,
        ))
        .when(Compare::ModRevision(
            Table::<meridian_common::model::Site>::store_key(site.as_str()),
            site_record.revision,
        ))
        .then(Table::put_op(&mark_used(&token.record, now))?)
        .then(Table::put_op(&site_after)?)
        .then(Op::Put {
            key: auth_key.clone(),
            value: SiteRecord::encode(&SiteAuth {
                epoch,
                revoked: false,
            }),
        });
    txn = match current_auth {
        Some((_, rev)) => txn.when(Compare::ModRevision(auth_key, rev)),
        None => txn.when(Compare::Absent(auth_key)),
    };
    if !store.txn(txn).await.map_err(TableError::from)?.succeeded {
        // Someone used the token (or changed the site) between the check and the commit.
        return deny(TokenRefusal::Used.code(), TokenRefusal::Used.to_string()).await;
    }
    shared
        .audit
        .append(
            AuditEntry {
                actor: &format!("site:{site}"),
                action: "channel/Enroll",
                object: &format!("site/{site}"),
                outcome: Outcome::Success,
                detail: &format!(
                    "token {} spent; certificate epoch {epoch} valid until {}",
                    token.record.token.as_ref().map_or("", |t| t.id.as_str()),
                    issued.not_after
                ),
            },
            now,
        )
        .await?;
    tracing::info!(%site, epoch, "site enrolled");
    Ok(proto::EnrollResponse {
        outcome: Some(proto::enroll_response::Outcome::Success(
            proto::EnrollSuccess {
                certificate_chain_pem: issued.certificate_pem,
                ca_pem: shared.ca.cert_pem().to_owned(),
                not_after: issued.not_after.as_millis(),
            },
        )),
    })
}

/// The key path of a stored token record.
trait KeyPathStr {
    fn key_path_str(&self) -> String;
}

impl KeyPathStr for proto::BootstrapTokenRecord {
    fn key_path_str(&self) -> String {
        use meridian_store::tables::Record;
        self.key_path()
    }
}

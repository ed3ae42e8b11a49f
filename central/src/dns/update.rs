//! The RFC 2136 client: one signed UPDATE per name, sent to the zone's primary over TCP.
//!
//! [`Updater::replace`] makes a name hold exactly a set of A records in one message: the
//! update section deletes the name's A RRset (RFC 2136 2.5.2) and adds each wanted address
//! (2.5.1); the server applies the message as a whole. An empty set only deletes (withdraws
//! the name). The message is signed with TSIG (RFC 8945) through `hickory-proto`, and the
//! answer must come back signed by the same key. Every failure names the server and the
//! name, and says what the answer means (`NOTAUTH`, TSIG `BADSIG`: the secret differs).
//!
//! The exchange is done here rather than through `hickory-client`: a server that refuses a
//! signature answers unsigned, with the TSIG error in a TSIG record of its own, and telling
//! an operator "wrong secret" rather than "bad answer" needs that raw answer.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::rdata::tsig::{TSIG, TsigAlgorithm as HickoryTsig};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::config::{DnsSettings, TsigAlgorithm};

/// How long one update may take, connection included.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Allowed clock difference between central and the server, seconds (RFC 8945's
/// recommended fudge).
const FUDGE_S: u16 = 300;

/// Why an update did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No TCP connection, or it broke before an answer came.
    #[error("DNS server {server} unreachable while updating {name}: {source}")]
    Unreachable {
        server: SocketAddr,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("DNS server {server} did not answer the update of {name} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        name: String,
        timeout: Duration,
    },
    /// The server answered with an error.
    #[error("DNS server {server} refused the update of {name}: {code} ({meaning})")]
    Refused {
        server: SocketAddr,
        name: String,
        /// The response code, and the TSIG error when there is one (`NOTAUTH, TSIG BADSIG`).
        code: String,
        /// What it means for the operator.
        meaning: String,
    },
    /// The answer is not a DNS answer to this update, or does not carry a valid signature.
    #[error("DNS server {server} sent a bad answer to the update of {name}: {reason}")]
    BadAnswer {
        server: SocketAddr,
        name: String,
        reason: String,
    },
    /// The message could not be built (a name outside the zone, an encoding error).
    #[error("cannot build the update of {name}: {reason}")]
    Build { name: String, reason: String },
}

impl UpdateError {
    /// The server could not be reached at all (every other name would fail the same way).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            UpdateError::Unreachable { .. } | UpdateError::Timeout { .. }
        )
    }
}

/// Sends signed updates of one zone to its primary.
#[derive(Clone)]
pub struct Updater {
    server: SocketAddr,
    zone: Name,
    key_name: String,
    ttl_s: u32,
    signer: TSigner,
    timeout: Duration,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("server", &self.server)
            .field("zone", &self.zone.to_ascii())
            .field("key_name", &self.key_name)
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n)
}

impl Updater {
    /// An updater for the zone, server and key of `settings`.
    pub fn new(settings: &DnsSettings) -> Result<Updater, UpdateError> {
        let build = |reason: String| UpdateError::Build {
            name: settings.zone.clone(),
            reason,
        };
        let zone = fqdn(&settings.zone).map_err(build)?;
        let key = fqdn(&settings.key_name).map_err(build)?;
        let algorithm = match settings.algorithm {
            TsigAlgorithm::HmacSha256 => HickoryTsig::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryTsig::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryTsig::HmacSha512,
        };
        let signer = TSigner::new(settings.secret.clone(), algorithm, key, FUDGE_S)
            .map_err(|e| build(e.to_string()))?;
        Ok(Updater {
            server: settings.server,
            zone,
            key_name: settings.key_name.clone(),
            ttl_s: settings.ttl_s,
            signer,
            timeout: UPDATE_TIMEOUT,
        })
    }

    /// The same updater with another time limit per update.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server updates go to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Makes `name` hold exactly `addresses` (none: removes its A records).
    pub async fn replace(
        &self,
        name: &str,
        addresses: &BTreeSet<Ipv4Addr>,
    ) -> Result<(), UpdateError> {
        let (request, id, mut verify) = self.message(name, addresses)?;
        let server = self.server;
        let answer = match tokio::time::timeout(self.timeout, exchange(server, &request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(source)) => {
                return Err(UpdateError::Unreachable {
                    server,
                    name: name.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(UpdateError::Timeout {
                    server,
                    name: name.to_owned(),
                    timeout: self.timeout,
                });
            }
        };
        let bad = |reason: String| UpdateError::BadAnswer {
            server,
            name: name.to_owned(),
            reason,
        };
        let response = Message::from_vec(&answer).map_err(|e| bad(e.to_string()))?;
        if response.id() != id || response.message_type() != MessageType::Response {
            return Err(bad(format!(
                "not the answer to update {id} (id {}, {:?})",
                response.id(),
                response.message_type()
            )));
        }
        let tsig_error = response
            .signature()
            .iter()
            .find_map(|r| match r.data() {
                RData::DNSSEC(DNSSECRData::TSIG(t)) => tsig_error(t),
                _ => None,
            })
            .filter(|e| *e != 0);
        let rcode = response.response_code();
        if rcode != ResponseCode::NoError || tsig_error.is_some() {
            let (code, meaning) = explain(u16::from(rcode), tsig_error, &self.key_name);
            return Err(UpdateError::Refused {
                server,
                name: name.to_owned(),
                code,
                meaning,
            });
        }
        verify(&answer).map_err(|e| {
            bad(format!(
                "its signature does not verify with key {} ({e})",
                self.key_name
            ))
        })?;
        Ok(())
    }

    /// The signed UPDATE message for `name`, its id and the verifier of its answer.
    fn message(
        &self,
        name: &str,
        addresses: &BTreeSet<Ipv4Addr>,
    ) -> Result<(Vec<u8>, u16, hickory_proto::op::MessageVerifier), UpdateError> {
        let build = |reason: String| UpdateError::Build {
            name: name.to_owned(),
            reason,
        };
        let owner = fqdn(name).map_err(build)?;
        if !self.zone.zone_of(&owner) || owner == self.zone {
            return Err(build(format!("not a name inside zone {}", self.zone)));
        }
        let id: u16 = rand::random();
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .set_recursion_desired(false);
        // The zone section: the zone's SOA, class IN.
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        m.add_query(zone);
        // Delete the A RRset (class ANY, TTL 0, no rdata), then add each address.
        let mut delete = Record::update0(owner.clone(), 0, RecordType::A);
        delete.set_dns_class(DNSClass::ANY);
        m.add_name_server(delete);
        for ip in addresses {
            m.add_name_server(Record::from_rdata(
                owner.clone(),
                self.ttl_s,
                RData::A(A(*ip)),
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let verifier = m
            .finalize(&self.signer, u32::try_from(now).unwrap_or(u32::MAX))
            .map_err(|e| build(e.to_string()))?
            .ok_or_else(|| build("TSIG gave no verifier for the answer".into()))?;
        let bytes = m.to_vec().map_err(|e| build(e.to_string()))?;
        Ok((bytes, id, verifier))
    }
}

/// One request and its answer over a fresh TCP connection (RFC 1035 4.2.2 framing).
async fn exchange(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(request.len())
        .map_err(|_| std::io::Error::other("update larger than 64 KiB"))?;
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// The Error field of a TSIG record (hickory keeps it private): the record data is the
/// algorithm name, time (6 bytes), fudge (2), MAC size (2), MAC, original id (2), error (2).
fn tsig_error(tsig: &TSIG) -> Option<u16> {
    let data = tsig.to_bytes().ok()?;
    let mut at = 0;
    loop {
        let len = usize::from(*data.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    at += 6 + 2;
    let mac_len = usize::from(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]));
    at += 2 + mac_len + 2;
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The response code (and TSIG error) in words for the log.
fn explain(rcode: u16, tsig_error: Option<u16>, key: &str) -> (String, String) {
    let mnemonic = |c: u16| match c {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        6 => "YXDOMAIN".to_owned(),
        7 => "YXRRSET".to_owned(),
        8 => "NXRRSET".to_owned(),
        9 => "NOTAUTH".to_owned(),
        10 => "NOTZONE".to_owned(),
        16 => "BADSIG".to_owned(),
        17 => "BADKEY".to_owned(),
        18 => "BADTIME".to_owned(),
        22 => "BADTRUNC".to_owned(),
        other => format!("RCODE{other}"),
    };
    let code = match tsig_error {
        Some(e) => format!("{}, TSIG {}", mnemonic(rcode), mnemonic(e)),
        None => mnemonic(rcode),
    };
    let meaning = match (tsig_error, rcode) {
        (Some(16), _) => format!(
            "the server does not accept key {key}'s signature: the secret or the algorithm differs from the server's (dns.tsig_secret_file, dns.tsig_algorithm)"
        ),
        (Some(17), _) => format!(
            "the server knows no key named {key} (dns.tsig_key_name), or not with this algorithm"
        ),
        (Some(18), _) => {
            format!("central's clock and the server's differ by more than {FUDGE_S} s")
        }
        (Some(_), _) => "the server refused the request's TSIG signature".to_owned(),
        (None, 9) => format!(
            "the server is not authoritative for the zone, or does not accept key {key} for it"
        ),
        (None, 5) => format!("the server's update policy does not let key {key} change this name"),
        (None, 10) => "the name is not inside the zone the server holds".to_owned(),
        (None, 4) => "the server does not implement dynamic updates".to_owned(),
        (None, 2) => "the server failed to apply the update".to_owned(),
        (None, _) => "the server did not apply the update".to_owned(),
    };
    (code, meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updater() -> Updater {
        Updater::new(&DnsSettings {
            zone: "endpoints.example.net".into(),
            server: "127.0.0.1:1".parse().unwrap(),
            key_name: "meridian-update".into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: vec![7; 32],
            ttl_s: 60,
        })
        .unwrap()
    }

    #[test]
    fn the_message_deletes_the_rrset_then_adds_each_address_signed() {
        let u = updater();
        let ips: BTreeSet<Ipv4Addr> = ["203.0.113.1", "203.0.113.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (bytes, id, _) = u.message("wl-1.acme.endpoints.example.net", &ips).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.id(), id);
        assert_eq!(m.op_code(), OpCode::Update);
        assert_eq!(m.queries()[0].name().to_ascii(), "endpoints.example.net.");
        assert_eq!(m.queries()[0].query_type(), RecordType::SOA);
        let updates = m.name_servers();
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].dns_class(), DNSClass::ANY);
        assert_eq!(updates[0].ttl(), 0);
        assert_eq!(updates[0].record_type(), RecordType::A);
        assert_eq!(
            updates[1].data(),
            &RData::A(A("203.0.113.1".parse().unwrap()))
        );
        assert_eq!(updates[2].ttl(), 60);
        let sig = &m.signature()[0];
        assert_eq!(sig.name().to_ascii(), "meridian-update.");
        let RData::DNSSEC(DNSSECRData::TSIG(t)) = sig.data() else {
            panic!("not a TSIG: {sig:?}")
        };
        assert_eq!(t.mac().len(), 32);
        assert_eq!(tsig_error(t), Some(0));
        // A withdrawal only deletes.
        let (bytes, _, _) = u
            .message("wl-1.acme.endpoints.example.net", &BTreeSet::new())
            .unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().name_servers().len(), 1);
    }

    #[test]
    fn names_outside_the_zone_are_not_sent() {
        let u = updater();
        for name in [
            "wl-1.acme.example.org",
            "endpoints.example.net",
            "x.y.example.net",
        ] {
            let Err(e) = u.message(name, &BTreeSet::new()) else {
                panic!("{name} was accepted")
            };
            assert!(e.to_string().contains("not a name inside zone"), "{e}");
        }
    }

    #[test]
    fn the_tsig_error_field_is_read() {
        let alg = HickoryTsig::HmacSha256;
        for (mac, error) in [(vec![], 16u16), (vec![1; 32], 0), (vec![2; 64], 18)] {
            let t = TSIG::new(
                alg.clone(),
                1_700_000_000,
                300,
                mac,
                4242,
                error,
                vec![0; 6],
            );
            assert_eq!(tsig_error(&t), Some(error));
        }
    }

    #[test]
    fn refusals_say_what_they_mean() {
        let (code, meaning) = explain(9, Some(16), "k1");
        assert_eq!(code, "NOTAUTH, TSIG BADSIG");
        assert!(meaning.contains("secret"), "{meaning}");
        let (code, meaning) = explain(9, Some(17), "k1");
        assert_eq!(code, "NOTAUTH, TSIG BADKEY");
        assert!(meaning.contains("no key named k1"), "{meaning}");
        let (code, meaning) = explain(5, None, "k1");
        assert_eq!(code, "REFUSED");
        assert!(meaning.contains("update policy"), "{meaning}");
        assert_eq!(explain(9, None, "k1").0, "NOTAUTH");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_naming_server_and_name() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut u = updater();
        u.server = SocketAddr::from(([127, 0, 0, 1], port));
        let e = u
            .replace("wl-1.acme.endpoints.example.net", &BTreeSet::new())
            .await
            .unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}"))
                && text.contains("wl-1.acme.endpoints.example.net"),
            "{text}"
        );
    }
}

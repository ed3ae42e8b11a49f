//! Central's certificate authority (rcgen): one CA key and self-signed certificate, created on
//! first start in `<data_dir>/ca/` (the key file is readable by its owner only) and reused
//! after. It issues central's own server certificate at every start and the short-lived site
//! certificates agents get at enrolment and renewal.
//!
//! A site certificate names its site in a URI SAN (`urn:meridian:site:{site}`) and carries the
//! site's certificate epoch (`urn:meridian:cert-epoch:{n}`); central reads the site id from the
//! presented certificate only ([`site_identity`]), never from a message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_common::channel::{CENTRAL_SERVER_NAME, EPOCH_SAN_PREFIX, SITE_SAN_PREFIX};
use meridian_common::ids::{SiteId, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Lifetime of the CA certificate.
const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Lifetime of central's server certificate (re-issued at every start).
const SERVER_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far back a new certificate's `not_before` is set, for clock skew between the machines.
const SKEW: Duration = Duration::from_secs(300);

/// Why the CA could not load, create or issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written.
    #[error("CA file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored CA key or certificate does not parse.
    #[error(
        "CA file {path} is not a valid key or certificate; restore it from backup (deleting it re-creates the CA and every site must re-enrol)"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    /// Only one of the CA key and certificate exists.
    #[error(
        "CA directory {dir} holds only one of ca.key and ca.crt; restore the other from backup"
    )]
    Incomplete { dir: PathBuf },
    /// rcgen refused to build a certificate.
    #[error("cannot issue certificate")]
    Issue(#[source] rcgen::Error),
    /// A CSR does not parse, its signature is wrong, or its key type is not accepted.
    #[error("certificate signing request refused: {0}")]
    BadCsr(String),
    /// A presented certificate is not a site certificate of this CA.
    #[error("not a site certificate: {0}")]
    NotASiteCertificate(String),
}

/// A site certificate as issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The site certificate, PEM.
    pub certificate_pem: String,
    /// The same, DER.
    pub certificate_der: CertificateDer<'static>,
    /// When it expires.
    pub not_after: Timestamp,
}

/// What a site certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteIdentity {
    /// The site.
    pub site: SiteId,
    /// The certificate epoch it was issued in.
    pub epoch: u64,
    /// When it expires.
    pub not_after: Timestamp,
}

/// Central's certificate authority.
pub struct CertificateAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

fn to_offset(t: Timestamp) -> time::OffsetDateTime {
    let secs = t.as_millis().div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add_millis(-i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// Writes a file atomically (temp file, fsync, rename), with `mode` on unix.
fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating it there (key mode 0600) if neither file exists.
    pub fn load_or_create(dir: &Path, now: Timestamp) -> Result<Self, CaError> {
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.crt");
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => Self::load(&key_path, &cert_path),
            (false, false) => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(io(dir))?;
                }
                let key = KeyPair::generate().map_err(CaError::Issue)?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "Meridian central CA");
                dn.push(DnType::OrganizationName, "Meridian");
                params.distinguished_name = dn;
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                params.not_before = to_offset(minus(now, SKEW));
                params.not_after = to_offset(plus(now, CA_LIFETIME));
                params.serial_number = Some(random_serial());
                let cert = params.self_signed(&key).map_err(CaError::Issue)?;
                // Key first: a crash between the two writes leaves a key without a
                // certificate, which load reports instead of silently making a new CA.
                write_private(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
                write_private(&cert_path, cert.pem().as_bytes(), 0o644)?;
                tracing::info!(dir = %dir.display(), "created central CA");
                Self::load(&key_path, &cert_path)
            }
            _ => Err(CaError::Incomplete {
                dir: dir.to_owned(),
            }),
        }
    }

    fn load(key_path: &Path, cert_path: &Path) -> Result<Self, CaError> {
        let key_pem = std::fs::read_to_string(key_path).map_err(io(key_path))?;
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io(cert_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| CaError::Corrupt {
            path: key_path.to_owned(),
            source,
        })?;
        let cert_der = pem_to_der(&cert_pem).ok_or_else(|| CaError::Corrupt {
            path: cert_path.to_owned(),
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| CaError::Corrupt {
                path: cert_path.to_owned(),
                source,
            })?;
        let fingerprint: [u8; 32] = Sha256::digest(&cert_der).into();
        Ok(CertificateAuthority {
            cert_der,
            cert_pem,
            issuer,
            fingerprint,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER): what bootstrap files pin.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// A fresh server certificate for central (DNS SAN [`CENTRAL_SERVER_NAME`]) with its key;
    /// the chain is server certificate then CA certificate.
    pub fn issue_server_cert(
        &self,
        now: Timestamp,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        self.issue_server_cert_for(now, &[])
    }

    /// A server certificate naming [`CENTRAL_SERVER_NAME`] and `names` (DNS names or IP
    /// addresses), for the gRPC API.
    pub fn issue_server_cert_for(
        &self,
        now: Timestamp,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut sans = vec![CENTRAL_SERVER_NAME.to_owned()];
        sans.extend(names.iter().cloned());
        let mut params = CertificateParams::new(sans).map_err(CaError::Issue)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Meridian central");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = to_offset(minus(now, SKEW));
        params.not_after = to_offset(plus(now, SERVER_LIFETIME));
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Issue)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// Signs a site's CSR: the certificate names `site` and `epoch` whatever the CSR asked for,
    /// and lives `lifetime` from `now`.
    pub fn sign_site_csr(
        &self,
        csr_pem: &str,
        site: &SiteId,
        epoch: u64,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<IssuedCert, CaError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(CaError::BadCsr("CSR is larger than 16 KiB".into()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let alg = csr.public_key.algorithm();
        if alg != &rcgen::PKCS_ECDSA_P256_SHA256
            && alg != &rcgen::PKCS_ECDSA_P384_SHA384
            && alg != &rcgen::PKCS_ED25519
        {
            return Err(CaError::BadCsr(
                "key type not accepted; use ECDSA P-256/P-384 or Ed25519".into(),
            ));
        }
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, site.as_str());
        let uri = |s: String| {
            s.try_into()
                .map(SanType::URI)
                .map_err(|e: rcgen::Error| CaError::Issue(e))
        };
        params.subject_alt_names = vec![
            uri(format!("{SITE_SAN_PREFIX}{site}"))?,
            uri(format!("{EPOCH_SAN_PREFIX}{epoch}"))?,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_after = plus(now, lifetime);
        params.not_before = to_offset(minus(now, SKEW));
        params.not_after = to_offset(not_after);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CaError::Issue)?;
        Ok(IssuedCert {
            certificate_pem: cert.pem(),
            certificate_der: cert.der().clone(),
            not_after: Timestamp::from_millis(not_after.as_millis() / 1000 * 1000),
        })
    }
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

/// Reads the site, epoch and expiry from a site certificate (already verified against the CA).
pub fn site_identity(cert: &CertificateDer<'_>) -> Result<SiteIdentity, CaError> {
    use x509_parser::prelude::*;
    let bad = |m: &str| CaError::NotASiteCertificate(m.to_owned());
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|_| bad("does not parse"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| bad("bad SAN extension"))?
        .ok_or_else(|| bad("no SAN extension"))?;
    let mut site = None;
    let mut epoch = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(s) = uri.strip_prefix(SITE_SAN_PREFIX) {
                if site.is_some() {
                    return Err(bad("more than one site SAN"));
                }
                site = Some(SiteId::parse(s).map_err(|_| bad("site SAN is not a site id"))?);
            } else if let Some(e) = uri.strip_prefix(EPOCH_SAN_PREFIX) {
                epoch = Some(e.parse::<u64>().map_err(|_| bad("bad epoch SAN"))?);
            }
        }
    }
    Ok(SiteIdentity {
        site: site.ok_or_else(|| bad("no site SAN"))?,
        epoch: epoch.ok_or_else(|| bad("no epoch SAN"))?,
        not_after: Timestamp::from_millis(
            parsed.validity().not_after.timestamp().saturating_mul(1000),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_750_000_000_000)
    }

    #[test]
    fn created_once_with_a_private_key_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let a = CertificateAuthority::load_or_create(&ca_dir, now()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ca_dir.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = CertificateAuthority::load_or_create(&ca_dir, now()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        std::fs::remove_file(ca_dir.join("ca.crt")).unwrap();
        assert!(matches!(
            CertificateAuthority::load_or_create(&ca_dir, now()),
            Err(CaError::Incomplete { .. })
        ));
    }

    #[test]
    fn site_certificates_carry_site_and_epoch_whatever_the_csr_says() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), now()).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["evil.example".into()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let site = SiteId::parse("edge-1").unwrap();
        let issued = ca
            .sign_site_csr(&csr, &site, 3, Duration::from_secs(3600), now())
            .unwrap();
        let id = site_identity(&issued.certificate_der).unwrap();
        assert_eq!(id.site, site);
        assert_eq!(id.epoch, 3);
        assert_eq!(id.not_after, plus(now(), Duration::from_secs(3600)));
        assert!(matches!(
            ca.sign_site_csr("garbage", &site, 0, Duration::from_secs(1), now()),
            Err(CaError::BadCsr(_))
        ));
        let (chain, _) = ca.issue_server_cert(now()).unwrap();
        assert!(site_identity(&chain[0]).is_err());
    }
}

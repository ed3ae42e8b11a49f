//! Sites central knows, and the bootstrap files their agents enrol with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_central::server::Central;
use meridian_central::tokens::TokenError;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::ids::SiteId;
use meridian_store::tables::TableError;

use crate::fixtures::{site_id, site_record};

/// How long the bootstrap tokens made here live.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Creates the pending site record of `id`.
pub async fn add_site(central: &Central, id: &str) -> Result<(), TableError> {
    central.tables().sites().create(&site_record(id)).await?;
    Ok(())
}

/// The bootstrap file of `site` with a fresh one-time token, naming `central_addresses`
/// (central itself, or a fault proxy in front of it).
pub async fn bootstrap_file(
    central: &Central,
    site: &SiteId,
    central_addresses: Vec<String>,
) -> Result<BootstrapFile, TokenError> {
    let token = central
        .channel()
        .tokens()
        .create(site, TOKEN_TTL, meridian_central::clock::now(), "testkit")
        .await?;
    Ok(token.bootstrap_file(central_addresses, central.ca().fingerprint()))
}

/// Creates the pending site record of `site` and a bootstrap token for it; returns its
/// bootstrap file, naming `central_addresses`.
pub async fn enrol_site(
    central: &Central,
    site: &str,
    central_addresses: Vec<String>,
) -> Result<BootstrapFile, EnrolError> {
    add_site(central, site).await?;
    Ok(bootstrap_file(central, &site_id(site), central_addresses).await?)
}

/// Why a site could not be set up for enrolment.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("cannot create the site record")]
    Site(#[from] TableError),
    #[error("cannot create the bootstrap token")]
    Token(#[from] TokenError),
}

/// [`bootstrap_file`] naming `central_addresses` (central's own when empty), written into
/// `dir`; returns its path.
pub async fn write_bootstrap(
    central: &Central,
    site: &str,
    central_addresses: Vec<String>,
    dir: &Path,
) -> Result<PathBuf, TokenError> {
    let addresses = if central_addresses.is_empty() {
        central.channel().advertised()
    } else {
        central_addresses
    };
    let file = bootstrap_file(central, &site_id(site), addresses).await?;
    let path = dir.join(format!(
        "{site}-{}.toml",
        file.token.split('.').next().unwrap_or("token")
    ));
    std::fs::write(&path, file.render()).expect("the test's directory is writable");
    Ok(path)
}

//! Loading a generated fleet into a running central, the way the benchmarks and tests start.

use std::time::Duration;

use meridian_central::server::Central;
use meridian_common::ids::UserId;
use meridian_store::tables::TableError;

use super::Fleet;

/// Writes `fleet`'s regions, sites and servers into `central` (transactions of 256) and tells
/// its lifecycle the fleet changed; then gives the provider admin `admin` an API token living
/// an hour and returns its secret.
pub async fn load_with_admin(central: &Central, fleet: &Fleet) -> Result<String, TableError> {
    let t = central.tables();
    t.regions().create_many(&fleet.regions, 256).await?;
    t.sites().create_many(&fleet.sites, 256).await?;
    t.servers().create_many(&fleet.servers, 256).await?;
    central.lifecycle().fleet_changed();
    Ok(meridian_central::accounts::bootstrap_admin(
        &t,
        &UserId::parse("admin").expect("a valid user id"),
        Duration::from_secs(3600),
        meridian_central::clock::now(),
    )
    .await?
    .secret)
}

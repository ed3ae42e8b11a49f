//! Pieces only the benchmarks share (the harness that starts central and agents is
//! `meridian-testkit`): simulated site names, the change transaction size, and `/proc`
//! readings.

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Name of simulated site `i`.
pub(crate) fn site_name(i: usize) -> String {
    format!("sim-{i:05}")
}

/// Intents per transaction when B2 writes its change, on both sides: as central's compiler
/// publishes a change (transactions of at most `MAX_TXN_OPS`, a compare and a put per intent),
/// one transaction after another.
pub const CHANGE_TXN_INTENTS: usize = meridian_store::MAX_TXN_OPS / 2;

/// Creates `site` and its bootstrap file (naming central itself), written to `path`.
pub(crate) async fn write_bootstrap(
    central: &meridian_central::server::Central,
    site: &str,
    path: &std::path::Path,
) -> Result<(), BoxError> {
    let file =
        meridian_testkit::enrol::enrol_site(central, site, central.channel().advertised()).await?;
    std::fs::write(path, file.render())?;
    Ok(())
}

/// Resident set size of a process (`self` or a pid), bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

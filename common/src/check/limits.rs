//! The bounds validation enforces, in one place so clients (CLI, console, proto conversions)
//! can show and reuse them.

/// Replicas per workload.
pub const MAX_REPLICAS: u32 = 10_000;
/// Longest reservation window, in days.
pub const MAX_WINDOW_DAYS: i64 = 366;
/// Longest reservation window, in milliseconds.
pub const MAX_WINDOW_MS: i64 = MAX_WINDOW_DAYS * 24 * 60 * 60 * 1000;
/// Earliest start of a reservation window: 2000-01-01T00:00:00Z, in Unix milliseconds.
pub const MIN_WINDOW_START_MS: i64 = 946_684_800_000;
/// Latest end of a reservation window: 2100-01-01T00:00:00Z, in Unix milliseconds.
pub const MAX_WINDOW_END_MS: i64 = 4_102_444_800_000;
/// Whole GPUs per replica.
pub const MAX_GPUS_PER_REPLICA: u32 = 64;
/// Largest latency goal, in ms.
pub const MAX_RTT_MS: u32 = 10_000;
/// Regions in a latency goal.
pub const MAX_LATENCY_REGIONS: usize = 64;
/// Required certifications.
pub const MAX_CERTIFICATIONS: usize = 16;
/// Datasets per workload; replica sites per dataset.
pub const MAX_DATASETS: usize = 64;
/// CPU cores per replica or server.
pub const MAX_CPU_CORES: u32 = 1024;
/// Memory per replica or server, in MiB (16 TiB).
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
/// Storage per replica or volume, in MiB (1 PiB).
pub const MAX_STORAGE_MIB: u64 = 1024 * 1024 * 1024;
/// A site's storage array, or a tenant's storage quota, in MiB (1 EiB).
pub const MAX_SITE_STORAGE_MIB: u64 = 1024 * 1024 * 1024 * 1024;
/// Length of an image or BMC URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Exposed ports per workload.
pub const MAX_EXPOSED_PORTS: usize = 32;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 16_777_215;
/// Routing tables Linux reserves (unspec, default, main, local).
pub const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];
/// Pools per site.
pub const MAX_POOLS: usize = 64;
/// GPUs per server.
pub const MAX_GPUS_PER_SERVER: usize = 64;
/// Highest price, in micro-units per GPU-hour (one million units).
pub const MAX_PRICE_PER_GPU_HOUR: u64 = 1_000_000_000_000;
/// Largest region population.
pub const MAX_POPULATION: u64 = 10_000_000_000;
/// Length of serials, model strings and similar short free text, in bytes.
pub const MAX_SHORT_TEXT: usize = 128;
/// Length of reasons and messages, in bytes.
pub const MAX_REASON_LEN: usize = 4096;
/// Allocations on one server in one intent (bounds the pairwise conflict check).
pub const MAX_ALLOCATIONS_PER_SERVER: usize = 1024;
/// Entries in any list of a site intent.
pub const MAX_INTENT_ENTRIES: usize = 100_000;
/// Problems reported per value before the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;

/// Ports the site gateway keeps for itself and never publishes for a tenant: SSH for the
/// site's operators (22/tcp), BGP to the fabric (179/tcp), the VXLAN underlay (4789/udp) and
/// the tenants' site-to-site tunnels (8472/udp, which the gateway takes from peer gateways only).
pub const RESERVED_GATEWAY_PORTS: &[(u16, crate::net::Protocol)] = &[
    (22, crate::net::Protocol::Tcp),
    (179, crate::net::Protocol::Tcp),
    (4789, crate::net::Protocol::Udp),
    (8472, crate::net::Protocol::Udp),
];

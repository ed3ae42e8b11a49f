//! [`WanGateway`] over nftables: the ruleset is rendered here as typed libnftables JSON (the
//! [`nftables`] crate's schema) and handed to `nft -j -f -`, which commits a whole batch as one
//! transaction.
//!
//! The table (`ip <table>`) has four chains:
//! - `prerouting` (nat, prio -100): per exposure, `ip daddr <public> <proto> dport <port>`
//!   DNAT to the backend.
//! - `postrouting` (nat, prio 100): per tenant, `ip saddr <subnet> oifname <wan>` SNAT to the
//!   site's egress address.
//! - `forward_filter` (filter, policy **drop**): per tenant, an accounting rule counting the
//!   bytes its bridge sends out of the WAN (no verdict: metering's egress); established/related; per exposure, new flows
//!   from the WAN to the backend only with `ct status dnat`; per tenant, its own bridge to the
//!   WAN, and, with a site-to-site tunnel, its bridge to its tunnel `msx<vni>` and back; a
//!   final counted drop. Nothing goes from one tenant bridge to another, nor from a tunnel to
//!   another tenant or to the WAN.
//! - `input_filter` (filter, policy accept): a tenant may reach its own gateway address on the
//!   gateway node and nothing else of it (not the other tenants' gateways), from its bridge and
//!   from its tunnel. From the WAN, the tenant segments' VXLAN (UDP 4789, which Linux listens
//!   for on every address) is dropped, and site-to-site tunnel packets (UDP 8472) are accepted
//!   only from the peer sites' tunnel endpoints and dropped from anyone else: nobody else can
//!   put frames into a tenant's bridge or tunnel.
//!
//! Every rule has a counter and a comment naming what it is for. Applying reads the installed
//! table (`nft -j list table`), compares chains and rules with the rendering (handles dropped,
//! counter values zeroed), and if they differ deletes and re-creates the table in one batch, so
//! a reader never sees a half-written ruleset.
//!
//! # The `nftables` crate
//!
//! Both directions go through [`nftables::schema`]: the batch is a [`Nftables`] of
//! [`NfCmd`](nftables::schema::NfCmd)s (built with [`Batch`]) holding [`Table`], [`Chain`] and
//! [`Rule`] objects whose statements are [`Statement::Match`] (`==`, `!=`, `in`), an anonymous
//! [`Statement::Counter`], [`Statement::DNAT`]/[`Statement::SNAT`] and the `accept`/`drop`
//! verdicts, over `payload`, `meta`, `ct`, `prefix`, list and immediate [`Expression`]s. The
//! listing is deserialized into the same types, and the installed-versus-desired comparison
//! and [`NftGateway::counters`] work on them. Everything this gateway renders is in the
//! schema, the batch is the same JSON the hand-written rendering sent, and `nft -j list` of
//! nft 1.0.6 (the version this was checked with) reads back equal to the rendering.
//!
//! What the crate does not do for us:
//! - **Running `nft`.** Its `helper` functions are synchronous `std::process` by default. The
//!   async variants (feature `tokio`) cannot run the listing inside a namespace: they put `-j`
//!   right after the program, so `ip netns exec <ns> nft` becomes `ip -j netns exec …`; and
//!   the apply path does not capture nft's standard error (it is inherited), so neither nft's
//!   message nor "the table does not exist" can be told apart. The gateway therefore runs
//!   `nft` itself through `tokio::process::Command` and uses the crate without features.
//! - **Parsing foreign content.** Parsing is all-or-nothing and knows only the schema: a
//!   statement it lacks (0.6.3 has no `last`, `reset` or `secmark` statement), a meta key it
//!   lacks (`day`, `hour`, `time`, `sdif`, `ipsec`…: one hand-added `meta day "Monday"` rule is
//!   enough), or a shape a newer nft prints differently fails the whole listing. `apply` then
//!   treats the installed table as different and replaces it, reporting `replace table …
//!   (its listing is outside the nftables schema: …)` instead of one `delete rule` per foreign
//!   rule; `counters` returns [`GatewayError::Parse`]. Properties the schema has no field for
//!   (a chain's or a table's `comment`, a table's `flags`) are skipped when reading, as the
//!   hand-written comparison skipped them.
//! - **Wide numbers.** Immediate numbers are `u32` and anonymous counters `usize`: enough for
//!   ports, and for counters on the 64-bit hosts the agent runs on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Stdio;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{AnonymousCounter, Counter, Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use meridian_common::ids::TenantId;
use meridian_common::model::{Exposure, Ipv4Net};

use crate::host::{SITE_TUNNEL_PORT, VXLAN_PORT};
use crate::{ChangeReport, WanGateway};

/// Why the gateway could not be converged.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `nft` could not be started.
    #[error("cannot run `{command}` (is the nftables package installed?)")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the batch or the listing.
    #[error("`{command}` failed: {stderr}")]
    Nft {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
    /// `nft -j` printed something that is not JSON the `nftables` schema can read.
    #[error("cannot parse the output of `nft -j`")]
    Parse(#[source] serde_json::Error),
    /// The spec is inconsistent.
    #[error("invalid gateway spec: {0}")]
    Spec(String),
}

/// What a ruleset's counters say, since it was installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets by rule comment (`"tenant-a/web dnat tcp/443"`, `"tenant-a snat"`): each
    /// published endpoint's use.
    pub packets: BTreeMap<String, u64>,
    /// Bytes each tenant sent out of the WAN (its connections and its endpoints' answers).
    pub egress_bytes: BTreeMap<TenantId, u64>,
}

/// A tenant as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTenant {
    /// The tenant.
    pub tenant: TenantId,
    /// Its subnet on the site.
    pub subnet: Ipv4Net,
    /// Its gateway address (on the gateway node's tenant bridge).
    pub gateway: Ipv4Addr,
    /// The gateway node's device for the tenant (its bridge).
    pub interface: String,
    /// The tenant's site-to-site tunnel device (`msx<vni>`) when it has subnets at other sites.
    pub tunnel: Option<String>,
}

/// Everything the WAN gateway must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The WAN device.
    pub wan: String,
    /// Address tenant egress is translated to.
    pub egress_address: Ipv4Addr,
    /// The tenants.
    pub tenants: Vec<GatewayTenant>,
    /// Published endpoints.
    pub exposures: Vec<Exposure>,
    /// Addresses allowed to send site-to-site tunnel packets (UDP
    /// [`SITE_TUNNEL_PORT`](super::host::SITE_TUNNEL_PORT)) to this node over the WAN: the
    /// peer sites' tunnel endpoints.
    pub tunnel_sources: Vec<Ipv4Addr>,
}

impl GatewaySpec {
    /// The gateway's part of a site intent: every tenant network (on its bridge, see
    /// [`NetlinkHost::device_names`](super::NetlinkHost::device_names), with its tunnel
    /// [`NetlinkHost::tunnel_name`](super::NetlinkHost::tunnel_name) when the intent has peers
    /// of the tenant), every exposure, and the peers' distinct tunnel endpoints.
    pub fn for_site(
        intent: &meridian_common::model::SiteIntent,
        wan: impl Into<String>,
        egress_address: Ipv4Addr,
    ) -> Self {
        Self {
            wan: wan.into(),
            egress_address,
            tenants: intent
                .networks
                .iter()
                .map(|n| GatewayTenant {
                    tenant: n.tenant.clone(),
                    subnet: n.subnet,
                    gateway: n.gateway,
                    interface: super::NetlinkHost::device_names(n.vni).0,
                    tunnel: intent
                        .peers
                        .iter()
                        .any(|p| p.tenant == n.tenant)
                        .then(|| super::NetlinkHost::tunnel_name(n.vni)),
                })
                .collect(),
            exposures: intent.exposures.clone(),
            tunnel_sources: intent
                .peers
                .iter()
                .map(|p| p.endpoint)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }
}

/// The real [`WanGateway`]: nftables through `nft -j`, optionally inside a network namespace
/// (through `ip netns exec`, so the process itself never changes namespace).
#[derive(Debug, Clone)]
pub struct NftGateway {
    table: String,
    netns: Option<String>,
}

/// The table name used when none is given.
pub const DEFAULT_TABLE: &str = "meridian_gw";

/// What `nft -j list table` found.
enum Installed {
    /// No such table.
    Absent,
    /// The table, in the shape of the rendering.
    Read(Ruleset),
    /// The table holds something outside the `nftables` schema (so it is not ours as rendered).
    Unreadable(serde_json::Error),
}

impl NftGateway {
    /// A gateway that owns table `ip <table>` in namespace `netns` (`None`: the agent's own).
    pub fn new(table: impl Into<String>, netns: Option<String>) -> Self {
        Self {
            table: table.into(),
            netns,
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn nft(&self, args: &[&str], stdin: Option<&str>) -> Result<String, GatewayError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        };
        cmd.args(args);
        let command = format!("nft {}", args.join(" "));
        let spawn = |source| GatewayError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.map_err(spawn)?;
        }
        let out = child.wait_with_output().await.map_err(spawn)?;
        if !out.status.success() {
            return Err(GatewayError::Nft {
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nft -j list table ip <table>`, as printed.
    async fn list(&self) -> Result<String, GatewayError> {
        self.nft(&["-j", "list", "table", "ip", &self.table], None)
            .await
    }

    /// The installed table.
    async fn installed(&self) -> Result<Installed, GatewayError> {
        let out = match self.list().await {
            Ok(out) => out,
            Err(GatewayError::Nft { stderr, .. })
                if stderr.contains("No such file") || stderr.contains("does not exist") =>
            {
                return Ok(Installed::Absent);
            }
            Err(e) => return Err(e),
        };
        Ok(match serde_json::from_str::<Nftables<'static>>(&out) {
            Ok(listing) => Installed::Read(Ruleset::from_listing(listing)),
            Err(e) => Installed::Unreadable(e),
        })
    }

    /// The nft JSON batch that replaces the table with `spec`'s rendering.
    pub fn render(&self, spec: &GatewaySpec) -> Result<Nftables<'static>, GatewayError> {
        let rs = Ruleset::render(&self.table, spec)?;
        let table = || {
            NfListObject::Table(Table {
                family: NfFamily::IP,
                name: Cow::Owned(self.table.clone()),
                handle: None,
            })
        };
        let mut batch = Batch::new();
        batch.add(table());
        batch.delete(table());
        batch.add(table());
        for c in rs.chains {
            batch.add(NfListObject::Chain(c));
        }
        for r in rs.rules {
            batch.add(NfListObject::Rule(r));
        }
        Ok(batch.to_nftables())
    }
}

#[async_trait::async_trait]
impl WanGateway for NftGateway {
    async fn counters(&self) -> Result<Option<Counters>, GatewayError> {
        let out = match self.list().await {
            Ok(out) => out,
            Err(GatewayError::Nft { stderr, .. })
                if stderr.contains("No such file") || stderr.contains("does not exist") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let listing: Nftables<'static> = serde_json::from_str(&out).map_err(GatewayError::Parse)?;
        Ok(Some(counters_by_comment(&listing)))
    }

    async fn apply(&self, desired: &GatewaySpec) -> Result<ChangeReport, GatewayError> {
        let want = Ruleset::render(&self.table, desired)?;
        let have = self.installed().await?;
        let mut report = ChangeReport::default();
        if matches!(&have, Installed::Read(have) if *have == want) {
            return Ok(report);
        }
        let batch = serde_json::to_string(&self.render(desired)?)
            .expect("the nftables schema always serializes to JSON");
        self.nft(&["-j", "-f", "-"], Some(&batch)).await?;
        match have {
            Installed::Absent => report.push(format!("create table ip {}", self.table)),
            Installed::Unreadable(e) => report.push(format!(
                "replace table ip {} (its listing is outside the nftables schema: {e})",
                self.table
            )),
            Installed::Read(have) => {
                for r in &have.rules {
                    if !want.rules.contains(r) {
                        report.push(format!("delete rule {}: {}", r.chain, comment(r)));
                    }
                }
                for r in &want.rules {
                    if !have.rules.contains(r) {
                        report.push(format!("add rule {}: {}", r.chain, comment(r)));
                    }
                }
                if !report.changed() {
                    report.push(format!("replace table ip {} (chains differ)", self.table));
                }
            }
        }
        Ok(report)
    }

    async fn remove(&self) -> Result<ChangeReport, GatewayError> {
        let mut report = ChangeReport::default();
        if !matches!(self.installed().await?, Installed::Absent) {
            self.nft(&["delete", "table", "ip", &self.table], None)
                .await?;
            report.push(format!("delete table ip {}", self.table));
        }
        Ok(report)
    }
}

/// A table's chains and rules as `nft -j list` prints them, handles dropped and counter values
/// zeroed, so that a listing and a rendering compare equal when the same ruleset is meant.
#[derive(Debug, Clone, PartialEq, Default)]
struct Ruleset {
    chains: Vec<Chain<'static>>,
    rules: Vec<Rule<'static>>,
}

const PRE: &str = "prerouting";
const POST: &str = "postrouting";
const FORWARD: &str = "forward_filter";
const INPUT: &str = "input_filter";

fn comment<'a>(rule: &'a Rule<'_>) -> &'a str {
    rule.comment.as_deref().unwrap_or_default()
}

/// An anonymous counter starting at zero (`{"counter": {"packets": 0, "bytes": 0}}`).
fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(Some(AnonymousCounter {
        packets: Some(0),
        bytes: Some(0),
    })))
}

fn cmp(op: Operator, left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    cmp(Operator::EQ, left, right)
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

fn text(value: impl ToString) -> Expression<'static> {
    Expression::String(Cow::Owned(value.to_string()))
}

fn port(p: u16) -> Expression<'static> {
    Expression::Number(u32::from(p))
}

/// A subnet as nft prints it back: a bare address for a /32, a `prefix` otherwise.
fn prefix(net: &Ipv4Net) -> Expression<'static> {
    if net.prefix_len() == 32 {
        text(net.addr())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(text(net.addr())),
            len: u32::from(net.prefix_len()),
        }))
    }
}

/// The comment of a tenant's egress accounting rule.
fn egress_comment(tenant: &TenantId) -> String {
    format!("{tenant} egress bytes")
}

/// Packets per rule comment in a listing (rules sharing a comment add up), and bytes out of
/// the WAN per tenant (its egress accounting rule).
fn counters_by_comment(listing: &Nftables<'_>) -> Counters {
    let mut out = Counters::default();
    for item in listing.objects.iter() {
        let NfObject::ListObject(NfListObject::Rule(rule)) = item else {
            continue;
        };
        let (packets, bytes) = rule
            .expr
            .iter()
            .find_map(|s| match s {
                Statement::Counter(Counter::Anonymous(Some(c))) => Some((c.packets, c.bytes)),
                _ => None,
            })
            .unwrap_or((None, None));
        let wide = |n: Option<usize>| u64::try_from(n.unwrap_or(0)).unwrap_or(u64::MAX);
        let name = comment(rule);
        *out.packets.entry(name.to_owned()).or_insert(0) += wide(packets);
        if let Some(tenant) = name
            .strip_suffix(" egress bytes")
            .and_then(|t| TenantId::parse(t).ok())
        {
            *out.egress_bytes.entry(tenant).or_insert(0) += wide(bytes);
        }
    }
    out
}

impl Ruleset {
    fn render(table: &str, spec: &GatewaySpec) -> Result<Self, GatewayError> {
        let mut seen = std::collections::BTreeSet::new();
        for e in &spec.exposures {
            if !seen.insert((e.public_ip, e.public_port, e.protocol)) {
                return Err(GatewayError::Spec(format!(
                    "{}:{} ({}) is published twice",
                    e.public_ip,
                    e.public_port,
                    e.protocol.as_str()
                )));
            }
            let Some(t) = spec.tenants.iter().find(|t| t.tenant == e.tenant) else {
                return Err(GatewayError::Spec(format!(
                    "exposure of {} names tenant {} that has no network on the gateway",
                    e.workload, e.tenant
                )));
            };
            if !t.subnet.contains(e.backend_ip) {
                return Err(GatewayError::Spec(format!(
                    "backend {} of {} is outside tenant {}'s subnet {}",
                    e.backend_ip, e.workload, e.tenant, t.subnet
                )));
            }
        }
        let chain = |name: &str, kind, hook, prio, policy| Chain {
            family: NfFamily::IP,
            table: Cow::Owned(table.to_owned()),
            name: Cow::Owned(name.to_owned()),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(policy),
            ..Chain::default()
        };
        let mut rs = Ruleset {
            chains: vec![
                chain(
                    PRE,
                    NfChainType::NAT,
                    NfHook::Prerouting,
                    -100,
                    NfChainPolicy::Accept,
                ),
                chain(
                    POST,
                    NfChainType::NAT,
                    NfHook::Postrouting,
                    100,
                    NfChainPolicy::Accept,
                ),
                chain(
                    FORWARD,
                    NfChainType::Filter,
                    NfHook::Forward,
                    0,
                    NfChainPolicy::Drop,
                ),
                chain(
                    INPUT,
                    NfChainType::Filter,
                    NfHook::Input,
                    0,
                    NfChainPolicy::Accept,
                ),
            ],
            rules: Vec::new(),
        };
        let mut exposures = spec.exposures.clone();
        exposures.sort_by(|a, b| {
            (&a.tenant, &a.workload, a.public_port).cmp(&(&b.tenant, &b.workload, b.public_port))
        });
        let mut tenants = spec.tenants.clone();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let rule = |chain: &str, comment: String, expr: Vec<Statement<'static>>| Rule {
            family: NfFamily::IP,
            table: Cow::Owned(table.to_owned()),
            chain: Cow::Owned(chain.to_owned()),
            expr: Cow::Owned(expr),
            comment: Some(Cow::Owned(comment)),
            ..Rule::default()
        };

        for e in &exposures {
            let p = e.protocol.as_str();
            rs.rules.push(rule(
                PRE,
                format!("{}/{} dnat {p}/{}", e.tenant, e.workload, e.public_port),
                vec![
                    eq(payload("ip", "daddr"), text(e.public_ip)),
                    eq(payload(p, "dport"), port(e.public_port)),
                    counter(),
                    Statement::DNAT(Some(NAT {
                        addr: Some(text(e.backend_ip)),
                        family: None,
                        port: Some(port(e.backend_port)),
                        flags: None,
                    })),
                ],
            ));
        }
        for t in &tenants {
            rs.rules.push(rule(
                POST,
                format!("{} snat", t.tenant),
                vec![
                    eq(payload("ip", "saddr"), prefix(&t.subnet)),
                    eq(meta(MetaKey::Oifname), text(&spec.wan)),
                    counter(),
                    Statement::SNAT(Some(NAT {
                        addr: Some(text(spec.egress_address)),
                        family: None,
                        port: None,
                        flags: None,
                    })),
                ],
            ));
        }
        // Accounting first, before `established` accepts a flow's later packets: every packet
        // from a tenant's bridge out of the WAN (its own connections and its endpoints'
        // answers) counts towards the tenant's egress bytes. No verdict: the rules below decide.
        for t in &tenants {
            rs.rules.push(rule(
                FORWARD,
                egress_comment(&t.tenant),
                vec![
                    eq(meta(MetaKey::Iifname), text(&t.interface)),
                    eq(meta(MetaKey::Oifname), text(&spec.wan)),
                    counter(),
                ],
            ));
        }
        rs.rules.push(rule(
            FORWARD,
            "established".into(),
            vec![
                cmp(
                    Operator::IN,
                    ct("state"),
                    Expression::List(vec![text("established"), text("related")]),
                ),
                counter(),
                Statement::Accept(None),
            ],
        ));
        for e in &exposures {
            let t = tenants
                .iter()
                .find(|t| t.tenant == e.tenant)
                .ok_or_else(|| GatewayError::Spec(format!("tenant {} vanished", e.tenant)))?;
            let p = e.protocol.as_str();
            rs.rules.push(rule(
                FORWARD,
                format!(
                    "{}/{} published {p}/{}",
                    e.tenant, e.workload, e.public_port
                ),
                vec![
                    eq(meta(MetaKey::Iifname), text(&spec.wan)),
                    eq(meta(MetaKey::Oifname), text(&t.interface)),
                    eq(payload("ip", "daddr"), text(e.backend_ip)),
                    eq(payload(p, "dport"), port(e.backend_port)),
                    // `in`: a bit test; `==` would demand exactly the DNAT bit.
                    cmp(Operator::IN, ct("status"), text("dnat")),
                    counter(),
                    Statement::Accept(None),
                ],
            ));
        }
        for t in &tenants {
            rs.rules.push(rule(
                FORWARD,
                format!("{} egress", t.tenant),
                vec![
                    eq(meta(MetaKey::Iifname), text(&t.interface)),
                    eq(meta(MetaKey::Oifname), text(&spec.wan)),
                    counter(),
                    Statement::Accept(None),
                ],
            ));
            if let Some(tunnel) = &t.tunnel {
                for (from, to, what) in [
                    (&t.interface, tunnel, "to its other sites"),
                    (tunnel, &t.interface, "from its other sites"),
                ] {
                    rs.rules.push(rule(
                        FORWARD,
                        format!("{} {what}", t.tenant),
                        vec![
                            eq(meta(MetaKey::Iifname), text(from)),
                            eq(meta(MetaKey::Oifname), text(to)),
                            counter(),
                            Statement::Accept(None),
                        ],
                    ));
                }
            }
        }
        rs.rules.push(rule(
            FORWARD,
            "default drop".into(),
            vec![counter(), Statement::Drop(None)],
        ));
        for t in &tenants {
            rs.rules.push(rule(
                INPUT,
                format!("{} only its gateway", t.tenant),
                vec![
                    eq(meta(MetaKey::Iifname), text(&t.interface)),
                    cmp(Operator::NEQ, payload("ip", "daddr"), text(t.gateway)),
                    counter(),
                    Statement::Drop(None),
                ],
            ));
            if let Some(tunnel) = &t.tunnel {
                rs.rules.push(rule(
                    INPUT,
                    format!("{} only its gateway from its other sites", t.tenant),
                    vec![
                        eq(meta(MetaKey::Iifname), text(tunnel)),
                        cmp(Operator::NEQ, payload("ip", "daddr"), text(t.gateway)),
                        counter(),
                        Statement::Drop(None),
                    ],
                ));
            }
        }
        // The tenant segments' VXLAN (`mvx<vni>`, UDP 4789) belongs to the underlay: Linux binds
        // it on every address, so without this anyone on the WAN could put frames into a
        // tenant's bridge (and have the gateway learn their MAC behind the WAN).
        rs.rules.push(rule(
            INPUT,
            "segments from the wan".into(),
            vec![
                eq(meta(MetaKey::Iifname), text(&spec.wan)),
                eq(payload("udp", "dport"), port(VXLAN_PORT)),
                counter(),
                Statement::Drop(None),
            ],
        ));
        // Site-to-site tunnel packets from the WAN: only from the peer sites' endpoints.
        if !spec.tunnel_sources.is_empty() || tenants.iter().any(|t| t.tunnel.is_some()) {
            let tunnel_port = || eq(payload("udp", "dport"), port(SITE_TUNNEL_PORT));
            let sources: std::collections::BTreeSet<Ipv4Addr> =
                spec.tunnel_sources.iter().copied().collect();
            for src in sources {
                rs.rules.push(rule(
                    INPUT,
                    format!("tunnel from {src}"),
                    vec![
                        eq(meta(MetaKey::Iifname), text(&spec.wan)),
                        tunnel_port(),
                        eq(payload("ip", "saddr"), text(src)),
                        counter(),
                        Statement::Accept(None),
                    ],
                ));
            }
            rs.rules.push(rule(
                INPUT,
                "tunnel from elsewhere".into(),
                vec![
                    eq(meta(MetaKey::Iifname), text(&spec.wan)),
                    tunnel_port(),
                    counter(),
                    Statement::Drop(None),
                ],
            ));
        }
        Ok(rs)
    }

    /// The chains and rules of a listing, handles dropped and anonymous counters zeroed.
    fn from_listing(listing: Nftables<'static>) -> Self {
        let mut rs = Ruleset::default();
        for item in listing.objects.into_owned() {
            match item {
                NfObject::ListObject(NfListObject::Chain(mut c)) => {
                    c.handle = None;
                    rs.chains.push(c);
                }
                NfObject::ListObject(NfListObject::Rule(mut r)) => {
                    r.handle = None;
                    r.expr = r
                        .expr
                        .iter()
                        .map(|s| match s {
                            Statement::Counter(Counter::Anonymous(_)) => counter(),
                            s => s.clone(),
                        })
                        .collect();
                    rs.rules.push(r);
                }
                _ => {}
            }
        }
        rs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::WorkloadId;
    use meridian_common::model::Protocol;
    use serde_json::{Value, json};

    fn spec() -> GatewaySpec {
        GatewaySpec {
            wan: "wan0".into(),
            egress_address: Ipv4Addr::new(203, 0, 113, 10),
            tenants: vec![GatewayTenant {
                tenant: TenantId::parse("tenant-a").unwrap(),
                subnet: Ipv4Net::parse("10.20.0.0/24").unwrap(),
                gateway: Ipv4Addr::new(10, 20, 0, 1),
                interface: "mbr10101".into(),
                tunnel: None,
            }],
            exposures: vec![Exposure {
                tenant: TenantId::parse("tenant-a").unwrap(),
                workload: WorkloadId::parse("llm").unwrap(),
                public_ip: Ipv4Addr::new(203, 0, 113, 10),
                public_port: 443,
                protocol: Protocol::Tcp,
                backend_ip: Ipv4Addr::new(10, 20, 0, 5),
                backend_port: 8443,
            }],
            tunnel_sources: vec![],
        }
    }

    /// `spec()` with tenant A on two more sites (tunnel `msx10101`, peer endpoints .17 and
    /// .33) and tenant B on this site only.
    fn spec_with_tunnel() -> GatewaySpec {
        let mut s = spec();
        s.tenants[0].tunnel = Some("msx10101".into());
        s.tenants.push(GatewayTenant {
            tenant: TenantId::parse("tenant-b").unwrap(),
            subnet: Ipv4Net::parse("10.30.0.0/24").unwrap(),
            gateway: Ipv4Addr::new(10, 30, 0, 1),
            interface: "mbr10102".into(),
            tunnel: None,
        });
        s.tunnel_sources = vec![
            Ipv4Addr::new(203, 0, 113, 33),
            Ipv4Addr::new(203, 0, 113, 17),
            Ipv4Addr::new(203, 0, 113, 33),
        ];
        s
    }

    /// `nft -j list table ip meridian_gw` (nft 1.0.6) after applying `spec()`, with traffic
    /// counted on two rules.
    const LISTING: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "meridian_gw", "handle": 2}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "postrouting", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "forward_filter", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "input_filter", "handle": 4, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "prerouting", "handle": 5, "comment": "tenant-a/llm dnat tcp/443", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "203.0.113.10"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}}, {"counter": {"packets": 3, "bytes": 180}}, {"dnat": {"addr": "10.20.0.5", "port": 8443}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "postrouting", "handle": 6, "comment": "tenant-a snat", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.20.0.0", "len": 24}}}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"snat": {"addr": "203.0.113.10"}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 17, "comment": "tenant-a egress bytes", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 5, "bytes": 3140}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 7, "comment": "established", "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 8, "comment": "tenant-a/llm published tcp/443", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.20.0.5"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}}, {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 9, "comment": "tenant-a egress", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 10, "comment": "default drop", "expr": [{"counter": {"packets": 2, "bytes": 96}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 11, "comment": "tenant-a only its gateway", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.20.0.1"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 12, "comment": "segments from the wan", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 4789}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}
]}"#;

    /// `nft -j list table ip meridian_gw` (nft 1.0.6) after applying `spec_with_tunnel()`, with
    /// traffic counted to the other sites and one packet injected into the tunnel port.
    const TUNNEL_LISTING: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "ip", "name": "meridian_gw", "handle": 2}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "postrouting", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "forward_filter", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
{"chain": {"family": "ip", "table": "meridian_gw", "name": "input_filter", "handle": 4, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "prerouting", "handle": 5, "comment": "tenant-a/llm dnat tcp/443", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "203.0.113.10"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}}, {"counter": {"packets": 0, "bytes": 0}}, {"dnat": {"addr": "10.20.0.5", "port": 8443}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "postrouting", "handle": 6, "comment": "tenant-a snat", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.20.0.0", "len": 24}}}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"snat": {"addr": "203.0.113.10"}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "postrouting", "handle": 7, "comment": "tenant-b snat", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.30.0.0", "len": 24}}}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"snat": {"addr": "203.0.113.10"}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 30, "comment": "tenant-a egress bytes", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 31, "comment": "tenant-b egress bytes", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10102"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 2, "bytes": 1500}}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 8, "comment": "established", "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 9, "comment": "tenant-a/llm published tcp/443", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.20.0.5"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}}, {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 10, "comment": "tenant-a egress", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 11, "comment": "tenant-a to its other sites", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "msx10101"}}, {"counter": {"packets": 4, "bytes": 336}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 12, "comment": "tenant-a from its other sites", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "msx10101"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "mbr10101"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 13, "comment": "tenant-b egress", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10102"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "forward_filter", "handle": 14, "comment": "default drop", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 15, "comment": "tenant-a only its gateway", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.20.0.1"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 16, "comment": "tenant-a only its gateway from its other sites", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "msx10101"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.20.0.1"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 17, "comment": "tenant-b only its gateway", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10102"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.30.0.1"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 18, "comment": "segments from the wan", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 4789}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 19, "comment": "tunnel from 203.0.113.17", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 8472}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "203.0.113.17"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 20, "comment": "tunnel from 203.0.113.33", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 8472}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "203.0.113.33"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "meridian_gw", "chain": "input_filter", "handle": 21, "comment": "tunnel from elsewhere", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 8472}}, {"counter": {"packets": 1, "bytes": 78}}, {"drop": null}]}}
]}"#;

    #[test]
    fn renders_one_atomic_batch() {
        let batch = NftGateway::new("gw", None).render(&spec()).unwrap();
        let batch = serde_json::to_value(&batch).unwrap();
        let items = batch["nftables"].as_array().unwrap();
        // add + delete + add of the table come first: one transaction replaces it.
        assert!(items[0]["add"]["table"].is_object());
        assert!(items[1]["delete"]["table"].is_object());
        assert!(items[2]["add"]["table"].is_object());
        // Then the 4 chains and the 9 rules of one tenant with one exposure.
        assert_eq!(items.len(), 3 + 4 + 9);
        assert_eq!(
            items[5]["add"]["chain"],
            json!({"family": "ip", "table": "gw", "name": "forward_filter", "type": "filter",
                "hook": "forward", "prio": 0, "policy": "drop"})
        );
        let rules: Vec<&Value> = items.iter().filter_map(|i| i["add"].get("rule")).collect();
        assert_eq!(rules.len(), 9);
        assert_eq!(rules[0]["comment"], "tenant-a/llm dnat tcp/443");
        assert_eq!(
            rules[0]["expr"][2],
            json!({"counter": {"packets": 0, "bytes": 0}})
        );
        assert_eq!(
            rules[0]["expr"][3],
            json!({"dnat": {"addr": "10.20.0.5", "port": 8443}})
        );
        assert_eq!(
            rules[1]["expr"][0]["match"]["right"],
            json!({"prefix": {"addr": "10.20.0.0", "len": 24}})
        );
        // The tenant's egress accounting: counted, no verdict.
        assert_eq!(rules[2]["comment"], "tenant-a egress bytes");
        assert_eq!(
            rules[2]["expr"],
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan0"}},
                {"counter": {"packets": 0, "bytes": 0}}
            ])
        );
        assert_eq!(
            rules[4]["expr"][4],
            json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}})
        );
        assert_eq!(
            rules[6]["expr"],
            json!([{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}])
        );
    }

    #[test]
    fn the_listing_of_the_rendering_reads_back_equal() {
        let listing: Nftables<'static> = serde_json::from_str(LISTING).unwrap();
        let installed = Ruleset::from_listing(listing);
        assert_eq!(installed, Ruleset::render(DEFAULT_TABLE, &spec()).unwrap());
        let mut other = spec();
        other.exposures[0].backend_port = 8444;
        assert_ne!(installed, Ruleset::render(DEFAULT_TABLE, &other).unwrap());
    }

    #[test]
    fn the_listing_of_a_rendering_with_tunnels_reads_back_equal() {
        let listing: Nftables<'static> = serde_json::from_str(TUNNEL_LISTING).unwrap();
        let installed = Ruleset::from_listing(listing);
        assert_eq!(
            installed,
            Ruleset::render(DEFAULT_TABLE, &spec_with_tunnel()).unwrap()
        );
        let mut fewer = spec_with_tunnel();
        fewer
            .tunnel_sources
            .retain(|s| *s != Ipv4Addr::new(203, 0, 113, 33));
        assert_ne!(installed, Ruleset::render(DEFAULT_TABLE, &fewer).unwrap());
        let mut none = spec_with_tunnel();
        none.tenants[0].tunnel = None;
        assert_ne!(installed, Ruleset::render(DEFAULT_TABLE, &none).unwrap());
        let counters = counters_by_comment(&serde_json::from_str(TUNNEL_LISTING).unwrap());
        assert_eq!(counters.packets["tunnel from elsewhere"], 1);
        assert_eq!(counters.packets["tenant-a to its other sites"], 4);
        assert_eq!(counters.packets["tunnel from 203.0.113.17"], 0);
        assert_eq!(
            counters.egress_bytes[&TenantId::parse("tenant-b").unwrap()],
            1500
        );
    }

    #[test]
    fn tunnels_are_let_through_per_tenant_and_only_from_the_peer_endpoints() {
        let rs = Ruleset::render(DEFAULT_TABLE, &spec_with_tunnel()).unwrap();
        let comments = |chain: &str| -> Vec<String> {
            rs.rules
                .iter()
                .filter(|r| r.chain == chain)
                .map(|r| comment(r).to_owned())
                .collect()
        };
        assert_eq!(
            comments(FORWARD),
            [
                "tenant-a egress bytes",
                "tenant-b egress bytes",
                "established",
                "tenant-a/llm published tcp/443",
                "tenant-a egress",
                "tenant-a to its other sites",
                "tenant-a from its other sites",
                "tenant-b egress",
                "default drop"
            ]
        );
        // Sources sorted and deduplicated; then everyone else's tunnel packets dropped.
        assert_eq!(
            comments(INPUT),
            [
                "tenant-a only its gateway",
                "tenant-a only its gateway from its other sites",
                "tenant-b only its gateway",
                "segments from the wan",
                "tunnel from 203.0.113.17",
                "tunnel from 203.0.113.33",
                "tunnel from elsewhere"
            ]
        );
        let to_sites = rs
            .rules
            .iter()
            .find(|r| comment(r) == "tenant-a to its other sites")
            .unwrap();
        assert_eq!(
            serde_json::to_value(&to_sites.expr[..2]).unwrap(),
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "mbr10101"}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "msx10101"}}
            ])
        );
        // Without tunnels nothing about them is rendered; the segments' VXLAN port is closed to
        // the WAN all the same.
        let plain = Ruleset::render(DEFAULT_TABLE, &spec()).unwrap();
        assert!(
            plain
                .rules
                .iter()
                .all(|r| !comment(r).contains("tunnel") && !comment(r).contains("other sites"))
        );
        let segments = plain
            .rules
            .iter()
            .find(|r| comment(r) == "segments from the wan")
            .expect("the segments' port is closed to the WAN");
        assert_eq!(
            serde_json::to_value(&segments.expr[..2]).unwrap(),
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan0"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 4789}}
            ])
        );
    }

    #[test]
    fn for_site_fills_tunnels_from_the_peers() {
        use meridian_common::ids::{Generation, SiteId};
        use meridian_common::model::{SiteIntent, TenantNetworkIntent, TenantPeer};
        let net = |t: &str, vni: u32, third: u8| TenantNetworkIntent {
            tenant: TenantId::parse(t).unwrap(),
            vni,
            table: 100 + vni % 100,
            subnet: Ipv4Net::new(Ipv4Addr::new(10, third, 1, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(10, third, 1, 1),
        };
        let peer = |t: &str, site: &str, endpoint: [u8; 4], third: u8| TenantPeer {
            tenant: TenantId::parse(t).unwrap(),
            site: SiteId::parse(site).unwrap(),
            endpoint: Ipv4Addr::from(endpoint),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, third, 2, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(10, third, 2, 1),
        };
        let intent = SiteIntent {
            networks: vec![net("tenant-a", 10001, 1), net("tenant-b", 10002, 2)],
            tunnel_endpoint: Some(Ipv4Addr::new(203, 0, 113, 1)),
            peers: vec![
                peer("tenant-a", "site-2", [203, 0, 113, 17], 1),
                peer("tenant-a", "site-3", [203, 0, 113, 33], 1),
            ],
            ..SiteIntent::empty(SiteId::parse("site-1").unwrap(), Generation::new(1))
        };
        let s = GatewaySpec::for_site(&intent, "wan0", Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(s.tenants[0].tunnel.as_deref(), Some("msx10001"));
        assert_eq!(s.tenants[1].tunnel, None);
        assert_eq!(
            s.tunnel_sources,
            [
                Ipv4Addr::new(203, 0, 113, 17),
                Ipv4Addr::new(203, 0, 113, 33)
            ]
        );
    }

    #[test]
    fn counts_packets_by_comment() {
        let listing: Nftables<'static> = serde_json::from_str(LISTING).unwrap();
        let counters = counters_by_comment(&listing);
        assert_eq!(counters.packets.len(), 9);
        assert_eq!(counters.packets["tenant-a/llm dnat tcp/443"], 3);
        assert_eq!(counters.packets["default drop"], 2);
        assert_eq!(counters.packets["tenant-a egress"], 0);
        // Bytes out of the WAN per tenant, from its accounting rule.
        let a = TenantId::parse("tenant-a").unwrap();
        assert_eq!(counters.egress_bytes, BTreeMap::from([(a, 3140)]));
    }

    #[test]
    fn a_statement_outside_the_schema_fails_the_listing() {
        // `meta day "Monday"` (a rule someone added by hand) lists as a `meta` expression with
        // key `day`, which nftables 0.6.3's `MetaKey` lacks: such a table reads as
        // `Installed::Unreadable`, and apply replaces it.
        let foreign = LISTING.replacen(
            r#"{"meta": {"key": "iifname"}}, "right": "mbr10101"}}"#,
            r#"{"meta": {"key": "day"}}, "right": "Monday"}}"#,
            1,
        );
        assert_ne!(foreign, LISTING);
        assert!(serde_json::from_str::<Nftables<'static>>(&foreign).is_err());
        let _: Value = serde_json::from_str(&foreign).unwrap();
    }

    #[test]
    fn refuses_a_backend_outside_the_tenant() {
        let mut s = spec();
        s.exposures[0].backend_ip = Ipv4Addr::new(10, 30, 0, 5);
        assert!(matches!(
            Ruleset::render(DEFAULT_TABLE, &s),
            Err(GatewayError::Spec(_))
        ));
        let mut s = spec();
        s.exposures.push(s.exposures[0].clone());
        assert!(matches!(
            Ruleset::render(DEFAULT_TABLE, &s),
            Err(GatewayError::Spec(_))
        ));
    }
}

//! [`WanGateway`] over nftables: the JSON ruleset is rendered here and handed to `nft -j -f -`,
//! which commits a whole batch as one transaction.
//!
//! The table (`ip <table>`) has four chains:
//! - `prerouting` (nat, prio -100): per exposure, `ip daddr <public> <proto> dport <port>`
//!   DNAT to the backend.
//! - `postrouting` (nat, prio 100): per tenant, `ip saddr <subnet> oifname <wan>` SNAT to the
//!   site's egress address.
//! - `forward_filter` (filter, policy **drop**): established/related; per exposure, new flows
//!   from the WAN to the backend only with `ct status dnat`; per tenant, its own bridge to the
//!   WAN; a final counted drop. Nothing goes from one tenant bridge to another.
//! - `input_filter` (filter, policy accept): a tenant may reach its own gateway address on the
//!   gateway node and nothing else of it (not the other tenants' gateways).
//!
//! Every rule has a counter and a comment naming what it is for. Applying reads the installed
//! table (`nft -j list table`), compares chains and rules with the rendering (counter values
//! ignored), and if they differ deletes and re-creates the table in one batch, so a reader
//! never sees a half-written ruleset.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use meridian_common::ids::TenantId;
use meridian_common::model::{Exposure, Ipv4Net, Protocol};
use serde_json::{Value, json};

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
    /// `nft -j` printed something that is not the expected JSON.
    #[error("cannot parse the output of `nft -j`")]
    Parse(#[source] serde_json::Error),
    /// The spec is inconsistent.
    #[error("invalid gateway spec: {0}")]
    Spec(String),
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
}

impl GatewaySpec {
    /// The gateway's part of a site intent: every tenant network (on its bridge, see
    /// [`NetlinkHost::device_names`](super::NetlinkHost::device_names)) and every exposure.
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
                })
                .collect(),
            exposures: intent.exposures.clone(),
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

    /// The installed table as (chains, rules), or `None` when there is no table.
    async fn installed(&self) -> Result<Option<Ruleset>, GatewayError> {
        let out = match self
            .nft(&["-j", "list", "table", "ip", &self.table], None)
            .await
        {
            Ok(out) => out,
            Err(GatewayError::Nft { stderr, .. })
                if stderr.contains("No such file") || stderr.contains("does not exist") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let v: Value = serde_json::from_str(&out).map_err(GatewayError::Parse)?;
        Ok(Some(Ruleset::from_listing(&v)))
    }

    /// Packet counts per rule comment (`"tenant-a/web dnat"` etc.), for observation and tests.
    pub async fn counters(&self) -> Result<BTreeMap<String, u64>, GatewayError> {
        let out = self
            .nft(&["-j", "list", "table", "ip", &self.table], None)
            .await?;
        let v: Value = serde_json::from_str(&out).map_err(GatewayError::Parse)?;
        let mut map = BTreeMap::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let comment = rule["comment"].as_str().unwrap_or_default().to_owned();
            let packets = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                .unwrap_or(0);
            *map.entry(comment).or_insert(0) += packets;
        }
        Ok(map)
    }

    /// The nft JSON batch that replaces the table with `spec`'s rendering.
    pub fn render(&self, spec: &GatewaySpec) -> Result<Value, GatewayError> {
        let rs = Ruleset::render(spec)?;
        let t = &self.table;
        let mut batch = vec![
            json!({"add": {"table": {"family": "ip", "name": t}}}),
            json!({"delete": {"table": {"family": "ip", "name": t}}}),
            json!({"add": {"table": {"family": "ip", "name": t}}}),
        ];
        for c in &rs.chains {
            batch.push(json!({"add": {"chain": {
                "family": "ip", "table": t, "name": c.name, "type": c.kind,
                "hook": c.hook, "prio": c.prio, "policy": c.policy}}}));
        }
        for r in &rs.rules {
            batch.push(json!({"add": {"rule": {
                "family": "ip", "table": t, "chain": r.chain, "comment": r.comment,
                "expr": r.expr}}}));
        }
        Ok(json!({ "nftables": batch }))
    }
}

#[async_trait::async_trait]
impl WanGateway for NftGateway {
    async fn apply(&self, desired: &GatewaySpec) -> Result<ChangeReport, GatewayError> {
        let want = Ruleset::render(desired)?;
        let have = self.installed().await?;
        let mut report = ChangeReport::default();
        if have.as_ref() == Some(&want) {
            return Ok(report);
        }
        let batch = self.render(desired)?;
        self.nft(&["-j", "-f", "-"], Some(&batch.to_string()))
            .await?;
        match have {
            None => report.push(format!("create table ip {}", self.table)),
            Some(have) => {
                for r in &have.rules {
                    if !want.rules.contains(r) {
                        report.push(format!("delete rule {}: {}", r.chain, r.comment));
                    }
                }
                for r in &want.rules {
                    if !have.rules.contains(r) {
                        report.push(format!("add rule {}: {}", r.chain, r.comment));
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
        if self.installed().await?.is_some() {
            self.nft(&["delete", "table", "ip", &self.table], None)
                .await?;
            report.push(format!("delete table ip {}", self.table));
        }
        Ok(report)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Chain {
    name: String,
    kind: String,
    hook: String,
    prio: i64,
    policy: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    chain: String,
    comment: String,
    expr: Vec<Value>,
}

/// A table's content in the shape `nft -j list` prints it, counter values zeroed.
#[derive(Debug, Clone, PartialEq, Default)]
struct Ruleset {
    chains: Vec<Chain>,
    rules: Vec<Rule>,
}

const PRE: &str = "prerouting";
const POST: &str = "postrouting";
const FORWARD: &str = "forward_filter";
const INPUT: &str = "input_filter";

fn counter() -> Value {
    json!({"counter": {"packets": 0, "bytes": 0}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn prefix(net: &Ipv4Net) -> Value {
    if net.prefix_len() == 32 {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
    }
}

impl Ruleset {
    fn render(spec: &GatewaySpec) -> Result<Self, GatewayError> {
        let mut seen = std::collections::BTreeSet::new();
        for e in &spec.exposures {
            if !seen.insert((e.public_ip, e.public_port, e.protocol)) {
                return Err(GatewayError::Spec(format!(
                    "{}:{} ({}) is published twice",
                    e.public_ip,
                    e.public_port,
                    proto_name(e.protocol)
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
        let chain = |name: &str, kind: &str, hook: &str, prio: i64, policy: &str| Chain {
            name: name.into(),
            kind: kind.into(),
            hook: hook.into(),
            prio,
            policy: policy.into(),
        };
        let mut rs = Ruleset {
            chains: vec![
                chain(PRE, "nat", "prerouting", -100, "accept"),
                chain(POST, "nat", "postrouting", 100, "accept"),
                chain(FORWARD, "filter", "forward", 0, "drop"),
                chain(INPUT, "filter", "input", 0, "accept"),
            ],
            rules: Vec::new(),
        };
        let mut exposures = spec.exposures.clone();
        exposures.sort_by(|a, b| {
            (&a.tenant, &a.workload, a.public_port).cmp(&(&b.tenant, &b.workload, b.public_port))
        });
        let mut tenants = spec.tenants.clone();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let rule = |chain: &str, comment: String, expr: Vec<Value>| Rule {
            chain: chain.into(),
            comment,
            expr,
        };

        for e in &exposures {
            let p = proto_name(e.protocol);
            rs.rules.push(rule(
                PRE,
                format!("{}/{} dnat {p}/{}", e.tenant, e.workload, e.public_port),
                vec![
                    eq(payload("ip", "daddr"), json!(e.public_ip.to_string())),
                    eq(payload(p, "dport"), json!(e.public_port)),
                    counter(),
                    json!({"dnat": {"addr": e.backend_ip.to_string(), "port": e.backend_port}}),
                ],
            ));
        }
        for t in &tenants {
            rs.rules.push(rule(
                POST,
                format!("{} snat", t.tenant),
                vec![
                    eq(payload("ip", "saddr"), prefix(&t.subnet)),
                    eq(meta("oifname"), json!(spec.wan)),
                    counter(),
                    json!({"snat": {"addr": spec.egress_address.to_string()}}),
                ],
            ));
        }
        rs.rules.push(rule(
            FORWARD,
            "established".into(),
            vec![
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
                    "right": ["established", "related"]}}),
                counter(),
                json!({"accept": null}),
            ],
        ));
        for e in &exposures {
            let t = tenants
                .iter()
                .find(|t| t.tenant == e.tenant)
                .ok_or_else(|| GatewayError::Spec(format!("tenant {} vanished", e.tenant)))?;
            let p = proto_name(e.protocol);
            rs.rules.push(rule(
                FORWARD,
                format!(
                    "{}/{} published {p}/{}",
                    e.tenant, e.workload, e.public_port
                ),
                vec![
                    eq(meta("iifname"), json!(spec.wan)),
                    eq(meta("oifname"), json!(t.interface)),
                    eq(payload("ip", "daddr"), json!(e.backend_ip.to_string())),
                    eq(payload(p, "dport"), json!(e.backend_port)),
                    json!({"match": {"op": "in", "left": {"ct": {"key": "status"}},
                        "right": "dnat"}}),
                    counter(),
                    json!({"accept": null}),
                ],
            ));
        }
        for t in &tenants {
            rs.rules.push(rule(
                FORWARD,
                format!("{} egress", t.tenant),
                vec![
                    eq(meta("iifname"), json!(t.interface)),
                    eq(meta("oifname"), json!(spec.wan)),
                    counter(),
                    json!({"accept": null}),
                ],
            ));
        }
        rs.rules.push(rule(
            FORWARD,
            "default drop".into(),
            vec![counter(), json!({"drop": null})],
        ));
        for t in &tenants {
            rs.rules.push(rule(
                INPUT,
                format!("{} only its gateway", t.tenant),
                vec![
                    eq(meta("iifname"), json!(t.interface)),
                    json!({"match": {"op": "!=", "left": payload("ip", "daddr"),
                        "right": t.gateway.to_string()}}),
                    counter(),
                    json!({"drop": null}),
                ],
            ));
        }
        Ok(rs)
    }

    fn from_listing(v: &Value) -> Self {
        let mut rs = Ruleset::default();
        for item in v["nftables"].as_array().into_iter().flatten() {
            if let Some(c) = item.get("chain") {
                rs.chains.push(Chain {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    kind: c["type"].as_str().unwrap_or_default().into(),
                    hook: c["hook"].as_str().unwrap_or_default().into(),
                    prio: c["prio"].as_i64().unwrap_or_default(),
                    policy: c["policy"].as_str().unwrap_or_default().into(),
                });
            }
            if let Some(r) = item.get("rule") {
                let expr = r["expr"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        if e.get("counter").is_some() {
                            counter()
                        } else {
                            e.clone()
                        }
                    })
                    .collect();
                rs.rules.push(Rule {
                    chain: r["chain"].as_str().unwrap_or_default().into(),
                    comment: r["comment"].as_str().unwrap_or_default().into(),
                    expr,
                });
            }
        }
        rs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::WorkloadId;

    fn spec() -> GatewaySpec {
        GatewaySpec {
            wan: "wan0".into(),
            egress_address: Ipv4Addr::new(203, 0, 113, 10),
            tenants: vec![GatewayTenant {
                tenant: TenantId::parse("tenant-a").unwrap(),
                subnet: Ipv4Net::parse("10.20.0.0/24").unwrap(),
                gateway: Ipv4Addr::new(10, 20, 0, 1),
                interface: "mbr10101".into(),
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
        }
    }

    #[test]
    fn renders_one_atomic_batch() {
        let batch = NftGateway::new("gw", None).render(&spec()).unwrap();
        let items = batch["nftables"].as_array().unwrap();
        // add + delete + add of the table come first: one transaction replaces it.
        assert!(items[1]["delete"]["table"].is_object());
        let text = batch.to_string();
        assert!(text.contains(r#""dnat":{"addr":"10.20.0.5","port":8443}"#));
        assert!(text.contains(r#""policy":"drop""#));
        assert!(text.contains(r#""op":"in","right":"dnat""#) || text.contains("dnat"));
    }

    #[test]
    fn refuses_a_backend_outside_the_tenant() {
        let mut s = spec();
        s.exposures[0].backend_ip = Ipv4Addr::new(10, 30, 0, 5);
        assert!(matches!(Ruleset::render(&s), Err(GatewayError::Spec(_))));
        let mut s = spec();
        s.exposures.push(s.exposures[0].clone());
        assert!(matches!(Ruleset::render(&s), Err(GatewayError::Spec(_))));
    }
}

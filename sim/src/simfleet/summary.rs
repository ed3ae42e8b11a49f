//! What a simulated fleet looks like once the workloads settled: [`SimSummary`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::workloads::ConstraintKind;

/// GPUs of one site tier and how many of them active workloads hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierUse {
    /// GPUs central knows on sites of the tier.
    pub gpus: usize,
    /// GPUs (whole, or holding a MIG slice) allocated to active workloads.
    pub allocated: usize,
}

impl TierUse {
    /// `allocated / gpus`, 0 for no GPUs.
    pub fn utilisation(&self) -> f64 {
        if self.gpus == 0 {
            0.0
        } else {
            self.allocated as f64 / self.gpus as f64
        }
    }
}

/// What the emulated DPUs and leaf switches show (read from the emulators).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardwareView {
    /// Emulated BlueField-3 DPUs (one per emulated server).
    pub dpus: usize,
    /// Of them, those that started in NIC mode (the reconciler switches them).
    pub dpus_started_as_nic: usize,
    /// DPUs in DPU mode now.
    pub dpus_in_dpu_mode: usize,
    /// Emulated leaf switches (one per site with hardware).
    pub switches: usize,
    /// Tenant VRFs over all switches.
    pub switch_vrfs: usize,
    /// Server bonds in a tenant VLAN over all switches.
    pub switch_bonds_in_vlans: usize,
}

/// A summary of a simulated fleet and its workloads, read from central.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSummary {
    /// Sites in the fleet.
    pub sites: usize,
    /// Sites central holds as online (their agent enrolled and has a session).
    pub sites_online: usize,
    /// Sites whose servers are emulated (BMC + GPUs) and driven by the agent's reconciler.
    pub hardware_sites: usize,
    /// Emulated servers (one BMC emulator and fake NVML each).
    pub emulated_servers: usize,
    /// The emulated DPUs and switches.
    pub hardware: HardwareView,
    /// Sites whose gateway node the agent keeps (in network namespaces).
    pub gateways: usize,
    /// Endpoints those gateways publish now (DNAT rules read from the kernel).
    pub endpoints_published: usize,
    /// Why there are no gateway nodes (`None`: there are).
    pub gateways_skipped: Option<String>,
    /// Tenant volumes on the emulated sites' storage arrays (made by the agents).
    pub volumes: usize,
    /// The operator server actions the run asked for and how they ended (`None`: none).
    pub server_actions: Option<super::actions::ActionsView>,
    /// Submitted workloads by state name (`active`, `approved`, `failed`, ...).
    pub workloads_by_state: BTreeMap<String, usize>,
    /// Failed workloads: (name, reason).
    pub failed: Vec<(String, String)>,
    /// GPUs per tier (`core`, `edge`).
    pub gpus_by_tier: BTreeMap<String, TierUse>,
    /// Workloads submitted per constraint kind.
    pub submitted_by_kind: BTreeMap<ConstraintKind, usize>,
    /// Workloads placed (approved or active) per constraint kind.
    pub placed_by_kind: BTreeMap<ConstraintKind, usize>,
    /// Intent-to-applied latency: from the API accepting a workload to central recording it
    /// active (every site of its placement applied an intent holding it), over the workloads
    /// that became active.
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
    pub latency_samples: usize,
    /// Time to enrol every site (agents started to every site online, hardware inspected).
    pub enrol_time: Duration,
    /// Time from the first submission until every workload settled.
    pub converge_time: Duration,
}

impl SimSummary {
    /// Kinds with at least one submitted workload.
    pub fn kinds_submitted(&self) -> BTreeSet<ConstraintKind> {
        self.submitted_by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Workloads in state `name`.
    pub fn in_state(&self, name: &str) -> usize {
        self.workloads_by_state.get(name).copied().unwrap_or(0)
    }
}

/// Failed workloads the summary names (the struct keeps them all).
const FAILURES_SHOWN: usize = 10;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for SimSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary")?;
        writeln!(
            f,
            "  sites online        {}/{} (enrolled in {:.1} s; {} with emulated hardware, {} servers)",
            self.sites_online,
            self.sites,
            self.enrol_time.as_secs_f64(),
            self.hardware_sites,
            self.emulated_servers
        )?;
        if self.hardware.switches > 0 {
            let h = &self.hardware;
            writeln!(
                f,
                "  DPUs                {}/{} in DPU mode ({} started in NIC mode, switched by the agent)",
                h.dpus_in_dpu_mode, h.dpus, h.dpus_started_as_nic
            )?;
            writeln!(
                f,
                "  leaf switches       {} carrying {} tenant VRFs, {} server bonds in tenant VLANs",
                h.switches, h.switch_vrfs, h.switch_bonds_in_vlans
            )?;
            match &self.gateways_skipped {
                None => writeln!(
                    f,
                    "  site gateways       {} (network namespaces), endpoints published {}",
                    self.gateways, self.endpoints_published
                )?,
                Some(why) => writeln!(f, "  site gateways       skipped ({why})")?,
            }
            writeln!(
                f,
                "  storage arrays      {} tenant volumes created (ONTAP emulators, one per site)",
                self.volumes
            )?;
        }
        if let Some(a) = &self.server_actions {
            writeln!(
                f,
                "  server actions      {}/{} reboots done once through the API",
                a.done, a.requested,
            )?;
            for (server, why) in &a.failed {
                writeln!(f, "    failed {server}: {why}")?;
            }
        }
        let states: Vec<String> = self
            .workloads_by_state
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            f,
            "  workloads           {} ({}), settled in {:.1} s",
            self.workloads_by_state.values().sum::<usize>(),
            states.join(", "),
            self.converge_time.as_secs_f64()
        )?;
        for (name, reason) in self.failed.iter().take(FAILURES_SHOWN) {
            writeln!(f, "    failed {name}: {reason}")?;
        }
        if self.failed.len() > FAILURES_SHOWN {
            writeln!(
                f,
                "    ... and {} more failed",
                self.failed.len() - FAILURES_SHOWN
            )?;
        }
        writeln!(
            f,
            "  GPU utilisation     (GPUs held by active workloads / GPUs)"
        )?;
        for (tier, u) in &self.gpus_by_tier {
            writeln!(
                f,
                "    {tier:<17} {:>5.1} %  ({}/{})",
                u.utilisation() * 100.0,
                u.allocated,
                u.gpus
            )?;
        }
        writeln!(f, "  placements by constraint kind (placed/submitted)")?;
        for kind in ConstraintKind::ALL {
            writeln!(
                f,
                "    {:<17} {}/{}",
                kind.as_str(),
                self.placed_by_kind.get(&kind).copied().unwrap_or(0),
                self.submitted_by_kind.get(&kind).copied().unwrap_or(0)
            )?;
        }
        match (self.latency_p50, self.latency_p99) {
            (Some(p50), Some(p99)) => write!(
                f,
                "  intent-to-applied   p50 {} p99 {} ({} workloads)",
                ms(p50),
                ms(p99),
                self.latency_samples
            ),
            _ => write!(f, "  intent-to-applied   no workload became active"),
        }
    }
}

//! Operator server actions in the simulated fleet: a reboot of one emulated server per
//! hardware site (at most `limit` sites), asked through the API as the provider admin and
//! carried out by the site's agent through its real Redfish driver, once per request.

use std::time::{Duration, Instant};

use meridian_proto::v1 as proto;

use super::{Progress, SimFleet, SimFleetError};

/// How the demo's server actions ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionsView {
    /// Requests made.
    pub requested: usize,
    /// Requests the agents reported done.
    pub done: usize,
    /// Requests that failed, with the agent's reason.
    pub failed: Vec<(String, String)>,
}

impl SimFleet {
    /// Reboots the first emulated server of up to `limit` hardware sites through the API
    /// and waits (up to `wait`) until every request is final.
    pub async fn reboot_servers(
        &self,
        limit: usize,
        wait: Duration,
        progress: &Progress,
    ) -> Result<ActionsView, SimFleetError> {
        let mut c = self.clients(self.admin_token()).await?;
        let mut requests = Vec::new();
        for i in self.hardware_sites().take(limit) {
            let Some(server) = self.hardware(i).and_then(|h| h.servers.first()) else {
                continue;
            };
            let site = self.fleet().sites[i].id.to_string();
            let r = c
                .fleet
                .request_server_action(proto::RequestServerActionRequest {
                    site: site.clone(),
                    server: server.server.id.to_string(),
                    op: proto::ServerOp::Reboot as i32,
                })
                .await
                .map_err(|status| SimFleetError::Api {
                    what: format!("a reboot of {}", server.server.id),
                    status,
                })?
                .into_inner();
            if let Some(a) = r.action {
                requests.push(a);
            }
        }
        let mut view = ActionsView {
            requested: requests.len(),
            ..ActionsView::default()
        };
        let deadline = Instant::now() + wait;
        let mut open = requests;
        while !open.is_empty() {
            let mut still = Vec::new();
            for a in open {
                let all = c
                    .fleet
                    .list_server_actions(proto::ListServerActionsRequest {
                        site: a.site.clone(),
                        server: a.server.clone(),
                    })
                    .await
                    .map_err(|status| SimFleetError::Api {
                        what: "the server actions".into(),
                        status,
                    })?
                    .into_inner();
                let now = all
                    .actions
                    .into_iter()
                    .find(|x| x.request == a.request)
                    .unwrap_or(a);
                match proto::ActionPhase::try_from(now.phase) {
                    Ok(proto::ActionPhase::Done) => view.done += 1,
                    Ok(proto::ActionPhase::Failed) => view
                        .failed
                        .push((format!("{}/{}", now.site, now.server), now.detail)),
                    _ => still.push(now),
                }
            }
            progress.bar(
                "server actions",
                view.done + view.failed.len(),
                view.requested,
                "rebooted once",
            );
            open = still;
            if !open.is_empty() {
                if Instant::now() > deadline {
                    return Err(SimFleetError::Timeout(format!(
                        "{} server actions unfinished after {wait:?}",
                        open.len()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(view)
    }

    /// The tenant volumes on the emulated sites' storage arrays now.
    pub fn volumes_on_arrays(&self) -> usize {
        self.hardware_sites()
            .filter_map(|i| self.hardware(i))
            .map(|h| h.array.volumes().len())
            .sum()
    }
}

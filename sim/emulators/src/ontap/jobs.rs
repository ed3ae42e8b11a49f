//! The emulator's asynchronous jobs: what each does to the state when it runs, and the single
//! worker that runs them in the order they were queued (`queued`, then `running` for the job
//! delay, then `success` or `failure`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{JobRecord, QuotaRule, Shared, State, Volume, codes};

/// What a job does.
#[derive(Debug, Clone)]
pub(super) enum Op {
    CreateVolume {
        name: String,
        size: u64,
        policy: String,
        path: String,
    },
    PatchVolume {
        uuid: String,
        size: Option<u64>,
        policy: Option<String>,
        quota_enabled: Option<bool>,
    },
    DeleteVolume {
        uuid: String,
    },
    CreateRule {
        volume: String,
        qtree: String,
        hard_limit: Option<u64>,
    },
    PatchRule {
        uuid: String,
        hard_limit: Option<u64>,
    },
    DeleteRule {
        uuid: String,
    },
}

/// Queues `op` as a new job; returns the `job` object of the 202 answer.
pub(super) fn enqueue(sh: &Shared, s: &mut State, op: Op, description: String) -> Value {
    let uuid = s.new_uuid(0x70b);
    s.jobs.push(JobRecord {
        uuid: uuid.clone(),
        description,
        state: "queued".into(),
        history: vec!["queued".into()],
        code: 0,
        message: "Queued".into(),
    });
    s.queue.push_back((uuid.clone(), op));
    sh.wake.notify_one();
    json!({"uuid": uuid, "_links": {"self": {"href": format!("/api/cluster/jobs/{uuid}")}}})
}

/// A job as `GET /api/cluster/jobs/{uuid}` shows it.
pub(super) fn view(j: &JobRecord) -> Value {
    let mut v = json!({
        "uuid": j.uuid,
        "description": j.description,
        "state": j.state,
        "message": j.message,
        "code": j.code,
        "_links": {"self": {"href": format!("/api/cluster/jobs/{}", j.uuid)}},
    });
    if j.state == "failure" {
        v["error"] = json!({"message": j.message, "code": j.code.to_string()});
    }
    v
}

/// Runs queued jobs one at a time, in order, until the runtime stops.
pub(super) async fn worker(sh: Arc<Shared>) {
    loop {
        let next = {
            let mut s = sh.lock();
            if s.paused { None } else { s.queue.pop_front() }
        };
        let Some((uuid, op)) = next else {
            sh.wake.notified().await;
            continue;
        };
        let delay = {
            let mut s = sh.lock();
            if let Some(j) = s.job_mut(&uuid) {
                j.set("running", "Running", 0);
            }
            s.cfg.job_delay
        };
        tokio::time::sleep(delay).await;
        let mut s = sh.lock();
        let outcome = match s.fail_next.pop_front() {
            Some(message) => Err((codes::INJECTED_JOB_FAILURE, message)),
            None => apply(&mut s, &op),
        };
        if let Some(j) = s.job_mut(&uuid) {
            match outcome {
                Ok(()) => j.set("success", "success", 0),
                Err((code, message)) => j.set("failure", &message, code),
            }
        }
    }
}

/// What the job does to the state; `Err((code, message))` ends it `failure`, changing nothing.
fn apply(s: &mut State, op: &Op) -> Result<(), (u64, String)> {
    match op {
        Op::CreateVolume {
            name,
            size,
            policy,
            path,
        } => {
            if s.volumes.values().any(|v| &v.name == name) {
                return Err((
                    codes::DUPLICATE_VOLUME_NAME,
                    format!("Duplicate volume name {name}."),
                ));
            }
            policy_exists(s, policy)?;
            let available = s.aggregate_available();
            if *size > available {
                return Err((
                    codes::NO_SPACE,
                    format!(
                        "Insufficient space in aggregate \"{}\" to create volume \"{name}\": \
                         {size} bytes requested, {available} bytes available.",
                        s.cfg.aggregate
                    ),
                ));
            }
            let uuid = s.new_uuid(0x701);
            s.volumes.insert(
                uuid.clone(),
                Volume {
                    uuid,
                    name: name.clone(),
                    size: *size,
                    used: 0,
                    path: path.clone(),
                    policy: policy.clone(),
                    quota_enabled: false,
                },
            );
            Ok(())
        }
        Op::PatchVolume {
            uuid,
            size,
            policy,
            quota_enabled,
        } => {
            let (name, old, used) = match s.volumes.get(uuid) {
                Some(v) => (v.name.clone(), v.size, v.used),
                None => return Err(gone()),
            };
            if let Some(p) = policy {
                policy_exists(s, p)?;
            }
            if let Some(new) = *size {
                let available = s.aggregate_available();
                if new > old && new - old > available {
                    return Err((
                        codes::NO_SPACE,
                        format!(
                            "Insufficient space in aggregate \"{}\" to grow volume \"{name}\" \
                             by {} bytes: {available} bytes available.",
                            s.cfg.aggregate,
                            new - old
                        ),
                    ));
                }
                if new < used {
                    return Err((
                        codes::SHRINK_BELOW_USED,
                        format!(
                            "Cannot shrink volume \"{name}\" to {new} bytes: {used} bytes are in use."
                        ),
                    ));
                }
            }
            let v = s.volumes.get_mut(uuid).ok_or_else(gone)?;
            if let Some(new) = *size {
                v.size = new;
            }
            if let Some(p) = policy {
                v.policy = p.clone();
            }
            if let Some(q) = *quota_enabled {
                v.quota_enabled = q;
            }
            Ok(())
        }
        Op::DeleteVolume { uuid } => {
            let v = s.volumes.remove(uuid).ok_or_else(gone)?;
            // A volume's quota rules go with it.
            s.rules.retain(|_, r| r.volume != v.name);
            Ok(())
        }
        Op::CreateRule {
            volume,
            qtree,
            hard_limit,
        } => {
            if !s.volumes.values().any(|v| &v.name == volume) {
                return Err(gone());
            }
            if s.rules
                .values()
                .any(|r| &r.volume == volume && &r.qtree == qtree)
            {
                return Err((
                    codes::DUPLICATE_QUOTA_RULE,
                    format!(
                        "A tree quota rule for qtree \"{qtree}\" of volume \"{volume}\" already exists."
                    ),
                ));
            }
            let uuid = s.new_uuid(0x7e1);
            s.rules.insert(
                uuid.clone(),
                QuotaRule {
                    uuid,
                    volume: volume.clone(),
                    qtree: qtree.clone(),
                    hard_limit: *hard_limit,
                },
            );
            Ok(())
        }
        Op::PatchRule { uuid, hard_limit } => {
            let volume = s.rules.get(uuid).ok_or_else(gone)?.volume.clone();
            if let Some(limit) = *hard_limit {
                let used = s.volume_by_name(&volume).map_or(0, |v| v.used);
                if limit < used {
                    return Err(below_used(&volume, limit, used));
                }
            }
            s.rules.get_mut(uuid).ok_or_else(gone)?.hard_limit = *hard_limit;
            Ok(())
        }
        Op::DeleteRule { uuid } => {
            s.rules.remove(uuid).ok_or_else(gone)?;
            Ok(())
        }
    }
}

fn gone() -> (u64, String) {
    (codes::JOB_ENTRY_GONE, "entry doesn't exist".into())
}

fn policy_exists(s: &State, name: &str) -> Result<(), (u64, String)> {
    if s.policies.values().any(|p| p.name == name) {
        Ok(())
    } else {
        Err((
            codes::EXPORT_POLICY_MISSING,
            format!("Export policy \"{name}\" does not exist."),
        ))
    }
}

/// The refusal of a hard limit below what the volume already uses.
pub(super) fn below_used(volume: &str, limit: u64, used: u64) -> (u64, String) {
    (
        codes::QUOTA_BELOW_USED,
        format!(
            "Cannot set the hard limit of the tree quota on volume \"{volume}\" to {limit} bytes: \
             {used} bytes are already in use."
        ),
    )
}

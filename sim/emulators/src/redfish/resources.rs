//! The resource tree: which URIs exist (typed routes), which methods each allows, and each
//! resource's JSON, rendered from the state. Pure functions of the state: no IO.

use serde_json::{Value, json};

use super::profile::{Kind, ResetType};
use super::state::{Bmc, Loc, MediaPhase, ROLES, TaskState};

/// Schema versions (`@odata.type`), all present in DSP8010 2025.x as bundled by
/// `nv-redfish-schema`.
pub(crate) mod types {
    pub const ROOT: &str = "ServiceRoot.v1_21_0.ServiceRoot";
    pub const SYSTEM: &str = "ComputerSystem.v1_28_0.ComputerSystem";
    pub const MANAGER: &str = "Manager.v1_25_0.Manager";
    pub const CHASSIS: &str = "Chassis.v1_28_0.Chassis";
    pub const SESSION_SERVICE: &str = "SessionService.v1_2_0.SessionService";
    pub const SESSION: &str = "Session.v1_8_0.Session";
    pub const ACCOUNT_SERVICE: &str = "AccountService.v1_18_1.AccountService";
    pub const ACCOUNT: &str = "ManagerAccount.v1_14_1.ManagerAccount";
    pub const ROLE: &str = "Role.v1_3_3.Role";
    pub const UPDATE_SERVICE: &str = "UpdateService.v1_17_1.UpdateService";
    pub const SOFTWARE: &str = "SoftwareInventory.v1_14_0.SoftwareInventory";
    pub const TASK_SERVICE: &str = "TaskService.v1_3_0.TaskService";
    pub const TASK: &str = "Task.v1_7_4.Task";
    pub const PROCESSOR: &str = "Processor.v1_23_0.Processor";
    pub const MEMORY: &str = "Memory.v1_24_0.Memory";
    pub const VIRTUAL_MEDIA: &str = "VirtualMedia.v1_6_5.VirtualMedia";
}

/// The system id of an NVIDIA HGX baseboard ([`crate::redfish::BmcProfile::hgx_baseboard`]).
pub(crate) const HGX_SYSTEM: &str = "HGX_Baseboard_0";

/// A URI the emulator serves, resolved against the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Versions,
    Root,
    OData,
    Metadata,
    Systems,
    System,
    SystemReset,
    Processors,
    Processor(usize),
    Memories,
    Memory(u32),
    Baseboard,
    BaseboardProcessors,
    BaseboardProcessor(usize),
    MediaCollection(Loc),
    Media(usize),
    InsertMedia(usize),
    EjectMedia(usize),
    BfSystemOem,
    BfModeSet,
    BfHostRshimSet,
    Managers,
    Manager,
    ManagerReset,
    BfManagerOem,
    ChassisCollection,
    Chassis,
    SessionService,
    Sessions,
    Session(String),
    AccountService,
    Accounts,
    Account(String),
    Roles,
    Role(&'static str),
    UpdateService,
    FirmwareInventory,
    Firmware(usize),
    SimpleUpdate,
    TaskService,
    Tasks,
    Task(u32),
    TaskMonitor(u32),
}

/// How a client may reach a route.
pub(crate) fn allow(route: &Route) -> &'static str {
    use Route::*;
    match route {
        System | Account(_) | BfManagerOem | SessionService => "GET, HEAD, PATCH",
        Sessions | Accounts => "GET, HEAD, POST",
        Session(_) => "GET, HEAD, DELETE",
        SystemReset | InsertMedia(_) | EjectMedia(_) | BfModeSet | BfHostRshimSet
        | ManagerReset | SimpleUpdate => "POST",
        _ => "GET, HEAD",
    }
}

pub(crate) fn uri(b: &Bmc, route: &Route) -> String {
    use Route::*;
    let sys = format!("/redfish/v1/Systems/{}", b.p.system_id);
    let mgr = format!("/redfish/v1/Managers/{}", b.p.manager_id);
    match route {
        Versions => "/redfish".into(),
        Root => "/redfish/v1/".into(),
        OData => "/redfish/v1/odata".into(),
        Metadata => "/redfish/v1/$metadata".into(),
        Systems => "/redfish/v1/Systems".into(),
        System => sys,
        SystemReset => format!("{sys}/Actions/ComputerSystem.Reset"),
        Processors => format!("{sys}/Processors"),
        Processor(i) => format!("{sys}/Processors/{}", b.p.processors[*i].id),
        Memories => format!("{sys}/Memory"),
        Memory(i) => format!("{sys}/Memory/DIMM{i}"),
        Baseboard => format!("/redfish/v1/Systems/{HGX_SYSTEM}"),
        BaseboardProcessors => format!("/redfish/v1/Systems/{HGX_SYSTEM}/Processors"),
        BaseboardProcessor(i) => format!(
            "/redfish/v1/Systems/{HGX_SYSTEM}/Processors/GPU_SXM_{}",
            i + 1
        ),
        MediaCollection(Loc::System) => format!("{sys}/VirtualMedia"),
        MediaCollection(Loc::Manager) => format!("{mgr}/VirtualMedia"),
        Media(i) => {
            let m = &b.media[*i];
            let base = if m.at == Loc::System { &sys } else { &mgr };
            format!("{base}/VirtualMedia/{}", m.id)
        }
        InsertMedia(i) => format!("{}/Actions/VirtualMedia.InsertMedia", uri(b, &Media(*i))),
        EjectMedia(i) => format!("{}/Actions/VirtualMedia.EjectMedia", uri(b, &Media(*i))),
        BfSystemOem => format!("{sys}/Oem/Nvidia"),
        BfModeSet => format!("{sys}/Oem/Nvidia/Actions/Mode.Set"),
        BfHostRshimSet => format!("{sys}/Oem/Nvidia/Actions/HostRshim.Set"),
        Managers => "/redfish/v1/Managers".into(),
        Manager => mgr,
        ManagerReset => format!("{mgr}/Actions/Manager.Reset"),
        BfManagerOem => format!("{mgr}/Oem/Nvidia"),
        ChassisCollection => "/redfish/v1/Chassis".into(),
        Chassis => format!("/redfish/v1/Chassis/{}", b.p.chassis_id),
        SessionService => "/redfish/v1/SessionService".into(),
        Sessions => "/redfish/v1/SessionService/Sessions".into(),
        Session(id) => format!("/redfish/v1/SessionService/Sessions/{id}"),
        AccountService => "/redfish/v1/AccountService".into(),
        Accounts => "/redfish/v1/AccountService/Accounts".into(),
        Account(id) => format!("/redfish/v1/AccountService/Accounts/{id}"),
        Roles => "/redfish/v1/AccountService/Roles".into(),
        Role(id) => format!("/redfish/v1/AccountService/Roles/{id}"),
        UpdateService => "/redfish/v1/UpdateService".into(),
        FirmwareInventory => "/redfish/v1/UpdateService/FirmwareInventory".into(),
        Firmware(i) => format!(
            "/redfish/v1/UpdateService/FirmwareInventory/{}",
            b.firmware[*i].id
        ),
        SimpleUpdate => "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate".into(),
        TaskService => "/redfish/v1/TaskService".into(),
        Tasks => "/redfish/v1/TaskService/Tasks".into(),
        Task(id) => format!("/redfish/v1/TaskService/Tasks/{id}"),
        TaskMonitor(id) => format!("/redfish/v1/TaskService/Tasks/{id}/Monitor"),
    }
}

/// Resolves a request path (no query) to a route, or `None` for a 404.
pub(crate) fn resolve(b: &Bmc, path: &str) -> Option<Route> {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    let bf = b.p.kind == Kind::Bluefield3;
    let sid = b.p.system_id.as_str();
    let mid = b.p.manager_id.as_str();
    let cid = b.p.chassis_id.as_str();
    let media_at = |at: Loc, id: &str| b.media_slot(at, id);
    let has_media = |at: Loc| b.media.iter().any(|m| m.at == at);
    let route = match segs.as_slice() {
        ["redfish"] => Route::Versions,
        ["redfish", "v1"] => Route::Root,
        ["redfish", "v1", "odata"] => Route::OData,
        ["redfish", "v1", "$metadata"] => Route::Metadata,
        ["redfish", "v1", "Systems"] => Route::Systems,
        ["redfish", "v1", "Systems", s, rest @ ..] if *s == sid => match rest {
            [] => Route::System,
            ["Actions", "ComputerSystem.Reset"] => Route::SystemReset,
            ["Processors"] => Route::Processors,
            ["Processors", p] => Route::Processor(b.p.processors.iter().position(|x| x.id == *p)?),
            ["Memory"] => Route::Memories,
            ["Memory", m] => {
                let i: u32 = m.strip_prefix("DIMM")?.parse().ok()?;
                if i >= b.p.dimms || m.len() != format!("DIMM{i}").len() {
                    return None;
                }
                Route::Memory(i)
            }
            ["VirtualMedia"] if has_media(Loc::System) => Route::MediaCollection(Loc::System),
            ["VirtualMedia", d] => Route::Media(media_at(Loc::System, d)?),
            ["VirtualMedia", d, "Actions", "VirtualMedia.InsertMedia"] => {
                Route::InsertMedia(media_at(Loc::System, d)?)
            }
            ["VirtualMedia", d, "Actions", "VirtualMedia.EjectMedia"] => {
                Route::EjectMedia(media_at(Loc::System, d)?)
            }
            ["Oem", "Nvidia"] if bf => Route::BfSystemOem,
            ["Oem", "Nvidia", "Actions", "Mode.Set"] if bf => Route::BfModeSet,
            ["Oem", "Nvidia", "Actions", "HostRshim.Set"] if bf => Route::BfHostRshimSet,
            _ => return None,
        },
        ["redfish", "v1", "Systems", s, rest @ ..]
            if *s == HGX_SYSTEM && !b.p.hgx_gpus.is_empty() =>
        {
            match rest {
                [] => Route::Baseboard,
                ["Processors"] => Route::BaseboardProcessors,
                ["Processors", p] => {
                    let n: usize = p.strip_prefix("GPU_SXM_")?.parse().ok()?;
                    if n == 0 || n > b.p.hgx_gpus.len() || *p != format!("GPU_SXM_{n}") {
                        return None;
                    }
                    Route::BaseboardProcessor(n - 1)
                }
                _ => return None,
            }
        }
        ["redfish", "v1", "Managers"] => Route::Managers,
        ["redfish", "v1", "Managers", m, rest @ ..] if *m == mid => match rest {
            [] => Route::Manager,
            ["Actions", "Manager.Reset"] => Route::ManagerReset,
            ["VirtualMedia"] if has_media(Loc::Manager) => Route::MediaCollection(Loc::Manager),
            ["VirtualMedia", d] => Route::Media(media_at(Loc::Manager, d)?),
            ["VirtualMedia", d, "Actions", "VirtualMedia.InsertMedia"] => {
                Route::InsertMedia(media_at(Loc::Manager, d)?)
            }
            ["VirtualMedia", d, "Actions", "VirtualMedia.EjectMedia"] => {
                Route::EjectMedia(media_at(Loc::Manager, d)?)
            }
            ["Oem", "Nvidia"] if bf => Route::BfManagerOem,
            _ => return None,
        },
        ["redfish", "v1", "Chassis"] => Route::ChassisCollection,
        ["redfish", "v1", "Chassis", c] if *c == cid => Route::Chassis,
        ["redfish", "v1", "SessionService"] => Route::SessionService,
        ["redfish", "v1", "SessionService", "Sessions"] => Route::Sessions,
        ["redfish", "v1", "SessionService", "Sessions", id] if b.sessions.contains_key(*id) => {
            Route::Session((*id).to_owned())
        }
        ["redfish", "v1", "AccountService"] => Route::AccountService,
        ["redfish", "v1", "AccountService", "Accounts"] => Route::Accounts,
        ["redfish", "v1", "AccountService", "Accounts", id] if b.accounts.contains_key(*id) => {
            Route::Account((*id).to_owned())
        }
        ["redfish", "v1", "AccountService", "Roles"] => Route::Roles,
        ["redfish", "v1", "AccountService", "Roles", r] => {
            Route::Role(ROLES.iter().find(|(n, _)| n == r)?.0)
        }
        ["redfish", "v1", "UpdateService"] => Route::UpdateService,
        ["redfish", "v1", "UpdateService", "FirmwareInventory"] => Route::FirmwareInventory,
        ["redfish", "v1", "UpdateService", "FirmwareInventory", f] => {
            Route::Firmware(b.firmware.iter().position(|x| x.id == *f)?)
        }
        [
            "redfish",
            "v1",
            "UpdateService",
            "Actions",
            "UpdateService.SimpleUpdate",
        ] => Route::SimpleUpdate,
        ["redfish", "v1", "TaskService"] => Route::TaskService,
        ["redfish", "v1", "TaskService", "Tasks"] => Route::Tasks,
        ["redfish", "v1", "TaskService", "Tasks", t, rest @ ..] => {
            let id: u32 = t.parse().ok().filter(|id| b.tasks.contains_key(id))?;
            match rest {
                [] => Route::Task(id),
                ["Monitor"] => Route::TaskMonitor(id),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(route)
}

fn link(u: String) -> Value {
    json!({ "@odata.id": u })
}

fn head(b: &Bmc, route: &Route, ty: &str) -> serde_json::Map<String, Value> {
    let entity = ty.rsplit('.').next().unwrap_or(ty);
    let namespace = ty.split('.').next().unwrap_or(ty);
    let mut m = serde_json::Map::new();
    m.insert("@odata.id".into(), json!(uri(b, route)));
    m.insert("@odata.type".into(), json!(format!("#{ty}")));
    m.insert(
        "@odata.context".into(),
        json!(format!("/redfish/v1/$metadata#{namespace}.{entity}")),
    );
    m
}

fn collection(b: &Bmc, route: &Route, ty: &str, name: &str, members: Vec<String>) -> Value {
    let mut m = head(b, route, &format!("{ty}.{ty}"));
    m.insert("Name".into(), json!(name));
    m.insert("Members@odata.count".into(), json!(members.len()));
    m.insert(
        "Members".into(),
        Value::Array(members.into_iter().map(link).collect()),
    );
    Value::Object(m)
}

fn resource(b: &Bmc, route: &Route, ty: &str, id: &str, name: &str, body: Value) -> Value {
    let mut m = head(b, route, ty);
    m.insert("Id".into(), json!(id));
    m.insert("Name".into(), json!(name));
    if let Value::Object(extra) = body {
        m.extend(extra);
    }
    Value::Object(m)
}

fn ok_status() -> Value {
    json!({"State": "Enabled", "Health": "OK"})
}

/// The `@odata.type` of a route's resource, for the `Link` header; `None` for documents that
/// are not resources.
pub(crate) fn described_by(body: &Value) -> Option<String> {
    let ty = body.get("@odata.type")?.as_str()?.trim_start_matches('#');
    let mut parts = ty.split('.');
    let ns = parts.next()?;
    let second = parts.next()?;
    let file = if second.starts_with('v') && parts.next().is_some() {
        format!("{ns}.{second}")
    } else {
        ns.to_owned()
    };
    Some(format!(
        "<http://redfish.dmtf.org/schemas/v1/{file}.json>; rel=describedby"
    ))
}

/// The JSON of a GET-able route (not `$metadata`, not the task monitor).
pub(crate) fn render(b: &Bmc, route: &Route) -> Value {
    use Route::*;
    let r = route;
    match route {
        Versions => json!({"v1": "/redfish/v1/"}),
        Root => resource(
            b,
            r,
            types::ROOT,
            "RootService",
            "Root Service",
            json!({
                "RedfishVersion": "1.20.0",
                "UUID": b.service_uuid,
                "Vendor": b.p.manufacturer,
                "Product": b.p.model,
                "ProtocolFeaturesSupported": {
                    "ExpandQuery": {"ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false},
                    "FilterQuery": false,
                    "SelectQuery": false,
                    "OnlyMemberQuery": false,
                    "ExcerptQuery": false,
                },
                "Systems": link(uri(b, &Systems)),
                "Managers": link(uri(b, &Managers)),
                "Chassis": link(uri(b, &ChassisCollection)),
                "SessionService": link(uri(b, &SessionService)),
                "AccountService": link(uri(b, &AccountService)),
                "UpdateService": link(uri(b, &UpdateService)),
                "Tasks": link(uri(b, &TaskService)),
                "Links": {"Sessions": link(uri(b, &Sessions))},
            }),
        ),
        OData => {
            let entry =
                |name: &str, url: String| json!({"name": name, "kind": "Singleton", "url": url});
            json!({
                "@odata.context": "/redfish/v1/$metadata",
                "value": [
                    entry("Service", uri(b, &Root)),
                    entry("Systems", uri(b, &Systems)),
                    entry("Managers", uri(b, &Managers)),
                    entry("Chassis", uri(b, &ChassisCollection)),
                    entry("SessionService", uri(b, &SessionService)),
                    entry("Sessions", uri(b, &Sessions)),
                    entry("AccountService", uri(b, &AccountService)),
                    entry("UpdateService", uri(b, &UpdateService)),
                    entry("TaskService", uri(b, &TaskService)),
                ],
            })
        }
        Metadata | TaskMonitor(_) | SystemReset | InsertMedia(_) | EjectMedia(_) | BfModeSet
        | BfHostRshimSet | ManagerReset | SimpleUpdate => Value::Null,
        Systems => {
            let mut members = vec![uri(b, &System)];
            if !b.p.hgx_gpus.is_empty() {
                members.push(uri(b, &Baseboard));
            }
            collection(
                b,
                r,
                "ComputerSystemCollection",
                "Computer System Collection",
                members,
            )
        }
        System => system(b),
        Baseboard => resource(
            b,
            r,
            types::SYSTEM,
            HGX_SYSTEM,
            "HGX Baseboard",
            json!({
                "SystemType": "Physical",
                "Manufacturer": "NVIDIA",
                "Model": format!("HGX {}-GPU baseboard", b.p.hgx_gpus.len()),
                "PowerState": b.power.as_str(),
                "Status": ok_status(),
                "Processors": link(uri(b, &BaseboardProcessors)),
            }),
        ),
        BaseboardProcessors => collection(
            b,
            r,
            "ProcessorCollection",
            "Processors Collection",
            (0..b.p.hgx_gpus.len())
                .map(|i| uri(b, &BaseboardProcessor(i)))
                .collect(),
        ),
        BaseboardProcessor(i) => resource(
            b,
            r,
            types::PROCESSOR,
            &format!("GPU_SXM_{}", i + 1),
            "GPU",
            json!({
                "ProcessorType": "GPU",
                "Manufacturer": "NVIDIA",
                "Model": b.p.hgx_gpus[*i],
                "Status": ok_status(),
            }),
        ),
        Processors => collection(
            b,
            r,
            "ProcessorCollection",
            "Processors Collection",
            (0..b.p.processors.len())
                .map(|i| uri(b, &Processor(i)))
                .collect(),
        ),
        Processor(i) => {
            let p = &b.p.processors[*i];
            let mut body = json!({
                "ProcessorType": p.kind,
                "Manufacturer": p.manufacturer,
                "Model": p.model,
                "Status": ok_status(),
            });
            if p.cores > 0 {
                body["TotalCores"] = json!(p.cores);
                body["TotalThreads"] = json!(p.cores * 2);
            }
            let name = if p.kind == "GPU" { "GPU" } else { "Processor" };
            resource(b, r, types::PROCESSOR, &p.id, name, body)
        }
        Memories => collection(
            b,
            r,
            "MemoryCollection",
            "Memory Collection",
            (0..b.p.dimms).map(|i| uri(b, &Memory(i))).collect(),
        ),
        Memory(i) => resource(
            b,
            r,
            types::MEMORY,
            &format!("DIMM{i}"),
            "DIMM",
            json!({
                "CapacityMiB": b.p.dimm_mib,
                "MemoryDeviceType": "DDR5",
                "MemoryType": "DRAM",
                "OperatingSpeedMhz": 4800,
                "Status": ok_status(),
            }),
        ),
        MediaCollection(at) => collection(
            b,
            r,
            "VirtualMediaCollection",
            "Virtual Media Services",
            (0..b.media.len())
                .filter(|i| b.media[*i].at == *at)
                .map(|i| uri(b, &Media(i)))
                .collect(),
        ),
        Media(i) => media(b, *i),
        BfSystemOem => {
            let d = b
                .dpu
                .as_ref()
                .expect("BlueField route only on the BlueField profile");
            json!({
                "@odata.id": uri(b, r),
                "@odata.type": "#NvidiaComputerSystem.v1_6_0.NvidiaComputerSystem",
                "Mode": d.mode.as_str(),
                "HostRshim": if d.host_rshim { "Enabled" } else { "Disabled" },
                "Actions": {
                    "#Mode.Set": {
                        "target": uri(b, &BfModeSet),
                        "Mode@Redfish.AllowableValues": ["DpuMode", "NicMode"],
                    },
                    "#HostRshim.Set": {
                        "target": uri(b, &BfHostRshimSet),
                        "HostRshim@Redfish.AllowableValues": ["Enabled", "Disabled"],
                    },
                },
            })
        }
        BfManagerOem => {
            let d = b
                .dpu
                .as_ref()
                .expect("BlueField route only on the BlueField profile");
            json!({
                "@odata.id": uri(b, r),
                "@odata.type": "#NvidiaManager.v1_9_0.NvidiaManager",
                "BmcRShim": {"BmcRShimEnabled": d.bmc_rshim},
            })
        }
        Managers => collection(
            b,
            r,
            "ManagerCollection",
            "Manager Collection",
            vec![uri(b, &Manager)],
        ),
        Manager => manager(b),
        ChassisCollection => collection(
            b,
            r,
            "ChassisCollection",
            "Chassis Collection",
            vec![uri(b, &Chassis)],
        ),
        Chassis => resource(
            b,
            r,
            types::CHASSIS,
            &b.p.chassis_id,
            "Chassis",
            json!({
                "ChassisType": if b.p.kind == Kind::Bluefield3 { "Card" } else { "RackMount" },
                "Manufacturer": b.p.manufacturer,
                "Model": b.p.model,
                "PowerState": b.power.as_str(),
                "Status": ok_status(),
                "Links": {
                    "ComputerSystems": [link(uri(b, &System))],
                    "ManagedBy": [link(uri(b, &Manager))],
                },
            }),
        ),
        SessionService => resource(
            b,
            r,
            types::SESSION_SERVICE,
            "SessionService",
            "Session Service",
            json!({
                "ServiceEnabled": true,
                "SessionTimeout": b.cfg.session_timeout.as_secs(),
                "Sessions": link(uri(b, &Sessions)),
                "Status": ok_status(),
            }),
        ),
        Sessions => collection(
            b,
            r,
            "SessionCollection",
            "Session Collection",
            b.sessions
                .keys()
                .map(|id| uri(b, &Session(id.clone())))
                .collect(),
        ),
        Session(id) => {
            let s = &b.sessions[id];
            resource(
                b,
                r,
                types::SESSION,
                id,
                "User Session",
                json!({"UserName": s.user, "SessionType": "Redfish", "Password": null}),
            )
        }
        AccountService => resource(
            b,
            r,
            types::ACCOUNT_SERVICE,
            "AccountService",
            "Account Service",
            json!({
                "ServiceEnabled": true,
                "MinPasswordLength": 8,
                "MaxPasswordLength": 32,
                "AuthFailureLoggingThreshold": 3,
                "AccountLockoutThreshold": 0,
                "Accounts": link(uri(b, &Accounts)),
                "Roles": link(uri(b, &Roles)),
                "Status": ok_status(),
            }),
        ),
        Accounts => collection(
            b,
            r,
            "ManagerAccountCollection",
            "Accounts Collection",
            b.accounts
                .keys()
                .map(|id| uri(b, &Account(id.clone())))
                .collect(),
        ),
        Account(id) => {
            let a = &b.accounts[id];
            let role = ROLES.iter().find(|(n, _)| *n == a.role).map(|(n, _)| *n);
            let mut body = json!({
                "UserName": a.user,
                "RoleId": a.role,
                "Enabled": a.enabled,
                "Locked": false,
                "Password": null,
                "AccountTypes": ["Redfish"],
            });
            if let Some(role) = role {
                body["Links"] = json!({"Role": link(uri(b, &Role(role)))});
            }
            resource(b, r, types::ACCOUNT, id, "User Account", body)
        }
        Roles => collection(
            b,
            r,
            "RoleCollection",
            "Roles Collection",
            ROLES.iter().map(|(n, _)| uri(b, &Role(n))).collect(),
        ),
        Role(name) => {
            let privs = ROLES
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&[][..], |p| p.1);
            resource(
                b,
                r,
                types::ROLE,
                name,
                &format!("{name} Role"),
                json!({"RoleId": name, "IsPredefined": true, "AssignedPrivileges": privs}),
            )
        }
        UpdateService => resource(
            b,
            r,
            types::UPDATE_SERVICE,
            "UpdateService",
            "Update Service",
            json!({
                "ServiceEnabled": true,
                "FirmwareInventory": link(uri(b, &FirmwareInventory)),
                "Status": ok_status(),
                "Actions": {
                    "#UpdateService.SimpleUpdate": {
                        "target": uri(b, &SimpleUpdate),
                        "TransferProtocol@Redfish.AllowableValues": ["HTTP"],
                    }
                },
            }),
        ),
        FirmwareInventory => collection(
            b,
            r,
            "SoftwareInventoryCollection",
            "Firmware Inventory Collection",
            (0..b.firmware.len())
                .map(|i| uri(b, &Firmware(i)))
                .collect(),
        ),
        Firmware(i) => {
            let f = &b.firmware[*i];
            resource(
                b,
                r,
                types::SOFTWARE,
                &f.id,
                &format!("{} Firmware", f.id),
                json!({"Version": f.version, "Updateable": f.updateable, "Status": ok_status()}),
            )
        }
        TaskService => resource(
            b,
            r,
            types::TASK_SERVICE,
            "TaskService",
            "Task Service",
            json!({
                "ServiceEnabled": true,
                "CompletedTaskOverWritePolicy": "Oldest",
                "LifeCycleEventOnTaskStateChange": false,
                "DateTime": b.wall_clock(),
                "Tasks": link(uri(b, &Tasks)),
                "Status": ok_status(),
            }),
        ),
        Tasks => collection(
            b,
            r,
            "TaskCollection",
            "Task Collection",
            b.tasks.keys().map(|id| uri(b, &Task(*id))).collect(),
        ),
        Task(id) => task(b, *id),
    }
}

fn system(b: &Bmc) -> Value {
    let cpus: Vec<_> = b.p.processors.iter().filter(|p| p.kind == "CPU").collect();
    let gib = u64::from(b.p.dimms) * b.p.dimm_mib / 1024;
    let resets: Vec<&str> =
        b.p.reset_types
            .iter()
            .map(|r: &ResetType| r.as_str())
            .collect();
    let mut body = json!({
        "SystemType": "Physical",
        "Manufacturer": b.p.manufacturer,
        "Model": b.p.model,
        "SerialNumber": format!("MRD{}", &b.system_uuid[..8]),
        "UUID": b.system_uuid,
        "AssetTag": b.asset_tag,
        "PowerState": b.power.as_str(),
        "Status": ok_status(),
        "Boot": {
            "BootSourceOverrideTarget": b.boot.target,
            "BootSourceOverrideTarget@Redfish.AllowableValues": b.p.boot_targets,
            "BootSourceOverrideEnabled": b.boot.enabled.as_str(),
            "BootSourceOverrideMode": b.boot.mode,
            "BootSourceOverrideMode@Redfish.AllowableValues": b.p.boot_modes,
        },
        "ProcessorSummary": {
            "Count": cpus.len(),
            "CoreCount": cpus.iter().map(|c| c.cores).sum::<u32>(),
            "Model": cpus.first().map(|c| c.model.clone()),
        },
        "MemorySummary": {"TotalSystemMemoryGiB": gib},
        "Processors": link(uri(b, &Route::Processors)),
        "Memory": link(uri(b, &Route::Memories)),
        "Links": {
            "Chassis": [link(uri(b, &Route::Chassis))],
            "ManagedBy": [link(uri(b, &Route::Manager))],
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": uri(b, &Route::SystemReset),
                "ResetType@Redfish.AllowableValues": resets,
            }
        },
    });
    if b.media.iter().any(|m| m.at == Loc::System) {
        body["VirtualMedia"] = link(uri(b, &Route::MediaCollection(Loc::System)));
    }
    resource(
        b,
        &Route::System,
        types::SYSTEM,
        &b.p.system_id,
        "System",
        body,
    )
}

fn manager(b: &Bmc) -> Value {
    let fw = b
        .firmware
        .iter()
        .find(|f| f.id == "BMC" || f.id == "BMC_Firmware")
        .map(|f| f.version.clone());
    let mut body = json!({
        "ManagerType": "BMC",
        "UUID": b.service_uuid,
        "ServiceEntryPointUUID": b.service_uuid,
        "Manufacturer": b.p.manufacturer,
        "Model": format!("{} BMC", b.p.model),
        "FirmwareVersion": fw,
        "PowerState": "On",
        "DateTime": b.wall_clock(),
        "Status": ok_status(),
        "Links": {
            "ManagerForServers": [link(uri(b, &Route::System))],
            "ManagerForChassis": [link(uri(b, &Route::Chassis))],
        },
        "Actions": {
            "#Manager.Reset": {
                "target": uri(b, &Route::ManagerReset),
                "ResetType@Redfish.AllowableValues": ["GracefulRestart", "ForceRestart"],
            }
        },
    });
    if b.media.iter().any(|m| m.at == Loc::Manager) {
        body["VirtualMedia"] = link(uri(b, &Route::MediaCollection(Loc::Manager)));
    }
    resource(
        b,
        &Route::Manager,
        types::MANAGER,
        &b.p.manager_id,
        "Manager",
        body,
    )
}

fn media(b: &Bmc, i: usize) -> Value {
    let m = &b.media[i];
    let inserting = matches!(m.phase, MediaPhase::Inserting { .. });
    let image_name = m
        .image
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_owned);
    let (types, name) = if m.usb {
        (json!(["USBStick"]), "Virtual Removable Media")
    } else {
        (json!(["CD", "DVD"]), "Virtual CD")
    };
    let body = json!({
        "MediaTypes": types,
        "Image": m.image,
        "ImageName": image_name,
        "Inserted": m.inserted,
        "WriteProtected": m.write_protected,
        "ConnectedVia": if m.inserted || inserting { "URI" } else { "NotConnected" },
        "TransferProtocolType": m.transfer_protocol,
        "Actions": {
            "#VirtualMedia.InsertMedia": {"target": uri(b, &Route::InsertMedia(i))},
            "#VirtualMedia.EjectMedia": {"target": uri(b, &Route::EjectMedia(i))},
        },
    });
    resource(b, &Route::Media(i), types::VIRTUAL_MEDIA, &m.id, name, body)
}

fn task(b: &Bmc, id: u32) -> Value {
    let t = &b.tasks[&id];
    let status = match t.state {
        TaskState::Exception => "Critical",
        _ => "OK",
    };
    let messages: Vec<Value> = t
        .messages
        .iter()
        .map(|m| {
            json!({
                "@odata.type": "#Message.v1_3_0.Message",
                "MessageId": format!("TaskEvent.1.0.{}", m.key),
                "Message": m.text,
                "MessageSeverity": m.severity,
            })
        })
        .collect();
    let mut body = json!({
        "TaskState": t.state.as_str(),
        "TaskStatus": status,
        "PercentComplete": t.percent,
        "StartTime": t.start_time,
        "TaskMonitor": uri(b, &Route::TaskMonitor(id)),
        "Messages": messages,
    });
    if let Some(end) = &t.end_time {
        body["EndTime"] = json!(end);
    }
    resource(
        b,
        &Route::Task(id),
        types::TASK,
        &id.to_string(),
        &t.name,
        body,
    )
}

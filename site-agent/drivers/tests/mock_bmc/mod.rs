//! A small scripted Redfish BMC on 127.0.0.1 for the driver's failure paths: a resource tree
//! with ETags (412 on a stale `If-Match`), sessions and Basic, asynchronous power, virtual
//! media under the Manager only (409 when occupied), task monitors, a BlueField profile, and
//! faults injected per method and path (status, count, `Retry-After`, latency). It is a test
//! double for this crate's tests, not the faithful emulator (that lives in `meridian-sim`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "pw";
pub const SYS: &str = "/redfish/v1/Systems/sys-a1";
pub const CD: &str = "/redfish/v1/Managers/bmc-x/VirtualMedia/CD1";
pub const BF_SYS: &str = "/redfish/v1/Systems/Bluefield";
pub const BF_OEM: &str = "/redfish/v1/Systems/Bluefield/Oem/Nvidia";
pub const BF_MGR_OEM: &str = "/redfish/v1/Managers/Bluefield_BMC/Oem/Nvidia";
pub const DPU_OS: &str = "/redfish/v1/UpdateService/FirmwareInventory/DPU_OS";

/// A fault: the next `count` requests matching `method` and `path` are answered `status`
/// (after `delay`), or, with `status` 0, only delayed.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub count: u32,
    pub retry_after: Option<u64>,
    pub delay: Duration,
    pub body: Option<Value>,
}

impl Fault {
    pub fn status(method: Method, path: &str, status: u16, count: u32) -> Self {
        Self {
            method,
            path: path.to_owned(),
            status,
            count,
            retry_after: None,
            delay: Duration::ZERO,
            body: None,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub if_match: Option<String>,
    pub auth: Option<String>,
    pub body: Option<Value>,
}

/// A task: polls still `Running`, final state, message, version to set on completion
/// (firmware path, version).
pub type MockTask = (u32, String, String, Option<(String, String)>);

#[derive(Debug)]
pub struct MockState {
    pub resources: BTreeMap<String, Value>,
    pub versions: HashMap<String, u64>,
    pub faults: Vec<Fault>,
    pub log: Vec<Seen>,
    pub sessions_enabled: bool,
    pub tokens: HashMap<String, String>,
    pub logins: u32,
    /// Refuse every credential (a changed password).
    pub reject_all: bool,
    /// System power: current, and (due time, final state) of a transition.
    pub power: HashMap<String, (String, Option<(Instant, String)>)>,
    pub power_delay: Duration,
    /// Transitions never finish.
    pub power_stuck: bool,
    /// Task monitors by path.
    pub tasks: HashMap<String, MockTask>,
    pub task_counter: u32,
    /// How SimpleUpdate tasks end, and after how many polls.
    pub update_end: (u32, String, String),
    /// BlueField: the mode waiting for a reset; the host holds RShim (released by
    /// `HostRshim.Set` unless `host_keeps_rshim`).
    pub pending_mode: Option<String>,
    pub host_holds_rshim: bool,
    pub host_keeps_rshim: bool,
    /// The next N PATCHes find the resource changed by someone else just before them.
    pub concurrent_writes: u32,
}

impl MockState {
    fn base(root: Value) -> Self {
        let mut resources = BTreeMap::new();
        resources.insert("/redfish/v1/".to_owned(), root);
        Self {
            resources,
            versions: HashMap::new(),
            faults: Vec::new(),
            log: Vec::new(),
            sessions_enabled: true,
            tokens: HashMap::new(),
            logins: 0,
            reject_all: false,
            power: HashMap::new(),
            power_delay: Duration::from_millis(300),
            power_stuck: false,
            tasks: HashMap::new(),
            task_counter: 0,
            update_end: (2, "Completed".to_owned(), "Update successful".to_owned()),
            pending_mode: None,
            host_holds_rshim: false,
            host_keeps_rshim: false,
            concurrent_writes: 0,
        }
    }

    fn put(&mut self, path: &str, body: Value) {
        let mut body = body;
        body["@odata.id"] = json!(path);
        self.resources.insert(path.to_owned(), body);
    }

    fn collection(&mut self, path: &str, members: &[&str]) {
        let m: Vec<Value> = members.iter().map(|p| json!({"@odata.id": p})).collect();
        self.put(
            path,
            json!({"Name": "Collection", "Members@odata.count": m.len(), "Members": m}),
        );
    }

    fn common_services(&mut self) {
        self.collection("/redfish/v1/SessionService/Sessions", &[]);
        self.put(
            "/redfish/v1/UpdateService",
            json!({
                "Id": "UpdateService",
                "FirmwareInventory": {"@odata.id": "/redfish/v1/UpdateService/FirmwareInventory"},
                "Actions": {"#UpdateService.SimpleUpdate": {
                    "target": "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"}}
            }),
        );
        self.put("/redfish/v1/TaskService", json!({"Id": "TaskService"}));
    }

    /// A host server: system `sys-a1` with 2 CPUs, 2 GPUs and 2 DIMMs, an HGX baseboard
    /// system with one more GPU, manager `bmc-x` holding the only virtual media.
    pub fn server() -> Self {
        let mut s = Self::base(json!({
            "@odata.id": "/redfish/v1/", "Id": "RootService", "Name": "Root Service",
            "RedfishVersion": "1.15.0", "Vendor": "Meridian",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "Managers": {"@odata.id": "/redfish/v1/Managers"},
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            "UpdateService": {"@odata.id": "/redfish/v1/UpdateService"},
            "Tasks": {"@odata.id": "/redfish/v1/TaskService"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
        }));
        s.common_services();
        s.collection(
            "/redfish/v1/Systems",
            &[SYS, "/redfish/v1/Systems/HGX_Baseboard_0"],
        );
        s.put(
            SYS,
            json!({
                "Id": "sys-a1", "Name": "node a1", "UUID": "4c4c4544-0000-1000-8000-000000000001",
                "Manufacturer": "Acme", "Model": "X1", "SerialNumber": "SN1",
                "PowerState": "Off",
                "MemorySummary": {"TotalSystemMemoryGiB": 64},
                "Boot": {
                    "BootSourceOverrideTarget": "None",
                    "BootSourceOverrideEnabled": "Disabled",
                    "BootSourceOverrideMode": "UEFI",
                    "BootSourceOverrideTarget@Redfish.AllowableValues":
                        ["None", "Pxe", "Cd", "Hdd", "BiosSetup"]
                },
                "Actions": {"#ComputerSystem.Reset": {
                    "target": format!("{SYS}/Actions/ComputerSystem.Reset"),
                    "ResetType@Redfish.AllowableValues":
                        ["ForceOn", "ForceOff", "GracefulShutdown", "GracefulRestart"]
                }},
                "Processors": {"@odata.id": format!("{SYS}/Processors")},
                "Memory": {"@odata.id": format!("{SYS}/Memory")},
                "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/bmc-x"}]}
            }),
        );
        s.power.insert(SYS.to_owned(), ("Off".to_owned(), None));
        let procs = [
            ("CPU0", "CPU", "Xeon"),
            ("CPU1", "CPU", "Xeon"),
            ("GPU0", "GPU", "H100"),
            ("GPU1", "GPU", "H100"),
        ];
        let paths: Vec<String> = procs
            .iter()
            .map(|(id, _, _)| format!("{SYS}/Processors/{id}"))
            .collect();
        s.collection(
            &format!("{SYS}/Processors"),
            &paths.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        for ((id, kind, model), path) in procs.iter().zip(&paths) {
            s.put(
                path,
                json!({"Id": id, "ProcessorType": kind, "Model": model, "TotalCores": 32}),
            );
        }
        s.collection(
            &format!("{SYS}/Memory"),
            &[&format!("{SYS}/Memory/D0"), &format!("{SYS}/Memory/D1")],
        );
        s.put(
            &format!("{SYS}/Memory/D0"),
            json!({"Id": "D0", "CapacityMiB": 32768}),
        );
        s.put(
            &format!("{SYS}/Memory/D1"),
            json!({"Id": "D1", "CapacityMiB": 32768}),
        );
        let hgx = "/redfish/v1/Systems/HGX_Baseboard_0";
        s.put(
            hgx,
            json!({"Id": "HGX_Baseboard_0", "PowerState": "On",
                   "Processors": {"@odata.id": format!("{hgx}/Processors")}}),
        );
        s.collection(
            &format!("{hgx}/Processors"),
            &[&format!("{hgx}/Processors/GPU_SXM_1")],
        );
        s.put(
            &format!("{hgx}/Processors/GPU_SXM_1"),
            json!({"Id": "GPU_SXM_1", "ProcessorType": "GPU", "Model": "H100 SXM"}),
        );
        s.collection("/redfish/v1/Managers", &["/redfish/v1/Managers/bmc-x"]);
        s.put(
            "/redfish/v1/Managers/bmc-x",
            json!({"Id": "bmc-x", "Model": "AcmeBMC", "FirmwareVersion": "2.1",
                   "VirtualMedia": {"@odata.id": "/redfish/v1/Managers/bmc-x/VirtualMedia"}}),
        );
        s.collection(
            "/redfish/v1/Managers/bmc-x/VirtualMedia",
            &["/redfish/v1/Managers/bmc-x/VirtualMedia/USB1", CD],
        );
        for (path, types) in [
            (
                "/redfish/v1/Managers/bmc-x/VirtualMedia/USB1",
                json!(["USBStick"]),
            ),
            (CD, json!(["CD", "DVD"])),
        ] {
            s.put(
                path,
                json!({"Id": path.rsplit('/').next(), "MediaTypes": types,
                       "Image": null, "Inserted": false, "WriteProtected": true,
                       "Actions": {
                          "#VirtualMedia.InsertMedia": {"target": format!("{path}/Actions/VirtualMedia.InsertMedia")},
                          "#VirtualMedia.EjectMedia": {"target": format!("{path}/Actions/VirtualMedia.EjectMedia")}}}),
            );
        }
        s.collection("/redfish/v1/Chassis", &["/redfish/v1/Chassis/ch-1"]);
        s.put("/redfish/v1/Chassis/ch-1", json!({"Id": "ch-1"}));
        s.collection(
            "/redfish/v1/UpdateService/FirmwareInventory",
            &[
                "/redfish/v1/UpdateService/FirmwareInventory/BMC",
                "/redfish/v1/UpdateService/FirmwareInventory/BIOS",
            ],
        );
        s.put(
            "/redfish/v1/UpdateService/FirmwareInventory/BMC",
            json!({"Id": "BMC", "Name": "BMC firmware", "Version": "2.1", "Updateable": true}),
        );
        s.put(
            "/redfish/v1/UpdateService/FirmwareInventory/BIOS",
            json!({"Id": "BIOS", "Name": "BIOS", "Version": "1.4.2", "Updateable": true}),
        );
        s
    }

    /// A BlueField-3 DPU BMC: system `Bluefield` (OEM linked), manager `Bluefield_BMC` (OEM at
    /// NVIDIA's documented path, not linked), the DPU firmware inventory.
    pub fn bluefield() -> Self {
        let mut s = Self::base(json!({
            "@odata.id": "/redfish/v1/", "Id": "RootService", "RedfishVersion": "1.17.0",
            "Vendor": "NVIDIA",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
            "Managers": {"@odata.id": "/redfish/v1/Managers"},
            "UpdateService": {"@odata.id": "/redfish/v1/UpdateService"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
        }));
        s.common_services();
        s.collection("/redfish/v1/Systems", &[BF_SYS]);
        s.put(
            BF_SYS,
            json!({"Id": "Bluefield", "PowerState": "On",
                   "Boot": {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"},
                   "Oem": {"Nvidia": {"@odata.id": BF_OEM}},
                   "Actions": {"#ComputerSystem.Reset": {
                       "target": format!("{BF_SYS}/Actions/ComputerSystem.Reset"),
                       "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart", "GracefulShutdown"]}},
                   "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/Bluefield_BMC"}]}}),
        );
        s.power.insert(BF_SYS.to_owned(), ("On".to_owned(), None));
        s.put(
            BF_OEM,
            json!({"Mode": "DpuMode", "HostRshim": "Enabled",
                   "Actions": {"#Mode.Set": {"target": format!("{BF_OEM}/Actions/Mode.Set")},
                               "#HostRshim.Set": {"target": format!("{BF_OEM}/Actions/HostRshim.Set")}}}),
        );
        s.collection(
            "/redfish/v1/Managers",
            &["/redfish/v1/Managers/Bluefield_BMC"],
        );
        s.put(
            "/redfish/v1/Managers/Bluefield_BMC",
            json!({"Id": "Bluefield_BMC", "FirmwareVersion": "BF-24.10"}),
        );
        s.put(BF_MGR_OEM, json!({"BmcRShim": {"BmcRShimEnabled": false}}));
        s.host_holds_rshim = true;
        let fw = ["DPU_OS", "DPU_NIC", "DPU_UEFI", "BMC_Firmware"];
        let paths: Vec<String> = fw
            .iter()
            .map(|f| format!("/redfish/v1/UpdateService/FirmwareInventory/{f}"))
            .collect();
        s.collection(
            "/redfish/v1/UpdateService/FirmwareInventory",
            &paths.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        for (id, path) in fw.iter().zip(&paths) {
            let version = match *id {
                "DPU_OS" => "DOCA_2.9.0_BSP_4.9.0",
                "DPU_NIC" => "32.43.1014",
                "DPU_UEFI" => "4.9.0-25",
                _ => "BF-24.10",
            };
            s.put(
                path,
                json!({"Id": id, "Version": version, "Updateable": true}),
            );
        }
        s
    }

    pub fn requests(&self, method: &Method, path: &str) -> Vec<Seen> {
        self.log
            .iter()
            .filter(|s| s.method == *method && s.path == path)
            .cloned()
            .collect()
    }

    fn etag(&self, path: &str) -> String {
        format!("\"{}\"", self.versions.get(path).copied().unwrap_or(1))
    }

    fn bump(&mut self, path: &str) {
        *self.versions.entry(path.to_owned()).or_insert(1) += 1;
    }

    fn settle_power(&mut self, path: &str) {
        let Some((state, pending)) = self.power.get_mut(path) else {
            return;
        };
        if let Some((due, fin)) = pending.clone()
            && Instant::now() >= due
            && !self.power_stuck
        {
            *state = fin;
            *pending = None;
        }
        let now = state.clone();
        if let Some(r) = self.resources.get_mut(path)
            && r["PowerState"] != now.as_str()
        {
            r["PowerState"] = json!(now);
            self.bump(path);
            if path == BF_SYS
                && now == "On"
                && let Some(m) = self.pending_mode.take()
            {
                self.resources.get_mut(BF_OEM).unwrap()["Mode"] = json!(m);
                self.bump(BF_OEM);
            }
        }
    }

    fn authorised(&mut self, auth: Option<&str>, token: Option<&str>) -> bool {
        if self.reject_all {
            return false;
        }
        if let Some(t) = token {
            return self.tokens.contains_key(t);
        }
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        auth == Some(basic.as_str())
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        auth: Option<&str>,
        token: Option<&str>,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        if path == "/redfish/v1" || path == "/redfish/v1/" {
            return Answer::json(200, self.resources["/redfish/v1/"].clone())
                .etag(self.etag("/redfish/v1/"));
        }
        if method == Method::POST && path == "/redfish/v1/SessionService/Sessions" {
            let ok = self.sessions_enabled
                && !self.reject_all
                && body
                    .as_ref()
                    .is_some_and(|b| b["UserName"] == USER && b["Password"] == PASSWORD);
            if !ok {
                return Answer::error(401, "Invalid credentials", "Base.1.8.NoValidSession");
            }
            self.logins += 1;
            let token = format!("token-{}", self.logins);
            let loc = format!("/redfish/v1/SessionService/Sessions/{}", self.logins);
            self.tokens.insert(token.clone(), loc.clone());
            return Answer::json(
                201,
                json!({"@odata.id": loc, "Id": self.logins.to_string()}),
            )
            .header("X-Auth-Token", &token)
            .header("Location", &loc);
        }
        if !self.authorised(auth, token) {
            return Answer::error(401, "Authentication required", "Base.1.8.NoValidSession")
                .header("WWW-Authenticate", "Basic realm=\"BMC\"");
        }
        if method == Method::DELETE && path.starts_with("/redfish/v1/SessionService/Sessions/") {
            self.tokens.retain(|_, l| l != path);
            return Answer::empty(204);
        }
        if method == Method::GET {
            if let Some(t) = self.tasks.get_mut(path) {
                let running = t.0 > 0;
                t.0 = t.0.saturating_sub(1);
                let state = if running {
                    "Running".to_owned()
                } else {
                    t.1.clone()
                };
                let msg = t.2.clone();
                let task = json!({"@odata.id": path.replace("TaskMonitors", "Tasks"),
                    "Id": path.rsplit('/').next(), "TaskState": state,
                    "PercentComplete": if running { 50 } else { 100 },
                    "Messages": [{"Message": msg}]});
                if running {
                    return Answer::json(202, task).header("Retry-After", "1");
                }
                if state == "Completed"
                    && let Some((fw, version)) = t.3.take()
                {
                    self.resources.get_mut(&fw).unwrap()["Version"] = json!(version);
                    self.bump(&fw);
                }
                return Answer::json(200, task);
            }
            self.settle_power(path);
            return match self.resources.get(path) {
                Some(r) => {
                    let mut r = r.clone();
                    r["@odata.etag"] = json!(self.etag(path));
                    Answer::json(200, r).etag(self.etag(path))
                }
                None => Answer::error(404, "Resource not found", "Base.1.8.ResourceMissingAtURI"),
            };
        }
        if method == Method::PATCH {
            if !self.resources.contains_key(path) {
                return Answer::error(404, "Resource not found", "Base.1.8.ResourceMissingAtURI");
            }
            if self.concurrent_writes > 0 {
                self.concurrent_writes -= 1;
                self.bump(path);
            }
            match if_match {
                None => {
                    return Answer::error(
                        428,
                        "If-Match required",
                        "Base.1.8.PreconditionRequired",
                    );
                }
                Some(tag) if tag != "*" && tag != self.etag(path) => {
                    return Answer::error(412, "ETag mismatch", "Base.1.8.PreconditionFailed");
                }
                _ => {}
            }
            let patch = body.unwrap_or_default();
            if let Some(t) = patch["Boot"]["BootSourceOverrideTarget"].as_str() {
                let allowed = &self.resources[path]["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"];
                if allowed
                    .as_array()
                    .is_some_and(|a| !a.iter().any(|x| x == t))
                {
                    return Answer::error(
                        400,
                        &format!("The value {t} for BootSourceOverrideTarget is not in the list"),
                        "Base.1.8.PropertyValueNotInList",
                    );
                }
            }
            if path == BF_MGR_OEM && self.host_holds_rshim {
                return Answer::empty(204);
            }
            merge(self.resources.get_mut(path).unwrap(), patch);
            self.bump(path);
            return Answer::empty(204);
        }
        if method == Method::POST {
            return self.action(path, body.unwrap_or_default());
        }
        Answer::error(405, "Method not allowed", "Base.1.8.ActionNotSupported")
            .header("Allow", "GET, PATCH")
    }

    fn action(&mut self, path: &str, body: Value) -> Answer {
        if let Some(sys) = path.strip_suffix("/Actions/ComputerSystem.Reset") {
            let rt = body["ResetType"].as_str().unwrap_or_default().to_owned();
            let allowed = self.resources[sys]["Actions"]["#ComputerSystem.Reset"]
                ["ResetType@Redfish.AllowableValues"]
                .clone();
            if !allowed
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == rt.as_str()))
            {
                return Answer::error(
                    400,
                    &format!("The value {rt} for ResetType is not in the list"),
                    "Base.1.8.PropertyValueNotInList",
                );
            }
            let (transit, fin) = match rt.as_str() {
                "ForceOff" | "GracefulShutdown" => ("PoweringOff", "Off"),
                _ => ("PoweringOn", "On"),
            };
            let due = Instant::now() + self.power_delay;
            self.power.insert(
                sys.to_owned(),
                (transit.to_owned(), Some((due, fin.to_owned()))),
            );
            return Answer::empty(204);
        }
        if let Some(slot) = path.strip_suffix("/Actions/VirtualMedia.InsertMedia") {
            let r = self.resources.get_mut(slot).unwrap();
            if r["Inserted"] == true {
                return Answer::error(409, "Media already inserted", "Base.1.8.ResourceInUse");
            }
            r["Image"] = body["Image"].clone();
            r["Inserted"] = json!(true);
            self.bump(slot);
            return Answer::empty(204);
        }
        if let Some(slot) = path.strip_suffix("/Actions/VirtualMedia.EjectMedia") {
            let r = self.resources.get_mut(slot).unwrap();
            r["Image"] = Value::Null;
            r["Inserted"] = json!(false);
            self.bump(slot);
            return Answer::empty(204);
        }
        if path == "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate" {
            let mut on_complete = None;
            if self.resources.contains_key(DPU_OS) {
                let rshim = &self.resources[BF_MGR_OEM]["BmcRShim"]["BmcRShimEnabled"];
                if *rshim != true {
                    return Answer::error(
                        400,
                        "RShim is not owned by the BMC",
                        "Base.1.8.ActionParameterNotSupported",
                    );
                }
                if !body["Targets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == DPU_OS))
                {
                    return Answer::error(
                        400,
                        "Targets must name DPU_OS",
                        "Base.1.8.PropertyMissing",
                    );
                }
                on_complete = Some((DPU_OS.to_owned(), "DOCA_2.9.1_BSP_4.9.1".to_owned()));
            }
            self.task_counter += 1;
            let monitor = format!("/redfish/v1/TaskService/TaskMonitors/{}", self.task_counter);
            let (polls, end, msg) = self.update_end.clone();
            self.tasks
                .insert(monitor.clone(), (polls, end, msg, on_complete));
            return Answer::json(
                202,
                json!({"@odata.id": monitor.replace("TaskMonitors", "Tasks"), "TaskState": "New"}),
            )
            .header("Location", &monitor)
            .header("Retry-After", "1");
        }
        if path == format!("{BF_OEM}/Actions/HostRshim.Set") {
            if body["HostRshim"] == "Disabled" && !self.host_keeps_rshim {
                self.host_holds_rshim = false;
                self.resources.get_mut(BF_OEM).unwrap()["HostRshim"] = json!("Disabled");
                self.bump(BF_OEM);
            }
            return Answer::empty(204);
        }
        if path == format!("{BF_OEM}/Actions/Mode.Set") {
            let m = body["Mode"].as_str().unwrap_or_default();
            if m != "DpuMode" && m != "NicMode" {
                return Answer::error(400, "Bad mode", "Base.1.8.PropertyValueNotInList");
            }
            self.pending_mode = Some(m.to_owned());
            return Answer::empty(204);
        }
        Answer::error(404, "Action not found", "Base.1.8.ResourceMissingAtURI")
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    delay: Duration,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
            delay: Duration::ZERO,
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
        }
    }

    fn error(status: u16, message: &str, id: &str) -> Self {
        Self::json(
            status,
            json!({"error": {"code": "Base.1.8.GeneralError", "message": "An error occurred",
                "@Message.ExtendedInfo": [{"MessageId": id, "Message": message}]}}),
        )
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    fn etag(self, tag: String) -> Self {
        self.header("ETag", &tag)
    }
}

/// A running mock; the state stays inspectable and scriptable.
pub struct Mock {
    pub port: u16,
    pub state: Arc<Mutex<MockState>>,
}

impl Mock {
    pub async fn start(state: MockState) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(Arc::clone(&st), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Mock { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut MockState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn fault(&self, fault: Fault) {
        self.with(|s| s.faults.push(fault));
    }
}

async fn serve(
    state: Arc<Mutex<MockState>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = parts.uri.path().to_owned();
    let answer = {
        let mut s = state.lock().unwrap();
        s.log.push(Seen {
            method: parts.method.clone(),
            path: path.clone(),
            if_match: h("if-match"),
            auth: h("x-auth-token")
                .map(|_| "session".to_owned())
                .or_else(|| h("authorization").map(|_| "basic".to_owned())),
            body: json.clone(),
        });
        let fault = s
            .faults
            .iter_mut()
            .find(|f| f.method == parts.method && f.path == path && f.count > 0)
            .map(|f| {
                f.count -= 1;
                f.clone()
            });
        match fault {
            Some(f) if f.status != 0 => {
                let mut a = match f.body {
                    Some(b) => Answer::json(f.status, b),
                    None => Answer::error(f.status, "injected fault", "Base.1.8.GeneralError"),
                };
                if let Some(r) = f.retry_after {
                    a = a.header("Retry-After", &r.to_string());
                }
                a.delay = f.delay;
                a
            }
            other => {
                let mut a = s.handle(
                    &parts.method,
                    &path,
                    h("authorization").as_deref(),
                    h("x-auth-token").as_deref(),
                    h("if-match").as_deref(),
                    json,
                );
                a.delay = other.map_or(Duration::ZERO, |f| f.delay);
                a
            }
        }
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut resp = Response::builder().status(StatusCode::from_u16(answer.status).unwrap());
    for (k, v) in &answer.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    let body = match answer.body {
        Some(b) => {
            resp = resp.header("Content-Type", "application/json");
            Bytes::from(serde_json::to_vec(&b).unwrap())
        }
        None => Bytes::new(),
    };
    Ok(resp.body(Full::new(body)).unwrap())
}

//! A fake NVML in another process: the crash test's parent holds each server's [`FakeNvml`]
//! (GPU state outlives the agent, as on real hardware) and serves it over a line-of-JSON TCP
//! protocol; the child agent drives it through [`RemoteGpu`], a [`GpuInventory`].
//!
//! The server can hold the answer to a MIG device creation after performing it
//! ([`GpuShim::hold_next_create`]), so the parent can kill the child between the device being
//! created and the agent recording it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meridian_drivers::gpu::{
    GpuDevice, GpuError, GpuIndex, GpuInventory, GpuMemory, GpuReport, GpuUuid, MigDevice, MigMode,
    MigProfile, MigState, NoGpus, Utilisation,
};
use meridian_emulators::nvml::FakeNvml;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Serves fake NVMLs by server name.
pub struct GpuShim {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hold: Arc<Mutex<Option<Sender<String>>>>,
    creates: Arc<Mutex<u32>>,
}

impl GpuShim {
    /// Starts serving `gpus` on 127.0.0.1; `runtime` runs the fakes' async methods.
    pub fn start(gpus: BTreeMap<String, Arc<FakeNvml>>, runtime: tokio::runtime::Handle) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hold: Arc<Mutex<Option<Sender<String>>>> = Arc::default();
        let creates: Arc<Mutex<u32>> = Arc::default();
        let gpus = Arc::new(gpus);
        let (s, h, c) = (stop.clone(), hold.clone(), creates.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (gpus, rt, h, c) = (gpus.clone(), runtime.clone(), h.clone(), c.clone());
                std::thread::spawn(move || serve(conn, &gpus, &rt, &h, &c));
            }
        });
        GpuShim {
            addr,
            stop,
            hold,
            creates,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next MIG device creation is performed but not answered; its server name arrives
    /// on the returned channel once it is done.
    pub fn hold_next_create(&self) -> Receiver<String> {
        let (tx, rx) = channel();
        *self.hold.lock().unwrap() = Some(tx);
        rx
    }

    /// MIG device creations performed.
    pub fn creates(&self) -> u32 {
        *self.creates.lock().unwrap()
    }
}

impl Drop for GpuShim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    conn: TcpStream,
    gpus: &BTreeMap<String, Arc<FakeNvml>>,
    rt: &tokio::runtime::Handle,
    hold: &Mutex<Option<Sender<String>>>,
    creates: &Mutex<u32>,
) {
    let _ = conn.set_nonblocking(false);
    let mut line = String::new();
    if BufReader::new(conn.try_clone().unwrap())
        .read_line(&mut line)
        .is_err()
    {
        return;
    }
    let Ok(req) = serde_json::from_str::<Value>(&line) else {
        return;
    };
    let server = req["server"].as_str().unwrap_or_default().to_owned();
    let Some(fake) = gpus.get(&server) else {
        return;
    };
    let gpu = GpuIndex(req["gpu"].as_u64().unwrap_or(0) as u32);
    let op = req["op"].as_str().unwrap_or_default();
    let answer: Result<Value, GpuError> = rt.block_on(async {
        match op {
            "report" => fake.report().await.map(|r| report_json(&r)),
            "set_mig_mode" => fake
                .set_mig_mode(gpu, req["enabled"].as_bool().unwrap_or(false))
                .await
                .map(|m| json!({"current": m.current, "pending": m.pending})),
            "reset" => fake
                .reset_gpu(gpu)
                .await
                .map(|m| json!({"current": m.current, "pending": m.pending})),
            "create" => {
                let profile = MigProfile(req["profile"].as_str().unwrap_or_default().to_owned());
                let r = fake.create_mig_device(gpu, &profile).await;
                *creates.lock().unwrap() += 1;
                r.map(|d| mig_json(&d))
            }
            "destroy" => fake
                .destroy_mig_device(
                    gpu,
                    &GpuUuid(req["uuid"].as_str().unwrap_or_default().into()),
                )
                .await
                .map(|()| Value::Null),
            _ => Err(GpuError::Unsupported {
                op: "remote",
                reason: format!("unknown op {op}"),
            }),
        }
    });
    let held = if op == "create" {
        hold.lock().unwrap().take()
    } else {
        None
    };
    if let Some(tx) = held {
        // Done but never answered: the caller is killed before it hears of it.
        let _ = tx.send(server);
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let body = match answer {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": error_json(&e) }),
    };
    let mut conn = conn;
    let _ = conn.write_all(format!("{body}\n").as_bytes());
}

fn mig_json(d: &MigDevice) -> Value {
    json!({
        "slot": d.slot,
        "uuid": d.uuid.0,
        "name": d.name,
        "memory": d.memory.map(|m| json!([m.total, m.used])),
    })
}

fn report_json(r: &GpuReport) -> Value {
    match r {
        GpuReport::NoGpus(why) => json!({ "no_gpus": why.to_string() }),
        GpuReport::Gpus {
            driver_version,
            devices,
        } => json!({
            "driver_version": driver_version,
            "devices": devices.iter().map(|d| json!({
                "index": d.index.0,
                "uuid": d.uuid.0,
                "name": d.name,
                "memory": [d.memory.total, d.memory.used],
                "utilisation": d.utilisation.map(|u| [u.gpu, u.memory]),
                "mig": match &d.mig {
                    MigState::NotSupported => Value::Null,
                    MigState::Supported { current, pending, devices, slots } => json!({
                        "current": current, "pending": pending, "slots": slots,
                        "devices": devices.iter().map(mig_json).collect::<Vec<_>>(),
                    }),
                },
            })).collect::<Vec<_>>(),
        }),
    }
}

fn error_json(e: &GpuError) -> Value {
    match e {
        GpuError::InUse { gpu, detail } => {
            json!({"kind": "in_use", "gpu": gpu.0, "detail": detail})
        }
        GpuError::NoSuchMigDevice { gpu, uuid } => {
            json!({"kind": "no_such_mig_device", "gpu": gpu.0, "uuid": uuid.0})
        }
        GpuError::MigNotEnabled(g) => json!({"kind": "mig_not_enabled", "gpu": g.0}),
        GpuError::MigNotSupported(g) => json!({"kind": "mig_not_supported", "gpu": g.0}),
        GpuError::NoSuchGpu(g) => json!({"kind": "no_such_gpu", "gpu": g.0}),
        other => json!({"kind": "other", "detail": other.to_string()}),
    }
}

fn error_from(v: &Value) -> GpuError {
    let gpu = GpuIndex(v["gpu"].as_u64().unwrap_or(0) as u32);
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    match v["kind"].as_str().unwrap_or_default() {
        "in_use" => GpuError::InUse {
            gpu,
            detail: text("detail"),
        },
        "no_such_mig_device" => GpuError::NoSuchMigDevice {
            gpu,
            uuid: GpuUuid(text("uuid")),
        },
        "mig_not_enabled" => GpuError::MigNotEnabled(gpu),
        "mig_not_supported" => GpuError::MigNotSupported(gpu),
        "no_such_gpu" => GpuError::NoSuchGpu(gpu),
        _ => GpuError::Unsupported {
            op: "remote",
            reason: text("detail"),
        },
    }
}

fn mig_from(v: &Value) -> MigDevice {
    MigDevice {
        slot: v["slot"].as_u64().unwrap_or(0) as u32,
        uuid: GpuUuid(v["uuid"].as_str().unwrap_or_default().to_owned()),
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        memory: v["memory"].as_array().map(|m| GpuMemory {
            total: m[0].as_u64().unwrap_or(0),
            used: m[1].as_u64().unwrap_or(0),
        }),
    }
}

fn report_from(v: &Value) -> GpuReport {
    if let Some(why) = v["no_gpus"].as_str() {
        return GpuReport::NoGpus(NoGpus::InitFailed {
            detail: why.to_owned(),
        });
    }
    let devices = v["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| GpuDevice {
                    index: GpuIndex(d["index"].as_u64().unwrap_or(0) as u32),
                    uuid: GpuUuid(d["uuid"].as_str().unwrap_or_default().to_owned()),
                    name: d["name"].as_str().unwrap_or_default().to_owned(),
                    memory: GpuMemory {
                        total: d["memory"][0].as_u64().unwrap_or(0),
                        used: d["memory"][1].as_u64().unwrap_or(0),
                    },
                    utilisation: d["utilisation"].as_array().map(|u| Utilisation {
                        gpu: u[0].as_u64().unwrap_or(0) as u32,
                        memory: u[1].as_u64().unwrap_or(0) as u32,
                    }),
                    mig: if d["mig"].is_null() {
                        MigState::NotSupported
                    } else {
                        let m = &d["mig"];
                        MigState::Supported {
                            current: m["current"].as_bool().unwrap_or(false),
                            pending: m["pending"].as_bool().unwrap_or(false),
                            slots: m["slots"].as_u64().unwrap_or(0) as u32,
                            devices: m["devices"]
                                .as_array()
                                .map(|a| a.iter().map(mig_from).collect())
                                .unwrap_or_default(),
                        }
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    GpuReport::Gpus {
        driver_version: v["driver_version"].as_str().map(str::to_owned),
        devices,
    }
}

/// A [`GpuInventory`] served by a [`GpuShim`] in another process.
#[derive(Debug, Clone)]
pub struct RemoteGpu {
    pub addr: SocketAddr,
    pub server: String,
}

impl RemoteGpu {
    async fn call(&self, gpu: GpuIndex, mut req: Value) -> Result<Value, GpuError> {
        req["server"] = json!(self.server);
        req["gpu"] = json!(gpu.0);
        // A broken link to the GPU worker is transient, like a busy GPU.
        let down = |why: String| GpuError::InUse {
            gpu,
            detail: format!("GPU shim: {why}"),
        };
        let mut conn = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| down(e.to_string()))?;
        conn.write_all(format!("{req}\n").as_bytes())
            .await
            .map_err(|e| down(e.to_string()))?;
        let mut line = String::new();
        tokio::io::BufReader::new(conn)
            .read_line(&mut line)
            .await
            .map_err(|e| down(e.to_string()))?;
        let v: Value = serde_json::from_str(&line).map_err(|e| down(e.to_string()))?;
        match v.get("err") {
            Some(e) => Err(error_from(e)),
            None => Ok(v["ok"].clone()),
        }
    }
}

#[async_trait]
impl GpuInventory for RemoteGpu {
    async fn report(&self) -> Result<GpuReport, GpuError> {
        self.call(GpuIndex(0), json!({"op": "report"}))
            .await
            .map(|v| report_from(&v))
    }

    async fn set_mig_mode(&self, gpu: GpuIndex, enabled: bool) -> Result<MigMode, GpuError> {
        let v = self
            .call(gpu, json!({"op": "set_mig_mode", "enabled": enabled}))
            .await?;
        Ok(MigMode {
            current: v["current"].as_bool().unwrap_or(false),
            pending: v["pending"].as_bool().unwrap_or(false),
        })
    }

    async fn reset_gpu(&self, gpu: GpuIndex) -> Result<MigMode, GpuError> {
        let v = self.call(gpu, json!({"op": "reset"})).await?;
        Ok(MigMode {
            current: v["current"].as_bool().unwrap_or(false),
            pending: v["pending"].as_bool().unwrap_or(false),
        })
    }

    async fn create_mig_device(
        &self,
        gpu: GpuIndex,
        profile: &MigProfile,
    ) -> Result<MigDevice, GpuError> {
        let v = self
            .call(gpu, json!({"op": "create", "profile": profile.0}))
            .await?;
        Ok(mig_from(&v))
    }

    async fn destroy_mig_device(&self, gpu: GpuIndex, uuid: &GpuUuid) -> Result<(), GpuError> {
        self.call(gpu, json!({"op": "destroy", "uuid": uuid.0}))
            .await
            .map(|_| ())
    }
}

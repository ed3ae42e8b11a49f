//! DMTF's own checks against the Redfish emulator: `redfish-service-validator` (every payload
//! against the CSDL) and `redfish-protocol-validator` (HTTP behaviour: auth, sessions, ETags,
//! methods, headers), run offline over HTTPS for both profiles. Each must report 0 FAIL.
//!
//! The validators are Python tools from PyPI (`scripts/test.sh` installs the pinned versions).
//! The schemas come from the `nv-redfish-schema` crate (DSP8010 CSDL, pinned in Cargo.toml),
//! copied into a directory given to the service validator with `--skipschema`, so nothing is
//! downloaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_emulators::redfish::{BmcEmulator, BmcProfile, MediaLocation, RunningBmc};

const SERVICE_VALIDATOR: &str = "rf_service_validator";
const PROTOCOL_VALIDATOR: &str = "rf_protocol_validator";
const LIMIT: Duration = Duration::from_secs(480);

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pass: u64,
    warn: u64,
    fail: u64,
    not_tested: u64,
}

/// Runs a validator to its end (bounded) and returns its exit success and its output.
fn run(program: &str, args: &[String], cert: &Path) -> (bool, String) {
    let mut child = match Command::new(program)
        .args(args)
        // requests lets these override a session's own verify setting: trust the emulator's
        // self-signed certificate through them.
        .env("REQUESTS_CA_BUNDLE", cert)
        .env("CURL_CA_BUNDLE", cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run {program} ({e}): the DMTF Redfish validators are not installed; run \
             scripts/test.sh, or pip install redfish-service-validator==3.1.8 \
             redfish-protocol-validator==1.3.2"
        ),
    };
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for the validator").is_some() {
            break;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("validator output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The service validator's summary table: `| PASS | WARN | FAIL | NOT TESTED |` then numbers.
fn service_counts(out: &str) -> Option<Counts> {
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.contains("PASS") && l.contains("NOT TESTED"))?;
    let row = lines[header + 1..]
        .iter()
        .find(|l| l.trim_start().starts_with('|'))?;
    let n: Vec<u64> = row
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    (n.len() == 4).then(|| Counts {
        pass: n[0],
        warn: n[1],
        fail: n[2],
        not_tested: n[3],
    })
}

/// `Summary - PASS: 344, WARN: 0, FAIL: 0, NOT_TESTED: 34`.
fn protocol_counts(out: &str) -> Option<Counts> {
    let line = out.lines().find(|l| l.starts_with("Summary - PASS:"))?;
    let get = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some(Counts {
        pass: get("PASS:")?,
        warn: get("WARN:")?,
        fail: get("FAIL:")?,
        not_tested: get("NOT_TESTED:")?,
    })
}

/// DSP8010 CSDL (and NVIDIA's OEM CSDL) copied into one directory.
fn schema_dir(root: &Path) -> PathBuf {
    let dir = root.join("csdl");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = nv_redfish_schema::glob_redfish_xml();
    files.extend(nv_redfish_schema::glob_oem_xml("nvidia"));
    assert!(
        files.len() > 250,
        "the nv-redfish-schema crate has no CSDL files"
    );
    for f in files {
        let f = PathBuf::from(f);
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    dir
}

/// Lines of the reports that explain failures, for the test's output.
fn failure_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("tsv" | "log")) {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.extend(
                    text.lines()
                        .filter(|l| {
                            l.contains("\tFAIL\t")
                                || l.contains("\tWARN\t")
                                || l.contains(" - ERROR - ")
                                || l.contains(" - WARNING - ")
                        })
                        .map(|l| l.chars().take(400).collect::<String>()),
                );
            }
        }
    }
    out
}

async fn validate(name: &str, profile: BmcProfile) {
    let bmc: RunningBmc = BmcEmulator::new(profile)
        .https(true)
        .power_delay(Duration::from_millis(50))
        .start()
        .await
        .expect("start the emulator");
    let (user, password) = bmc.credentials();
    let url = bmc.url();
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("bmc.pem");
    std::fs::write(&cert, bmc.certificate_pem().unwrap()).unwrap();
    let csdl = schema_dir(tmp.path());
    let service_logs = tmp.path().join("rsv");
    let protocol_logs = tmp.path().join("rpv");
    let no_config = tmp.path().join("none.ini").display().to_string();

    let service_args: Vec<String> = [
        "-c",
        &no_config,
        "-r",
        &url,
        "-u",
        &user,
        "-p",
        &password,
        "--authtype",
        "Session",
        "--schema_directory",
        &csdl.display().to_string(),
        "--skipschema",
        "--logdir",
        &service_logs.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let protocol_args: Vec<String> = [
        "-c",
        &no_config,
        "-r",
        &url,
        "-u",
        &user,
        "-p",
        &password,
        "--report-dir",
        &protocol_logs.display().to_string(),
        "--report-type",
        "tsv",
        "--avoid-http-redirect",
        "--ca-bundle",
        &cert.display().to_string(),
    ]
    .map(String::from)
    .to_vec();

    // The validators block; the emulator runs on this test's other runtime threads.
    let cert2 = cert.clone();
    let (service, protocol) = tokio::task::spawn_blocking(move || {
        (
            run(SERVICE_VALIDATOR, &service_args, &cert2),
            run(PROTOCOL_VALIDATOR, &protocol_args, &cert2),
        )
    })
    .await
    .unwrap();

    let s = service_counts(&service.1)
        .unwrap_or_else(|| panic!("no summary from {SERVICE_VALIDATOR}:\n{}", service.1));
    let p = protocol_counts(&protocol.1)
        .unwrap_or_else(|| panic!("no summary from {PROTOCOL_VALIDATOR}:\n{}", protocol.1));
    println!(
        "{name}: redfish-service-validator  PASS {} WARN {} FAIL {} NOT TESTED {}",
        s.pass, s.warn, s.fail, s.not_tested
    );
    println!(
        "{name}: redfish-protocol-validator PASS {} WARN {} FAIL {} NOT TESTED {}",
        p.pass, p.warn, p.fail, p.not_tested
    );
    let problems = [failure_lines(&service_logs), failure_lines(&protocol_logs)].concat();
    for line in &problems {
        println!("  {line}");
    }
    assert_eq!(
        s.fail, 0,
        "{SERVICE_VALIDATOR} reported failures (see above)"
    );
    assert_eq!(
        p.fail, 0,
        "{PROTOCOL_VALIDATOR} reported failures (see above)"
    );
    assert!(
        service.0,
        "{SERVICE_VALIDATOR} exited non-zero:\n{}",
        service.1
    );
    assert!(
        protocol.0,
        "{PROTOCOL_VALIDATOR} exited non-zero:\n{}",
        protocol.1
    );
    // A run that checked next to nothing is not a pass.
    assert!(
        s.pass >= 300,
        "{SERVICE_VALIDATOR} passed only {} checks",
        s.pass
    );
    assert!(
        p.pass >= 300,
        "{PROTOCOL_VALIDATOR} passed only {} checks",
        p.pass
    );
    bmc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_server_passes_both_dmtf_validators() {
    validate(
        "gpu-server",
        BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; 8]),
    )
    .await;
}

/// The opt-in shapes the driver tests use: an HGX baseboard system, a USB stick before the CD
/// under both System and Manager, UEFI-only boot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_server_with_hgx_and_vendor_layouts_passes_both_dmtf_validators() {
    validate(
        "gpu-server-hgx",
        BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; 2])
            .hgx_baseboard(vec!["NVIDIA H100 SXM5 80GB"; 8])
            .virtual_media(MediaLocation::Both)
            .usb_media("RemovableDisk")
            .boot_modes(&["UEFI"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluefield3_passes_both_dmtf_validators() {
    validate("bluefield3", BmcProfile::bluefield3()).await;
}

#[test]
fn summaries_parse() {
    let s = service_counts(
        "+----+\n|     PASS     |     WARN     |     FAIL     |  NOT TESTED  |\n+---+\n|     994      |      0       |      2       |     2479     |\n",
    )
    .unwrap();
    assert_eq!((s.pass, s.warn, s.fail, s.not_tested), (994, 0, 2, 2479));
    let p = protocol_counts("x\nSummary - PASS: 344, WARN: 1, FAIL: 3, NOT_TESTED: 34\n").unwrap();
    assert_eq!((p.pass, p.warn, p.fail, p.not_tested), (344, 1, 3, 34));
}

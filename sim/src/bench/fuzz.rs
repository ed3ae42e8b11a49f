//! R10: fuzzing every decoder we own, on stable Rust (no libFuzzer, no coverage
//! instrumentation): a seeded mutation fuzzer over valid seeds.
//!
//! Each target decodes hostile bytes the way production does, then checks what decoded:
//!
//! | target | decoder |
//! |---|---|
//! | `channel-frames` | `FrameDecoder` over a byte stream fed in pieces, each frame as `AgentMessage`, `CentralMessage` and the enrolment messages, and the contents converted (`SiteReport`, `SiteIntent` + validation) |
//! | `bootstrap-file` | `BootstrapFile::parse` (TOML) |
//! | `spec-yaml` | the CLI's YAML reader (`cli::spec::parse`) into `WorkloadSpec` (+ validation), `Tenant` and `Site` |
//! | `proto-workload` | `WorkloadSpec` protobuf, `TryFrom` and validation |
//! | `proto-intent` | `SiteIntent` protobuf, `TryFrom` and validation |
//! | `proto-report` | `SiteReport` protobuf (every body, inventories with servers) and `TryFrom` |
//! | `proto-fleet` | `Site`, `Server`, `Tenant`, `Region`, `Dataset` protobufs, `TryFrom` and validation |
//!
//! Oracles beyond "does not panic": whatever decodes must survive the trip back (model ->
//! protobuf -> model gives the same value; a parsed bootstrap file renders and parses back to
//! itself; a frame re-encodes to the same bytes).
//!
//! Mutations, one to four stacked per execution (mostly one): bit flips, random and
//! interesting bytes, truncation, deleting and duplicating ranges (up to thousands of copies,
//! which is how nesting and repetition bombs are made), splicing with another corpus entry,
//! rewriting length fields (protobuf length varints and frame headers, found by walking the
//! input) and, for text, inserting syntax tokens and extreme numbers. There is no coverage
//! feedback; an input joins the corpus when it produces an outcome (an error message with
//! digits removed) not seen before, which steers mutation past the first layer of checks.
//!
//! Every execution runs under `catch_unwind` on a worker thread with a large stack; a watchdog
//! thread declares a hang when one execution exceeds the time bound (the input is saved and
//! the target stops; the stuck thread is left behind). Crashing and hanging inputs are written
//! to the crash directory when one is given. Inputs are capped at 64 KiB, so an allocation
//! bomb shows up as a slow execution or a process abort, not silently.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::frame::{self, FrameDecoder};
use meridian_common::ids::{Generation, Sequence, ServerId, SiteId, Timestamp};
use meridian_common::model::{
    Dataset, ReportBody, Server, ServerState, Severity, Site, SiteIntent, SiteReport, Tenant,
    WorkloadSpec,
};
use meridian_common::validate;
use meridian_proto::v1 as proto;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::harness::rss_bytes;
use crate::fleet::{self, FleetSpec};

/// Largest input a mutation may produce.
pub const MAX_INPUT: usize = 64 * 1024;
/// Most corpus entries per target (seeds included).
const MAX_CORPUS: usize = 512;

/// Options of `meridian-sim bench fuzz`.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Executions per target.
    pub executions: u64,
    /// Seed of the mutator.
    pub seed: u64,
    /// An execution longer than this is a hang.
    pub time_bound: Duration,
    /// Where crashing and hanging inputs are written (none: not written).
    pub crash_dir: Option<PathBuf>,
    /// Only these targets (all when empty).
    pub only: Vec<String>,
}

impl FuzzOptions {
    /// `executions` per target, seed 42, a 2 s bound.
    pub fn new(executions: u64) -> Self {
        FuzzOptions {
            executions,
            seed: 42,
            time_bound: Duration::from_secs(2),
            crash_dir: None,
            only: Vec::new(),
        }
    }
}

/// What fuzzing one target found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetReport {
    pub name: String,
    /// What it decodes.
    pub decoder: String,
    pub executions: u64,
    /// Executions whose input decoded and passed every check.
    pub accepted: u64,
    pub crashes: u64,
    pub hangs: u64,
    /// Valid seeds it started from.
    pub seeds: usize,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    pub seconds: f64,
    /// Slowest execution, microseconds.
    pub slowest_us: f64,
    /// Growth of the process's RSS while the target ran, bytes.
    pub rss_growth: u64,
    /// Each distinct crash (panic message and location), and the hang if any.
    pub findings: Vec<String>,
}

impl TargetReport {
    /// Executions per second.
    pub fn rate(&self) -> f64 {
        self.executions as f64 / self.seconds.max(1e-9)
    }
}

/// What one fuzzing run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FuzzReport {
    pub targets: Vec<TargetReport>,
}

impl std::fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "R10 fuzzing (stable Rust, seeded mutation, catch_unwind, time bound per execution)"
        )?;
        writeln!(
            f,
            "  {:<16} {:>10} {:>9} {:>8} {:>6} {:>6} {:>6} {:>8} {:>10}",
            "target", "execs", "execs/s", "accepted", "crash", "hang", "seeds", "corpus", "slowest"
        )?;
        for t in &self.targets {
            writeln!(
                f,
                "  {:<16} {:>10} {:>9.0} {:>8} {:>6} {:>6} {:>6} {:>8} {:>8.1}ms",
                t.name,
                t.executions,
                t.rate(),
                t.accepted,
                t.crashes,
                t.hangs,
                t.seeds,
                t.corpus,
                t.slowest_us / 1e3
            )?;
            for finding in &t.findings {
                writeln!(f, "    finding: {finding}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Binary,
    Text,
    Frames,
}

/// One fuzz target: its seeds and one execution.
struct Target {
    name: &'static str,
    decoder: &'static str,
    kind: Kind,
    seeds: fn() -> Vec<Vec<u8>>,
    exec: fn(&[u8]) -> Result<(), String>,
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "channel-frames",
            decoder: "FrameDecoder + AgentMessage/CentralMessage/Enroll* + contents",
            kind: Kind::Frames,
            seeds: seeds::frames,
            exec: exec::frames,
        },
        Target {
            name: "bootstrap-file",
            decoder: "BootstrapFile::parse (TOML)",
            kind: Kind::Text,
            seeds: seeds::bootstrap,
            exec: exec::bootstrap,
        },
        Target {
            name: "spec-yaml",
            decoder: "cli::spec::parse into WorkloadSpec, Tenant, Site",
            kind: Kind::Text,
            seeds: seeds::yaml,
            exec: exec::yaml,
        },
        Target {
            name: "proto-workload",
            decoder: "proto WorkloadSpec -> TryFrom -> validate",
            kind: Kind::Binary,
            seeds: seeds::workload,
            exec: exec::workload,
        },
        Target {
            name: "proto-intent",
            decoder: "proto SiteIntent -> TryFrom -> validate",
            kind: Kind::Binary,
            seeds: seeds::intent,
            exec: exec::intent,
        },
        Target {
            name: "proto-report",
            decoder: "proto SiteReport -> TryFrom",
            kind: Kind::Binary,
            seeds: seeds::report,
            exec: exec::report,
        },
        Target {
            name: "proto-fleet",
            decoder: "proto Site/Server/Tenant/Region/Dataset -> TryFrom -> validate",
            kind: Kind::Binary,
            seeds: seeds::fleet,
            exec: exec::fleet,
        },
    ]
}

/// Names of every target.
pub fn target_names() -> Vec<&'static str> {
    targets().iter().map(|t| t.name).collect()
}

/// Fuzzes every target (or those in `opts.only`) in turn.
pub fn run(opts: &FuzzOptions) -> FuzzReport {
    let mut report = FuzzReport::default();
    let hook = PanicCapture::install();
    for (i, target) in targets().into_iter().enumerate() {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == target.name) {
            continue;
        }
        eprintln!(
            "R10: fuzzing {} ({} executions)",
            target.name, opts.executions
        );
        report
            .targets
            .push(fuzz_target(target, opts, opts.seed.wrapping_add(i as u64)));
    }
    drop(hook);
    report
}

// ---------------------------------------------------------------------------------------------
// Panic capture

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

const WORKER_PREFIX: &str = "fuzz-";

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

/// Held while a [`PanicCapture`] is installed, so two never interleave their hooks.
static HOOK_LOCK: Mutex<()> = Mutex::new(());

/// While alive, panics on fuzz worker threads are recorded (message and location) instead of
/// printed; other threads' panics go to the previous hook.
struct PanicCapture {
    previous: Arc<Hook>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl PanicCapture {
    fn install() -> PanicCapture {
        let lock = HOOK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let prev = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            let fuzzing = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(WORKER_PREFIX));
            if !fuzzing {
                return prev(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            let place = info
                .location()
                .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{place}")));
        }));
        PanicCapture {
            previous,
            _lock: lock,
        }
    }
}

impl Drop for PanicCapture {
    fn drop(&mut self) {
        let _ = std::panic::take_hook();
        let prev = Arc::clone(&self.previous);
        std::panic::set_hook(Box::new(move |info| prev(info)));
    }
}

// ---------------------------------------------------------------------------------------------
// The loop

struct Progress {
    /// Nanoseconds since `origin` when the running execution started; 0 when none runs.
    started_ns: AtomicU64,
    stop: AtomicBool,
    done: AtomicBool,
    current: Mutex<Vec<u8>>,
}

#[derive(Default)]
struct WorkerResult {
    executions: u64,
    accepted: u64,
    crashes: u64,
    seeds: usize,
    corpus: usize,
    outcomes: usize,
    slowest: Duration,
    /// Time the executions took (the watchdog's polling not included).
    elapsed: Duration,
    findings: Vec<(String, Vec<u8>)>,
}

fn signature(outcome: &Result<(), String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match outcome {
        Ok(()) => 0u8.hash(&mut h),
        Err(e) => e
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(80)
            .collect::<String>()
            .hash(&mut h),
    }
    h.finish()
}

fn fuzz_target(target: Target, opts: &FuzzOptions, seed: u64) -> TargetReport {
    let origin = Instant::now();
    let progress = Arc::new(Progress {
        started_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        done: AtomicBool::new(false),
        current: Mutex::new(Vec::new()),
    });
    let rss_start = rss_bytes("self").unwrap_or(0);
    let worker = {
        let progress = Arc::clone(&progress);
        let executions = opts.executions;
        let (kind, seeds, exec) = (target.kind, target.seeds, target.exec);
        std::thread::Builder::new()
            .name(format!("{WORKER_PREFIX}{}", target.name))
            .stack_size(256 * 1024 * 1024)
            .spawn(move || worker(kind, seeds, exec, executions, seed, &progress, origin))
    };
    let mut report = TargetReport {
        name: target.name.into(),
        decoder: target.decoder.into(),
        ..TargetReport::default()
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            report.findings.push(format!("cannot start a worker: {e}"));
            return report;
        }
    };
    let mut rss_peak = rss_start;
    let mut hang = None;
    while !progress.done.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
        rss_peak = rss_peak.max(rss_bytes("self").unwrap_or(0));
        let started = progress.started_ns.load(Ordering::Acquire);
        let now = origin.elapsed().as_nanos() as u64;
        if started != 0 && now.saturating_sub(started) > opts.time_bound.as_nanos() as u64 {
            let input = progress
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            progress.stop.store(true, Ordering::Release);
            hang = Some(input);
            break;
        }
    }
    // Until the hang, the watchdog's view; the worker's own timing replaces it below.
    report.seconds = origin.elapsed().as_secs_f64();
    report.rss_growth = rss_peak.saturating_sub(rss_start);
    if let Some(input) = hang {
        // The worker is stuck inside the decoder: leave it behind, report what we know.
        report.hangs = 1;
        let file = save(opts, target.name, "hang", 0, &input);
        report.findings.push(format!(
            "hang: one execution ran over {:?}{file}",
            opts.time_bound
        ));
        return report;
    }
    let result = worker.join().unwrap_or_default();
    report.executions = result.executions;
    report.seconds = result.elapsed.as_secs_f64();
    report.accepted = result.accepted;
    report.crashes = result.crashes;
    report.seeds = result.seeds;
    report.corpus = result.corpus;
    report.outcomes = result.outcomes;
    report.slowest_us = result.slowest.as_secs_f64() * 1e6;
    for (i, (message, input)) in result.findings.iter().enumerate() {
        let file = save(opts, target.name, "crash", i, input);
        report.findings.push(format!("crash: {message}{file}"));
    }
    report
}

fn save(opts: &FuzzOptions, target: &str, what: &str, i: usize, input: &[u8]) -> String {
    let Some(dir) = &opts.crash_dir else {
        return String::new();
    };
    let path = dir.join(format!("{target}-{what}-{i}.bin"));
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => format!(" (input in {})", path.display()),
        Err(e) => format!(" (cannot write {}: {e})", path.display()),
    }
}

fn worker(
    kind: Kind,
    seeds: fn() -> Vec<Vec<u8>>,
    exec: fn(&[u8]) -> Result<(), String>,
    executions: u64,
    seed: u64,
    progress: &Progress,
    origin: Instant,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut corpus = seeds();
    result.seeds = corpus.len();
    let mut seen = HashSet::new();
    let mut crash_sites = HashSet::new();
    // The seeds must decode: a seed that fails would make every "accepted" count meaningless.
    for s in &corpus {
        match std::panic::catch_unwind(AssertUnwindSafe(|| exec(s))) {
            Ok(Ok(())) => {
                seen.insert(0);
            }
            Ok(Err(e)) => result
                .findings
                .push((format!("seed does not decode: {e}"), s.clone())),
            Err(_) => result.findings.push((
                format!(
                    "seed panics: {}",
                    LAST_PANIC
                        .with(|p| p.borrow_mut().take())
                        .unwrap_or_default()
                ),
                s.clone(),
            )),
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut mutator = Mutator {
        rng: ChaCha8Rng::seed_from_u64(seed),
        kind,
    };
    let mut input = Vec::new();
    let started = Instant::now();
    for _ in 0..executions {
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        let base = mutator.rng.random_range(0..corpus.len());
        input.clone_from(&corpus[base]);
        mutator.mutate(&mut input, &corpus);
        progress
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(&input);
        let t = Instant::now();
        progress.started_ns.store(
            (origin.elapsed().as_nanos() as u64).max(1),
            Ordering::Release,
        );
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| exec(&input)));
        progress.started_ns.store(0, Ordering::Release);
        result.slowest = result.slowest.max(t.elapsed());
        result.executions += 1;
        match outcome {
            Ok(outcome) => {
                if outcome.is_ok() {
                    result.accepted += 1;
                }
                if seen.insert(signature(&outcome)) {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input.clone());
                    } else {
                        let i = mutator.rng.random_range(result.seeds..corpus.len());
                        corpus[i].clone_from(&input);
                    }
                }
            }
            Err(_) => {
                result.crashes += 1;
                let message = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "panic".into());
                // One finding per panic site (the location ends the message).
                let site = message.rsplit(" at ").next().unwrap_or("").to_owned();
                if crash_sites.insert(site) && result.findings.len() < 16 {
                    result.findings.push((message, input.clone()));
                }
            }
        }
    }
    result.elapsed = started.elapsed();
    result.corpus = corpus.len();
    result.outcomes = seen.len();
    progress.done.store(true, Ordering::Release);
    result
}

// ---------------------------------------------------------------------------------------------
// Mutations

struct Mutator {
    rng: ChaCha8Rng,
    kind: Kind,
}

const INTERESTING_BYTES: [u8; 12] = [
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'"', b':', b'{', b'[', b'-', b'\\',
];

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "  ",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "~",
    "null",
    "true",
    "-1",
    "0",
    "-0",
    "255",
    "256",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551616",
    "1e999",
    "-1e999",
    ".nan",
    ".inf",
    "NaN",
    "0x10",
    "1_000",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{202e}",
    "\u{feff}",
    "[[[[[[[[",
    "{{{{{{{{",
    "<<: *a",
    "---\n",
    "...\n",
    "? ",
    "|\n  ",
    ">\n  ",
    "\t",
    "=",
    "[x]",
    "[[x]]",
    "\"\"\"",
    "'''",
    "inf",
    "nan",
    "1979-05-27T07:32:00Z",
    "=\"",
    "\r\n",
];

const INTERESTING_NUMBERS: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    i64::MAX as u64,
    u64::MAX,
];

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(buf: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(i)?;
        i += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b < 0x80 {
            return Some((v, i));
        }
    }
    None
}

/// Positions of protobuf length prefixes `(offset, width, length)`, walking nested messages
/// best-effort (a string that happens to parse as a message adds harmless extra positions).
fn proto_lengths(buf: &[u8], base: usize, depth: u32, out: &mut Vec<(usize, usize, u64)>) {
    let mut i = 0;
    while i < buf.len() && out.len() < 256 {
        let Some((key, next)) = read_varint(buf, i) else {
            return;
        };
        i = next;
        match key & 7 {
            0 => match read_varint(buf, i) {
                Some((_, n)) => i = n,
                None => return,
            },
            1 => i += 8,
            5 => i += 4,
            2 => {
                let Some((len, n)) = read_varint(buf, i) else {
                    return;
                };
                out.push((base + i, n - i, len));
                i = n;
                let Some(end) = usize::try_from(len).ok().and_then(|l| i.checked_add(l)) else {
                    return;
                };
                if end > buf.len() {
                    return;
                }
                if depth < 6 {
                    proto_lengths(&buf[i..end], base + i, depth + 1, out);
                }
                i = end;
            }
            _ => return,
        }
    }
}

/// Positions of frame headers in a stream of frames, and the protobuf lengths inside them.
fn frame_lengths(buf: &[u8], out: &mut Vec<(usize, usize, u64)>) {
    let mut i = 0;
    while i + frame::HEADER_LEN <= buf.len() && out.len() < 256 {
        let len = u32::from_be_bytes(buf[i..i + 4].try_into().expect("4 bytes")) as usize;
        out.push((i, 4, len as u64));
        let start = i + 4;
        let end = start.saturating_add(len).min(buf.len());
        proto_lengths(&buf[start..end], start, 1, out);
        i = start.saturating_add(len);
    }
}

impl Mutator {
    fn range(&mut self, len: usize) -> (usize, usize) {
        if len == 0 {
            return (0, 0);
        }
        let a = self.rng.random_range(0..len);
        let n = self.rng.random_range(1..=(len - a).min(64));
        (a, a + n)
    }

    fn mutate(&mut self, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        // Mostly one or two changes: deeper inputs stay valid enough to pass the first checks.
        let rounds = match self.rng.random_range(0..8) {
            0..=3 => 1,
            4..=5 => 2,
            _ => self.rng.random_range(3..=4),
        };
        for _ in 0..rounds {
            self.mutate_once(input, corpus);
        }
        input.truncate(MAX_INPUT);
    }

    fn mutate_once(&mut self, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let len = input.len();
        let op = self.rng.random_range(0..11u8);
        match op {
            // Bit flip.
            0 if len > 0 => {
                let i = self.rng.random_range(0..len);
                input[i] ^= 1 << self.rng.random_range(0..8);
            }
            // Random byte.
            1 if len > 0 => {
                let i = self.rng.random_range(0..len);
                input[i] = self.rng.random();
            }
            // Interesting byte.
            2 if len > 0 => {
                let i = self.rng.random_range(0..len);
                input[i] = INTERESTING_BYTES[self.rng.random_range(0..INTERESTING_BYTES.len())];
            }
            // Truncation.
            3 if len > 0 => {
                let keep = self.rng.random_range(0..len);
                input.truncate(keep);
            }
            // Delete a range.
            4 if len > 1 => {
                let (a, b) = self.range(len);
                input.drain(a..b);
            }
            // Duplicate a range somewhere: once, a few times, or (rarely) thousands of times,
            // which is how nesting and repetition bombs are made.
            5 if len > 0 => {
                let (a, b) = self.range(len);
                let chunk = input[a..b].to_vec();
                let at = self.rng.random_range(0..=len);
                let times = match self.rng.random_range(0..20) {
                    0 => 1usize << self.rng.random_range(4..13),
                    1..=2 => 16,
                    _ => 1,
                };
                let times = times.min(MAX_INPUT / chunk.len().max(1));
                let repeated: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(chunk.len() * times)
                    .collect();
                input.splice(at..at, repeated);
            }
            // Splice with another corpus entry.
            6 => {
                let other = &corpus[self.rng.random_range(0..corpus.len())];
                let a = self.rng.random_range(0..=len);
                let b = self.rng.random_range(0..=other.len());
                input.truncate(a);
                input.extend_from_slice(&other[b..]);
            }
            // Length fields.
            7 | 8 if self.kind != Kind::Text => self.mutate_length(input),
            // Text: a token; binary: a few random bytes.
            7..=9 => {
                let at = self.rng.random_range(0..=len);
                if self.kind == Kind::Text {
                    let t = TOKENS[self.rng.random_range(0..TOKENS.len())];
                    input.splice(at..at, t.bytes());
                } else {
                    let n = self.rng.random_range(1..=8);
                    let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                    input.splice(at..at, bytes);
                }
            }
            // Text: replace a number with an extreme one; binary: overwrite with a varint.
            _ => {
                let v = INTERESTING_NUMBERS[self.rng.random_range(0..INTERESTING_NUMBERS.len())];
                let v = if self.rng.random_bool(0.3) {
                    v.wrapping_add(self.rng.random_range(0..3)).wrapping_sub(1)
                } else {
                    v
                };
                if self.kind == Kind::Text {
                    let digits: Vec<usize> =
                        (0..len).filter(|i| input[*i].is_ascii_digit()).collect();
                    if digits.is_empty() {
                        return;
                    }
                    let start = digits[self.rng.random_range(0..digits.len())];
                    let end = (start..len)
                        .find(|i| !input[*i].is_ascii_digit())
                        .unwrap_or(len);
                    let text = if self.rng.random_bool(0.2) {
                        format!("-{v}")
                    } else {
                        v.to_string()
                    };
                    input.splice(start..end, text.bytes());
                } else if len > 0 {
                    let at = self.rng.random_range(0..len);
                    let mut bytes = Vec::new();
                    varint(v, &mut bytes);
                    let end = (at + bytes.len()).min(len);
                    input.splice(at..end, bytes);
                }
            }
        }
    }

    fn mutate_length(&mut self, input: &mut Vec<u8>) {
        let mut fields = Vec::new();
        if self.kind == Kind::Frames {
            frame_lengths(input, &mut fields);
        } else {
            proto_lengths(input, 0, 0, &mut fields);
        }
        if fields.is_empty() {
            return;
        }
        let (at, width, len) = fields[self.rng.random_range(0..fields.len())];
        let new = match self.rng.random_range(0..6) {
            0 => len.wrapping_add(1),
            1 => len.saturating_sub(1),
            2 => 0,
            3 => len.saturating_mul(2),
            4 => len.wrapping_add(self.rng.random_range(2..64)),
            _ => INTERESTING_NUMBERS[self.rng.random_range(0..INTERESTING_NUMBERS.len())],
        };
        let mut bytes = Vec::new();
        if self.kind == Kind::Frames && width == 4 {
            bytes.extend_from_slice(&(new as u32).to_be_bytes());
        } else {
            varint(new, &mut bytes);
        }
        input.splice(at..at + width, bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Executions

mod exec {
    use super::*;

    /// The model -> protobuf -> model trip must give back the same value.
    fn round_trip<M, P>(model: &M)
    where
        M: Clone + PartialEq + std::fmt::Debug + TryFrom<P>,
        P: From<M>,
        <M as TryFrom<P>>::Error: std::fmt::Display,
    {
        match M::try_from(P::from(model.clone())) {
            Ok(back) => assert_eq!(&back, model, "model -> protobuf -> model changed the value"),
            Err(e) => panic!("a decoded value does not convert back: {e}"),
        }
    }

    fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(input)
    }

    fn agent_message(body: &[u8]) -> Result<(), String> {
        use proto::agent_message::Kind as A;
        let msg = proto::AgentMessage::decode(body).map_err(|e| e.to_string())?;
        match msg.kind {
            Some(A::ReportBatch(batch)) => {
                for wire in batch.reports {
                    let report = SiteReport::try_from(wire).map_err(|e| e.to_string())?;
                    round_trip::<SiteReport, proto::SiteReport>(&report);
                }
                Ok(())
            }
            Some(A::IntentAck(ack)) => proto::IntentAckStatus::try_from(ack.status)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some(A::Hello(h)) => SiteId::parse(&h.site)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some(A::CertRenewRequest(_)) | Some(A::Heartbeat(_)) => Ok(()),
            None => Err("no message kind".into()),
        }
    }

    fn central_message(body: &[u8]) -> Result<(), String> {
        use proto::central_message::Kind as C;
        let msg = proto::CentralMessage::decode(body).map_err(|e| e.to_string())?;
        match msg.kind {
            Some(C::IntentPush(push)) => {
                let intent = push
                    .intent
                    .ok_or("push without an intent")
                    .and_then(|i| SiteIntent::try_from(i).map_err(|_| "intent does not convert"))?;
                validate::validate_site_intent(&intent).map_err(|e| e.to_string())?;
                round_trip::<SiteIntent, proto::SiteIntent>(&intent);
                Ok(())
            }
            Some(C::ReportAck(_)) | Some(C::CertRenewResponse(_)) | Some(C::Heartbeat(_)) => Ok(()),
            None => Err("no message kind".into()),
        }
    }

    pub(super) fn frames(input: &[u8]) -> Result<(), String> {
        // Feed the stream in pieces whose sizes come from the input itself.
        let piece = 1 + usize::from(input.first().copied().unwrap_or(0) % 61);
        let mut decoder = FrameDecoder::new(64 * 1024);
        let mut outcome = Ok(());
        for chunk in input.chunks(piece) {
            decoder.push(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(Some(body)) => {
                        let again = frame::encode(&body, 64 * 1024).map_err(|e| e.to_string())?;
                        assert_eq!(&again[frame::HEADER_LEN..], body.as_slice());
                        let a = agent_message(&body);
                        let c = central_message(&body);
                        let _ = proto::EnrollRequest::decode(body.as_slice());
                        let _ = proto::EnrollResponse::decode(body.as_slice());
                        if a.is_err() && c.is_err() {
                            outcome = a;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        decoder.finish().map_err(|e| e.to_string())?;
        outcome
    }

    pub(super) fn bootstrap(input: &[u8]) -> Result<(), String> {
        let file = BootstrapFile::parse(&text(input)).map_err(|e| e.to_string())?;
        let again = BootstrapFile::parse(&file.render())
            .unwrap_or_else(|e| panic!("a parsed bootstrap file does not parse back: {e}"));
        assert_eq!(again, file, "render -> parse changed the bootstrap file");
        Ok(())
    }

    pub(super) fn yaml(input: &[u8]) -> Result<(), String> {
        use meridian_client::spec::parse;
        let text = text(input);
        let spec = parse::<WorkloadSpec>(&text, &[]);
        let tenant = parse::<Tenant>(&text, &[]);
        let site = parse::<Site>(&text, &[]);
        if let Ok(spec) = &spec {
            validate::validate_workload_spec(spec).map_err(|e| e.to_string())?;
            round_trip::<WorkloadSpec, proto::WorkloadSpec>(spec);
            return Ok(());
        }
        if let Ok(t) = &tenant {
            validate::validate_tenant(t).map_err(|e| e.to_string())?;
            return Ok(());
        }
        if let Ok(s) = &site {
            validate::validate_site(s).map_err(|e| e.to_string())?;
            return Ok(());
        }
        spec.map(|_| ())
    }

    pub(super) fn workload(input: &[u8]) -> Result<(), String> {
        let wire = proto::WorkloadSpec::decode(input).map_err(|e| e.to_string())?;
        let spec = WorkloadSpec::try_from(wire).map_err(|e| e.to_string())?;
        validate::validate_workload_spec(&spec).map_err(|e| e.to_string())?;
        round_trip::<WorkloadSpec, proto::WorkloadSpec>(&spec);
        Ok(())
    }

    pub(super) fn intent(input: &[u8]) -> Result<(), String> {
        let wire = proto::SiteIntent::decode(input).map_err(|e| e.to_string())?;
        let intent = SiteIntent::try_from(wire).map_err(|e| e.to_string())?;
        validate::validate_site_intent(&intent).map_err(|e| e.to_string())?;
        round_trip::<SiteIntent, proto::SiteIntent>(&intent);
        Ok(())
    }

    pub(super) fn report(input: &[u8]) -> Result<(), String> {
        let wire = proto::SiteReport::decode(input).map_err(|e| e.to_string())?;
        let report = SiteReport::try_from(wire).map_err(|e| e.to_string())?;
        round_trip::<SiteReport, proto::SiteReport>(&report);
        Ok(())
    }

    pub(super) fn fleet(input: &[u8]) -> Result<(), String> {
        use meridian_common::model::Region;
        let Some((which, body)) = input.split_first() else {
            return Err("empty".into());
        };
        let e = |e: &dyn std::fmt::Display| e.to_string();
        match which % 5 {
            0 => {
                let m = Site::try_from(proto::Site::decode(body).map_err(|x| e(&x))?)
                    .map_err(|x| e(&x))?;
                validate::validate_site(&m).map_err(|x| e(&x))?;
                round_trip::<Site, proto::Site>(&m);
            }
            1 => {
                let m = Server::try_from(proto::Server::decode(body).map_err(|x| e(&x))?)
                    .map_err(|x| e(&x))?;
                validate::validate_server(&m).map_err(|x| e(&x))?;
                round_trip::<Server, proto::Server>(&m);
            }
            2 => {
                let m = Tenant::try_from(proto::Tenant::decode(body).map_err(|x| e(&x))?)
                    .map_err(|x| e(&x))?;
                validate::validate_tenant(&m).map_err(|x| e(&x))?;
                round_trip::<Tenant, proto::Tenant>(&m);
            }
            3 => {
                let m = Region::try_from(proto::Region::decode(body).map_err(|x| e(&x))?)
                    .map_err(|x| e(&x))?;
                validate::validate_region(&m).map_err(|x| e(&x))?;
                round_trip::<Region, proto::Region>(&m);
            }
            _ => {
                let m = Dataset::try_from(proto::Dataset::decode(body).map_err(|x| e(&x))?)
                    .map_err(|x| e(&x))?;
                validate::validate_dataset(&m).map_err(|x| e(&x))?;
                round_trip::<Dataset, proto::Dataset>(&m);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds: valid inputs, built from the model (so they follow it as it changes).

mod seeds {
    use super::*;

    fn small_fleet() -> fleet::Fleet {
        fleet::generate(&FleetSpec::with_sites(7, 12))
    }

    pub(super) fn rich_intent(site: &str, generation: u64) -> SiteIntent {
        serde_json::from_value(serde_json::json!({
            "site": site,
            "generation": generation,
            "networks": [
                {"tenant": "acme", "vni": 10001, "table": 1001, "subnet": "10.0.1.0/24", "gateway": "10.0.1.1"},
                {"tenant": "globex", "vni": 10002, "table": 1002, "subnet": "10.0.2.0/24", "gateway": "10.0.2.1"}
            ],
            "allocations": [
                {"workload": "llama-eu", "tenant": "acme", "server": "srv-1",
                 "slot": {"whole_gpus": {"indices": [0, 1, 2, 3]}}, "mode": "container",
                 "image": "oci://registry.example.net/llama:3"},
                {"workload": "mig-fleet", "tenant": "globex", "server": "srv-2",
                 "slot": {"mig": {"gpu_index": 1, "profile": "1g.10gb", "placement": 2}},
                 "mode": "virtual_machine",
                 "window": {"start": 1790000000000i64, "end": 1790086400000i64}},
                {"workload": "bm", "tenant": "acme", "server": "srv-3",
                 "slot": "none", "mode": "bare_metal"}
            ],
            "exposures": [
                {"tenant": "acme", "workload": "llama-eu", "public_ip": "203.0.113.7",
                 "public_port": 443, "protocol": "tcp", "backend_ip": "10.0.1.10", "backend_port": 8443}
            ],
            "volumes": [{"tenant": "acme", "name": "weights", "size_mib": 512000}],
            "server_actions": [
                {"server": "srv-4", "action": {"power": "cycle"}, "request": 1},
                {"server": "srv-3", "action": {"provision": {"image": "https://images.example.net/ubuntu.iso"}}, "request": 2},
                {"server": "srv-5", "action": "clean", "request": 3}
            ],
            "pools": [{"server": "srv-6", "pool": "spare"}]
        }))
        .expect("a valid intent")
    }

    fn reports(site: &SiteId, servers: &[Server]) -> Vec<SiteReport> {
        let at = Timestamp::from_millis(1_790_000_000_000);
        let bodies = vec![
            ReportBody::Event {
                severity: Severity::Warning,
                resource: "server/srv-1".into(),
                message: "GPU 3 Xid 79".into(),
            },
            ReportBody::ServerState {
                server: ServerId::parse("srv-1").expect("valid"),
                state: ServerState::Available,
            },
            ReportBody::Inventory {
                servers: servers.to_vec(),
                pending: vec![ServerId::parse("srv-9").expect("valid")],
            },
            ReportBody::AllocationState {
                workload: meridian_common::ids::WorkloadId::parse("llama-eu").expect("valid"),
                server: ServerId::parse("srv-1").expect("valid"),
                state: meridian_common::model::AllocationStatus::Failed {
                    reason: "image pull failed".into(),
                },
            },
            ReportBody::Rtt {
                region: meridian_common::ids::RegionId::parse("eu-frankfurt").expect("valid"),
                rtt_ms: 12,
            },
            ReportBody::Metrics {
                gpu_utilisation_pct: 71.25,
                power_watts: 5_600.0,
                period: None,
            },
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| SiteReport {
                site: site.clone(),
                sequence: Sequence::new(i as u64 + 1),
                generation: Generation::new(3),
                at,
                body,
            })
            .collect()
    }

    fn frame_of<M: Message>(m: &M) -> Vec<u8> {
        frame::encode_message(m, 64 * 1024).expect("a small message")
    }

    pub(super) fn frames() -> Vec<Vec<u8>> {
        use proto::agent_message::Kind as A;
        use proto::central_message::Kind as C;
        let f = small_fleet();
        let site = f.sites[1].id.clone();
        let servers: Vec<Server> = f
            .servers
            .iter()
            .filter(|s| s.site == site)
            .take(2)
            .cloned()
            .collect();
        let agent = |kind| frame_of(&proto::AgentMessage { kind: Some(kind) });
        let central = |kind| frame_of(&proto::CentralMessage { kind: Some(kind) });
        let hello = agent(A::Hello(proto::Hello {
            site: site.as_str().into(),
            agent_version: "0.1.0".into(),
            applied_generation: 3,
            last_acked_sequence: 7,
            held_generation: 4,
        }));
        let batch = agent(A::ReportBatch(proto::ReportBatch {
            first_sequence: 1,
            reports: reports(&site, &servers)
                .into_iter()
                .map(Into::into)
                .collect(),
            dropped: 2,
        }));
        let ack = agent(A::IntentAck(proto::IntentAck {
            generation: 4,
            status: proto::IntentAckStatus::Applied as i32,
            reason: String::new(),
        }));
        let beat = agent(A::Heartbeat(proto::Heartbeat { sent_at: 1 }));
        let push = central(C::IntentPush(proto::IntentPush {
            generation: 9,
            intent: Some(rich_intent(site.as_str(), 9).into()),
        }));
        let report_ack = central(C::ReportAck(proto::ReportAck {
            high_water_sequence: 6,
        }));
        let mut stream = hello.clone();
        stream.extend_from_slice(&batch);
        stream.extend_from_slice(&ack);
        stream.extend_from_slice(&beat);
        let mut down = push.clone();
        down.extend_from_slice(&report_ack);
        vec![hello, batch, ack, beat, push, report_ack, stream, down]
    }

    pub(super) fn bootstrap() -> Vec<Vec<u8>> {
        let mut a = BootstrapFile {
            central_addresses: vec!["central.example.net:7443".into(), "10.0.0.1:7443".into()],
            ca_fingerprint: [0xab; 32],
            site: SiteId::parse("edge-de-0001").expect("valid"),
            token: "btk-1.abcdef0123456789".into(),
            expires_at: Timestamp::from_millis(1_790_000_000_000),
        };
        let first = a.render().into_bytes();
        a.central_addresses = vec!["[2001:db8::1]:7443".into()];
        a.ca_fingerprint = [0x01; 32];
        let second = a.render().into_bytes();
        let colons = format!(
            "central_addresses = [\"c:1\"]\nca_fingerprint_sha256 = \"{}\"\nsite = \"s-1\"\ntoken = \"t\"\n",
            ["cd"; 32].join(":")
        )
        .into_bytes();
        vec![first, second, colons]
    }

    pub(super) fn workload_specs() -> Vec<WorkloadSpec> {
        // `placement::requests` needs a tenant allowed in some region: the 1,000-site fleet
        // of seed 42 (the quick B1 fleet) has them.
        let f = fleet::generate(&FleetSpec::with_sites(42, 1_000));
        let mut specs: Vec<WorkloadSpec> =
            crate::bench::placement::requests(&f, crate::bench::placement::Shape::Spread8, 4, 3)
                .into_iter()
                .chain(crate::bench::placement::requests(
                    &f,
                    crate::bench::placement::Shape::Single,
                    4,
                    5,
                ))
                .map(|r| r.spec)
                .collect();
        specs
            .push(meridian_client::spec::parse(DOC_SPEC, &[]).expect("the documented spec parses"));
        specs
    }

    /// The spec of `docs/cli.md`.
    const DOC_SPEC: &str = "
name: llama-eu
kind: inference_endpoint
replicas: 3
priority: 10
resources:
  accelerator: { mig: { model: H100-80GB, profile: 3g.40gb } }
  cpu_cores: 8
  memory_mib: 65536
constraints:
  residency: [EU]
  latency: { from: [eu-frankfurt], max_rtt_ms: 20 }
  spread: { min_sites: 2, max_per_site: 2 }
expose: [{ port: 443, protocol: tcp }]
window: { start: 1790000000000, end: 1790086400000 }
";

    pub(super) fn yaml() -> Vec<Vec<u8>> {
        let f = small_fleet();
        let mut out = vec![DOC_SPEC.as_bytes().to_vec()];
        // JSON is YAML (flow style): the generated records in both layouts.
        for spec in workload_specs().iter().take(4) {
            out.push(serde_json::to_vec_pretty(spec).expect("serialises"));
        }
        out.push(serde_json::to_vec(&f.tenants[0]).expect("serialises"));
        out.push(serde_json::to_vec_pretty(&f.sites[0]).expect("serialises"));
        out
    }

    pub(super) fn workload() -> Vec<Vec<u8>> {
        workload_specs()
            .into_iter()
            .map(|s| proto::WorkloadSpec::from(s).encode_to_vec())
            .collect()
    }

    pub(super) fn intent() -> Vec<Vec<u8>> {
        let mut small = rich_intent("edge-de-0001", 1);
        small.allocations.truncate(1);
        small.server_actions.clear();
        vec![
            proto::SiteIntent::from(rich_intent("edge-de-0001", 12)).encode_to_vec(),
            proto::SiteIntent::from(small).encode_to_vec(),
        ]
    }

    pub(super) fn report() -> Vec<Vec<u8>> {
        let f = small_fleet();
        let site = f.sites[2].id.clone();
        let servers: Vec<Server> = f
            .servers
            .iter()
            .filter(|s| s.site == site)
            .take(2)
            .cloned()
            .collect();
        reports(&site, &servers)
            .into_iter()
            .map(|r| proto::SiteReport::from(r).encode_to_vec())
            .collect()
    }

    pub(super) fn fleet() -> Vec<Vec<u8>> {
        let f = small_fleet();
        let tagged = |tag: u8, bytes: Vec<u8>| {
            let mut v = vec![tag];
            v.extend(bytes);
            v
        };
        let mut out = Vec::new();
        for s in f.sites.iter().take(2) {
            out.push(tagged(0, proto::Site::from(s.clone()).encode_to_vec()));
        }
        // One edge server (a quarter of edge GPUs are MIG-capable) and one core server.
        for s in f.servers.iter().step_by(97).take(3) {
            out.push(tagged(1, proto::Server::from(s.clone()).encode_to_vec()));
        }
        for t in f.tenants.iter().take(2) {
            out.push(tagged(2, proto::Tenant::from(t.clone()).encode_to_vec()));
        }
        out.push(tagged(
            3,
            proto::Region::from(f.regions[0].clone()).encode_to_vec(),
        ));
        for d in f.datasets.iter().take(2) {
            out.push(tagged(4, proto::Dataset::from(d.clone()).encode_to_vec()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_decodes() {
        for t in targets() {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{} has no seeds", t.name);
            for (i, s) in seeds.iter().enumerate() {
                if let Err(e) = (t.exec)(s) {
                    panic!("{} seed {i} does not decode: {e}", t.name);
                }
            }
        }
    }

    #[test]
    fn a_short_run_is_reproducible_and_counts_every_execution() {
        let mut opts = FuzzOptions::new(300);
        opts.only = vec!["proto-intent".into(), "bootstrap-file".into()];
        let a = run(&opts);
        let b = run(&opts);
        assert_eq!(a.targets.len(), 2);
        for (x, y) in a.targets.iter().zip(&b.targets) {
            assert_eq!(x.executions, 300);
            assert_eq!(
                (x.accepted, x.crashes, x.corpus),
                (y.accepted, y.crashes, y.corpus)
            );
            assert_eq!(x.hangs, 0);
            assert!(x.findings.is_empty(), "{:?}", x.findings);
        }
    }

    #[test]
    fn yaml_alias_bombs_and_deep_nesting_are_refused_quickly() {
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        bomb.push_str("name: *a9\n");
        let deep = format!("name: {}x{}", "[".repeat(100_000), "]".repeat(100_000));
        for input in [bomb, deep] {
            let t = Instant::now();
            let r = exec::yaml(input.as_bytes());
            assert!(r.is_err(), "{r:?}");
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
    }

    #[test]
    fn length_fields_are_found_in_frames_and_protobuf() {
        let seed = &seeds::frames()[6];
        let mut fields = Vec::new();
        frame_lengths(seed, &mut fields);
        assert!(fields.iter().filter(|f| f.1 == 4).count() >= 4);
        assert!(fields.iter().any(|f| f.1 == 1));
        let mut out = Vec::new();
        varint(300, &mut out);
        assert_eq!(read_varint(&out, 0), Some((300, 2)));
    }

    #[test]
    fn a_panicking_decoder_is_caught_and_reported() {
        let hook = PanicCapture::install();
        let progress = Progress {
            started_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            done: AtomicBool::new(false),
            current: Mutex::new(Vec::new()),
        };
        fn seeds() -> Vec<Vec<u8>> {
            vec![b"ok".to_vec()]
        }
        fn exec(input: &[u8]) -> Result<(), String> {
            if input.len() > 2 {
                panic!("too long");
            }
            Ok(())
        }
        let r = std::thread::Builder::new()
            .name(format!("{WORKER_PREFIX}test"))
            .spawn(move || worker(Kind::Text, seeds, exec, 500, 1, &progress, Instant::now()))
            .unwrap()
            .join()
            .unwrap();
        drop(hook);
        assert_eq!(r.executions, 500);
        assert!(r.crashes > 0);
        assert_eq!(r.findings.len(), 1, "one finding per panic site");
        assert!(r.findings[0].0.starts_with("too long at "));
    }
}

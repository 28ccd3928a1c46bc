//! Clocks, latency histograms, and what the generator reads from /proc:
//! its own CPU time, the machine's, and the server processes' RSS and CPU.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// CLOCK_MONOTONIC in ns: one clock for every process of the machine, so a
/// payload stamped by one process is timed by another (never jumps with NTP).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; CLOCK_MONOTONIC exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Latency in ns, 1 ns .. 100 s at 3 significant digits; larger values clamp.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Histograms sharded by connection index: one mutex per shard keeps the
/// record path uncontended at 1–2 worker threads without one histogram per
/// connection (10,000 of those would weigh gigabytes).
#[derive(Clone)]
pub struct Latency {
    shards: Arc<Vec<Mutex<Histogram<u64>>>>,
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            shards: Arc::new((0..16).map(|_| Mutex::new(histogram())).collect()),
        }
    }

    pub fn record(&self, idx: usize, ns: u64) {
        let h = &self.shards[idx % self.shards.len()];
        h.lock().saturating_record(ns.max(1));
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in self.shards.iter() {
            all.add(&*s.lock()).expect("same bounds");
        }
        all
    }
}

/// `{"count","min","mean","p50","p90","p99","p999","max"}` in microseconds.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "min": us(h.min()),
        "mean": us(h.mean() as u64),
        "p50": us(h.value_at_quantile(0.50)),
        "p90": us(h.value_at_quantile(0.90)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
    })
}

/// Failure kinds → counts.
#[derive(Default, Debug, Clone)]
pub struct Failures(pub BTreeMap<String, u64>);

impl Failures {
    pub fn add(&mut self, kind: &str) {
        *self.0.entry(kind.to_owned()).or_default() += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
    pub fn json(&self) -> Value {
        json!(self.0)
    }
}

/// Raise RLIMIT_NOFILE's soft limit to the hard one; returns the new soft limit.
pub fn raise_nofile() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of our own process limit into a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

/// This process's user and system CPU seconds (all threads).
fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_jiffies() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// CPU used by the generator and by the machine between two points.
#[derive(Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    user: f64,
    sys: f64,
    machine: Option<(u64, u64)>,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        let (user, sys) = self_cpu();
        CpuMark {
            at: Instant::now(),
            user,
            sys,
            machine: machine_jiffies(),
        }
    }
}

/// The generator's own cost, over the whole run and over the measured phase.
///
/// `saturated`: over the measured phase the generator used more than 90% of
/// the CPU its runtime can use (`threads` cores, at most the machine's), so
/// its worker threads were almost never idle and the figures may describe the
/// generator rather than the server. `machine_busy_pct` is the whole
/// machine's busy share over the phase: near 100 the server and the generator
/// competed for the cores, which a reader must know too.
pub fn generator_json(threads: usize, run: CpuMark, phase: (CpuMark, CpuMark)) -> Value {
    let end = CpuMark::now();
    let wall = end.at.duration_since(run.at).as_secs_f64().max(1e-9);
    let user = end.user - run.user;
    let sys = end.sys - run.sys;
    let (p0, p1) = phase;
    let pwall = p1.at.duration_since(p0.at).as_secs_f64().max(1e-9);
    let pcpu = (p1.user - p0.user) + (p1.sys - p0.sys);
    let phase_pct = pcpu / pwall * 100.0;
    let usable = threads.min(cores()) as f64 * 100.0;
    let machine_busy = match (p0.machine, p1.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(round1((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0))
        }
        _ => None,
    };
    json!({
        "threads": threads,
        "cpu_user_s": round3(user),
        "cpu_sys_s": round3(sys),
        "cpu_pct": round1((user + sys) / wall * 100.0),
        "phase_s": round3(pwall),
        "phase_cpu_pct": round1(phase_pct),
        "saturated": phase_pct > 0.9 * usable,
        "machine_busy_pct": machine_busy,
        "rss_kb": rss_kb(std::process::id()),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// VmRSS of a process, in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The summed CPU seconds of `pids`; `None` without pids or when one of
/// them cannot be read (it exited).
pub fn servers_cpu_s(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| proc_cpu_s(p)).sum()
}

/// utime + stime of a process (all threads), in seconds.
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// One sample of every watched server process.
#[derive(Clone, Debug)]
struct Sample {
    at_ms: u64,
    rss_kb: Vec<Option<u64>>,
    cpu_pct: Vec<Option<f64>>,
}

/// Samples the server processes' RSS and CPU every `period` until stopped.
pub struct ServerSampler {
    pids: Vec<u32>,
    start: Instant,
    before_rss: Vec<Option<u64>>,
    before_cpu: Vec<Option<f64>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerSampler {
    pub fn start(pids: Vec<u32>, period: Duration) -> ServerSampler {
        let start = Instant::now();
        let before_rss: Vec<_> = pids.iter().map(|&p| rss_kb(p)).collect();
        let before_cpu: Vec<_> = pids.iter().map(|&p| proc_cpu_s(p)).collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = (!pids.is_empty()).then(|| {
            let (pids, samples, mut last_cpu) = (pids.clone(), samples.clone(), before_cpu.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                let mut last_at = Instant::now();
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let dt = now.duration_since(last_at).as_secs_f64().max(1e-9);
                    last_at = now;
                    let cpu: Vec<_> = pids.iter().map(|&p| proc_cpu_s(p)).collect();
                    let pct = cpu
                        .iter()
                        .zip(&last_cpu)
                        .map(|(c, l)| match (c, l) {
                            (Some(c), Some(l)) => Some(round1((c - l) / dt * 100.0)),
                            _ => None,
                        })
                        .collect();
                    last_cpu = cpu;
                    samples.lock().push(Sample {
                        at_ms: now.duration_since(start).as_millis() as u64,
                        rss_kb: pids.iter().map(|&p| rss_kb(p)).collect(),
                        cpu_pct: pct,
                    });
                }
            })
        });
        ServerSampler {
            pids,
            start,
            before_rss,
            before_cpu,
            samples,
            task,
        }
    }

    /// Per process: RSS before/after/peak, CPU seconds and CPU% (average and
    /// peak over one sampling period); with `series`, every sample too.
    pub fn finish(mut self, series: bool) -> Value {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let samples = self.samples.lock().clone();
        let mut out = Vec::new();
        for (i, &pid) in self.pids.iter().enumerate() {
            let after = rss_kb(pid);
            let cpu_after = proc_cpu_s(pid);
            let peak = samples
                .iter()
                .filter_map(|s| s.rss_kb[i])
                .chain(after)
                .chain(self.before_rss[i])
                .max();
            let cpu_s = match (self.before_cpu[i], cpu_after) {
                (Some(a), Some(b)) => Some(round3(b - a)),
                _ => None,
            };
            let cpu_peak = samples
                .iter()
                .filter_map(|s| s.cpu_pct[i])
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            let mut o = json!({
                "pid": pid,
                "alive_at_end": after.is_some(),
                "rss_before_kb": self.before_rss[i],
                "rss_after_kb": after,
                "rss_peak_kb": peak,
                "cpu_s": cpu_s,
                "cpu_pct_avg": cpu_s.map(|c| round1(c / wall * 100.0)),
                "cpu_pct_peak": cpu_peak,
            });
            if series {
                o["samples"] = samples
                    .iter()
                    .map(|s| json!([s.at_ms, s.rss_kb[i], s.cpu_pct[i]]))
                    .collect();
            }
            out.push(o);
        }
        Value::Array(out)
    }
}

impl Drop for ServerSampler {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

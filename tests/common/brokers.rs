//! Real brokers for the cluster tests: `nats-server` and `redis-server`
//! started on free loopback ports in a scratch directory, never on a
//! standard port. Each can be stopped (SIGTERM), killed (SIGKILL) and
//! restarted on the same port; it is killed when dropped. std only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use riptide::settings::{AdapterKind, AdapterSettings};

/// How long a broker may take to accept connections.
pub const BROKER_START: Duration = Duration::from_secs(10);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// `n` distinct free ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Block until `127.0.0.1:port` accepts a connection (true) or `wait` passes.
pub fn wait_listening(port: u16, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A scratch directory removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("riptide-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker process: how to (re)start it and its child.
struct Process {
    name: &'static str,
    /// Its log file, quoted when it fails to start.
    log: Option<PathBuf>,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    port: u16,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let child = (self.command)()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        self.child = Some(child);
        if !wait_listening(self.port, BROKER_START) {
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = self
                .log
                .as_ref()
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            panic!(
                "{} did not listen on {} within {BROKER_START:?} (exit: {status:?}); log:\n{log}",
                self.name, self.port
            );
        }
    }

    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `nats-server` on a free port, with monitoring on another.
pub struct NatsServer {
    pub port: u16,
    pub monitor_port: u16,
    process: Process,
    _dir: ScratchDir,
}

impl NatsServer {
    pub const BINARY: &'static str = "/usr/sbin/nats-server";

    pub fn start() -> NatsServer {
        NatsServer::start_with(None, None)
    }

    /// With the server's `max_payload` set (bytes).
    pub fn start_with_max_payload(max_payload: usize) -> NatsServer {
        NatsServer::start_with(Some(max_payload), None)
    }

    /// Requiring TLS with this PEM certificate and key (`url` stays
    /// `nats://`: the client is told to use TLS by the server).
    pub fn start_tls(cert: &Path, key: &Path) -> NatsServer {
        NatsServer::start_with(None, Some((cert, key)))
    }

    fn start_with(max_payload: Option<usize>, tls: Option<(&Path, &Path)>) -> NatsServer {
        let dir = ScratchDir::new("nats");
        let ports = free_ports(2);
        let (port, monitor_port) = (ports[0], ports[1]);
        let config = dir.path().join("nats.conf");
        let mut text = String::new();
        if let Some(max) = max_payload {
            text.push_str(&format!("max_payload: {max}\n"));
        }
        if let Some((cert, key)) = tls {
            text.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                cert.display().to_string(),
                key.display().to_string()
            ));
        }
        std::fs::write(&config, text).expect("write nats.conf");
        let log = dir.path().join("nats.log");
        let log_path = log.clone();
        // JetStream on (connection state recovery keeps its streams there),
        // its storage in the scratch directory: it survives a restart.
        let store = dir.path().join("jetstream");
        let command = move || {
            let mut c = Command::new(NatsServer::BINARY);
            c.arg("-c")
                .arg(&config)
                .arg("-js")
                .arg("-sd")
                .arg(&store)
                .args(["-a", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .arg("-m")
                .arg(monitor_port.to_string())
                .arg("-l")
                .arg(&log);
            c
        };
        let mut process = Process {
            name: "nats-server",
            log: Some(log_path),
            command: Box::new(command),
            port,
            child: None,
        };
        process.spawn();
        assert!(wait_listening(monitor_port, BROKER_START), "nats monitor");
        NatsServer {
            port,
            monitor_port,
            process,
            _dir: dir,
        }
    }

    /// A server run from a whole configuration file's text (`nats-server -c`
    /// and nothing else); `port` and `monitor_port` are the ones it names.
    pub fn start_with_config(config_text: &str, port: u16, monitor_port: u16) -> NatsServer {
        let dir = ScratchDir::new("nats");
        let config = dir.path().join("nats.conf");
        std::fs::write(&config, config_text).expect("write nats.conf");
        let log = dir.path().join("nats.log");
        let log_path = log.clone();
        let command = move || {
            let mut c = Command::new(NatsServer::BINARY);
            c.arg("-c").arg(&config).arg("-l").arg(&log);
            c
        };
        let mut process = Process {
            name: "nats-server",
            log: Some(log_path),
            command: Box::new(command),
            port,
            child: None,
        };
        process.spawn();
        assert!(wait_listening(monitor_port, BROKER_START), "nats monitor");
        NatsServer {
            port,
            monitor_port,
            process,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Graceful stop (SIGTERM).
    pub fn stop(&mut self) {
        self.process.signal("TERM");
    }

    /// Crash (SIGKILL).
    pub fn kill(&mut self) {
        self.process.signal("KILL");
    }

    /// Start again on the same ports (after `stop` or `kill`).
    pub fn restart(&mut self) {
        self.process.spawn();
        assert!(
            wait_listening(self.monitor_port, BROKER_START),
            "nats monitor"
        );
    }

    /// A monitoring endpoint's JSON (`/varz`, `/subsz?subs=1`, ...).
    pub fn monitor(&self, path: &str) -> serde_json::Value {
        let body = http_get(self.monitor_port, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// Subscriptions the server holds on exactly `subject`.
    pub fn subscriptions_on(&self, subject: &str) -> usize {
        let subsz = self.monitor("/subsz?subs=1&limit=10000");
        subsz["subscriptions_list"]
            .as_array()
            .map(|l| l.iter().filter(|s| s["subject"] == subject).count())
            .unwrap_or(0)
    }
}

/// A `redis-server` on a free port, no persistence.
pub struct RedisServer {
    pub port: u16,
    process: Process,
    _dir: ScratchDir,
}

impl RedisServer {
    pub const BINARY: &'static str = "redis-server";

    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// TLS only (`rediss://`), with this PEM certificate and key; clients
    /// are not asked for certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        RedisServer::start_with(Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> RedisServer {
        let dir = ScratchDir::new("redis");
        let port = free_port();
        let path = dir.path().to_path_buf();
        let command = move || {
            let mut c = Command::new(RedisServer::BINARY);
            match &tls {
                None => c.arg("--port").arg(port.to_string()),
                Some((cert, key)) => c
                    .args(["--port", "0", "--tls-port"])
                    .arg(port.to_string())
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .args(["--tls-auth-clients", "no"]),
            };
            c.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&path);
            c
        };
        let mut process = Process {
            name: "redis-server",
            log: None,
            command: Box::new(command),
            port,
            child: None,
        };
        process.spawn();
        RedisServer {
            port,
            process,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.process.signal("TERM");
    }

    pub fn kill(&mut self) {
        self.process.signal("KILL");
    }

    pub fn restart(&mut self) {
        self.process.spawn();
    }

    /// One command over a raw RESP connection; the reply's text.
    pub fn command(&self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Subscribers Redis counts on `channel` (`PUBSUB NUMSUB`).
    pub fn subscriptions_on(&self, channel: &str) -> usize {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]);
        // *2\r\n$len\r\nchannel\r\n:N\r\n
        reply
            .lines()
            .find_map(|l| l.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A blocking HTTP/1.0 GET on loopback; the body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    match out.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_owned(),
        None => out,
    }
}

/// What the generic cluster test bodies need from a broker; each body is
/// instantiated once per implementation (NATS and Redis).
pub trait Broker: Sized + Send + 'static {
    const KIND: AdapterKind;
    fn start() -> Self;
    /// A broker whose own payload limit is `max` where it has one (NATS);
    /// Redis has none (the bus option sets it).
    fn start_with_max_payload(max: usize) -> Self;
    fn url(&self) -> String;
    fn kill(&mut self);
    fn restart(&mut self);
    /// Subscriptions the broker holds on `subject` (one per interested node).
    fn subscriptions_on(&self, subject: &str) -> usize;

    /// Adapter settings for a node on this broker, under `prefix`.
    fn adapter_settings(&self, prefix: &str) -> AdapterSettings {
        AdapterSettings {
            kind: Self::KIND,
            url: self.url(),
            prefix: prefix.into(),
            tls_ca_file: String::new(),
        }
    }
}

impl Broker for NatsServer {
    const KIND: AdapterKind = AdapterKind::Nats;
    fn start() -> Self {
        NatsServer::start()
    }
    fn start_with_max_payload(max: usize) -> Self {
        NatsServer::start_with_max_payload(max)
    }
    fn url(&self) -> String {
        NatsServer::url(self)
    }
    fn kill(&mut self) {
        NatsServer::kill(self)
    }
    fn restart(&mut self) {
        NatsServer::restart(self)
    }
    fn subscriptions_on(&self, subject: &str) -> usize {
        NatsServer::subscriptions_on(self, subject)
    }
}

impl Broker for RedisServer {
    const KIND: AdapterKind = AdapterKind::Redis;
    fn start() -> Self {
        RedisServer::start()
    }
    fn start_with_max_payload(_max: usize) -> Self {
        RedisServer::start()
    }
    fn url(&self) -> String {
        RedisServer::url(self)
    }
    fn kill(&mut self) {
        RedisServer::kill(self)
    }
    fn restart(&mut self) {
        RedisServer::restart(self)
    }
    fn subscriptions_on(&self, subject: &str) -> usize {
        RedisServer::subscriptions_on(self, subject)
    }
}

//! Command line: `riptide-bench <scenario> [--option value]...`.
//!
//! Hand-rolled on purpose: every option takes exactly one value (so a runner
//! builds the command line mechanically), `--server-pid` may repeat, and an
//! unknown option is an error rather than a silently ignored typo.

use std::fmt;
use std::time::Duration;

pub const USAGE: &str = "\
riptide-bench: a Socket.IO v5 / Engine.IO v4 load generator for the bench fixture
(../shared/FIXTURE.md). One JSON line on stdout per run, progress on stderr.

usage: riptide-bench <scenario> [--option value]...

scenarios:
  idle             open --conns connections (cumulative steps), report conn/s and
                   server RSS per idle connection
  fanout           --receivers join one room, one publisher publishes; deliveries/s,
                   loss, duplicates, order, latency
  echo             --sockets emit `echo` with ack; round trips/s and latency
  cross-node       fanout, receivers on --url-b, publisher on --url
  slow             fanout plus one receiver that stops reading its socket
  reconnect-storm  --clients connect, --restart-cmd restarts the node, all reconnect
  rolling-restart  --clients with connection state recovery on --url and --url-b, a
                   publisher at --rate; --restart-cmd restarts node A, then
                   --restart-cmd-b node B; messages lost, duplicated, reordered
  service-publish  --clients connect to a riptide node in service mode, each with its own
                   JWT (room user:u<i>); the generator publishes through POST /api/publish,
                   --rooms-per-request user rooms per request; deliveries/s, loss,
                   duplicates, latency, API requests/s and answer time

common options:
  --url URL               fixture server (default http://127.0.0.1:3000)
  --url-b URL             second node (cross-node receivers)
  --path PATH             Engine.IO path (default /socket.io/)
  --label TEXT            copied into the output (e.g. the server's name)
  --threads N             generator runtime worker threads (default 1)
  --concurrency N         connection handshakes in flight (default 256)
  --connect-timeout-ms N  per connection attempt (default 10000)
  --server-pid PID        server process to sample (RSS, CPU); repeatable
  --sample-ms N           server sampling period (default 500, 200 for reconnect-storm)
  --room NAME             room used by fanout scenarios (default bench)
  --payload-bytes N       length of the payload's `pad` filler (default 64)
  --deflate               offer permessage-deflate (RFC 7692) and inflate compressed frames

idle:             --conns 5000,10000   --settle-ms 2000   --hold-s 0
                  --jwt-secret SECRET (authenticate each as service mode's u<i>)
fanout, cross-node, slow:
                  --receivers 1000  --rate 1000 (msg/s, 0 = as fast as possible)
                  --duration 10 (s) | --messages N   --drain-ms 5000
slow:             --slow-rcvbuf 4096 (SO_RCVBUF of the slow receiver, bytes)
cross-node:       --outage-cmd CMD (run --outage-at-s after publishing starts, default
                  a third of --duration: it stops the broker and starts it again,
                  returning once the broker accepts connections); reports the
                  delivery gap and how long after the broker's return delivery resumed
echo:             --sockets 100  --rate 0 (round trips/s in total, 0 = closed loop)
                  --duration 10 (s)   --drain-ms 5000
reconnect-storm:  --clients 1000  --restart-cmd \"shell command\"
                  --server-pid-file FILE (the new server's PID, for peak CPU)
                  --timeout-s 60  --backoff-min-ms 100  --backoff-max-ms 500
                  --backoff-cap-ms 5000
rolling-restart:  --clients 1000  --rate 100  --restart-cmd CMD_A  --restart-cmd-b CMD_B
                  --gap-s 3 (before, between and after the restarts)  --timeout-s 60
                  --drain-ms 5000  --backoff-min-ms 100  --backoff-max-ms 500
service-publish:  --clients 10000  --jwt-secret SECRET (the server's auth.hmac_secret)
                  --api-key KEY (the server's api.key)  --rooms-per-request 100
                  --rate 0 (requests/s, 0 = as fast as --api-concurrency allows)
                  --api-concurrency 8 (HTTP keep-alive connections)  --api-timeout-ms 10000
                  --duration 10 (s; also --duration-s) | --messages N (requests)
                  --drain-ms 5000   --url-b URL (the clients' node; default --url)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Idle,
    Fanout,
    Echo,
    CrossNode,
    Slow,
    ReconnectStorm,
    RollingRestart,
    ServicePublish,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
            Scenario::Echo => "echo",
            Scenario::CrossNode => "cross-node",
            Scenario::Slow => "slow",
            Scenario::ReconnectStorm => "reconnect-storm",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::ServicePublish => "service-publish",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "idle" => Scenario::Idle,
            "fanout" => Scenario::Fanout,
            "echo" => Scenario::Echo,
            "cross-node" => Scenario::CrossNode,
            "slow" => Scenario::Slow,
            "reconnect-storm" => Scenario::ReconnectStorm,
            "rolling-restart" => Scenario::RollingRestart,
            "service-publish" => Scenario::ServicePublish,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub scenario: Scenario,
    pub url: String,
    pub url_b: Option<String>,
    pub path: String,
    pub label: Option<String>,
    pub threads: usize,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub server_pids: Vec<u32>,
    pub sample: Duration,
    pub room: String,
    pub payload_bytes: usize,
    /// Offer permessage-deflate on every connection (`--deflate`).
    pub deflate: bool,
    // idle
    pub conns: Vec<usize>,
    pub settle: Duration,
    pub hold: Duration,
    // fanout family and echo
    pub receivers: usize,
    pub sockets: usize,
    pub rate: f64,
    pub duration: Duration,
    pub messages: Option<u64>,
    pub drain: Duration,
    pub slow_rcvbuf: u32,
    // reconnect-storm
    pub clients: usize,
    pub restart_cmd: Option<String>,
    pub server_pid_file: Option<String>,
    // rolling-restart
    pub restart_cmd_b: Option<String>,
    pub gap: Duration,
    // cross-node with a broker outage
    pub outage_cmd: Option<String>,
    pub outage_at: Option<Duration>,
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub backoff_cap: Duration,
    // service-publish
    pub jwt_secret: Option<String>,
    pub api_key: Option<String>,
    pub rooms_per_request: usize,
    pub api_concurrency: usize,
    pub api_timeout: Duration,
}

#[derive(Debug)]
pub enum CliError {
    Help,
    Bad(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str(USAGE),
            CliError::Bad(m) => write!(f, "{m}\n\n{USAGE}"),
        }
    }
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, CliError> {
    v.parse()
        .map_err(|_| CliError::Bad(format!("--{key}: not a valid number: {v:?}")))
}

fn ms(key: &str, v: &str) -> Result<Duration, CliError> {
    Ok(Duration::from_millis(num(key, v)?))
}

fn secs(key: &str, v: &str) -> Result<Duration, CliError> {
    let s: f64 = num(key, v)?;
    if !(s.is_finite() && s >= 0.0) {
        return Err(CliError::Bad(format!("--{key}: must be >= 0")));
    }
    Ok(Duration::from_secs_f64(s))
}

impl Opts {
    /// The reconnect backoff `--backoff-*-ms` describe.
    pub fn backoff(&self) -> crate::client::Backoff {
        crate::client::Backoff {
            min: self.backoff_min,
            max: self.backoff_max,
            cap: self.backoff_cap,
        }
    }

    pub fn parse(args: &[String]) -> Result<Opts, CliError> {
        let mut it = args.iter();
        let first = it.next().ok_or(CliError::Help)?;
        if first == "-h" || first == "--help" || first == "help" {
            return Err(CliError::Help);
        }
        let scenario = Scenario::parse(first)
            .ok_or_else(|| CliError::Bad(format!("unknown scenario {first:?}")))?;
        let mut o = Opts {
            scenario,
            url: "http://127.0.0.1:3000".into(),
            url_b: None,
            path: "/socket.io/".into(),
            label: None,
            threads: 1,
            concurrency: 256,
            connect_timeout: Duration::from_secs(10),
            server_pids: Vec::new(),
            sample: Duration::from_millis(if scenario == Scenario::ReconnectStorm {
                200
            } else {
                500
            }),
            room: "bench".into(),
            payload_bytes: 64,
            deflate: false,
            conns: vec![5000, 10000],
            settle: Duration::from_secs(2),
            hold: Duration::ZERO,
            receivers: 1000,
            sockets: 100,
            rate: match scenario {
                Scenario::Echo | Scenario::ServicePublish => 0.0,
                Scenario::RollingRestart => 100.0,
                _ => 1000.0,
            },
            duration: Duration::from_secs(10),
            messages: None,
            drain: Duration::from_secs(5),
            slow_rcvbuf: 4096,
            clients: if scenario == Scenario::ServicePublish {
                10_000
            } else {
                1000
            },
            restart_cmd: None,
            server_pid_file: None,
            restart_cmd_b: None,
            gap: Duration::from_secs(3),
            outage_cmd: None,
            outage_at: None,
            timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            backoff_cap: Duration::from_millis(5000),
            jwt_secret: None,
            api_key: None,
            rooms_per_request: 100,
            api_concurrency: 8,
            api_timeout: Duration::from_secs(10),
        };
        while let Some(key) = it.next() {
            if key == "-h" || key == "--help" {
                return Err(CliError::Help);
            }
            let Some(k) = key.strip_prefix("--") else {
                return Err(CliError::Bad(format!("unexpected argument {key:?}")));
            };
            // The one option without a value.
            if k == "deflate" {
                o.deflate = true;
                continue;
            }
            let v = it
                .next()
                .ok_or_else(|| CliError::Bad(format!("--{k} needs a value")))?;
            match k {
                "url" => o.url = v.clone(),
                "url-b" => o.url_b = Some(v.clone()),
                "path" => o.path = v.clone(),
                "label" => o.label = Some(v.clone()),
                "threads" => o.threads = num(k, v)?,
                "concurrency" => o.concurrency = num(k, v)?,
                "connect-timeout-ms" => o.connect_timeout = ms(k, v)?,
                "server-pid" => o.server_pids.push(num(k, v)?),
                "sample-ms" => o.sample = ms(k, v)?,
                "room" => o.room = v.clone(),
                "payload-bytes" => o.payload_bytes = num(k, v)?,
                "conns" => {
                    o.conns = v
                        .split(',')
                        .map(|s| num::<usize>(k, s.trim()))
                        .collect::<Result<_, _>>()?
                }
                "settle-ms" => o.settle = ms(k, v)?,
                "hold-s" => o.hold = secs(k, v)?,
                "receivers" => o.receivers = num(k, v)?,
                "sockets" => o.sockets = num(k, v)?,
                "rate" => o.rate = num(k, v)?,
                "duration" | "duration-s" => o.duration = secs(k, v)?,
                "messages" => o.messages = Some(num(k, v)?),
                "drain-ms" => o.drain = ms(k, v)?,
                "slow-rcvbuf" => o.slow_rcvbuf = num(k, v)?,
                "clients" => o.clients = num(k, v)?,
                "restart-cmd" => o.restart_cmd = Some(v.clone()),
                "restart-cmd-b" => o.restart_cmd_b = Some(v.clone()),
                "gap-s" => o.gap = secs(k, v)?,
                "outage-cmd" => o.outage_cmd = Some(v.clone()),
                "outage-at-s" => o.outage_at = Some(secs(k, v)?),
                "server-pid-file" => o.server_pid_file = Some(v.clone()),
                "timeout-s" => o.timeout = secs(k, v)?,
                "backoff-min-ms" => o.backoff_min = ms(k, v)?,
                "backoff-max-ms" => o.backoff_max = ms(k, v)?,
                "backoff-cap-ms" => o.backoff_cap = ms(k, v)?,
                "jwt-secret" => o.jwt_secret = Some(v.clone()),
                "api-key" => o.api_key = Some(v.clone()),
                "rooms-per-request" => o.rooms_per_request = num(k, v)?,
                "api-concurrency" => o.api_concurrency = num(k, v)?,
                "api-timeout-ms" => o.api_timeout = ms(k, v)?,
                _ => return Err(CliError::Bad(format!("unknown option --{k}"))),
            }
        }
        o.validate()?;
        Ok(o)
    }

    fn validate(&self) -> Result<(), CliError> {
        let bad = |m: &str| Err(CliError::Bad(m.to_owned()));
        if self.threads == 0 || self.concurrency == 0 {
            return bad("--threads and --concurrency must be >= 1");
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return bad("--rate must be >= 0");
        }
        if self.sample.is_zero() {
            return bad("--sample-ms must be >= 1");
        }
        if self.conns.is_empty() || self.conns.windows(2).any(|w| w[1] < w[0]) {
            return bad("--conns: a non-decreasing list, e.g. 5000,10000");
        }
        if self.scenario == Scenario::CrossNode && self.url_b.is_none() {
            return bad("cross-node needs --url-b (the receivers' node)");
        }
        if self.backoff_max < self.backoff_min {
            return bad("--backoff-max-ms must be >= --backoff-min-ms");
        }
        if matches!(
            self.scenario,
            Scenario::Fanout | Scenario::CrossNode | Scenario::Slow
        ) && self.receivers == 0
        {
            return bad("--receivers must be >= 1");
        }
        if self.scenario == Scenario::Echo && self.sockets == 0 {
            return bad("--sockets must be >= 1");
        }
        if matches!(
            self.scenario,
            Scenario::ReconnectStorm | Scenario::RollingRestart | Scenario::ServicePublish
        ) && self.clients == 0
        {
            return bad("--clients must be >= 1");
        }
        if self.outage_cmd.is_some() && self.scenario != Scenario::CrossNode {
            return bad("--outage-cmd is for cross-node");
        }
        if self.scenario == Scenario::ServicePublish {
            if self.jwt_secret.as_deref().unwrap_or("").is_empty() {
                return bad("service-publish needs --jwt-secret (the server's auth.hmac_secret)");
            }
            if self.api_key.as_deref().unwrap_or("").is_empty() {
                return bad("service-publish needs --api-key (the server's api.key)");
            }
            if self.rooms_per_request == 0 || self.api_concurrency == 0 {
                return bad("--rooms-per-request and --api-concurrency must be >= 1");
            }
            if self.api_timeout.is_zero() {
                return bad("--api-timeout-ms must be >= 1");
            }
        }
        if self.scenario == Scenario::RollingRestart {
            if self.url_b.is_none() {
                return bad("rolling-restart needs --url-b (the second node)");
            }
            if self.rate <= 0.0 {
                return bad("rolling-restart needs --rate > 0");
            }
        }
        Ok(())
    }
}

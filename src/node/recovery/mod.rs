//! Connection state recovery, as Socket.IO v4.6+ clients expect it.
//!
//! With recovery on, every event a socket may miss while it is away is
//! stored in its namespace's log under an offset, and the offset rides as the
//! event's last argument (the client keeps the last one it saw). The CONNECT
//! reply carries a private session id (`pid`). When a socket leaves for a
//! reason the client did not choose (transport close or error, ping timeout,
//! server shutdown, slow consumer), its state is parked here for
//! `max_disconnection`: id, rooms, user and typed data. A CONNECT whose auth
//! carries that `pid` (and the offset it last saw, if any) gets the same
//! socket back, with every stored event it missed written before the CONNECT
//! reply, in order, once.
//!
//! What is stored follows the reference server: events only, not volatile
//! ones, not acks, not events sent with an ack. Where it departs, it is to
//! avoid the reference's known failures:
//!
//! - a client that had not received any event yet sends no offset; it is
//!   still recovered, from the log position of its first connect (socket.io
//!   #4888, #5538);
//! - a volatile event with a trailing string argument is taken by the client
//!   as its offset; the socket remembers the last few such strings with the
//!   stored offset written before each, so that string resumes from the right
//!   place, and a string it does not know is never parsed as one (#5539);
//! - a client that comes back while its old connection is still half-open
//!   takes the old socket over; the old connection's eventual timeout finds
//!   the socket superseded and touches nothing of it (#4880).
//!
//! The log is bounded per namespace by length and by age. A client whose
//! resume point is older than what the log still holds is not recovered
//! (`socket.recovered === false`, a new id): it is never handed a partial
//! replay as if it were whole.
//!
//! This store lives in the node's memory: it recovers clients that come
//! back to the same node, and serves a node without a cluster adapter. With
//! `adapter.kind = nats` or `redis` the same contract is kept in the broker
//! instead ([`cluster`]), so any node recovers any client.

pub(crate) mod cluster;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::metrics::Metrics;
use super::socket::{Extensions, Socket};
use crate::engineio::Sid;
use crate::socketio::encode::Encoded;

/// Offset `seq` of the store whose epoch is `epoch`: `<epoch, 8 hex>-<seq hex>`.
fn format_offset(epoch: u32, seq: u64) -> String {
    format!("{epoch:08x}-{seq:x}")
}

/// The sequence of an offset [`format_offset`] wrote with `epoch`; `None`
/// for anything else (another store's offset, an application's string).
fn parse_offset(epoch: u32, offset: &str) -> Option<u64> {
    let (e, seq) = offset.split_once('-')?;
    if e.len() != 8 || u32::from_str_radix(e, 16).ok()? != epoch {
        return None;
    }
    let seq = u64::from_str_radix(seq, 16).ok()?;
    (seq > 0).then_some(seq)
}

/// How many volatile trailing strings a socket remembers (see the module
/// docs, #5539).
const TAILS: usize = 16;

/// Namespaces with a log, past which logs emptied by their bounds are
/// dropped (dynamic namespaces come and go).
const MAX_LOGS: usize = 1024;

/// The recovery settings the node runs with.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// How long a disconnected socket's state is kept.
    pub max_disconnection: Duration,
    /// Whether a recovered socket skips the connect middlewares.
    pub skip_middlewares: bool,
    /// Stored events kept per namespace, at most.
    pub max_packets: usize,
    /// Stored events older than this are dropped.
    pub max_age: Duration,
    /// Bytes of stored frames kept per namespace, at most.
    pub max_bytes: usize,
}

/// Who a stored event was for, to match it against a parked socket.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A broadcast: to the members of `rooms` (the whole namespace when
    /// empty), except the members of `except_rooms` and `except_sids`. A
    /// direct emit is a broadcast to the socket's own room.
    Rooms {
        rooms: Vec<Arc<str>>,
        except_rooms: Vec<Arc<str>>,
        except_sids: Vec<Sid>,
    },
    /// To every socket of one user.
    User(Arc<str>),
}

impl Target {
    fn matches(&self, sid: &Sid, user: Option<&str>, rooms: &[Arc<str>]) -> bool {
        let in_room = |r: &str| r == sid.as_str() || rooms.iter().any(|x| &**x == r);
        match self {
            Target::Rooms {
                rooms: to,
                except_rooms,
                except_sids,
            } => {
                (to.is_empty() || to.iter().any(|r| in_room(r)))
                    && !except_rooms.iter().any(|r| in_room(r))
                    && !except_sids.contains(sid)
            }
            Target::User(u) => user == Some(&**u),
        }
    }
}

/// Where a socket's client stands in its namespace's log: what a recovery
/// resumes from. Kept by the socket while it is connected (updated by its
/// connection as events are written), parked with it when it leaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resume {
    /// The first offset the client can have missed if it says nothing: the
    /// log position when its `pid` was first issued.
    pub from: u64,
    /// The last stored event written to the socket.
    pub last_stored: Option<u64>,
    /// Trailing strings of the last volatile events written, each with the
    /// last stored event written before it.
    pub tails: VecDeque<(Arc<str>, Option<u64>)>,
}

impl Resume {
    /// A stored event was written to the socket.
    pub fn stored(&mut self, seq: u64) {
        self.last_stored = Some(seq);
    }

    /// A volatile event whose last argument is `tail` was written.
    pub fn tail(&mut self, tail: Arc<str>) {
        if self.tails.len() == TAILS {
            self.tails.pop_front();
        }
        self.tails.push_back((tail, self.last_stored));
    }
}

/// The state a recovered socket gets back.
pub(crate) struct Restored {
    pub sid: Sid,
    pub pid: Arc<str>,
    pub user: Option<Arc<str>>,
    pub rooms: Vec<Arc<str>>,
    pub extensions: Extensions,
    /// The stored events it missed, in order.
    pub missed: Vec<Encoded>,
    pub resume: Resume,
    /// The old socket, when it was still connected (a half-open connection):
    /// its connection must drop it without touching its memberships, which
    /// the recovered socket now holds.
    pub superseded: Option<Socket>,
}

/// Why a CONNECT with a `pid` was not recovered (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No socket with that pid is parked (never was, expired and pruned,
    /// already recovered, or left for a reason that is not recoverable).
    UnknownSession,
    /// Parked longer than `max_disconnection`.
    Expired,
    /// The offset is not one this log issued, nor a trailing string the
    /// socket was sent.
    UnknownOffset,
    /// The log no longer holds everything after the resume point.
    Truncated,
    /// The cluster's recovery store (the broker) did not answer in time.
    Unavailable,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownSession => "unknown_session",
            Refusal::Expired => "expired",
            Refusal::UnknownOffset => "unknown_offset",
            Refusal::Truncated => "truncated",
            Refusal::Unavailable => "unavailable",
        }
    }
}

struct Stored {
    seq: u64,
    at: Instant,
    target: Target,
    frames: Encoded,
    bytes: usize,
}

/// One namespace's stored events. Offsets are one sequence for the whole
/// node, so a namespace's log can be dropped and made again without ever
/// reusing an offset.
struct Log {
    packets: VecDeque<Stored>,
    /// Bytes of the frames in `packets`.
    bytes: usize,
    /// Every event of this namespace below this offset may have been
    /// dropped.
    kept_from: u64,
}

impl Log {
    fn new(kept_from: u64) -> Log {
        Log {
            packets: VecDeque::new(),
            bytes: 0,
            kept_from,
        }
    }

    fn prune(&mut self, config: &RecoveryConfig, now: Instant) -> u64 {
        let mut dropped = 0;
        while let Some(front) = self.packets.front() {
            let too_many = self.packets.len() > config.max_packets;
            let too_big = self.bytes > config.max_bytes;
            let too_old = now.saturating_duration_since(front.at) > config.max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.kept_from = front.seq + 1;
            self.bytes -= front.bytes;
            self.packets.pop_front();
            dropped += 1;
        }
        dropped
    }
}

struct Parked {
    /// The socket as it left. Its typed data is taken at the recovery, not
    /// at the disconnect, so the handler's `on_disconnect` still sees it.
    socket: Socket,
    rooms: Vec<Arc<str>>,
    resume: Resume,
    at: Instant,
}

type Key = (Arc<str>, Arc<str>);

/// The socket a recovery found under its pid.
enum Found {
    /// Still connected: its old connection is half-open.
    Live(Socket),
    Parked(Parked),
}

struct State {
    logs: HashMap<Arc<str>, Log>,
    /// The offset the next stored event gets.
    next: u64,
    /// Raised to the `kept_from` of every log dropped: a log made later
    /// cannot vouch for anything below it.
    floor: u64,
    parked: HashMap<Key, Parked>,
    /// The parked sockets in the order they were parked, to drop the expired
    /// ones from the front without scanning them all.
    expiry: VecDeque<(Instant, Key)>,
    /// Connected sockets by (namespace, pid).
    live: HashMap<Key, Socket>,
}

impl State {
    /// Drop the parked sockets older than `max`: they can no longer be
    /// recovered, and each holds its old handle and data.
    fn drop_expired(&mut self, max: Duration, now: Instant) {
        while let Some((at, _)) = self.expiry.front() {
            if now.saturating_duration_since(*at) <= max {
                break;
            }
            let (at, key) = self.expiry.pop_front().expect("front checked");
            // Only if it is still that parking (not recovered and parked again).
            if self.parked.get(&key).is_some_and(|p| p.at == at) {
                self.parked.remove(&key);
            }
        }
    }

    fn drop_empty_logs(&mut self, config: &RecoveryConfig, now: Instant) {
        let mut floor = self.floor;
        self.logs.retain(|_, log| {
            log.prune(config, now);
            let keep = !log.packets.is_empty();
            if !keep {
                floor = floor.max(log.kept_from);
            }
            keep
        });
        self.floor = floor;
    }
}

/// The node's recovery store: each namespace's log of stored events, and the
/// sockets parked or connected under a pid.
pub(crate) struct Recovery {
    pub config: RecoveryConfig,
    metrics: Metrics,
    /// Distinguishes this store's offsets from any other's (another process,
    /// an application's own strings).
    epoch: u32,
    state: Mutex<State>,
}

/// What [`Recovery::retire`] decided about a leaving socket.
pub(crate) enum Retired {
    /// The socket is still the one of record: leave its rooms (these).
    Leave(HashSet<Arc<str>, foldhash::fast::RandomState>),
    /// A recovered socket took it over: touch nothing.
    Superseded,
}

impl Recovery {
    pub fn new(config: RecoveryConfig, metrics: Metrics) -> Recovery {
        Recovery {
            config,
            metrics,
            epoch: rand::random::<u32>() | 1,
            state: Mutex::new(State {
                logs: HashMap::new(),
                next: 1,
                floor: 1,
                parked: HashMap::new(),
                expiry: VecDeque::new(),
                live: HashMap::new(),
            }),
        }
    }

    /// The wire form of offset `seq`.
    pub fn offset(&self, seq: u64) -> String {
        format_offset(self.epoch, seq)
    }

    fn parse(&self, offset: &str) -> Option<u64> {
        parse_offset(self.epoch, offset)
    }

    /// A fresh private session id.
    pub fn new_pid() -> Arc<str> {
        Sid::random().as_str().into()
    }

    /// Store one event of namespace `ns` for `target`: `encode` gets its
    /// offset (to append as the last argument) and returns its frames. The
    /// count of events dropped at the bounds is returned with them.
    pub fn store<E>(
        &self,
        ns: &Arc<str>,
        target: Target,
        encode: impl FnOnce(&str) -> Result<Encoded, E>,
    ) -> Result<(u64, Encoded, u64), E> {
        let mut state = self.state.lock();
        let now = Instant::now();
        if !state.logs.contains_key(ns) && state.logs.len() >= MAX_LOGS {
            state.drop_empty_logs(&self.config, now);
        }
        let seq = state.next;
        let frames = encode(&self.offset(seq))?;
        state.next += 1;
        let floor = state.floor;
        let log = state
            .logs
            .entry(ns.clone())
            .or_insert_with(|| Log::new(floor));
        let bytes = frames.iter().map(|f| f.len()).sum();
        log.bytes += bytes;
        log.packets.push_back(Stored {
            seq,
            at: now,
            target,
            frames: frames.clone(),
            bytes,
        });
        let dropped = log.prune(&self.config, now);
        Ok((seq, frames, dropped))
    }

    /// Where a socket connecting to `ns` now stands.
    pub fn position(&self) -> u64 {
        self.state.lock().next
    }

    /// A socket connected (or was recovered) under `pid`.
    pub fn register(&self, pid: &Arc<str>, socket: &Socket) {
        let key = (socket.inner.ns.clone(), pid.clone());
        let mut state = self.state.lock();
        state.drop_expired(self.config.max_disconnection, Instant::now());
        state.live.insert(key, socket.clone());
        self.metrics.recovery_parked(state.parked.len());
    }

    /// A socket under `pid` is leaving. If it is still the socket of record,
    /// its rooms are taken (`take_rooms`, under this store's lock, so a
    /// recovery cannot take them at the same time) and, when `park` holds its
    /// resume point, its state is parked for a recovery.
    pub fn retire(
        &self,
        pid: &Arc<str>,
        socket: &Socket,
        park: Option<Resume>,
        take_rooms: impl FnOnce() -> HashSet<Arc<str>, foldhash::fast::RandomState>,
    ) -> Retired {
        let inner = &socket.inner;
        let key = (inner.ns.clone(), pid.clone());
        let mut state = self.state.lock();
        let ours = state
            .live
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(&s.inner, inner));
        if !ours {
            return Retired::Superseded;
        }
        state.live.remove(&key);
        let rooms = take_rooms();
        if let Some(resume) = park {
            let now = Instant::now();
            state.drop_expired(self.config.max_disconnection, now);
            state.expiry.push_back((now, key.clone()));
            state.parked.insert(
                key,
                Parked {
                    socket: socket.clone(),
                    rooms: rooms.iter().cloned().collect(),
                    resume,
                    at: now,
                },
            );
        }
        self.metrics.recovery_parked(state.parked.len());
        Retired::Leave(rooms)
    }

    /// Recover the socket parked (or still connected) under `pid` in `ns`,
    /// resuming after `offset` (the last one the client saw, if any). The
    /// parked state is consumed either way: a pid recovers once.
    pub fn restore(
        &self,
        ns: &Arc<str>,
        pid: &str,
        offset: Option<&str>,
    ) -> Result<Restored, Refusal> {
        let key: Key = (ns.clone(), pid.into());
        let mut state = self.state.lock();
        let now = Instant::now();
        // A socket still connected (its old connection is half-open) is only
        // read here: it is taken over below, once the recovery is sure, so a
        // refusal leaves it as it was. A parked one is consumed either way.
        let found = match state.live.get(&key) {
            Some(old) => Found::Live(old.clone()),
            None => {
                let parked = state.parked.remove(&key);
                self.metrics.recovery_parked(state.parked.len());
                let parked = parked.ok_or(Refusal::UnknownSession)?;
                if now.saturating_duration_since(parked.at) > self.config.max_disconnection {
                    return Err(Refusal::Expired);
                }
                Found::Parked(parked)
            }
        };
        let resume = match &found {
            Found::Live(old) => old
                .inner
                .resume()
                .map(|r| r.lock().clone())
                .unwrap_or_default(),
            Found::Parked(p) => p.resume.clone(),
        };
        let from = match offset {
            None => resume.from,
            Some(offset) => {
                // A volatile event's trailing string first: the socket was
                // sent it, so the client saw everything before it.
                let tail = resume.tails.iter().rev().find(|(t, _)| &**t == offset);
                match tail {
                    Some((_, last)) => last.map_or(resume.from, |s| s + 1),
                    None => self.parse(offset).ok_or(Refusal::UnknownOffset)? + 1,
                }
            }
        };
        if from > state.next {
            return Err(Refusal::UnknownOffset);
        }
        if let Some(log) = state.logs.get_mut(ns) {
            log.prune(&self.config, now);
        }
        let kept_from = state.logs.get(ns).map_or(state.floor, |l| l.kept_from);
        if from < kept_from {
            return Err(Refusal::Truncated);
        }
        // Sure now. Take the live socket over: its rooms and data move to the
        // recovered one; its connection drops it without a word.
        let (socket, rooms, superseded) = match found {
            Found::Live(old) => {
                state.live.remove(&key);
                let rooms: Vec<Arc<str>> = {
                    let mut set = old.inner.rooms.lock();
                    set.closed = true;
                    std::mem::take(&mut set.rooms).into_iter().collect()
                };
                (old.clone(), rooms, Some(old))
            }
            Found::Parked(p) => (p.socket, p.rooms, None),
        };
        let old = &socket.inner;
        let user = old.user.as_deref();
        let mut missed = Vec::new();
        let mut last_replayed = None;
        if let Some(log) = state.logs.get(ns) {
            for p in log.packets.iter().filter(|p| p.seq >= from) {
                if p.target.matches(&old.id, user, &rooms) {
                    missed.push(p.frames.clone());
                    last_replayed = Some(p.seq);
                }
            }
        }
        let resume = Resume {
            from: resume.from,
            last_stored: last_replayed.or(from.checked_sub(1).filter(|s| *s > 0)),
            tails: VecDeque::new(),
        };
        Ok(Restored {
            sid: old.id.clone(),
            pid: key.1,
            user: old.user.clone(),
            rooms,
            extensions: old.extensions.take(),
            missed,
            resume,
            superseded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Frame;

    fn config(max_packets: usize, max_age: Duration) -> RecoveryConfig {
        RecoveryConfig {
            max_disconnection: Duration::from_secs(60),
            skip_middlewares: true,
            max_packets,
            max_age,
            max_bytes: usize::MAX,
        }
    }

    fn all() -> Target {
        Target::Rooms {
            rooms: Vec::new(),
            except_rooms: Vec::new(),
            except_sids: Vec::new(),
        }
    }

    fn store(r: &Recovery, ns: &Arc<str>) -> (u64, u64) {
        let (seq, _, dropped) = r
            .store(ns, all(), |offset| {
                Ok::<_, ()>(Arc::from(vec![Frame::message(offset)]))
            })
            .unwrap();
        (seq, dropped)
    }

    #[test]
    fn offsets_round_trip_and_foreign_ones_do_not_parse() {
        let r = Recovery::new(config(10, Duration::from_secs(60)), Metrics::new());
        let other = Recovery::new(config(10, Duration::from_secs(60)), Metrics::new());
        assert_eq!(r.parse(&r.offset(42)), Some(42));
        if other.epoch != r.epoch {
            assert_eq!(r.parse(&other.offset(42)), None, "another store's offset");
        }
        for junk in [
            "",
            "42",
            "hello",
            "zzzzzzzz-1",
            "-1",
            &format!("{:08x}-", r.epoch),
        ] {
            assert_eq!(r.parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_log_keeps_at_most_max_packets_and_says_what_it_dropped() {
        let r = Recovery::new(config(3, Duration::from_secs(60)), Metrics::new());
        let ns: Arc<str> = "/".into();
        let mut dropped = 0;
        for _ in 0..5 {
            dropped += store(&r, &ns).1;
        }
        assert_eq!(dropped, 2);
        let state = r.state.lock();
        let log = &state.logs[&ns];
        assert_eq!(log.packets.len(), 3);
        assert_eq!(log.kept_from, 3, "offsets 1 and 2 are gone");
        assert_eq!(state.next, 6);
    }

    #[test]
    fn the_log_keeps_at_most_max_bytes() {
        let r = Recovery::new(
            RecoveryConfig {
                max_bytes: 100,
                ..config(1000, Duration::from_secs(60))
            },
            Metrics::new(),
        );
        let ns: Arc<str> = "/".into();
        let big = |offset: &str| {
            Ok::<_, ()>(Arc::from(vec![Frame::message(&format!(
                "{offset}{}",
                "x".repeat(40)
            ))]))
        };
        let mut dropped = 0;
        for _ in 0..5 {
            dropped += r.store(&ns, all(), big).unwrap().2;
        }
        let state = r.state.lock();
        let log = &state.logs[&ns];
        assert!(log.bytes <= 100, "{} bytes kept", log.bytes);
        assert_eq!(log.packets.len() as u64 + dropped, 5);
        assert!(dropped >= 3, "each is about 50 bytes: {dropped} dropped");
        assert_eq!(log.kept_from, 1 + dropped);
    }

    #[test]
    fn the_log_drops_what_is_older_than_max_age() {
        let r = Recovery::new(config(100, Duration::from_millis(20)), Metrics::new());
        let ns: Arc<str> = "/".into();
        store(&r, &ns);
        store(&r, &ns);
        std::thread::sleep(Duration::from_millis(40));
        let (seq, dropped) = store(&r, &ns);
        assert_eq!((seq, dropped), (3, 2));
        assert_eq!(r.state.lock().logs[&ns].kept_from, 3);
    }

    #[test]
    fn dropped_logs_raise_the_floor_so_no_offset_is_vouched_for_twice() {
        let r = Recovery::new(config(100, Duration::from_millis(10)), Metrics::new());
        let first: Arc<str> = "/first".into();
        store(&r, &first);
        std::thread::sleep(Duration::from_millis(20));
        r.state.lock().drop_empty_logs(&r.config, Instant::now());
        let state = r.state.lock();
        assert!(state.logs.is_empty());
        assert_eq!(state.floor, 2, "offset 1 may have mattered to someone");
    }

    #[test]
    fn an_unknown_pid_is_refused() {
        let r = Recovery::new(config(10, Duration::from_secs(60)), Metrics::new());
        let ns: Arc<str> = "/".into();
        assert_eq!(
            r.restore(&ns, "nope", None).err(),
            Some(Refusal::UnknownSession)
        );
    }

    #[test]
    fn targets_match_rooms_exclusions_and_users() {
        let sid = Sid::from("s1");
        let rooms: Vec<Arc<str>> = vec!["a".into(), "b".into()];
        let to = |r: &[&str], er: &[&str], es: &[&str]| Target::Rooms {
            rooms: r.iter().map(|x| Arc::from(*x)).collect(),
            except_rooms: er.iter().map(|x| Arc::from(*x)).collect(),
            except_sids: es.iter().map(|x| Sid::from(*x)).collect(),
        };
        let m = |t: Target| t.matches(&sid, Some("u"), &rooms);
        assert!(m(to(&[], &[], &[])), "the whole namespace");
        assert!(m(to(&["b"], &[], &[])));
        assert!(m(to(&["s1"], &[], &[])), "its own room");
        assert!(!m(to(&["c"], &[], &[])));
        assert!(!m(to(&[], &["a"], &[])), "except a room it is in");
        assert!(!m(to(&["b"], &[], &["s1"])), "except itself");
        assert!(m(Target::User("u".into())));
        assert!(!m(Target::User("v".into())));
    }
}

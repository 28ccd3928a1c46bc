//! Connection state recovery across the cluster: the same contract as the
//! node-memory store (`super`), kept in the broker (`adapter::store`:
//! JetStream with NATS, Redis Streams with Redis), so a client is recovered
//! by any node, including after its own node was killed.
//!
//! # How a stored event travels
//!
//! A stored event is not delivered by the node that emits it. It is
//! appended to its namespace's stream (by this node's [recorder](run_recorder),
//! in emit order), and every node with sockets in the namespace reads the
//! stream ([tail](run_tail)) and delivers each record to its matching local
//! sockets, the emitting node included. So every node delivers a
//! namespace's stored events in the stream's order, the order the offsets
//! follow: a client's last offset says exactly what it got, whichever nodes
//! the events came from. The cost is one broker round trip before delivery,
//! and a node reads all of a namespace's stored events, not only its rooms'
//! (see `docs/decisions.md`). Volatile events, and everything that is not
//! stored, take the bus as without recovery.
//!
//! While the broker is away the recorder keeps trying, and stored events wait
//! in its queue ([`RECORDER_QUEUE`] events): once the broker is back they
//! are appended and delivered, late but whole, on every node. That is the
//! policy for stored emits during a broker outage: nothing lost, within a
//! named bound. Past the bound (or for an event the broker refuses: too
//! large) an event is delivered the ordinary way, without an offset, and
//! counted (`riptide_recovery_unrecorded_total`): live clients get it, a
//! client that was away then cannot get it back. An emit never blocks.
//!
//! # Session records
//!
//! A socket's record (id, user, rooms, resume point) is written when it
//! connects, again when its rooms change (coalesced, [`FLUSH`]), refreshed
//! while it is connected (every `refresh`, so a killed node's sockets are
//! recoverable for `max_disconnection` after their last refresh), and
//! marked parked when it leaves for a recoverable reason (removed when it
//! leaves for good). One writer task per node does all of it, in order.
//! Each record is owned: a recovery claims it, and the old owner's writes
//! fail from then on, so a half-open connection timing out on another node
//! cannot overwrite what the recovered socket holds (socket.io #4880).
//!
//! # A recovery
//!
//! [`ClusterRecovery::restore`] claims the record, checks the window,
//! resolves the resume point and reads the stream after it (refusing when
//! the stream no longer holds all of it). The connection then attaches the
//! socket (its rooms, its id) and buffers what its node's tail delivers to
//! it, reads the stream once more ([`ClusterRecovery::catch_up`]) for what
//! was appended meanwhile, and writes: the missed events, then the buffered
//! ones the reads did not cover, then the CONNECT reply. Nothing between
//! the first read and the attach is lost, nothing is written twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use slog::{debug, warn, Logger};
use tokio::sync::{mpsc, watch};

use super::{parse_offset, Refusal, Restored, Resume, Retired, Target};
use crate::adapter::codec::{
    decode_record, encode_record, SessionRecord, StoredEvent, StoredTarget,
};
use crate::adapter::store::{ns_hash, RecoveryStore, StoreError, Token};
use crate::adapter::NodeId;
use crate::engineio::Sid;
use crate::node::delivery::{Deliver, Encoded, Mode};
use crate::node::fanout::{local_frames, wire_frames};
use crate::node::metrics::Metrics;
use crate::node::shared::ServerShared;
use crate::node::socket::Socket;
use crate::socketio::encode::with_last_arg;
use crate::socketio::parser::Parser;

use super::RecoveryConfig;

/// How often room changes are written (coalesced per socket).
const FLUSH: Duration = Duration::from_millis(100);

/// How often the streams' age bound is applied.
const TRIM: Duration = Duration::from_secs(5);

/// Events the recorder holds for the broker, at most; past that an emit is
/// delivered unrecorded.
const RECORDER_QUEUE: usize = 16_384;

/// Records appended in one batch.
const BATCH: usize = 256;

/// Session writes in flight at once.
const WRITES_IN_FLIGHT: usize = 32;

type Key = (Arc<str>, Arc<str>);

/// One event waiting for the recorder.
struct Pending {
    ns: Arc<str>,
    target: Target,
    /// Its frames without the offset (for the fallback delivery too).
    frames: Encoded,
}

/// What the session writer is asked to do, in order.
enum Write {
    /// This node owns `key` now (a fresh socket: no token yet; a recovered
    /// one: the claim's token). Its record is written from the live socket.
    Own { key: Key, token: Option<Token> },
    /// The socket left for a recoverable reason.
    Park { key: Key, record: SessionRecord },
    /// The socket left for good.
    Remove { key: Key },
}

/// A namespace's tail on this node.
struct Tail {
    /// The last sequence it delivered (or the stream's last when it started).
    position: Arc<AtomicU64>,
    ready: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

/// The state a recovery found, before the socket is attached.
pub(crate) struct Restoring {
    /// What the socket gets back (its missed events up to `end`; no typed
    /// data: that does not cross nodes, and a socket taken over on this node
    /// keeps its own).
    pub state: Restored,
    /// The stream position the missed events were read up to.
    pub end: u64,
    /// The claim's ownership token of the session record.
    pub token: Token,
}

/// See the module doc.
pub(crate) struct ClusterRecovery {
    pub config: RecoveryConfig,
    store: Arc<dyn RecoveryStore>,
    node: NodeId,
    /// Offsets of this cluster: the same for every node (from the prefix).
    epoch: u32,
    refresh: Duration,
    timeout: Duration,
    server: Weak<ServerShared>,
    runtime: tokio::runtime::Handle,
    recorder: mpsc::Sender<Pending>,
    writer: mpsc::UnboundedSender<Write>,
    tails: Mutex<HashMap<Arc<str>, Tail>>,
    /// Connected sockets by (namespace, pid): refreshed, and taken over when
    /// their client comes back on a new connection to this node.
    live: Arc<Mutex<HashMap<Key, Socket>>>,
    /// Live sockets whose rooms changed since the last flush.
    dirty: Arc<Mutex<HashSet<Key>>>,
    /// The first sequence this node saw each recent record id at, from its
    /// tails and its reads alike: a record stored twice (an append retried
    /// after its answer was lost) is delivered once, whichever path meets
    /// which copy (a recovery's reads and the buffer its tail filled).
    copies: Mutex<FirstCopies>,
    /// The node's parser: stored events from a node that speaks another
    /// are encoded again in it.
    parser: Parser,
    metrics: Metrics,
    log: Logger,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The record key of `pid` in `ns`; `None` for a pid this server never
/// issues (client input: it must not reach the broker as a key).
fn session_key(ns: &str, pid: &str) -> Option<String> {
    Sid::could_be(pid).then(|| format!("{}.{pid}", ns_hash(ns)))
}

impl Target {
    fn to_stored(&self) -> StoredTarget {
        let names = |v: &[Arc<str>]| v.iter().map(|r| r.to_string()).collect();
        match self {
            Target::Rooms {
                rooms,
                except_rooms,
                except_sids,
            } => StoredTarget::Rooms {
                rooms: names(rooms),
                except_rooms: names(except_rooms),
                except_sids: except_sids.iter().map(|s| s.to_string()).collect(),
            },
            Target::User(u) => StoredTarget::User(u.to_string()),
        }
    }

    fn from_stored(t: StoredTarget) -> Target {
        let names = |v: Vec<String>| v.into_iter().map(Arc::from).collect();
        match t {
            StoredTarget::Rooms {
                rooms,
                except_rooms,
                except_sids,
            } => Target::Rooms {
                rooms: names(rooms),
                except_rooms: names(except_rooms),
                except_sids: except_sids.iter().map(|s| Sid::from(s.as_str())).collect(),
            },
            StoredTarget::User(u) => Target::User(u.into()),
        }
    }
}

impl ClusterRecovery {
    /// Start the recorder and the session writer on the current Tokio
    /// runtime (the actix system's), which the tails use too.
    pub fn start(
        config: RecoveryConfig,
        store: Arc<dyn RecoveryStore>,
        node: NodeId,
        prefix: &str,
        timeout: Duration,
        server: &Arc<ServerShared>,
    ) -> Arc<ClusterRecovery> {
        let (recorder, recorder_rx) = mpsc::channel(RECORDER_QUEUE);
        let (writer, writer_rx) = mpsc::unbounded_channel();
        let epoch = u32::from_str_radix(&ns_hash(prefix)[..8], 16).unwrap_or(1) | 1;
        let this = Arc::new(ClusterRecovery {
            refresh: Self::refresh_for(&config),
            config,
            store,
            node,
            epoch,
            timeout,
            server: Arc::downgrade(server),
            runtime: tokio::runtime::Handle::current(),
            recorder,
            writer,
            tails: Mutex::new(HashMap::new()),
            live: Arc::new(Mutex::new(HashMap::new())),
            dirty: Arc::new(Mutex::new(HashSet::new())),
            copies: Mutex::new(FirstCopies::default()),
            parser: server.config.parser,
            metrics: server.metrics.clone(),
            log: server.log.new(slog::o!("recovery" => "cluster")),
        });
        this.runtime
            .spawn(run_recorder(Arc::downgrade(&this), recorder_rx));
        this.runtime
            .spawn(run_writer(Arc::downgrade(&this), writer_rx));
        this.runtime.spawn(run_trimmer(Arc::downgrade(&this)));
        this
    }

    /// How often a connected socket's record is rewritten.
    pub fn refresh_for(config: &RecoveryConfig) -> Duration {
        (config.max_disconnection / 4).clamp(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// How long a record outlives its last write in the store.
    pub fn session_ttl(config: &RecoveryConfig) -> Duration {
        config.max_disconnection + 2 * Self::refresh_for(config)
    }

    /// The wire form of offset `seq`.
    pub fn offset(&self, seq: u64) -> String {
        super::format_offset(self.epoch, seq)
    }

    /// Hand a stored event to the recorder; its frames back when it cannot
    /// take it (then it is delivered unrecorded, and counted).
    pub fn record(&self, ns: &Arc<str>, target: Target, frames: Encoded) -> Result<(), Encoded> {
        self.recorder
            .try_send(Pending {
                ns: ns.clone(),
                target,
                frames,
            })
            .map_err(|e| {
                self.metrics.recovery_unrecorded();
                e.into_inner().frames
            })
    }

    // ---- tails ---------------------------------------------------------------

    /// `ns`'s tail, started if it is not running; resolves once it knows
    /// where the stream stands (`None` if the store did not answer in time).
    async fn tail_position(self: &Arc<Self>, ns: &Arc<str>) -> Option<Arc<AtomicU64>> {
        let (position, mut ready) = {
            let mut tails = self.tails.lock();
            let tail = tails.entry(ns.clone()).or_insert_with(|| {
                let position = Arc::new(AtomicU64::new(0));
                let (ready_tx, ready) = watch::channel(false);
                let task = self.runtime.spawn(run_tail(
                    Arc::downgrade(self),
                    ns.clone(),
                    position.clone(),
                    ready_tx,
                ));
                Tail {
                    position,
                    ready,
                    task: task.abort_handle(),
                }
            });
            (tail.position.clone(), tail.ready.clone())
        };
        tokio::time::timeout(self.timeout, ready.wait_for(|r| *r))
            .await
            .ok()?
            .ok()?;
        Some(position)
    }

    /// Stop `ns`'s tail: the node has no socket there any more.
    pub fn namespace_dropped(&self, ns: &str) {
        if let Some(tail) = self.tails.lock().remove(ns) {
            tail.task.abort();
        }
    }

    /// See [`FirstCopies::first`].
    fn first_copy(&self, id: &str, seq: u64) -> bool {
        self.copies.lock().first(id, seq)
    }

    /// Deliver one record of `ns`'s stream to the matching local sockets,
    /// unless it is a second copy of a record already delivered.
    fn deliver(&self, server: &ServerShared, ns: &Arc<str>, seq: u64, data: &[u8]) {
        let event: StoredEvent = match decode_record(data) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.bad_input("recovery_record");
                warn!(self.log, "skipping a recovery record that does not decode";
                    "ns" => &**ns, "seq" => seq, "error" => %e);
                return;
            }
        };
        if *event.ns != **ns {
            return; // another namespace with the same hash
        }
        if !self.first_copy(&event.id, seq) {
            // A second copy: its first append's answer was lost with the
            // broker, which kept it (Redis restarted empty) and got it again.
            return;
        }
        let target = Target::from_stored(event.target);
        let frames = local_frames(event.frames, self.parser)
            .and_then(|frames| with_last_arg(&frames, &self.offset(seq)));
        let Some(frames) = frames else {
            self.metrics.bad_input("recovery_record");
            return;
        };
        let sockets = match &target {
            Target::Rooms {
                rooms,
                except_rooms,
                except_sids,
            } => server.select_local(ns, rooms, except_rooms, except_sids),
            Target::User(user) => server
                .local_sockets(ns)
                .into_iter()
                .filter(|s| s.inner.user.as_deref() == Some(&**user))
                .collect(),
        };
        for socket in sockets {
            let inner = &socket.inner;
            inner.conn.do_send(Deliver::one(
                ns.clone(),
                inner.id.clone(),
                None,
                frames.clone(),
                None,
                Mode::Stored(seq),
            ));
        }
    }

    // ---- connecting ---------------------------------------------------------

    /// Where a fresh socket of `ns` starts: its pid and resume point. `None`
    /// when the store is unavailable (the socket is then not recoverable).
    pub async fn fresh(self: &Arc<Self>, ns: &Arc<str>) -> Option<(Arc<str>, Resume)> {
        let position = self.tail_position(ns).await?;
        Some((
            super::Recovery::new_pid(),
            Resume {
                from: position.load(Ordering::Acquire) + 1,
                ..Resume::default()
            },
        ))
    }

    /// Recover the socket `pid` names in `ns`, resuming after `offset`. The
    /// record is consumed either way: a pid recovers once.
    pub async fn restore(
        self: &Arc<Self>,
        ns: &Arc<str>,
        pid: &str,
        offset: Option<&str>,
    ) -> Result<Restoring, Refusal> {
        let key = session_key(ns, pid).ok_or(Refusal::UnknownSession)?;
        let unavailable = |e: StoreError| {
            debug!(self.log, "recovery store unavailable"; "error" => %e);
            Refusal::Unavailable
        };
        // The tail first: what the socket is sent live from now on comes
        // through it.
        self.tail_position(ns).await.ok_or(Refusal::Unavailable)?;
        let (bytes, token) = tokio::time::timeout(self.timeout, self.store.claim(&key))
            .await
            .map_err(|_| Refusal::Unavailable)?
            .map_err(unavailable)?
            .ok_or(Refusal::UnknownSession)?;
        let refuse = |why: Refusal| {
            let store = self.store.clone();
            let key = key.clone();
            self.runtime.spawn(async move {
                let _ = store.remove(&key, token).await;
            });
            why
        };
        let record: SessionRecord =
            decode_record(&bytes).map_err(|_| refuse(Refusal::UnknownSession))?;
        if record.ns != **ns || record.sid.len() != 20 {
            return Err(refuse(Refusal::UnknownSession));
        }
        // A connected record is as old as its last refresh (its node was
        // killed, or its connection is half-open).
        let window = if record.parked {
            self.config.max_disconnection
        } else {
            self.config.max_disconnection + self.refresh
        };
        if now_ms().saturating_sub(record.at_ms) > window.as_millis() as u64 {
            return Err(refuse(Refusal::Expired));
        }
        let pid: Arc<str> = pid.into();
        let live_key: Key = (ns.clone(), pid.clone());
        let old = self.live.lock().get(&live_key).cloned();
        let resume = match &old {
            Some(old) => old
                .inner
                .resume()
                .map(|r| r.lock().clone())
                .unwrap_or_default(),
            None => Resume {
                from: record.from,
                last_stored: record.last_stored,
                tails: record
                    .tails
                    .iter()
                    .map(|(t, s)| (Arc::from(t.as_str()), *s))
                    .collect::<VecDeque<_>>(),
            },
        };
        let from = match offset {
            None => resume.from,
            Some(offset) => match resume.tails.iter().rev().find(|(t, _)| &**t == offset) {
                Some((_, last)) => last.map_or(resume.from, |s| s + 1),
                None => {
                    parse_offset(self.epoch, offset)
                        .ok_or_else(|| refuse(Refusal::UnknownOffset))?
                        + 1
                }
            },
        };
        let range = tokio::time::timeout(
            self.timeout,
            self.store
                .read_after(ns, from - 1, self.config.max_packets.max(1)),
        )
        .await
        .map_err(|_| refuse(Refusal::Unavailable))?
        .map_err(|e| refuse(unavailable(e)))?;
        if range.truncated {
            return Err(refuse(Refusal::Truncated));
        }
        if from > range.last + 1 {
            return Err(refuse(Refusal::UnknownOffset));
        }
        // Sure now. A socket still connected here is taken over: its rooms
        // move to the recovered one, its connection drops it without a word.
        let (rooms, superseded) = {
            let mut live = self.live.lock();
            match live.get(&live_key) {
                Some(s)
                    if old
                        .as_ref()
                        .is_some_and(|o| Arc::ptr_eq(&o.inner, &s.inner)) =>
                {
                    let old = live.remove(&live_key).expect("checked");
                    let rooms: Vec<Arc<str>> = {
                        let mut set = old.inner.rooms.lock();
                        set.closed = true;
                        std::mem::take(&mut set.rooms).into_iter().collect()
                    };
                    (rooms, Some(old))
                }
                _ => (
                    record.rooms.iter().map(|r| Arc::from(r.as_str())).collect(),
                    None,
                ),
            }
        };
        let sid = Sid::from(record.sid.as_str());
        let user: Option<Arc<str>> = record.user.as_deref().map(Arc::from);
        let end = range.last;
        let missed = self.matching(ns, &sid, user.as_deref(), &rooms, range.records);
        let resume = Resume {
            from: resume.from,
            last_stored: missed
                .last()
                .map(|(s, _)| *s)
                .or(from.checked_sub(1).filter(|s| *s > 0)),
            tails: VecDeque::new(),
        };
        Ok(Restoring {
            state: Restored {
                sid,
                pid,
                user,
                rooms,
                extensions: superseded
                    .as_ref()
                    .map(|old| old.inner.extensions.take())
                    .unwrap_or_default(),
                missed: missed.into_iter().map(|(_, f)| f).collect(),
                resume,
                superseded,
            },
            end,
            token,
        })
    }

    /// The records after `after` for the socket `sid` with `user` and
    /// `rooms`, and the last sequence read (what the attached socket's
    /// tail may have delivered twice). An unavailable store yields nothing.
    pub async fn catch_up(
        self: &Arc<Self>,
        ns: &Arc<str>,
        sid: &Sid,
        user: Option<&str>,
        rooms: &[Arc<str>],
        after: u64,
    ) -> (Vec<(u64, Encoded)>, u64) {
        let read = tokio::time::timeout(
            self.timeout,
            self.store
                .read_after(ns, after, self.config.max_packets.max(1)),
        )
        .await;
        match read {
            Ok(Ok(range)) => {
                let last = range.last.max(after);
                (self.matching(ns, sid, user, rooms, range.records), last)
            }
            _ => (Vec::new(), after),
        }
    }

    fn matching(
        &self,
        ns: &Arc<str>,
        sid: &Sid,
        user: Option<&str>,
        rooms: &[Arc<str>],
        records: Vec<crate::adapter::store::Record>,
    ) -> Vec<(u64, Encoded)> {
        records
            .into_iter()
            .filter_map(|r| {
                let event: StoredEvent = decode_record(&r.data).ok()?;
                if *event.ns != **ns
                    || !self.first_copy(&event.id, r.seq)
                    || !Target::from_stored(event.target).matches(sid, user, rooms)
                {
                    return None;
                }
                let frames = local_frames(event.frames, self.parser)?;
                let frames = with_last_arg(&frames, &self.offset(r.seq))?;
                Some((r.seq, frames))
            })
            .collect()
    }

    /// A socket connected (or was recovered, with the claim's `token`) under `pid`.
    pub fn register(&self, pid: &Arc<str>, socket: &Socket, token: Option<Token>) {
        let key = (socket.inner.ns.clone(), pid.clone());
        self.live.lock().insert(key.clone(), socket.clone());
        let _ = self.writer.send(Write::Own { key, token });
    }

    /// Its rooms changed: its record is rewritten at the next flush.
    pub fn touch(&self, ns: &Arc<str>, pid: &Arc<str>) {
        self.dirty.lock().insert((ns.clone(), pid.clone()));
    }

    /// A socket under `pid` is leaving, as [`super::Recovery::retire`]: if
    /// it is still the socket of record its rooms are taken (`take_rooms`,
    /// under the lock a takeover holds) and its record parked (`park`) or
    /// removed.
    pub fn retire(
        &self,
        pid: &Arc<str>,
        socket: &Socket,
        park: Option<Resume>,
        take_rooms: impl FnOnce() -> HashSet<Arc<str>, foldhash::fast::RandomState>,
    ) -> Retired {
        let inner = &socket.inner;
        let key: Key = (inner.ns.clone(), pid.clone());
        let mut live = self.live.lock();
        if !live.get(&key).is_some_and(|s| Arc::ptr_eq(&s.inner, inner)) {
            return Retired::Superseded;
        }
        live.remove(&key);
        let rooms = take_rooms();
        drop(live);
        let write = match park {
            Some(resume) => Write::Park {
                record: self.session_record(inner, rooms.iter().cloned(), &resume, true),
                key,
            },
            None => Write::Remove { key },
        };
        let _ = self.writer.send(write);
        Retired::Leave(rooms)
    }

    fn session_record(
        &self,
        inner: &crate::node::socket::SocketInner,
        rooms: impl Iterator<Item = Arc<str>>,
        resume: &Resume,
        parked: bool,
    ) -> SessionRecord {
        SessionRecord {
            ns: inner.ns.to_string(),
            sid: inner.id.to_string(),
            user: inner.user.as_deref().map(str::to_owned),
            rooms: rooms.map(|r| r.to_string()).collect(),
            from: resume.from,
            last_stored: resume.last_stored,
            tails: resume
                .tails
                .iter()
                .map(|(t, s)| (t.to_string(), *s))
                .collect(),
            node: self.node,
            parked,
            at_ms: now_ms(),
        }
    }

    /// The record of a live socket, as it stands now.
    fn live_record(&self, key: &Key) -> Option<SessionRecord> {
        let socket = self.live.lock().get(key).cloned()?;
        let inner = &socket.inner;
        let rooms: Vec<Arc<str>> = inner.rooms.lock().rooms.iter().cloned().collect();
        let resume = inner.resume().map(|r| r.lock().clone()).unwrap_or_default();
        Some(self.session_record(inner, rooms.into_iter(), &resume, false))
    }
}

/// Append what is emitted, in order, batched per namespace. While the store
/// is unavailable the batch is tried again (with backoff, each record's id
/// making a repeat harmless) and new events wait in the recorder's queue:
/// delivered late, not lost. Past the queue's bound they are delivered
/// unrecorded ([`ClusterRecovery::record`]); what the store refuses (too
/// large) is delivered unrecorded at once.
async fn run_recorder(this: Weak<ClusterRecovery>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut next_id = 0u64;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(rec) = this.upgrade() else { return };
        // Consecutive events of one namespace go together; order within a
        // namespace is kept, and across namespaces it means nothing.
        let mut i = 0;
        while i < batch.len() {
            let ns = batch[i].ns.clone();
            let j = batch[i..]
                .iter()
                .position(|p| p.ns != ns)
                .map_or(batch.len(), |k| i + k);
            let mut records: Vec<(String, Bytes)> = batch[i..j]
                .iter()
                .map(|p| {
                    next_id += 1;
                    let id = format!("{}-{next_id:x}", rec.node);
                    let record = encode_record(&StoredEvent {
                        id: id.clone(),
                        ns: p.ns.to_string(),
                        target: p.target.to_stored(),
                        frames: wire_frames(&p.frames),
                    });
                    (id, record)
                })
                .collect();
            let mut pending: Vec<&Pending> = batch[i..j].iter().collect();
            let mut attempt = 0u32;
            while !records.is_empty() {
                let results = rec.store.append(&ns, records.clone(), attempt > 0).await;
                // Stored, refused (delivered unrecorded), or unavailable:
                // from the first unavailable one on, everything again.
                let retry_from = results
                    .iter()
                    .position(|r| matches!(r, Err(StoreError::Unavailable(_))))
                    .unwrap_or(results.len());
                for (p, result) in pending.iter().zip(&results).take(retry_from) {
                    match result {
                        Ok(_) => rec.metrics.recovery_stored(0),
                        Err(e) => rec.unrecorded(p, e),
                    }
                }
                records.drain(..retry_from);
                pending.drain(..retry_from);
                if records.is_empty() {
                    break;
                }
                if attempt == 0 {
                    warn!(rec.log, "recovery store unavailable: stored events wait for it";
                        "ns" => &*ns, "waiting" => records.len());
                }
                attempt += 1;
                tokio::time::sleep(retry_backoff(attempt)).await;
            }
            i = j;
        }
        batch.clear();
    }
}

impl ClusterRecovery {
    /// An event the store refused: delivered the ordinary way, counted.
    fn unrecorded(&self, p: &Pending, e: &StoreError) {
        self.metrics.recovery_unrecorded();
        debug!(self.log, "stored event not recorded: delivered without an offset";
            "ns" => &*p.ns, "error" => %e);
        if let Some(server) = self.server.upgrade() {
            server.deliver_unrecorded(&p.ns, &p.target, p.frames.clone());
        }
    }
}

/// How long the recorder and the tails wait before trying the store again.
fn retry_backoff(attempt: u32) -> Duration {
    crate::adapter::backoff(
        attempt,
        Duration::from_millis(50),
        Duration::from_millis(500),
    )
}

/// The ids of the last records a tail delivered.
/// Recent record ids and the first sequence each was seen at.
#[derive(Default)]
struct FirstCopies {
    seq: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl FirstCopies {
    /// Enough to span a retried batch and what came between its copies.
    const KEEP: usize = 4 * RECORDER_QUEUE;

    /// Whether the record `id` at `seq` is the first copy of it seen (or the
    /// same copy seen again, by another path): false for a second copy.
    fn first(&mut self, id: &str, seq: u64) -> bool {
        if let Some(first) = self.seq.get(id) {
            return *first == seq;
        }
        self.seq.insert(id.to_owned(), seq);
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.seq.remove(&old);
            }
        }
        true
    }
}

/// Read `ns`'s stream from where it stands and deliver every record.
async fn run_tail(
    this: Weak<ClusterRecovery>,
    ns: Arc<str>,
    position: Arc<AtomicU64>,
    ready: watch::Sender<bool>,
) {
    let mut attempt = 0u32;
    let mut after = loop {
        let Some(rec) = this.upgrade() else { return };
        match rec.store.last_seq(&ns).await {
            Ok(last) => break last,
            Err(e) => {
                if attempt == 1 {
                    warn!(rec.log, "recovery stream unavailable; retrying"; "ns" => &*ns, "error" => %e);
                }
            }
        }
        drop(rec);
        attempt += 1;
        tokio::time::sleep(retry_backoff(attempt)).await;
    };
    position.store(after, Ordering::Release);
    let _ = ready.send(true);
    loop {
        let Some(rec) = this.upgrade() else { return };
        let mut reconnected = rec.store.reconnected();
        reconnected.borrow_and_update();
        let mut records = rec.store.clone().tail(ns.to_string(), after);
        drop(rec);
        loop {
            let r = tokio::select! {
                r = records.next() => match r { Some(r) => r, None => break },
                // The broker connection was made again: a tail on the old
                // one may never resume (JetStream consumers do not survive
                // a server restart). From where it stands, on the new one.
                _ = reconnected.changed() => break,
            };
            let Some(rec) = this.upgrade() else { return };
            let Some(server) = rec.server.upgrade() else {
                return;
            };
            match r {
                Ok(r) if r.seq <= after => {}
                Ok(r) => {
                    rec.deliver(&server, &ns, r.seq, &r.data);
                    after = r.seq;
                    position.store(after, Ordering::Release);
                    attempt = 0;
                }
                Err(e) => {
                    debug!(rec.log, "recovery tail interrupted"; "ns" => &*ns, "error" => %e);
                    break;
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(retry_backoff(attempt)).await;
    }
}

/// Apply the age bound to the streams this node reads, also when nobody
/// appends to them (JetStream does it itself; Redis only trims when told).
async fn run_trimmer(this: Weak<ClusterRecovery>) {
    let mut every = tokio::time::interval(TRIM);
    loop {
        every.tick().await;
        let Some(rec) = this.upgrade() else { return };
        let namespaces: Vec<Arc<str>> = rec.tails.lock().keys().cloned().collect();
        for ns in namespaces {
            rec.store.trim(&ns).await;
        }
    }
}

/// Write the session records, in the order asked, plus the coalesced room
/// changes and the periodic refresh of every live socket.
async fn run_writer(this: Weak<ClusterRecovery>, mut rx: mpsc::UnboundedReceiver<Write>) {
    let mut tokens: HashMap<Key, Option<Token>> = HashMap::new();
    let mut flush = tokio::time::interval(FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        let write = tokio::select! {
            w = rx.recv() => match w { Some(w) => Some(w), None => return },
            _ = flush.tick() => None,
        };
        let Some(rec) = this.upgrade() else { return };
        match write {
            Some(Write::Own { key, token }) => {
                tokens.insert(key.clone(), token);
                rec.dirty.lock().insert(key);
            }
            Some(Write::Park { key, record }) => {
                if let Some(token) = tokens.remove(&key) {
                    let written = rec.write_one(&key, encode_record(&record), token).await;
                    rec.metrics.recovery_session_write("park", written.as_str());
                }
                rec.dirty.lock().remove(&key);
            }
            Some(Write::Remove { key }) => {
                if let Some(Some(token)) = tokens.remove(&key) {
                    if let Some(k) = session_key(&key.0, &key.1) {
                        let _ = rec.store.remove(&k, token).await;
                    }
                }
                rec.dirty.lock().remove(&key);
            }
            None => {
                let mut keys: Vec<Key> = rec.dirty.lock().drain().collect();
                if last_refresh.elapsed() >= rec.refresh {
                    last_refresh = tokio::time::Instant::now();
                    let dirty: HashSet<Key> = keys.iter().cloned().collect();
                    keys.extend(tokens.keys().filter(|k| !dirty.contains(*k)).cloned());
                }
                let writes: Vec<_> = keys
                    .into_iter()
                    .filter_map(|key| {
                        let token = *tokens.get(&key)?;
                        let record = rec.live_record(&key)?;
                        Some((key, encode_record(&record), token))
                    })
                    .collect();
                let done: Vec<(Key, Written)> = futures_util::stream::iter(writes)
                    .map(|(key, bytes, token)| {
                        let rec = rec.clone();
                        async move {
                            let next = rec.write_one(&key, bytes, token).await;
                            (key, next)
                        }
                    })
                    .buffer_unordered(WRITES_IN_FLIGHT)
                    .collect()
                    .await;
                for (key, written) in done {
                    rec.metrics
                        .recovery_session_write("refresh", written.as_str());
                    match written {
                        Written::Owned(t) => {
                            if let Some(slot) = tokens.get_mut(&key) {
                                *slot = Some(t);
                            }
                        }
                        Written::Lost => {
                            tokens.remove(&key);
                        }
                        Written::Failed => {}
                    }
                }
            }
        }
    }
}

/// What a session write came to.
enum Written {
    /// Written; the token of the next write.
    Owned(Token),
    /// Another node owns the record now.
    Lost,
    /// The store failed: tried again at the next refresh.
    Failed,
}

impl Written {
    fn as_str(&self) -> &'static str {
        match self {
            Written::Owned(_) => "written",
            Written::Lost => "taken_over",
            Written::Failed => "failed",
        }
    }
}

impl ClusterRecovery {
    async fn write_one(&self, key: &Key, bytes: Bytes, token: Option<Token>) -> Written {
        let Some(k) = session_key(&key.0, &key.1) else {
            return Written::Lost;
        };
        match tokio::time::timeout(self.timeout, self.store.write(&k, bytes, token)).await {
            Ok(Ok(Some(next))) => Written::Owned(next),
            Ok(Ok(None)) => {
                debug!(self.log, "session record taken over by another node"; "ns" => &*key.0);
                Written::Lost
            }
            Ok(Err(e)) => {
                debug!(self.log, "session record not written"; "error" => %e);
                Written::Failed
            }
            Err(_) => Written::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FirstCopies;

    #[test]
    fn a_second_copy_is_refused_whichever_path_meets_it() {
        let mut copies = FirstCopies::default();
        assert!(copies.first("a", 100), "first sight");
        assert!(copies.first("a", 100), "the same copy, by another path");
        assert!(!copies.first("a", 105), "a second copy of the record");
        assert!(copies.first("b", 105));
    }

    #[test]
    fn only_recent_ids_are_kept() {
        let mut copies = FirstCopies::default();
        for n in 0..=FirstCopies::KEEP as u64 {
            assert!(copies.first(&n.to_string(), n));
        }
        assert_eq!(copies.seq.len(), FirstCopies::KEEP);
        assert!(copies.first("0", 7), "forgotten: the oldest went first");
    }
}

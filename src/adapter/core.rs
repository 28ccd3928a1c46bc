//! What the broker buses share: the bounded outbound queue, reference-counted
//! interest, status with its up gauge, and inbound hand-off.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use slog::{info, warn, Logger};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::AbortHandle;

use super::{subject, AdapterMetrics, AdapterOptions, BusStatus, Inbound, PublishError, Topic};

/// One message waiting for the broker.
pub(crate) struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
}

/// A part of a bus that can be down on its own (Redis has two connections).
pub(crate) type Part = usize;

struct StatusState {
    /// Per part: down since, and why.
    down: Vec<Option<(SystemTime, String)>>,
    ever_up: bool,
    /// Up again after having been up and lost: buffered messages settle
    /// before they go ([`Core::ready`]).
    ever_reconnected: bool,
}

pub(crate) struct Core {
    pub prefix: String,
    pub metrics: AdapterMetrics,
    pub log: Logger,
    pub options: AdapterOptions,
    interest: Mutex<HashMap<Topic, usize>>,
    /// Woken when the wanted set of topics changes; one waiter (the task
    /// that reconciles the broker's subscriptions).
    pub interest_changed: Notify,
    /// Bumped at every change of the wanted set (under `interest`'s lock).
    interest_gen: AtomicU64,
    /// The generation of the wanted set the broker has confirmed.
    applied: watch::Sender<u64>,
    status: Mutex<StatusState>,
    up_tx: watch::Sender<bool>,
    out_tx: mpsc::Sender<Outgoing>,
    queued_bytes: AtomicUsize,
    /// Accepted by `publish`, not yet handed to the broker.
    pending: AtomicUsize,
    inbound: mpsc::Sender<Inbound>,
}

impl Core {
    /// `parts` are the independently failing connections, all down
    /// ("connecting") at first.
    pub fn new(
        prefix: &str,
        options: &AdapterOptions,
        metrics: &AdapterMetrics,
        log: &Logger,
        inbound: mpsc::Sender<Inbound>,
        parts: &[&str],
    ) -> (Core, mpsc::Receiver<Outgoing>) {
        let (out_tx, out_rx) = mpsc::channel(options.outbound_capacity.max(1));
        let now = SystemTime::now();
        metrics.set_up(false);
        metrics.set_subscriptions(0);
        let core = Core {
            prefix: prefix.to_owned(),
            metrics: metrics.clone(),
            log: log.clone(),
            options: options.clone(),
            interest: Mutex::new(HashMap::new()),
            interest_changed: Notify::new(),
            interest_gen: AtomicU64::new(0),
            applied: watch::channel(0).0,
            status: Mutex::new(StatusState {
                down: parts
                    .iter()
                    .map(|p| Some((now, format!("{p}: connecting"))))
                    .collect(),
                ever_up: false,
                ever_reconnected: false,
            }),
            up_tx: watch::channel(false).0,
            out_tx,
            queued_bytes: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            inbound,
        };
        (core, out_rx)
    }

    pub fn subject(&self, topic: &Topic) -> String {
        subject::subject(&self.prefix, topic)
    }

    pub fn publish(&self, topic: &Topic, payload: Bytes, max: usize) -> Result<(), PublishError> {
        let size = payload.len();
        if size > max {
            self.metrics.error("too_large");
            return Err(PublishError::TooLarge { size, max });
        }
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > self.options.outbound_max_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.metrics.outbound_dropped();
            return Err(PublishError::BufferFull);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        let msg = Outgoing {
            subject: self.subject(topic),
            payload,
        };
        match self.out_tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                self.pending.fetch_sub(1, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.metrics.outbound_dropped();
                        Err(PublishError::BufferFull)
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(PublishError::Closed),
                }
            }
        }
    }

    /// The driver took `msg` off the queue.
    pub fn taken(&self, msg: &Outgoing) {
        self.queued_bytes
            .fetch_sub(msg.payload.len(), Ordering::AcqRel);
    }

    /// The driver handed a message of `bytes` to the broker.
    pub fn handed(&self, bytes: usize) {
        self.metrics.published(bytes);
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// The driver gave up on a message (already counted as an error).
    pub fn abandoned(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    pub fn subscribe(&self, topic: &Topic) {
        let mut interest = self.interest.lock();
        let count = interest.entry(topic.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.interest_gen.fetch_add(1, Ordering::AcqRel);
            self.interest_changed.notify_one();
        }
    }

    pub fn unsubscribe(&self, topic: &Topic) {
        let mut interest = self.interest.lock();
        if let Some(count) = interest.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                interest.remove(topic);
                self.interest_gen.fetch_add(1, Ordering::AcqRel);
                self.interest_changed.notify_one();
            }
        }
    }

    /// The topics wanted now, and the generation of that set (to hand to
    /// [`Core::applied`] once the broker has confirmed it).
    pub fn wanted(&self) -> (HashSet<Topic>, u64) {
        let interest = self.interest.lock();
        let gen = self.interest_gen.load(Ordering::Acquire);
        (interest.keys().cloned().collect(), gen)
    }

    /// The broker confirmed the wanted set of generation `gen`.
    pub fn applied(&self, gen: u64) {
        self.applied.send_if_modified(|have| {
            let newer = gen > *have;
            if newer {
                *have = gen;
            }
            newer
        });
    }

    /// Wait until every interest change made before this call is confirmed
    /// by the broker, at most `timeout`; false if it was not in time.
    pub async fn synced(&self, timeout: Duration) -> bool {
        let target = self.interest_gen.load(Ordering::Acquire);
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|have| *have >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Hand a received message to the engine; drop and count if it is behind.
    pub fn deliver(&self, topic: Topic, payload: Bytes) {
        self.metrics.received(payload.len());
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.inbound.try_send(Inbound { topic, payload })
        {
            self.metrics.error("inbound_overflow");
        }
    }

    pub fn status(&self) -> BusStatus {
        let state = self.status.lock();
        let mut worst: Option<&(SystemTime, String)> = None;
        for down in state.down.iter().flatten() {
            let earlier = match worst {
                None => true,
                Some(w) => down.0 < w.0,
            };
            if earlier {
                worst = Some(down);
            }
        }
        match worst {
            None => BusStatus::Up,
            Some((since, reason)) => BusStatus::Degraded {
                since: *since,
                reason: reason.clone(),
            },
        }
    }

    /// Whether the whole bus is up, as a watch (for a driver that waits).
    pub fn up_watch(&self) -> watch::Receiver<bool> {
        self.up_tx.subscribe()
    }

    /// Wait until the bus is up (`up` is from [`Core::up_watch`]). After an
    /// outage (not at the first connect) then wait
    /// [`AdapterOptions::settle_after_reconnect`] more, so the other nodes
    /// have subscribed again before what was buffered goes. An outage is any
    /// change of `up` since the caller last looked, so one that began and
    /// ended while the caller was busy (a publish the client held) counts
    /// too. False when the bus is gone.
    pub async fn ready(&self, up: &mut watch::Receiver<bool>) -> bool {
        loop {
            let mut outage = up.has_changed().unwrap_or(true);
            while !*up.borrow_and_update() {
                outage = true;
                if up.changed().await.is_err() {
                    return false;
                }
            }
            if !outage || !self.status.lock().ever_reconnected {
                return true;
            }
            tokio::time::sleep(self.options.settle_after_reconnect).await;
            if !up.has_changed().unwrap_or(true) {
                return true;
            }
        }
    }

    /// Part `part` is up (`None`) or down for `reason`. Logs and counts the
    /// transitions; the first part to fail starts the outage, the last to
    /// recover ends it (one reconnect counted per outage).
    pub fn set_part(&self, part: Part, down: Option<String>) {
        let mut state = self.status.lock();
        let was_up = state.down.iter().all(Option::is_none);
        match (&state.down[part], down) {
            (None, None) | (Some(_), Some(_)) => return,
            (Some((since, _)), None) => {
                let outage = since.elapsed().unwrap_or_default();
                state.down[part] = None;
                info!(self.log, "cluster broker connection up";
                    "part" => part, "after_ms" => outage.as_millis() as u64);
            }
            (None, Some(reason)) => {
                warn!(self.log, "cluster broker connection lost: serving local clients only";
                    "part" => part, "reason" => &reason);
                self.metrics.error("connection");
                state.down[part] = Some((SystemTime::now(), reason));
            }
        }
        let is_up = state.down.iter().all(Option::is_none);
        if is_up != was_up {
            if is_up {
                if state.ever_up {
                    self.metrics.reconnected();
                    state.ever_reconnected = true;
                }
                state.ever_up = true;
            }
            self.metrics.set_up(is_up);
            let _ = self.up_tx.send(is_up);
        }
    }
}

/// Tasks aborted when the bus that spawned them is dropped.
#[derive(Default)]
pub(crate) struct Tasks(Vec<AbortHandle>);

impl Tasks {
    pub fn push<T: 'static>(&mut self, handle: tokio::task::JoinHandle<T>) {
        self.0.push(handle.abort_handle());
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

//! The broker-less bus.
//!
//! [`MemoryBus::standalone`] is `kind = "memory"`: a single node. It accepts
//! publishes (checking the size cap, so an application meets the same limit
//! as on a broker) and delivers nothing: there is no other node, and a node
//! already delivers its own broadcasts locally.
//!
//! A [`MemoryHub`] connects several buses in one process with the brokers'
//! semantics (interest routing, no echo to the publisher, per-topic order,
//! bounded inbound channels): a multi-node cluster for tests, without a
//! broker. Delivery is synchronous inside `publish`, so it is always up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{AdapterMetrics, AdapterOptions, Bus, BusStatus, Inbound, PublishError, Topic};

struct Member {
    interest: Mutex<HashMap<Topic, usize>>,
    inbound: Option<mpsc::Sender<Inbound>>,
    metrics: AdapterMetrics,
}

impl Member {
    fn wants(&self, topic: &Topic) -> bool {
        self.interest.lock().contains_key(topic)
    }
}

#[derive(Default)]
struct HubInner {
    members: Mutex<Vec<Arc<Member>>>,
}

/// An in-process "broker" joining several [`MemoryBus`]es.
#[cfg(any(test, feature = "internals"))]
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<HubInner>,
}

#[cfg(any(test, feature = "internals"))]
impl MemoryHub {
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    /// A new bus on this hub and its inbound channel.
    pub fn bus(
        &self,
        options: &AdapterOptions,
        metrics: &AdapterMetrics,
    ) -> (Arc<dyn Bus>, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(options.inbound_capacity.max(1));
        let member = Arc::new(Member {
            interest: Mutex::new(HashMap::new()),
            inbound: Some(tx),
            metrics: metrics.clone(),
        });
        self.inner.members.lock().push(member.clone());
        metrics.set_up(true);
        let bus = MemoryBus {
            member,
            hub: Some(self.inner.clone()),
            max_payload: options.max_payload,
        };
        (Arc::new(bus), rx)
    }
}

/// See the module doc.
pub struct MemoryBus {
    member: Arc<Member>,
    hub: Option<Arc<HubInner>>,
    max_payload: usize,
}

impl MemoryBus {
    /// A single node's bus: publishes go nowhere.
    pub fn standalone(options: &AdapterOptions, metrics: AdapterMetrics) -> MemoryBus {
        metrics.set_up(true);
        MemoryBus {
            member: Arc::new(Member {
                interest: Mutex::new(HashMap::new()),
                inbound: None,
                metrics,
            }),
            hub: None,
            max_payload: options.max_payload,
        }
    }
}

impl Bus for MemoryBus {
    fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), PublishError> {
        let metrics = &self.member.metrics;
        if payload.len() > self.max_payload {
            metrics.error("too_large");
            return Err(PublishError::TooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        metrics.published(payload.len());
        let Some(hub) = &self.hub else {
            return Ok(());
        };
        // Under the hub's lock: publishes from several threads reach every
        // receiver in one order.
        let members = hub.members.lock();
        for other in members.iter() {
            if Arc::ptr_eq(other, &self.member) || !other.wants(topic) {
                continue;
            }
            let Some(inbound) = &other.inbound else {
                continue;
            };
            other.metrics.received(payload.len());
            let msg = Inbound {
                topic: topic.clone(),
                payload: payload.clone(),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = inbound.try_send(msg) {
                other.metrics.error("inbound_overflow");
            }
        }
        Ok(())
    }

    fn subscribe(&self, topic: &Topic) {
        let mut interest = self.member.interest.lock();
        *interest.entry(topic.clone()).or_insert(0) += 1;
        self.member.metrics.set_subscriptions(interest.len());
    }

    fn unsubscribe(&self, topic: &Topic) {
        let mut interest = self.member.interest.lock();
        if let Some(count) = interest.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                interest.remove(topic);
            }
        }
        self.member.metrics.set_subscriptions(interest.len());
    }

    fn status(&self) -> BusStatus {
        BusStatus::Up
    }

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn synced(&self, _timeout: Duration) -> BoxFuture<'_, bool> {
        // Interest is in effect as soon as it is set.
        async { true }.boxed()
    }

    fn flush(&self, _timeout: Duration) -> BoxFuture<'_, bool> {
        async { true }.boxed()
    }
}

impl Drop for MemoryBus {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            hub.members.lock().retain(|m| !Arc::ptr_eq(m, &self.member));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hub_routes_by_interest_without_echo() {
        let hub = MemoryHub::new();
        let options = AdapterOptions::default();
        let (a, mut a_rx) = hub.bus(&options, &AdapterMetrics::unregistered());
        let (b, mut b_rx) = hub.bus(&options, &AdapterMetrics::unregistered());
        let room = Topic::room("/", "r");
        a.subscribe(&room);
        b.publish(&room, Bytes::from_static(b"x")).unwrap();
        assert_eq!(a_rx.recv().await.unwrap().payload, "x");
        // No echo, no delivery without interest.
        a.publish(&room, Bytes::from_static(b"y")).unwrap();
        assert!(a_rx.try_recv().is_err());
        assert!(b_rx.try_recv().is_err());
        a.subscribe(&room);
        a.unsubscribe(&room);
        b.publish(&room, Bytes::from_static(b"z")).unwrap();
        assert_eq!(a_rx.recv().await.unwrap().payload, "z");
        a.unsubscribe(&room);
        b.publish(&room, Bytes::from_static(b"w")).unwrap();
        assert!(a_rx.try_recv().is_err());
    }

    #[test]
    fn standalone_refuses_oversize() {
        let options = AdapterOptions {
            max_payload: 4,
            ..AdapterOptions::default()
        };
        let bus = MemoryBus::standalone(&options, AdapterMetrics::unregistered());
        assert!(bus
            .publish(&Topic::Nodes, Bytes::from_static(b"1234"))
            .is_ok());
        assert_eq!(
            bus.publish(&Topic::Nodes, Bytes::from_static(b"12345")),
            Err(PublishError::TooLarge { size: 5, max: 4 })
        );
        assert!(bus.status().is_up());
    }
}

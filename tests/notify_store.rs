//! Service mode's store (`adapter::notify`), one parity suite run against
//! the node's memory, NATS JetStream and Redis Streams (a real broker
//! process each, on a free port):
//!
//! - kept messages come back oldest first, at most `max_per_user` (the
//!   newest), and stay until forgotten; forgetting spares what came after
//!   the read; users do not see each other's (ids with dots and wildcards
//!   included);
//! - kept messages older than the TTL are not handed out;
//! - revocations: a follower gets every kept revocation, then `UpToDate`,
//!   then each new one as it is made (by another store too, for brokers);
//! - through NATS, kept messages and revocations survive a broker restart
//!   (file storage);
//! - `Bus::synced` answers once the broker has the subscription, and not
//!   while the broker is away.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use riptide::adapter::notify::{
    self, Kept, NotifyLimits, NotifyStore, Revocation, RevocationEvent,
};
use riptide::adapter::{AdapterKind, AdapterSettings};

use common::brokers::{NatsServer, RedisServer};

fn limits(max_per_user: usize, ttl: Duration) -> NotifyLimits {
    NotifyLimits {
        max_per_user,
        ttl,
        max_users: 1000,
        revocation_ttl: Duration::from_secs(600),
        timeout: Duration::from_secs(3),
    }
}

async fn store(
    kind: AdapterKind,
    url: &str,
    prefix: &str,
    l: NotifyLimits,
) -> Arc<dyn NotifyStore> {
    let settings = AdapterSettings {
        kind,
        url: url.to_owned(),
        prefix: prefix.to_owned(),
        tls_ca_file: String::new(),
    };
    let log = riptide::service::logging::build_logger(&common::test_settings().log);
    notify::connect(&settings, l, &log).await.expect("store")
}

fn texts(k: &Kept) -> Vec<String> {
    k.messages
        .iter()
        .map(|m| String::from_utf8(m.to_vec()).unwrap())
        .collect()
}

async fn kept_is_bounded_ordered_and_forgotten(s: Arc<dyn NotifyStore>) {
    for n in 0..5 {
        s.keep("u.1*", Bytes::from(format!("m{n}"))).await.unwrap();
    }
    s.keep("u.2", Bytes::from("other")).await.unwrap();
    let kept = s.kept("u.1*").await.unwrap();
    assert_eq!(
        texts(&kept),
        ["m2", "m3", "m4"],
        "the newest max_per_user, oldest first"
    );
    // Read again: still there (kept until forgotten).
    assert_eq!(texts(&s.kept("u.1*").await.unwrap()), ["m2", "m3", "m4"]);
    s.keep("u.1*", Bytes::from("m5")).await.unwrap();
    s.forget("u.1*", kept.end.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        texts(&s.kept("u.1*").await.unwrap()),
        ["m5"],
        "what came after the read stays"
    );
    assert_eq!(texts(&s.kept("u.2").await.unwrap()), ["other"]);
    assert_eq!(s.kept("nobody").await.unwrap(), Kept::default());
}

async fn old_messages_are_not_handed_out(s: Arc<dyn NotifyStore>) {
    s.keep("old", Bytes::from("stale")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.keep("old", Bytes::from("fresh")).await.unwrap();
    assert_eq!(texts(&s.kept("old").await.unwrap()), ["fresh"]);
}

async fn next_event(
    follow: &mut futures_util::stream::BoxStream<
        'static,
        Result<RevocationEvent, notify::NotifyError>,
    >,
) -> RevocationEvent {
    tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .expect("a revocation event in time")
        .expect("the follow goes on")
        .expect("no store error")
}

async fn revocations_are_followed(a: Arc<dyn NotifyStore>, b: Arc<dyn NotifyStore>) {
    a.revoke("42", 1000).await.unwrap();
    a.revoke("7", 2000).await.unwrap();
    let mut follow = b.clone().revocations();
    let mut seen = Vec::new();
    while let RevocationEvent::Revoked(r) = next_event(&mut follow).await {
        seen.push(r);
    }
    seen.sort_by(|x, y| x.user.cmp(&y.user));
    assert_eq!(
        seen,
        [
            Revocation {
                user: "42".into(),
                at_s: 1000
            },
            Revocation {
                user: "7".into(),
                at_s: 2000
            },
        ]
    );
    a.revoke("9", 3000).await.unwrap();
    assert_eq!(
        next_event(&mut follow).await,
        RevocationEvent::Revoked(Revocation {
            user: "9".into(),
            at_s: 3000
        }),
        "a revocation made by another node arrives while following"
    );
}

#[tokio::test]
async fn memory_store() {
    let l = limits(3, Duration::from_secs(60));
    let m = || store(AdapterKind::Memory, "", "riptide", l.clone());
    kept_is_bounded_ordered_and_forgotten(m().await).await;
    old_messages_are_not_handed_out(
        store(
            AdapterKind::Memory,
            "",
            "riptide",
            limits(3, Duration::from_secs(1)),
        )
        .await,
    )
    .await;
    // One node's memory: the follower is the same store.
    let s = m().await;
    revocations_are_followed(s.clone(), s).await;
}

#[tokio::test]
async fn jetstream_store() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let l = limits(3, Duration::from_secs(60));
    kept_is_bounded_ordered_and_forgotten(store(AdapterKind::Nats, &url, "t1", l.clone()).await)
        .await;
    old_messages_are_not_handed_out(
        store(
            AdapterKind::Nats,
            &url,
            "t2",
            limits(3, Duration::from_secs(1)),
        )
        .await,
    )
    .await;
    let a = store(AdapterKind::Nats, &url, "t3", l.clone()).await;
    let b = store(AdapterKind::Nats, &url, "t3", l.clone()).await;
    revocations_are_followed(a.clone(), b).await;

    // File storage: a broker restart keeps both.
    a.keep("survivor", Bytes::from("kept")).await.unwrap();
    nats.kill();
    nats.restart();
    let c = store(AdapterKind::Nats, &url, "t3", l).await;
    let mut kept = Kept::default();
    for _ in 0..50 {
        if let Ok(k) = c.kept("survivor").await {
            kept = k;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(texts(&kept), ["kept"]);
    let mut follow = c.clone().revocations();
    let mut users = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .unwrap()
        {
            Some(Ok(RevocationEvent::Revoked(r))) => users.push(r.user),
            Some(Ok(RevocationEvent::UpToDate)) => break,
            Some(Err(_)) => follow = c.clone().revocations(),
            None => panic!("follow ended"),
        }
    }
    users.sort();
    assert_eq!(users, ["42", "7", "9"]);
}

#[tokio::test]
async fn redis_store() {
    let redis = RedisServer::start();
    let url = redis.url();
    let l = limits(3, Duration::from_secs(60));
    kept_is_bounded_ordered_and_forgotten(store(AdapterKind::Redis, &url, "t1", l.clone()).await)
        .await;
    old_messages_are_not_handed_out(
        store(
            AdapterKind::Redis,
            &url,
            "t2",
            limits(3, Duration::from_secs(1)),
        )
        .await,
    )
    .await;
    let a = store(AdapterKind::Redis, &url, "t3", l.clone()).await;
    let b = store(AdapterKind::Redis, &url, "t3", l).await;
    revocations_are_followed(a, b).await;
}

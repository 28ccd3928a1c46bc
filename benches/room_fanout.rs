//! In-process room fan-out: `Broadcast`s to a `RoomActor` with 1, 100, 1,000
//! and 10,000 members, timed until every member has handled every packet.
//! One broadcast at a time (`burst1`: what a paced publisher costs), and 64
//! sent back to back (`burst64`: a burst, which the room actor batches into
//! one `Deliver` per member, `room::MAX_BATCH` at most).
//!
//! The members are tiny counting actors in place of connection actors, so
//! the figure is the room actor's fan-out plus actix's mailbox delivery and
//! scheduling, on one arbiter (one thread), without sockets or encoding.
//! Throughput is reported in deliveries (elements: packets × members) per
//! second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use riptide::engineio::{Frame, Sid};
use riptide::node::delivery::{Deliver, DisconnectSocket, Encoded};
use riptide::node::interest::{AddMember, Registry};
use riptide::node::room::{Broadcast, Members, RoomActor, RoomKey};
use riptide::Metrics;
use tokio::sync::{mpsc, Notify};

/// Counts deliveries; the one that completes a round wakes the bench.
struct Done {
    count: AtomicUsize,
    target: AtomicUsize,
    notify: Notify,
}

struct Member {
    done: Arc<Done>,
}

impl Actor for Member {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Member {
    type Result = ();
    fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
        let k = d.items.as_slice().len();
        let n = self.done.count.fetch_add(k, Ordering::Relaxed) + k;
        if n == self.done.target.load(Ordering::Relaxed) {
            self.done.notify.notify_one();
        }
    }
}

impl Handler<DisconnectSocket> for Member {
    type Result = ();
    fn handle(&mut self, _: DisconnectSocket, _: &mut Context<Self>) {}
}

/// A request to time `iters` rounds of `burst` broadcasts; the reply is
/// their total duration.
type Job = (u64, usize, std_mpsc::Sender<Duration>);

/// Runs an actix System on its own thread with one room of `members`
/// members, serving timing jobs until the sender is dropped.
fn start_room(members: usize) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let (ready_tx, ready_rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let ns: Arc<str> = "/".into();
            let key = RoomKey {
                ns: ns.clone(),
                room: Some("bench".into()),
            };
            let log = slog::Logger::root(slog::Discard, slog::o!());
            // Members join through the interest registry, as on a node.
            let rooms: Registry<RoomKey, RoomActor> =
                Registry::new(move |key: &RoomKey, roster| {
                    RoomActor::new(
                        key.clone(),
                        roster,
                        Duration::ZERO,
                        Metrics::new(),
                        log.clone(),
                    )
                    .start()
                });
            let done = Arc::new(Done {
                count: AtomicUsize::new(0),
                target: AtomicUsize::new(0),
                notify: Notify::new(),
            });
            for _ in 0..members {
                let m = Member { done: done.clone() }.start();
                rooms.join(
                    &key,
                    AddMember {
                        sid: Sid::random(),
                        ns: ns.clone(),
                        conn: Arc::new(m),
                    },
                );
            }
            let room = rooms.get(&key).expect("a room with members has an actor");
            // Every AddMember is handled before Members is answered.
            let n = room.send(Members).await.expect("room alive").len();
            assert_eq!(n, members);
            let frames: Encoded = Arc::from(vec![Frame::text(
                r#"42["msg",{"t":0,"seq":0,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]"#,
            )]);
            ready_tx.send(()).expect("bench waiting");
            while let Some((iters, burst, reply)) = rx.recv().await {
                done.target.store(members * burst, Ordering::Relaxed);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    done.count.store(0, Ordering::Relaxed);
                    let t = Instant::now();
                    for _ in 0..burst {
                        room.do_send(Broadcast {
                            frames: frames.clone(),
                            filter: None,
                            mode: riptide::node::delivery::Mode::Normal,
                        });
                    }
                    done.notify.notified().await;
                    total += t.elapsed();
                }
                let _ = reply.send(total);
            }
            System::current().stop();
        });
    });
    ready_rx.recv().expect("room started");
    tx
}

fn room_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("room_fanout");
    for members in [1usize, 100, 1_000, 10_000] {
        let room = start_room(members);
        for burst in [1usize, 64] {
            g.throughput(Throughput::Elements((members * burst) as u64));
            g.sample_size(if members * burst >= 100_000 { 20 } else { 100 });
            let id = BenchmarkId::new(format!("burst{burst}"), members);
            g.bench_with_input(id, &members, |b, _| {
                b.iter_custom(|iters| {
                    let (tx, rx) = std_mpsc::channel();
                    room.send((iters, burst, tx)).expect("room thread alive");
                    rx.recv().expect("room thread replied")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, room_fanout);
criterion_main!(benches);

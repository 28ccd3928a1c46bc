//! A WebSocket run on the raw connection, after Riptide's upgrade service
//! (engineio/takeover.rs) has taken it from actix-http's dispatcher.
//!
//! One task per connection reads and writes:
//! - reads go into a buffer of the worker thread's, and only a partial
//!   frame is kept by the connection, so an idle WebSocket holds no buffer
//!   at all (the dispatcher kept an 8 kB read and an 8 kB write buffer for
//!   each one, docs/decisions.md "Idle memory");
//! - writes go from the [`WsSink`] queue to the socket: small frames
//!   gathered in a buffer of the worker thread's (up to [`WRITE_BUF`] bytes
//!   per write), a large one written from its own buffer. No connection
//!   keeps a write buffer.
//!
//! The guarantees are the response body's (mod.rs): the same bounded queue,
//! the same slow-consumer kill (the socket shut down under the sink's lock),
//! the same close flush bound, inbound packets handed over a read's worth at
//! a time, waiting for the session to take them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ws::CloseCode;
use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::reader::{FrameReader, Step};
use super::{fail, queue_read, State, WsSink};
use crate::engineio::packet::{Packet, Protocol};
use crate::engineio::session::{SessionHandle, WsEvent};

/// A frame at least this long is written from its own buffer; shorter ones
/// are copied into the thread's write buffer and leave together.
const COPY_MAX: usize = 16 * 1024;

/// The thread's write buffer: the most bytes one write gathers.
const WRITE_BUF: usize = 64 * 1024;

/// Bytes read from a socket in one read.
const READ_BUF: usize = 64 * 1024;

/// How long a closed WebSocket waits for its peer to close too, after the
/// close frame is written and the write side shut (a lingering close: data
/// still arriving would otherwise make the kernel answer with a reset,
/// which can destroy the close frame before the client reads it).
const LINGER: Duration = Duration::from_secs(2);

thread_local! {
    /// The worker thread's read buffer, lent to one connection's read at a
    /// time (a read and its decoding are one synchronous step).
    static READ: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUF].into_boxed_slice());
    /// The worker thread's write buffer, where one connection's small frames
    /// are gathered for one write.
    static WRITE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(WRITE_BUF));
}

/// Put in a request's extensions by the upgrade service: the connection can
/// be taken over, so a WebSocket handshake answers with a [`Takeover`]
/// instead of a streaming body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TakeoverOffer;

/// Put in a `101 Switching Protocols` response's extensions: what runs on
/// the connection once the response head is written.
pub(crate) enum Takeover {
    /// An Engine.IO session's WebSocket.
    Session {
        sink: WsSink,
        session: SessionHandle,
        max_payload: usize,
        /// How its frames decode (Engine.IO v3 binary frames carry a type byte).
        protocol: Protocol,
    },
    /// A WebSocket forwarded to the node that owns its session
    /// (engineio/forward.rs): bytes copied both ways, frames untouched (the
    /// client's stay masked, as the owner expects of a client).
    Pipe {
        upstream: awc::BoxedSocket,
        /// What the owner sent after its handshake, read with it.
        leftover: BytesMut,
    },
}

impl Takeover {
    /// The task that runs on `io`; `read_buf` holds what the client sent
    /// after its handshake request, `head` the encoded `101` (written by
    /// this task, with the first frames), and `guard` is dropped when the
    /// task ends.
    ///
    /// Not an `async fn`, and the session's task not wrapped in another
    /// async block: a future that awaits a future it owns keeps both (the
    /// captured one and the one being awaited, rust-lang/rust#62958), and
    /// the arguments of an async fn stay in its future as long as it runs.
    /// This future is what every idle WebSocket costs (docs/decisions.md,
    /// "Idle memory").
    pub(crate) fn run<T, G>(
        self,
        io: T,
        read_buf: BytesMut,
        head: BytesMut,
        guard: G,
    ) -> impl Future<Output = ()>
    where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
        G: 'static,
    {
        match self {
            Takeover::Session {
                sink,
                session,
                max_payload,
                protocol,
            } => {
                // The dispatcher's read buffer is not kept: only what it
                // holds (dhat: it was 7.9 kB of 16.4 kB per idle WebSocket
                // while it lived as long as the task).
                let unread = !read_buf.is_empty();
                // The 101 leaves with the session's first frames (its open
                // packet), in one write: one send and one segment fewer per
                // connection. Copied out, so the dispatcher's 8 kB write
                // buffer is not kept until that write.
                sink.queue_head(Bytes::copy_from_slice(&head));
                drop(head);
                let c = Conn {
                    io,
                    reader: FrameReader::new(max_payload, protocol, sink.deflates()),
                    sink,
                    pending: if unread {
                        BytesMut::from(&read_buf[..])
                    } else {
                        BytesMut::new()
                    },
                    packets: Vec::new(),
                    inflight: VecDeque::new(),
                    offset: 0,
                    unflushed: false,
                };
                drop(read_buf);
                Either::Left(c.run(session, unread, guard))
            }
            // Rare (sticky-free clusters), and its copy buffers are larger
            // than a session's state: boxed, so it does not set the size of
            // every session's task.
            Takeover::Pipe { upstream, leftover } => Either::Right(Box::pin(async move {
                pipe(io, read_buf, head, upstream, leftover).await;
                drop(guard);
            })),
        }
    }
}

async fn pipe<T>(
    mut io: T,
    read_buf: BytesMut,
    mut head: BytesMut,
    mut upstream: awc::BoxedSocket,
    leftover: BytesMut,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    use tokio::io::AsyncWriteExt;
    // The 101, then what the owner sent after its own (its open packet).
    head.extend_from_slice(&leftover);
    if !head.is_empty() && io.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    if !read_buf.is_empty() && upstream.write_all(&read_buf).await.is_err() {
        return;
    }
    // Not kept for the pipe's life (see Takeover::run).
    drop((read_buf, leftover));
    let _ = tokio::io::copy_bidirectional(&mut io, &mut upstream).await;
}

/// How the writer stopped.
enum WriteEnd {
    /// The close frame and everything before it are written.
    Closed,
    /// Killed (a slow consumer, a stuck close) or the socket failed.
    Dropped,
}

struct Conn<T> {
    io: T,
    sink: WsSink,
    reader: FrameReader,
    /// A partial frame: the only read data a connection keeps between reads.
    pending: BytesMut,
    packets: Vec<Packet>,
    /// Chunks taken off the sink's queue, being written; `offset` bytes of
    /// the first are written already.
    inflight: VecDeque<Bytes>,
    offset: usize,
    /// A write left data in a TLS session's buffer: flush before idling.
    unflushed: bool,
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// Run the WebSocket of `session` until it is closed and written, then
    /// drop `guard`. `unread`: the pending buffer holds bytes read with the
    /// handshake, decoded before the first read.
    ///
    /// Not an `async fn`: its arguments would be kept twice in the future
    /// (as captured, and moved into the body), the connection's state too.
    // Deliberate (see above): clippy would make it the async fn it was.
    #[allow(clippy::manual_async_fn)]
    fn run<G: 'static>(
        mut self,
        session: SessionHandle,
        mut unread: bool,
        guard: G,
    ) -> impl Future<Output = ()> {
        async move {
            let id = self.sink.id;
            let c = &mut self;
            let mut reported = false;
            let end = 'run: {
                // Queued behind `Attach`: if it cannot be delivered the session is
                // gone, and the WebSocket must not stay open with nobody behind it.
                let alive = pin!(WsEvent::reached(&session));
                match c.while_writing(alive).await {
                    Err(end) => break 'run end,
                    Ok(Err(_)) => c.sink.close(CloseCode::Away, "session closed"),
                    Ok(Ok(())) => loop {
                        // Whatever was read with the handshake is decoded first.
                        // `None`: the peer closed or the socket failed.
                        let step = if std::mem::take(&mut unread) {
                            Some(c.decode_pending())
                        } else {
                            match poll_fn(|cx| c.poll_read_phase(cx)).await {
                                Ok(step) => step,
                                Err(end) => break 'run end,
                            }
                        };
                        match step {
                            Some(Step::More) => match c.hand_over(&session).await {
                                Err(end) => break 'run end,
                                Ok(true) => continue,
                                Ok(false) => {
                                    c.sink.close(CloseCode::Normal, "");
                                    break;
                                }
                            },
                            Some(Step::Close(code)) => {
                                if let Err(end) = c.hand_over(&session).await {
                                    break 'run end;
                                }
                                c.sink.close(code, "");
                                break;
                            }
                            Some(Step::Fail(kind, code)) => {
                                fail(&session, &c.sink, kind, code, &mut c.packets);
                                break;
                            }
                            None => {
                                c.sink.close(CloseCode::Normal, "");
                                break;
                            }
                        }
                    },
                }
                // The read side is over: the session hears it now, while what is
                // queued (the close frame last) is still being written.
                session.ws_event(WsEvent::Closed { id });
                reported = true;
                poll_fn(|cx| c.poll_write(cx)).await
            };
            if let WriteEnd::Closed = end {
                c.linger().await;
            }
            // (`Conn`'s drop detaches the sink before the socket is closed.)
            drop(self);
            if !reported {
                session.ws_event(WsEvent::Closed { id });
            }
            drop(guard);
        }
    }
}

/// One read into the worker thread's buffer, `take` given what came:
/// `true` when something did, `false` at the end of the stream or an error.
fn poll_read_once<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    take: impl FnOnce(&[u8]),
) -> Poll<bool> {
    READ.with_borrow_mut(|buf| {
        let mut rb = ReadBuf::new(&mut buf[..]);
        match Pin::new(io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                take(rb.filled());
                Poll::Ready(true)
            }
            Poll::Ready(_) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    })
}

impl<T> Drop for Conn<T> {
    fn drop(&mut self) {
        // Before the socket closes (its fields drop after this): from here
        // on its descriptor number may be reused, and nothing queued will
        // be written.
        self.sink.shared.out.lock().detach();
    }
}

impl<T> Conn<T>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// Poll `fut` while writing what the session queues.
    ///
    /// `fut` is pinned by the caller: moved in here, it would be kept twice
    /// in the task's future.
    async fn while_writing<F: Future>(
        &mut self,
        mut fut: Pin<&mut F>,
    ) -> Result<F::Output, WriteEnd> {
        poll_fn(|cx| {
            if let Poll::Ready(end) = self.poll_write(cx) {
                return Poll::Ready(Err(end));
            }
            fut.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// Hand the decoded packets to the session in order, waiting until it
    /// has taken the last one (inbound backpressure: one read's worth).
    /// `Ok(false)` when the session is gone.
    async fn hand_over(&mut self, session: &SessionHandle) -> Result<bool, WriteEnd> {
        let Some(taken) = queue_read(session, self.sink.id, &mut self.packets) else {
            return Ok(true);
        };
        Ok(self.while_writing(pin!(taken)).await?.is_ok())
    }

    fn decode_pending(&mut self) -> Step {
        let step = self
            .reader
            .decode(&mut self.pending, &mut self.packets, &self.sink);
        if self.pending.is_empty() {
            // Frees the buffer the decoded frames came from once they are
            // dropped, instead of keeping it for the next read.
            self.pending = BytesMut::new();
        }
        step
    }

    /// Write, and read until one read yields packets (`Step::More` with
    /// packets decoded), a close or a bad frame (`Step`), or the read side
    /// ends (`None`).
    fn poll_read_phase(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Step>, WriteEnd>> {
        if let Poll::Ready(end) = self.poll_write(cx) {
            return Poll::Ready(Err(end));
        }
        loop {
            // Exactly what was read, in a buffer of its own (the frames
            // decoded from it are handed on).
            let pending = &mut self.pending;
            match poll_read_once(&mut self.io, cx, |data| pending.extend_from_slice(data)) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(false) => return Poll::Ready(Ok(None)),
                Poll::Ready(true) => match self.decode_pending() {
                    Step::More if self.packets.is_empty() => continue,
                    step => return Poll::Ready(Ok(Some(step))),
                },
            }
        }
    }

    /// Write what is queued until the queue is empty (`Pending`, with the
    /// sink's waker set) or the writer is done.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<WriteEnd> {
        loop {
            if self.inflight.is_empty() {
                let mut out = self.sink.shared.out.lock();
                // Written and flushed chunks are the kernel's.
                if !self.unflushed {
                    let sent = out.sent_chunks;
                    out.release_flushed(sent);
                }
                if out.state == State::Killed || out.body_gone {
                    return Poll::Ready(WriteEnd::Dropped);
                }
                if out.chunks.is_empty() {
                    if self.unflushed {
                        drop(out);
                        match Pin::new(&mut self.io).poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.unflushed = false,
                            Poll::Ready(Err(_)) => return Poll::Ready(WriteEnd::Dropped),
                            Poll::Pending => {
                                self.sink.shared.out.lock().waker = Some(cx.waker().clone());
                                return Poll::Pending;
                            }
                        }
                        continue;
                    }
                    if out.state == State::Closing {
                        return Poll::Ready(WriteEnd::Closed);
                    }
                    // Idle: one of the two queues keeps its capacity, not
                    // both. The writer's goes back to the sink when the
                    // sink's has none (it was taken by the last swap), so
                    // the next frame is queued without an allocation;
                    // otherwise it is let go.
                    if self.inflight.capacity() > 0 {
                        if out.chunks.capacity() == 0 {
                            std::mem::swap(&mut self.inflight, &mut out.chunks);
                        } else {
                            self.inflight = VecDeque::new();
                        }
                    }
                    out.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                std::mem::swap(&mut self.inflight, &mut out.chunks);
                out.in_flight = self.inflight.len();
            }
            let (inflight, offset, io) = (&self.inflight, self.offset, &mut self.io);
            let write = WRITE.with_borrow_mut(|scratch| {
                let first = &inflight[0][offset..];
                if first.len() >= COPY_MAX {
                    return Pin::new(&mut *io).poll_write(cx, first);
                }
                // Small frames are gathered into one buffer: the kernel's
                // per-segment cost of a vectored write of many ~100-byte
                // frames was several times that of the copy.
                scratch.clear();
                for (i, chunk) in inflight.iter().enumerate() {
                    let c = if i == 0 { first } else { &chunk[..] };
                    if i > 0 && (c.len() >= COPY_MAX || scratch.len() + c.len() > WRITE_BUF) {
                        break;
                    }
                    scratch.extend_from_slice(c);
                }
                Pin::new(&mut *io).poll_write(cx, scratch)
            });
            let written = match write {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(WriteEnd::Dropped),
                Poll::Ready(Ok(w)) => w,
                Poll::Pending => {
                    // A kill must still wake this task.
                    let mut out = self.sink.shared.out.lock();
                    if out.state == State::Killed {
                        return Poll::Ready(WriteEnd::Dropped);
                    }
                    out.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            };
            self.unflushed = true;
            self.advance(written);
        }
    }

    /// `written` bytes of the in-flight chunks have left: drop the chunks
    /// written whole and count them (and the frames they end) as sent.
    fn advance(&mut self, written: usize) {
        let mut done = 0;
        let mut left_over = written;
        while let Some(front) = self.inflight.front() {
            let left = front.len() - self.offset;
            if left_over < left {
                self.offset += left_over;
                break;
            }
            left_over -= left;
            self.offset = 0;
            self.inflight.pop_front();
            done += 1;
        }
        let mut out = self.sink.shared.out.lock();
        out.in_flight = self.inflight.len();
        out.sent(done, written);
    }

    /// After the close frame: shut the write side, then read and drop
    /// whatever still comes until the peer closes too, for at most
    /// [`LINGER`].
    async fn linger(&mut self) {
        use tokio::io::AsyncWriteExt;
        let io = &mut self.io;
        // Boxed: the timer is only needed at the close, and inline it would
        // be in every connection's task for its whole life.
        let _ = Box::pin(tokio::time::timeout(LINGER, async {
            if io.shutdown().await.is_err() {
                return;
            }
            poll_fn(|cx| loop {
                match poll_read_once(&mut *io, cx, |_| {}) {
                    Poll::Ready(true) => continue,
                    Poll::Ready(false) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            })
            .await
        }))
        .await;
    }
}

/// A connection whose socket takes every byte at once: the production write
/// path (the gathering into the thread's buffer, the queue's accounting)
/// without a socket, for benches.
#[cfg(any(test, feature = "internals"))]
pub struct Writer(Conn<NullIo>);

#[cfg(any(test, feature = "internals"))]
impl Writer {
    pub(super) fn new(sink: WsSink) -> Writer {
        Writer(Conn {
            io: NullIo(0),
            reader: FrameReader::new(usize::MAX, Protocol::V4, sink.deflates()),
            sink,
            pending: BytesMut::new(),
            packets: Vec::new(),
            inflight: VecDeque::new(),
            offset: 0,
            unflushed: false,
        })
    }

    /// Write everything queued; the bytes written so far in all.
    pub fn write_queued(&mut self) -> u64 {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let _ = self.0.poll_write(&mut cx);
        self.0.io.0
    }
}

#[cfg(any(test, feature = "internals"))]
struct NullIo(u64);

#[cfg(any(test, feature = "internals"))]
impl AsyncRead for NullIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

#[cfg(any(test, feature = "internals"))]
impl AsyncWrite for NullIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::Frame;
    use crate::engineio::websocket::WsLimits;

    const LIMITS: WsLimits = WsLimits {
        max_payload: 1 << 20,
        max_frames: 1024,
        max_bytes: 1 << 24,
        deflate_threshold: None,
    };

    /// Small frames leave gathered in one write, a large one from its own
    /// buffer, and the queue counts them all as written.
    #[test]
    fn writes_everything_queued_and_accounts_for_it() {
        let sink = WsSink::new(LIMITS, usize::MAX);
        let mut w = Writer::new(sink.clone());
        let small = Frame::message("2[\"msg\",1]");
        let large = Frame::message(&"x".repeat(COPY_MAX + 10));
        let mut expected = 0;
        for f in [&small, &small, &large, &small] {
            sink.send(f, false);
            expected += f.wire().len() as u64;
        }
        assert_eq!(sink.queued_frames(), 4);
        assert_eq!(w.write_queued(), expected);
        assert_eq!(sink.queued_frames(), 0);
        assert_eq!(sink.queued_bytes(), 0);
        // A flush waiter registered now is released by the next write.
        let mut flushed = sink.flushed();
        assert_eq!(w.write_queued(), expected);
        assert!(flushed.try_recv().is_ok());
    }

    /// The response head queued after the first frames (the session may
    /// take its WebSocket before the upgrade service hands over the head)
    /// still leaves first, in the same write, and the queue's accounting
    /// counts frames, not the head.
    #[test]
    fn the_head_leaves_first_with_the_first_frames() {
        let sink = WsSink::new(LIMITS, usize::MAX);
        let open = Frame::message("0{\"sid\":\"x\"}");
        sink.send(&open, false);
        let mut flushed = sink.flushed();
        let head = Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        sink.queue_head(head.clone());
        assert_eq!(sink.queued_frames(), 1);
        let mut c = Conn {
            io: CaptureIo(Vec::new(), 0),
            reader: FrameReader::new(LIMITS.max_payload, Protocol::V4, false),
            sink: sink.clone(),
            pending: BytesMut::new(),
            packets: Vec::new(),
            inflight: VecDeque::new(),
            offset: 0,
            unflushed: false,
        };
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(c.poll_write(&mut cx).is_pending());
        let mut expected = head.to_vec();
        expected.extend_from_slice(open.wire());
        assert_eq!(c.io.0, expected);
        assert_eq!(c.io.1, 1, "one write");
        assert_eq!(sink.queued_frames(), 0);
        assert_eq!(sink.queued_bytes(), 0);
        // The waiter registered before the head was queued waited for the
        // frame, which has left.
        assert!(c.poll_write(&mut cx).is_pending());
        assert!(flushed.try_recv().is_ok());
    }

    /// An idle writer keeps one queue's capacity, not two.
    #[test]
    fn an_idle_connection_keeps_one_queue() {
        let sink = WsSink::new(LIMITS, usize::MAX);
        let mut w = Writer::new(sink.clone());
        for _ in 0..3 {
            sink.send(&Frame::message("4hi"), false);
            w.write_queued();
            let out = sink.shared.out.lock();
            assert!(
                out.chunks.capacity() > 0,
                "the next frame needs no allocation"
            );
            assert_eq!(w.0.inflight.capacity(), 0);
        }
    }

    /// Records what is written, and how many writes.
    struct CaptureIo(Vec<u8>, usize);

    impl AsyncRead for CaptureIo {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for CaptureIo {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.extend_from_slice(buf);
            self.1 += 1;
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A close queued behind frames ends the writer once all are written.
    #[test]
    fn a_close_ends_the_writer_after_the_frames() {
        let sink = WsSink::new(LIMITS, usize::MAX);
        let mut w = Writer::new(sink.clone());
        sink.send(&Frame::message("4hi"), false);
        sink.close(CloseCode::Normal, "bye");
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(matches!(
            w.0.poll_write(&mut cx),
            Poll::Ready(WriteEnd::Closed)
        ));
        assert_eq!(sink.queued_frames(), 0);
        // Nothing is queued once closed.
        assert_eq!(
            sink.send(&Frame::message("4late"), false),
            crate::engineio::websocket::SendOutcome::Closed
        );
    }

    /// A kill ends the writer at once, whatever is queued.
    #[test]
    fn a_kill_drops_the_connection() {
        let sink = WsSink::new(LIMITS, usize::MAX);
        let mut w = Writer::new(sink.clone());
        sink.send(&Frame::message("4hi"), false);
        sink.kill();
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(matches!(
            w.0.poll_write(&mut cx),
            Poll::Ready(WriteEnd::Dropped)
        ));
    }
}

//! Connections whose request asks for a WebSocket (`Upgrade: websocket`;
//! also any `CONNECT`), once actix-http's HTTP/1 dispatcher hands them
//! over.
//!
//! The request still runs through the whole app (Host check, routes,
//! refusals, the upgrade itself); what herald serves here is the socket
//! after it. The dispatcher would keep its two 8 KiB buffers for the
//! connection's whole life, though a WebSocket needs neither: the session's
//! frames go from its context to the socket as they are (one vectored write
//! per burst, nothing copied), and what the client sends is read on the stack
//! and handed on at its size. An idle WebSocket holds no buffer at all.
//!
//! An answer other than `101` (a refusal) is written with the request's
//! codec, and the connection is closed after it, as `Connection: close`
//! says. What the dispatcher had not yet written when it handed over (the
//! answers to requests pipelined ahead of this one) goes first, and a
//! request that expects `100 Continue` gets it at once, as the dispatcher
//! would have sent it.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::{Encoder, Framed};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{self, Codec};
use actix_http::{ConnectionType, Extensions, Payload, Request, Response, StatusCode};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::rt::net::TcpStream;
use bytes::{Buf, Bytes, BytesMut};
use futures_channel::mpsc;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The most one read takes from the socket (a stack buffer, copied out at
/// the size read).
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Chunks read from the client and not yet taken by the request's reader
/// (the session); past these, herald stops reading the socket and TCP
/// holds the client back.
const READ_AHEAD_CHUNKS: usize = 2;

/// Bytes of the answer queued for the socket past which herald stops taking
/// more from the body until the socket has taken some: actix-http's own
/// default (`h1_write_buffer_size`), so a session's context is drained at
/// the pace it was.
const WRITE_QUEUE_BYTES: usize = 32 * 1024;

/// Buffers one vectored write takes at most.
const WRITE_SLICES: usize = 64;

/// After herald's last byte, how long the client has to close its side (its
/// close frame, its unread request body) before the socket is dropped: the
/// HTTP server's `client_disconnect_timeout`.
const LINGER: Duration = Duration::from_secs(1);

/// The app's answer to the request, once it has one.
type Answering = Pin<Box<dyn Future<Output = Response<BoxBody>>>>;

/// One handed-over connection, from the request to the close: `req`
/// through the app, then its answer and, for a `101`, the upgraded stream
/// in both directions until the body (the session) ends.
///
/// A future of its own, rather than an `async fn`, so that a connection
/// holds only what its stage needs: a quarter of the `async fn`'s size
/// (216 bytes against 928), in every open WebSocket.
///
/// Errors of the transport end the connection and are logged at debug: a
/// client that goes away is not a server error.
pub(super) struct Upgraded {
    io: TcpStream,
    codec: Codec,
    /// The connection's extensions (its place under the TCP caps), kept as
    /// long as the connection.
    _connection: Option<Rc<Extensions>>,
    /// Where the client's bytes go: the request's payload. `None` once the
    /// client has closed its side (or the socket failed), or the answer is
    /// written.
    inbound: Option<mpsc::Sender<Result<Bytes, PayloadError>>>,
    /// What waits for the socket.
    out: Outgoing,
    stage: Stage,
}

enum Stage {
    /// The app is handling the request.
    Answering(Answering),
    /// The answer is on its way to the socket.
    Writing(Answer),
    /// Written: herald's side of the connection is being shut down.
    ShuttingDown,
    /// Shut down: the client's last bytes are read and dropped until it
    /// closes, or this timer ends.
    Lingering(Pin<Box<Sleep>>),
}

/// Takes over `framed` and runs `req` through `app`.
pub(super) fn serve<S, B>(app: &S, req: Request, framed: Framed<TcpStream, Codec>) -> Upgraded
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let parts = framed.into_parts();
    // What the client sent after the request's head (a WebSocket client may
    // send frames before the 101 comes), and what the dispatcher had not
    // yet written, copied out so the dispatcher's buffers go now.
    let early = (!parts.read_buf.is_empty()).then(|| Bytes::copy_from_slice(&parts.read_buf));
    let mut out = Outgoing::default();
    out.push(Bytes::copy_from_slice(&parts.write_buf));
    drop(parts.read_buf);
    drop(parts.write_buf);

    let mut req = req;
    if req.head().expect() {
        out.push(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
    }
    let connection = req.take_conn_data();
    let (mut inbound, payload) = mpsc::channel::<Result<Bytes, PayloadError>>(READ_AHEAD_CHUNKS);
    if let Some(early) = early {
        // The channel has room for its first chunks.
        let _ = inbound.try_send(Ok(early));
    }
    let payload: actix_http::BoxedPayloadStream = Box::pin(payload);
    let (req, _) = req.replace_payload(Payload::from(payload));
    let call = app.call(req);
    Upgraded {
        io: parts.io,
        codec: parts.codec,
        _connection: connection,
        inbound: Some(inbound),
        out,
        stage: Stage::Answering(Box::pin(async move { into_response(call.await) })),
    }
}

/// The app's answer, or its error's.
fn into_response<B: MessageBody + 'static>(
    result: Result<ServiceResponse<B>, actix_web::Error>,
) -> Response<BoxBody> {
    match result {
        Ok(answer) => answer.into_parts().1.map_into_boxed_body().into(),
        Err(e) => e.error_response().into(),
    }
}

impl Future for Upgraded {
    type Output = Result<(), actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Answering(answering) => {
                    read_client(&mut this.io, &mut this.inbound, cx);
                    if let Poll::Ready(Err(e)) = this.out.flush(&mut this.io, cx) {
                        log::debug!("an upgraded connection's socket failed: {e}");
                        this.stage = Stage::ShuttingDown;
                        continue;
                    }
                    let Poll::Ready(response) = answering.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    this.stage = match Answer::start(response, &mut this.codec, &mut this.out) {
                        Ok(answer) => Stage::Writing(answer),
                        Err(e) => {
                            log::debug!("cannot encode the answer to an upgrade request: {e}");
                            Stage::ShuttingDown
                        }
                    };
                }
                Stage::Writing(answer) => {
                    read_client(&mut this.io, &mut this.inbound, cx);
                    if answer
                        .poll_write(&mut this.io, &mut this.codec, &mut this.out, cx)
                        .is_pending()
                    {
                        return Poll::Pending;
                    }
                    // Nothing more for the request's reader: it sees the
                    // end of its stream. The body (the session) goes too.
                    this.inbound = None;
                    this.stage = Stage::ShuttingDown;
                }
                Stage::ShuttingDown => {
                    if Pin::new(&mut this.io).poll_shutdown(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.stage = Stage::Lingering(Box::pin(tokio::time::sleep(LINGER)));
                }
                Stage::Lingering(timer) => {
                    if drain(&mut this.io, cx).is_ready() || timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Moves what the client sent into the request's payload while its reader
/// has room; once the reader is gone, reads on only to see the client
/// close. Sets `inbound` to `None` at the end of the client's stream, which
/// the reader gets as [`PayloadError::Incomplete`] (a body cut short is
/// never taken for a whole one).
fn read_client(
    io: &mut TcpStream,
    inbound: &mut Option<mpsc::Sender<Result<Bytes, PayloadError>>>,
    cx: &mut Context<'_>,
) {
    while let Some(sender) = inbound.as_mut() {
        let reader_gone = match sender.poll_ready(cx) {
            Poll::Pending => return,
            Poll::Ready(Ok(())) => false,
            Poll::Ready(Err(_)) => true,
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
        let mut read = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Pending => return,
            // The dispatcher reports a client's end of stream to the
            // request's reader as an incomplete payload: so does herald.
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                if !reader_gone {
                    let _ = sender.try_send(Err(PayloadError::Incomplete(None)));
                }
                *inbound = None;
            }
            Poll::Ready(Ok(())) => {
                if !reader_gone {
                    let _ = sender.try_send(Ok(Bytes::copy_from_slice(read.filled())));
                }
            }
            Poll::Ready(Err(e)) => {
                if !reader_gone {
                    let _ = sender.try_send(Err(PayloadError::Io(e)));
                }
                *inbound = None;
            }
        }
    }
}

/// Reads and drops what the client still sends; ready once it has closed
/// (or the socket failed).
fn drain(io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
        let mut read = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) if !read.filled().is_empty() => continue,
            Poll::Ready(_) => return Poll::Ready(()),
        }
    }
}

/// The answer's body on its way to the socket.
struct Answer {
    body: BoxBody,
    /// A `101`: the body's bytes are the upgraded stream, written as they
    /// are; otherwise each chunk goes through the codec.
    upgraded: bool,
    /// The body has ended (or failed): what is queued is the last of it.
    body_done: bool,
}

impl Answer {
    /// Queues the head of `response` on `out`.
    fn start(
        response: Response<BoxBody>,
        codec: &mut Codec,
        out: &mut Outgoing,
    ) -> io::Result<Self> {
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let (mut head, body) = response.into_parts();
        if !upgraded {
            head.head_mut().set_connection_type(ConnectionType::Close);
        }
        let size = body.size();
        out.push_encoded(codec, h1::Message::Item((head, size)))?;
        Ok(Self {
            body,
            upgraded,
            body_done: false,
        })
    }

    /// Queues what the body has ready, up to [`WRITE_QUEUE_BYTES`] in all;
    /// `true` if it stopped because the body has nothing more now.
    fn fill(
        &mut self,
        codec: &mut Codec,
        out: &mut Outgoing,
        cx: &mut Context<'_>,
    ) -> io::Result<bool> {
        while !self.body_done && out.bytes < WRITE_QUEUE_BYTES {
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Pending => return Ok(true),
                Poll::Ready(Some(Ok(chunk))) if self.upgraded => out.push(chunk),
                Poll::Ready(Some(Ok(chunk))) => {
                    out.push_encoded(codec, h1::Message::Chunk(Some(chunk)))?
                }
                Poll::Ready(Some(Err(e))) => {
                    log::debug!("an upgraded connection's body failed: {e}");
                    self.body_done = true;
                }
                Poll::Ready(None) => {
                    self.body_done = true;
                    if !self.upgraded {
                        out.push_encoded(codec, h1::Message::Chunk(None))?;
                    }
                }
            }
        }
        Ok(false)
    }

    /// Writes the answer as the body yields it; ready when all of it is
    /// written, or the socket failed.
    fn poll_write(
        &mut self,
        io: &mut TcpStream,
        codec: &mut Codec,
        out: &mut Outgoing,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            let body_waiting = match self.fill(codec, out, cx) {
                Ok(waiting) => waiting,
                Err(e) => {
                    log::debug!("cannot encode an upgraded connection's answer: {e}");
                    return Poll::Ready(());
                }
            };
            match out.flush(io, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    log::debug!("an upgraded connection's socket failed: {e}");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) if self.body_done => return Poll::Ready(()),
                Poll::Ready(Ok(())) if body_waiting => return Poll::Pending,
                // Stopped at the queue's limit, now written: take more.
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

/// Bytes waiting for the socket, in order, each buffer as it was queued.
#[derive(Default)]
struct Outgoing {
    queue: VecDeque<Bytes>,
    /// Their total length.
    bytes: usize,
}

impl Outgoing {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.bytes += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Queues `item` as the request's codec writes it (a head, a chunk of a
    /// body, its end).
    fn push_encoded(
        &mut self,
        codec: &mut Codec,
        item: h1::Message<(Response<()>, BodySize)>,
    ) -> io::Result<()> {
        let mut encoded = BytesMut::new();
        codec.encode(item, &mut encoded)?;
        self.push(encoded.freeze());
        Ok(())
    }

    /// Writes the queue out, as many buffers per call as the socket takes;
    /// ready once it is empty.
    fn flush(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut count = 0;
            for (slice, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                *slice = IoSlice::new(bytes);
                count += 1;
            }
            let written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => written,
            };
            self.consume(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Drops `written` bytes from the front of the queue.
    fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }
}

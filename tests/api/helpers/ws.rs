//! A real WebSocket client (awc) against a [`TestApp`], and what any
//! WebSocket client of the tests reads the same way: a resume's replay.

use std::future::Future;

use actix_codec::Framed;
use actix_web::http::StatusCode;
use awc::ws::{self, Frame};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::{within, TestApp};

impl TestApp {
    /// Opens a WebSocket to `/ws?{query}`. A session that opens with
    /// nothing to answer (no id, channel, position or token) first gets a
    /// `connected` frame with the server's position; it is checked and
    /// consumed here.
    pub async fn ws(&self, query: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws?{}", self.port, query);
        let (_resp, framed) = within("the WebSocket handshake", self.http.ws(url).connect())
            .await
            .expect("WebSocket connects");
        let mut client = WsClient { framed };
        if opens_quietly(query) {
            let frame = client.recv_json().await;
            assert_eq!(frame["type"], "connected", "{frame}");
            assert!(
                frame["epoch"].is_string() && frame["seq"].is_u64(),
                "{frame}"
            );
        }
        client
    }

    /// Opens a WebSocket registered as `id` and consumes the `registered` answer.
    pub async fn ws_registered(&self, id: &str) -> WsClient {
        let mut client = self.ws(&format!("id={id}")).await;
        let frame = client.recv_json().await;
        assert_eq!(frame["type"], "registered", "{frame}");
        assert_eq!(frame["id"], id);
        client
    }

    /// Proves none of `clients` got anything before: broadcasts a sentinel
    /// and checks it is each one's next frame.
    pub async fn assert_nothing_before_sentinel(&self, clients: &mut [&mut WsClient]) {
        let (status, _) = self.publish_form(&[("message", "sentinel")]).await;
        assert_eq!(status, StatusCode::OK);
        for client in clients.iter_mut() {
            let frame = client.recv_json().await;
            assert_eq!(frame["data"], "sentinel", "unexpected frame {frame}");
        }
    }
}

/// Whether a session opened with `query` gets only a `connected` frame.
pub fn opens_quietly(query: &str) -> bool {
    let keys = ["id=", "channel=", "since=", "token=", "await_register="];
    !query
        .split('&')
        .any(|pair| keys.iter().any(|k| pair.starts_with(k)))
}

pub struct WsClient {
    framed: Framed<BoxedSocket, ws::Codec>,
}

impl WsClient {
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send text");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send(&mut self, msg: ws::Message) {
        self.framed.send(msg).await.expect("send frame");
    }

    /// The next frame other than a ping (pings are answered), or `None` when
    /// the connection ended.
    pub async fn recv(&mut self) -> Option<Frame> {
        within("a WebSocket frame", async {
            loop {
                match self.framed.next().await {
                    Some(Ok(Frame::Ping(payload))) => {
                        self.framed
                            .send(ws::Message::Pong(payload))
                            .await
                            .expect("send pong");
                    }
                    Some(Ok(frame)) => return Some(frame),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// Subscribes to `channel` and checks the `subscribed` answer.
    pub async fn subscribe(&mut self, channel: &str) {
        self.send_json(&json!({"type": "subscribe", "channel": channel}))
            .await;
        assert_eq!(
            self.recv_json().await,
            json!({"type": "subscribed", "channel": channel})
        );
    }

    /// The code of the close frame that comes next, skipping text frames;
    /// `None` when the connection ends without one.
    pub async fn close_code_next(&mut self) -> Option<u16> {
        loop {
            match self.recv().await? {
                Frame::Close(reason) => return reason.map(|r| r.code.into()),
                Frame::Text(_) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, parsed as JSON.
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Some(Frame::Text(bytes)) => serde_json::from_slice(&bytes).expect("frame is JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Counts pings (answering each) until `n` have arrived, failing on any
    /// other frame. Proves the session stayed open across that many beats.
    pub async fn answer_pings(&mut self, n: usize) {
        for _ in 0..n {
            let frame = within("a ping", self.framed.next()).await;
            match frame {
                Some(Ok(Frame::Ping(payload))) => self
                    .framed
                    .send(ws::Message::Pong(payload))
                    .await
                    .expect("send pong"),
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    /// Sends a close frame and waits for the server's answer, skipping
    /// frames still in flight.
    pub async fn close(mut self) {
        self.send(ws::Message::Close(Some(ws::CloseCode::Normal.into())))
            .await;
        loop {
            match self.recv().await {
                Some(Frame::Close(_)) | None => return,
                Some(_) => continue,
            }
        }
    }
}

/// A WebSocket client that reads JSON frames one by one: [`WsClient`] and
/// [`super::RawWs`].
pub trait JsonFrames {
    /// The next text frame, parsed as JSON; anything else fails the test.
    fn next_json_frame(&mut self) -> impl Future<Output = Value>;
}

impl JsonFrames for WsClient {
    fn next_json_frame(&mut self) -> impl Future<Output = Value> {
        self.recv_json()
    }
}

/// Reads a resume's answer: the message frames replayed, then the
/// `resumed` (or `reset`) frame that ends them. Any other frame fails the
/// test.
pub async fn read_replay(client: &mut impl JsonFrames) -> (Vec<Value>, Value) {
    let mut messages = Vec::new();
    loop {
        let frame = client.next_json_frame().await;
        match frame["type"].as_str() {
            Some("message") => messages.push(frame),
            Some("resumed") | Some("reset") => return (messages, frame),
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
}

/// [`read_replay`], with the seqs of the messages replayed.
pub async fn read_replay_seqs(client: &mut impl JsonFrames) -> (Vec<u64>, Value) {
    let (messages, end) = read_replay(client).await;
    let seqs = messages
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    (seqs, end)
}

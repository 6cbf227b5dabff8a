//! A real HTTP client reading `text/event-stream` from a [`TestApp`].

use actix_web::http::StatusCode;
use futures_util::StreamExt;
use serde_json::Value;

use super::{within, TestApp};

impl TestApp {
    /// Opens a Server-Sent Events stream at `/events?{query}`.
    pub async fn sse(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req = self.http.get(self.url(&format!("/events?{query}")));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let resp = within("the event stream", req.send())
            .await
            .expect("GET /events");
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers().get("content-type").expect("content type");
        assert_eq!(content_type, "text/event-stream");
        SseClient {
            resp,
            buf: String::new(),
        }
    }
}

/// One Server-Sent Event: its `event:`, `id:` and `data:` fields, or a
/// comment.
#[derive(Debug, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data field")).expect("JSON data")
    }
}

/// A real HTTP client reading `text/event-stream`.
pub struct SseClient {
    resp: awc::ClientResponse,
    buf: String,
}

impl SseClient {
    /// The next event or comment block.
    pub async fn next_event(&mut self) -> SseEvent {
        within("an event", async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut event = SseEvent {
                        event: None,
                        id: None,
                        data: None,
                        comment: None,
                    };
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            event.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("id: ") {
                            event.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            event.data = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix(':') {
                            event.comment = Some(v.trim().to_owned());
                        }
                    }
                    return event;
                }
                let chunk = self.resp.next().await.expect("stream open").expect("chunk");
                self.buf
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
            }
        })
        .await
    }

    /// Waits for the server to end the stream (comments and events before
    /// the end are skipped).
    pub async fn expect_end(&mut self) {
        within("the event stream to end", async {
            while let Some(chunk) = self.resp.next().await {
                chunk.expect("a clean end, not an error");
            }
        })
        .await;
    }

    /// The next event with data that EventSource's `onmessage` would see
    /// (comments and named events such as `ping` skipped), parsed.
    pub async fn next_data(&mut self) -> (Option<String>, Value) {
        loop {
            let event = self.next_event().await;
            let unnamed = matches!(event.event.as_deref(), None | Some("message"));
            if event.data.is_some() && unnamed {
                return (event.id.clone(), event.json());
            }
        }
    }
}

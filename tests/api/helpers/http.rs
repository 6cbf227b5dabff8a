//! Plain HTTP against a [`TestApp`]: publishing to `POST /`, `/health`,
//! `/ready`, the server's position, and any request with chosen headers.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use serde_json::Value;

use super::{within, TestApp};

impl TestApp {
    /// POSTs a form to `/`; returns the status and the JSON reply.
    pub async fn publish_form(&self, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut resp = self
            .http
            .post(self.url("/"))
            .send_form(&fields)
            .await
            .expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// POSTs a form to `/` with extra headers.
    pub async fn publish_form_with(
        &self,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/"));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut resp = req.send_form(&fields).await.expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// Publishes a form that must be accepted; returns the message's seq.
    pub async fn publish_seq(&self, fields: &[(&str, &str)]) -> u64 {
        let (status, body) = self.publish_form(fields).await;
        assert!(status.is_success(), "{body}");
        body["seq"].as_u64().expect("seq")
    }

    /// POSTs a JSON body to `/`.
    pub async fn publish_json(&self, body: &Value) -> (StatusCode, Value) {
        let mut resp = self
            .http
            .post(self.url("/"))
            .send_json(body)
            .await
            .expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    /// POSTs raw bytes with the given content type (or none).
    pub async fn post_raw(&self, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/"));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        let mut resp = req.send_body(body).await.expect("POST /");
        let body = resp.json::<Value>().await.expect("JSON reply");
        (resp.status(), body)
    }

    pub async fn health(&self) -> Value {
        let mut resp = self
            .http
            .get(self.url("/health"))
            .send()
            .await
            .expect("GET /health");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.expect("JSON health")
    }

    /// Polls `/health` until `ready` holds, failing after [`WAIT`].
    pub async fn wait_for_health(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        within(what, async {
            loop {
                let health = self.health().await;
                if ready(&health) {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Waits until `/health` reports exactly these counts.
    pub async fn wait_for_counts(&self, sessions: u64, ids: u64) {
        self.wait_for_health(&format!("{sessions} sessions and {ids} ids"), |h| {
            h["sessions"] == sessions && h["ids"] == ids
        })
        .await;
    }

    /// The server's position: (epoch, latest seq).
    pub async fn position(&self) -> (String, u64) {
        let health = self.health().await;
        let epoch = health["epoch"].as_str().expect("epoch").to_owned();
        (epoch, health["seq"].as_u64().expect("seq"))
    }

    /// `method path` with extra headers: the response, body unread.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> awc::ClientResponse {
        let mut req = self.http.request(method, self.url(path));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        req.send().await.expect("herald answers")
    }

    /// `GET path` with extra headers: the status and the body as text.
    pub async fn get_text(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut resp = self.request(Method::GET, path, headers).await;
        let body = resp.body().await.expect("body");
        (resp.status(), String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET path` with extra headers: the status only.
    pub async fn get_status(&self, path: &str, headers: &[(&str, &str)]) -> StatusCode {
        self.request(Method::GET, path, headers).await.status()
    }

    /// `GET /ready`: status, `Retry-After` in seconds if any, JSON body.
    pub async fn ready(&self) -> (StatusCode, Option<u64>, Value) {
        let mut resp = self
            .http
            .get(self.url("/ready"))
            .send()
            .await
            .expect("GET /ready");
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp.json::<Value>().await.expect("JSON answer");
        (resp.status(), retry, body)
    }

    /// Asks `/ready` until it answers `status`, failing after [`super::WAIT`].
    pub async fn wait_for_ready(&self, status: StatusCode) -> (Option<u64>, Value) {
        within(&format!("/ready to answer {status}"), async {
            loop {
                let (now, retry, body) = self.ready().await;
                if now == status {
                    return (retry, body);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

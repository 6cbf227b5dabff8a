//! Long-polling (`GET /poll`) against a [`TestApp`].

use actix_web::http::StatusCode;
use serde_json::Value;

use super::{TestApp, WAIT};

impl TestApp {
    /// `GET /poll?{query}`: status and JSON answer.
    pub async fn poll(&self, query: &str) -> (StatusCode, Value) {
        let client = awc::Client::builder().timeout(WAIT * 2).finish();
        let mut resp = client
            .get(self.url(&format!("/poll?{query}")))
            .send()
            .await
            .expect("GET /poll");
        let body = resp.json::<Value>().await.expect("JSON answer");
        (resp.status(), body)
    }
}

/// The seqs of the messages in a poll's answer, in order.
pub fn message_seqs(answer: &Value) -> Vec<u64> {
    answer["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

//! A scripted stand-in for herald's `POST /`, for the retry tests of
//! herald's own publishers: each request gets the next answer of the
//! script (a status with herald's error body, a connection closed with no
//! answer at all, or no answer while the connection stays open). A request
//! is recorded before its answer goes out, so once a publisher has exited,
//! every attempt it made is in [`Stub::requests`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::rt::task::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One answer of a [`Stub`]'s script.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 200 with a publish's reply.
    Published,
    /// 503 `broker_unavailable` (not published), with `Retry-After: 0`.
    Unavailable,
    /// 503 with `Retry-After: 100000` (over a day), as a proxy in front of
    /// herald may send.
    UnavailableForADay,
    /// 504 `broker_timeout` (`"published":"unknown"`).
    TimedOut,
    /// 400 `missing_message`.
    BadRequest,
    /// The connection is closed once the request is read, with no answer.
    Hangup,
    /// Nothing is answered; the connection stays open until the publisher
    /// closes it (or [`SILENCE_LIMIT`] passes), as a hung server's would.
    Silent,
}

/// How long a [`Answer::Silent`] connection is held at most: past any
/// publisher's wait in these tests.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

impl Answer {
    /// The whole HTTP answer, or `None` for [`Answer::Hangup`] and
    /// [`Answer::Silent`].
    fn http(self) -> Option<String> {
        const UNAVAILABLE: &str = r#"{"error":"the message broker (Redis) is unavailable: connection refused; the message was not published","code":"broker_unavailable"}"#;
        let (status, extra, body) = match self {
            Self::Published => ("200 OK", "", r#"{"delivered":1,"seq":7}"#),
            Self::Unavailable => ("503 Service Unavailable", "Retry-After: 0\r\n", UNAVAILABLE),
            Self::UnavailableForADay => (
                "503 Service Unavailable",
                "Retry-After: 100000\r\n",
                UNAVAILABLE,
            ),
            Self::TimedOut => (
                "504 Gateway Timeout",
                "",
                r#"{"error":"the message broker (Redis) did not answer in time: the message may have been published; retry with the same Idempotency-Key","code":"broker_timeout","published":"unknown"}"#,
            ),
            Self::BadRequest => (
                "400 Bad Request",
                "",
                r#"{"error":"message is missing","code":"missing_message"}"#,
            ),
            Self::Hangup | Self::Silent => return None,
        };
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

/// A request as the stub read it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The `Idempotency-Key` header, if there was one.
    pub idempotency_key: Option<String>,
    pub body: String,
}

/// A stand-in for herald on an ephemeral loopback port, answering its
/// script in order; past the script's end it answers 500.
pub struct Stub {
    pub port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Stub {
    pub async fn start<const N: usize>(script: [Answer; N]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let mut script = script.into_iter();
        let task = actix_web::rt::spawn(async move {
            // One connection at a time: attempts come one after the other.
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                seen.lock().expect("not poisoned").push(request);
                let answer = match script.next() {
                    Some(Answer::Silent) => {
                        let mut rest = Vec::new();
                        let _ = tokio::time::timeout(SILENCE_LIMIT, stream.read_to_end(&mut rest))
                            .await;
                        None
                    }
                    Some(answer) => answer.http(),
                    None => Some(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\
                         Connection: close\r\n\r\n"
                            .to_owned(),
                    ),
                };
                if let Some(answer) = answer {
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        });
        Self {
            port,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `Content-Length` body); `None` if the
/// connection ends first or the head is not HTTP.
async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    loop {
        let head = {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf).ok()? {
                httparse::Status::Partial => None,
                httparse::Status::Complete(head_len) => {
                    let header = |name: &str| {
                        request
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    };
                    let body_len: usize = match header("content-length") {
                        Some(value) => value.trim().parse().ok()?,
                        None => 0,
                    };
                    Some((head_len, body_len, header("idempotency-key")))
                }
            }
        };
        if let Some((head_len, body_len, idempotency_key)) = head {
            while buf.len() < head_len + body_len {
                read_more(stream, &mut buf).await?;
            }
            let body = &buf[head_len..head_len + body_len];
            return Some(Recorded {
                idempotency_key,
                body: String::from_utf8_lossy(body).into_owned(),
            });
        }
        read_more(stream, &mut buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

//! HTTP/1.1 over a raw socket, for clients that stop reading, read slowly
//! or vanish mid-request.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::within;

/// An HTTP/1.1 `GET` on a raw socket with a chosen receive buffer, for
/// clients that stop reading, read slowly or vanish mid-request.
pub struct RawHttp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawHttp {
    /// Connects (with a receive buffer of `recv_buffer` bytes, if given) and
    /// sends `GET {path}` with `Connection: close`.
    pub async fn get(port: u16, path: &str, recv_buffer: Option<u32>) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = socket.connect(addr).await.expect("TCP connect");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads the status line and headers: the status and the header block.
    pub async fn head(&mut self) -> (u16, String) {
        within("the response head", async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status line");
                    return (status, head);
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read head");
                assert!(n > 0, "connection ended before the response head");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Reads the rest of the response (the server closes after it) and
    /// returns its body, de-chunked when `head` says it is chunked.
    pub async fn body(mut self, head: &str) -> Vec<u8> {
        within("the response body", self.stream.read_to_end(&mut self.buf))
            .await
            .expect("read body");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        if !chunked {
            return self.buf;
        }
        let mut body = Vec::new();
        let mut rest = &self.buf[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16)
                .expect("hex chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }

    /// Reads the whole answer (the server closes after it): the status (0
    /// when there is no status line) and the answer as text, head and body.
    pub async fn answer(mut self) -> (u16, String) {
        within("the answer", self.stream.read_to_end(&mut self.buf))
            .await
            .expect("read answer");
        let answer = String::from_utf8_lossy(&self.buf).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }
}

//! A publisher: one keep-alive HTTP/1.1 connection that POSTs form bodies
//! and reads each reply before the next.

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire::{find, read_more};

pub struct Publisher {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl Publisher {
    pub async fn connect(server: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: server.to_string(),
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(512),
        })
    }

    /// POSTs `body` (form-encoded) and returns the reply body.
    pub async fn post(&mut self, body: &str) -> io::Result<Vec<u8>> {
        self.request.clear();
        self.request.extend_from_slice(b"POST / HTTP/1.1\r\nHost: ");
        self.request.extend_from_slice(self.host.as_bytes());
        self.request.extend_from_slice(
            b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
        );
        self.request
            .extend_from_slice(body.len().to_string().as_bytes());
        self.request.extend_from_slice(b"\r\n\r\n");
        self.request.extend_from_slice(body.as_bytes());
        self.stream.write_all(&self.request).await?;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])
                    .map_err(|_| io::Error::other("reply head is not text"))?;
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(io::Error::other(format!("publish refused: {head}")));
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .ok_or_else(|| io::Error::other("reply without content-length"))?;
                while self.buf.len() < end + 4 + length {
                    if read_more(&mut self.stream, &mut self.buf).await? == 0 {
                        return Err(io::Error::other("connection closed mid-reply"));
                    }
                }
                let reply = self.buf[end + 4..end + 4 + length].to_vec();
                self.buf.drain(..end + 4 + length);
                return Ok(reply);
            }
            if read_more(&mut self.stream, &mut self.buf).await? == 0 {
                return Err(io::Error::other("connection closed before the reply"));
            }
        }
    }
}

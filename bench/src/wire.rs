//! Just enough WebSocket and HTTP/1.1 for a load generator: an opening
//! handshake, a frame parser that works in place on a large read buffer, and
//! masked frames to write. No per-frame allocation on the read path.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use memchr::memmem;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// Opens a TCP connection from `source` (a loopback address, so that more
/// than one ephemeral port range is available) to `server`.
pub async fn connect(source: Option<IpAddr>, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        // Where only 127.0.0.1 exists (not Linux), the kernel chooses.
        let _ = socket.bind(SocketAddr::new(ip, 0));
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends the opening handshake for `path` and reads the answer; leaves any
/// bytes after the headers in `buf`.
pub async fn handshake(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                return Err(io::Error::other(format!("handshake refused: {head}")));
            }
            buf.drain(..end + 4);
            return Ok(());
        }
        if read_more(stream, buf).await? == 0 {
            return Err(io::Error::other("connection closed during handshake"));
        }
    }
}

/// Reads what the socket has into the spare capacity of `buf` (growing it
/// only when full). Returns the byte count; 0 at end of stream.
pub async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(buf.capacity().max(16 * 1024));
    }
    stream.read_buf(buf).await
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// One server frame found at the start of a buffer.
pub struct Frame {
    pub opcode: u8,
    /// Payload range within the buffer.
    pub start: usize,
    pub end: usize,
}

/// Parses the unmasked server frame at the start of `buf`, if complete.
pub fn parse(buf: &[u8]) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let (len, start): (usize, usize) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let end = start.checked_add(len)?;
    (buf.len() >= end).then_some(Frame { opcode, start, end })
}

/// A masked client frame (FIN set).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    // A fixed key is fine for a load generator: masking exists for proxies.
    let key = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// The searcher for a message's stamp, built once.
static STAMP: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"data\":\"m"));

/// Reads `"data":"m<msg>t<micros>"` out of a message frame: the message
/// number and its send time. Works for herald's, the ceiling server's and
/// Socket.IO's frames alike.
pub fn message_stamp(payload: &[u8]) -> Option<(u32, u64)> {
    let at = STAMP.find(payload)? + 9;
    let rest = &payload[at..];
    let t = rest.iter().position(|&b| b == b't')?;
    let msg = parse_u64(&rest[..t])? as u32;
    let rest = &rest[t + 1..];
    let q = rest.iter().position(|&b| b == b'"')?;
    Some((msg, parse_u64(&rest[..q])?))
}

/// The `"seq":N` of a herald frame.
pub fn frame_seq(payload: &[u8]) -> Option<u64> {
    let at = find(payload, b"\"seq\":")? + 6;
    let rest = &payload[at..];
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    parse_u64(&rest[..end])
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit()
            .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_every_flavour() {
        let herald = br#"{"type":"message","seq":9,"id":"c3","data":"m42t123456"}"#;
        assert_eq!(message_stamp(herald), Some((42, 123456)));
        let sio = br#"42["message",{"seq":9,"data":"m7t1"}]"#;
        let ceiling = br#"{"type":"message","data":"m3t99"}"#;
        assert_eq!(message_stamp(ceiling), Some((3, 99)));
        assert_eq!(message_stamp(sio), Some((7, 1)));
        assert_eq!(message_stamp(br#"{"type":"registered","id":"1"}"#), None);
    }

    #[test]
    fn frames_parse_in_place() {
        let mut buf = vec![0x81, 3, b'a', b'b', b'c', 0x89, 0];
        let f = parse(&buf).unwrap();
        assert_eq!((f.opcode, &buf[f.start..f.end]), (OP_TEXT, &b"abc"[..]));
        buf.drain(..f.end);
        assert_eq!(parse(&buf).unwrap().opcode, OP_PING);
        assert!(parse(&[0x81, 126, 0]).is_none());
    }
}

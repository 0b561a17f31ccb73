//! One UDP "connection" to a memcached server: a connected socket (the kernel drops datagrams
//! from anyone else), request ids, bounded waits for the reply to the request in flight, and
//! reassembly of multi-datagram replies. Also a small blocking [`Client`] built on it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::proto::{self, EncodeError, FrameHeader, ParseError, Protocol, Reassembly};

/// Why no reply was obtained.
#[derive(Debug, Error)]
pub enum WaitError {
    /// No (complete) reply before the timeout.
    #[error("no reply to request {request_id} within {timeout:?}")]
    Timeout {
        /// The request waited for.
        request_id: u16,
        /// The timeout.
        timeout: Duration,
    },
    /// A socket call failed (e.g. ICMP port unreachable surfaces as connection refused).
    #[error("{call} failed")]
    Io {
        /// The call.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A datagram for the request was not a valid frame, or its parts contradict each other.
    #[error("malformed reply datagram")]
    Malformed(#[source] ParseError),
    /// The request could not be encoded.
    #[error("cannot encode request")]
    Encode(#[source] EncodeError),
}

/// A reply payload (after the frame header): in the receive buffer or reassembled.
#[derive(Debug)]
pub enum Payload<'a> {
    /// A one-datagram reply, borrowed from the receive buffer.
    Borrowed(&'a [u8]),
    /// A reply reassembled from several datagrams.
    Owned(Vec<u8>),
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

/// Largest reply accepted (bounds the memory a reply of many messages can take).
pub const MAX_REPLY: usize = 4 << 20;

/// A connected UDP socket to one memcached server with one request in flight at a time.
#[derive(Debug)]
pub struct Conn {
    sock: UdpSocket,
    timeout: Duration,
    next_id: u16,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// The socket's read timeout was shortened for a second wait and must be reset.
    shortened: bool,
    late: u64,
    multi_datagram: u64,
    empty: u64,
}

impl Conn {
    /// Binds an ephemeral port of the server's family and connects it to `server` (only the
    /// server's datagrams are received). `first_id` seeds the request ids.
    pub fn connect(server: SocketAddr, timeout: Duration, first_id: u16) -> io::Result<Conn> {
        let any: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let bind = SocketAddr::new(any, 0);
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        let timeout = timeout.max(Duration::from_micros(1)); // zero means "block forever"
        sock.set_read_timeout(Some(timeout))?;
        Ok(Conn {
            sock,
            timeout,
            next_id: first_id,
            out: Vec::with_capacity(2048),
            buf: vec![0; 65536],
            shortened: false,
            late: 0,
            multi_datagram: 0,
            empty: 0,
        })
    }

    /// The connected socket (for callers that batch their own sends and receives).
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Datagrams received for earlier (timed-out) requests and discarded.
    pub fn late_replies(&self) -> u64 {
        self.late
    }

    /// Bare frame headers (total 0, no payload) skipped.
    pub fn empty_datagrams(&self) -> u64 {
        self.empty
    }

    /// Messages that spanned several datagrams and were reassembled.
    pub fn multi_datagram_replies(&self) -> u64 {
        self.multi_datagram
    }

    /// Encodes a request with `build(request_id, out)` and sends it; returns the request id.
    pub fn send_with(
        &mut self,
        build: impl FnOnce(u16, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<u16, WaitError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.out.clear();
        build(id, &mut self.out).map_err(WaitError::Encode)?;
        self.sock.send(&self.out).map_err(|source| WaitError::Io {
            call: "send",
            source,
        })?;
        Ok(id)
    }

    /// Waits (at most the timeout from now) for the complete reply to `request_id`, for a
    /// request written in `protocol`; datagrams of other requests are counted as late and
    /// dropped.
    ///
    /// A reply is one or more messages, each of one or more datagrams (seq/total in the frame
    /// header). memcached 1.6 sends every `VALUE` block of a multi-key get as its own message
    /// and `END` as another, so an ASCII reply is complete only when it parses to the end
    /// ([`proto::ascii_reply_complete`]); a binary reply is one message.
    pub fn wait(&mut self, request_id: u16, protocol: Protocol) -> Result<Payload<'_>, WaitError> {
        let deadline = Instant::now() + self.timeout;
        if self.shortened {
            self.set_timeout(self.timeout)?;
        }
        let complete = |p: &[u8]| protocol == Protocol::Binary || proto::ascii_reply_complete(p);
        let mut reasm: Option<Reassembly> = None;
        let mut acc: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            if !first {
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.timed_out(request_id));
                }
                self.set_timeout(deadline - now)?;
            }
            first = false;
            let n = match self.sock.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out(request_id))
                }
                Err(source) => {
                    return Err(WaitError::Io {
                        call: "recv",
                        source,
                    })
                }
            };
            if n == proto::FRAME_HEADER_LEN && self.buf[4..6] == [0, 0] {
                // memcached 1.6 sends a bare header with total 0 for a leading miss of a
                // multi-key get: an empty message, nothing to add.
                self.empty += 1;
                continue;
            }
            let (hdr, _) = FrameHeader::parse(&self.buf[..n]).map_err(WaitError::Malformed)?;
            if hdr.request_id != request_id {
                self.late += 1;
                continue;
            }
            let payload = &self.buf[proto::FRAME_HEADER_LEN..n];
            if hdr.total == 1 && reasm.is_none() {
                // The common case: the whole reply in one datagram, parsed in place.
                if acc.is_empty() && complete(payload) {
                    return Ok(Payload::Borrowed(&self.buf[proto::FRAME_HEADER_LEN..n]));
                }
                acc.extend_from_slice(payload);
            } else {
                let r = reasm.get_or_insert_with(|| Reassembly::new(request_id));
                match r.push(hdr, payload).map_err(WaitError::Malformed)? {
                    Some(message) => {
                        self.multi_datagram += 1;
                        reasm = None;
                        acc.extend_from_slice(&message);
                    }
                    None => continue,
                }
            }
            if acc.len() > MAX_REPLY {
                return Err(WaitError::Malformed(ParseError::Trailing {
                    offset: MAX_REPLY,
                    count: acc.len() - MAX_REPLY,
                }));
            }
            if complete(&acc) {
                return Ok(Payload::Owned(acc));
            }
        }
    }

    fn timed_out(&self, request_id: u16) -> WaitError {
        WaitError::Timeout {
            request_id,
            timeout: self.timeout,
        }
    }

    fn set_timeout(&mut self, t: Duration) -> Result<(), WaitError> {
        self.shortened = t != self.timeout;
        self.sock
            .set_read_timeout(Some(t.max(Duration::from_micros(1))))
            .map_err(|source| WaitError::Io {
                call: "setsockopt(SO_RCVTIMEO)",
                source,
            })
    }
}

/// Errors of the blocking [`Client`].
#[derive(Debug, Error)]
pub enum ClientError {
    /// No usable reply.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// The reply did not parse.
    #[error("malformed reply")]
    Parse(#[source] ParseError),
    /// The reply parsed but does not answer the request.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// A small blocking memcached UDP client (ASCII or binary), for tests and scripts.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    protocol: Protocol,
}

impl Client {
    /// Connects to `server`, waiting at most `timeout` per request.
    pub fn connect(
        server: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
    ) -> io::Result<Client> {
        Ok(Client {
            conn: Conn::connect(server, timeout, 1)?,
            protocol,
        })
    }

    /// `get key`: `Some((flags, value))` on a hit, `None` on a miss.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<(u32, Vec<u8>)>, ClientError> {
        let protocol = self.protocol;
        let id = self.conn.send_with(|id, out| match protocol {
            Protocol::Ascii => proto::ascii_get(id, &[key], out),
            Protocol::Binary => proto::binary_get(id, true, key, u32::from(id), out),
        })?;
        let p = self.conn.wait(id, protocol)?;
        match protocol {
            Protocol::Ascii => match proto::parse_ascii_reply(&p).map_err(ClientError::Parse)? {
                proto::AsciiReply::Values(items) => match items.as_slice() {
                    [] => Ok(None),
                    [it] if it.key == key => Ok(Some((it.flags, it.data.to_vec()))),
                    other => Err(ClientError::Unexpected(format!("{} items", other.len()))),
                },
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
            Protocol::Binary => {
                let r = proto::parse_binary_response(&p).map_err(ClientError::Parse)?;
                match (r.status, r.flags()) {
                    (proto::status::NO_ERROR, Some(flags)) => Ok(Some((flags, r.value.to_vec()))),
                    (proto::status::KEY_NOT_FOUND, _) => Ok(None),
                    _ => Err(ClientError::Unexpected(format!("status {:#x}", r.status))),
                }
            }
        }
    }

    /// `set key`: true when stored.
    pub fn set(&mut self, key: &[u8], flags: u32, value: &[u8]) -> Result<bool, ClientError> {
        let protocol = self.protocol;
        let id = self.conn.send_with(|id, out| match protocol {
            Protocol::Ascii => proto::ascii_set(id, key, flags, 0, value, out),
            Protocol::Binary => proto::binary_set(id, key, flags, 0, value, u32::from(id), out),
        })?;
        let p = self.conn.wait(id, protocol)?;
        match protocol {
            Protocol::Ascii => match proto::parse_ascii_reply(&p).map_err(ClientError::Parse)? {
                proto::AsciiReply::Stored => Ok(true),
                proto::AsciiReply::NotStored => Ok(false),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
            Protocol::Binary => {
                let r = proto::parse_binary_response(&p).map_err(ClientError::Parse)?;
                Ok(r.status == proto::status::NO_ERROR)
            }
        }
    }

    /// `delete key`: true when the key existed.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, ClientError> {
        let protocol = self.protocol;
        let id = self.conn.send_with(|id, out| match protocol {
            Protocol::Ascii => proto::ascii_delete(id, key, out),
            Protocol::Binary => proto::binary_delete(id, key, u32::from(id), out),
        })?;
        let p = self.conn.wait(id, protocol)?;
        match protocol {
            Protocol::Ascii => match proto::parse_ascii_reply(&p).map_err(ClientError::Parse)? {
                proto::AsciiReply::Deleted => Ok(true),
                proto::AsciiReply::NotFound => Ok(false),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
            Protocol::Binary => {
                let r = proto::parse_binary_response(&p).map_err(ClientError::Parse)?;
                match r.status {
                    proto::status::NO_ERROR => Ok(true),
                    proto::status::KEY_NOT_FOUND => Ok(false),
                    s => Err(ClientError::Unexpected(format!("status {s:#x}"))),
                }
            }
        }
    }
}

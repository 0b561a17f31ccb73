//! Pipelined GETs: each thread keeps `depth` requests in flight on its socket, sends new ones
//! in one `sendmmsg` and takes replies in batches with `recvmmsg`.
//!
//! The closed loop (one request, one blocking wait) costs the client two system calls, a sleep
//! and a wakeup per request, so on a small machine the client runs out of CPU before a fast
//! server does: the throughput it reports is its own. Pipelining measures the server.
//!
//! Request ids encode the slot: with `depth` a power of two, request id `i` lives in slot
//! `i % depth`, and each reuse of a slot moves its id on by `depth`, so a late reply to a
//! timed-out request never matches the slot's current request. Every reply goes through the
//! same [`Checker`] as the closed loop (the right key, an intact value); stale-read checking
//! needs the closed loop's serialised writes and is not offered here (GETs only).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::check::{note, Asked, Checker};
use super::load::Worker;
use super::proto::{self, FrameHeader, Protocol, FRAME_HEADER_LEN};
use super::value;

/// Largest pipeline depth per thread.
pub const MAX_DEPTH: usize = 1024;
/// Datagrams taken per `recvmmsg`.
const RECV_BATCH: usize = 64;
/// Receive buffer per datagram (replies must fit in one datagram each).
const DATAGRAM: usize = 2048;

/// One request slot.
struct Slot {
    /// The request id of the request in flight (meaningful when `busy`).
    id: u16,
    busy: bool,
    key: u64,
    opaque: u32,
    sent: Instant,
    /// The encoded request.
    out: Vec<u8>,
    /// The key's bytes (for the checker).
    kb: Vec<u8>,
    /// Reply messages so far (memcached may send `VALUE` and `END` as separate messages).
    acc: Vec<u8>,
}

/// Receive buffers for one `recvmmsg`.
struct RecvBatch {
    bufs: Vec<[u8; DATAGRAM]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Box<RecvBatch> {
        let mut b = Box::new(RecvBatch {
            bufs: vec![[0u8; DATAGRAM]; RECV_BATCH],
            iovs: Vec::with_capacity(RECV_BATCH),
            hdrs: Vec::with_capacity(RECV_BATCH),
        });
        for i in 0..RECV_BATCH {
            let base = b.bufs[i].as_mut_ptr().cast();
            b.iovs.push(libc::iovec {
                iov_base: base,
                iov_len: DATAGRAM,
            });
        }
        for i in 0..RECV_BATCH {
            let h = header(&mut b.iovs[i]);
            b.hdrs.push(h);
        }
        b
    }

    /// Takes the datagrams waiting on `fd` (none: 0); an error is returned as is.
    fn recv(&mut self, fd: i32) -> std::io::Result<usize> {
        // SAFETY: `hdrs` point to `iovs`, which point to `bufs`, all owned by this boxed batch
        // and alive for the call; the kernel writes at most DATAGRAM bytes per buffer.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..(self.hdrs[i].msg_len as usize).min(DATAGRAM)]
    }
}

/// A message header for one datagram in `iov` (a connected socket: no address).
fn header(iov: &mut libc::iovec) -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h
}

/// The vectors of one `sendmmsg`, kept between batches (no allocation per batch).
struct SendBatch {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    fn new(depth: usize) -> SendBatch {
        SendBatch {
            iovs: Vec::with_capacity(depth),
            hdrs: Vec::with_capacity(depth),
        }
    }

    /// Sends the requests of `slots[i]` for every `i` in `ready` with one `sendmmsg` (or a
    /// few, when the kernel takes part of the batch); returns how many went out.
    fn send(&mut self, fd: i32, slots: &mut [Slot], ready: &[usize]) -> std::io::Result<usize> {
        self.hdrs.clear();
        self.iovs.clear();
        self.iovs.extend(ready.iter().map(|&i| libc::iovec {
            iov_base: slots[i].out.as_mut_ptr().cast(),
            iov_len: slots[i].out.len(),
        }));
        // After `iovs` is complete: the headers point into it.
        let hdrs = &mut self.hdrs;
        hdrs.extend(self.iovs.iter_mut().map(header));
        let mut sent = 0;
        while sent < hdrs.len() {
            // SAFETY: every header points to one iovec of `iovs`, unchanged since, over a live
            // slot buffer; the socket is connected, so no address is given.
            let n = unsafe {
                libc::sendmmsg(fd, hdrs[sent..].as_mut_ptr(), (hdrs.len() - sent) as u32, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if sent > 0 && e.kind() == std::io::ErrorKind::WouldBlock {
                    break;
                }
                return Err(e);
            }
            sent += n as usize;
        }
        Ok(sent)
    }
}

impl Worker {
    /// The measurement loop with `cfg.pipeline` GETs in flight (see the module docs).
    pub(super) fn measure_pipelined(&mut self, end: Option<Instant>, quota: Option<u64>) {
        let depth = self.cfg.pipeline;
        let fd = self.conn.socket().as_raw_fd();
        let timeout = self.cfg.timeout;
        let mut slots: Vec<Slot> = (0..depth)
            .map(|i| Slot {
                // The first use adds `depth`: start one round back.
                id: (i as u16).wrapping_sub(depth as u16),
                busy: false,
                key: 0,
                opaque: 0,
                sent: Instant::now(),
                out: Vec::with_capacity(128),
                kb: Vec::with_capacity(24),
                acc: Vec::new(),
            })
            .collect();
        let mut batch = RecvBatch::new();
        let mut outgoing = SendBatch::new(depth);
        let mut ready: Vec<usize> = Vec::with_capacity(depth);
        let mut in_flight = 0usize;
        let mut last_sweep = Instant::now();
        let mut stopping = false;
        let mut drain_until = None;
        loop {
            let now = Instant::now();
            if !stopping
                && (end.is_some_and(|e| now >= e) || quota.is_some_and(|q| self.c.requests >= q))
            {
                stopping = true;
                // Replies to requests already sent still count, up to one timeout.
                drain_until = Some(now + timeout);
            }
            if stopping && (in_flight == 0 || drain_until.is_some_and(|d| now >= d)) {
                break;
            }
            // Fill every free slot.
            ready.clear();
            if !stopping {
                for (i, s) in slots.iter_mut().enumerate() {
                    if s.busy || quota.is_some_and(|q| self.c.requests + ready.len() as u64 >= q) {
                        continue;
                    }
                    let key = self.sample_key();
                    s.id = s.id.wrapping_add(depth as u16);
                    s.key = key;
                    s.opaque = self.next_opaque();
                    s.kb.clear();
                    value::write_key(key, &mut s.kb);
                    s.out.clear();
                    let encoded = match self.cfg.protocol {
                        Protocol::Ascii => proto::ascii_get(s.id, &[&s.kb], &mut s.out),
                        Protocol::Binary => proto::binary_get(
                            s.id,
                            self.cfg.binary_getk,
                            &s.kb,
                            s.opaque,
                            &mut s.out,
                        ),
                    };
                    if let Err(e) = encoded {
                        note(&mut self.errors, format!("encode: {e}"));
                        continue;
                    }
                    ready.push(i);
                }
            }
            if !ready.is_empty() {
                let sent_at = Instant::now();
                match outgoing.send(fd, &mut slots, &ready) {
                    Ok(n) => {
                        for &i in &ready[..n] {
                            let s = &mut slots[i];
                            s.busy = true;
                            s.sent = sent_at;
                            s.acc.clear();
                        }
                        in_flight += n;
                        self.c.requests += n as u64;
                        self.c.gets += n as u64;
                        self.c.get_keys += n as u64;
                    }
                    Err(e) => {
                        self.c.io_errors += 1;
                        note(&mut self.errors, format!("sendmmsg: {e}"));
                        // As the closed loop: a refused port must not become a flood.
                        std::thread::sleep(timeout);
                    }
                }
            }
            // Take what has arrived; wait a little when nothing has.
            let got = match batch.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    self.c.io_errors += 1;
                    note(&mut self.errors, format!("recvmmsg: {e}"));
                    std::thread::sleep(timeout);
                    0
                }
            };
            for i in 0..got {
                in_flight -= self.take_reply(&mut slots, depth, batch.datagram(i));
            }
            if got == 0 && in_flight > 0 {
                poll_in(fd, Duration::from_millis(1));
            }
            // Requests older than the timeout are lost.
            let now = Instant::now();
            if now.duration_since(last_sweep) >= Duration::from_millis(1) {
                last_sweep = now;
                for s in slots.iter_mut().filter(|s| s.busy) {
                    if now.duration_since(s.sent) >= timeout {
                        s.busy = false;
                        in_flight -= 1;
                        self.c.timeouts += 1;
                    }
                }
            }
        }
    }

    /// Handles one reply datagram; returns 1 when it completed a request in flight.
    fn take_reply(&mut self, slots: &mut [Slot], depth: usize, d: &[u8]) -> usize {
        if d.len() == FRAME_HEADER_LEN && d[4..6] == [0, 0] {
            // memcached 1.6's bare header for a leading miss: an empty message.
            self.c.empty_datagrams += 1;
            return 0;
        }
        let hdr = match FrameHeader::parse(d) {
            Ok((hdr, _)) => hdr,
            Err(e) => {
                self.c.malformed += 1;
                note(&mut self.errors, format!("datagram: {e}"));
                return 0;
            }
        };
        let s = &mut slots[usize::from(hdr.request_id) % depth];
        if !s.busy || s.id != hdr.request_id {
            self.c.late_replies += 1;
            return 0;
        }
        if hdr.total != 1 {
            // Pipelined replies must fit one datagram each (values up to ~1,400 bytes).
            self.c.multi_datagram += 1;
            self.c.malformed += 1;
            note(
                &mut self.errors,
                format!("request {}: reply spans datagrams", hdr.request_id),
            );
            s.busy = false;
            return 1;
        }
        s.acc.extend_from_slice(&d[FRAME_HEADER_LEN..]);
        if self.cfg.protocol == Protocol::Ascii && !proto::ascii_reply_complete(&s.acc) {
            return 0;
        }
        s.busy = false;
        self.hist.record(s.sent.elapsed().as_nanos() as u64);
        self.c.replies += 1;
        let mut ck = Checker::new(
            &mut self.c,
            &mut self.stale,
            &mut self.errors,
            &self.space,
            &self.cfg,
            false,
        );
        let asked = Asked {
            key: s.key,
            acked: 0,
            answered: false,
        };
        match self.cfg.protocol {
            Protocol::Ascii => ck.ascii_get(&s.acc, &mut [asked], std::slice::from_ref(&s.kb)),
            Protocol::Binary => ck.binary_get(&s.acc, asked, &s.kb, s.opaque),
        }
        1
    }
}

/// Waits until `fd` is readable or `timeout` has passed.
fn poll_in(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis().max(1) as i32) };
}

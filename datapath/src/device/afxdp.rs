//! The AF_XDP backend: one socket per NIC queue, its own UMEM below 4 GiB, and the four rings
//! (fill, completion, RX, TX), through `xdpilone`.
//!
//! Frame life cycle: every frame is in exactly one place — the port's free list, the fill
//! ring (the kernel will write a packet into it), the worker (between RX and a verdict), or
//! the TX ring (until its completion comes back). Dropped frames go straight back to the free
//! list, which refills the fill ring every turn. Transmission from the TAP side takes frames
//! from the same free list, so a flood on RX cannot take every frame: the fill ring is kept at
//! most half of the frames.

use std::io;
use std::num::NonZeroU32;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::{FreeFrames, Port};
use crate::area::{Desc, FrameArea};
use userxdp_runtime::context::FRAME_SIZE;

/// Zero-copy or copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    /// The kernel copies frames into the UMEM (any driver; veth).
    Copy,
    /// The driver DMAs into the UMEM (drivers that support it).
    ZeroCopy,
    /// Zero-copy where the driver offers it, copy otherwise.
    Auto,
}

/// Preferred busy polling: the worker drives its queue's NAPI from its own core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL` in microseconds.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll call.
    pub budget: u32,
}

/// How to open a socket.
#[derive(Debug, Clone, Copy)]
pub struct XskOptions {
    /// Frames in this queue's UMEM.
    pub frames: u32,
    /// Copy or zero-copy.
    pub mode: XskMode,
    /// Ask the kernel to say when it needs a wakeup (`XDP_USE_NEED_WAKEUP`).
    pub need_wakeup: bool,
    /// Preferred busy polling, if wanted.
    pub busy_poll: Option<BusyPoll>,
}

/// Why a socket could not be opened; each names the step, the interface and the queue.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// Packet memory below 4 GiB could not be had.
    #[error("queue {queue}: packet memory: {reason}")]
    Memory {
        /// Queue.
        queue: u32,
        /// Why.
        reason: String,
    },
    /// A socket call failed.
    #[error("{iface} queue {queue}: {step}: {reason}{hint}")]
    Socket {
        /// Interface name.
        iface: String,
        /// Queue.
        queue: u32,
        /// What was being done.
        step: &'static str,
        /// The OS error.
        reason: String,
        /// Its errno.
        errno: i32,
        /// What to do about it.
        hint: &'static str,
    },
}

/// Kernel-side counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct XskKernelStats {
    /// Frames the kernel dropped for this socket (e.g. no frame in the fill ring).
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when the kernel needed a frame.
    pub rx_fill_ring_empty: u64,
    /// Invalid TX descriptors the kernel rejected.
    pub tx_invalid_descs: u64,
}

/// One AF_XDP socket on one queue.
pub struct XskPort {
    // Rings and sockets are declared before the area so that they are dropped (unmapped,
    // closed) before the memory they describe is unmapped.
    rx: RingRx,
    tx: RingTx,
    fq: DeviceQueue,
    user: User,
    _socket: Socket,
    _umem: Umem,
    area: FrameArea,
    free: FreeFrames,
    ring_size: u32,
    in_fill: u32,
    in_tx: u32,
    ifindex: u32,
    queue: u32,
    zero_copy: bool,
    busy_poll: bool,
    need_wakeup: bool,
}

// SAFETY: the xdpilone handles hold raw pointers into ring mappings and into `area`, both
// owned by this value and moved with it; nothing is tied to the creating thread. The port is
// used by one thread at a time (`&mut self`).
unsafe impl Send for XskPort {}

fn os_error(
    iface: &str,
    queue: u32,
    step: &'static str,
    errno: i32,
    hint: &'static str,
) -> XskError {
    XskError::Socket {
        iface: iface.to_string(),
        queue,
        step,
        reason: io::Error::from_raw_os_error(errno).to_string(),
        errno,
        hint,
    }
}

fn bind_hint(errno: i32) -> &'static str {
    match errno {
        libc::EBUSY => " (another AF_XDP socket is bound to this queue: stop the program using it)",
        libc::EINVAL => " (the interface has no such queue; see `ethtool -l`)",
        libc::EOPNOTSUPP => " (the driver does not support this mode; try --mode copy)",
        libc::EPERM => " (needs root or CAP_NET_RAW + CAP_BPF)",
        _ => "",
    }
}

impl XskPort {
    /// Opens a socket on queue `queue` of interface `ifindex` (named `iface` in errors) and
    /// puts half of the frames into the fill ring.
    pub fn open(
        iface: &str,
        ifindex: u32,
        queue: u32,
        opts: XskOptions,
    ) -> Result<XskPort, XskError> {
        // A socket closed a moment ago (a restart, the previous benchmark leg) releases its
        // queue asynchronously: EBUSY for a short while. Retry for up to a second before
        // reporting the queue as taken.
        let start = std::time::Instant::now();
        loop {
            match Self::open_once(iface, ifindex, queue, opts) {
                Err(XskError::Socket {
                    step: "bind",
                    errno: libc::EBUSY,
                    ..
                }) if start.elapsed() < std::time::Duration::from_secs(1) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(
        iface: &str,
        ifindex: u32,
        queue: u32,
        opts: XskOptions,
    ) -> Result<XskPort, XskError> {
        let frames = opts.frames.max(64).next_power_of_two();
        let area = FrameArea::new(frames).map_err(|e| XskError::Memory {
            queue,
            reason: e.to_string(),
        })?;
        let first = match opts.mode {
            XskMode::Auto | XskMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
            XskMode::Copy => SocketConfig::XDP_BIND_COPY,
        };
        match Self::build(iface, ifindex, queue, &opts, area, first) {
            Ok(p) => Ok(p),
            Err((XskError::Socket { step: "bind", .. }, Some(area)))
                if opts.mode == XskMode::Auto =>
            {
                Self::build(
                    iface,
                    ifindex,
                    queue,
                    &opts,
                    area,
                    SocketConfig::XDP_BIND_COPY,
                )
                .map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Sets up UMEM, socket and rings over `area` and binds with `mode_flag`. On a bind
    /// failure the area is handed back so that another mode can be tried.
    fn build(
        iface: &str,
        ifindex: u32,
        queue: u32,
        opts: &XskOptions,
        area: FrameArea,
        mode_flag: u16,
    ) -> Result<XskPort, (XskError, Option<FrameArea>)> {
        let frames = area.frames();
        let ring_size = (frames / 2).max(32);
        let err = |step, e: xdpilone::Errno| {
            (
                os_error(iface, queue, step, e.get_raw(), bind_hint(e.get_raw())),
                None,
            )
        };
        let config = UmemConfig {
            fill_size: ring_size,
            complete_size: ring_size,
            frame_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned (mmap), FRAME_SIZE * frames long, and outlives the
        // Umem: both are moved into the port, where the area is declared (dropped) last.
        let umem = unsafe { Umem::new(config, area.as_raw()) }.map_err(|e| err("umem", e))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| err("interface", e))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(|e| err("socket", e))?;
        let fq = umem
            .fq_cq(&socket)
            .map_err(|e| err("fill/completion rings", e))?;
        let mut bind_flags = mode_flag;
        if opts.need_wakeup {
            bind_flags |= SocketConfig::XDP_BIND_NEED_WAKEUP;
        }
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(ring_size),
                    tx_size: NonZeroU32::new(ring_size),
                    bind_flags,
                },
            )
            .map_err(|e| err("rx/tx rings", e))?;
        let rx = user.map_rx().map_err(|e| err("map rx ring", e))?;
        let tx = user.map_tx().map_err(|e| err("map tx ring", e))?;
        if let Some(bp) = opts.busy_poll {
            set_busy_poll(user.as_raw_fd(), bp).map_err(|e| {
                (
                    os_error(iface, queue, "busy-poll socket options", e, ""),
                    None,
                )
            })?;
        }
        if let Err(e) = umem.bind(&user) {
            let errno = e.get_raw();
            drop((rx, tx, user, fq, socket, umem));
            return Err((
                os_error(iface, queue, "bind", errno, bind_hint(errno)),
                Some(area),
            ));
        }
        let zero_copy = xdp_options_zero_copy(user.as_raw_fd());
        let mut port = XskPort {
            free: FreeFrames::all(&area),
            rx,
            tx,
            fq,
            user,
            _socket: socket,
            _umem: umem,
            area,
            ring_size,
            in_fill: 0,
            in_tx: 0,
            ifindex,
            queue,
            zero_copy,
            busy_poll: opts.busy_poll.is_some(),
            need_wakeup: opts.need_wakeup,
        };
        port.refill();
        Ok(port)
    }

    /// The socket's file descriptor, for the XSKMAP slot of this queue.
    pub fn fd(&self) -> i32 {
        self.user.as_raw_fd()
    }

    /// Whether the kernel runs this socket in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The kernel's counters for this socket.
    pub fn kernel_stats(&self) -> Option<XskKernelStats> {
        let s = self.user.statistics_v2().ok()?;
        Some(XskKernelStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_invalid_descs: s.tx_invalid_descs,
        })
    }

    /// Tops the fill ring up to its size, from the free list, but leaves frames in the free
    /// list for the TAP side (a quarter of the area).
    fn refill(&mut self) {
        let reserve = (self.area.frames() / 4) as usize;
        let want = self.ring_size.saturating_sub(self.in_fill);
        let spare = self.free.len().saturating_sub(reserve) as u32;
        let n = want.min(spare);
        if n == 0 {
            return;
        }
        // As in `transmit`, one reservation may be smaller than the room there is.
        let mut left = n;
        while left > 0 {
            let mut writer = self.fq.fill(left);
            let mut taken = Vec::with_capacity(writer.capacity() as usize);
            for _ in 0..writer.capacity() {
                match self.free.pop() {
                    Some(f) => taken.push(f),
                    None => break,
                }
            }
            let inserted = writer.insert(taken.iter().copied()) as usize;
            writer.commit();
            drop(writer);
            for f in &taken[inserted..] {
                self.free.push(*f);
            }
            self.in_fill += inserted as u32;
            if inserted == 0 {
                break;
            }
            left -= inserted as u32;
        }
    }

    /// Makes the kernel send what is in the TX ring. In copy mode a `sendto` transmits at
    /// most 32 frames (the kernel's TX batch), so it is repeated while frames remain, a
    /// bounded number of times; zero-copy drivers only need a kick when they ask for one.
    fn kick_tx(&mut self) {
        if self.zero_copy {
            if !self.need_wakeup || self.tx.needs_wakeup() {
                self.tx.wake();
            }
            return;
        }
        for _ in 0..64 {
            let before = self.tx.pending();
            if before == 0 {
                break;
            }
            self.tx.wake();
            if self.tx.pending() >= before {
                // No progress (socket buffer full): let completions drain first.
                break;
            }
        }
    }

    fn reap_completions(&mut self) {
        if self.in_tx == 0 {
            return;
        }
        let mut reader = self.fq.complete(self.in_tx);
        while let Some(addr) = reader.read() {
            self.free.push(addr);
            self.in_tx -= 1;
        }
        reader.release();
    }
}

impl Port for XskPort {
    fn area(&self) -> &FrameArea {
        &self.area
    }

    fn area_mut(&mut self) -> &mut FrameArea {
        &mut self.area
    }

    fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn queue(&self) -> u32 {
        self.queue
    }

    fn receive(&mut self, out: &mut Vec<Desc>, max: usize) -> io::Result<()> {
        let mut reader = self.rx.receive(max as u32);
        while let Some(d) = reader.read() {
            out.push(Desc {
                addr: d.addr,
                len: d.len,
            });
        }
        reader.release();
        drop(reader);
        self.in_fill = self.in_fill.saturating_sub(out.len() as u32);
        if out.is_empty() && self.busy_poll {
            // Drives the queue's NAPI from this core (preferred busy polling).
            // SAFETY: a zero-length, non-blocking recvfrom on our own socket.
            unsafe {
                libc::recvfrom(
                    self.fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        Ok(())
    }

    fn transmit(&mut self, descs: &[Desc]) -> io::Result<usize> {
        let mut sent = 0;
        // xdpilone serves a reservation from its cached view of the kernel's consumer as long
        // as that shows at least one free slot, so one call may take fewer descriptors than
        // there is room for; the next call refreshes the view. Stop when a call takes none.
        while sent < descs.len() {
            let rest = &descs[sent..];
            let mut writer = self.tx.transmit(rest.len() as u32);
            let n = writer.insert(rest.iter().map(|d| XdpDesc {
                addr: d.addr,
                len: d.len,
                options: 0,
            })) as usize;
            writer.commit();
            drop(writer);
            if n == 0 {
                break;
            }
            sent += n;
        }
        self.in_tx += sent as u32;
        if sent > 0 {
            self.kick_tx();
        }
        Ok(sent)
    }

    fn release(&mut self, addr: u64) {
        self.free.push(addr);
    }

    fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }

    fn wait_fd(&self) -> Option<i32> {
        Some(self.fd())
    }

    fn service(&mut self) -> io::Result<()> {
        self.reap_completions();
        self.refill();
        if self.need_wakeup && self.fq.needs_wakeup() && !self.busy_poll {
            self.fq.wake();
        }
        if self.tx.pending() > 0 {
            self.kick_tx();
        }
        Ok(())
    }

    fn can_sleep(&self) -> bool {
        // Frames still in the TX ring would wait for the sleep to end.
        self.tx.pending() == 0
    }
}

fn set_busy_poll(fd: i32, bp: BusyPoll) -> Result<(), i32> {
    const SO_PREFER_BUSY_POLL: i32 = 69;
    const SO_BUSY_POLL_BUDGET: i32 = 70;
    for (opt, value) in [
        (SO_PREFER_BUSY_POLL, 1),
        (libc::SO_BUSY_POLL, bp.usecs as i32),
        (SO_BUSY_POLL_BUDGET, bp.budget as i32),
    ] {
        // SAFETY: setsockopt with a valid int option value on our own socket.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
    }
    Ok(())
}

/// Whether the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
fn xdp_options_zero_copy(fd: i32) -> bool {
    const SOL_XDP: i32 = 283;
    const XDP_OPTIONS: i32 = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `flags`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    r == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

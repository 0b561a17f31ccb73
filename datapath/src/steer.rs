//! The kernel half of the datapath: `redirect.bpf.c` attached to the NIC, steering every
//! frame of queue q to the AF_XDP socket of queue q (XSKMAP indexed by `rx_queue_index`).
//!
//! It is attached through a `bpf_link`, so the kernel detaches it when the last descriptor of
//! the link closes: a `run-datapath` killed with SIGKILL leaves nothing on the interface.

use std::io;

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};

/// Name of the steering program in `redirect.o`.
const PROGRAM: &str = "xdp_redirect_xsk";
/// Name of its XSKMAP.
const XSKS_MAP: &str = "xsks_map";

/// Why steering could not be set up; each error names the interface.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// The BPF object could not be loaded.
    #[error("loading redirect.o for {iface}: {reason}{hint}")]
    Load {
        /// Interface.
        iface: String,
        /// libbpf's message.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Attaching failed.
    #[error("attaching XDP to {iface}: {reason}{hint}")]
    Attach {
        /// Interface.
        iface: String,
        /// libbpf's message.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Registering a socket failed.
    #[error("registering the AF_XDP socket of {iface} queue {queue}: {reason}")]
    Register {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// libbpf's message.
        reason: String,
    },
}

/// The steering program, attached; detached on drop.
pub struct Steering {
    // The link goes first: dropping it detaches the program before the object is unloaded.
    link: Option<Link>,
    object: Object,
    iface: String,
    ifindex: u32,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("iface", &self.iface)
            .finish()
    }
}

fn is_permission(e: &libbpf_rs::Error) -> bool {
    matches!(e.kind(), libbpf_rs::ErrorKind::PermissionDenied)
}

impl Steering {
    /// Loads `redirect.o` for `iface` (index `ifindex`), refusing when the interface already
    /// has an XDP program. Nothing is attached until [`Steering::attach`].
    pub fn load(iface: &str, ifindex: u32) -> Result<Steering, SteerError> {
        if let Some(id) = attached_program(ifindex) {
            return Err(SteerError::Attach {
                iface: iface.to_string(),
                reason: format!("XDP program id {id} is already attached"),
                hint: " (another AF_XDP or XDP user owns this interface: stop it, or \
                       `ip link set dev IF xdp off` if it was left behind)",
            });
        }
        let object = ObjectBuilder::default()
            .open_memory(userxdp_programs::REDIRECT_OBJECT)
            .and_then(|o| o.load())
            .map_err(|e| SteerError::Load {
                iface: iface.to_string(),
                hint: if is_permission(&e) {
                    " (needs root, or CAP_BPF + CAP_NET_ADMIN)"
                } else {
                    ""
                },
                reason: e.to_string(),
            })?;
        Ok(Steering {
            link: None,
            object,
            iface: iface.to_string(),
            ifindex,
        })
    }

    /// Attaches the program in native mode, once every socket is registered, so that no
    /// frame meets an empty slot (it would go to the kernel stack instead).
    pub fn attach(&mut self) -> Result<(), SteerError> {
        let iface = self.iface.clone();
        let prog = self
            .object
            .progs_mut()
            .find(|p| p.name().to_str() == Some(PROGRAM))
            .ok_or_else(|| SteerError::Load {
                iface: iface.clone(),
                reason: format!("redirect.o has no program {PROGRAM}"),
                hint: "",
            })?;
        let link = prog
            .attach_xdp(self.ifindex as i32)
            .map_err(|e| SteerError::Attach {
                iface: iface.clone(),
                hint: match e.kind() {
                    libbpf_rs::ErrorKind::AlreadyExists => {
                        " (another XDP program is attached: stop the process that attached it)"
                    }
                    libbpf_rs::ErrorKind::PermissionDenied => " (needs root or CAP_NET_ADMIN)",
                    _ => "",
                },
                reason: e.to_string(),
            })?;
        self.link = Some(link);
        Ok(())
    }

    /// Points queue `queue`'s slot at AF_XDP socket `fd`.
    pub fn register(&self, queue: u32, fd: i32) -> Result<(), SteerError> {
        let err = |reason: String| SteerError::Register {
            iface: self.iface.clone(),
            queue,
            reason,
        };
        let map = self
            .object
            .maps()
            .find(|m| m.name().to_str() == Some(XSKS_MAP))
            .ok_or_else(|| err(format!("redirect.o has no map {XSKS_MAP}")))?;
        map.update(
            &queue.to_ne_bytes(),
            &(fd as u32).to_ne_bytes(),
            MapFlags::ANY,
        )
        .map_err(|e| err(e.to_string()))
    }

    /// Detaches now (also done on drop).
    pub fn detach(&mut self) -> io::Result<()> {
        if let Some(link) = self.link.take() {
            link.detach().map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// The id of the XDP program attached to `ifindex` in any mode, if there is one.
pub fn attached_program(ifindex: u32) -> Option<u32> {
    let mut id: u32 = 0;
    // SAFETY: bpf_xdp_query_id writes one u32 through the pointer.
    let r =
        unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut id as *mut u32) };
    (r == 0 && id != 0).then_some(id)
}

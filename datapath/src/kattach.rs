//! The kernel leg of a side-by-side comparison: the same object loaded into the kernel (full
//! size maps, libbpf), its XDP program attached to an interface through a `bpf_link`, and its
//! TC program attached on egress through a `tcx` link. Links die with the process, so
//! nothing is left behind even after SIGKILL. Maps can be pinned for control tools
//! (`userxdp lb --pinned DIR`) and are unpinned on drop.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{AsRawLibbpf, Link, MapCore, Object, ObjectBuilder};

/// A `tcx` link (libbpf-rs 0.27 has no wrapper for it); destroyed on drop.
struct TcxLink(NonNull<libbpf_sys::bpf_link>);

impl Drop for TcxLink {
    fn drop(&mut self) {
        // SAFETY: the pointer came from bpf_program__attach_tcx and is destroyed once.
        unsafe { libbpf_sys::bpf_link__destroy(self.0.as_ptr()) };
    }
}

/// An object attached in the kernel.
pub struct KernelAttachment {
    // Links first: dropping them detaches before the object is unloaded.
    xdp: Option<Link>,
    tc: Option<TcxLink>,
    object: Object,
    pinned: Vec<PathBuf>,
    /// The pin directory, when this attachment created it (removed on drop if empty).
    pin_dir: Option<PathBuf>,
    iface: String,
}

impl std::fmt::Debug for KernelAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelAttachment")
            .field("iface", &self.iface)
            .field("pinned", &self.pinned)
            .finish()
    }
}

impl KernelAttachment {
    /// Loads `object` (its programs and full-size maps) and attaches program `xdp` to
    /// `iface` and, if given, TC program `egress` on its egress; pins every map under
    /// `pin_dir` when given.
    pub fn attach(
        object_path: &Path,
        iface: &str,
        xdp: &str,
        egress: Option<&str>,
        pin_dir: Option<&Path>,
    ) -> Result<KernelAttachment> {
        let ifindex = crate::netdev::ifindex(iface)?;
        if let Some(id) = crate::steer::attached_program(ifindex) {
            bail!("{iface}: XDP program id {id} is already attached");
        }
        let mut open = ObjectBuilder::default()
            .open_file(object_path)
            .with_context(|| format!("{}", object_path.display()))?;
        // Pinning by name (LIBBPF_PIN_BY_NAME) would share maps with earlier runs: off.
        for m in open.maps_mut() {
            // SAFETY: a null pin path clears it (libbpf frees the old one); `m` is a live map
            // of the open object.
            unsafe {
                libbpf_sys::bpf_map__set_pin_path(m.as_libbpf_object().as_ptr(), std::ptr::null())
            };
        }
        if egress.is_some() {
            // tcx wants programs loaded for the hook they attach to, and a tail call only
            // reaches programs of the same attach type: every TC program of the object gets
            // the egress hook.
            for p in open.progs_mut() {
                if p.prog_type() == libbpf_rs::ProgramType::SchedCls {
                    // SAFETY: `p` is a live program of the open (not yet loaded) object.
                    unsafe {
                        libbpf_sys::bpf_program__set_expected_attach_type(
                            p.as_libbpf_object().as_ptr(),
                            libbpf_sys::BPF_TCX_EGRESS,
                        )
                    };
                }
            }
        }
        let object = open
            .load()
            .with_context(|| format!("loading {} into the kernel", object_path.display()))?;
        let mut me = KernelAttachment {
            xdp: None,
            tc: None,
            object,
            pinned: Vec::new(),
            pin_dir: None,
            iface: iface.to_string(),
        };
        let find = |name: &str| {
            me.object
                .progs()
                .find(|p| p.name().to_str() == Some(name))
                .map(|p| p.as_libbpf_object())
                .ok_or_else(|| {
                    anyhow!(
                        "{}: no program {name}; it has: {}",
                        object_path.display(),
                        me.object
                            .progs()
                            .map(|p| p.name().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
        };
        find(xdp)?;
        let tc_prog = egress.map(find).transpose()?;
        let xdp_link = me
            .object
            .progs_mut()
            .find(|p| p.name().to_str() == Some(xdp))
            .map(|p| p.attach_xdp(ifindex as i32))
            .transpose()
            .with_context(|| format!("attaching {xdp} to {iface}"))?;
        me.xdp = xdp_link;
        if let Some(prog) = tc_prog {
            // SAFETY: bpf_tcx_opts is plain data for which all zeroes is "no options".
            let mut opts: libbpf_sys::bpf_tcx_opts = unsafe { std::mem::zeroed() };
            opts.sz = std::mem::size_of::<libbpf_sys::bpf_tcx_opts>() as _;
            // SAFETY: prog points to a loaded program of `me.object`, which outlives the
            // link (declared after it); opts is a valid, sized options struct.
            let link = unsafe {
                libbpf_sys::bpf_program__attach_tcx(prog.as_ptr(), ifindex as i32, &opts)
            };
            let link = NonNull::new(link).ok_or_else(|| {
                anyhow!(
                    "attaching {} on {iface} egress (tcx): {}",
                    egress.unwrap_or_default(),
                    std::io::Error::last_os_error()
                )
            })?;
            // libbpf 1.x returns NULL and sets errno on failure.
            me.tc = Some(TcxLink(link));
        }
        if let Some(dir) = pin_dir {
            if !dir.exists() {
                std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
                me.pin_dir = Some(dir.to_path_buf());
            }
            // Recorded one by one: Drop unpins what was pinned before a failure.
            let mut pinned = Vec::new();
            let mut failure = None;
            for mut m in me.object.maps_mut() {
                let name = m.name().to_string_lossy().into_owned();
                let path = dir.join(pin_name(&name));
                match m.pin(&path) {
                    Ok(()) => pinned.push(path),
                    Err(e) => {
                        failure = Some(
                            anyhow!(e).context(format!("pinning map {name} at {}", path.display())),
                        );
                        break;
                    }
                }
            }
            me.pinned = pinned;
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(me)
    }

    /// The value of `key` in map `name` (per-CPU maps: all CPUs' values concatenated).
    pub fn lookup(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let map = self
            .object
            .maps()
            .find(|m| m.name().to_str() == Some(name))
            .ok_or_else(|| anyhow!("no map {name}"))?;
        if map.map_type().is_percpu() {
            Ok(map
                .lookup_percpu(key, libbpf_rs::MapFlags::ANY)?
                .map(|v| v.concat()))
        } else {
            Ok(map.lookup(key, libbpf_rs::MapFlags::ANY)?)
        }
    }
}

/// The bpffs file name for map `name`: bpffs refuses names with a dot (reserved "for future
/// extensions", `bpf_lookup` in kernel/bpf/inode.c answers EPERM), which libbpf gives the
/// global-data maps (`cache.rodata`, `cache.bss`): those are pinned as `cache_rodata`, ...
pub fn pin_name(name: &str) -> String {
    name.replace('.', "_")
}

impl Drop for KernelAttachment {
    fn drop(&mut self) {
        for p in &self.pinned {
            let _ = std::fs::remove_file(p);
        }
        // Only a directory this attachment created, and only when empty.
        if let Some(dir) = &self.pin_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

//! Facts about network interfaces and the few changes the datapath makes to them (through
//! `ioctl` on a datagram socket, as `ip link` does): index, MAC, MTU, RX queue count, up.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct ifreq` with the union as raw bytes.
#[repr(C)]
pub(crate) struct IfReq {
    pub(crate) name: [u8; libc::IFNAMSIZ],
    pub(crate) data: [u8; 24],
}

impl IfReq {
    pub(crate) fn new(name: &str) -> io::Result<IfReq> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a valid interface name (1 to 15 characters)"),
            ));
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(name: &str, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    let sock = control_socket()?;
    // SAFETY: every request used here reads/writes a `struct ifreq`, which IfReq matches.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut IfReq) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{name}: {e}")));
    }
    Ok(())
}

/// The index of interface `name`, or an error that says it does not exist.
pub fn ifindex(name: &str) -> io::Result<u32> {
    IfReq::new(name)?;
    let c = CString::new(name).map_err(|_| io::Error::other("interface name with NUL"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?} in this network namespace (see `ip link`)"),
        ));
    }
    Ok(index)
}

/// The MAC address of `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let mut req = IfReq::new(name)?;
    ioctl(name, libc::SIOCGIFHWADDR, &mut req)?;
    // data holds a sockaddr: family (2 bytes) then the address.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[2..8]);
    Ok(mac)
}

/// Sets the MAC address of `name`.
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    req.data[..2].copy_from_slice(&(libc::ARPHRD_ETHER).to_ne_bytes());
    req.data[2..8].copy_from_slice(&mac);
    ioctl(name, libc::SIOCSIFHWADDR, &mut req)
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = IfReq::new(name)?;
    ioctl(name, libc::SIOCGIFMTU, &mut req)?;
    Ok(i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]) as u32)
}

/// Sets the MTU of `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    req.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
    ioctl(name, libc::SIOCSIFMTU, &mut req)
}

/// Brings `name` up (`ip link set NAME up`).
pub fn set_up(name: &str) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    ioctl(name, libc::SIOCGIFFLAGS, &mut req)?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(name, libc::SIOCSIFFLAGS, &mut req)
}

/// Number of RX queues of `name` (`/sys/class/net/NAME/queues/rx-*`).
pub fn rx_queues(name: &str) -> io::Result<u32> {
    let dir = format!("/sys/class/net/{name}/queues");
    let n = std::fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{dir}: {e}")))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts_and_clear_errors() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        assert!(mtu("lo").unwrap() >= 1500);
        let e = ifindex("nosuchif0").unwrap_err().to_string();
        assert!(e.contains("nosuchif0"), "{e}");
        assert!(ifindex("a-name-far-too-long").is_err());
        assert!(ifindex("").is_err());
    }
}

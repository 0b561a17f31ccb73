//! Program section names → program type, attach point and XDP flags, as libbpf 1.x matches them
//! (`section_defs[]` in `libbpf.c`).
//!
//! libbpf's matching rules: a definition ending in `+` matches the exact name or `name/anything`;
//! one ending in `/` matches any name with that prefix; any other matches only exactly. A section
//! name no rule matches gets `ProgramType::Other(0)` (libbpf refuses to load it without an explicit
//! type); [`ParseOptions::prog_type_override`](super::ParseOptions) sets a type for such objects.

use super::spec::{AttachPoint, ProgramType};

/// What a section name says about the programs in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionKind {
    /// The program type (`Other(0)` when unknown).
    pub prog_type: ProgramType,
    /// The attach point hint.
    pub attach: AttachPoint,
    /// `xdp.frags*`: multi-buffer XDP.
    pub xdp_frags: bool,
}

/// How a definition matches a section name.
#[derive(Clone, Copy)]
enum Match {
    /// Exact name only.
    Exact,
    /// Exact name or `name/...`.
    Plus,
    /// Any name starting with the definition (which ends in `/`).
    Prefix,
}

use AttachPoint as A;
use Match::{Exact, Plus, Prefix};
use ProgramType as T;

/// `(name, matching, type, attach, frags)`, in libbpf's order (first match wins).
const DEFS: &[(&str, Match, ProgramType, AttachPoint, bool)] = &[
    ("socket", Plus, T::SocketFilter, A::Any, false),
    ("sk_reuseport/migrate", Exact, T::Other(21), A::Any, false),
    ("sk_reuseport", Exact, T::Other(21), A::Any, false),
    ("kprobe", Plus, T::Other(2), A::Any, false),
    ("uprobe", Plus, T::Other(2), A::Any, false),
    ("kretprobe", Plus, T::Other(2), A::Any, false),
    ("uretprobe", Plus, T::Other(2), A::Any, false),
    ("kprobe.multi", Plus, T::Other(2), A::Any, false),
    ("kretprobe.multi", Plus, T::Other(2), A::Any, false),
    ("tc/ingress", Exact, T::SchedCls, A::TcIngress, false),
    ("tc/egress", Exact, T::SchedCls, A::TcEgress, false),
    ("tcx/ingress", Exact, T::SchedCls, A::TcIngress, false),
    ("tcx/egress", Exact, T::SchedCls, A::TcEgress, false),
    // The shared spec documents plain `tc` and `classifier` as ingress programs.
    ("tc", Plus, T::SchedCls, A::TcIngress, false),
    ("classifier", Plus, T::SchedCls, A::TcIngress, false),
    ("action", Plus, T::SchedAct, A::Any, false),
    ("tracepoint", Plus, T::Other(5), A::Any, false),
    ("tp", Plus, T::Other(5), A::Any, false),
    ("raw_tracepoint", Plus, T::Other(17), A::Any, false),
    ("raw_tp", Plus, T::Other(17), A::Any, false),
    ("raw_tracepoint.w", Plus, T::Other(24), A::Any, false),
    ("raw_tp.w", Plus, T::Other(24), A::Any, false),
    ("tp_btf", Plus, T::Other(26), A::Any, false),
    ("fentry", Plus, T::Other(26), A::Any, false),
    ("fmod_ret", Plus, T::Other(26), A::Any, false),
    ("fexit", Plus, T::Other(26), A::Any, false),
    ("fentry.s", Plus, T::Other(26), A::Any, false),
    ("fmod_ret.s", Plus, T::Other(26), A::Any, false),
    ("fexit.s", Plus, T::Other(26), A::Any, false),
    ("freplace", Plus, T::Other(28), A::Any, false),
    ("lsm", Plus, T::Other(29), A::Any, false),
    ("lsm.s", Plus, T::Other(29), A::Any, false),
    ("lsm_cgroup", Plus, T::Other(29), A::Any, false),
    ("iter", Plus, T::Other(26), A::Any, false),
    ("iter.s", Plus, T::Other(26), A::Any, false),
    ("syscall", Exact, T::Other(31), A::Any, false),
    ("xdp.frags/devmap", Exact, T::Xdp, A::XdpDevmap, true),
    ("xdp/devmap", Exact, T::Xdp, A::XdpDevmap, false),
    ("xdp.frags/cpumap", Exact, T::Xdp, A::XdpCpumap, true),
    ("xdp/cpumap", Exact, T::Xdp, A::XdpCpumap, false),
    ("xdp.frags", Exact, T::Xdp, A::Any, true),
    ("xdp", Plus, T::Xdp, A::Any, false),
    ("perf_event", Exact, T::Other(7), A::Any, false),
    ("lwt_in", Exact, T::Other(10), A::Any, false),
    ("lwt_out", Exact, T::Other(11), A::Any, false),
    ("lwt_xmit", Exact, T::Other(12), A::Any, false),
    ("lwt_seg6local", Exact, T::Other(19), A::Any, false),
    ("sockops", Exact, T::Other(13), A::Any, false),
    ("sk_skb/stream_parser", Exact, T::Other(14), A::Any, false),
    ("sk_skb/stream_verdict", Exact, T::Other(14), A::Any, false),
    ("sk_skb/verdict", Exact, T::Other(14), A::Any, false),
    ("sk_skb", Plus, T::Other(14), A::Any, false),
    ("sk_msg", Exact, T::Other(16), A::Any, false),
    ("lirc_mode2", Exact, T::Other(20), A::Any, false),
    ("flow_dissector", Exact, T::Other(22), A::Any, false),
    ("cgroup_skb/ingress", Exact, T::Other(8), A::Any, false),
    ("cgroup_skb/egress", Exact, T::Other(8), A::Any, false),
    ("cgroup/skb", Exact, T::Other(8), A::Any, false),
    ("cgroup/dev", Exact, T::Other(15), A::Any, false),
    ("cgroup/sysctl", Exact, T::Other(23), A::Any, false),
    ("cgroup/getsockopt", Exact, T::Other(25), A::Any, false),
    ("cgroup/setsockopt", Exact, T::Other(25), A::Any, false),
    ("sk_lookup", Exact, T::Other(30), A::Any, false),
    ("netfilter", Exact, T::Other(32), A::Any, false),
    ("struct_ops", Plus, T::Other(27), A::Any, false),
    ("struct_ops.s", Plus, T::Other(27), A::Any, false),
    ("netkit/primary", Exact, T::SchedCls, A::Any, false),
    ("netkit/peer", Exact, T::SchedCls, A::Any, false),
    // cgroup/sock_create, sock_release, post_bind4/6: CGROUP_SOCK (9); the rest of `cgroup/` are
    // CGROUP_SOCK_ADDR (18). Listed after the exact cgroup entries above.
    ("cgroup/sock", Prefix, T::Other(9), A::Any, false),
    ("cgroup/post_bind", Prefix, T::Other(9), A::Any, false),
    ("cgroup/", Prefix, T::Other(18), A::Any, false),
];

/// Classifies a program section name.
pub fn classify(name: &str) -> SectionKind {
    for &(def, how, prog_type, attach, xdp_frags) in DEFS {
        let hit = match how {
            Exact => name == def,
            Plus => {
                name == def
                    || name
                        .strip_prefix(def)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            Prefix => name.starts_with(def),
        };
        if hit {
            return SectionKind {
                prog_type,
                attach,
                xdp_frags,
            };
        }
    }
    SectionKind {
        prog_type: ProgramType::Other(0),
        attach: AttachPoint::Any,
        xdp_frags: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_names() {
        let k = |n| {
            let c = classify(n);
            (c.prog_type, c.attach, c.xdp_frags)
        };
        assert_eq!(k("xdp"), (T::Xdp, A::Any, false));
        assert_eq!(k("xdp/foo"), (T::Xdp, A::Any, false));
        assert_eq!(k("xdp.frags"), (T::Xdp, A::Any, true));
        assert_eq!(k("xdp/devmap"), (T::Xdp, A::XdpDevmap, false));
        assert_eq!(k("xdp.frags/cpumap"), (T::Xdp, A::XdpCpumap, true));
        assert_eq!(k("xdp_foo"), (T::Other(0), A::Any, false));
        assert_eq!(k("tc"), (T::SchedCls, A::TcIngress, false));
        assert_eq!(k("tc/egress"), (T::SchedCls, A::TcEgress, false));
        assert_eq!(k("tcx/egress"), (T::SchedCls, A::TcEgress, false));
        assert_eq!(k("classifier/foo"), (T::SchedCls, A::TcIngress, false));
        assert_eq!(k("action"), (T::SchedAct, A::Any, false));
        assert_eq!(k("socket"), (T::SocketFilter, A::Any, false));
        assert_eq!(k("fentry/func"), (T::Other(26), A::Any, false));
        assert_eq!(k("cgroup/connect4"), (T::Other(18), A::Any, false));
        assert_eq!(k("weird"), (T::Other(0), A::Any, false));
    }
}

//! The kernel side: the only place that makes bpf() syscalls (verification and the oracle).

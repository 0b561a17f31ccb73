//! The project's eBPF programs, compiled by `build.rs` with clang `-target bpf -O2 -g`.

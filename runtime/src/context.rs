//! Program contexts (`xdp_md`, `__sk_buff`) and packet memory below 4 GiB.

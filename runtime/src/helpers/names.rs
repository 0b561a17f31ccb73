//! Kernel helper names by ID, so that "unknown helper 141" can say which helper it was.

/// The kernel's name of helper `id` (`bpf_` prefix omitted), if the ID is a kernel helper.
pub fn kernel_name(id: i32) -> Option<&'static str> {
    usize::try_from(id).ok().and_then(|i| NAMES.get(i)).copied().filter(|n| !n.is_empty())
}

static NAMES: &[&str] = &[""];

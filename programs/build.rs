//! Compiles every `*.bpf.c` under `programs/` and `programs/test/` into `$OUT_DIR/<name>.o`
//! with clang `-target bpf`, and writes `$OUT_DIR/names.rs` (the `NAMES` list) for `lib.rs`.
//!
//! Objects are what `ip link set dev X xdp obj` or libbpf would load: the userspace runtime and
//! the kernel oracle are tested on exactly these bytes.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Directories (relative to the crate root) whose `*.bpf.c` files are compiled.
const SOURCE_DIRS: &[&str] = &[".", "test"];

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = root.join("include");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-env-changed=CLANG");
    if Command::new(&clang).arg("--version").output().is_err() {
        panic!(
            "`{clang}` not found: the eBPF programs need clang with the BPF target. \
             Run `scripts/setup.sh` (or `apt-get install clang libbpf-dev`), \
             or point the CLANG environment variable at a clang binary."
        );
    }

    for header in list(&include, ".h") {
        println!("cargo:rerun-if-changed={}", header.display());
    }
    println!("cargo:rerun-if-changed={}", include.display());

    let mut names = Vec::new();
    for dir in SOURCE_DIRS {
        let dir = root.join(dir);
        // Watching the directory catches added and removed sources.
        println!("cargo:rerun-if-changed={}", dir.display());
        for src in list(&dir, ".bpf.c") {
            println!("cargo:rerun-if-changed={}", src.display());
            let file = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let name = file.trim_end_matches(".bpf.c").to_string();
            compile(&clang, &src, &include, &out.join(format!("{name}.o")));
            names.push(name);
        }
    }
    names.sort();
    names.dedup();

    let mut list_rs = String::from("/// Every object built from `programs/`, by name (no `.o`).\n");
    list_rs.push_str("pub const NAMES: &[&str] = &[\n");
    for name in &names {
        list_rs.push_str(&format!("    {name:?},\n"));
    }
    list_rs.push_str("];\n");
    fs::write(out.join("names.rs"), list_rs).expect("write names.rs into OUT_DIR");
}

/// Files in `dir` whose name ends with `suffix`, sorted; an absent directory is empty.
fn list(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// Runs clang on one source; panics with clang's diagnostics when it fails (a build script
/// has no other way to fail the build).
fn compile(clang: &str, src: &Path, include: &Path, obj: &Path) {
    let output = Command::new(clang)
        .args(["-target", "bpf", "-O2", "-g", "-mcpu=v3", "-Wall"])
        // asm/types.h lives in the multiarch directory on Debian.
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-I{}", include.display()))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .unwrap_or_else(|e| panic!("running {clang} on {}: {e}", src.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!("clang failed on {}:\n{stderr}", src.display());
    }
    for line in stderr.lines().filter(|l| l.contains("warning:")) {
        println!("cargo:warning={line}");
    }
}

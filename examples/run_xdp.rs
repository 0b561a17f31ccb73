//! Embedding the runtime: open an object, pick a program, build a VM with its maps, run it on a
//! packet, and read the verdict, the rewritten packet and a map.
//!
//! `cargo run -p userxdp-examples --example run_xdp [OBJECT.o [PROGRAM]]`
//! (defaults to the project's `xdp_parse.o`; runs the JIT under the kernel verifier when
//! allowed, else the guarded JIT).

use anyhow::{Context, Result};
use userxdp_runtime::context::XdpFrame;
use userxdp_runtime::kernel;
use userxdp_runtime::maps::dump;
use userxdp_runtime::object;
use userxdp_runtime::vm::instance::{Engine, SafetyPolicy, Vm, VmOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(p) => p.into(),
        None => userxdp_programs::path("xdp_parse").context("xdp_parse.o not built")?,
    };
    let program = args.next();

    // 1. Open the object: a pure parse into specs (no syscalls).
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let spec = object::parse(&bytes)?;
    for p in &spec.programs {
        println!(
            "program {} in section {} ({:?})",
            p.name, p.section, p.prog_type
        );
    }

    // 2. Build a VM: maps are created, the program relocated against them and compiled.
    let safety = match kernel::probe() {
        Ok(()) => SafetyPolicy::Kernel,
        Err(e) => {
            println!("({e}; using the guarded JIT)");
            SafetyPolicy::Guarded
        }
    };
    let vm = Vm::new(
        spec,
        Some(&bytes),
        program.as_deref(),
        VmOptions {
            engine: Engine::Jit,
            safety,
            ..VmOptions::default()
        },
    )?;

    // 3. Run it on a packet: a UDP datagram to the echo port, 198.18.0.1 -> 198.18.0.2.
    let mut packet = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, // IPv4
        0x30, 0x39, 0, 7, 0, 12, 0, 0, // UDP 12345 -> 7
        b'p', b'i', b'n', b'g', // payload
    ];
    let csum = ipv4_checksum(&packet[14..34]);
    packet[24..26].copy_from_slice(&csum.to_be_bytes());
    let mut frame = XdpFrame::new()?;
    frame.load(&packet)?;
    let mut runner = vm.runner(0);
    let run = runner.run_xdp(&mut frame)?;
    println!("verdict {} (r0 = {})", run.action.name(), run.retval);
    println!("packet out: {:02x?}", frame.packet());

    // 4. Read the maps from Rust.
    runner.quiesce();
    for (name, map) in vm.maps() {
        println!(
            "map {name}: {}",
            serde_json_line(&dump::dump(map.as_ref())?)
        );
    }
    Ok(())
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let sum: u32 = header
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    !((folded & 0xffff) + (folded >> 16)) as u16
}

fn serde_json_line(d: &dump::MapDump) -> String {
    let entries: Vec<String> = d
        .entries
        .iter()
        .map(|e| format!("{}={}", e.key, e.value))
        .collect();
    format!("{} [{}]", d.map_type, entries.join(" "))
}

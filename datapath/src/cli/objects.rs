//! Opening objects named on the command line: `OBJ[:PROGRAM]`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use userxdp_runtime::object::spec::{ObjectSpec, ProgramType};
use userxdp_runtime::object::{self, ParseOptions};

/// An object file with an optional program selector.
#[derive(Debug, Clone)]
pub struct ProgRef {
    /// Path of the `.o` file.
    pub path: PathBuf,
    /// Program (function or section name) after the colon, if given.
    pub program: Option<String>,
}

impl std::str::FromStr for ProgRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty object path".into());
        }
        // Split at the last colon only when the part before it exists as a file, so that
        // paths containing colons still work.
        if let Some((path, prog)) = s.rsplit_once(':') {
            if !prog.is_empty() && Path::new(path).exists() {
                return Ok(ProgRef {
                    path: path.into(),
                    program: Some(prog.to_string()),
                });
            }
        }
        Ok(ProgRef {
            path: s.into(),
            program: None,
        })
    }
}

/// Reads and parses an object file.
pub fn open(path: &Path, prog_type: Option<ProgramType>) -> Result<(Vec<u8>, ObjectSpec)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec = object::parse_with(
        &bytes,
        &ParseOptions {
            prog_type_override: prog_type,
        },
    )
    .with_context(|| format!("{}", path.display()))?;
    Ok((bytes, spec))
}

/// Parses a `--type` value.
pub fn parse_prog_type(s: &str) -> Result<ProgramType, String> {
    match s {
        "xdp" => Ok(ProgramType::Xdp),
        "tc" | "sched_cls" | "classifier" => Ok(ProgramType::SchedCls),
        "action" | "sched_act" => Ok(ProgramType::SchedAct),
        "socket" | "socket_filter" => Ok(ProgramType::SocketFilter),
        other => Err(format!(
            "unknown program type {other:?} (expected xdp, tc, action or socket)"
        )),
    }
}

/// The program to run when none is named: the first program of a wanted type that is not a
/// tail-call target placed in a PROG_ARRAY by the object itself (`cache.o`'s chain members
/// are reached from its entry program, never run first).
pub fn default_program(spec: &ObjectSpec, wanted: impl Fn(ProgramType) -> bool) -> Option<String> {
    let targets: Vec<&str> = spec
        .maps
        .iter()
        .flat_map(|m| m.initial_slots.iter().map(|(_, p)| p.as_str()))
        .collect();
    let of_type = || spec.programs.iter().filter(|p| wanted(p.prog_type));
    of_type()
        .find(|p| !targets.contains(&p.name.as_str()))
        .or_else(|| of_type().next())
        .map(|p| p.name.clone())
}

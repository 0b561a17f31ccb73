//! The control socket: a Unix socket speaking line-delimited JSON, one request object per
//! line, one response object per line (`{"ok": true, ...}` or `{"ok": false, "error": ...}`).
//! The `userxdp ctl` subcommands use it; `socat - UNIX-CONNECT:PATH` works too.
//!
//! | request | response |
//! |---|---|
//! | `{"cmd":"stats"}` | per-queue and total counters, program generation |
//! | `{"cmd":"maps"}` | every map: name, type, key/value size, max_entries |
//! | `{"cmd":"map_dump","map":M}` | the map in `--dump-maps` format |
//! | `{"cmd":"map_get","map":M,"key":HEX}` | `value` as hex (per-CPU maps: all slots) |
//! | `{"cmd":"map_update","map":M,"key":HEX,"value":HEX,"flags":F}` | `ok` |
//! | `{"cmd":"map_update_batch","map":M,"entries":[[KEY,VALUE],...]}` | `updated` count |
//! | `{"cmd":"map_delete","map":M,"key":HEX}` | `ok` |
//! | `{"cmd":"ringbuf_read","map":M,"max":N}` | the records produced since the last read |
//! | `{"cmd":"prog_reload","path":OBJ,"program":P?,"egress":P?}` | new generation; maps kept |
//! | `{"cmd":"snapshot_save","path":FILE}` | every map written as a `--maps-init` file |
//! | `{"cmd":"snapshot_restore","path":FILE}` | maps filled from such a file |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use userxdp_runtime::maps::dump::{self, MapDump};
use userxdp_runtime::maps::ringbuf::RingBufMap;
use userxdp_runtime::maps::{types, Map};
use userxdp_runtime::object;
use userxdp_runtime::object::spec::ProgramType;
use userxdp_runtime::vm::instance::Vm;

use crate::slot::{ProgramPair, ProgramSlot};
use crate::stats::{Counters, SharedCounters};

/// Longest request line accepted (a map update of a large value fits easily).
const MAX_REQUEST: usize = 16 << 20;

/// What the control socket can see and change.
#[derive(Debug)]
pub struct ControlState {
    /// The running programs.
    pub programs: Arc<ProgramSlot>,
    /// Published counters, with their queue numbers.
    pub counters: Vec<(u32, Arc<SharedCounters>)>,
}

/// A listening control socket; stops and removes its file on drop.
#[derive(Debug)]
pub struct Control {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Listens on `path`. A stale socket file (no one listening) is replaced; a live one is
    /// an error.
    pub fn start(path: &Path, state: Arc<ControlState>) -> anyhow::Result<Control> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "--control {}: another process is listening there",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .map_err(|e| anyhow::anyhow!("--control {}: {e}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("--control {}: {e}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || accept_loop(listener, state, stop))?
        };
        Ok(Control {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, state: Arc<ControlState>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = state.clone();
                let stop = stop.clone();
                // One thread per client: clients are few (people and scripts).
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve(stream, &state, &stop));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn serve(stream: UnixStream, state: &ControlState, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') || line.len() > MAX_REQUEST => {
                let response = if line.len() > MAX_REQUEST {
                    failure(format!("request longer than {MAX_REQUEST} bytes"))
                } else {
                    handle_line(state, line.trim())
                };
                line.clear();
                if writeln!(out, "{response}").is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn failure(error: impl Into<String>) -> Value {
    json!({"ok": false, "error": error.into()})
}

/// Handles one request line and returns the response object.
pub fn handle_line(state: &ControlState, line: &str) -> Value {
    if line.is_empty() {
        return failure("empty request");
    }
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return failure(format!("not JSON: {e}")),
    };
    match handle(state, &request) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("ok".into(), Value::Bool(true));
            }
            v
        }
        Err(e) => failure(e),
    }
}

fn field<'a>(request: &'a Value, name: &str) -> Result<&'a str, String> {
    request
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {name:?}"))
}

fn hex(request: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = field(request, name)?;
    dump::from_hex(s).ok_or_else(|| format!("{name}: {s:?} is not hex bytes"))
}

fn map_of(vm: &Vm, name: &str) -> Result<Arc<dyn Map>, String> {
    vm.map(name).cloned().ok_or_else(|| {
        format!(
            "no map {name:?}; maps: {}",
            vm.maps().map(|(n, _)| n).collect::<Vec<_>>().join(", ")
        )
    })
}

fn handle(state: &ControlState, request: &Value) -> Result<Value, String> {
    let cmd = field(request, "cmd")?;
    let (pair, generation) = state.programs.get();
    let vm = &pair.ingress;
    match cmd {
        "stats" => {
            let queues: Vec<Value> = state
                .counters
                .iter()
                .map(|(q, c)| {
                    let mut v = serde_json::to_value(c.read()).unwrap_or(Value::Null);
                    v["queue"] = json!(q);
                    v
                })
                .collect();
            let total = state
                .counters
                .iter()
                .fold(Counters::default(), |a, (_, c)| a + c.read());
            Ok(json!({"queues": queues, "total": total, "generation": generation}))
        }
        "maps" => {
            let maps: Vec<Value> = vm
                .maps()
                .map(|(name, m)| {
                    let s = m.spec();
                    json!({
                        "name": name,
                        "type": types::name(s.map_type),
                        "key_size": s.key_size,
                        "value_size": s.value_size,
                        "max_entries": s.max_entries,
                    })
                })
                .collect();
            Ok(json!({ "maps": maps }))
        }
        "map_dump" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            let d = dump_named(vm, m.as_ref()).map_err(|e| format!("map {name}: {e}"))?;
            Ok(json!({ "map": name, "dump": d }))
        }
        "map_get" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            let key = hex(request, "key")?;
            match m.read(&key) {
                Ok(v) => Ok(json!({ "value": dump::to_hex(&v) })),
                Err(e) => Err(format!("map {name}: {e}")),
            }
        }
        "map_update" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            let flags = request.get("flags").and_then(Value::as_u64).unwrap_or(0);
            m.write(&hex(request, "key")?, &hex(request, "value")?, flags)
                .map_err(|e| format!("map {name}: {e}"))?;
            Ok(json!({}))
        }
        "map_update_batch" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            let entries = request
                .get("entries")
                .and_then(Value::as_array)
                .ok_or("missing array field \"entries\" of [key, value] hex pairs")?;
            for (i, e) in entries.iter().enumerate() {
                let pair = |j: usize| {
                    e.get(j)
                        .and_then(Value::as_str)
                        .and_then(dump::from_hex)
                        .ok_or_else(|| format!("entries[{i}]: expected [key hex, value hex]"))
                };
                m.write(&pair(0)?, &pair(1)?, 0)
                    .map_err(|e| format!("map {name}: entries[{i}]: {e}"))?;
            }
            Ok(json!({ "updated": entries.len() }))
        }
        "ringbuf_read" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            let ring = m
                .as_any()
                .downcast_ref::<RingBufMap>()
                .ok_or_else(|| format!("map {name} is not a ringbuf"))?;
            let max = request.get("max").and_then(Value::as_u64).unwrap_or(1024) as usize;
            let mut records = Vec::new();
            // consume() drains everything available; records past `max` are counted, not
            // returned, so a reader that asked for few is told how many it missed.
            let mut dropped = 0usize;
            ring.consume(|r| {
                if records.len() < max {
                    records.push(Value::String(dump::to_hex(r)));
                } else {
                    dropped += 1;
                }
            });
            Ok(json!({ "records": records, "not_returned": dropped }))
        }
        "map_delete" => {
            let name = field(request, "map")?;
            let m = map_of(vm, name)?;
            m.delete(&hex(request, "key")?)
                .map_err(|e| format!("map {name}: {e}"))?;
            Ok(json!({}))
        }
        "prog_reload" => reload(state, &pair, request),
        "snapshot_save" => {
            let path = field(request, "path")?;
            let mut all: BTreeMap<String, MapDump> = BTreeMap::new();
            for (name, m) in vm.maps() {
                if matches!(
                    m.spec().map_type,
                    types::PERF_EVENT_ARRAY | types::RINGBUF | types::XSKMAP
                ) {
                    continue;
                }
                let d = dump_named(vm, m.as_ref()).map_err(|e| format!("map {name}: {e}"))?;
                all.insert(name.to_string(), d);
            }
            let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
            std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}"))?;
            Ok(json!({ "maps": all.len(), "path": path }))
        }
        "snapshot_restore" => {
            let path = field(request, "path")?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let init = crate::cli::maps_init::plan_text(&text, vm.spec(), vm.options().ncpus)
                .map_err(|e| format!("{path}: {e:#}"))?;
            init.apply_user(vm).map_err(|e| format!("{path}: {e:#}"))?;
            Ok(json!({ "path": path }))
        }
        other => Err(format!(
            "unknown cmd {other:?} (stats, maps, map_dump, map_get, map_update, \
             map_update_batch, map_delete, ringbuf_read, prog_reload, snapshot_save, \
             snapshot_restore)"
        )),
    }
}

/// A dump with PROG_ARRAY slots named by program, as `--dump-maps` writes them.
fn dump_named(vm: &Vm, m: &dyn Map) -> Result<MapDump, String> {
    let mut d = dump::dump(m).map_err(|e| e.to_string())?;
    if m.spec().map_type == types::PROG_ARRAY {
        let names: Vec<String> = vm.spec().programs.iter().map(|p| p.name.clone()).collect();
        d.name_programs(|id| names.get((id as usize).checked_sub(1)?).cloned());
    }
    Ok(d)
}

fn reload(state: &ControlState, pair: &ProgramPair, request: &Value) -> Result<Value, String> {
    let path = field(request, "path")?;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let spec = object::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let wanted = request.get("program").and_then(Value::as_str);
    // By default the program of the same name, else the object's first XDP program.
    let current = &pair.ingress.program().name;
    let program = match wanted {
        Some(p) => p.to_string(),
        None if spec.program(current).is_some() => current.clone(),
        None => crate::cli::objects::default_program(&spec, |t| t == ProgramType::Xdp)
            .ok_or_else(|| format!("{path}: no XDP program"))?,
    };
    let ingress = pair
        .ingress
        .reload(spec, Some(&bytes), Some(&program))
        .map_err(|e| format!("{path}: {e}"))?;
    let egress = match (&pair.egress, request.get("egress").and_then(Value::as_str)) {
        (_, Some(name)) => Some(ingress.sibling(name).map_err(|e| format!("{path}: {e}"))?),
        (Some(old), None) => {
            let name = &old.program().name;
            match ingress.sibling(name) {
                Ok(vm) => Some(vm),
                // The egress program came from another object: keep it running.
                Err(_) => Some(old.clone()),
            }
        }
        (None, None) => None,
    };
    let generation = state.programs.publish(ProgramPair { ingress, egress });
    Ok(json!({ "generation": generation, "program": program }))
}

/// A client of the control socket (what `userxdp ctl` uses).
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the datapath listening on `path`.
    pub fn connect(path: &Path) -> anyhow::Result<ControlClient> {
        let stream = UnixStream::connect(path).map_err(|e| {
            anyhow::anyhow!(
                "--control {}: {e} (is run-datapath running with --control {0}?)",
                path.display()
            )
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(ControlClient {
            path: path.to_path_buf(),
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and returns the response; a response with `"ok": false` is an
    /// error carrying the datapath's message.
    pub fn request(&mut self, request: &Value) -> anyhow::Result<Value> {
        writeln!(self.writer, "{request}")
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        if line.is_empty() {
            anyhow::bail!(
                "{}: the datapath closed the connection",
                self.path.display()
            );
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}: bad response: {e}", self.path.display()))?;
        if v["ok"] != Value::Bool(true) {
            anyhow::bail!(
                "{}",
                v["error"]
                    .as_str()
                    .unwrap_or("request failed without a message")
            );
        }
        Ok(v)
    }
}

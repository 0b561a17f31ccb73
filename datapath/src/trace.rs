//! Packet traces a person can open in Wireshark: a pcapng file where every frame a worker
//! saw is written as received, followed (unless dropped) by the frame as the program left it,
//! each with a comment naming the queue and the verdict (`q0 XDP_TX in`, `q0 XDP_TX out`).
//!
//! Workers never wait for the disk: records go through a bounded channel to one writer
//! thread, and records that do not fit are counted as lost, like a full capture buffer.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

/// Records buffered between the workers and the writer.
const CHANNEL_DEPTH: usize = 65_536;

/// One traced frame.
#[derive(Debug)]
pub struct TraceRecord {
    queue: u32,
    verdict: &'static str,
    time: std::time::Duration,
    input: Vec<u8>,
    output: Option<Vec<u8>>,
}

impl TraceRecord {
    /// A frame received on `queue`, its verdict, and the frame as the program left it.
    pub fn new(
        queue: u32,
        verdict: &'static str,
        input: Vec<u8>,
        output: Option<Vec<u8>>,
    ) -> TraceRecord {
        TraceRecord {
            queue,
            verdict,
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            input,
            output,
        }
    }
}

/// A worker's handle on the trace.
#[derive(Debug, Clone)]
pub struct Tracer {
    tx: SyncSender<TraceRecord>,
    lost: Arc<AtomicU64>,
}

impl Tracer {
    /// Queues a record; counts it as lost when the writer is behind.
    pub fn record(&self, r: TraceRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(r) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread and its file.
#[derive(Debug)]
pub struct TraceFile {
    path: PathBuf,
    tracer: Option<Tracer>,
    lost: Arc<AtomicU64>,
    writer: Option<JoinHandle<Result<u64, String>>>,
}

impl TraceFile {
    /// Creates `path` and starts the writer.
    pub fn create(path: &Path) -> Result<TraceFile, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = PcapNgWriter::new(BufWriter::new(file))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("userxdp")),
                // Timestamps are written in nanoseconds.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let lost = Arc::new(AtomicU64::new(0));
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || write_all(out, rx).map_err(|e| format!("{shown}: {e}")))
            .map_err(|e| format!("trace writer thread: {e}"))?;
        Ok(TraceFile {
            path: path.to_path_buf(),
            tracer: Some(Tracer {
                tx,
                lost: lost.clone(),
            }),
            lost,
            writer: Some(writer),
        })
    }

    /// A handle for a worker.
    pub fn tracer(&self) -> Option<Tracer> {
        self.tracer.clone()
    }

    /// Waits for the writer once every worker's handle is gone; returns (frames written,
    /// records lost).
    pub fn finish(mut self) -> Result<(u64, u64), String> {
        drop(self.tracer.take());
        let written = match self.writer.take().map(|w| w.join()) {
            Some(Ok(r)) => r?,
            Some(Err(_)) => return Err(format!("{}: trace writer panicked", self.path.display())),
            None => 0,
        };
        Ok((written, self.lost.load(Ordering::Relaxed)))
    }
}

fn write_all(
    mut out: PcapNgWriter<BufWriter<File>>,
    rx: Receiver<TraceRecord>,
) -> Result<u64, pcap_file::PcapError> {
    let mut written = 0;
    for r in rx {
        for (bytes, side) in [(Some(&r.input), "in"), (r.output.as_ref(), "out")] {
            let Some(bytes) = bytes else { continue };
            out.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: r.time,
                original_len: bytes.len() as u32,
                data: Cow::Borrowed(bytes),
                options: vec![EnhancedPacketOption::Comment(Cow::Owned(format!(
                    "q{} {} {side}",
                    r.queue, r.verdict
                )))],
            })?;
            written += 1;
        }
    }
    use std::io::Write;
    out.into_inner()
        .flush()
        .map_err(pcap_file::PcapError::IoError)?;
    Ok(written)
}

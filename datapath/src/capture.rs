//! Packet captures: reading frames from pcap and pcapng files, writing pcap files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};

/// A frame read from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Capture timestamp.
    pub timestamp: Duration,
    /// Frame bytes (as captured; may be truncated by the capture's snap length).
    pub data: Vec<u8>,
}

/// Capture errors, naming the file and frame.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a pcap or pcapng capture, or is corrupt.
    #[error("{path}: frame {frame}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based frame number where parsing failed (0: file header).
        frame: usize,
        /// The parser's message.
        reason: String,
    },
    /// The capture's link type is not Ethernet.
    #[error("{path}: link type {linktype} is not Ethernet; XDP programs expect Ethernet frames")]
    LinkType {
        /// The file.
        path: PathBuf,
        /// The link type found.
        linktype: String,
    },
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads every frame of a pcap or pcapng file (format detected from the magic number).
pub fn read_frames(path: &Path) -> Result<Vec<CapturedFrame>, CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io)?;
    let file = BufReader::new(File::open(path).map_err(io)?);
    let format = |frame: usize, e: pcap_file::PcapError| CaptureError::Format {
        path: path.to_path_buf(),
        frame,
        reason: e.to_string(),
    };
    let mut frames = Vec::new();
    if magic == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(file).map_err(|e| format(0, e))?;
        while let Some(block) = reader.next_block() {
            match block.map_err(|e| format(frames.len() + 1, e))? {
                Block::EnhancedPacket(p) => frames.push(CapturedFrame {
                    timestamp: p.timestamp,
                    data: p.data.into_owned(),
                }),
                Block::SimplePacket(p) => frames.push(CapturedFrame {
                    timestamp: Duration::ZERO,
                    data: p.data.into_owned(),
                }),
                Block::InterfaceDescription(idb)
                    if idb.linktype != pcap_file::DataLink::ETHERNET =>
                {
                    return Err(CaptureError::LinkType {
                        path: path.to_path_buf(),
                        linktype: format!("{:?}", idb.linktype),
                    });
                }
                _ => {}
            }
        }
    } else {
        let mut reader = PcapReader::new(file).map_err(|e| format(0, e))?;
        let linktype = reader.header().datalink;
        if linktype != pcap_file::DataLink::ETHERNET {
            return Err(CaptureError::LinkType {
                path: path.to_path_buf(),
                linktype: format!("{linktype:?}"),
            });
        }
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| format(frames.len() + 1, e))?;
            frames.push(CapturedFrame {
                timestamp: p.timestamp,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(frames)
}

/// A pcap file being written (Ethernet link type, microsecond timestamps).
pub struct PcapOut {
    path: PathBuf,
    writer: PcapWriter<BufWriter<File>>,
}

impl PcapOut {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<PcapOut, CaptureError> {
        let file = File::create(path).map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = PcapWriter::new(BufWriter::new(file)).map_err(|e| CaptureError::Format {
            path: path.to_path_buf(),
            frame: 0,
            reason: e.to_string(),
        })?;
        Ok(PcapOut {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Flushes and closes the file, reporting a write error that dropping it would hide.
    pub fn finish(self) -> std::io::Result<()> {
        use std::io::Write;
        self.writer.into_writer().flush()
    }

    /// Appends a frame.
    pub fn write(&mut self, timestamp: Duration, data: &[u8]) -> Result<(), CaptureError> {
        self.writer
            .write_packet(&PcapPacket::new(timestamp, data.len() as u32, data))
            .map(|_| ())
            .map_err(|e| CaptureError::Format {
                path: self.path.clone(),
                frame: 0,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_roundtrip() {
        let dir = std::env::temp_dir().join(format!("userxdp-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let mut out = PcapOut::create(&path).unwrap();
        out.write(Duration::from_micros(5), &[1, 2, 3]).unwrap();
        out.write(Duration::from_micros(6), &[4; 60]).unwrap();
        drop(out);
        let frames = read_frames(&path).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, vec![1, 2, 3]);
        assert_eq!(frames[1].timestamp, Duration::from_micros(6));
        std::fs::write(&path, b"not a capture at all").unwrap();
        assert!(matches!(
            read_frames(&path),
            Err(CaptureError::Format { frame: 0, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

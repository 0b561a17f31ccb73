//! memcached over UDP on the wire: the 8-byte frame header, request encoders (ASCII and binary)
//! and reply parsers. Parsers take untrusted bytes: every length is checked, nothing panics, and
//! errors carry the offset (in the reply payload, after the frame header) where parsing stopped.

use thiserror::Error;

/// Bytes of the UDP frame header that precedes every memcached datagram.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes of a binary-protocol request or response header.
pub const BIN_HEADER_LEN: usize = 24;
/// Binary protocol: magic byte of a request.
pub const MAGIC_REQUEST: u8 = 0x80;
/// Binary protocol: magic byte of a response.
pub const MAGIC_RESPONSE: u8 = 0x81;
/// Longest key memcached accepts.
pub const MAX_KEY_LEN: usize = 250;
/// Most datagrams a reassembled reply may span (bounds the memory one reply can take).
pub const MAX_DATAGRAMS: u16 = 128;

/// Binary protocol opcodes used here.
pub mod opcode {
    /// get — value by key, no key in the response.
    pub const GET: u8 = 0x00;
    /// set — store unconditionally.
    pub const SET: u8 = 0x01;
    /// delete — remove a key.
    pub const DELETE: u8 = 0x04;
    /// getk — like GET, the response carries the key.
    pub const GETK: u8 = 0x0c;
}

/// Binary protocol response status codes used here.
pub mod status {
    /// The operation succeeded.
    pub const NO_ERROR: u16 = 0x0000;
    /// The key is not in the cache.
    pub const KEY_NOT_FOUND: u16 = 0x0001;
    /// CAS mismatch or the key exists (add).
    pub const KEY_EXISTS: u16 = 0x0002;
    /// The value is too large to store.
    pub const VALUE_TOO_LARGE: u16 = 0x0003;
    /// The request's arguments are invalid.
    pub const INVALID_ARGUMENTS: u16 = 0x0004;
    /// The item was not stored.
    pub const NOT_STORED: u16 = 0x0005;
}

/// Which memcached protocol requests are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Text protocol: `get k\r\n`, `set k f e n\r\n...`.
    Ascii,
    /// Binary protocol: 24-byte headers, magic 0x80/0x81.
    Binary,
}

/// A reply (or request) that cannot be parsed. Offsets count from the start of the payload
/// after the frame header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Fewer bytes than a fixed-size field or a declared length needs.
    #[error("truncated {what} at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A text line without its CRLF terminator.
    #[error("line at offset {offset} has no CRLF terminator")]
    Unterminated {
        /// Where the line starts.
        offset: usize,
    },
    /// A text reply line that is none of the known replies.
    #[error("unexpected reply line at offset {offset}: {line:?}")]
    UnknownLine {
        /// Where the line starts.
        offset: usize,
        /// The line, lossily decoded and cut to 64 characters.
        line: String,
    },
    /// A field of a `VALUE` line that is missing or not a number.
    #[error("bad {field} in VALUE line at offset {offset}")]
    BadField {
        /// Which field (`key`, `flags`, `bytes`, `cas`).
        field: &'static str,
        /// Where the line starts.
        offset: usize,
    },
    /// A data block not followed by CRLF.
    #[error("data block at offset {offset} is not followed by CRLF")]
    DataTerminator {
        /// Where the data block starts.
        offset: usize,
    },
    /// Bytes after a complete reply.
    #[error("{count} trailing bytes at offset {offset}")]
    Trailing {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// A binary header whose magic byte is wrong.
    #[error("bad magic {found:#04x} (expected {expected:#04x})")]
    BadMagic {
        /// The byte found.
        found: u8,
        /// The byte expected.
        expected: u8,
    },
    /// A binary header whose extras and key do not fit in its body.
    #[error("binary lengths inconsistent: extras {extras} + key {key} > body {body}")]
    BadLengths {
        /// Extras length.
        extras: usize,
        /// Key length.
        key: usize,
        /// Total body length.
        body: usize,
    },
    /// A frame header whose sequence number or datagram count is impossible.
    #[error("bad frame header: seq {seq}, total {total}")]
    BadFrame {
        /// Sequence number.
        seq: u16,
        /// Datagram count.
        total: u16,
    },
}

/// A request that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The key is empty or longer than memcached accepts.
    #[error("key length {len} outside 1..=250")]
    KeyLength {
        /// Length of the key.
        len: usize,
    },
    /// The key holds a space or control character (ASCII protocol would split it).
    #[error("key byte {byte:#04x} at {index} not allowed")]
    KeyByte {
        /// The byte.
        byte: u8,
        /// Its position in the key.
        index: usize,
    },
    /// A get without keys, or a binary get with more than one.
    #[error("get needs {expected} key(s), got {got}")]
    KeyCount {
        /// What the encoding accepts.
        expected: &'static str,
        /// Keys given.
        got: usize,
    },
    /// The value does not fit the binary body length field.
    #[error("value of {len} bytes too large")]
    ValueTooLarge {
        /// Value length.
        len: usize,
    },
}

/// The memcached UDP frame header (all fields big endian on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Request id chosen by the client, echoed in every reply datagram.
    pub request_id: u16,
    /// Sequence number of this datagram within the message.
    pub seq: u16,
    /// Datagrams in the message.
    pub total: u16,
    /// Reserved, zero.
    pub reserved: u16,
}

impl FrameHeader {
    /// The header of a one-datagram request.
    pub fn request(request_id: u16) -> Self {
        FrameHeader {
            request_id,
            seq: 0,
            total: 1,
            reserved: 0,
        }
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for f in [self.request_id, self.seq, self.total, self.reserved] {
            out.extend_from_slice(&f.to_be_bytes());
        }
    }

    /// Splits a datagram into its header and payload; rejects `total == 0` and `seq >= total`.
    pub fn parse(datagram: &[u8]) -> Result<(FrameHeader, &[u8]), ParseError> {
        let Some((h, payload)) = datagram.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return Err(ParseError::Truncated {
                what: "frame header",
                offset: 0,
                need: FRAME_HEADER_LEN,
                have: datagram.len(),
            });
        };
        let field = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let hdr = FrameHeader {
            request_id: field(0),
            seq: field(2),
            total: field(4),
            reserved: field(6),
        };
        if hdr.total == 0 || hdr.seq >= hdr.total {
            return Err(ParseError::BadFrame {
                seq: hdr.seq,
                total: hdr.total,
            });
        }
        Ok((hdr, payload))
    }
}

fn check_key(key: &[u8]) -> Result<(), EncodeError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(EncodeError::KeyLength { len: key.len() });
    }
    match key.iter().position(|&b| b <= b' ' || b == 0x7f) {
        Some(index) => Err(EncodeError::KeyByte {
            byte: key[index],
            index,
        }),
        None => Ok(()),
    }
}

/// Appends the datagram of an ASCII `get k1 k2 ...` (one or more keys).
pub fn ascii_get(request_id: u16, keys: &[&[u8]], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if keys.is_empty() {
        return Err(EncodeError::KeyCount {
            expected: "at least 1",
            got: 0,
        });
    }
    keys.iter().try_for_each(|k| check_key(k))?;
    FrameHeader::request(request_id).emit(out);
    out.extend_from_slice(b"get");
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends the datagram of an ASCII `set <key> <flags> <exptime> <bytes>\r\n<data>\r\n`.
pub fn ascii_set(
    request_id: u16,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_key(key)?;
    FrameHeader::request(request_id).emit(out);
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" {flags} {exptime} {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends the datagram of an ASCII `delete <key>`.
pub fn ascii_delete(request_id: u16, key: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_key(key)?;
    FrameHeader::request(request_id).emit(out);
    out.extend_from_slice(b"delete ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends a binary request header (magic 0x80) and its body.
fn binary_request(
    opcode: u8,
    opaque: u32,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_key(key)?;
    let body = u32::try_from(extras.len() + key.len() + value.len())
        .map_err(|_| EncodeError::ValueTooLarge { len: value.len() })?;
    out.push(MAGIC_REQUEST);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes()); // <= 250, checked above
    out.push(extras.len() as u8); // callers pass 0 or 8 bytes
    out.push(0); // data type: raw bytes
    out.extend_from_slice(&0u16.to_be_bytes()); // vbucket
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // cas: unconditional
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Ok(())
}

/// Appends the datagram of a binary GET (`getk == false`) or GETK request for one key.
pub fn binary_get(
    request_id: u16,
    getk: bool,
    key: &[u8],
    opaque: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let op = if getk { opcode::GETK } else { opcode::GET };
    let start = out.len();
    FrameHeader::request(request_id).emit(out);
    binary_request(op, opaque, &[], key, &[], out).inspect_err(|_| out.truncate(start))
}

/// Appends the datagram of a binary SET (extras: flags, expiration).
pub fn binary_set(
    request_id: u16,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    opaque: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut extras = [0u8; 8];
    extras[..4].copy_from_slice(&flags.to_be_bytes());
    extras[4..].copy_from_slice(&exptime.to_be_bytes());
    let start = out.len();
    FrameHeader::request(request_id).emit(out);
    binary_request(opcode::SET, opaque, &extras, key, value, out)
        .inspect_err(|_| out.truncate(start))
}

/// Appends the datagram of a binary DELETE.
pub fn binary_delete(
    request_id: u16,
    key: &[u8],
    opaque: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    FrameHeader::request(request_id).emit(out);
    binary_request(opcode::DELETE, opaque, &[], key, &[], out).inspect_err(|_| out.truncate(start))
}

/// One `VALUE` block of an ASCII get reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags stored with the value.
    pub flags: u32,
    /// CAS unique, present in `gets` replies.
    pub cas: Option<u64>,
    /// The value bytes.
    pub data: &'a [u8],
}

/// A parsed ASCII reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsciiReply<'a> {
    /// A get reply: the `VALUE` blocks before `END` (empty: every key missed).
    Values(Vec<Item<'a>>),
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `ERROR` (unknown command).
    Error,
    /// `CLIENT_ERROR <message>`.
    ClientError(&'a [u8]),
    /// `SERVER_ERROR <message>`.
    ServerError(&'a [u8]),
}

/// Returns the line starting at `at` (without CRLF) and the offset after its CRLF.
fn line(buf: &[u8], at: usize) -> Result<(&[u8], usize), ParseError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok((&rest[..end], at + end + 2)),
        None => Err(ParseError::Unterminated { offset: at }),
    }
}

fn number<T: std::str::FromStr>(tok: Option<&[u8]>) -> Option<T> {
    let tok = tok?;
    // from_str would accept a leading '+'; memcached never sends one.
    if tok.is_empty() || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(tok).ok()?.parse().ok()
}

fn unknown(offset: usize, l: &[u8]) -> ParseError {
    ParseError::UnknownLine {
        offset,
        line: String::from_utf8_lossy(&l[..l.len().min(64)]).into_owned(),
    }
}

/// Parses one `VALUE <key> <flags> <bytes>[ <cas>]` line (at `at`) and its data block.
fn value_block<'a>(
    buf: &'a [u8],
    at: usize,
    l: &'a [u8],
    next: usize,
) -> Result<(Item<'a>, usize), ParseError> {
    let mut toks = l.split(|&b| b == b' ');
    toks.next(); // "VALUE"
    let bad = |field| ParseError::BadField { field, offset: at };
    let key = toks.next().filter(|k| !k.is_empty()).ok_or(bad("key"))?;
    let flags: u32 = number(toks.next()).ok_or(bad("flags"))?;
    let bytes: usize = number(toks.next()).ok_or(bad("bytes"))?;
    let cas = match toks.next() {
        None => None,
        Some(t) => Some(number::<u64>(Some(t)).ok_or(bad("cas"))?),
    };
    if toks.next().is_some() {
        return Err(unknown(at, l));
    }
    let have = buf.len() - next;
    let need = bytes
        .checked_add(2)
        .filter(|&n| n <= have)
        .ok_or(ParseError::Truncated {
            what: "value data",
            offset: next,
            need: bytes.saturating_add(2),
            have,
        })?;
    if &buf[next + bytes..next + need] != b"\r\n" {
        return Err(ParseError::DataTerminator { offset: next });
    }
    let data = &buf[next..next + bytes];
    Ok((
        Item {
            key,
            flags,
            cas,
            data,
        },
        next + need,
    ))
}

/// Parses a complete ASCII reply payload (after the frame header). The whole payload must be
/// one reply: trailing bytes are an error.
pub fn parse_ascii_reply(buf: &[u8]) -> Result<AsciiReply<'_>, ParseError> {
    let (first, mut next) = line(buf, 0)?;
    let single = match first {
        b"STORED" => Some(AsciiReply::Stored),
        b"NOT_STORED" => Some(AsciiReply::NotStored),
        b"EXISTS" => Some(AsciiReply::Exists),
        b"NOT_FOUND" => Some(AsciiReply::NotFound),
        b"DELETED" => Some(AsciiReply::Deleted),
        b"ERROR" => Some(AsciiReply::Error),
        l if l.starts_with(b"CLIENT_ERROR") => Some(AsciiReply::ClientError(trim_msg(l, 12))),
        l if l.starts_with(b"SERVER_ERROR") => Some(AsciiReply::ServerError(trim_msg(l, 12))),
        _ => None,
    };
    if let Some(reply) = single {
        return finish(buf, next, reply);
    }
    let mut items = Vec::new();
    let (mut l, mut at) = (first, 0);
    loop {
        if l == b"END" {
            return finish(buf, next, AsciiReply::Values(items));
        }
        if !l.starts_with(b"VALUE ") {
            return Err(unknown(at, l));
        }
        let (item, after) = value_block(buf, at, l, next)?;
        items.push(item);
        at = after;
        (l, next) = line(buf, at)?;
    }
}

/// True when `buf` holds a whole ASCII reply, or one that more bytes could not make valid;
/// false when it is a valid reply cut short (its last line or data block is incomplete).
pub fn ascii_reply_complete(buf: &[u8]) -> bool {
    !matches!(
        parse_ascii_reply(buf),
        Err(ParseError::Unterminated { .. } | ParseError::Truncated { .. })
    )
}

fn trim_msg(l: &[u8], prefix: usize) -> &[u8] {
    let m = &l[prefix..];
    m.strip_prefix(b" ").unwrap_or(m)
}

fn finish<'a>(
    buf: &[u8],
    next: usize,
    reply: AsciiReply<'a>,
) -> Result<AsciiReply<'a>, ParseError> {
    if next < buf.len() {
        return Err(ParseError::Trailing {
            offset: next,
            count: buf.len() - next,
        });
    }
    Ok(reply)
}

/// A parsed binary response: header fields and the three body parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryResponse<'a> {
    /// Opcode of the request answered.
    pub opcode: u8,
    /// Status (see [`status`]).
    pub status: u16,
    /// Opaque echoed from the request.
    pub opaque: u32,
    /// CAS of the item.
    pub cas: u64,
    /// Extras (4 bytes of flags on a GET/GETK hit).
    pub extras: &'a [u8],
    /// Key (present for GETK).
    pub key: &'a [u8],
    /// Value (or an error message when `status` is not zero).
    pub value: &'a [u8],
}

impl BinaryResponse<'_> {
    /// The flags of a get hit: the extras when they are exactly 4 bytes.
    pub fn flags(&self) -> Option<u32> {
        let e: [u8; 4] = self.extras.try_into().ok()?;
        Some(u32::from_be_bytes(e))
    }
}

/// Parses one binary response occupying the whole payload (after the frame header).
pub fn parse_binary_response(buf: &[u8]) -> Result<BinaryResponse<'_>, ParseError> {
    let Some((h, body)) = buf.split_first_chunk::<BIN_HEADER_LEN>() else {
        return Err(ParseError::Truncated {
            what: "binary header",
            offset: 0,
            need: BIN_HEADER_LEN,
            have: buf.len(),
        });
    };
    if h[0] != MAGIC_RESPONSE {
        return Err(ParseError::BadMagic {
            found: h[0],
            expected: MAGIC_RESPONSE,
        });
    }
    let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let key_len = usize::from(be16(2));
    let extras_len = usize::from(h[4]);
    let body_len = be32(8) as usize;
    if body.len() < body_len {
        return Err(ParseError::Truncated {
            what: "binary body",
            offset: BIN_HEADER_LEN,
            need: body_len,
            have: body.len(),
        });
    }
    if body.len() > body_len {
        return Err(ParseError::Trailing {
            offset: BIN_HEADER_LEN + body_len,
            count: body.len() - body_len,
        });
    }
    if extras_len + key_len > body_len {
        return Err(ParseError::BadLengths {
            extras: extras_len,
            key: key_len,
            body: body_len,
        });
    }
    let (extras, rest) = body.split_at(extras_len);
    let (key, value) = rest.split_at(key_len);
    Ok(BinaryResponse {
        opcode: h[1],
        status: be16(6),
        opaque: be32(12),
        cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        extras,
        key,
        value,
    })
}

/// Collects the datagrams of one multi-datagram reply (memcached splits replies above ~1400
/// bytes) and returns the payload once every sequence number has arrived.
#[derive(Debug)]
pub struct Reassembly {
    request_id: u16,
    total: u16,
    parts: Vec<Option<Vec<u8>>>,
    missing: u16,
}

impl Reassembly {
    /// Starts collecting the reply to `request_id`.
    pub fn new(request_id: u16) -> Self {
        Reassembly {
            request_id,
            total: 0,
            parts: Vec::new(),
            missing: 0,
        }
    }

    /// Offers one parsed datagram. Returns `Ok(Some(payload))` when the reply is complete,
    /// `Ok(None)` when more parts are needed or the datagram answers another request (check
    /// `hdr.request_id` to tell), and an error when the datagram contradicts the earlier ones.
    pub fn push(
        &mut self,
        hdr: FrameHeader,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, ParseError> {
        if hdr.request_id != self.request_id {
            return Ok(None);
        }
        let bad = ParseError::BadFrame {
            seq: hdr.seq,
            total: hdr.total,
        };
        if self.total == 0 {
            if hdr.total > MAX_DATAGRAMS {
                return Err(bad);
            }
            self.total = hdr.total;
            self.parts = vec![None; usize::from(hdr.total)];
            self.missing = hdr.total;
        } else if hdr.total != self.total {
            return Err(bad);
        }
        let Some(slot) = self.parts.get_mut(usize::from(hdr.seq)) else {
            return Err(bad);
        };
        if slot.is_none() {
            *slot = Some(payload.to_vec());
            self.missing -= 1;
        }
        if self.missing > 0 {
            return Ok(None);
        }
        Ok(Some(
            self.parts
                .iter_mut()
                .flat_map(|p| p.take().unwrap_or_default())
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u16, seq: u16, total: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        FrameHeader {
            request_id: id,
            seq,
            total,
            reserved: 0,
        }
        .emit(&mut v);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        ascii_get(0x0102, &[b"a", b"bc"], &mut out).unwrap();
        assert_eq!(out, b"\x01\x02\0\0\0\x01\0\0get a bc\r\n");
        out.clear();
        ascii_set(7, b"k", 5, 0, b"xyz", &mut out).unwrap();
        assert_eq!(&out[8..], b"set k 5 0 3\r\nxyz\r\n");
        out.clear();
        ascii_delete(7, b"k", &mut out).unwrap();
        assert_eq!(&out[8..], b"delete k\r\n");
        out.clear();
        binary_set(1, b"key", 0xaabbccdd, 0, b"val", 9, &mut out).unwrap();
        let b = &out[8..];
        assert_eq!(b.len(), 24 + 8 + 3 + 3);
        assert_eq!(&b[..8], &[0x80, opcode::SET, 0, 3, 8, 0, 0, 0]);
        assert_eq!(&b[8..16], &[0, 0, 0, 14, 0, 0, 0, 9]);
        assert_eq!(&b[24..28], &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(&b[32..], b"keyval");
        out.clear();
        binary_get(1, true, b"key", 3, &mut out).unwrap();
        assert_eq!(out[9], opcode::GETK);
        // Bad keys are refused and leave `out` as it was.
        out.clear();
        assert_eq!(
            ascii_get(1, &[], &mut out),
            Err(EncodeError::KeyCount {
                expected: "at least 1",
                got: 0
            })
        );
        assert!(matches!(
            ascii_get(1, &[b"a b"], &mut out),
            Err(EncodeError::KeyByte {
                byte: b' ',
                index: 1
            })
        ));
        assert!(matches!(
            binary_get(1, false, &[b'k'; 251], 0, &mut out),
            Err(EncodeError::KeyLength { len: 251 })
        ));
        assert!(matches!(
            binary_delete(1, b"", 0, &mut out),
            Err(EncodeError::KeyLength { len: 0 })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn frame_header() {
        let d = frame(0xbeef, 1, 3, b"xy");
        let (h, p) = FrameHeader::parse(&d).unwrap();
        assert_eq!(
            (h.request_id, h.seq, h.total, p),
            (0xbeef, 1, 3, &b"xy"[..])
        );
        assert!(matches!(
            FrameHeader::parse(&d[..7]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&frame(1, 0, 0, b"")),
            Err(ParseError::BadFrame { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&frame(1, 2, 2, b"")),
            Err(ParseError::BadFrame { .. })
        ));
    }

    #[test]
    fn ascii_replies() {
        let r = parse_ascii_reply(b"VALUE k 5 3\r\nabc\r\nVALUE k2 0 0 77\r\n\r\nEND\r\n").unwrap();
        let AsciiReply::Values(items) = r else {
            panic!("{r:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].key, items[0].flags, items[0].cas, items[0].data),
            (&b"k"[..], 5, None, &b"abc"[..])
        );
        assert_eq!(
            (items[1].key, items[1].cas, items[1].data),
            (&b"k2"[..], Some(77), &b""[..])
        );
        // Data may hold CRLF and "END": the length decides.
        let r = parse_ascii_reply(b"VALUE k 0 7\r\nEND\r\nab\r\nEND\r\n").unwrap();
        assert_eq!(
            r,
            AsciiReply::Values(vec![Item {
                key: b"k",
                flags: 0,
                cas: None,
                data: b"END\r\nab"
            }])
        );
        assert_eq!(
            parse_ascii_reply(b"END\r\n"),
            Ok(AsciiReply::Values(vec![]))
        );
        assert_eq!(parse_ascii_reply(b"STORED\r\n"), Ok(AsciiReply::Stored));
        assert_eq!(parse_ascii_reply(b"DELETED\r\n"), Ok(AsciiReply::Deleted));
        assert_eq!(
            parse_ascii_reply(b"NOT_FOUND\r\n"),
            Ok(AsciiReply::NotFound)
        );
        assert_eq!(
            parse_ascii_reply(b"NOT_STORED\r\n"),
            Ok(AsciiReply::NotStored)
        );
        assert_eq!(parse_ascii_reply(b"ERROR\r\n"), Ok(AsciiReply::Error));
        assert_eq!(
            parse_ascii_reply(b"SERVER_ERROR out of memory\r\n"),
            Ok(AsciiReply::ServerError(b"out of memory"))
        );
        assert_eq!(
            parse_ascii_reply(b"CLIENT_ERROR bad\r\n"),
            Ok(AsciiReply::ClientError(b"bad"))
        );
    }

    #[test]
    fn ascii_garbage_rejected() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "unterminated"),
            (b"END", "unterminated"),
            (b"END\r\nX", "trailing"),
            (b"STORED\r\n\r\n", "trailing"),
            (b"HELLO\r\n", "unknown"),
            (b"VALUE k 0 3\r\nabc\r\n", "no END"),
            (b"VALUE k 0 3\r\nab", "short data"),
            (b"VALUE k 0 3\r\nabcd\r\nEND\r\n", "long data"),
            (b"VALUE k 0 18446744073709551615\r\n", "huge length"),
            (b"VALUE k x 3\r\nabc\r\nEND\r\n", "flags"),
            (b"VALUE k 0 +3\r\nabc\r\nEND\r\n", "plus sign"),
            (b"VALUE k 99999999999 3\r\nabc\r\nEND\r\n", "flags overflow"),
            (b"VALUE k 0\r\nEND\r\n", "no bytes"),
            (b"VALUE  0 3\r\nabc\r\nEND\r\n", "empty key"),
            (b"VALUE k 0 3 1 2\r\nabc\r\nEND\r\n", "extra token"),
            (b"VALUE k 0 3 c\r\nabc\r\nEND\r\n", "bad cas"),
            (b"VALUE k 0 3\r\nabc\r\nSTORED\r\n", "mixed"),
            (b"\r\n", "empty line"),
        ];
        for (bytes, why) in cases {
            assert!(
                parse_ascii_reply(bytes).is_err(),
                "{why}: {bytes:?} accepted"
            );
        }
        // Every prefix of a valid reply is rejected, never a panic.
        let good = b"VALUE key:1 1 10\r\n0123456789\r\nVALUE key:2 2 1 5\r\nx\r\nEND\r\n";
        for n in 0..good.len() {
            assert!(parse_ascii_reply(&good[..n]).is_err(), "prefix {n}");
        }
        assert!(parse_ascii_reply(good).is_ok());
    }

    fn bin_response(op: u8, status: u16, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut v = vec![MAGIC_RESPONSE, op];
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.push(extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        v.extend_from_slice(&42u32.to_be_bytes());
        v.extend_from_slice(&7u64.to_be_bytes());
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn binary_responses() {
        let hit = bin_response(opcode::GETK, 0, &[0, 0, 1, 2], b"key", b"value");
        let r = parse_binary_response(&hit).unwrap();
        assert_eq!(
            (r.opcode, r.status, r.opaque, r.cas),
            (opcode::GETK, 0, 42, 7)
        );
        assert_eq!(
            (r.flags(), r.key, r.value),
            (Some(0x102), &b"key"[..], &b"value"[..])
        );
        let miss = bin_response(opcode::GET, status::KEY_NOT_FOUND, &[], b"", b"Not found");
        let r = parse_binary_response(&miss).unwrap();
        assert_eq!((r.status, r.flags()), (status::KEY_NOT_FOUND, None));
        let stored = bin_response(opcode::SET, 0, &[], b"", b"");
        assert_eq!(parse_binary_response(&stored).unwrap().value, b"");
    }

    #[test]
    fn binary_garbage_rejected() {
        let good = bin_response(opcode::GETK, 0, &[0, 0, 0, 1], b"key", b"value");
        for n in 0..good.len() {
            assert!(parse_binary_response(&good[..n]).is_err(), "prefix {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            parse_binary_response(&long),
            Err(ParseError::Trailing { count: 1, .. })
        ));
        let mut magic = good.clone();
        magic[0] = MAGIC_REQUEST;
        assert!(matches!(
            parse_binary_response(&magic),
            Err(ParseError::BadMagic { found: 0x80, .. })
        ));
        let mut lens = good.clone();
        lens[2..4].copy_from_slice(&300u16.to_be_bytes());
        assert!(matches!(
            parse_binary_response(&lens),
            Err(ParseError::BadLengths { .. })
        ));
        let mut body = good.clone();
        body[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_binary_response(&body),
            Err(ParseError::Truncated { .. })
        ));
        assert!(parse_binary_response(b"VALUE k 0 1\r\nx\r\nEND\r\n").is_err());
    }

    #[test]
    fn fuzz_never_panics() {
        // A cheap deterministic fuzz: random bytes and mutated valid replies.
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 3] = [
            b"VALUE key:1 1 10\r\n0123456789\r\nEND\r\n",
            &bin_response(opcode::GETK, 0, &[0, 0, 0, 1], b"key", b"value"),
            b"\0\x01\0\0\0\x01\0\0STORED\r\n",
        ];
        for i in 0..20_000 {
            let mut buf = seeds[i % 3].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % buf.len();
                buf[at] = next() as u8;
            }
            buf.truncate((next() as usize) % (buf.len() + 1));
            let _ = parse_ascii_reply(&buf);
            let _ = parse_binary_response(&buf);
            if let Ok((h, p)) = FrameHeader::parse(&buf) {
                let _ = Reassembly::new(h.request_id).push(h, p);
            }
        }
    }

    #[test]
    fn reassembly() {
        let mut r = Reassembly::new(5);
        let parts = [
            frame(5, 1, 3, b"cd"),
            frame(9, 0, 1, b"zz"),
            frame(5, 0, 3, b"ab"),
            frame(5, 2, 3, b"e"),
        ];
        let mut done = None;
        for d in &parts {
            let (h, p) = FrameHeader::parse(d).unwrap();
            if let Some(whole) = r.push(h, p).unwrap() {
                done = Some(whole);
            }
        }
        assert_eq!(done.as_deref(), Some(&b"abcde"[..]));
        let mut r = Reassembly::new(5);
        let (h, p) = FrameHeader::parse(&parts[0]).unwrap();
        assert_eq!(r.push(h, p), Ok(None));
        let d = frame(5, 0, 2, b"x");
        let (h, p) = FrameHeader::parse(&d).unwrap();
        assert!(matches!(r.push(h, p), Err(ParseError::BadFrame { .. })));
        let bogus = FrameHeader {
            request_id: 5,
            seq: 9,
            total: 3,
            reserved: 0,
        };
        assert!(r.push(bogus, b"").is_err());
        let d = frame(6, 0, MAX_DATAGRAMS + 1, b"");
        let (h, p) = FrameHeader::parse(&d).unwrap();
        assert!(Reassembly::new(6).push(h, p).is_err());
    }
}

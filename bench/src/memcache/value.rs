//! Keys and self-describing values: `key:<n>` and `key:<n>|v<version>|r<run>|<filler>`, so a
//! checker can tell from any value returned which key, which write and which load run (values
//! left in the server by an earlier run) it came from, and whether its bytes were damaged (the
//! filler is a deterministic function of key, version, run and position).

use thiserror::Error;

/// Why a value is not one this load generator wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The `key:<n>|v<version>|r<run>|` prefix is missing or malformed.
    #[error("value has no `key:<n>|v<version>|r<run>|` prefix")]
    Prefix,
    /// A filler byte differs from what the writer put there.
    #[error("filler byte {index} is {found:#04x}, expected {expected:#04x}")]
    Filler {
        /// Position in the value.
        index: usize,
        /// Byte found.
        found: u8,
        /// Byte written.
        expected: u8,
    },
}

/// The key string of key number `n`: `key:<n>`.
pub fn key_name(n: u64) -> String {
    format!("key:{n}")
}

/// Appends the key string of key number `n` to `out`.
pub fn write_key(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key:");
    write_decimal(n, out);
}

fn write_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// What a value says about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueTag {
    /// Key number.
    pub key: u64,
    /// Write version of that key.
    pub version: u64,
    /// Load run that wrote it.
    pub run: u32,
}

/// The filler byte at `index` of the value `tag`: a lowercase letter.
fn filler(tag: ValueTag, index: usize) -> u8 {
    let mix = (index as u64)
        .wrapping_mul(31)
        .wrapping_add(tag.key.wrapping_mul(7))
        .wrapping_add(tag.version.wrapping_mul(13))
        .wrapping_add(u64::from(tag.run).wrapping_mul(17));
    b'a' + (mix % 26) as u8
}

/// Appends the value `tag`: the prefix `key:<n>|v<version>|r<run>|`, then filler up to `size`
/// bytes (values are never shorter than their prefix).
pub fn encode_value(tag: ValueTag, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    write_key(tag.key, out);
    out.extend_from_slice(b"|v");
    write_decimal(tag.version, out);
    out.extend_from_slice(b"|r");
    write_decimal(u64::from(tag.run), out);
    out.push(b'|');
    let mut i = out.len() - start;
    while i < size {
        out.push(filler(tag, i));
        i += 1;
    }
}

/// Length of the value [`encode_value`] writes for these arguments.
pub fn value_len(tag: ValueTag, size: usize) -> usize {
    let digits = |n: u64| n.checked_ilog10().unwrap_or(0) as usize + 1;
    let prefix = "key:".len()
        + digits(tag.key)
        + "|v".len()
        + digits(tag.version)
        + "|r".len()
        + digits(u64::from(tag.run))
        + 1;
    prefix.max(size)
}

fn take_number(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    // Leading zeros would make two spellings of one number: the writer never emits them.
    if end == 0 || end > 20 || (end > 1 && s[0] == b'0') {
        return None;
    }
    let n = std::str::from_utf8(&s[..end]).ok()?.parse().ok()?;
    Some((n, &s[end..]))
}

/// Decodes a value written by [`encode_value`]. Checks the filler too.
pub fn decode_value(data: &[u8]) -> Result<ValueTag, ValueError> {
    let rest = data.strip_prefix(b"key:").ok_or(ValueError::Prefix)?;
    let (key, rest) = take_number(rest).ok_or(ValueError::Prefix)?;
    let rest = rest.strip_prefix(b"|v").ok_or(ValueError::Prefix)?;
    let (version, rest) = take_number(rest).ok_or(ValueError::Prefix)?;
    let rest = rest.strip_prefix(b"|r").ok_or(ValueError::Prefix)?;
    let (run, rest) = take_number(rest).ok_or(ValueError::Prefix)?;
    let run = u32::try_from(run).map_err(|_| ValueError::Prefix)?;
    let rest = rest.strip_prefix(b"|").ok_or(ValueError::Prefix)?;
    let tag = ValueTag { key, version, run };
    let start = data.len() - rest.len();
    for (i, &b) in rest.iter().enumerate() {
        let expected = filler(tag, start + i);
        if b != expected {
            return Err(ValueError::Filler {
                index: start + i,
                found: b,
                expected,
            });
        }
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: u64, version: u64, run: u32) -> ValueTag {
        ValueTag { key, version, run }
    }

    #[test]
    fn round_trip() {
        for (t, size) in [
            (tag(0, 0, 0), 0),
            (tag(7, 1, 3), 64),
            (tag(123456, 99, 77), 1000),
            (tag(u64::MAX, u64::MAX, u32::MAX), 10),
        ] {
            let mut out = Vec::new();
            encode_value(t, size, &mut out);
            assert_eq!(out.len(), value_len(t, size));
            assert_eq!(decode_value(&out), Ok(t));
        }
        let mut key = Vec::new();
        write_key(42, &mut key);
        assert_eq!(key, key_name(42).as_bytes());
    }

    #[test]
    fn damage_detected() {
        let mut out = Vec::new();
        encode_value(tag(5, 3, 1), 40, &mut out);
        assert_eq!(&out[..12], b"key:5|v3|r1|");
        let mut bad = out.clone();
        bad[30] ^= 1;
        assert!(matches!(
            decode_value(&bad),
            Err(ValueError::Filler { index: 30, .. })
        ));
        for garbage in [
            &b""[..],
            b"key:",
            b"key:5|v",
            b"key:5|v3|",
            b"key:5|v3|r1",
            b"key:05|v3|r1|",
            b"xey:5|v3|r1|",
            b"key:5|v3|r99999999999|",
        ] {
            assert_eq!(
                decode_value(garbage),
                Err(ValueError::Prefix),
                "{garbage:?}"
            );
        }
        // Another version's filler does not pass for this one.
        let mut other = Vec::new();
        encode_value(tag(5, 4, 1), 40, &mut other);
        other[7] = b'3';
        assert!(decode_value(&other).is_err());
    }
}

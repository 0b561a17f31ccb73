//! Just enough BTF (`.BTF` section) to read BTF-defined maps: the type table, type sizes, and the
//! `.maps` DATASEC. Layout per the kernel's `include/uapi/linux/btf.h`.

use super::error::ObjectError;

const BTF_MAGIC: u16 = 0xeb9f;
/// Longest chain of typedef/const/volatile/... or array nesting followed before giving up; the
/// kernel uses 32 as well (`MAX_RESOLVE_DEPTH`).
const MAX_DEPTH: usize = 32;

/// One member of a STRUCT or UNION.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Member type id.
    pub type_id: u32,
    /// Offset from the start of the STRUCT, in bits.
    pub bit_offset: u32,
}

/// One variable of a DATASEC.
#[derive(Debug, Clone, Copy)]
pub struct VarSecinfo {
    /// Type id of the VAR.
    pub type_id: u32,
    /// Byte offset of the variable in its section.
    pub offset: u32,
}

/// The kind-specific part of a BTF type.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Type id 0.
    Void,
    /// A type with a size and nothing we need inside (INT, ENUM, ENUM64, FLOAT).
    Sized {
        /// Size in bytes.
        size: u32,
    },
    /// A pointer.
    Ptr {
        /// Pointee type id.
        target: u32,
    },
    /// An array.
    Array {
        /// Element type id.
        elem: u32,
        /// Number of elements.
        nelems: u32,
    },
    /// A STRUCT or UNION.
    Composite {
        /// Size in bytes.
        size: u32,
        /// Members in declaration order.
        members: Vec<Member>,
    },
    /// TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG: same layout as `target`.
    Modifier {
        /// Underlying type id.
        target: u32,
    },
    /// A VAR.
    Var {
        /// Variable type id.
        target: u32,
    },
    /// A DATASEC.
    Datasec {
        /// Section size (may be 0 in unlinked objects).
        size: u32,
        /// Variables.
        vars: Vec<VarSecinfo>,
    },
    /// FUNC_PROTO.
    FuncProto,
    /// Kinds with no layout of their own (FWD, FUNC, DECL_TAG).
    Other,
}

/// One BTF type.
#[derive(Debug, Clone)]
pub struct Type {
    /// Type name (empty for anonymous types).
    pub name: String,
    /// Kind and layout.
    pub kind: Kind,
    /// Byte offset of the type record in `.BTF`, for errors.
    pub offset: usize,
}

/// A parsed `.BTF` section.
#[derive(Debug, Clone)]
pub struct Btf {
    /// Types by id; index 0 is `void`.
    pub types: Vec<Type>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn err(offset: usize, reason: impl Into<String>) -> ObjectError {
    ObjectError::Btf {
        offset,
        reason: reason.into(),
    }
}

impl Btf {
    /// Parses the type table of a `.BTF` section.
    pub fn parse(data: &[u8]) -> Result<Btf, ObjectError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| err(0, "truncated header"))?;
        if magic != BTF_MAGIC {
            return Err(err(0, format!("bad magic {magic:#06x} (big endian BTF?)")));
        }
        let hdr = |off| u32_at(data, off).ok_or_else(|| err(off, "truncated header"));
        let hdr_len = hdr(4)? as usize;
        let (type_off, type_len) = (hdr(8)? as usize, hdr(12)? as usize);
        let (str_off, str_len) = (hdr(16)? as usize, hdr(20)? as usize);
        let range = |off: usize, len: usize, what: &str| {
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= data.len() => Ok((s, e)),
                _ => Err(err(hdr_len, format!("{what} outside the section"))),
            }
        };
        let (tstart, tend) = range(type_off, type_len, "type table")?;
        let (sstart, send) = range(str_off, str_len, "string table")?;
        let strings = &data[sstart..send];
        let name_at = |off: usize, name_off: u32| -> Result<String, ObjectError> {
            let rest = strings
                .get(name_off as usize..)
                .ok_or_else(|| err(off, format!("name offset {name_off} outside strings")))?;
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        let mut types = vec![Type {
            name: String::new(),
            kind: Kind::Void,
            offset: 0,
        }];
        let mut pos = tstart;
        while pos < tend {
            let at = |rel: usize| {
                pos.checked_add(rel)
                    .filter(|&o| o.checked_add(4).is_some_and(|e| e <= tend))
                    .and_then(|o| u32_at(data, o))
                    .ok_or_else(|| err(pos, "type record truncated"))
            };
            let name_off = at(0)?;
            let info = at(4)?;
            let size_or_type = at(8)?;
            let kind_no = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let name = name_at(pos, name_off)?;
            let body = 12usize;
            // Reads `vlen` records of `rec` bytes after the common header.
            let records = |rec: usize| -> Result<Vec<[u32; 3]>, ObjectError> {
                let mut out = Vec::with_capacity(vlen.min(1024));
                for i in 0..vlen {
                    let base = body + i * rec;
                    let mut r = [0u32; 3];
                    for (j, slot) in r.iter_mut().enumerate().take(rec / 4) {
                        *slot = at(base + 4 * j)?;
                    }
                    out.push(r);
                }
                Ok(out)
            };
            let (kind, extra) = match kind_no {
                1 => (Kind::Sized { size: size_or_type }, 4),
                2 => (
                    Kind::Ptr {
                        target: size_or_type,
                    },
                    0,
                ),
                3 => (
                    Kind::Array {
                        elem: at(body)?,
                        nelems: at(body + 8)?,
                    },
                    12,
                ),
                4 | 5 => {
                    let recs = records(12)?;
                    let mut members = Vec::with_capacity(recs.len());
                    // With kind_flag set, the offset word also carries a bitfield size in
                    // its top 8 bits.
                    let kind_flag = info >> 31 == 1;
                    for r in recs {
                        members.push(Member {
                            name: name_at(pos, r[0])?,
                            type_id: r[1],
                            bit_offset: if kind_flag { r[2] & 0x00ff_ffff } else { r[2] },
                        });
                    }
                    (
                        Kind::Composite {
                            size: size_or_type,
                            members,
                        },
                        vlen * 12,
                    )
                }
                6 => (Kind::Sized { size: size_or_type }, vlen * 8),
                7 | 12 => (Kind::Other, 0),
                8..=11 | 18 => (
                    Kind::Modifier {
                        target: size_or_type,
                    },
                    0,
                ),
                13 => (Kind::FuncProto, vlen * 8),
                14 => (
                    Kind::Var {
                        target: size_or_type,
                    },
                    4,
                ),
                15 => {
                    let vars = records(12)?
                        .into_iter()
                        .map(|r| VarSecinfo {
                            type_id: r[0],
                            offset: r[1],
                        })
                        .collect();
                    (
                        Kind::Datasec {
                            size: size_or_type,
                            vars,
                        },
                        vlen * 12,
                    )
                }
                16 => (Kind::Sized { size: size_or_type }, 0),
                17 => (Kind::Other, 4),
                19 => (Kind::Sized { size: size_or_type }, vlen * 12),
                k => return Err(err(pos, format!("unknown BTF kind {k}"))),
            };
            types.push(Type {
                name,
                kind,
                offset: pos,
            });
            let next = pos.checked_add(body + extra).filter(|&n| n <= tend);
            pos = next.ok_or_else(|| err(pos, "type record truncated"))?;
        }
        Ok(Btf { types })
    }

    /// The type with id `id`.
    pub fn get(&self, id: u32) -> Result<&Type, ObjectError> {
        self.types
            .get(id as usize)
            .ok_or_else(|| err(0, format!("type id {id} out of range")))
    }

    /// Follows typedefs and qualifiers to the underlying type.
    pub fn skip_mods(&self, mut id: u32) -> Result<(u32, &Type), ObjectError> {
        for _ in 0..MAX_DEPTH {
            let t = self.get(id)?;
            match t.kind {
                Kind::Modifier { target } => id = target,
                _ => return Ok((id, t)),
            }
        }
        Err(err(self.get(id)?.offset, "type chain too deep"))
    }

    /// Size in bytes of type `id`, as `btf__resolve_size` computes it.
    pub fn resolve_size(&self, id: u32) -> Result<u64, ObjectError> {
        let mut id = id;
        let mut mult: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let t = self.get(id)?;
            let size = match t.kind {
                Kind::Sized { size }
                | Kind::Composite { size, .. }
                | Kind::Datasec { size, .. } => size as u64,
                Kind::Ptr { .. } => 8,
                Kind::Modifier { target } | Kind::Var { target } => {
                    id = target;
                    continue;
                }
                Kind::Array { elem, nelems } => {
                    mult = mult
                        .checked_mul(nelems as u64)
                        .ok_or_else(|| err(t.offset, "array size overflows"))?;
                    id = elem;
                    continue;
                }
                Kind::Void | Kind::FuncProto | Kind::Other => {
                    return Err(err(t.offset, format!("type id {id} has no size")))
                }
            };
            return mult
                .checked_mul(size)
                .ok_or_else(|| err(t.offset, "type size overflows"));
        }
        Err(err(self.get(id)?.offset, "type chain too deep"))
    }

    /// Byte offset of the `struct bpf_spin_lock` member of the STRUCT `id` (the kernel allows
    /// one, at the top level of a map value), if it has one.
    pub fn spin_lock_offset(&self, id: u32) -> Option<u32> {
        let (_, t) = self.skip_mods(id).ok()?;
        let Kind::Composite { members, .. } = &t.kind else {
            return None;
        };
        members.iter().find_map(|m| {
            let (_, mt) = self.skip_mods(m.type_id).ok()?;
            (mt.name == "bpf_spin_lock" && matches!(mt.kind, Kind::Composite { .. }))
                .then_some(m.bit_offset / 8)
        })
    }

    /// The DATASEC called `name`, with its type id.
    pub fn datasec(&self, name: &str) -> Option<(u32, &Type)> {
        self.types
            .iter()
            .enumerate()
            .find(|(_, t)| matches!(t.kind, Kind::Datasec { .. }) && t.name == name)
            .map(|(i, t)| (i as u32, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        let tlen = (types.len() * 4) as u32;
        for v in [24u32, 0, tlen, tlen, strings.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for t in types {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn sizes_through_typedef_and_array() {
        // 1: int (size 4) "int"; 2: array of 1 x 10; 3: typedef "t" -> 2
        let types = [
            1,
            1 << 24,
            4,
            32, //
            0,
            3 << 24,
            0,
            1,
            1,
            10, //
            5,
            8 << 24,
            2,
        ];
        let btf = Btf::parse(&build(&types, b"\0int\0t\0")).unwrap();
        assert_eq!(btf.resolve_size(3).unwrap(), 40);
        assert_eq!(btf.types[3].name, "t");
    }

    #[test]
    fn cycles_and_garbage_are_errors() {
        // 1: typedef -> 1 (a cycle)
        let btf = Btf::parse(&build(&[0, 8 << 24, 1], b"\0")).unwrap();
        assert!(btf.resolve_size(1).is_err());
        assert!(Btf::parse(&build(&[0, 30 << 24, 1], b"\0")).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1]).is_err());
    }
}

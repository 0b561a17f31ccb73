//! The checks applied to every GET reply: the reply answers the request, each value belongs to
//! the key asked for and is intact, and (checker on) is not older than a write acknowledged
//! before the GET was sent.

use std::sync::atomic::Ordering;

use super::load::Keyspace;
use super::proto::{self, opcode, status, AsciiReply};
use super::report::{Counts, StaleRead};
use super::value;

/// Examples of each kind of failure kept for the report.
pub(super) const EXAMPLES: usize = 8;

/// One GET key in flight: key number and the acked version read when it was sent.
#[derive(Clone, Copy)]
pub(super) struct Asked {
    pub(super) key: u64,
    pub(super) acked: u64,
    pub(super) answered: bool,
}

/// Keeps `what` as an example unless enough are kept already.
pub(super) fn note(errors: &mut Vec<String>, what: String) {
    if errors.len() < EXAMPLES {
        errors.push(what);
    }
}

/// Checks GET replies against what was asked and what was acknowledged.
pub(super) struct Checker<'a> {
    c: &'a mut Counts,
    stale: &'a mut Vec<StaleRead>,
    errors: &'a mut Vec<String>,
    space: &'a Keyspace,
    value_size: usize,
    run_id: u32,
    check_stale: bool,
}

impl<'a> Checker<'a> {
    /// A checker writing into a load thread's counters and examples; stale reads are looked
    /// for when `check_stale`.
    pub(super) fn new(
        c: &'a mut Counts,
        stale: &'a mut Vec<StaleRead>,
        errors: &'a mut Vec<String>,
        space: &'a Keyspace,
        cfg: &super::load::LoadConfig,
        check_stale: bool,
    ) -> Checker<'a> {
        Checker {
            c,
            stale,
            errors,
            space,
            value_size: cfg.value_size,
            run_id: cfg.run_id,
            check_stale,
        }
    }

    fn malformed(&mut self, what: String) {
        self.c.malformed += 1;
        note(self.errors, what);
    }

    pub(super) fn ascii_get(&mut self, reply: &[u8], asked: &mut [Asked], kbs: &[Vec<u8>]) {
        let items = match proto::parse_ascii_reply(reply) {
            Ok(AsciiReply::Values(items)) => items,
            Ok(AsciiReply::Error)
            | Ok(AsciiReply::ClientError(_))
            | Ok(AsciiReply::ServerError(_)) => {
                self.c.server_errors += 1;
                return;
            }
            Ok(other) => return self.malformed(format!("get: unexpected {other:?}")),
            Err(e) => return self.malformed(format!("get: {e}")),
        };
        for it in &items {
            let Some(i) = kbs[..asked.len()]
                .iter()
                .position(|k| k.as_slice() == it.key)
            else {
                self.c.wrong_key += 1;
                note(
                    self.errors,
                    format!(
                        "get: VALUE for unasked key {:?}",
                        String::from_utf8_lossy(it.key)
                    ),
                );
                continue;
            };
            if asked[i].answered {
                self.malformed(format!("get: key:{} answered twice", asked[i].key));
                continue;
            }
            asked[i].answered = true;
            self.value(asked[i], it.flags, it.data);
        }
        self.c.misses += asked.iter().filter(|a| !a.answered).count() as u64;
    }

    pub(super) fn binary_get(&mut self, reply: &[u8], asked: Asked, kb: &[u8], opaque: u32) {
        let r = match proto::parse_binary_response(reply) {
            Ok(r) => r,
            Err(e) => return self.malformed(format!("get: {e}")),
        };
        // The cache rewrites a GET miss into GETK (as BMC does), so accept either opcode.
        if (r.opcode != opcode::GET && r.opcode != opcode::GETK) || r.opaque != opaque {
            return self.malformed(format!(
                "get: opcode {:#x} opaque {} (sent {opaque})",
                r.opcode, r.opaque
            ));
        }
        if !r.key.is_empty() && r.key != kb {
            self.c.wrong_key += 1;
            return note(
                self.errors,
                format!(
                    "get key:{}: reply key {:?}",
                    asked.key,
                    String::from_utf8_lossy(r.key)
                ),
            );
        }
        match r.status {
            status::NO_ERROR => match r.flags() {
                Some(flags) => self.value(asked, flags, r.value),
                None => self.malformed(format!(
                    "get key:{}: hit with {} bytes of extras",
                    asked.key,
                    r.extras.len()
                )),
            },
            status::KEY_NOT_FOUND => self.c.misses += 1,
            _ => self.c.server_errors += 1,
        }
    }

    /// Checks one value returned for `asked`.
    fn value(&mut self, asked: Asked, flags: u32, data: &[u8]) {
        let tag = match value::decode_value(data) {
            Ok(t) => t,
            Err(e) => return self.malformed(format!("get key:{}: {e}", asked.key)),
        };
        let (key, version) = (tag.key, tag.version);
        if key != asked.key {
            self.c.wrong_key += 1;
            return note(
                self.errors,
                format!("get key:{}: value of key:{key} v{version}", asked.key),
            );
        }
        if flags != version as u32 {
            return self.malformed(format!("get key:{key}: v{version} with flags {flags}"));
        }
        if tag.run != self.run_id {
            // Left by an earlier run: fine unless this run has acknowledged a write since.
            self.c.foreign_values += 1;
            if self.check_stale && asked.acked > 0 {
                self.stale_read(StaleRead {
                    key,
                    got: version,
                    acked: asked.acked,
                });
            }
            self.c.hits += 1;
            return;
        }
        let issued = self.space.versions[key as usize].load(Ordering::Acquire);
        if data.len() != value::value_len(tag, self.value_size) || version > issued {
            return self.malformed(format!(
                "get key:{key}: v{version} flags {flags} len {} (issued up to v{issued})",
                data.len()
            ));
        }
        if self.check_stale && version < asked.acked {
            self.stale_read(StaleRead {
                key,
                got: version,
                acked: asked.acked,
            });
        }
        self.c.hits += 1;
    }

    fn stale_read(&mut self, s: StaleRead) {
        self.c.stale_reads += 1;
        if self.stale.len() < EXAMPLES {
            self.stale.push(s);
        }
    }
}

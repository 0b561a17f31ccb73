//! QUEUE and STACK maps (`kernel/bpf/queue_stack_maps.c`): no keys, values pushed and popped.
//!
//! Programs use `bpf_map_push_elem` (87), `bpf_map_pop_elem` (88) and `bpf_map_peek_elem`
//! (89); the syscall side maps lookup to peek, update to push and lookup_and_delete to pop
//! ([`QueueMap::pop`]). A push on a full map fails with E2BIG unless `BPF_EXIST` is given, in
//! which case the oldest element is dropped — for a stack too, as in the kernel.

use std::any::Any;
use std::collections::VecDeque;
use std::ptr::NonNull;

use parking_lot::Mutex;

use super::{flags, types, Map, MapError};
use crate::object::spec::MapSpec;

/// Flags a queue or stack may be created with (`QUEUE_STACK_CREATE_FLAG_MASK`: NUMA_NODE and
/// the access flags).
const CREATE_FLAG_MASK: u32 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 8);

/// Which end pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// First in, first out (BPF_MAP_TYPE_QUEUE).
    Fifo,
    /// Last in, first out (BPF_MAP_TYPE_STACK).
    Lifo,
}

/// A QUEUE or STACK map.
#[derive(Debug)]
pub struct QueueMap {
    spec: MapSpec,
    order: Order,
    /// Oldest element at the front.
    elems: Mutex<VecDeque<Box<[u8]>>>,
}

impl QueueMap {
    /// Validates the declaration as `queue_stack_map_alloc_check` does.
    pub fn new(spec: MapSpec) -> Result<QueueMap, String> {
        let order = match spec.map_type {
            types::QUEUE => Order::Fifo,
            types::STACK => Order::Lifo,
            t => return Err(format!("map type {t} is not a queue or stack")),
        };
        if spec.key_size != 0 {
            return Err("queue/stack key size must be 0".into());
        }
        if spec.value_size == 0 {
            return Err("queue/stack value size is 0".into());
        }
        if spec.flags & !CREATE_FLAG_MASK != 0 {
            return Err(format!("queue/stack flags {:#x} not allowed", spec.flags));
        }
        let cap = (spec.max_entries as usize).min(1 << 16);
        Ok(QueueMap {
            spec,
            order,
            elems: Mutex::new(VecDeque::with_capacity(cap)),
        })
    }

    /// FIFO for QUEUE, LIFO for STACK.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        self.elems.lock().len()
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes `value` (`bpf_map_push_elem`; syscall update). `flags`: `BPF_ANY`, or
    /// `BPF_EXIST` to drop the oldest element when full.
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags & flags::BPF_NOEXIST != 0 || flags > flags::BPF_EXIST {
            return Err(MapError::Invalid(format!("flags {flags:#x}")));
        }
        let vs = self.spec.value_size as usize;
        let Some(v) = value.get(..vs) else {
            return Err(MapError::Invalid(format!("value must be {vs} bytes")));
        };
        let mut q = self.elems.lock();
        if q.len() >= self.spec.max_entries as usize {
            if flags & flags::BPF_EXIST == 0 {
                return Err(MapError::TooBig);
            }
            q.pop_front();
        }
        q.push_back(v.into());
        Ok(())
    }

    /// Removes and returns the next element (`bpf_map_pop_elem`; syscall
    /// lookup_and_delete). ENOENT when empty.
    pub fn pop(&self) -> Result<Vec<u8>, MapError> {
        let mut q = self.elems.lock();
        let v = match self.order {
            Order::Fifo => q.pop_front(),
            Order::Lifo => q.pop_back(),
        };
        v.map(Vec::from).ok_or(MapError::NotFound)
    }

    /// Copies the next element into `out` without removing it, or pops it when `remove`
    /// (the helpers' form, which writes into program memory without allocating).
    pub fn take_into(&self, out: &mut [u8], remove: bool) -> Result<(), MapError> {
        let mut q = self.elems.lock();
        let v = match (self.order, remove) {
            (Order::Fifo, false) => q.front().map(|v| out.copy_from_slice(v)),
            (Order::Lifo, false) => q.back().map(|v| out.copy_from_slice(v)),
            (Order::Fifo, true) => q.pop_front().map(|v| out.copy_from_slice(&v)),
            (Order::Lifo, true) => q.pop_back().map(|v| out.copy_from_slice(&v)),
        };
        v.ok_or(MapError::NotFound)
    }

    /// Returns the next element without removing it (`bpf_map_peek_elem`; syscall lookup).
    pub fn peek(&self) -> Result<Vec<u8>, MapError> {
        let q = self.elems.lock();
        let v = match self.order {
            Order::Fifo => q.front(),
            Order::Lifo => q.back(),
        };
        v.map(|v| v.to_vec()).ok_or(MapError::NotFound)
    }
}

impl Map for QueueMap {
    fn spec(&self) -> &MapSpec {
        &self.spec
    }

    /// The verifier refuses `bpf_map_lookup_elem` on these maps.
    fn lookup(&self, _: &[u8], _: u32) -> Option<NonNull<u8>> {
        None
    }

    fn update(&self, _key: &[u8], value: &[u8], flags: u64, _cpu: u32) -> Result<(), MapError> {
        self.push(value, flags)
    }

    /// `queue_stack_map_delete_elem`: EINVAL.
    fn delete(&self, _: &[u8]) -> Result<(), MapError> {
        Err(MapError::Invalid(
            "queue/stack maps have no keys to delete".into(),
        ))
    }

    /// `queue_stack_map_get_next_key`: EINVAL.
    fn next_key(&self, _: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Err(MapError::Invalid("queue/stack maps have no keys".into()))
    }

    fn read(&self, _key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.peek()
    }

    fn write(&self, _key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::Invalid(format!(
                "value must be {} bytes",
                self.spec.value_size
            )));
        }
        self.push(value, flags)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

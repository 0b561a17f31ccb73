//! Typed access to a map from Rust: keys and values as plain-old-data types instead of byte
//! slices, checked once against the map's declaration.
//!
//! ```no_run
//! # use userxdp_runtime::maps::typed::TypedMap;
//! # fn demo(vm: &userxdp_runtime::vm::instance::Vm) -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Flow { src: u32, dst: u32 }
//!
//! let counts: TypedMap<Flow, u64> = TypedMap::new(vm.map("flows").unwrap().clone())?;
//! counts.update(&Flow { src: 1, dst: 2 }, &7, 0)?;
//! for (flow, n) in counts.iter() {
//!     println!("{}->{}: {n}", flow.src, flow.dst);
//! }
//! # Ok(()) }
//! ```
//!
//! Per-CPU maps hold one value per CPU slot: use [`TypedMap::get_percpu`] and
//! [`TypedMap::update_percpu`]; [`TypedMap::get`] and [`TypedMap::update`] refuse them.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use super::{round_up8, types, Map, MapError};

/// Why a map cannot be viewed with these types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedError {
    /// Key or value size differs from the declaration.
    #[error("map {map}: {what} is {declared} bytes, the Rust type {ty} is {size}")]
    Size {
        /// Map name.
        map: String,
        /// `key` or `value`.
        what: &'static str,
        /// Declared size.
        declared: u32,
        /// Size of the Rust type.
        size: usize,
        /// The Rust type.
        ty: &'static str,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: String,
        /// The error.
        source: MapError,
    },
    /// The operation needs (or refuses) a per-CPU map.
    #[error("map {map}: {reason}")]
    Kind {
        /// Map name.
        map: String,
        /// Why.
        reason: &'static str,
    },
}

/// A map viewed with key type `K` and value type `V`.
#[derive(Debug, Clone)]
pub struct TypedMap<K, V> {
    map: Arc<dyn Map>,
    percpu: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

fn is_percpu(map_type: u32) -> bool {
    matches!(
        map_type,
        types::PERCPU_ARRAY | types::PERCPU_HASH | types::LRU_PERCPU_HASH
    )
}

impl<K: Pod, V: Pod> TypedMap<K, V> {
    /// Views `map` with these types; the sizes must match its declaration.
    pub fn new(map: Arc<dyn Map>) -> Result<TypedMap<K, V>, TypedError> {
        let spec = map.spec();
        for (what, declared, size, ty) in [
            (
                "key",
                spec.key_size,
                size_of::<K>(),
                std::any::type_name::<K>(),
            ),
            (
                "value",
                spec.value_size,
                size_of::<V>(),
                std::any::type_name::<V>(),
            ),
        ] {
            if declared as usize != size {
                return Err(TypedError::Size {
                    map: spec.name.clone(),
                    what,
                    declared,
                    size,
                    ty,
                });
            }
        }
        Ok(TypedMap {
            percpu: is_percpu(spec.map_type),
            map,
            _types: PhantomData,
        })
    }

    /// The underlying map.
    pub fn map(&self) -> &Arc<dyn Map> {
        &self.map
    }

    fn err(&self, source: MapError) -> TypedError {
        TypedError::Map {
            map: self.map.spec().name.clone(),
            source,
        }
    }

    fn kind(&self, percpu: bool) -> Result<(), TypedError> {
        if self.percpu == percpu {
            return Ok(());
        }
        Err(TypedError::Kind {
            map: self.map.spec().name.clone(),
            reason: if percpu {
                "not a per-CPU map: use get/update"
            } else {
                "a per-CPU map: use get_percpu/update_percpu"
            },
        })
    }

    /// The value of `key`, `None` when absent.
    pub fn get(&self, key: &K) -> Result<Option<V>, TypedError> {
        self.kind(false)?;
        match self.map.read(bytemuck::bytes_of(key)) {
            Ok(v) => Ok(Some(bytemuck::pod_read_unaligned(&v[..size_of::<V>()]))),
            Err(MapError::NotFound) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Creates or replaces (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
    pub fn update(&self, key: &K, value: &V, flags: u64) -> Result<(), TypedError> {
        self.kind(false)?;
        self.map
            .write(bytemuck::bytes_of(key), bytemuck::bytes_of(value), flags)
            .map_err(|e| self.err(e))
    }

    /// Every CPU slot's value of `key`, `None` when absent.
    pub fn get_percpu(&self, key: &K) -> Result<Option<Vec<V>>, TypedError> {
        self.kind(true)?;
        match self.map.read(bytemuck::bytes_of(key)) {
            Ok(v) => Ok(Some(self.split(&v))),
            Err(MapError::NotFound) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Sets every CPU slot of `key` (`values.len()` must be the map's CPU count).
    pub fn update_percpu(&self, key: &K, values: &[V], flags: u64) -> Result<(), TypedError> {
        self.kind(true)?;
        let stride = round_up8(size_of::<V>() as u64) as usize;
        let mut bytes = vec![0u8; stride * values.len()];
        for (chunk, v) in bytes.chunks_mut(stride).zip(values) {
            chunk[..size_of::<V>()].copy_from_slice(bytemuck::bytes_of(v));
        }
        self.map
            .write(bytemuck::bytes_of(key), &bytes, flags)
            .map_err(|e| self.err(e))
    }

    fn split(&self, bytes: &[u8]) -> Vec<V> {
        let stride = round_up8(size_of::<V>() as u64) as usize;
        bytes
            .chunks(stride)
            .filter(|c| c.len() >= size_of::<V>())
            .map(|c| bytemuck::pod_read_unaligned(&c[..size_of::<V>()]))
            .collect()
    }

    /// Deletes `key`; `false` when it was absent.
    pub fn delete(&self, key: &K) -> Result<bool, TypedError> {
        match self.map.delete(bytemuck::bytes_of(key)) {
            Ok(()) => Ok(true),
            Err(MapError::NotFound) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every key, in the map's iteration order (bounded by `max_entries`, so a map changed
    /// meanwhile cannot make it loop).
    pub fn keys(&self) -> impl Iterator<Item = K> + '_ {
        let mut key: Option<Vec<u8>> = None;
        let mut budget = self.map.spec().max_entries as u64 + 1;
        std::iter::from_fn(move || {
            if budget == 0 {
                return None;
            }
            budget -= 1;
            let next = self.map.next_key(key.as_deref()).ok().flatten()?;
            let k = bytemuck::pod_read_unaligned(&next[..size_of::<K>()]);
            key = Some(next);
            Some(k)
        })
    }

    /// Every (key, value) pair; per-CPU maps yield CPU slot 0's value (use
    /// [`TypedMap::iter_percpu`] for all of them). Keys deleted while iterating are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.keys().filter_map(move |k| {
            let v = self.map.read(bytemuck::bytes_of(&k)).ok()?;
            Some((k, bytemuck::pod_read_unaligned(&v[..size_of::<V>()])))
        })
    }

    /// Every key with all of its CPU slots' values.
    pub fn iter_percpu(&self) -> impl Iterator<Item = (K, Vec<V>)> + '_ {
        self.keys().filter_map(move |k| {
            let v = self.map.read(bytemuck::bytes_of(&k)).ok()?;
            Some((k, self.split(&v)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{create, flags};
    use crate::object::spec::MapSpec;

    fn spec(map_type: u32, key_size: u32, value_size: u32) -> MapSpec {
        MapSpec {
            name: "t".into(),
            map_type,
            key_size,
            value_size,
            max_entries: 16,
            ..MapSpec::default()
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: u32,
    }

    #[test]
    fn hash_get_update_delete_iterate() {
        let m: TypedMap<u32, Pair> =
            TypedMap::new(create(&spec(types::HASH, 4, 8), 2).unwrap()).unwrap();
        assert_eq!(m.get(&1).unwrap(), None);
        m.update(&1, &Pair { a: 1, b: 2 }, flags::BPF_ANY).unwrap();
        m.update(&2, &Pair { a: 3, b: 4 }, flags::BPF_ANY).unwrap();
        assert!(matches!(
            m.update(&1, &Pair { a: 0, b: 0 }, flags::BPF_NOEXIST),
            Err(TypedError::Map {
                source: MapError::Exists,
                ..
            })
        ));
        assert_eq!(m.get(&1).unwrap(), Some(Pair { a: 1, b: 2 }));
        let mut all: Vec<(u32, Pair)> = m.iter().collect();
        all.sort_by_key(|(k, _)| *k);
        assert_eq!(
            all,
            vec![(1, Pair { a: 1, b: 2 }), (2, Pair { a: 3, b: 4 })]
        );
        assert!(m.delete(&1).unwrap());
        assert!(!m.delete(&1).unwrap());
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![2]);
        assert!(m.get_percpu(&2).is_err(), "not per-CPU");
    }

    #[test]
    fn percpu_values_and_size_checks() {
        let m: TypedMap<u32, u32> =
            TypedMap::new(create(&spec(types::PERCPU_ARRAY, 4, 4), 3).unwrap()).unwrap();
        m.update_percpu(&5, &[7, 8, 9], flags::BPF_ANY).unwrap();
        assert_eq!(m.get_percpu(&5).unwrap(), Some(vec![7, 8, 9]));
        assert!(m.get(&5).is_err(), "per-CPU needs get_percpu");
        let wrong = TypedMap::<u64, u32>::new(create(&spec(types::ARRAY, 4, 4), 1).unwrap());
        assert!(matches!(wrong, Err(TypedError::Size { what: "key", .. })));
    }
}

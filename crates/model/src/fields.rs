//! Field classes: which kinds of personal data a response carried.
//!
//! piiwatch never stores personal data values, only which classes of field
//! were returned for which subject (`name`, `phone`, `address`,
//! `entrance_code`, ...). Classes are registered as they are first seen and
//! each gets one bit of a [`FieldSet`]. The vocabulary is small in practice;
//! after [`FieldClasses::CAPACITY`] named classes, any further name maps to the
//! catch-all class [`FieldClasses::OVERFLOW`] rather than failing the run.

use std::fmt;

/// A set of field classes, one bit each.
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldSet(pub u64);

impl FieldSet {
    /// The empty set.
    pub const EMPTY: FieldSet = FieldSet(0);

    /// The set holding one class.
    pub fn single(bit: u8) -> Self {
        debug_assert!(bit < 64);
        FieldSet(1u64 << bit)
    }

    /// Adds a class.
    pub fn insert(&mut self, bit: u8) {
        debug_assert!(bit < 64);
        self.0 |= 1u64 << bit;
    }

    /// Whether the class is in the set.
    pub fn contains(self, bit: u8) -> bool {
        bit < 64 && self.0 & (1u64 << bit) != 0
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, lowest bit first.
    pub fn bits(self) -> impl Iterator<Item = u8> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            Some(bit)
        })
    }

    /// Number of classes.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
}

impl std::ops::BitOr for FieldSet {
    type Output = FieldSet;
    fn bitor(self, rhs: Self) -> Self {
        FieldSet(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for FieldSet {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldSet({:#x})", self.0)
    }
}

/// The registry of field class names and their bits.
#[derive(Clone, Debug, Default)]
pub struct FieldClasses {
    names: Vec<Box<str>>,
}

impl FieldClasses {
    /// Named classes before overflow.
    pub const CAPACITY: usize = 63;
    /// The catch-all bit for names past capacity.
    pub const OVERFLOW: u8 = 63;
    /// The catch-all's display name.
    pub const OVERFLOW_NAME: &'static str = "(other)";
    /// The class given to subjects whose fields neither the input labels nor
    /// the data map name, so that scope still reports them.
    pub const UNCLASSIFIED: &'static str = "unclassified";

    /// The bit of `name`, registering it if new.
    #[inline]
    pub fn bit(&mut self, name: &str) -> u8 {
        if let Some(pos) = self.names.iter().position(|n| &**n == name) {
            return pos as u8;
        }
        if self.names.len() >= Self::CAPACITY {
            return Self::OVERFLOW;
        }
        self.names.push(name.into());
        (self.names.len() - 1) as u8
    }

    /// The bit of `name` if registered.
    pub fn get(&self, name: &str) -> Option<u8> {
        self.names.iter().position(|n| &**n == name).map(|p| p as u8)
    }

    /// The name of a bit.
    pub fn name(&self, bit: u8) -> &str {
        self.names.get(bit as usize).map_or(Self::OVERFLOW_NAME, |n| n)
    }

    /// Names of the classes in a set, in bit order.
    pub fn names(&self, set: FieldSet) -> impl Iterator<Item = &str> + '_ {
        set.bits().map(move |b| self.name(b))
    }

    /// Registered class names in bit order.
    pub fn all(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(|n| &**n)
    }

    /// Number of registered classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_capacity_fall_into_the_overflow_class() {
        let mut f = FieldClasses::default();
        for i in 0..FieldClasses::CAPACITY {
            assert_eq!(f.bit(&format!("c{i}")) as usize, i);
        }
        assert_eq!(f.bit("one-too-many"), FieldClasses::OVERFLOW);
        assert_eq!(f.name(FieldClasses::OVERFLOW), FieldClasses::OVERFLOW_NAME);
        assert_eq!(f.bit("c3"), 3);
    }

    #[test]
    fn field_set_iterates_its_bits() {
        let mut s = FieldSet::EMPTY;
        s.insert(5);
        s.insert(0);
        s.insert(63);
        assert_eq!(s.bits().collect::<Vec<_>>(), vec![0, 5, 63]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(63) && !s.contains(1));
    }
}

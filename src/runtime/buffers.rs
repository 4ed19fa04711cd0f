//! The buffer pool: byte buffers for socket reads and frame encoding, in power-of-two size
//! classes, under a hard cap on the total bytes held (DESIGN.md, "Limits and resources").
//!
//! Guarantees of [`BufferPool`]:
//! - classes are 4 KiB, 8 KiB, …, 1 MiB ([`CLASS_COUNT`] of them); a request gets the smallest
//!   class that fits, and a buffer's capacity is exactly its class size;
//! - bytes held, in use plus free, never exceed the cap. When a new buffer would pass it, free
//!   buffers of other classes are dropped first (largest class first); if that cannot make room,
//!   the request is refused with [`PoolError::Exhausted`] and nothing is dropped;
//! - a released buffer is zeroed over its whole capacity before it is pooled, so no bytes of one
//!   connection reach another, even through a buffer's spare capacity;
//! - a buffer whose capacity changed while lent (a writer grew it) is dropped on release rather
//!   than pooled, so a class never holds a buffer of the wrong size.
//!
//! The pool is single-owner (the reactor's), like everything in the runtime: no locks.

use std::fmt;

/// Size of the smallest class: 4 KiB.
pub const MIN_CLASS_BYTES: usize = 4 << 10;
/// Size of the largest class: 1 MiB, the default maximum frame.
pub const MAX_CLASS_BYTES: usize = 1 << 20;
/// Number of size classes: 4 KiB to 1 MiB, doubling.
pub const CLASS_COUNT: usize = 9;

/// A pool of zeroed byte buffers with a cap on the total bytes held.
///
/// Driving contract: [`BufferPool::acquire`] a buffer, fill it, and hand it back with
/// [`BufferPool::release`] when done. A buffer dropped instead of released is freed, but the
/// pool still counts its bytes as in use: the cap shrinks by its class size for good.
#[derive(Debug)]
pub struct BufferPool {
    cap_bytes: usize,
    /// Free buffers per class; each has `len == capacity == class size` and is all zeros.
    free: [Vec<Vec<u8>>; CLASS_COUNT],
    stats: PoolStats,
}

impl BufferPool {
    /// An empty pool that will never hold more than `cap_bytes` in total. Buffers are allocated
    /// on demand; a cap below [`MIN_CLASS_BYTES`] refuses every request.
    pub fn new(cap_bytes: usize) -> BufferPool {
        BufferPool { cap_bytes, free: Default::default(), stats: PoolStats::default() }
    }

    /// Lends an empty buffer (`len() == 0`) whose capacity is the smallest class of at least
    /// `min_len` bytes, reusing a free one of that class if there is one.
    pub fn acquire(&mut self, min_len: usize) -> Result<PooledBuf, PoolError> {
        let class = class_index(min_len).ok_or(PoolError::TooLarge { min_len });
        let class = class.inspect_err(|_| self.stats.refusals += 1)?;
        let size = class_bytes(class);
        let mut vec = match self.free[class].pop() {
            Some(vec) => {
                self.stats.free_bytes -= size;
                vec
            }
            None => self.allocate(class)?,
        };
        vec.clear();
        self.stats.in_use_bytes += size;
        self.stats.high_water_bytes = self.stats.high_water_bytes.max(self.stats.in_use_bytes);
        self.stats.acquires += 1;
        Ok(PooledBuf { vec, class })
    }

    /// Takes a buffer back: zeroes it and keeps it for reuse. `buf` must come from this pool.
    pub fn release(&mut self, buf: PooledBuf) {
        let PooledBuf { mut vec, class } = buf;
        let size = class_bytes(class);
        self.stats.in_use_bytes = self.stats.in_use_bytes.saturating_sub(size);
        if vec.capacity() != size {
            // Grown (or shrunk) by a writer: pooling it would break the class invariant.
            return;
        }
        // Zero the whole capacity, not just `len`: spare capacity may hold earlier bytes.
        vec.clear();
        vec.resize(size, 0);
        self.free[class].push(vec);
        self.stats.free_bytes += size;
    }

    /// Counters for the metrics layer.
    pub fn stats(&self) -> PoolStats {
        PoolStats { cap_bytes: self.cap_bytes, ..self.stats }
    }

    /// The cap on bytes held, in use plus free.
    pub fn cap_bytes(&self) -> usize {
        self.cap_bytes
    }

    /// A new zeroed buffer of `class`, after dropping free buffers of other classes if the cap
    /// needs it. Refuses, dropping nothing, if buffers in use alone leave no room.
    fn allocate(&mut self, class: usize) -> Result<Vec<u8>, PoolError> {
        let size = class_bytes(class);
        if self.stats.in_use_bytes.saturating_add(size) > self.cap_bytes {
            self.stats.refusals += 1;
            return Err(PoolError::Exhausted { class_bytes: size, cap_bytes: self.cap_bytes });
        }
        self.reclaim(size);
        self.stats.allocations += 1;
        Ok(vec![0; size])
    }

    /// Drops free buffers, largest class first, until `size` more bytes fit under the cap.
    /// The caller has checked that dropping every free buffer would be enough.
    fn reclaim(&mut self, size: usize) {
        for class in (0..CLASS_COUNT).rev() {
            while self.held_bytes() + size > self.cap_bytes && self.free[class].pop().is_some() {
                self.stats.free_bytes -= class_bytes(class);
                self.stats.reclaims += 1;
            }
        }
    }

    fn held_bytes(&self) -> usize {
        self.stats.in_use_bytes + self.stats.free_bytes
    }
}

/// A buffer lent by a [`BufferPool`]: a `Vec<u8>` whose capacity is exactly its class size.
///
/// Writers must stay within the capacity: check `as_mut_vec().capacity()` (or
/// [`PooledBuf::class_bytes`]) before writing, and never push, extend or resize past it. A
/// buffer that grew anyway is not reused (see the module doc). `Debug` does not print the
/// contents.
pub struct PooledBuf {
    vec: Vec<u8>,
    class: usize,
}

impl PooledBuf {
    /// The underlying vector, to fill or drain. Its capacity must not change.
    pub fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.vec
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.vec
    }

    /// The size of this buffer's class: its capacity, and the most it may hold.
    pub fn class_bytes(&self) -> usize {
        class_bytes(self.class)
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PooledBuf({}/{} bytes)", self.vec.len(), self.class_bytes())
    }
}

/// Why a buffer could not be lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The request exceeds the largest class, [`MAX_CLASS_BYTES`].
    TooLarge {
        /// The length asked for.
        min_len: usize,
    },
    /// Lending a buffer of this class would take the pool past its cap, even after dropping
    /// every free buffer.
    Exhausted {
        /// The class size that was needed.
        class_bytes: usize,
        /// The pool's cap.
        cap_bytes: usize,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { min_len } => {
                write!(f, "buffer of {min_len} bytes exceeds the {MAX_CLASS_BYTES}-byte class")
            }
            Self::Exhausted { class_bytes, cap_bytes } => write!(
                f,
                "buffer pool exhausted: a {class_bytes}-byte buffer would exceed the \
                 {cap_bytes}-byte cap"
            ),
        }
    }
}

impl std::error::Error for PoolError {}

/// Counters of a [`BufferPool`], for export as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes lent and not yet released (by class size, not length).
    pub in_use_bytes: usize,
    /// Bytes held in free lists.
    pub free_bytes: usize,
    /// The most bytes ever in use at once.
    pub high_water_bytes: usize,
    /// The cap on bytes held, in use plus free.
    pub cap_bytes: usize,
    /// `acquire` calls refused, for either reason.
    pub refusals: u64,
    /// `acquire` calls that lent a buffer.
    pub acquires: u64,
    /// Buffers newly allocated (the rest of `acquires` reused a free one).
    pub allocations: u64,
    /// Free buffers dropped to make room for another class.
    pub reclaims: u64,
}

/// The smallest class holding `min_len` bytes; `None` above the largest.
fn class_index(min_len: usize) -> Option<usize> {
    if min_len > MAX_CLASS_BYTES {
        return None;
    }
    let size = min_len.max(MIN_CLASS_BYTES).next_power_of_two();
    Some((size.trailing_zeros() - MIN_CLASS_BYTES.trailing_zeros()) as usize)
}

fn class_bytes(class: usize) -> usize {
    MIN_CLASS_BYTES << class
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1 << 10;

    #[test]
    fn picks_the_smallest_class_that_fits() {
        let mut pool = BufferPool::new(64 << 20);
        let cases = [
            (0, 4 * KIB),
            (1, 4 * KIB),
            (4 * KIB, 4 * KIB),
            (4 * KIB + 1, 8 * KIB),
            (100 * KIB, 128 * KIB),
            (512 * KIB + 1, 1024 * KIB),
            (MAX_CLASS_BYTES, MAX_CLASS_BYTES),
        ];
        for (min_len, class) in cases {
            let buf = pool.acquire(min_len).unwrap();
            assert_eq!(buf.class_bytes(), class, "min_len {min_len}");
            pool.release(buf);
        }
        assert_eq!(class_index(MAX_CLASS_BYTES), Some(CLASS_COUNT - 1));
    }

    #[test]
    fn refuses_requests_above_the_largest_class() {
        let mut pool = BufferPool::new(64 << 20);
        let min_len = MAX_CLASS_BYTES + 1;
        assert_eq!(pool.acquire(min_len).unwrap_err(), PoolError::TooLarge { min_len });
        assert_eq!(
            pool.acquire(usize::MAX).unwrap_err(),
            PoolError::TooLarge { min_len: usize::MAX }
        );
        assert_eq!(pool.stats().refusals, 2);
        assert_eq!(pool.stats().cap_bytes, 64 << 20);
    }

    #[test]
    fn lends_empty_buffers_with_exact_class_capacity() {
        let mut pool = BufferPool::new(64 << 20);
        for class in 0..CLASS_COUNT {
            let mut buf = pool.acquire(class_bytes(class)).unwrap();
            assert!(buf.as_slice().is_empty());
            assert_eq!(buf.as_mut_vec().capacity(), buf.class_bytes());
        }
    }

    #[test]
    fn enforces_the_cap_with_a_typed_error() {
        let mut pool = BufferPool::new(20 * KIB);
        let a = pool.acquire(8 * KIB).unwrap();
        let _b = pool.acquire(8 * KIB).unwrap();
        let exhausted = PoolError::Exhausted { class_bytes: 8 * KIB, cap_bytes: 20 * KIB };
        assert_eq!(pool.acquire(5 * KIB).unwrap_err(), exhausted);
        assert!(pool.acquire(4 * KIB).is_ok());
        assert_eq!(pool.stats().refusals, 1);
        pool.release(a);
        assert!(pool.acquire(8 * KIB).is_ok());
    }

    #[test]
    fn reuses_released_buffers_without_allocating() {
        let mut pool = BufferPool::new(64 << 20);
        let buf = pool.acquire(10 * KIB).unwrap();
        pool.release(buf);
        assert_eq!(pool.stats().free_bytes, 16 * KIB);
        let mut buf = pool.acquire(16 * KIB).unwrap();
        assert_eq!(buf.as_mut_vec().capacity(), 16 * KIB);
        let stats = pool.stats();
        assert_eq!((stats.acquires, stats.allocations), (2, 1));
        assert_eq!((stats.in_use_bytes, stats.free_bytes), (16 * KIB, 0));
    }

    #[test]
    fn zeroes_buffers_on_release() {
        let mut pool = BufferPool::new(64 << 20);
        let mut buf = pool.acquire(4 * KIB).unwrap();
        buf.as_mut_vec().resize(4 * KIB, 0xa5);
        // Spare capacity too: shorten after writing, as a parser consuming a prefix would.
        buf.as_mut_vec().truncate(10);
        pool.release(buf);
        let pooled = &pool.free[0][0];
        assert_eq!(pooled.len(), 4 * KIB);
        assert!(pooled.iter().all(|&b| b == 0));
        let mut again = pool.acquire(1).unwrap();
        assert!(again.as_slice().is_empty());
        let capacity = again.as_mut_vec().capacity();
        again.as_mut_vec().resize(capacity, 0);
        assert!(again.as_slice().iter().all(|&b| b == 0));
    }

    #[test]
    fn grown_buffer_is_dropped_not_pooled() {
        let mut pool = BufferPool::new(64 << 20);
        let mut buf = pool.acquire(4 * KIB).unwrap();
        buf.as_mut_vec().resize(5 * KIB, 1);
        pool.release(buf);
        let stats = pool.stats();
        assert_eq!((stats.in_use_bytes, stats.free_bytes), (0, 0));
    }

    #[test]
    fn tracks_the_high_water_mark() {
        let mut pool = BufferPool::new(64 << 20);
        let a = pool.acquire(64 * KIB).unwrap();
        let b = pool.acquire(4 * KIB).unwrap();
        pool.release(a);
        let c = pool.acquire(8 * KIB).unwrap();
        assert_eq!(pool.stats().high_water_bytes, 68 * KIB);
        assert_eq!(pool.stats().in_use_bytes, 12 * KIB);
        pool.release(b);
        pool.release(c);
        assert_eq!(pool.stats().high_water_bytes, 68 * KIB);
        assert_eq!(pool.stats().in_use_bytes, 0);
    }

    #[test]
    fn reclaims_free_buffers_of_other_classes_at_the_cap() {
        let mut pool = BufferPool::new(32 * KIB);
        let small: Vec<_> = (0..4).map(|_| pool.acquire(4 * KIB).unwrap()).collect();
        let medium = pool.acquire(16 * KIB).unwrap();
        for buf in small {
            pool.release(buf);
        }
        pool.release(medium);
        assert_eq!(pool.stats().free_bytes, 32 * KIB);
        // 32 KiB needs everything: the 16 KiB buffer and all four 4 KiB ones go.
        let big = pool.acquire(32 * KIB).unwrap();
        let stats = pool.stats();
        assert_eq!((stats.reclaims, stats.free_bytes, stats.in_use_bytes), (5, 0, 32 * KIB));
        pool.release(big);
        // The only free buffer is 32 KiB, of another class: it goes to make room for 8 KiB.
        let _mid = pool.acquire(8 * KIB).unwrap();
        assert_eq!(pool.stats().reclaims, 6);
    }

    #[test]
    fn reclaims_largest_free_class_first_and_only_what_is_needed() {
        let mut pool = BufferPool::new(32 * KIB);
        let a = pool.acquire(4 * KIB).unwrap();
        let b = pool.acquire(4 * KIB).unwrap();
        let c = pool.acquire(16 * KIB).unwrap();
        pool.release(a);
        pool.release(b);
        pool.release(c);
        let _held = pool.acquire(8 * KIB).unwrap(); // at the cap: 8 KiB in use, 24 KiB free
        let _new = pool.acquire(8 * KIB).unwrap(); // 8 KiB short: dropping the 16 KiB one is enough
        let stats = pool.stats();
        assert_eq!((stats.reclaims, stats.free_bytes), (1, 8 * KIB));
    }

    #[test]
    fn refuses_without_reclaiming_when_buffers_in_use_fill_the_cap() {
        let mut pool = BufferPool::new(16 * KIB);
        let a = pool.acquire(4 * KIB).unwrap();
        let _b = pool.acquire(8 * KIB).unwrap();
        pool.release(a);
        assert!(matches!(pool.acquire(16 * KIB), Err(PoolError::Exhausted { .. })));
        let stats = pool.stats();
        assert_eq!((stats.reclaims, stats.free_bytes), (0, 4 * KIB));
    }

    #[test]
    fn cap_below_the_smallest_class_refuses_everything() {
        let mut pool = BufferPool::new(MIN_CLASS_BYTES - 1);
        assert!(matches!(pool.acquire(0), Err(PoolError::Exhausted { .. })));
    }

    #[test]
    fn debug_does_not_print_contents() {
        let mut pool = BufferPool::new(64 << 20);
        let mut buf = pool.acquire(0).unwrap();
        buf.as_mut_vec().extend_from_slice(b"secret");
        assert_eq!(format!("{buf:?}"), "PooledBuf(6/4096 bytes)");
    }
}

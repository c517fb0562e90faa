//! The global allocator of both binaries: mimalloc (docs/decisions/0007-mimalloc.md), asked
//! for a plain block whenever a plain block is aligned enough.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, whose fast
//! path needs a block of at most 1 KiB with a free block already at the right alignment; any
//! larger request with Rust's usual 8-byte alignment whose size class is not a power of two
//! (1,500 bytes, say) then takes mimalloc's generic path and over-allocates by the alignment.
//! Yet every mimalloc block of 16 bytes or more is 16-byte aligned (`alloc.c` asserts it), and
//! smaller ones 8-byte aligned, while a Rust layout's size is a multiple of its alignment: so
//! `mi_malloc` serves every alignment up to 16, and only larger ones go to the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// What every `mi_malloc` block is aligned to, given a size that is a multiple of it
/// (`MI_MAX_ALIGN_SIZE` in mimalloc's `types.h`).
const PLAIN_ALIGN: usize = 16;

pub struct MiMalloc;

// SAFETY: each call returns memory from mimalloc that satisfies `layout` (see the module
// docs for why plain blocks do up to PLAIN_ALIGN), or null on failure; `dealloc` and
// `realloc` take only pointers that these calls returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls, any size.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's contract); the
        // new size keeps the alignment's multiple, as `Layout` requires.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 64 KiB (and some far larger) at every alignment up to 4 KiB comes back
    /// aligned, keeps its bytes through growing and shrinking, and frees.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = MiMalloc;
        let sizes = (1usize..=4096)
            .chain((4097..65_536).step_by(997))
            .chain([1 << 20, 5 << 20]);
        for size in sizes {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
                let Ok(layout) = Layout::from_size_align(size.next_multiple_of(align), align)
                else {
                    continue;
                };
                // SAFETY: a non-zero layout; the pointer is used within it and freed once.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{layout:?}"
                    );
                    p.write_bytes(0xA5, layout.size());
                    let grown = a.realloc(p, layout, layout.size() * 2);
                    assert!((grown as usize).is_multiple_of(align), "{layout:?} grown");
                    assert!((0..layout.size()).all(|i| *grown.add(i) == 0xA5));
                    let grown_layout = Layout::from_size_align(layout.size() * 2, align).unwrap();
                    let shrunk = a.realloc(grown, grown_layout, layout.size());
                    assert!((shrunk as usize).is_multiple_of(align), "{layout:?} shrunk");
                    assert!((0..layout.size()).all(|i| *shrunk.add(i) == 0xA5));
                    a.dealloc(shrunk, layout);
                    let z = a.alloc_zeroed(layout);
                    assert!((z as usize).is_multiple_of(align), "{layout:?} zeroed");
                    assert!((0..layout.size()).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}

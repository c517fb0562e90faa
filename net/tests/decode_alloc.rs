//! The decoder never allocates from a count the buffer does not back, and never more than
//! its limits allow.
//!
//! This file installs a counting global allocator, so it is its own test binary. Counters
//! are per thread, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use net::resp3::{Frame, Limits, decode};
use proptest::collection::vec;
use proptest::prelude::*;

struct Counting;

thread_local! {
    // `const` initialisation and no destructor: reading these never allocates, which an
    // allocator must not do.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with` fails only while the thread is being torn down, when nothing is measured.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    let _ = TOTAL.try_with(|total| total.set(total.get() + size));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which `System.alloc` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `alloc`; `ptr` came from this allocator, hence from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one `decode` call allocated.
#[derive(Debug)]
struct Allocated {
    largest: usize,
    total: usize,
}

fn decode_measured(buf: &mut BytesMut, limits: &Limits) -> Allocated {
    LARGEST.set(0);
    TOTAL.set(0);
    let result = decode(buf, limits);
    let allocated = Allocated {
        largest: LARGEST.get(),
        total: TOTAL.get(),
    };
    drop(result);
    allocated
}

#[test]
fn counter_sees_what_decode_allocates() {
    let mut buf = BytesMut::from(&b"*3\r\n:1\r\n:2\r\n:3\r\n"[..]);
    let allocated = decode_measured(&mut buf, &Limits::default());
    assert!(allocated.largest >= 3 * size_of::<Frame>(), "{allocated:?}");
}

#[test]
fn announced_counts_allocate_nothing_until_backed_by_data() {
    let limits = Limits::default();
    // Within every limit, but the data has not arrived.
    for header in [
        &b"*1000000\r\n"[..],
        b"%1000000\r\n",
        b"$60000000\r\n",
        b"*1\r\n*1000000\r\n:1\r\n",
    ] {
        let mut buf = BytesMut::from(header);
        let allocated = decode_measured(&mut buf, &limits);
        assert!(
            allocated.total < 1024,
            "{:?}: {allocated:?}",
            header.escape_ascii()
        );
    }
}

#[test]
fn headers_past_limits_allocate_nothing() {
    let limits = Limits::default();
    for header in [
        &b"$4294967296\r\n"[..],
        b"*2000000\r\n",
        b"=99999999999\r\n",
    ] {
        let mut buf = BytesMut::from(header);
        let allocated = decode_measured(&mut buf, &limits);
        assert!(
            allocated.total < 1024,
            "{:?}: {allocated:?}",
            header.escape_ascii()
        );
    }
}

#[test]
fn deep_nesting_allocates_only_up_to_max_depth() {
    let limits = Limits::default();
    let mut buf = BytesMut::from(&b"*1\r\n".repeat(10_000)[..]);
    let allocated = decode_measured(&mut buf, &limits);
    assert!(allocated.total < 1024, "{allocated:?}");
}

fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 4096,
        max_bulk_bytes: 512,
        max_elements: 64,
        max_depth: 8,
        max_inline_bytes: 256,
    }
}

proptest! {
    /// Whatever the bytes, one allocation is at most the largest frame or aggregate the
    /// limits allow, and all of them together are proportional to the input.
    #[test]
    fn arbitrary_bytes_allocate_within_limits(
        prefix in prop::sample::select(vec![&b""[..], b"*", b"%", b"|", b"$", b"*3\r\n"]),
        body in vec(any::<u8>(), 0..1024),
    ) {
        let limits = small_limits();
        let mut input = prefix.to_vec();
        input.extend_from_slice(&body);
        let mut buf = BytesMut::from(&input[..]);
        let pair = size_of::<(Frame, Frame)>();
        let allocated = decode_measured(&mut buf, &limits);
        prop_assert!(allocated.largest <= limits.max_frame_bytes.max(limits.max_elements * pair));
        prop_assert!(allocated.total <= 1024 + input.len() * pair);
    }
}

//! The reader's fast path allocates nothing per event once the identifiers
//! it meets are interned: counted with a global allocator wrapper.

// A global allocator is the one way to count allocations; the unsafe is the
// `GlobalAlloc` contract, forwarded unchanged to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use ingest::{LineRef, Quarantined, Reader, ReaderOptions, Visitor};
use model::{Event, Symbols};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Sum(u64);

impl Visitor for Sum {
    fn event(&mut self, _at: LineRef<'_>, e: &Event<'_>, _s: &Symbols) {
        if let Event::Access(a) = e {
            self.0 += a.subjects.len() as u64 + 1;
        } else {
            self.0 += 1;
        }
    }
    fn quarantined(&mut self, _q: &Quarantined<'_>) {}
}

#[test]
fn the_fast_path_allocates_nothing_per_event_once_ids_are_known() {
    let mut lines = String::new();
    for i in 0..500 {
        let c = i % 50;
        lines.push_str(&format!(
            concat!(
                r#"{{"class_uid":6003,"category_uid":6,"type_uid":600302,"activity_id":2,"status_id":1,"time":{t},"#,
                r#""actor":{{"user":{{"uid":"c{c:08}","type":"customer"}},"session":{{"uid":"t{c:016x}","issuer":"auth-key-2019"}}}},"#,
                r#""src_endpoint":{{"ip":"223.38.{a}.{b}","location":{{"country":"KR"}},"autonomous_system":{{"number":9644,"name":"SK Telecom"}}}},"#,
                r#""http_request":{{"user_agent":"ShopApp/8.14.2 (iPhone; iOS 18.4; Scale/3.00)"}},"#,
                r#""api":{{"operation":"GET /v1/address-book","service":{{"name":"address"}}}},"#,
                r#""resources":[{{"uid":"c{c:08}","type":"customer","labels":["name","phone","address"]}},{{"uid":"r{c:08}-1","type":"recipient","labels":["name","phone","address"]}}],"#,
                r#""metadata":{{"product":{{"name":"shop-gateway"}},"version":"1.3.0"}}}}"#,
                "\n",
                r#"{{"class_uid":3002,"activity_id":1,"status_id":1,"time":{t},"user":{{"uid":"c{c:08}"}},"session":{{"uid":"t{c:016x}","issuer":"auth-key-2019","expiration_time":{t}}},"src_endpoint":{{"ip":"223.38.{a}.{b}"}}}}"#,
                "\n",
                r#"{{"class_uid":6003,"activity_id":2,"status_id":1,"time":{t},"actor":{{"user":{{"uid":"c{c:08}"}}}},"src_endpoint":{{"ip":"223.38.{a}.{b}"}},"api":{{"operation":"GET /v1/me"}},"resources":[{{"uid":"c{c:08}","type":"customer"}}]}}"#,
                "\n",
            ),
            t = 1_743_433_200_000u64 + i,
            c = c,
            a = c / 10,
            b = c % 10,
        ));
    }
    let mut reader = Reader::new(ReaderOptions::default());
    let mut symbols = Symbols::default();
    let mut sum = Sum(0);
    // First pass: every id is new, so the symbol tables grow.
    let first = reader.read_bytes("warm", lines.as_bytes(), &mut symbols, &mut sum);
    assert_eq!((first.events, first.quarantined), (1500, 0));
    // Second pass over the same ids: nothing new to intern.
    let before = ALLOCS.load(Ordering::Relaxed);
    let second = reader.read_bytes("again", lines.as_bytes(), &mut symbols, &mut sum);
    let allocations = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(second.events, 1500);
    // A read allocates its cursor (the input's name, the chunk list) once;
    // nothing may be allocated per event.
    assert!(allocations <= 4, "{allocations} allocations while reading 1500 events whose ids are known");
}

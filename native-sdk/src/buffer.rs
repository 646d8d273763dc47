//! Per-thread event buffers. The calling thread appends events to its
//! current chunk (a plain store and a release store of the length: no lock,
//! no allocation, no syscall); the collector reads what was published, from
//! any thread, so that idle threads are flushed too. A full chunk is retired
//! and replaced (the slow path, once per chunk).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use framelake_native_format::kind;

/// The static part of events, written once in the program; its address is
/// its id on the wire (8-aligned, so the low 3 bits carry the event kind).
#[repr(C, align(8))]
#[derive(Debug)]
pub struct Descriptor {
    pub kind: framelake_native_format::DescriptorKind,
    /// Logs: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: u8,
    pub line: u32,
    pub name: &'static str,
    pub target: &'static str,
    pub file: &'static str,
    pub unit: &'static str,
}

impl Descriptor {
    pub(crate) fn id(&'static self) -> u64 {
        self as *const Descriptor as u64
    }

    /// The descriptor an id of this process's buffers names.
    ///
    /// # Safety
    /// `id` must come from [`Descriptor::id`] (ids in the buffers only do).
    pub(crate) unsafe fn of(id: u64) -> &'static Descriptor {
        // SAFETY: by the caller's guarantee, a `&'static Descriptor`'s address.
        unsafe { &*(id as *const Descriptor) }
    }
}

/// Default bytes per chunk: 4096 span boundaries.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A chunk of one thread's events.
pub(crate) struct Chunk {
    ptr: *mut u8,
    cap: usize,
    /// Bytes written and published by the owning thread.
    committed: AtomicUsize,
    /// Set once the owning thread writes no more into it.
    retired: AtomicBool,
    /// Bytes the collector has taken (the collector's alone).
    taken: AtomicUsize,
}

// SAFETY: bytes below `committed` are never written again and are read only
// after an acquire load of `committed`; bytes above it are written by the
// owning thread only. The allocation lives as long as the chunk.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(cap: usize) -> Arc<Chunk> {
        let ptr = Box::into_raw(vec![0u8; cap].into_boxed_slice()).cast::<u8>();
        Arc::new(Chunk {
            ptr,
            cap,
            committed: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
        })
    }

    /// The bytes published and not yet taken; marks them taken. Also
    /// whether the chunk is done (retired and all taken).
    pub(crate) fn take(&self) -> (&[u8], bool) {
        let retired = self.retired.load(Ordering::Acquire);
        let end = self.committed.load(Ordering::Acquire);
        let from = self.taken.swap(end, Ordering::Relaxed);
        // SAFETY: [from, end) was published by the acquire load above and is
        // never written again; the collector takes each range once.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.add(from), end - from) };
        (bytes, retired)
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `cap` are those of the boxed slice made in `new`.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.cap)) });
        BYTES_IN_USE.fetch_sub(self.cap, Ordering::Relaxed);
    }
}

/// Bytes of chunks allocated, and the most there may be.
static BYTES_IN_USE: AtomicUsize = AtomicUsize::new(0);
static BYTES_LIMIT: AtomicUsize = AtomicUsize::new(64 << 20);
/// Events dropped because the memory limit was reached.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The most memory the threads' buffers may take together (64 MiB by
/// default); beyond it, events are dropped and counted.
pub fn set_memory_limit(bytes: usize) {
    BYTES_LIMIT.store(bytes, Ordering::Relaxed);
}

/// Events dropped by the calling threads so far (memory limit reached).
pub fn dropped_events() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A thread that recorded events, as the collector sees it.
pub(crate) struct ThreadEvents {
    pub(crate) stream_id: framelake_native_format::Id,
    pub(crate) thread_id: u64,
    pub(crate) name: String,
    /// Its chunks, oldest first; the last is being written.
    pub(crate) chunks: Mutex<VecDeque<Arc<Chunk>>>,
    /// Set when the thread ended.
    pub(crate) ended: AtomicBool,
}

/// Every thread that recorded events.
pub(crate) static THREADS: Mutex<Vec<Arc<ThreadEvents>>> = Mutex::new(Vec::new());

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The calling thread's writing state.
struct Local {
    ptr: *mut u8,
    len: usize,
    cap: usize,
    committed: *const AtomicUsize,
    chunk: Option<Arc<Chunk>>,
    thread: Option<Arc<ThreadEvents>>,
    /// Set while formatting a log message (whose arguments might log).
    busy: bool,
}

impl Local {
    const EMPTY: Local = Local {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
        committed: std::ptr::null(),
        chunk: None,
        thread: None,
        busy: false,
    };

    /// Publishes the bytes written up to `len`.
    #[inline(always)]
    fn publish(&self) {
        // SAFETY: `committed` points into `chunk`, which `self` holds.
        unsafe { (*self.committed).store(self.len, Ordering::Release) };
    }

    /// A chunk with at least `needed` free bytes, or `false` (memory limit).
    #[cold]
    fn renew(&mut self, needed: usize) -> bool {
        let cap = needed.max(CHUNK_BYTES);
        let used = BYTES_IN_USE.fetch_add(cap, Ordering::Relaxed);
        if used + cap > BYTES_LIMIT.load(Ordering::Relaxed) {
            BYTES_IN_USE.fetch_sub(cap, Ordering::Relaxed);
            return false;
        }
        let thread = self.thread.get_or_insert_with(register_thread);
        let chunk = Chunk::new(cap);
        if let Some(old) = self.chunk.take() {
            old.retired.store(true, Ordering::Release);
        }
        lock(&thread.chunks).push_back(Arc::clone(&chunk));
        self.ptr = chunk.ptr;
        self.len = 0;
        self.cap = cap;
        self.committed = &chunk.committed;
        self.chunk = Some(chunk);
        true
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(chunk) = &self.chunk {
            chunk.retired.store(true, Ordering::Release);
        }
        if let Some(thread) = &self.thread {
            thread.ended.store(true, Ordering::Release);
        }
    }
}

thread_local! {
    static LOCAL: UnsafeCell<Local> = const { UnsafeCell::new(Local::EMPTY) };
}

fn register_thread() -> Arc<ThreadEvents> {
    let current = std::thread::current();
    let thread = Arc::new(ThreadEvents {
        stream_id: crate::ids::random_id(),
        thread_id: os_thread_id(),
        name: current.name().unwrap_or("unnamed").to_owned(),
        chunks: Mutex::new(VecDeque::new()),
        ended: AtomicBool::new(false),
    });
    lock(&THREADS).push(Arc::clone(&thread));
    thread
}

fn os_thread_id() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u64 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Appends a two-word event (span begin or end, frame, instant).
#[inline(always)]
pub(crate) fn push2(w0: u64, w1: u64) {
    let _ = LOCAL.try_with(|local| {
        // SAFETY: only this thread reaches its `Local`, and nothing here
        // calls out while the reference lives.
        let l = unsafe { &mut *local.get() };
        if l.cap - l.len >= 16 {
            // SAFETY: 16 bytes from `len` are within the chunk and unpublished.
            unsafe {
                l.ptr
                    .add(l.len)
                    .cast::<[u64; 2]>()
                    .write_unaligned([w0.to_le(), w1.to_le()]);
            }
            l.len += 16;
            l.publish();
        } else {
            push_slow(l, &[w0, w1], &[]);
        }
    });
}

/// Appends a three-word event (metrics).
#[inline(always)]
pub(crate) fn push3(w0: u64, w1: u64, w2: u64) {
    let _ = LOCAL.try_with(|local| {
        // SAFETY: as in `push2`.
        let l = unsafe { &mut *local.get() };
        if l.cap - l.len >= 24 {
            // SAFETY: 24 bytes from `len` are within the chunk and unpublished.
            unsafe {
                l.ptr.add(l.len).cast::<[u64; 3]>().write_unaligned([
                    w0.to_le(),
                    w1.to_le(),
                    w2.to_le(),
                ]);
            }
            l.len += 24;
            l.publish();
        } else {
            push_slow(l, &[w0, w1, w2], &[]);
        }
    });
}

/// Longest log message kept (longer ones are cut at a character boundary).
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;

/// Appends a log event, formatting its message in place.
pub(crate) fn push_log(descriptor: &'static Descriptor, ticks: i64, args: std::fmt::Arguments<'_>) {
    let _ = LOCAL.try_with(|local| {
        let local = local.get();
        let head = [descriptor.id() | kind::LOG, ticks as u64];
        // Each borrow of `Local` below is short: formatting may run user
        // code that records events (which then find `busy` set and the
        // chunk closed, and are dropped and counted).
        // SAFETY: only this thread reaches its `Local`.
        let l = unsafe { &mut *local };
        if l.busy {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(s) = args.as_str() {
            return push_message(l, head, s);
        }
        let room = l.cap - l.len;
        if room > 24 {
            // SAFETY: [len + 24, cap) is within the chunk and unpublished.
            let buf = unsafe { std::slice::from_raw_parts_mut(l.ptr.add(l.len + 24), room - 24) };
            let (len, cap) = (l.len, l.cap);
            // Closed while formatting: nested events take the slow path.
            l.cap = l.len;
            l.busy = true;
            let mut w = InPlace { buf, pos: 0 };
            let fits = std::fmt::write(&mut w, args).is_ok();
            let n = w.pos;
            // SAFETY: as above; the borrow before formatting has ended.
            let l = unsafe { &mut *local };
            l.cap = cap;
            l.busy = false;
            debug_assert_eq!(l.len, len, "nothing was written while formatting");
            let padded = 24 + n + framelake_native_format::padding(n);
            if fits && n <= MAX_MESSAGE && padded <= room {
                // SAFETY: the header's 24 bytes and the padding are within the chunk.
                unsafe {
                    l.ptr.add(l.len).cast::<[u64; 3]>().write_unaligned([
                        head[0].to_le(),
                        head[1].to_le(),
                        (n as u64).to_le(),
                    ]);
                    std::ptr::write_bytes(l.ptr.add(l.len + 24 + n), 0, padded - 24 - n);
                }
                l.len += padded;
                l.publish();
                return;
            }
        }
        // Slow: the message did not fit; format it aside.
        // SAFETY: only this thread reaches its `Local`.
        let l = unsafe { &mut *local };
        let cap = l.cap;
        l.cap = l.len;
        l.busy = true;
        let message = args.to_string();
        // SAFETY: as above; the formatting's borrows have ended.
        let l = unsafe { &mut *local };
        l.cap = cap;
        l.busy = false;
        push_message(l, head, &message);
    });
}

fn push_message(l: &mut Local, head: [u64; 2], message: &str) {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    push_slow(
        l,
        &[head[0], head[1], message.len() as u64],
        message.as_bytes(),
    );
}

/// Appends `words` then `bytes` padded to 8, renewing the chunk if needed.
#[cold]
fn push_slow(l: &mut Local, words: &[u64], bytes: &[u8]) {
    let size = words.len() * 8 + bytes.len() + framelake_native_format::padding(bytes.len());
    if l.busy || (l.cap - l.len < size && !l.renew(size)) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut at = l.len;
    for w in words {
        // SAFETY: `size` bytes from `len` are within the chunk and unpublished.
        unsafe { l.ptr.add(at).cast::<u64>().write_unaligned(w.to_le()) };
        at += 8;
    }
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), l.ptr.add(at), bytes.len());
        std::ptr::write_bytes(
            l.ptr.add(at + bytes.len()),
            0,
            framelake_native_format::padding(bytes.len()),
        );
    }
    l.len += size;
    l.publish();
}

/// A `fmt::Write` into a fixed slice that fails when it is full.
struct InPlace<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl std::fmt::Write for InPlace<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.pos + s.len();
        let slot = self.buf.get_mut(self.pos..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.pos = end;
        Ok(())
    }
}

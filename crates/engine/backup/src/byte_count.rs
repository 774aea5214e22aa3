//! A running count of bytes that one side adds to and a helper thread waits on: the base
//! backup's read-ahead waits for the tar to consume, the restore's write-back for the unpack to
//! write. Dropping the adding side stops the waiter (without waiting for it).

use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct State {
    bytes: u64,
    stopped: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The adding side.
pub(crate) struct ByteCount {
    shared: Shared,
}

/// The waiting side.
pub(crate) struct ByteCountWaiter {
    shared: Shared,
}

impl ByteCount {
    pub(crate) fn new() -> (ByteCount, ByteCountWaiter) {
        let shared: Shared = Arc::default();
        let waiter = ByteCountWaiter {
            shared: Arc::clone(&shared),
        };
        (ByteCount { shared }, waiter)
    }

    /// `bytes` more.
    pub(crate) fn add(&self, bytes: u64) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).bytes += bytes;
        wake.notify_all();
    }
}

impl Drop for ByteCount {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
        wake.notify_all();
    }
}

impl ByteCountWaiter {
    /// Wait until `ready` holds for the count so far: the count, or `None` once the adding
    /// side is gone.
    pub(crate) fn wait_until(&self, ready: impl Fn(u64) -> bool) -> Option<u64> {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !state.stopped && !ready(state.bytes) {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        (!state.stopped).then_some(state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiter_sees_the_count_and_the_end() {
        let (count, waiter) = ByteCount::new();
        let seen = std::thread::spawn(move || {
            let first = waiter.wait_until(|n| n >= 10);
            let after_drop = waiter.wait_until(|n| n >= 1000);
            (first, after_drop)
        });
        count.add(4);
        count.add(6);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(count);
        assert_eq!(seen.join().unwrap(), (Some(10), None));
    }
}

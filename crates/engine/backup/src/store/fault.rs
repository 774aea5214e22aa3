//! [`Faulty`]: a store wrapper that injects failures and delays, for tests of retries,
//! outages and cancellation.

use super::{ByteStream, DirListing, ObjectInfo, ObjectStore, Op, StoreError};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Which calls fail and how slow calls are.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail these calls (1-based, counting every call on the wrapper).
    pub fail_calls: BTreeSet<u64>,
    /// Fail each call with this probability (deterministic pseudo-random sequence).
    pub fail_probability: f64,
    /// Seed of that sequence.
    pub seed: u64,
    /// Only these operations are subject to injected failures (all when empty).
    pub only_ops: Vec<Op>,
    /// Added before every call.
    pub delay: Duration,
}

/// A store that fails and delays calls as planned; [`Faulty::set_outage`] fails everything.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    plan: FaultPlan,
    calls: AtomicU64,
    injected: AtomicU64,
    outage: AtomicBool,
    rng: Mutex<u64>,
}

impl<S: ObjectStore> Faulty<S> {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        let seed = plan.seed | 1;
        Faulty {
            inner,
            plan,
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            outage: AtomicBool::new(false),
            rng: Mutex::new(seed),
        }
    }

    /// While `true`, every call fails with a transient error (an outage).
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Failures injected so far.
    pub fn injected_failures(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn next_random(&self) -> f64 {
        // xorshift64: deterministic, good enough to spread failures in tests.
        let mut guard = match self.rng.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut x = *guard;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *guard = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn gate(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.plan.delay.is_zero() {
            tokio::time::sleep(self.plan.delay).await;
        }
        let applies = self.plan.only_ops.is_empty() || self.plan.only_ops.contains(&op);
        let fail = self.outage.load(Ordering::SeqCst)
            || (applies
                && (self.plan.fail_calls.contains(&n)
                    || (self.plan.fail_probability > 0.0
                        && self.next_random() < self.plan.fail_probability)));
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Transient {
                op,
                key: key.to_string(),
                message: format!("injected failure of call {n}"),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for Faulty<S> {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.gate(Op::Put, key).await?;
        self.inner.put(key, data).await
    }

    async fn put_stream(&self, key: &str, body: ByteStream) -> Result<u64, StoreError> {
        self.gate(Op::Put, key).await?;
        self.inner.put_stream(key, body).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.gate(Op::Get, key).await?;
        self.inner.get(key).await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.gate(Op::Get, key).await?;
        self.inner.get_stream(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.gate(Op::Head, key).await?;
        self.inner.head(key).await
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.gate(Op::List, dir).await?;
        self.inner.list(dir).await
    }

    async fn list_dir(&self, dir: &str) -> Result<DirListing, StoreError> {
        self.gate(Op::List, dir).await?;
        self.inner.list_dir(dir).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.gate(Op::Delete, key).await?;
        self.inner.delete(key).await
    }
}

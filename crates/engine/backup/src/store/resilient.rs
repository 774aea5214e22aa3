//! [`Resilient`]: wraps a store so every call has a timeout, transient failures are retried
//! with exponential backoff, and a [`CancellationToken`] stops calls (and waits) at once.

use super::{ByteStream, DirListing, ObjectInfo, ObjectStore, Op, StoreError};
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How calls are timed out and retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Timeout of one attempt of a small call (put/get of a whole object, head, list, delete).
    pub call_timeout: Duration,
    /// Timeout of a whole streamed upload or of opening a download stream.
    pub stream_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(6 * 3600),
        }
    }
}

/// A store whose calls time out, retry and can be cancelled.
#[derive(Debug)]
pub struct Resilient<S> {
    inner: S,
    policy: RetryPolicy,
    cancel: CancellationToken,
}

impl<S: ObjectStore> Resilient<S> {
    /// Wraps `inner`; cancelling `cancel` makes pending and future calls fail with
    /// [`StoreError::Cancelled`].
    pub fn new(inner: S, policy: RetryPolicy, cancel: CancellationToken) -> Self {
        Resilient {
            inner,
            policy,
            cancel,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn once<T, F>(&self, op: Op, key: &str, limit: Duration, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(StoreError::Cancelled { op, key: key.to_string() }),
            r = tokio::time::timeout(limit, fut) => match r {
                Ok(r) => r,
                Err(_) => Err(StoreError::Timeout { op, key: key.to_string(), after: limit }),
            },
        }
    }

    async fn retrying<T, F, Fut>(&self, op: Op, key: &str, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = self.policy.initial_backoff;
        let attempts = self.policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.once(op, key, self.policy.call_timeout, call()).await {
                Err(e) if e.is_retryable() && attempt < attempts => {
                    tracing::debug!(%op, key, attempt, error = %e, "object store call failed; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            return Err(StoreError::Cancelled { op, key: key.to_string() })
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for Resilient<S> {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.retrying(Op::Put, key, || self.inner.put(key, data.clone()))
            .await
    }

    /// Not retried as a whole (the body is consumed); the parts are retried by the client.
    async fn put_stream(&self, key: &str, body: ByteStream) -> Result<u64, StoreError> {
        self.once(
            Op::Put,
            key,
            self.policy.stream_timeout,
            self.inner.put_stream(key, body),
        )
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.retrying(Op::Get, key, || self.inner.get(key)).await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StoreError> {
        self.retrying(Op::Get, key, || self.inner.get_stream(key))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.retrying(Op::Head, key, || self.inner.head(key)).await
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.retrying(Op::List, dir, || self.inner.list(dir)).await
    }

    async fn list_dir(&self, dir: &str) -> Result<DirListing, StoreError> {
        self.retrying(Op::List, dir, || self.inner.list_dir(dir))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.retrying(Op::Delete, key, || self.inner.delete(key))
            .await
    }
}

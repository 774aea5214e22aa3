//! Leader election on a `coordination.k8s.io` Lease, so the operator can run with two replicas
//! and one node's loss does not stop failovers. Free of clock skew: a candidate takes a Lease
//! over only after seeing its record unchanged for a whole lease duration on its own clock
//! (never by comparing another process's timestamps with its own). Every write is
//! conditioned on the resourceVersion read, so two candidates never both win. A leader that
//! cannot renew within [`RENEW_DEADLINE`] stops leading (the process exits and restarts as a
//! candidate): it must not reconcile while another may.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::{Duration, Instant};

/// The Lease's name.
pub const LEASE_NAME: &str = "pgherd-operator";
/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(8);
/// A leader that could not renew for this long stops leading.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(6);
/// How often the leader renews and a candidate looks.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// A candidate for leadership.
#[derive(Debug)]
pub struct Candidate {
    api: Api<Lease>,
    identity: String,
    /// The record last seen and since when (this process's clock).
    seen: Option<(String, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Candidate {
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        Candidate {
            api: Api::namespaced(client, namespace),
            identity,
            seen: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: `true` when this candidate holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let record = lease.metadata.resource_version.clone().unwrap_or_default();
        if !mine {
            let unchanged_since = match &self.seen {
                Some((seen, since)) if *seen == record => *since,
                _ => {
                    self.seen = Some((record, Instant::now()));
                    return Ok(spec.holder_identity.is_none() && self.take(&mut lease).await?);
                }
            };
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(LEASE_DURATION, Duration::from_secs);
            if unchanged_since.elapsed() < duration {
                return Ok(false);
            }
            return self.take(&mut lease).await;
        }
        let mut renewed = spec;
        renewed.renew_time = Some(now());
        lease.spec = Some(renewed);
        self.replace(&lease).await
    }

    async fn take(&mut self, lease: &mut Lease) -> Result<bool, kube::Error> {
        let transitions = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        lease.spec = Some(self.spec(transitions + 1));
        let taken = self.replace(lease).await?;
        if taken {
            tracing::info!("{}: leading (took the Lease over)", self.identity);
        }
        Ok(taken)
    }

    /// Replace, conditioned on the resourceVersion read: a conflict means someone else wrote.
    async fn replace(&self, lease: &Lease) -> Result<bool, kube::Error> {
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up (on a graceful shutdown), so another candidate leads at once instead
    /// of after a whole lease duration. Only if it is still this candidate's.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        if self.replace(&lease).await.unwrap_or(false) {
            tracing::info!("{}: released the Lease", self.identity);
        }
    }

    /// Wait until this candidate leads.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!("leader election: {e}"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renew until a renewal fails for [`RENEW_DEADLINE`] or another holds the Lease; then
    /// return (leadership is lost).
    pub async fn keep(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    tracing::error!("{}: another operator holds the Lease", self.identity);
                    return;
                }
                Err(e) => tracing::warn!("leader election: cannot renew: {e}"),
            }
            if last_renewal.elapsed() >= RENEW_DEADLINE {
                tracing::error!(
                    "{}: could not renew the Lease for {RENEW_DEADLINE:?}",
                    self.identity
                );
                return;
            }
        }
    }
}

//! The instance pod's startup, readiness and liveness probes: HTTP on the instance manager's
//! `status` port, thresholds derived from `startDelay` and `livenessProbeTimeout`, then each
//! field of `spec.probes.*` the user set replaces the generated one.

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgherd_api::cluster::{LivenessProbe, ProbeWithStrategy};
use pgherd_api::Cluster;

/// Path of the startup probe.
pub const STARTUP_PATH: &str = "/startupz";
/// Path of the readiness probe.
pub const READINESS_PATH: &str = "/readyz";
/// Path of the liveness probe.
pub const LIVENESS_PATH: &str = "/healthz";

/// Seconds between probes unless the user says otherwise.
pub const DEFAULT_PERIOD: i32 = 10;
/// Seconds before a probe times out unless the user says otherwise.
pub const DEFAULT_TIMEOUT: i32 = 5;
/// `startDelay` when unset.
pub const DEFAULT_START_DELAY: i32 = 3600;
/// `livenessProbeTimeout` when unset.
pub const DEFAULT_LIVENESS_TIMEOUT: i32 = 30;
/// Readiness failures before an instance leaves its Services.
pub const READINESS_FAILURES: i32 = 3;

/// The probe fields a user may set, whichever probe they belong to.
#[derive(Debug, Clone, Copy, Default)]
struct Overrides {
    initial_delay_seconds: Option<i32>,
    timeout_seconds: Option<i32>,
    period_seconds: Option<i32>,
    success_threshold: Option<i32>,
    failure_threshold: Option<i32>,
    termination_grace_period_seconds: Option<i64>,
}

impl From<&ProbeWithStrategy> for Overrides {
    fn from(p: &ProbeWithStrategy) -> Self {
        Overrides {
            initial_delay_seconds: p.initial_delay_seconds,
            timeout_seconds: p.timeout_seconds,
            period_seconds: p.period_seconds,
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
            termination_grace_period_seconds: p.termination_grace_period_seconds,
        }
    }
}

impl From<&LivenessProbe> for Overrides {
    fn from(p: &LivenessProbe) -> Self {
        Overrides {
            initial_delay_seconds: p.initial_delay_seconds,
            timeout_seconds: p.timeout_seconds,
            period_seconds: p.period_seconds,
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
            termination_grace_period_seconds: p.termination_grace_period_seconds,
        }
    }
}

/// Failures needed to cover `seconds` at one probe every `period` seconds (at least one).
pub fn failures_to_cover(seconds: i32, period: i32) -> i32 {
    let period = period.max(1);
    let seconds = seconds.max(1);
    (seconds + period - 1) / period
}

fn probe(path: &str, scheme: &str, user: Overrides, failures_over: Option<i32>) -> Probe {
    let period = user.period_seconds.unwrap_or(DEFAULT_PERIOD);
    let failure_threshold = user
        .failure_threshold
        .or_else(|| failures_over.map(|s| failures_to_cover(s, period)));
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(crate::pod::STATUS_PORT_NAME.to_string()),
            scheme: Some(scheme.to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: user.initial_delay_seconds,
        period_seconds: Some(period),
        timeout_seconds: Some(user.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT)),
        success_threshold: user.success_threshold,
        failure_threshold,
        termination_grace_period_seconds: user.termination_grace_period_seconds,
        ..Probe::default()
    }
}

/// The three probes of the `postgres` container: (startup, readiness, liveness).
pub fn instance_probes(cluster: &Cluster) -> (Probe, Probe, Probe) {
    let spec = &cluster.spec;
    let probes = spec.probes.as_ref();
    // The instance manager's status port speaks TLS only (the instance protocol); the kubelet
    // does not verify the certificate of an HTTPS probe.
    let scheme = "HTTPS";
    let startup = probe(
        STARTUP_PATH,
        scheme,
        probes
            .and_then(|p| p.startup.as_ref())
            .map(Overrides::from)
            .unwrap_or_default(),
        Some(spec.start_delay.unwrap_or(DEFAULT_START_DELAY)),
    );
    let mut readiness_user = probes
        .and_then(|p| p.readiness.as_ref())
        .map(Overrides::from)
        .unwrap_or_default();
    readiness_user.failure_threshold = readiness_user
        .failure_threshold
        .or(Some(READINESS_FAILURES));
    let readiness = probe(READINESS_PATH, scheme, readiness_user, None);
    let liveness = probe(
        LIVENESS_PATH,
        scheme,
        probes
            .and_then(|p| p.liveness.as_ref())
            .map(Overrides::from)
            .unwrap_or_default(),
        Some(
            spec.liveness_probe_timeout
                .unwrap_or(DEFAULT_LIVENESS_TIMEOUT),
        ),
    );
    (startup, readiness, liveness)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pgherd_api::cluster::ProbesConfiguration;

    fn cluster() -> Cluster {
        Cluster::new("pg", Default::default())
    }

    #[test]
    fn startup_threshold_covers_start_delay() {
        let mut c = cluster();
        let (startup, _, _) = instance_probes(&c);
        assert_eq!(startup.failure_threshold, Some(360));
        assert_eq!(startup.period_seconds, Some(10));
        assert_eq!(startup.timeout_seconds, Some(5));
        c.spec.start_delay = Some(95);
        let (startup, _, _) = instance_probes(&c);
        assert_eq!(startup.failure_threshold, Some(10), "ceil(95 / 10)");
        assert_eq!(
            startup.http_get.unwrap().path.as_deref(),
            Some(STARTUP_PATH)
        );
    }

    #[test]
    fn liveness_threshold_covers_the_liveness_timeout() {
        let mut c = cluster();
        let (_, readiness, liveness) = instance_probes(&c);
        assert_eq!(liveness.failure_threshold, Some(3));
        assert_eq!(readiness.failure_threshold, Some(3));
        c.spec.liveness_probe_timeout = Some(45);
        let (_, _, liveness) = instance_probes(&c);
        assert_eq!(liveness.failure_threshold, Some(5));
    }

    #[test]
    fn user_fields_override_one_by_one() {
        let mut c = cluster();
        c.spec.start_delay = Some(100);
        c.spec.probes = Some(ProbesConfiguration {
            startup: Some(ProbeWithStrategy {
                period_seconds: Some(5),
                ..Default::default()
            }),
            readiness: Some(ProbeWithStrategy {
                failure_threshold: Some(7),
                timeout_seconds: Some(2),
                ..Default::default()
            }),
            liveness: Some(LivenessProbe {
                failure_threshold: Some(9),
                ..Default::default()
            }),
        });
        let (startup, readiness, liveness) = instance_probes(&c);
        assert_eq!(startup.period_seconds, Some(5));
        assert_eq!(
            startup.failure_threshold,
            Some(20),
            "threshold follows the period"
        );
        assert_eq!(readiness.failure_threshold, Some(7));
        assert_eq!(readiness.timeout_seconds, Some(2));
        assert_eq!(readiness.period_seconds, Some(10));
        assert_eq!(liveness.failure_threshold, Some(9));
    }
}

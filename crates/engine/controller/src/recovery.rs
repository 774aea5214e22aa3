//! `bootstrap.recovery`: the PostgreSQL settings of a point-in-time recovery from
//! `recoveryTarget`, as CloudNativePG writes them (`recovery_target_action = promote`).

use pgherd_api::cluster::{BootstrapRecovery, RecoveryTarget};
use pgherd_instance_protocol::Bootstrap;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a recovery's data comes from, as the platform resolved it.
#[derive(Debug, Clone)]
pub struct RecoverySource {
    /// The source's store (configuration and secrets), where the instance reads it.
    pub store_file: PathBuf,
    /// The Backup object's id (`recovery.backup.name`), when recovering from one.
    pub backup_id: Option<String>,
}

/// The first instance's bootstrap for `recovery` (the application database and owner are
/// [`crate::instance_spec::application`]'s).
pub fn bootstrap(
    recovery: &BootstrapRecovery,
    source: RecoverySource,
    database: String,
    owner: String,
    owner_password_file: PathBuf,
) -> Result<Bootstrap, String> {
    let target = recovery.recovery_target.as_ref();
    let target_time = target
        .and_then(|t| t.target_time.as_deref())
        .map(parse_target_time)
        .transpose()?
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    Ok(Bootstrap::Recovery {
        store_file: source.store_file,
        backup_id: target
            .and_then(|t| t.backup_id.clone())
            .or(source.backup_id),
        target_time,
        target_lsn: target.and_then(|t| t.target_lsn.clone()),
        recovery_settings: recovery_settings(target)?,
        database,
        owner,
        owner_password_file: Some(owner_password_file),
    })
}

/// A Backup whose data is of another major than the image runs is refused before anything is
/// restored (it would restore, then fail with "database files are incompatible").
pub fn check_backup_major(
    backup: &str,
    taken: Option<i64>,
    image_major: u32,
) -> Result<(), String> {
    match taken {
        Some(taken) if taken != i64::from(image_major) => Err(format!(
            "spec.bootstrap.recovery.backup: Backup {backup:?} holds PostgreSQL {taken} data, but spec.imageName runs PostgreSQL {image_major}: set spec.imageName to a PostgreSQL {taken} image (e.g. ghcr.io/cloudnative-pg/postgresql:{taken})"
        )),
        _ => Ok(()),
    }
}

/// The recovery settings for `target` (none given: recover to the end of the archive).
/// The error names the field and what to do.
pub fn recovery_settings(
    target: Option<&RecoveryTarget>,
) -> Result<BTreeMap<String, String>, String> {
    let mut settings = BTreeMap::new();
    settings.insert("recovery_target_action".into(), "promote".into());
    let timeline = target
        .and_then(|t| t.target_tli.clone())
        .unwrap_or_else(|| "latest".into());
    if timeline != "latest" && timeline != "current" && timeline.parse::<u32>().is_err() {
        return Err(format!(
            "spec.bootstrap.recovery.recoveryTarget.targetTLI: {timeline:?} is not a timeline (hint: a number, \"latest\" or \"current\")"
        ));
    }
    settings.insert("recovery_target_timeline".into(), timeline);
    let Some(t) = target else {
        return Ok(settings);
    };
    let mut targets: Vec<(&str, &str, String)> = Vec::new();
    if let Some(v) = &t.target_time {
        // PostgreSQL does not read every form CloudNativePG accepts (RFC 3339 with `T`).
        let at = parse_target_time(v)?;
        targets.push(("targetTime", "recovery_target_time", postgres_time(at)));
    }
    if let Some(v) = &t.target_lsn {
        targets.push(("targetLSN", "recovery_target_lsn", v.clone()));
    }
    if let Some(v) = &t.target_xid {
        targets.push(("targetXID", "recovery_target_xid", v.clone()));
    }
    if let Some(v) = &t.target_name {
        targets.push(("targetName", "recovery_target_name", v.clone()));
    }
    if t.target_immediate == Some(true) {
        targets.push(("targetImmediate", "recovery_target", "immediate".into()));
    }
    if targets.len() > 1 {
        let names: Vec<&str> = targets.iter().map(|t| t.0).collect();
        return Err(format!(
            "spec.bootstrap.recovery.recoveryTarget: only one target may be set, got {} (hint: keep one of them)",
            names.join(", ")
        ));
    }
    if let Some((_, setting, value)) = targets.pop() {
        settings.insert(setting.into(), value);
        if setting != "recovery_target" {
            let inclusive = if t.exclusive == Some(true) {
                "off"
            } else {
                "on"
            };
            settings.insert("recovery_target_inclusive".into(), inclusive.into());
        }
    }
    Ok(settings)
}

/// `recoveryTarget.targetTime`: RFC 3339, or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]`
/// (UTC when no zone is given).
pub fn parse_target_time(text: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let bad = || {
        format!(
            "spec.bootstrap.recovery.recoveryTarget.targetTime: {text:?} is not a time (hint: RFC 3339, e.g. 2026-12-02T10:00:00Z)"
        )
    };
    let mut t = text.trim().replacen(' ', "T", 1);
    if let Ok(parsed) = time::OffsetDateTime::parse(&t, &Rfc3339) {
        return Ok(parsed);
    }
    // A zone written as +HH (PostgreSQL) or none at all.
    match t.rfind(['+', '-']).filter(|&i| i > 10) {
        Some(i) if t.len() - i == 3 => t.push_str(":00"),
        Some(_) => {}
        None => t.push('Z'),
    }
    time::OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| bad())
}

/// `at` as PostgreSQL reads a `recovery_target_time`: `YYYY-MM-DD HH:MM:SS.ffffff+00`.
fn postgres_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_become_settings() {
        let s = recovery_settings(None).unwrap();
        assert_eq!(s["recovery_target_action"], "promote");
        assert_eq!(s["recovery_target_timeline"], "latest");
        assert!(!s.contains_key("recovery_target_time"));

        let t = RecoveryTarget {
            target_time: Some("2026-12-02T01:02:03Z".into()),
            exclusive: Some(true),
            ..Default::default()
        };
        let s = recovery_settings(Some(&t)).unwrap();
        assert_eq!(s["recovery_target_time"], "2026-12-02 01:02:03.000000+00");
        for (text, utc) in [
            (
                "2026-12-02T03:02:03.5+02:00",
                "2026-12-02 01:02:03.500000+00",
            ),
            ("2026-12-02 01:02:03", "2026-12-02 01:02:03.000000+00"),
            ("2026-12-02 03:02:03+02", "2026-12-02 01:02:03.000000+00"),
        ] {
            assert_eq!(
                postgres_time(parse_target_time(text).unwrap()),
                utc,
                "{text}"
            );
        }
        assert!(parse_target_time("yesterday")
            .unwrap_err()
            .contains("targetTime"));
        assert_eq!(s["recovery_target_inclusive"], "off");

        let t = RecoveryTarget {
            target_immediate: Some(true),
            target_tli: Some("2".into()),
            ..Default::default()
        };
        let s = recovery_settings(Some(&t)).unwrap();
        assert_eq!(s["recovery_target"], "immediate");
        assert_eq!(s["recovery_target_timeline"], "2");

        let both = RecoveryTarget {
            target_lsn: Some("0/3000000".into()),
            target_name: Some("before-upgrade".into()),
            ..Default::default()
        };
        let e = recovery_settings(Some(&both)).unwrap_err();
        assert!(e.contains("targetLSN") && e.contains("targetName"), "{e}");
        let bad = RecoveryTarget {
            target_tli: Some("two".into()),
            ..Default::default()
        };
        assert!(recovery_settings(Some(&bad))
            .unwrap_err()
            .contains("targetTLI"));
    }
}

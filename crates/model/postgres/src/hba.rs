//! The grammar of one `pg_hba.conf` record, as users write them in `postgresql.pg_hba`.
//!
//! A bad line makes PostgreSQL refuse the whole file on reload (it keeps the old rules) and
//! refuse to start on a fresh instance, so lines are checked before they reach an instance.
//! `${podselector:NAME}` in the address field is CloudNativePG's placeholder for the addresses
//! of pods matched by `spec.podSelectorRefs[NAME]`; it is accepted and reported so the caller
//! can check the reference.

use std::net::IpAddr;

/// Why a `pg_hba` line is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HbaError {
    #[error("empty line")]
    Empty,
    #[error("unterminated double quote")]
    UnterminatedQuote,
    #[error("unknown connection type {0:?} (expected local, host, hostssl, hostnossl, hostgssenc or hostnogssenc)")]
    UnknownType(String),
    #[error("{0:?} records cannot be used here: the operator owns the files of an instance")]
    IncludeDirective(String),
    #[error("missing {0} field")]
    Missing(&'static str),
    #[error("invalid address {0:?} (expected an IP/prefix such as 10.0.0.0/8, an IP and a mask, a host name, all, samehost or samenet)")]
    BadAddress(String),
    #[error("prefix length /{prefix} is too long for {address}")]
    BadPrefix { address: String, prefix: String },
    #[error("unknown authentication method {0:?}")]
    UnknownMethod(String),
    #[error("authentication option {0:?} is not name=value")]
    BadOption(String),
}

/// The connection types PostgreSQL accepts.
pub const CONNECTION_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];

/// The authentication methods PostgreSQL accepts.
pub const METHODS: &[&str] = &[
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "ldap",
    "radius",
    "cert",
    "pam",
    "bsd",
    "oauth",
];

/// A checked `pg_hba` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRecord {
    pub connection_type: String,
    pub databases: String,
    pub users: String,
    /// `None` for `local` records.
    pub address: Option<String>,
    pub method: String,
    pub options: Vec<(String, String)>,
    /// The NAME of a `${podselector:NAME}` address, when there is one.
    pub pod_selector: Option<String>,
}

/// Split a line into fields: whitespace separates, double quotes group, `#` starts a comment.
fn tokenize(line: &str) -> Result<Vec<String>, HbaError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    for c in line.chars() {
        if quoted {
            if c == '"' {
                quoted = false;
            }
            current.push(c);
            continue;
        }
        match c {
            '#' => break,
            '"' => {
                quoted = true;
                in_token = true;
                current.push(c);
            }
            c if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            c => {
                in_token = true;
                current.push(c);
            }
        }
    }
    if quoted {
        return Err(HbaError::UnterminatedQuote);
    }
    if in_token {
        tokens.push(current);
    }
    Ok(tokens)
}

fn pod_selector_name(address: &str) -> Option<&str> {
    address
        .strip_prefix("${podselector:")
        .and_then(|rest| rest.strip_suffix('}'))
}

fn is_host_name(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

fn check_address(address: &str) -> Result<(), HbaError> {
    if matches!(address, "all" | "samehost" | "samenet") {
        return Ok(());
    }
    if let Some((ip, prefix)) = address.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| HbaError::BadAddress(address.to_string()))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max && !prefix.starts_with('+') => Ok(()),
            _ => Err(HbaError::BadPrefix {
                address: ip.to_string(),
                prefix: prefix.to_string(),
            }),
        }
    } else if address.parse::<IpAddr>().is_ok() || is_host_name(address) {
        Ok(())
    } else {
        Err(HbaError::BadAddress(address.to_string()))
    }
}

/// Parse and check one record.
pub fn parse_record(line: &str) -> Result<HbaRecord, HbaError> {
    let tokens = tokenize(line)?;
    let mut fields = tokens.into_iter();
    let connection_type = fields.next().ok_or(HbaError::Empty)?;
    if connection_type.starts_with("include") {
        return Err(HbaError::IncludeDirective(connection_type));
    }
    if !CONNECTION_TYPES.contains(&connection_type.as_str()) {
        return Err(HbaError::UnknownType(connection_type));
    }
    let databases = fields.next().ok_or(HbaError::Missing("database"))?;
    let users = fields.next().ok_or(HbaError::Missing("user"))?;
    let mut address = None;
    let mut pod_selector = None;
    let mut rest: Vec<String> = fields.collect();
    if connection_type != "local" {
        if rest.is_empty() {
            return Err(HbaError::Missing("address"));
        }
        let addr = rest.remove(0);
        match pod_selector_name(&addr) {
            Some(name) => pod_selector = Some(name.to_string()),
            None => {
                check_address(&addr)?;
                // "IP MASK" form: a bare IP followed by a netmask.
                let bare_ip = addr.parse::<IpAddr>().is_ok();
                if bare_ip && rest.first().is_some_and(|m| m.parse::<IpAddr>().is_ok()) {
                    rest.remove(0);
                }
            }
        }
        address = Some(addr);
    }
    if rest.is_empty() {
        return Err(HbaError::Missing("method"));
    }
    let method = rest.remove(0);
    if !METHODS.contains(&method.as_str()) {
        return Err(HbaError::UnknownMethod(method));
    }
    let options = rest
        .into_iter()
        .map(|opt| match opt.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(HbaError::BadOption(opt)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HbaRecord {
        connection_type,
        databases,
        users,
        address,
        method,
        options,
        pod_selector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines() {
        for line in [
            "host all all 10.0.0.0/8 md5",
            "host all all 172.16.0.0/12 scram-sha-256",
            "hostssl app app ::1/128 cert clientcert=verify-full",
            "local all all peer map=local",
            "host all all 192.168.0.0 255.255.0.0 md5",
            "host \"my db\" all .example.com trust # comment",
            "host all all all scram-sha-256",
            "host all all ${podselector:apps} md5",
        ] {
            parse_record(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        let r = parse_record("host all all ${podselector:apps} md5").unwrap();
        assert_eq!(r.pod_selector.as_deref(), Some("apps"));
    }

    #[test]
    fn bad_lines() {
        let cases = [
            ("", HbaError::Empty),
            (
                "hots all all 0.0.0.0/0 md5",
                HbaError::UnknownType("hots".into()),
            ),
            ("host all all", HbaError::Missing("address")),
            ("host all all 10.0.0.0/8", HbaError::Missing("method")),
            (
                "host all all 10.0.0.0/33 md5",
                HbaError::BadPrefix {
                    address: "10.0.0.0".into(),
                    prefix: "33".into(),
                },
            ),
            (
                "host all all 10.0.0.0/8 md6",
                HbaError::UnknownMethod("md6".into()),
            ),
            (
                "host all all 10.0.0.300/8 md5",
                HbaError::BadAddress("10.0.0.300/8".into()),
            ),
            ("host \"all all 0/0 md5", HbaError::UnterminatedQuote),
            (
                "host all all 10.0.0.0/8 ldap ldapserver",
                HbaError::BadOption("ldapserver".into()),
            ),
            (
                "include_dir conf.d",
                HbaError::IncludeDirective("include_dir".into()),
            ),
        ];
        for (line, err) in cases {
            assert_eq!(parse_record(line), Err(err), "{line}");
        }
    }
}

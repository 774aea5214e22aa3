//! Is the postmaster accepting connections? The same answer `pg_isready` gives, from the
//! PostgreSQL wire protocol itself, so it needs no client binaries (some server-only builds
//! ship none) and no process per probe.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What the server said to a startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// It answered with anything but "cannot connect now": it accepts connections.
    Accepting,
    /// Starting up, shutting down or in recovery before consistency (SQLSTATE 57P03).
    Rejecting,
    /// Nothing listens on the socket, or it did not answer in time.
    NoResponse,
}

/// SQLSTATE cannot_connect_now.
const CANNOT_CONNECT_NOW: &str = "57P03";

fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_i32.to_be_bytes()); // protocol 3.0
    for (key, value) in [("user", user), ("database", "postgres")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// The SQLSTATE (`C` field) of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> Option<String> {
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', code)) => return Some(String::from_utf8_lossy(code).into_owned()),
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

/// Probe the server listening on `socket_dir/.s.PGSQL.<port>` as `user`.
pub fn ping(socket_dir: &Path, port: u16, user: &str, timeout: Duration) -> Ping {
    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
    let Ok(mut stream) = UnixStream::connect(&path) else {
        return Ping::NoResponse;
    };
    if stream.set_read_timeout(Some(timeout)).is_err()
        || stream.set_write_timeout(Some(timeout)).is_err()
        || stream.write_all(&startup_packet(user)).is_err()
    {
        return Ping::NoResponse;
    }
    let mut header = [0_u8; 5];
    if stream.read_exact(&mut header).is_err() {
        return Ping::NoResponse;
    }
    let answer = match header[0] {
        b'E' => {
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let mut body = vec![0_u8; usize::try_from(len - 4).unwrap_or(0).min(8192)];
            if stream.read_exact(&mut body).is_err() {
                return Ping::NoResponse;
            }
            match sqlstate(&body) {
                Some(code) if code == CANNOT_CONNECT_NOW => Ping::Rejecting,
                _ => Ping::Accepting,
            }
        }
        _ => Ping::Accepting,
    };
    // Terminate, so the server does not log a broken connection.
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_packet_layout() {
        let p = startup_packet("postgres");
        assert_eq!(
            i32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            p.len()
        );
        assert_eq!(&p[4..8], &196_608_i32.to_be_bytes());
        assert!(p.ends_with(b"database\0postgres\0\0"));
    }

    #[test]
    fn reads_the_sqlstate_field() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0";
        assert_eq!(sqlstate(body).as_deref(), Some("57P03"));
        assert_eq!(sqlstate(b"Mno code\0\0"), None);
    }

    #[test]
    fn nothing_listening_is_no_response() {
        let dir = std::env::temp_dir();
        assert_eq!(
            ping(&dir, 1, "postgres", Duration::from_millis(100)),
            Ping::NoResponse
        );
    }
}

//! A real Azure Blob Storage emulator (Azurite's blob service, installed from npm by
//! `scripts/install.sh` into `/opt/azurite`), started per test on a free loopback port with its
//! data in a temporary directory, and stopped when the guard drops (also on panic).

use crate::free_port;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where `scripts/install.sh` puts Azurite's blob server (`PGHERD_AZURITE_BLOB` overrides).
fn binary() -> std::path::PathBuf {
    std::env::var_os("PGHERD_AZURITE_BLOB").map_or_else(
        || "/opt/azurite/node_modules/.bin/azurite-blob".into(),
        Into::into,
    )
}

/// A running Azurite blob service.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite and waits until it listens. Fails the test (does not skip it) when
    /// Azurite is missing.
    pub fn start() -> Azurite {
        let bin = binary();
        assert!(
            bin.is_file(),
            "Azurite is not installed ({}): run ./scripts/install.sh",
            bin.display()
        );
        let data = tempfile::tempdir().expect("a directory for Azurite's data");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            .args(["--silent", "--skipApiVersionCheck", "--loose"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob");
        let azurite = Azurite {
            child,
            port,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        azurite
    }

    /// The account's URL: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A connection string as Azure tools write it.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
            self.account_url()
        )
    }

    /// Creates a container (a Shared Key signed request, as the Azure tools send it).
    pub fn create_container(&self, container: &str) {
        let script = r#"
import base64, datetime, hashlib, hmac, sys, urllib.request
port, account, key, container = sys.argv[1:]
date = datetime.datetime.now(datetime.timezone.utc).strftime('%a, %d %b %Y %H:%M:%S GMT')
version = '2021-08-06'
to_sign = ('PUT\n' + '\n' * 11 + f'x-ms-date:{date}\nx-ms-version:{version}\n'
           + f'/{account}/{account}/{container}\nrestype:container')
signature = base64.b64encode(
    hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
request = urllib.request.Request(
    f'http://127.0.0.1:{port}/{account}/{container}?restype=container', method='PUT')
request.add_header('x-ms-date', date)
request.add_header('x-ms-version', version)
request.add_header('Authorization', f'SharedKey {account}:{signature}')
urllib.request.urlopen(request)
"#;
        let status = Command::new("python3")
            .args([
                "-c",
                script,
                &self.port.to_string(),
                ACCOUNT,
                ACCOUNT_KEY,
                container,
            ])
            .status()
            .expect("run python3");
        assert!(status.success(), "create Azure container {container}");
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

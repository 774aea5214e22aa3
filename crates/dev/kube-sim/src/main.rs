//! `kube-sim`: run the API server (`serve`), or mint a ServiceAccount token (`token`).

use clap::{Parser, Subcommand};
use pgherd_kube_sim::rbac::Authenticator;
use pgherd_kube_sim::{start, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "kube-sim", about = "A Kubernetes API server for tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API on 127.0.0.1 over TLS and write STATE_DIR/kubeconfig.
    Serve {
        #[arg(long)]
        state_dir: PathBuf,
        /// 0 picks a free port (the kubeconfig says which).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Changes kept for watches to resume from; older resourceVersions get 410 Gone.
        #[arg(long, default_value_t = 10_000)]
        watch_window: usize,
        /// Seconds between watch bookmarks.
        #[arg(long, default_value_t = 5)]
        bookmark_interval: u64,
    },
    /// Print a bearer token for ServiceAccount NAME in NAMESPACE (from STATE_DIR's key).
    Token {
        #[arg(long)]
        state_dir: PathBuf,
        namespace: String,
        name: String,
        /// Write a kubeconfig using the token to this file instead of printing the token.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (the workspace's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            state_dir,
            port,
            watch_window,
            bookmark_interval,
        } => {
            let running = start(Config {
                state_dir: Some(state_dir.clone()),
                port,
                watch_window,
                bookmark_interval: Duration::from_secs(bookmark_interval.max(1)),
            })
            .await
            .map_err(|e| e.to_string())?;
            eprintln!(
                "kube-sim: serving {} (KUBECONFIG={})",
                running.url,
                state_dir.join("kubeconfig").display()
            );
            tokio::select! {
                _ = running.wait() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(())
        }
        Command::Token {
            state_dir,
            namespace,
            name,
            kubeconfig,
        } => {
            let key = std::fs::read_to_string(state_dir.join("token-key")).map_err(|e| {
                format!(
                    "{}: {e} (is kube-sim serving this state directory?)",
                    state_dir.join("token-key").display()
                )
            })?;
            let token =
                Authenticator::from_key(key.trim()).service_account_token(&namespace, &name);
            match kubeconfig {
                Some(path) => {
                    let admin = std::fs::read_to_string(state_dir.join("kubeconfig"))
                        .map_err(|e| e.to_string())?;
                    let server = admin
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("server: "))
                        .unwrap_or_default();
                    let ca = std::fs::read_to_string(state_dir.join("ca.crt"))
                        .map_err(|e| e.to_string())?;
                    let user = format!("system:serviceaccount:{namespace}:{name}");
                    let cfg =
                        pgherd_kube_sim::tls::kubeconfig(server, &ca, &user, &token, &namespace);
                    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
                }
                None => println!("{token}"),
            }
            Ok(())
        }
    }
}

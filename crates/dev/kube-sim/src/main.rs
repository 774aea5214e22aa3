//! `kube-sim`: run the API server (`serve`), or mint a ServiceAccount token (`token`).

use clap::{Parser, Subcommand};
use pgherd_kube_sim::kubelet::{node_faults, Kubelet, KubeletConfig};
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
        /// Simulated nodes whose kubelet runs pods as local processes (0: API server only).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Extra image → command rules (JSON or YAML), tried before the built-in ones.
        #[arg(long)]
        images: Option<PathBuf>,
        /// What pgherd's image's `/manager` is (default: `pgherd` next to this executable).
        #[arg(long)]
        pgherd_bin: Option<PathBuf>,
        /// Cap on pods' termination grace periods, in seconds.
        #[arg(long)]
        max_grace_seconds: Option<u64>,
        /// Seconds without a kubelet heartbeat before a node goes NotReady.
        #[arg(long, default_value_t = 5)]
        node_grace_seconds: u64,
        /// Every node's allocatable cpu (a quantity: 8, 500m).
        #[arg(long, default_value = "8")]
        node_cpu: String,
        /// Every node's allocatable memory (a quantity: 32Gi).
        #[arg(long, default_value = "32Gi")]
        node_memory: String,
        /// One node's allocatable instead: NODE=CPU,MEMORY (e.g. node-2=2,4Gi); repeatable.
        #[arg(long)]
        node_resources: Vec<String>,
    },
    /// Inject a node fault into a running server: kill, freeze, partition or restore NODE.
    Node {
        /// kill | freeze | partition | restore
        action: String,
        node: String,
        #[arg(long)]
        state_dir: PathBuf,
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
            nodes,
            images,
            pgherd_bin,
            max_grace_seconds,
            node_grace_seconds,
            node_cpu,
            node_memory,
            node_resources,
        } => {
            let running = start(Config {
                state_dir: Some(state_dir.clone()),
                port,
                watch_window,
                bookmark_interval: Duration::from_secs(bookmark_interval.max(1)),
            })
            .await
            .map_err(|e| e.to_string())?;
            let kubelet = if nodes > 0 {
                let bin = pgherd_bin.unwrap_or_else(|| {
                    std::env::current_exe()
                        .ok()
                        .and_then(|e| e.parent().map(|d| d.join("pgherd")))
                        .unwrap_or_else(|| PathBuf::from("pgherd"))
                });
                let mut config = KubeletConfig::new(nodes, bin);
                if let Some(file) = images {
                    config.images.load(&file)?;
                }
                config.max_grace = max_grace_seconds.map(Duration::from_secs);
                config.node_grace = Duration::from_secs(node_grace_seconds.max(1));
                config.node_cpu = node_cpu;
                config.node_memory = node_memory;
                for r in node_resources {
                    let parsed = r
                        .split_once('=')
                        .and_then(|(n, q)| Some((n, q.split_once(',')?)));
                    let Some((node, (cpu, memory))) = parsed else {
                        return Err(format!(
                            "--node-resources {r:?}: expected NODE=CPU,MEMORY (e.g. node-2=2,4Gi)"
                        ));
                    };
                    config
                        .node_resources
                        .insert(node.to_string(), (cpu.to_string(), memory.to_string()));
                }
                config.check()?;
                Some(
                    Kubelet::start(running.server.clone(), &state_dir, config)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            eprintln!(
                "kube-sim: serving {} (KUBECONFIG={}), {nodes} node(s)",
                running.url,
                state_dir.join("kubeconfig").display()
            );
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = running.wait() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            // Dropping the kubelet kills every process it started.
            drop(kubelet);
            Ok(())
        }
        Command::Node {
            action,
            node,
            state_dir,
        } => node_faults::request(&state_dir, &node, &action),
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

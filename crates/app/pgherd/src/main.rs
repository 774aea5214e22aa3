//! The `pgherd` binary: argument parsing and wiring only; the domain lives in the crates.

mod commands;
mod logging;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Highly available PostgreSQL, run the way CloudNativePG runs it.
#[derive(Debug, Parser)]
#[command(name = "pgherd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse, default and validate manifests; print every problem with its field path.
    Validate {
        /// Manifest files or directories (YAML or JSON, multi-document); `-` reads stdin.
        #[arg(required = true)]
        files: Vec<String>,
        /// Also print the defaulted objects as YAML.
        #[arg(long)]
        show_defaults: bool,
    },
    /// Print the CustomResourceDefinitions of every kind pgherd serves.
    Crds,
    /// Run clusters on this machine, no Kubernetes needed.
    Local {
        #[command(flatten)]
        options: commands::local::LocalOptions,
        #[command(subcommand)]
        command: commands::local::LocalCommand,
    },
    /// Instance manager commands (run inside a pod, or by the local platform).
    Instance {
        #[command(subcommand)]
        command: commands::instance::InstanceCommand,
    },
    /// Copy this binary to DEST (the init container of a Kubernetes pod puts the manager where
    /// the PostgreSQL image's container runs it, as CloudNativePG's `manager bootstrap` does).
    Bootstrap {
        /// Where to copy the binary (created with mode 0755, replacing what is there).
        dest: std::path::PathBuf,
    },
    /// Print the operator's release manifest (apply with `kubectl apply --server-side -f -`).
    Manifests {
        /// The operator image (default: this build's).
        #[arg(long)]
        image: Option<String>,
    },
    /// Run the Kubernetes operator (in its pod, or anywhere with a kubeconfig).
    Operator {
        #[command(flatten)]
        options: commands::operator::OperatorOptions,
    },
    /// PgBouncer helpers (run next to each PgBouncer by the local platform).
    Pooler {
        #[command(subcommand)]
        command: commands::pooler::PoolerCommand,
    },
    /// Print a shell completion script (e.g. `source <(pgherd completion bash)`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: commands::completion::CompletionShell,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .first()
        .is_some_and(|argv0| commands::plugin::invoked_as_plugin(argv0))
    {
        return commands::plugin::main(args);
    }
    if args
        .first()
        .is_some_and(|argv0| commands::completion::invoked_as_kubectl_completion(argv0))
    {
        return commands::completion::kubectl_complete(args.into_iter().skip(1).collect());
    }
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Validate {
            files,
            show_defaults,
        } => commands::validate::run(&files, show_defaults),
        Command::Crds => commands::crds::run(),
        Command::Instance { command } => commands::instance::dispatch(command),
        Command::Local { options, command } => commands::local::run(&options, command),
        Command::Pooler { command } => commands::pooler::run(command),
        Command::Bootstrap { dest } => commands::bootstrap::run(&dest),
        Command::Manifests { image } => commands::manifests::run(image),
        Command::Operator { options } => commands::operator::run(options),
        Command::Completion { shell } => Ok(commands::completion::script(
            <Cli as clap::CommandFactory>::command(),
            "pgherd",
            shell,
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgherd: {}", said_once(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, each said once: most of pgherd's errors already name their cause
/// in their message, which anyhow's chain (`{:#}`) would print a second time.
fn said_once(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let read = pgherd_backup::wal_archive::WalError::Local {
            what: "read",
            path: "/x".into(),
            source: io,
        };
        let e = anyhow::Error::new(read).context("loading the spec");
        assert_eq!(said_once(&e), "loading the spec: cannot read \"/x\": gone");
    }
}

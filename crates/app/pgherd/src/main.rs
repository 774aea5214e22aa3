//! The `pgherd` binary: argument parsing and wiring only; the domain lives in the crates.

mod commands;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            files,
            show_defaults,
        } => commands::validate::run(&files, show_defaults),
        Command::Crds => commands::crds::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgherd: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! Shell completion for `pgherd` and for `kubectl cnpg`:
//!
//! - `pgherd completion SHELL` and `kubectl cnpg completion SHELL` print a completion script
//!   for bash, zsh, fish, elvish or PowerShell;
//! - kubectl (1.26+) completes a plugin's arguments by running `kubectl_complete-cnpg ARGS…
//!   WORD` from the PATH: pgherd linked under that name (or `kubectl cnpg __complete ARGS…
//!   WORD`, what CloudNativePG's own `kubectl_complete-cnpg` script runs) prints the candidates,
//!   one per line with their help after a tab, then cobra's directive line (`:4`: no file
//!   names). Verbs and flags come from the plugin's arguments; cluster names from the API
//!   server (the namespace and kubeconfig given on the line), within 2 seconds.

use super::plugin_args::PluginCli;
use clap::CommandFactory as _;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::Shell;
use pgherd_kubernetes::plugin::{self, Connection};
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

/// The shells a script can be printed for.
pub type CompletionShell = Shell;

/// Print `command`'s completion script for `shell`, for the program `bin`.
pub fn script(mut command: clap::Command, bin: &str, shell: Shell) -> ExitCode {
    // Into memory first: the generator panics on a closed stdout (`| head`).
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut command, bin, &mut text);
    out!("{}", String::from_utf8_lossy(&text));
    ExitCode::SUCCESS
}

/// Whether pgherd runs as kubectl's completion helper of the plugin.
pub fn invoked_as_kubectl_completion(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    matches!(name, "kubectl_complete-cnpg" | "kubectl_complete-pgherd")
}

/// Where the cluster names are listed from (the line's `-n`, `--kubeconfig`, `--context`).
static CONNECTION: OnceLock<Connection> = OnceLock::new();

/// The value after `flag` (`-n X`, `--namespace X` or `--namespace=X`) in `words`.
fn flag_value(words: &[String], short: Option<&str>, long: &str) -> Option<String> {
    let prefix = format!("{long}=");
    words.iter().enumerate().find_map(|(i, w)| {
        if Some(w.as_str()) == short || w == long {
            words.get(i + 1).cloned()
        } else {
            w.strip_prefix(&prefix).map(str::to_string)
        }
    })
}

/// The Clusters of the line's namespace (none when the API server does not answer in time).
fn list_clusters() -> Vec<CompletionCandidate> {
    let Some(connection) = CONNECTION.get() else {
        return Vec::new();
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    runtime.block_on(async {
        let list = async {
            let target = plugin::connect(connection).await.ok()?;
            target
                .dynamic("Cluster")
                .list(&Default::default())
                .await
                .ok()
        };
        let Ok(Some(list)) = tokio::time::timeout(Duration::from_secs(2), list).await else {
            return Vec::new();
        };
        list.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .map(CompletionCandidate::new)
            .collect()
    })
}

/// Cluster-name candidates for a `cluster` argument of the plugin's verbs.
pub fn cluster_names() -> ArgValueCandidates {
    ArgValueCandidates::new(list_clusters)
}

/// Answer kubectl's completion request: `words` are the plugin's arguments, the last one the
/// word being completed (possibly empty).
pub fn kubectl_complete(words: Vec<OsString>) -> ExitCode {
    let mut words: Vec<String> = words
        .into_iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    if words.first().is_some_and(|w| w == "__complete") {
        words.remove(0);
    }
    if words.is_empty() {
        words.push(String::new());
    }
    let _ = CONNECTION.set(Connection {
        kubeconfig: flag_value(&words, None, "--kubeconfig").map(Into::into),
        context: flag_value(&words, None, "--context"),
        namespace: flag_value(&words, Some("-n"), "--namespace"),
    });
    let mut command = PluginCli::command();
    let mut args: Vec<OsString> = vec!["kubectl-cnpg".into()];
    args.extend(words.iter().map(OsString::from));
    let index = args.len() - 1;
    let cwd = std::env::current_dir().ok();
    let candidates =
        match clap_complete::engine::complete(&mut command, args, index, cwd.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kubectl cnpg: completion: {e}");
                return ExitCode::from(1);
            }
        };
    for c in candidates.iter().filter(|c| !c.is_hide_set()) {
        let value = c.get_value().to_string_lossy();
        match c.get_help() {
            Some(help) => outln!(
                "{value}\t{}",
                help.to_string().lines().next().unwrap_or_default()
            ),
            None => outln!("{value}"),
        }
    }
    // cobra's ShellCompDirectiveNoFileComp.
    outln!(":4");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_in_every_form() {
        let words: Vec<String> = ["status", "-n", "saasodoo", "--context=prod", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            flag_value(&words, Some("-n"), "--namespace").as_deref(),
            Some("saasodoo")
        );
        assert_eq!(
            flag_value(&words, None, "--context").as_deref(),
            Some("prod")
        );
        assert_eq!(flag_value(&words, None, "--kubeconfig"), None);
    }

    #[test]
    fn every_verb_taking_a_cluster_completes_its_name() {
        let command = PluginCli::command();
        for verb in ["status", "promote", "restart", "backup", "psql"] {
            let sub = command.find_subcommand(verb).unwrap();
            let cluster = sub
                .get_arguments()
                .find(|a| a.get_id() == "cluster")
                .unwrap();
            assert!(cluster.get::<ArgValueCandidates>().is_some(), "{verb}");
        }
    }

    #[test]
    fn the_plugins_arguments_are_consistent() {
        PluginCli::command().debug_assert();
    }
}

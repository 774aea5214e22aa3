//! The arguments of `kubectl cnpg` (clap), with `--help` examples from the seeds' runbooks.

use super::completion::cluster_names;
use clap::{Parser, Subcommand};

const EXAMPLES: &str = "Examples (from runbooks):
  kubectl cnpg status postgres-cluster -n saasodoo
  kubectl cnpg promote postgres-cluster postgres-cluster-2 -n saasodoo
  kubectl cnpg restart postgres-cluster -n saasodoo
  kubectl cnpg restart postgres-cluster --primary -n saasodoo
  kubectl cnpg fencing on postgres-cluster postgres-cluster-1
  kubectl cnpg backup postgres-cluster --backup-name manual-1";

/// pgherd as the CloudNativePG kubectl plugin.
#[derive(Debug, Parser)]
#[command(name = "kubectl cnpg", version, about, after_help = EXAMPLES)]
pub struct PluginCli {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long = "namespace", global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// The cluster's status: summary, continuous backup, streaming replication, instances,
    /// poolers; with -v replication slots, managed roles, tablespaces and conditions; with
    /// -v -v certificates.
    #[command(after_help = "Example:\n  kubectl cnpg status postgres-cluster -n saasodoo")]
    Status {
        #[arg(add = cluster_names())]
        cluster: String,
        /// More detail; repeat for more (-v: replication slots, managed roles, tablespaces,
        /// conditions; -v -v: certificates too).
        #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
        verbose: u8,
        /// text (default), json or yaml.
        #[arg(short = 'o', long = "output", default_value = "text")]
        output: String,
        /// How long to wait for each instance manager's status, in seconds.
        #[arg(short = 't', long = "timeout", default_value_t = 10)]
        timeout: u64,
    },
    /// Switch the primary over to INSTANCE (sets status.targetPrimary).
    #[command(
        after_help = "Example:\n  kubectl cnpg promote postgres-cluster postgres-cluster-2 -n saasodoo"
    )]
    Promote {
        #[arg(add = cluster_names())]
        cluster: String,
        /// The instance to promote: its name (CLUSTER-N) or serial (N).
        instance: Option<String>,
    },
    /// Restart: every instance (rolling), one INSTANCE, or the primary in place (--primary).
    #[command(
        after_help = "Examples:\n  kubectl cnpg restart postgres-cluster -n saasodoo\n  kubectl cnpg restart postgres-cluster --primary -n saasodoo"
    )]
    Restart {
        #[arg(add = cluster_names())]
        cluster: String,
        instance: Option<String>,
        /// Restart the current primary in place.
        #[arg(long, conflicts_with = "instance")]
        primary: bool,
    },
    /// Make every instance re-read its Secrets and ConfigMaps.
    Reload {
        #[arg(add = cluster_names())]
        cluster: String,
    },
    /// Fence (stop, keep data) or unfence an instance, or all with "*".
    Fencing {
        state: OnOff,
        #[arg(add = cluster_names())]
        cluster: String,
        instance: String,
    },
    /// Hibernate the cluster (stop every instance, keep the PVCs) or wake it.
    Hibernate {
        state: OnOff,
        #[arg(add = cluster_names())]
        cluster: String,
    },
    /// Set or unset the node maintenance window of a cluster (or every cluster).
    Maintenance {
        #[command(subcommand)]
        action: Maintenance,
    },
    /// Delete an instance: its Pod, Jobs and PVCs.
    Destroy {
        #[arg(add = cluster_names())]
        cluster: String,
        instance: String,
        /// Keep the PVCs (detached from the cluster).
        #[arg(short = 'k', long = "keep-pvc")]
        keep_pvc: bool,
    },
    /// Request an on-demand backup (creates a Backup).
    Backup {
        #[arg(add = cluster_names())]
        cluster: String,
        /// Default: CLUSTER-YYYYMMDDHHMMSS.
        #[arg(long = "backup-name")]
        backup_name: Option<String>,
        /// primary or prefer-standby (default: the cluster's).
        #[arg(short = 't', long = "backup-target")]
        backup_target: Option<String>,
        /// barmanObjectStore, volumeSnapshot or plugin.
        #[arg(short = 'm', long = "method")]
        method: Option<String>,
        #[arg(long)]
        online: Option<bool>,
        #[arg(long = "immediate-checkpoint")]
        immediate_checkpoint: Option<bool>,
        #[arg(long = "wait-for-archive")]
        wait_for_archive: Option<bool>,
        #[arg(long = "plugin-name")]
        plugin_name: Option<String>,
        /// key=value,... for the plugin.
        #[arg(long = "plugin-parameters")]
        plugin_parameters: Option<String>,
        /// Print the Backup instead of creating it.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Run psql in the primary's (or a replica's) postgres container.
    Psql {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long)]
        replica: bool,
        /// Allocate a TTY (default: when stdin is one).
        #[arg(short = 't', long = "tty")]
        tty: bool,
        /// Pass stdin.
        #[arg(short = 'i', long = "stdin")]
        stdin: bool,
        /// Print the kubectl command instead of running it.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// psql's arguments (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Logs.
    Logs {
        #[command(subcommand)]
        what: LogsOf,
    },
    /// A zip of a cluster's objects, events and logs (Secrets redacted).
    Report {
        #[command(subcommand)]
        what: ReportOf,
    },
    /// Operator installation.
    Install {
        #[command(subcommand)]
        what: Install,
    },
    /// Run pgbench against the cluster in a Job.
    Pgbench {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long = "job-name")]
        job_name: Option<String>,
        #[arg(long = "db-name", default_value = "app")]
        db_name: String,
        /// Seconds the finished Job is kept.
        #[arg(long)]
        ttl: Option<i32>,
        /// key=value,...
        #[arg(long = "node-selector")]
        node_selector: Option<String>,
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// pgbench's arguments (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Create or drop a publication in the cluster (SQL through psql on the primary).
    Publication {
        #[command(subcommand)]
        action: Publication,
    },
    /// Create or drop a subscription in the cluster (SQL through psql on the primary).
    Subscription {
        #[command(subcommand)]
        action: Subscription,
    },
    /// Create a client-certificate Secret for a database user, signed by the cluster's CA.
    Certificate {
        secret: String,
        #[arg(long = "cnpg-cluster")]
        cnpg_cluster: String,
        #[arg(long = "cnpg-user")]
        cnpg_user: String,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Print the version.
    Version,
    /// Print a shell completion script for `kubectl-cnpg` (kubectl itself completes the
    /// plugin's arguments through `kubectl_complete-cnpg`: link pgherd under that name).
    #[command(
        after_help = "Example:\n  ln -s \"$(command -v pgherd)\" /usr/local/bin/kubectl_complete-cnpg"
    )]
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// kubectl's completion request (what `kubectl_complete-cnpg` runs).
    #[command(name = "__complete", hide = true)]
    Complete {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Maintenance {
    Set(MaintenanceArgs),
    Unset(MaintenanceArgs),
}

#[derive(Debug, clap::Args)]
pub struct MaintenanceArgs {
    pub cluster: Option<String>,
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    #[arg(long = "reusePVC")]
    pub reuse_pvc: bool,
    /// Accepted for compatibility (no confirmation is asked).
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogsOf {
    /// The instances' logs, merged in time order.
    Cluster {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(short = 't', long)]
        timestamps: bool,
        #[arg(long)]
        tail: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportOf {
    Cluster {
        #[arg(add = cluster_names())]
        cluster: String,
        /// The zip to write (default: report_cluster_CLUSTER_<time>.zip).
        #[arg(short = 'f', long = "file")]
        file: Option<std::path::PathBuf>,
        /// yaml (default) or json.
        #[arg(short = 'o', long = "output", default_value = "yaml")]
        output: String,
        /// Include the instances' logs (they are always included; kept for compatibility).
        #[arg(short = 'l', long = "logs")]
        logs: bool,
    },
    Operator,
}

#[derive(Debug, Subcommand)]
pub enum Install {
    Generate,
}

#[derive(Debug, Subcommand)]
pub enum Publication {
    Create {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long)]
        publication: String,
        #[arg(long, default_value = "app")]
        dbname: String,
        #[arg(long = "all-tables")]
        all_tables: bool,
        #[arg(long)]
        table: Vec<String>,
        #[arg(long)]
        schema: Vec<String>,
        #[arg(long)]
        parameters: Option<String>,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    Drop {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long)]
        publication: String,
        #[arg(long, default_value = "app")]
        dbname: String,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Subscription {
    Create {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long)]
        subscription: String,
        #[arg(long)]
        publication: String,
        #[arg(long = "external-cluster")]
        external_cluster: String,
        #[arg(long, default_value = "app")]
        dbname: String,
        #[arg(long = "publication-dbname")]
        publication_dbname: Option<String>,
        #[arg(long)]
        parameters: Option<String>,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    Drop {
        #[arg(add = cluster_names())]
        cluster: String,
        #[arg(long)]
        subscription: String,
        #[arg(long, default_value = "app")]
        dbname: String,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
}

//! `kubectl cnpg` (the binary installed as `kubectl-cnpg` or `kubectl-pgherd`): argument
//! parsing and wiring; the verbs' API calls are in `pgherd_kubernetes::plugin`.

use super::plugin_args::*;
use clap::Parser;
use pgherd_kubernetes::plugin::{self, exec, logs, objects, Connection, PluginError};
use std::process::ExitCode;
use std::time::Duration;

/// Run the plugin with `args` (argv[0] included).
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    // kubectl's completion request is answered before parsing: its last word is incomplete.
    if args.get(1).is_some_and(|a| a == "__complete") {
        return super::completion::kubectl_complete(args.into_iter().skip(1).collect());
    }
    let cli = match PluginCli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl cnpg: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(if e.is_user_error() { 1 } else { 2 })
        }
    }
}

fn user(message: impl Into<String>) -> PluginError {
    PluginError::User(message.into())
}

fn key_values(
    text: Option<&str>,
    flag: &str,
) -> Result<std::collections::BTreeMap<String, String>, PluginError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in text
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| user(format!("{flag}: {pair:?} is not key=value")))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

async fn run(cli: PluginCli) -> Result<ExitCode, PluginError> {
    let connection = Connection {
        kubeconfig: cli.kubeconfig.clone().map(Into::into),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    };
    let flags = exec::KubectlFlags {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    // Verbs that need no API server.
    match &cli.command {
        Verb::Version => {
            outln!("kubectl-cnpg (pgherd) {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        Verb::Completion { shell } => {
            let command = <PluginCli as clap::CommandFactory>::command();
            return Ok(super::completion::script(command, "kubectl-cnpg", *shell));
        }
        Verb::Complete { words } => {
            let words = words.iter().map(Into::into).collect();
            return Ok(super::completion::kubectl_complete(words));
        }
        Verb::Install {
            what: Install::Generate,
        } => {
            // What `pgherd manifests` prints: apply with `kubectl apply --server-side -f -`.
            return super::manifests::run(None).map_err(|e| user(e.to_string()));
        }
        Verb::Report {
            what: ReportOf::Operator,
        } => {
            return Err(user(
                "report operator is not available yet: pgherd's Kubernetes operator is not released; use `kubectl cnpg report cluster CLUSTER`",
            ));
        }
        Verb::Promote {
            cluster,
            instance: None,
        } => {
            let guess = cluster
                .rsplit_once('-')
                .filter(|(_, serial)| {
                    !serial.is_empty() && serial.bytes().all(|b| b.is_ascii_digit())
                })
                .map(|(c, _)| c.to_string());
            let ns = cli
                .namespace
                .as_deref()
                .map(|n| format!(" -n {n}"))
                .unwrap_or_default();
            let hint = match guess {
                Some(c) => format!(
                    "; if {cluster} is the instance, its cluster is probably {c}: kubectl cnpg promote {c} {cluster}{ns}"
                ),
                None => String::new(),
            };
            return Err(user(format!(
                "promote needs both the cluster and the instance to promote: kubectl cnpg promote CLUSTER INSTANCE (only {cluster:?} was given){hint}"
            )));
        }
        _ => {}
    }
    let target = plugin::connect(&connection).await?;
    match cli.command {
        Verb::Status {
            cluster,
            verbose,
            output,
            timeout,
        } => {
            let view = target
                .status_view(&cluster, Duration::from_secs(timeout.max(1)))
                .await?;
            match output.as_str() {
                "json" => outln!(
                    "{}",
                    serde_json::to_string_pretty(&view)
                        .map_err(|e| PluginError::Io(e.to_string()))?
                ),
                "yaml" => out!(
                    "{}",
                    serde_yaml_ng::to_string(&view).map_err(|e| PluginError::Io(e.to_string()))?
                ),
                "text" => out!(
                    "{}",
                    pgherd_controller::status_render::render(&view, verbose)
                ),
                other => {
                    return Err(user(format!(
                        "-o {other:?} is not an output format; use text, json or yaml"
                    )))
                }
            }
        }
        Verb::Promote {
            cluster,
            instance: Some(instance),
        } => outln!("{}", target.promote(&cluster, &instance).await?),
        Verb::Promote { instance: None, .. } => {}
        Verb::Restart {
            cluster,
            instance,
            primary,
        } => {
            let message = if primary || instance.is_some() {
                target
                    .restart_instance(&cluster, instance.as_deref())
                    .await?
            } else {
                target.restart_cluster(&cluster).await?
            };
            outln!("{message}");
        }
        Verb::Reload { cluster } => outln!("{}", target.reload(&cluster).await?),
        Verb::Fencing {
            state,
            cluster,
            instance,
        } => {
            outln!(
                "{}",
                target
                    .fencing(&cluster, &instance, matches!(state, OnOff::On))
                    .await?
            )
        }
        Verb::Hibernate { state, cluster } => {
            outln!(
                "{}",
                target
                    .hibernate(&cluster, matches!(state, OnOff::On))
                    .await?
            )
        }
        Verb::Maintenance { action } => {
            let (set, args) = match action {
                Maintenance::Set(a) => (true, a),
                Maintenance::Unset(a) => (false, a),
            };
            let _ = args.yes;
            if args.cluster.is_some() && args.all_namespaces {
                return Err(user("give a cluster or --all-namespaces, not both"));
            }
            for line in target
                .maintenance(
                    args.cluster.as_deref(),
                    args.all_namespaces,
                    set,
                    args.reuse_pvc,
                )
                .await?
            {
                outln!("{line}");
            }
        }
        Verb::Destroy {
            cluster,
            instance,
            keep_pvc,
        } => {
            for line in target.destroy(&cluster, &instance, keep_pvc).await? {
                outln!("{line}");
            }
        }
        Verb::Backup {
            cluster,
            backup_name,
            backup_target,
            method,
            online,
            immediate_checkpoint,
            wait_for_archive,
            plugin_name,
            plugin_parameters,
            dry_run,
        } => {
            let request = objects::BackupRequest {
                cluster,
                name: backup_name,
                target: backup_target,
                method,
                online,
                immediate_checkpoint,
                wait_for_archive,
                plugin_name,
                plugin_parameters: key_values(plugin_parameters.as_deref(), "--plugin-parameters")?,
            };
            let object = objects::backup_object(&request, &target.namespace, plugin::now())?;
            if dry_run {
                out!(
                    "{}",
                    serde_yaml_ng::to_string(&object)
                        .map_err(|e| PluginError::Io(e.to_string()))?
                );
            } else {
                outln!("{}", target.create_backup(&object).await?);
            }
        }
        Verb::Psql {
            cluster,
            replica,
            tty,
            stdin,
            dry_run,
            args,
        } => {
            let pod = target.psql_pod(&cluster, replica).await?;
            let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
            let mut command = vec!["psql".to_string()];
            command.extend(args);
            let argv = exec::exec_argv(
                &flags,
                &target.namespace,
                &pod,
                tty || interactive,
                stdin || interactive,
                &command,
            );
            return run_kubectl(&argv, dry_run);
        }
        Verb::Logs {
            what:
                LogsOf::Cluster {
                    cluster,
                    follow,
                    timestamps,
                    tail,
                },
        } => {
            let options = logs::LogOptions {
                follow,
                timestamps,
                tail,
            };
            if follow {
                target.follow_logs(&cluster, &options).await?;
            } else {
                for line in logs::merge(&target.instance_logs(&cluster, &options).await?) {
                    outln!("{line}");
                }
            }
        }
        Verb::Report {
            what:
                ReportOf::Cluster {
                    cluster,
                    file,
                    output,
                    logs: _,
                },
        } => {
            let json = match output.as_str() {
                "json" => true,
                "yaml" => false,
                other => return Err(user(format!("-o {other:?}: use yaml or json"))),
            };
            let file = file.unwrap_or_else(|| {
                format!("report_cluster_{cluster}_{}.zip", plugin::now()).into()
            });
            let entries = target.report(&cluster, &file, json, true).await?;
            outln!(
                "{}: {} files written ({})",
                file.display(),
                entries.len(),
                entries.join(", ")
            );
        }
        Verb::Report {
            what: ReportOf::Operator,
        }
        | Verb::Install { .. }
        | Verb::Version
        | Verb::Completion { .. }
        | Verb::Complete { .. } => {}
        Verb::Pgbench {
            cluster,
            job_name,
            db_name,
            ttl,
            node_selector,
            dry_run,
            args,
        } => {
            let request = objects::PgbenchRequest {
                cluster,
                job_name,
                db_name,
                ttl_seconds: ttl,
                node_selector: key_values(node_selector.as_deref(), "--node-selector")?,
                args,
            };
            let job = target.pgbench(&request, dry_run).await?;
            if dry_run {
                out!(
                    "{}",
                    serde_yaml_ng::to_string(&job).map_err(|e| PluginError::Io(e.to_string()))?
                );
            } else {
                outln!(
                    "job/{} created",
                    job["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
        }
        Verb::Publication { action } => {
            let (cluster, dbname, sql, dry_run) = match action {
                Publication::Create {
                    cluster,
                    publication,
                    dbname,
                    all_tables,
                    table,
                    schema,
                    parameters,
                    dry_run,
                } => {
                    let what = exec::PublicationTarget {
                        all_tables,
                        tables: table,
                        schemas: schema,
                    };
                    let sql =
                        exec::create_publication_sql(&publication, &what, parameters.as_deref())?;
                    (cluster, dbname, sql, dry_run)
                }
                Publication::Drop {
                    cluster,
                    publication,
                    dbname,
                    dry_run,
                } => (
                    cluster,
                    dbname,
                    exec::drop_publication_sql(&publication)?,
                    dry_run,
                ),
            };
            return run_sql_on_primary(&target, &flags, &cluster, &dbname, &sql, dry_run).await;
        }
        Verb::Subscription { action } => {
            let (cluster, dbname, sql, dry_run) = match action {
                Subscription::Create {
                    cluster,
                    subscription,
                    publication,
                    external_cluster,
                    dbname,
                    publication_dbname,
                    parameters,
                    dry_run,
                } => {
                    let conninfo = target
                        .external_conninfo(
                            &cluster,
                            &external_cluster,
                            Some(publication_dbname.as_deref().unwrap_or(&dbname)),
                        )
                        .await?;
                    let sql = exec::create_subscription_sql(
                        &subscription,
                        &conninfo,
                        &publication,
                        parameters.as_deref(),
                    )?;
                    (cluster, dbname, sql, dry_run)
                }
                Subscription::Drop {
                    cluster,
                    subscription,
                    dbname,
                    dry_run,
                } => (
                    cluster,
                    dbname,
                    exec::drop_subscription_sql(&subscription)?,
                    dry_run,
                ),
            };
            return run_sql_on_primary(&target, &flags, &cluster, &dbname, &sql, dry_run).await;
        }
        Verb::Certificate {
            secret,
            cnpg_cluster,
            cnpg_user,
            dry_run,
        } => {
            let shown = target
                .certificate(&secret, &cnpg_cluster, &cnpg_user, dry_run)
                .await?;
            if dry_run {
                out!(
                    "{}",
                    serde_yaml_ng::to_string(&shown).map_err(|e| PluginError::Io(e.to_string()))?
                );
            } else {
                outln!("secret/{secret} created (client certificate for user {cnpg_user}, signed by the CA of {cnpg_cluster})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `sql` in database `dbname` with psql in the primary's pod (what `publication` and
/// `subscription` do), or with `dry_run` print the command.
async fn run_sql_on_primary(
    target: &plugin::Target,
    flags: &exec::KubectlFlags,
    cluster: &str,
    dbname: &str,
    sql: &str,
    dry_run: bool,
) -> Result<ExitCode, PluginError> {
    let pod = target.psql_pod(cluster, false).await?;
    let argv = exec::exec_argv(
        flags,
        &target.namespace,
        &pod,
        false,
        false,
        &exec::psql_command(dbname, sql),
    );
    run_kubectl(&argv, dry_run)
}

/// Run (or with `dry_run` print) a kubectl command line; its exit code is ours.
fn run_kubectl(argv: &[String], dry_run: bool) -> Result<ExitCode, PluginError> {
    if dry_run {
        outln!("{}", shell_words(argv));
        return Ok(ExitCode::SUCCESS);
    }
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| PluginError::Io(format!("cannot run kubectl (is it on the PATH?): {e}")))?;
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(2)).unwrap_or(2),
    ))
}

/// A command line a shell reads back as `argv`.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether this process was started as the kubectl plugin (`kubectl-cnpg`, `kubectl-pgherd`).
pub fn invoked_as_plugin(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    matches!(name, "kubectl-cnpg" | "kubectl-pgherd")
}

//! How the first instance is made: the Cluster's `bootstrap` section with what it refers to.

use super::super::OperatorError;
use super::KubePass;
use crate::pod::APP_PASSWORD_FILE;
use pgherd_controller::plan::DataSource;
use pgherd_instance_protocol::Bootstrap;
use std::collections::BTreeMap;

impl KubePass<'_> {
    pub(in crate::operator) fn bootstrap(
        &self,
        data_source: DataSource,
    ) -> Result<Bootstrap, OperatorError> {
        let asked = self.cluster.spec.bootstrap.as_ref();
        Ok(match data_source {
            DataSource::Clone => Bootstrap::Clone,
            DataSource::Initdb if asked.is_some_and(|b| b.pg_basebackup.is_some()) => {
                // Read only while the first instance is to be made: once it is, its data is
                // there and the source may be gone.
                let parameters = match &self.resolved.clone {
                    None => BTreeMap::new(),
                    Some(Ok(parameters)) => parameters.clone(),
                    Some(Err(problem)) => return Err(OperatorError::Invalid(problem.clone())),
                };
                pgherd_controller::external::clone_bootstrap(
                    self.cluster,
                    &parameters,
                    APP_PASSWORD_FILE.into(),
                )
                .ok_or_else(|| OperatorError::Invalid("spec.bootstrap.pg_basebackup".into()))?
            }
            DataSource::Initdb if asked.is_some_and(|b| b.recovery.is_some()) => {
                let recovery = asked.and_then(|b| b.recovery.clone()).unwrap_or_default();
                let source = self.resolved.recovery.clone().ok_or_else(|| {
                    OperatorError::Invalid(
                        self.resolved
                            .recovery_problem
                            .clone()
                            .or_else(|| self.reference_problem.clone())
                            .unwrap_or_else(|| "the recovery source cannot be read".into()),
                    )
                })?;
                let (database, owner, _) =
                    pgherd_controller::instance_spec::application(self.cluster);
                pgherd_controller::recovery::bootstrap(
                    &recovery,
                    source,
                    database,
                    owner,
                    APP_PASSWORD_FILE.into(),
                )
                .map_err(OperatorError::Invalid)?
            }
            DataSource::Initdb => {
                let initdb = asked.and_then(|b| b.initdb.clone()).unwrap_or_default();
                let (database, owner, _) =
                    pgherd_controller::instance_spec::application(self.cluster);
                // The SQL of postInit*SQLRefs after the inline statements, as CloudNativePG runs
                // them; the first instance is not made without it.
                let refs = match &self.resolved.post_init {
                    None => super::super::references::PostInitSql::default(),
                    Some(Ok(sql)) => sql.clone(),
                    Some(Err(problem)) => return Err(OperatorError::Invalid(problem.clone())),
                };
                let joined = |inline: Option<Vec<String>>, refs: Vec<String>| {
                    let mut all = inline.unwrap_or_default();
                    all.extend(refs);
                    all
                };
                Bootstrap::Initdb {
                    initdb_args: pgherd_instance_manager::InitDbOptions::from_spec(&initdb)
                        .args()
                        .map_err(|e| OperatorError::Invalid(e.to_string()))?,
                    database,
                    owner,
                    owner_password_file: Some(APP_PASSWORD_FILE.into()),
                    post_init_sql: joined(initdb.post_init_sql, refs.sql),
                    post_init_template_sql: joined(initdb.post_init_template_sql, refs.template),
                    post_init_application_sql: joined(
                        initdb.post_init_application_sql,
                        refs.application,
                    ),
                }
            }
        })
    }
}

//! One module per subcommand.

pub mod crds;
pub mod instance;
pub mod local;
pub mod local_ha;
pub mod validate;

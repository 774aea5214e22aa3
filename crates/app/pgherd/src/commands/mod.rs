//! One module per subcommand.

/// Write to stdout; a closed pipe (`pgherd local status | head`) ends the program quietly
/// instead of panicking.
pub fn write_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` through [`write_out`].
macro_rules! outln {
    () => {
        $crate::commands::write_out("\n")
    };
    ($($arg:tt)*) => {
        $crate::commands::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::write_out(&format!($($arg)*))
    };
}

pub mod bootstrap;
pub mod completion;
pub mod crds;
pub mod instance;
pub mod local;
mod local_apply;
pub mod local_backup;
pub mod local_ha;
mod local_status;
pub mod manifests;
pub mod operator;
pub mod plugin;
pub mod plugin_args;
pub mod pooler;
pub mod validate;

//! `pods/exec` with `tty=true` (API reference "Pod v1 core: connect exec", `kubectl exec -t`):
//! the command gets a pseudo-terminal as its controlling terminal and stdin/stdout/stderr, as a
//! container runtime gives it. util-linux's `script` makes the terminal and relays it to pipes
//! (`--echo always`: the terminal echoes input, as a container's does while kubectl keeps the
//! local terminal raw), so no terminal handling is needed here; `TERM=xterm` is set, as
//! runtimes do. Resize messages (channel 4, `{"Width":W,"Height":H}`) set the terminal's size
//! with `stty -F`, which sends SIGWINCH to its foreground process group.

use std::time::Duration;
use tokio::process::Command;

/// `cmd` run on a new pseudo-terminal (the spawned process is `script`).
pub fn on_terminal(cmd: &Command) -> Command {
    let std = cmd.as_std();
    let mut line = vec![super::container::quote(
        &std.get_program().to_string_lossy(),
    )];
    line.extend(
        std.get_args()
            .map(|a| super::container::quote(&a.to_string_lossy())),
    );
    let mut wrapped = std::process::Command::new("/usr/bin/script");
    wrapped
        .args([
            "--quiet",
            "--flush",
            "--return",
            "--echo",
            "always",
            "--command",
        ])
        .arg(line.join(" "))
        .arg("/dev/null")
        .env_clear();
    for (k, v) in std.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    wrapped.env("TERM", "xterm");
    Command::from(wrapped)
}

/// A resize message's size: (columns, rows).
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some((
        u16::try_from(v["Width"].as_u64()?).ok()?,
        u16::try_from(v["Height"].as_u64()?).ok()?,
    ))
}

/// The terminal `script` (pid) gave its child, once it has forked.
fn terminal_of(script: u32) -> Option<String> {
    let children =
        std::fs::read_to_string(format!("/proc/{script}/task/{script}/children")).ok()?;
    children.split_whitespace().find_map(|c| {
        let tty = std::fs::read_link(format!("/proc/{c}/fd/0")).ok()?;
        let tty = tty.to_string_lossy().into_owned();
        tty.starts_with("/dev/pts/").then_some(tty)
    })
}

/// Set the size of `script`'s terminal (waiting up to 2 s for it to exist).
pub async fn resize(script: u32, columns: u16, rows: u16) {
    for _ in 0..40 {
        if let Some(tty) = terminal_of(script) {
            let _ = Command::new("stty")
                .args([
                    "-F",
                    &tty,
                    "rows",
                    &rows.to_string(),
                    "cols",
                    &columns.to_string(),
                ])
                .status()
                .await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_resize;

    #[test]
    fn resize_messages_are_json_sizes() {
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some((120, 40))
        );
        assert_eq!(parse_resize(b"garbage"), None);
        assert_eq!(parse_resize(br#"{"Width":-1,"Height":40}"#), None);
    }
}

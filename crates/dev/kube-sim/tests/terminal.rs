//! `kubectl exec -it`: a command on a pseudo-terminal. The test cites the Kubernetes
//! documentation section it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{cluster, kubectl_available, kubelet_available};
use std::io::Write;
use std::process::{Command, Stdio};

/// Docs "Get a Shell to a Running Container" (`kubectl exec --stdin --tty`) and API reference
/// "Pod v1 core: connect exec" (`tty`): the command's stdin is a terminal (TERM set), typed
/// input reaches it, the terminal has the client's size (resize channel), and the exit code
/// comes back. kubectl needs a terminal of its own for `-t`: `script` provides one, sized
/// 123x45, with the input piped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal() {
    if !kubectl_available() || !kubelet_available() {
        return;
    }
    let sim = cluster(1).await;
    sim.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: term}\nspec:\n  containers: [{name: main, image: busybox, command: [sleep, '300']}]\n",
    );
    sim.kubectl(&["wait", "--for=condition=Ready", "pod/term", "--timeout=30s"]);
    let remote = r#"test -t 0 && echo stdin-is-a-tty; echo term=$TERM; read line; echo got=$line; i=0; while [ "$(stty size)" = "0 0" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; echo size=$(stty size); exit 3"#;
    let line = format!(
        "stty cols 123 rows 45; exec kubectl exec -it term -- sh -c '{}'",
        remote.replace('\'', r"'\''")
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("KUBECONFIG", sim.kubeconfig())
        .env("KUBECACHEDIR", sim.dir.path().join("cache"))
        .env("HOME", sim.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Typed once the remote command waits for it.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(3));
        let _ = stdin.write_all(b"hello\n");
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("stdin-is-a-tty"), "{text}");
    assert!(text.contains("term=xterm"), "{text}");
    assert!(text.contains("got=hello"), "{text}");
    assert!(text.contains("size=45 123"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
}

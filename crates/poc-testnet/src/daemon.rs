//! A running `pocd`, reached through its control socket as `poc` reaches it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use poc_control::{Client, Request, StatusView};

use crate::{Error, NodeDir};

/// How long a daemon may take to open its control socket, or to exit.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `pocd` process; killed (SIGKILL) when dropped, so a failing test
/// leaves no daemon behind.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `pocd` (the binary at `program`) on `node`'s configuration,
    /// with `env` added to its environment and its stderr appended to
    /// `node`'s log, and waits until its control socket answers a status
    /// request.
    pub fn try_start(
        program: &Path,
        node: &NodeDir,
        env: &[(&str, &str)],
    ) -> Result<Daemon, Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .map_err(Error::io(format!("cannot open {}", node.log().display())))?;
        let child = Command::new(program)
            .arg("--config")
            .arg(node.config())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(Error::io(format!("cannot start {}", program.display())))?;
        let mut daemon = Daemon {
            child,
            socket: node.socket(),
            log: node.log(),
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// [`Daemon::try_start`], panicking (with the daemon's log) if it fails.
    pub fn start(program: &Path, node: &NodeDir, env: &[(&str, &str)]) -> Daemon {
        Daemon::try_start(program, node, env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            // A daemon that refuses its configuration exits at once: say
            // so now rather than after the whole wait.
            self.check_alive()?;
            if let Ok(mut client) = Client::connect(&self.socket)
                && client.call::<StatusView>(&Request::Status).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::DaemonNotReady {
            log: self.log_text(),
        })
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new control connection.
    pub fn try_client(&self) -> Result<Client, Error> {
        Client::connect(&self.socket).map_err(|source| Error::Control {
            source,
            log: self.log_text(),
        })
    }

    /// [`Daemon::try_client`], panicking if the socket cannot be reached.
    pub fn client(&self) -> Client {
        self.try_client().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends `request` on a new connection; panics naming the request if
    /// it fails.
    pub fn call<T: serde::de::DeserializeOwned>(&self, request: &Request) -> T {
        self.client()
            .call(request)
            .unwrap_or_else(|e| panic!("{request:?} failed: {e}"))
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::DaemonExited {
                status,
                log: self.log_text(),
            }),
            Err(source) => Err(Error::Io {
                what: "cannot check on pocd".into(),
                source,
            }),
        }
    }

    /// SIGKILL: no shutdown code runs (a crash, as far as pocd can tell).
    pub fn kill9(mut self) {
        self.kill();
    }

    /// Waits for the process to exit on its own (e.g. a failpoint abort);
    /// panics if it is still running after 30 s.
    pub fn wait_exit(mut self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pocd did not exit; log:\n{}", self.log_text());
    }

    fn kill(&mut self) {
        // Errors mean it has already exited and been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

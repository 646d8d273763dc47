//! The local PostgreSQL cluster behind [`crate::PostgresServer`]: `initdb`
//! into a private temp dir, `pg_ctl start`/`stop`, run as the `postgres`
//! system user when the tests run as root.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::process::{self, SystemUser};
use crate::{INSTALL_HINT, free_port};

#[derive(Debug)]
pub(crate) struct Cluster {
    bin_dir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    user: Option<SystemUser>,
    running: Mutex<bool>,
    _watchdog: Child,
}

impl Cluster {
    /// Creates (`initdb`) and configures a stopped cluster in a new temp dir,
    /// guarded by a watchdog that removes it when this process is gone.
    pub(crate) fn create() -> Self {
        let bin_dir = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "framelake-testkit: PostgreSQL server binaries (initdb, pg_ctl, postgres) not \
                 found on PATH nor in /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: \
                 `apt-get install postgresql`), or {INSTALL_HINT}."
            )
        });
        // PostgreSQL refuses to run as root.
        let user = process::running_as_root().then(|| {
            process::lookup_user("postgres").unwrap_or_else(|| {
                panic!(
                    "framelake-testkit: running as root, and PostgreSQL refuses to run as root, \
                     but there is no `postgres` system user to run it as. Install the \
                     `postgresql` package (it creates the user), or {INSTALL_HINT}."
                )
            })
        });
        let root = tempfile::Builder::new()
            .prefix("framelake-pg-")
            .tempdir()
            .expect("create a temp dir for the PostgreSQL cluster")
            .keep();
        let data = root.join("data");
        let watchdog = process::spawn_watchdog(&root, &data.join("postmaster.pid"), "QUIT");
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir).expect("create the PostgreSQL socket dir");
        if let Some(u) = user {
            for dir in [&root, &socket_dir] {
                std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid))
                    .expect("chown the PostgreSQL temp dirs to the postgres user");
            }
        }
        let mut initdb = process::command_as(&bin_dir.join("initdb"), user);
        initdb
            .current_dir(&root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        if let Err(e) = process::run_checked(&mut initdb, "initdb") {
            panic!("{e}");
        }
        let port = free_port();
        let conf = format!(
            "\n# framelake-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nmax_connections = 200\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n",
            socket_dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        let log = root.join("postgres.log");
        Self {
            bin_dir,
            root,
            data,
            log,
            port,
            user,
            running: Mutex::new(false),
            _watchdog: watchdog,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `pg_ctl start -w`, then waits for the TCP port. No-op if running.
    pub(crate) fn start(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if *running {
            return;
        }
        self.pg_ctl(&["start", "-w", "-t", "60", "-s"]);
        if !process::wait_until(Duration::from_secs(30), || process::port_open(self.port)) {
            panic!(
                "framelake-testkit: PostgreSQL started but does not accept TCP connections on \
                 port {}; log:\n{}",
                self.port,
                process::log_tail(&self.log, 4000)
            );
        }
        *running = true;
    }

    /// `pg_ctl stop -m fast -w`. No-op if stopped.
    pub(crate) fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if !*running {
            return;
        }
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60", "-s"]);
        *running = false;
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = process::command_as(&self.bin_dir.join("pg_ctl"), self.user);
        cmd.current_dir(&self.root)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(args);
        if let Err(e) = process::run_checked(&mut cmd, "pg_ctl") {
            panic!(
                "{e}\n--- PostgreSQL log ---\n{}",
                process::log_tail(&self.log, 4000)
            );
        }
    }
}

/// A dir holding `initdb`, `pg_ctl` and `postgres`: from PATH (symlinks
/// resolved), else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if let Ok(real) = dir.join("pg_ctl").canonicalize()
            && let Some(real_dir) = real.parent()
            && complete(real_dir)
        {
            return Some(real_dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

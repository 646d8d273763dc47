//! Process plumbing: the watchdog that cleans up after the test process,
//! running commands as an unprivileged user, and small wait helpers.
//!
//! # Watchdog
//!
//! Test binaries never run destructors of statics, and `PR_SET_PDEATHSIG`
//! fires when the spawning *thread* exits (test threads are short-lived), so
//! neither can stop a server. Instead, for every server we spawn a tiny
//! `/bin/sh` loop ([`spawn_watchdog`]) as a child of the test process, in its
//! own process group (so Ctrl-C does not kill it before it has cleaned up).
//! Once a second it checks that its parent is still the test process (read
//! from `/proc/$$/stat`; when the test process dies the watchdog is
//! re-parented, which also makes the check immune to pid reuse; without
//! `/proc` it falls back to `kill -0 $TESTPID`). When the test process is
//! gone it reads the server's pid from a pid file (PostgreSQL's own
//! `postmaster.pid`, or one we write for moto), signals it, waits up to 10 s,
//! `SIGKILL`s it if needed, and finally `rm -rf`s the server's temp dir.
//! Because the watchdog watches a pid *file* rather than owning the server
//! process, servers can be stopped and restarted freely in between.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG_SCRIPT: &str = r#"
testpid=$1 dir=$2 pidfile=$3 sig=$4
trap '' INT HUP
# Sets $st (state) and $pp (parent pid) of pid $1 from /proc; fails if gone.
stat_of() {
  [ -r "/proc/$1/stat" ] && read -r line < "/proc/$1/stat" || return 1
  rest=${line##*) }; st=${rest%% *}; rest=${rest#* }; pp=${rest%% *}
}
alive() {
  if [ -d "/proc/$$" ]; then stat_of $$ && [ "$pp" = "$testpid" ]
  else kill -0 "$testpid" 2>/dev/null; fi
}
running() {
  if [ -d "/proc/$$" ]; then stat_of "$1" && [ "$st" != Z ]
  else kill -0 "$1" 2>/dev/null; fi
}
while alive; do sleep 1; done
if [ -s "$pidfile" ] && read -r pid < "$pidfile" && [ -n "$pid" ] && running "$pid"; then
  kill -"$sig" "$pid" 2>/dev/null
  i=0
  while running "$pid" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$dir"
"#;

/// Spawns the watchdog for one server: once this process is gone it sends
/// `signal` (e.g. `QUIT`, `TERM`) to the pid on the first line of `pid_file`
/// and then removes `dir` recursively. Keep the returned handle: the
/// watchdog only exits after this process, so it is never waited for.
pub(crate) fn spawn_watchdog(dir: &Path, pid_file: &Path, signal: &str) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("framelake-testkit-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(pid_file)
        .arg(signal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the /bin/sh watchdog that cleans up test servers")
}

/// An unprivileged account to run servers as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

pub(crate) fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up `name` in the system user database.
pub(crate) fn lookup_user(name: &str) -> Option<SystemUser> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: `passwd` is plain old data; all-zero is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and
    // `buf.len()` is the real size of `buf`.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(SystemUser {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// A command that runs as `user` (uid, gid, no supplementary groups) when
/// given, otherwise as the current user.
pub(crate) fn command_as(program: &Path, user: Option<SystemUser>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(user) = user {
        // std drops supplementary groups (setgroups(0)) before setuid as root.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// Runs `cmd` to completion; on failure, a message with its output.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<(), String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("framelake-testkit: could not run {what} ({cmd:?}): {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "framelake-testkit: {what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    ))
}

/// Polls `ready` every 100 ms until it returns true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether an HTTP server on `127.0.0.1:port` answers `GET /` (any status).
pub(crate) fn http_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The last `max` bytes of a log file, for panic messages.
pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

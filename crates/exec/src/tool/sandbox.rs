//! The confinement of a tool task: bubblewrap, rlimits and a watchdog.
//!
//! Inside the sandbox a tool sees:
//! - the system read-only: `/usr` (and the `/bin`, `/lib` links into it),
//!   the dynamic loader's cache and `/etc/alternatives`, nothing else of
//!   `/etc`, nothing of `/home`, `/root`, `/var` or the node's data;
//! - `/input` read-only, `/output` writable, a private `/tmp` (a tmpfs no
//!   larger than the task's memory limit);
//! - a fresh `/proc` and a minimal `/dev`, with the nodes of the GPUs the
//!   task was lent ([`super::gpu`]) and no others.
//!
//! It runs in new user, PID, IPC, UTS, cgroup and network namespaces (no
//! network at all, loopback included), in its own session (it cannot
//! reach the node's terminal), with every capability dropped, no new
//! privileges, no further user namespaces, the system calls a seccomp
//! filter allows ([`super::seccomp`]), an empty environment but for
//! `HOME`, `TMPDIR`, `PATH` and `LANG`, and a fixed hostname.
//!
//! Limits, set as rlimits before bubblewrap starts and inherited by the
//! tool: address space (`limits.memory_mib`), each file's size
//! (`limits.output_mib`), CPU time (the wall-clock limit times the threads
//! a task may use), processes (only where the provider is not root), no
//! core dumps. A watchdog kills the sandbox at the wall-clock limit;
//! bubblewrap's `--die-with-parent` takes every process in it along, and
//! the PID namespace's end waits for all of them, so nothing of a task
//! still runs when its outputs are read. Standard output and error are
//! read as they come, the first `limits.stdout_kib` of each kept.
//!
//! A cgroup per task ([`super::cgroup`]) bounds the task as a whole: its
//! processes and threads together, and its memory (each process's
//! address space is bounded apart). A task that reaches either is not a
//! result. Where groups cannot be made, a provider that is not root
//! relies on the process rlimit; one that is root offers no tools, since
//! the kernel holds root to no process limit and a fork bomb would take
//! every process id of the host.
//!
//! Not yet bounded while the tool runs: the number of files it creates in
//! `/output` (counted after it ends, like the total size).

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cgroup::TaskGroup;
use crate::{ExecError, Outcome, Task};

/// The descriptor bubblewrap reports the tool's exit status on.
const STATUS_FD: i32 = 3;

/// The descriptor bubblewrap reads the seccomp filter from.
const SECCOMP_FD: i32 = 4;

/// `memfd_create`'s flag for a file that can never be executed (Linux 6.3).
const MFD_NOEXEC_SEAL: libc::c_uint = 0x0008;

/// Where the child first moves the descriptors it passes on, above any
/// number they are to take, so that placing one cannot close another.
const FD_STAGING: i32 = 16;

/// Folders that are links into `/usr` on a merged system, or read-only
/// binds where they are folders.
const SYSTEM_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// Files of `/etc` a dynamically linked tool needs, bound read-only where
/// they exist.
const ETC: &[&str] = &["/etc/ld.so.cache", "/etc/alternatives", "/etc/fonts"];

/// How long a version probe may take.
const PROBE_TIME: Duration = Duration::from_secs(60);

/// How long a probe of what a tool can do with GPUs may take.
const GPU_PROBE_TIME: Duration = Duration::from_secs(300);

/// How long the host's own media work may take (one split of a clip).
const MEDIA_TIME: Duration = Duration::from_secs(600);

/// Bytes of a version probe's output kept.
const PROBE_BYTES: u64 = 64 << 10;

/// A way to confine tools on this machine.
pub struct Sandbox {
    bwrap: PathBuf,
    /// The arguments that build the system view, the same for every task.
    system: Vec<OsString>,
    /// Whether each task gets its own cgroup.
    groups: bool,
    /// The seccomp filter, as bubblewrap reads it.
    seccomp: Vec<u8>,
}

/// What a sandboxed run left.
pub(crate) struct Ran {
    /// How the tool ended.
    pub outcome: Outcome,
    /// The first bytes of its stdout.
    pub stdout: Vec<u8>,
    /// The first bytes of its stderr.
    pub stderr: Vec<u8>,
    /// User and system CPU time of everything the task ran, where a group
    /// of its own counted it.
    pub cpu_time: Option<Duration>,
}

/// Limits of one sandboxed run.
struct Bounds {
    memory_bytes: u64,
    file_bytes: u64,
    /// The soft CPU-time limit (SIGXCPU); the hard one, a little later,
    /// kills.
    cpu_seconds: u64,
    wall_time: Duration,
    stream_bytes: u64,
}

/// CPU seconds between the soft limit's SIGXCPU and the hard limit's kill,
/// so the tool ends by the signal that says why.
const CPU_GRACE_S: u64 = 5;

/// Processes (threads included) a task may have at once: its cgroup's
/// limit, and the rlimit of the tool's user (which the kernel applies only
/// where the provider does not run as root: root is exempt, inside a user
/// namespace too). The PID namespace bounds what outlives the task either
/// way.
const PROCESSES_MAX: u64 = 1_024;

impl Sandbox {
    /// Checks that `bwrap` exists and makes a sandbox here (it needs user
    /// namespaces), by running `true` in one.
    pub fn new(bwrap: &Path) -> Result<Self, ExecError> {
        if !bwrap.is_file() {
            return Err(ExecError::Sandbox(format!(
                "{} not found: install bubblewrap (Debian: apt-get install bubblewrap)",
                bwrap.display()
            )));
        }
        let mut system: Vec<OsString> = Vec::new();
        for flag in [
            "--unshare-all",
            // Made certain (not only tried, as --unshare-all does), so that
            // --disable-userns applies.
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--hostname",
            "cairn",
            "--ro-bind",
            "/usr",
            "/usr",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ] {
            system.push(flag.into());
        }
        for link in SYSTEM_LINKS {
            match std::fs::read_link(link) {
                Ok(target) => {
                    system.push("--symlink".into());
                    system.push(target.into());
                    system.push(link.into());
                }
                Err(_) if Path::new(link).is_dir() => {
                    for a in ["--ro-bind", link, link] {
                        system.push(a.into());
                    }
                }
                Err(_) => {}
            }
        }
        for file in ETC {
            if Path::new(file).exists() {
                for a in ["--ro-bind", file, file] {
                    system.push(a.into());
                }
            }
        }
        for (name, value) in [
            ("HOME", "/tmp"),
            ("TMPDIR", "/tmp"),
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
        ] {
            for a in ["--setenv", name, value] {
                system.push(a.into());
            }
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let groups = match TaskGroup::new(PROCESSES_MAX, probe_bounds().memory_bytes) {
            Ok(_) => {
                super::cgroup::sweep();
                true
            }
            Err(why) if root => {
                return Err(ExecError::Sandbox(format!(
                    "running as root, each tool task needs a cgroup of its own to bound its \
                     processes (the kernel holds root to no process limit), and none can be \
                     made here: {why}. Run the provider as another user, or with a writable \
                     /sys/fs/cgroup"
                )));
            }
            Err(_) => false,
        };
        let sandbox = Self {
            bwrap: bwrap.to_path_buf(),
            system,
            groups,
            seccomp: super::seccomp::program().map_err(ExecError::Sandbox)?,
        };
        let ran = sandbox.probe(Path::new("/usr/bin/true"), &[], &[])?;
        if !ran.outcome.is_success() {
            return Err(ExecError::Sandbox(format!(
                "bubblewrap cannot make a sandbox here ({}): {}",
                ran.outcome,
                String::from_utf8_lossy(&ran.stderr).trim()
            )));
        }
        Ok(sandbox)
    }

    /// Whether each task gets a cgroup of its own, which bounds its
    /// memory as a whole.
    pub(crate) fn has_groups(&self) -> bool {
        self.groups
    }

    /// The version a tool prints, read inside the sandbox.
    pub(crate) fn version(
        &self,
        tool: &Path,
        args: &[&str],
        prefix: &str,
    ) -> Result<String, ExecError> {
        let ran = self.probe(tool, args, &[])?;
        let text = String::from_utf8_lossy(&ran.stdout);
        super::parse_version(&text, prefix).ok_or_else(|| {
            ExecError::Sandbox(format!(
                "{} printed no version ({})",
                tool.display(),
                ran.outcome
            ))
        })
    }

    /// Runs `tool` with `args` briefly, on the host's own behalf (reading
    /// its version, what it can do with `devices`), with no folders.
    pub(crate) fn probe(
        &self,
        tool: &Path,
        args: &[&str],
        devices: &[(PathBuf, PathBuf)],
    ) -> Result<Ran, ExecError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut bounds = probe_bounds();
        if !devices.is_empty() {
            // A first GPU render may compile the renderer's kernels for
            // the GPU (Cycles ships PTX for GPUs newer than its cubins).
            bounds.wall_time = GPU_PROBE_TIME;
            bounds.cpu_seconds = GPU_PROBE_TIME.as_secs();
        }
        self.spawn(tool, &args, None, None, devices, &bounds, None)
    }

    /// Runs one task of `tool`, which may use `threads` threads and the
    /// device nodes `devices` (host path, path inside).
    pub(crate) fn run(
        &self,
        tool: &Path,
        task: &Task<'_>,
        threads: u32,
        devices: &[(PathBuf, PathBuf)],
    ) -> Result<Ran, ExecError> {
        let limits = &task.limits;
        let bounds = Bounds {
            memory_bytes: limits.memory_bytes,
            file_bytes: limits.output_bytes,
            cpu_seconds: limits
                .wall_time
                .as_secs()
                .max(1)
                .saturating_mul(u64::from(threads.max(1))),
            wall_time: limits.wall_time,
            stream_bytes: limits.stdout_bytes,
        };
        self.spawn(
            tool,
            task.args,
            task.input_dir,
            Some(task.output_dir),
            devices,
            &bounds,
            None,
        )
    }

    /// Runs `program` on the host's own behalf (splitting a clip,
    /// reading what a provider encoded), confined as a task is, within
    /// [`MEDIA_TIME`] and files of at most `file_bytes`.
    pub(crate) fn run_program(
        &self,
        program: &Path,
        args: &[String],
        input: &Path,
        output: Option<&Path>,
        file_bytes: u64,
    ) -> Result<Ran, ExecError> {
        // Reading a file (no output) is quick; what a provider sent may
        // not make it slow.
        let time = if output.is_some() {
            MEDIA_TIME
        } else {
            PROBE_TIME
        };
        let bounds = Bounds {
            memory_bytes: 4 << 30,
            file_bytes,
            cpu_seconds: time.as_secs(),
            wall_time: time,
            stream_bytes: PROBE_BYTES,
        };
        self.spawn(program, args, Some(input), output, &[], &bounds, None)
    }

    /// Runs `program` on the host's own behalf reading `stdin` (a live
    /// stream), confined as [`Sandbox::run_program`] does, writing into
    /// `output`, for at most `wall_time`.
    pub(crate) fn run_program_reading(
        &self,
        program: &Path,
        args: &[String],
        stdin: std::fs::File,
        output: &Path,
        file_bytes: u64,
        wall_time: Duration,
    ) -> Result<Ran, ExecError> {
        let bounds = Bounds {
            memory_bytes: 4 << 30,
            file_bytes,
            cpu_seconds: wall_time.as_secs().max(1),
            wall_time,
            stream_bytes: PROBE_BYTES,
        };
        self.spawn(program, args, None, Some(output), &[], &bounds, Some(stdin))
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        tool: &Path,
        args: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
        devices: &[(PathBuf, PathBuf)],
        bounds: &Bounds,
        stdin: Option<std::fs::File>,
    ) -> Result<Ran, ExecError> {
        let mut command = Command::new(&self.bwrap);
        command.env_clear().args(&self.system);
        command
            .arg("--size")
            .arg(bounds.memory_bytes.to_string())
            .args(["--tmpfs", "/tmp"]);
        if let Some(input) = input {
            command.arg("--ro-bind").arg(input).arg("/input");
        }
        if let Some(output) = output {
            command.arg("--bind").arg(output).arg("/output");
        }
        for (host, inside) in devices {
            command.arg("--dev-bind").arg(host).arg(inside);
        }
        // The sandbox's root and /dev are tmpfs mounts of bubblewrap's
        // own, with no size: read-only, so a tool cannot fill memory
        // through them (remounting is not recursive: /tmp and /output
        // stay writable).
        command
            .args(["--remount-ro", "/dev", "--remount-ro", "/"])
            .args(["--chdir", "/tmp", "--json-status-fd"])
            .arg(STATUS_FD.to_string())
            .arg("--seccomp")
            .arg(SECCOMP_FD.to_string())
            .arg("--")
            .arg(tool)
            .args(args)
            .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        // The group holds the task's processes and its `/tmp` (a tmpfs of
        // `memory_bytes`, charged to whoever writes it): room for both, as
        // each had before.
        let group_memory = bounds.memory_bytes.saturating_mul(2);
        let group = self
            .groups
            .then(|| TaskGroup::new(PROCESSES_MAX, group_memory))
            .transpose()
            .map_err(ExecError::Sandbox)?;
        let (join, may_join) = group.as_ref().map(TaskGroup::join_fds).unwrap_or_default();
        let (status_read, status_write) = pipe()?;
        let status_fd = status_write.as_raw_fd();
        let filter = self.filter()?;
        let filter_fd = filter.as_raw_fd();
        // CUDA reserves address space for the GPU's memory and for unified
        // addressing, far beyond what it touches, and fails to start under
        // a small RLIMIT_AS: a task with a GPU is bounded by its group's
        // memory only (no GPU is lent without groups, `ToolRuntime::new`).
        let address_space = if devices.is_empty() {
            bounds.memory_bytes
        } else {
            libc::RLIM_INFINITY
        };
        let rlimits = [
            (libc::RLIMIT_AS, address_space, address_space),
            (libc::RLIMIT_FSIZE, bounds.file_bytes, bounds.file_bytes),
            (
                libc::RLIMIT_CPU,
                bounds.cpu_seconds,
                bounds.cpu_seconds.saturating_add(CPU_GRACE_S),
            ),
            (libc::RLIMIT_CORE, 0, 0),
            (libc::RLIMIT_NPROC, PROCESSES_MAX, PROCESSES_MAX),
        ];
        // SAFETY: between fork and exec the closure calls only
        // async-signal-safe functions (write, fcntl, dup2, close_range,
        // setrlimit) on values prepared before the fork; it allocates
        // nothing.
        unsafe {
            command.pre_exec(move || {
                // Joins the task's groups (`0`: the writing process) before
                // anything of the task is started, and before the status
                // and filter descriptors take their numbers (a group's
                // descriptor may have had one).
                for &fd in &join {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // A group that only counts: without it, the task's CPU
                // time reads as what the group's other members used, none.
                if let Some(fd) = may_join {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                }
                // Either may hold the other's number: both move above
                // both first.
                let status = libc::fcntl(status_fd, libc::F_DUPFD, FD_STAGING);
                let filter = libc::fcntl(filter_fd, libc::F_DUPFD, FD_STAGING);
                if status < 0
                    || filter < 0
                    || libc::dup2(status, STATUS_FD) < 0
                    || libc::dup2(filter, SECCOMP_FD) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Descriptors this process inherited without close-on-exec
                // (a build tool's jobserver pipes, say) would reach the
                // tool: only the standard streams, the status and the
                // filter (which bubblewrap closes once read) pass.
                if libc::syscall(libc::SYS_close_range, SECCOMP_FD + 1, u32::MAX, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (resource, soft, hard) in rlimits {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(ExecError::io(format!("starting {}", self.bwrap.display())))?;
        drop(status_write);
        drop(filter);
        let pid = child.id() as libc::pid_t;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let cap = bounds.stream_bytes;

        let (exited_tx, exited_rx) = crossbeam_channel::bounded::<()>(1);
        let (stdout, stderr, killed, wait_status) = std::thread::scope(|scope| {
            let out = scope.spawn(move || read_capped(stdout, cap));
            let err = scope.spawn(move || read_capped(stderr, cap));
            let status = scope.spawn(move || read_all(status_read));
            scope.spawn(move || {
                // Waits for the exit without reaping it, so the pid stays
                // ours (a zombie) until it is reaped below: the watchdog
                // can never kill a process that reused it.
                // SAFETY: an all-zero siginfo_t is a valid value to fill.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                loop {
                    // SAFETY: `info` outlives the call.
                    let waited = unsafe {
                        libc::waitid(
                            libc::P_PID,
                            pid as libc::id_t,
                            &mut info,
                            libc::WEXITED | libc::WNOWAIT,
                        )
                    };
                    let interrupted = waited != 0
                        && std::io::Error::last_os_error().kind()
                            == std::io::ErrorKind::Interrupted;
                    if !interrupted {
                        break;
                    }
                }
                let _ = exited_tx.send(());
            });
            let killed = match exited_rx.recv_timeout(bounds.wall_time) {
                Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => false,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // SAFETY: `pid` is our unreaped child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let _ = exited_rx.recv();
                    true
                }
            };
            let waited = child.wait();
            (
                out.join().expect("reader"),
                err.join().expect("reader"),
                killed,
                (waited, status.join().expect("reader")),
            )
        });
        let (waited, status_json) = wait_status;
        waited.map_err(ExecError::io("waiting for bubblewrap"))?;
        // Read from the task's group: bubblewrap exits before its init in
        // the PID namespace has reaped the tool, so its own usage (wait4's)
        // holds next to none of the task's.
        let cpu_time = group.as_ref().and_then(TaskGroup::cpu_time);
        // A task held to its group's limits ran otherwise than it would
        // with room (a failed fork, a process killed), however it ended.
        if let Some(group) = &group {
            if group.processes_exceeded() {
                return Err(ExecError::ProcessesExceeded {
                    limit: PROCESSES_MAX,
                });
            }
            if group.memory_exceeded() {
                return Err(ExecError::MemoryExceeded {
                    bytes: group_memory,
                });
            }
        }
        if killed {
            return Err(ExecError::WallTimeExceeded {
                seconds: bounds.wall_time.as_secs(),
            });
        }
        let Some(code) = exit_code(&status_json) else {
            return Err(ExecError::Sandbox(format!(
                "bubblewrap did not start the tool: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        };
        let outcome = classify(code, bounds)?;
        Ok(Ran {
            outcome,
            stdout,
            stderr,
            cpu_time,
        })
    }
}

impl Sandbox {
    /// A descriptor reading the seccomp filter from its start: a memory
    /// file of the task's own, since bubblewrap reads it to its end.
    fn filter(&self) -> Result<OwnedFd, ExecError> {
        const WHAT: &str = "passing the seccomp filter";
        let create = |flags| {
            // SAFETY: the name is a NUL-terminated string.
            unsafe { libc::memfd_create(c"cairn-seccomp".as_ptr(), flags) }
        };
        let mut fd = create(libc::MFD_CLOEXEC);
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
            // A kernel set to refuse executable memory files
            // (`vm.memfd_noexec = 2`) takes one sealed against it.
            fd = create(libc::MFD_CLOEXEC | MFD_NOEXEC_SEAL);
        }
        if fd < 0 {
            return Err(ExecError::io(WHAT)(std::io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a descriptor we own.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.write_all(&self.seccomp)
            .and_then(|()| file.rewind())
            .map_err(ExecError::io(WHAT))?;
        Ok(file.into())
    }
}

/// Sorts the tool's exit into a result or an error. Bubblewrap reports a
/// tool killed by signal N as 128 + N.
fn classify(code: i32, bounds: &Bounds) -> Result<Outcome, ExecError> {
    let Some(signal) = code.checked_sub(128).filter(|s| *s > 0) else {
        return Ok(Outcome::Exited(code));
    };
    match signal {
        libc::SIGXFSZ => Ok(Outcome::OutputLimit {
            stream: "output",
            limit: bounds.file_bytes,
        }),
        libc::SIGXCPU => Err(ExecError::CpuTimeExceeded {
            seconds: bounds.cpu_seconds,
        }),
        // Not the tool's doing: the host (its memory, an operator) ended
        // it, and another machine would not.
        libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP => Err(ExecError::Sandbox(
            format!("the tool was killed by signal {signal} on this machine"),
        )),
        _ => Ok(Outcome::Trap(format!(
            "the tool was killed by signal {signal}"
        ))),
    }
}

/// The exit code in bubblewrap's status report (JSON lines such as
/// `{ "exit-code": 0 }`), if the tool ran. Bubblewrap writes it last: a
/// tool that reached the descriptor could only write before it.
fn exit_code(report: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(report).ok()?;
    const KEY: &str = "\"exit-code\"";
    let after = &text[text.rfind(KEY)? + KEY.len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let end = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

fn probe_bounds() -> Bounds {
    Bounds {
        memory_bytes: 4 << 30,
        file_bytes: 64 << 20,
        cpu_seconds: PROBE_TIME.as_secs(),
        wall_time: PROBE_TIME,
        stream_bytes: PROBE_BYTES,
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes; what is cut
/// is said at the end. Reading on lets the tool go on writing.
fn read_capped(mut stream: impl Read, cap: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut cut: u64 = 0;
    let mut buf = [0u8; 16 << 10];
    let keep = usize::try_from(cap.saturating_sub(64)).unwrap_or(usize::MAX);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                cut += (n - room) as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if cut > 0 {
        kept.extend_from_slice(format!("\n[cairn: {cut} more bytes not kept]\n").as_bytes());
    }
    kept
}

/// Reads a small pipe to its end (bubblewrap's status: two short lines).
fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(fd).take(4096).read_to_end(&mut bytes);
    bytes
}

/// A pipe whose ends close on exec (the write end is duplicated onto
/// [`STATUS_FD`] in the child, which clears that flag on the copy only).
fn pipe() -> Result<(OwnedFd, OwnedFd), ExecError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ExecError::io("making a pipe")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_read_from_the_status_report() {
        let report = b"{ \"child-pid\": 12 }\n{ \"exit-code\": 153 }\n";
        assert_eq!(exit_code(report), Some(153));
        let forged = b"{ \"exit-code\": 0 }\n{ \"exit-code\": 152 }\n";
        assert_eq!(exit_code(forged), Some(152), "the last report counts");
        assert_eq!(exit_code(b"{ \"child-pid\": 12 }\n"), None);
        assert_eq!(exit_code(b""), None);
    }

    #[test]
    fn signals_sort_into_results_and_errors() {
        let bounds = probe_bounds();
        assert_eq!(classify(0, &bounds).unwrap(), Outcome::Exited(0));
        assert_eq!(classify(128, &bounds).unwrap(), Outcome::Exited(128));
        assert!(matches!(
            classify(128 + libc::SIGXFSZ, &bounds).unwrap(),
            Outcome::OutputLimit {
                stream: "output",
                ..
            }
        ));
        assert!(matches!(
            classify(128 + libc::SIGSEGV, &bounds).unwrap(),
            Outcome::Trap(_)
        ));
        assert!(classify(128 + libc::SIGXCPU, &bounds).is_err());
        assert!(classify(128 + libc::SIGKILL, &bounds).is_err());
    }

    #[test]
    fn a_stream_past_its_cap_is_cut_and_says_so() {
        let long = vec![b'x'; 10_000];
        let kept = read_capped(&long[..], 1_000);
        assert!(kept.len() <= 1_000, "{} bytes kept", kept.len());
        let text = String::from_utf8(kept).unwrap();
        assert!(text.ends_with("bytes not kept]\n"), "{text}");
        assert_eq!(read_capped(&b"short"[..], 1_000), b"short");
    }
}

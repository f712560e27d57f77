//! A control group per tool task: rlimits bound each process of a task,
//! not the task, and the process limit not at all for root (the kernel
//! exempts it, inside a user namespace too). A fork bomb run by a provider
//! as root could take every process id of the host (32,768 on many
//! machines), and a task of many processes could each use its whole
//! address-space limit. A group per task bounds the task as a whole: its
//! processes (`pids`) and its memory. It also counts the task's CPU time
//! (`cpuacct`, or version 2's `cpu.stat`), all its processes together,
//! which a provider weighs the work a task declares against.
//!
//! Groups are made under this process's own, in cgroup version 1 (a
//! hierarchy per controller) or version 2 (one hierarchy, whose `pids` and
//! `memory` controllers must be enabled for this process's group's
//! children). The sandboxed child joins them before it starts bubblewrap,
//! by writing `0` to each group's `cgroup.procs`, so everything the task
//! starts is counted. A group is removed when the task is over.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the hierarchies are mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// How a task group's name begins: the provider's process id and a count
/// follow.
const PREFIX: &str = "cairn-task-";

/// Makes each group's name unique within this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// One task's groups, removed when dropped.
pub(crate) struct TaskGroup {
    /// Each group's folder and its `cgroup.procs`, open for writing.
    groups: Vec<(PathBuf, OwnedFd)>,
    /// The group holding the memory controller, and whether it is of
    /// version 2.
    memory: Option<(PathBuf, bool)>,
    /// The group holding the pids controller.
    pids: Option<PathBuf>,
    /// The group that counts the task's CPU time, and whether it is of
    /// version 2 (whose every group does).
    cpu: Option<(PathBuf, bool)>,
    /// Whether the last of `groups` only counts (version 1's `cpuacct`):
    /// the task runs even if it cannot join it.
    optional: bool,
}

impl TaskGroup {
    /// Groups for one task, of at most `processes` processes (threads
    /// included) and `memory_bytes` of memory (swap included where it is
    /// accounted); why not, where groups cannot be made here.
    pub(crate) fn new(processes: u64, memory_bytes: u64) -> Result<Self, String> {
        // The process id and a count: unique while this process lives
        // (one left by a process that died takes the next count).
        let name = || {
            format!(
                "{PREFIX}{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        };
        let mut group = Self {
            groups: Vec::new(),
            memory: None,
            pids: None,
            cpu: None,
            optional: false,
        };
        match parents()? {
            Parents::V1 {
                pids,
                memory,
                cpuacct,
            } => {
                let pids = group.add(&pids, name)?;
                group.limit(&pids, "pids.max", processes)?;
                group.pids = Some(pids);
                let memory = group.add(&memory, name)?;
                group.limit(&memory, "memory.limit_in_bytes", memory_bytes)?;
                // Memory and swap together, where swap is accounted.
                if memory.join("memory.memsw.limit_in_bytes").exists() {
                    group.limit(&memory, "memory.memsw.limit_in_bytes", memory_bytes)?;
                }
                group.memory = Some((memory, false));
                // Counting only: where the hierarchy is missing or not
                // writable, or the child cannot join it (below), the task
                // runs without its CPU time measured.
                if let Some(cpuacct) = cpuacct {
                    group.cpu = group.add(&cpuacct, name).ok().map(|dir| (dir, false));
                    group.optional = group.cpu.is_some();
                }
            }
            Parents::V2(parent) => {
                let dir = group.add(&parent, name)?;
                group.limit(&dir, "pids.max", processes)?;
                group.limit(&dir, "memory.max", memory_bytes)?;
                if dir.join("memory.swap.max").exists() {
                    group.limit(&dir, "memory.swap.max", 0)?;
                }
                group.pids = Some(dir.clone());
                group.cpu = Some((dir.clone(), true));
                group.memory = Some((dir, true));
            }
        }
        Ok(group)
    }

    /// Makes a group under `parent` and keeps it (so that it is removed
    /// even if a limit cannot be set).
    fn add(&mut self, parent: &Path, name: impl Fn() -> String) -> Result<PathBuf, String> {
        let mut dir = parent.join(name());
        let mut tries = 0;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => {
                    tries += 1;
                    dir = parent.join(name());
                }
                Err(e) => return Err(format!("making {}: {e}", dir.display())),
            }
        }
        let procs = open_for_writing(&dir.join("cgroup.procs"));
        let procs = match procs {
            Ok(procs) => procs,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        self.groups.push((dir.clone(), procs));
        Ok(dir)
    }

    fn limit(&self, dir: &Path, file: &str, value: u64) -> Result<(), String> {
        let path = dir.join(file);
        std::fs::write(&path, value.to_string())
            .map_err(|e| format!("setting {}: {e}", path.display()))
    }

    /// The descriptors the child writes `0` to, to join every group: those
    /// it must join, and one it may (a group that only counts).
    pub(crate) fn join_fds(&self) -> (Vec<RawFd>, Option<RawFd>) {
        let mut fds: Vec<RawFd> = self.groups.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let optional = if self.optional { fds.pop() } else { None };
        (fds, optional)
    }

    /// Whether the task's processes were killed for its memory limit.
    pub(crate) fn memory_exceeded(&self) -> bool {
        let Some((dir, v2)) = &self.memory else {
            return false;
        };
        let (file, key) = if *v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        // Kernels before 4.13 count no kills in version 1 (reaching the
        // limit is no sign: page cache is reclaimed there); a kill then
        // reads as the host's (a SIGKILL), which is not a result either.
        counter(&dir.join(file), key).is_some_and(|kills| kills > 0)
    }

    /// The CPU time, user and system, of every process the task ran.
    pub(crate) fn cpu_time(&self) -> Option<std::time::Duration> {
        let (dir, v2) = self.cpu.as_ref()?;
        if *v2 {
            counter(&dir.join("cpu.stat"), "usage_usec").map(std::time::Duration::from_micros)
        } else {
            let text = std::fs::read_to_string(dir.join("cpuacct.usage")).ok()?;
            text.trim()
                .parse()
                .ok()
                .map(std::time::Duration::from_nanos)
        }
    }

    /// Whether the task tried to have more processes than its limit.
    pub(crate) fn processes_exceeded(&self) -> bool {
        self.pids
            .as_ref()
            .and_then(|dir| counter(&dir.join("pids.events"), "max"))
            .is_some_and(|n| n > 0)
    }
}

/// Where this process's task groups go.
enum Parents {
    /// A hierarchy per controller; `cpuacct` only counts, so a task runs
    /// without it.
    V1 {
        pids: PathBuf,
        memory: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    /// One hierarchy.
    V2(PathBuf),
}

/// This process's own groups, read from `/proc/self/cgroup`.
fn parents() -> Result<Parents, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let mut v1_pids = None;
    let mut v1_memory = None;
    let mut v1_cpuacct = None;
    let mut v2 = None;
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        for controller in controllers.split(',') {
            match controller {
                "pids" => v1_pids = Some(Path::new(ROOT).join("pids").join(path)),
                "memory" => v1_memory = Some(Path::new(ROOT).join("memory").join(path)),
                "cpuacct" => v1_cpuacct = Some(Path::new(ROOT).join("cpuacct").join(path)),
                "" => v2 = Some(Path::new(ROOT).join(path)),
                _ => {}
            }
        }
    }
    if let (Some(pids), Some(memory)) = (v1_pids, v1_memory)
        && pids.is_dir()
        && memory.is_dir()
    {
        return Ok(Parents::V1 {
            pids,
            memory,
            cpuacct: v1_cpuacct.filter(|dir| dir.is_dir()),
        });
    }
    let parent = v2.ok_or("no cgroup of this process found")?;
    if !parent.join("cgroup.controllers").exists() {
        return Err("no writable cgroup hierarchy".into());
    }
    Ok(Parents::V2(parent))
}

/// Removes the task groups a provider that is gone left behind (one that
/// crashed mid-task): empty once its tasks' processes are gone, they would
/// otherwise stay for good. A group still in use cannot be removed, and a
/// live process's groups are left alone.
pub(crate) fn sweep() {
    let dirs = match parents() {
        Ok(Parents::V1 {
            pids,
            memory,
            cpuacct,
        }) => [pids, memory].into_iter().chain(cpuacct).collect(),
        Ok(Parents::V2(parent)) => vec![parent],
        Err(_) => return,
    };
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new("/proc").join(owner.to_string()).exists() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        // The task's processes are gone (bubblewrap was reaped, and its
        // PID namespace with it), but the kernel may take a moment to let
        // go of the last of them. A group it keeps is empty, and costs
        // the host nothing but its name.
        for (dir, _) in self.groups.drain(..).rev() {
            for _ in 0..100 {
                if std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// The value of `key` in a file of `key value` lines.
fn counter(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

fn open_for_writing(path: &Path) -> Result<OwnedFd, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs where groups can be made, as CI does (root, a writable
    /// `/sys/fs/cgroup`): a provider there offers no tools without them.
    #[test]
    fn groups_of_a_provider_that_is_gone_are_swept_and_a_live_ones_kept() {
        let live = TaskGroup::new(16, 64 << 20).expect("cgroups can be made here");
        let dirs = match parents().unwrap() {
            Parents::V1 {
                pids,
                memory,
                cpuacct,
            } => [pids, memory].into_iter().chain(cpuacct).collect(),
            Parents::V2(parent) => vec![parent],
        };
        // Above the largest process id Linux allows (2^22): never alive.
        let gone: Vec<PathBuf> = dirs
            .iter()
            .map(|dir| dir.join(format!("{PREFIX}4194305-0")))
            .collect();
        for dir in &gone {
            std::fs::create_dir(dir).unwrap();
        }
        sweep();
        assert!(gone.iter().all(|dir| !dir.exists()), "the dead's are gone");
        assert!(
            live.groups.iter().all(|(dir, _)| dir.exists()),
            "the living's stay"
        );
        let dirs: Vec<PathBuf> = live.groups.iter().map(|(dir, _)| dir.clone()).collect();
        drop(live);
        assert!(dirs.iter().all(|dir| !dir.exists()), "removed when dropped");
    }
}

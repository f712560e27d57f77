//! The task's view of its folders: WASI preview 1's filesystem calls, made
//! to answer the same on every host and to count what they create.
//!
//! wasmtime answers from the host filesystem, which differs between two
//! honest machines in everything but the names and bytes the task itself
//! wrote: timestamps, device and inode numbers, link counts, directory sizes
//! and listing order (ext4 lists by hash, tmpfs by when entries were made), the largest
//! file it accepts, and how many descriptors a process may hold. Each call
//! that could show one of those is wrapped here. The wrappers call
//! wasmtime's own implementation (so permissions, sandboxing and error
//! codes stay wasmtime's) and then replace what the host decided:
//!
//! | call | what the host would decide | here |
//! |---|---|---|
//! | `fd_filestat_get`, `path_filestat_get` | device, inode, link count, times, directory size | device 0, inode from the path ([`inode`]), 1 link, every time 2000-01-01, directories size 0; file and link sizes are the task's |
//! | `fd_readdir` | order, inodes, cookies (host positions) | the whole folder read, sorted by name after `.` and `..`, inodes from the path, cookies are positions in that order; a listing read at cookie 0 serves the later cookies of that descriptor |
//! | `fd_filestat_set_times`, `path_filestat_set_times` | the host clock (`*_NOW`), each filesystem's time range | flags checked, then forwarded as "change nothing": times are never shown anyway |
//! | `fd_sync`, `fd_datasync`, `fd_advise` | disk flushes the task does not pay for | descriptor and arguments checked, host not called |
//! | `fd_allocate` | space outside the output budget | refused with `ENOTSUP`, as wasmtime 48 does, pinned here |
//! | `fd_filestat_set_size` | sparse growth outside the budget; the largest file a filesystem allows | growth charged as written bytes; no size past the output budget |
//! | `fd_write`, `fd_pwrite` | holes past the end of a file, the same size limit | bytes charged; no write ending past the output budget |
//! | `path_open` (create), `path_create_directory`, `path_symlink`, `path_link` | how many entries the disk holds | each call counted against [`ENTRIES_MAX`] |
//! | `path_open` | the process's descriptor limit (`RLIMIT_NOFILE`) | at most [`OPEN_FILES_MAX`] descriptors per task, `EMFILE` past it |
//! | calls that need the host's disk or descriptors | `ENOSPC`, and `EMFILE`, `EDQUOT` or a failing disk (which arrive as `EIO`) | a host failure ([`HostFault`]), never a result |
//!
//! Deterministic as wasmtime answers them, and forwarded untouched:
//! `fd_fdstat_get` (type from the descriptor, rights and flags from how it
//! was opened), `fd_prestat_get`/`fd_prestat_dir_name` (`/input`,
//! `/output`), `fd_tell` and `fd_seek` (positions kept by wasmtime; the end
//! is the file's size, which the task decided), `path_readlink` (the target
//! the task wrote), `fd_read`/`fd_pread`, `path_unlink_file`,
//! `path_remove_directory` and `path_rename` (Linux gives the same errors
//! on every local filesystem; a rename never adds a name, so it is not
//! counted). `fd_close` and `fd_renumber` are forwarded and keep the
//! descriptor table below in step.
//!
//! Identity is by name: two names for one file (a hard link, a symlink
//! followed) have two inode numbers, and a file renamed while open keeps
//! the number of the name it was opened by. Hosts disagree about which
//! names share a file (a node may hard-link identical inputs), and inode
//! numbers freed by one file are given to the next on ext4 but not on
//! tmpfs, so numbers taken from the host could not be made to agree.

use std::collections::HashMap;

use wasmtime::{Caller, Linker};
use wiggle::{GuestMemory, GuestPtr};

use super::{ENTRIES_MAX, EPOCH_2000_NS, Host, OFLAGS_CREAT, WASI};
use crate::snapshot::Descriptor;

/// The most descriptors a task may hold open at once (besides stdio and the
/// two folders). The host's own limit is per process and shared by every
/// task a worker pool runs, so it cannot be what a task runs into.
pub(crate) const OPEN_FILES_MAX: usize = 128;

/// The largest listing read in one `fd_readdir`: every entry a task may
/// create, plus `.` and `..`, with the longest name Linux allows (rounded
/// so the count wasmtime writes after it is aligned). A larger folder can
/// only come from the task's inputs, and is refused.
const LISTING_BYTES_MAX: usize =
    ((ENTRIES_MAX as usize + 2) * (DIRENT_BYTES + NAME_BYTES_MAX)).next_multiple_of(8);
const LISTING_BYTES_FIRST: usize = 16 << 10;
const NAME_BYTES_MAX: usize = 255;

/// Sizes and offsets of WASI preview 1 records.
const FILESTAT_BYTES: usize = 64;
const FDSTAT_BYTES: usize = 24;
const FILESTAT_SIZE_AT: usize = 32;
const FILETYPE_DIRECTORY: u8 = 3;
const DIRENT_BYTES: usize = 24;

/// `wasi_snapshot_preview1` errno values.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_IO: i32 = 29;
const ERRNO_MFILE: i32 = 33;
const ERRNO_NOBUFS: i32 = 42;
const ERRNO_NOSPC: i32 = 51;
const ERRNO_NOTSUP: i32 = 58;

/// `fstflags` bits, and the largest `advice`.
const FSTFLAGS_ATIM: i32 = 1;
const FSTFLAGS_ATIM_NOW: i32 = 2;
const FSTFLAGS_MTIM: i32 = 4;
const FSTFLAGS_MTIM_NOW: i32 = 8;
const ADVICE_MAX: i32 = 5;

/// The host failed a call for want of something a task does not control
/// (disk space, descriptors, a working disk): the run is the host's
/// failure, not a result.
#[derive(Debug, thiserror::Error)]
#[error("the host's filesystem failed a {call} call with errno {errno}")]
pub(crate) struct HostFault {
    call: &'static str,
    errno: i32,
}

/// Passes `errno` on to the guest unless it is the host's failure.
fn unless_host_fault(call: &'static str, errno: i32) -> wasmtime::Result<i32> {
    if errno == ERRNO_NOSPC || errno == ERRNO_IO {
        return Err(wasmtime::Error::new(HostFault { call, errno }));
    }
    Ok(errno)
}

/// What the host knows of the guest's descriptors beyond wasmtime's table:
/// the path each was opened by, and the last listing read.
#[derive(Default)]
pub(crate) struct Files {
    /// Absolute guest paths (`/output/sub`) by descriptor. Preopens are
    /// added when first used.
    paths: HashMap<i32, Opened>,
    /// Descriptors from `path_open` still open.
    opened: usize,
    listing: Option<Listing>,
    /// One past the highest descriptor `path_open` ever gave out.
    high_water: i32,
    /// The preopened folders' numbers and names, in order (stdio is 0-2):
    /// the table a fresh instance starts with.
    pub(crate) preopens: Vec<(i32, String)>,
    /// A descriptor opened while the module was instantiated (by a start
    /// function): a fresh instance would hold it already.
    pub(crate) held_before_start: bool,
}

struct Opened {
    path: String,
    /// How `path_open` opened it (`None`: a preopen).
    by_path_open: Option<OpenedWith>,
}

/// The arguments `path_open` opened a descriptor with, to open it again.
#[derive(Clone, Copy)]
struct OpenedWith {
    dirflags: i32,
    oflags: i32,
    rights: i64,
    inheriting: i64,
    fdflags: i32,
}

/// A folder's entries in the order the guest sees them.
struct Listing {
    fd: i32,
    /// The folder's path, for the entries' inode numbers.
    dir: Option<String>,
    entries: Vec<Entry>,
}

struct Entry {
    name: Vec<u8>,
    kind: u8,
}

impl Files {
    /// Called between steps. A listing kept from one step to the next
    /// would be state a snapshot does not hold, so a referee restoring the
    /// next step would list afresh where the provider did not.
    pub(crate) fn end_step(&mut self) {
        self.listing = None;
    }

    /// Whether the task holds any descriptor it opened.
    pub(crate) fn holds_any(&self) -> bool {
        self.opened > 0
    }

    fn forget(&mut self, fd: i32) {
        if let Some(gone) = self.paths.remove(&fd)
            && gone.by_path_open.is_some()
        {
            self.opened -= 1;
        }
        if self.listing.as_ref().is_some_and(|l| l.fd == fd) {
            self.listing = None;
        }
    }
}

/// `base` and then `relative`, with `.` and `..` resolved by name, as an
/// absolute path. Symlinks are not followed: the result is a name, the
/// same on every host.
fn join(base: &str, relative: &[u8]) -> String {
    let relative = String::from_utf8_lossy(relative);
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(relative.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The inode number a path has for the guest: derived from the name alone,
/// so it is the same everywhere, and never 0 (which some programs read as
/// "no inode").
fn inode(path: &str) -> u64 {
    let key = blake3::derive_key("cairn wasi inode v1", path.as_bytes());
    u64::from_le_bytes(key[..8].try_into().unwrap()).max(1)
}

/// Makes the 64-byte `filestat` in `stat` the same on every host.
fn virtualize_filestat(stat: &mut [u8], ino: u64) {
    stat[0..8].copy_from_slice(&0u64.to_le_bytes());
    stat[8..16].copy_from_slice(&ino.to_le_bytes());
    stat[24..32].copy_from_slice(&1u64.to_le_bytes());
    if stat[16] == FILETYPE_DIRECTORY {
        stat[FILESTAT_SIZE_AT..FILESTAT_SIZE_AT + 8].copy_from_slice(&0u64.to_le_bytes());
    }
    for at in [40, 48, 56] {
        stat[at..at + 8].copy_from_slice(&EPOCH_2000_NS.to_le_bytes());
    }
}

/// The entries in `bytes`, a complete listing as wasmtime writes it.
fn parse_listing(bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + DIRENT_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        let Some(name) = bytes.get(at + DIRENT_BYTES..at + DIRENT_BYTES + len) else {
            break;
        };
        entries.push(Entry {
            name: name.to_vec(),
            kind: bytes[at + 20],
        });
        at += DIRENT_BYTES + len;
    }
    entries
}

/// `.` and `..` first, as every host lists them, then by name.
fn sort_listing(entries: &mut [Entry]) {
    let rank = |name: &[u8]| match name {
        b"." => 0,
        b".." => 1,
        _ => 2,
    };
    entries.sort_unstable_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
}

/// How many bytes the listing from position `cookie` takes whole.
fn listing_bytes(listing: &Listing, cookie: u64) -> usize {
    let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
    listing
        .entries
        .iter()
        .skip(skip)
        .map(|entry| DIRENT_BYTES + entry.name.len())
        .sum()
}

/// Writes the listing from position `cookie` into `out` as WASI does: each
/// entry's 24-byte header then its name, until `out` is full, so the last
/// entry may be cut anywhere. Returns the bytes written. Each entry's
/// `d_next` is the position after it, the cookie that resumes there.
fn write_listing(listing: &Listing, cookie: u64, out: &mut [u8]) -> usize {
    let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
    let mut used = 0;
    for (position, entry) in listing.entries.iter().enumerate().skip(skip) {
        if used == out.len() {
            break;
        }
        let ino = listing
            .dir
            .as_deref()
            .map_or(0, |dir| inode(&join(dir, &entry.name)));
        let mut header = [0u8; DIRENT_BYTES];
        header[0..8].copy_from_slice(&(position as u64 + 1).to_le_bytes());
        header[8..16].copy_from_slice(&ino.to_le_bytes());
        header[16..20].copy_from_slice(&(entry.name.len() as u32).to_le_bytes());
        header[20] = entry.kind;
        for part in [&header[..], &entry.name[..]] {
            let n = part.len().min(out.len() - used);
            out[used..used + n].copy_from_slice(&part[..n]);
            used += n;
        }
    }
    used
}

/// Host memory to call wasmtime's WASI functions into, for answers the
/// guest did not ask for. Aligned to 8 bytes as linear memory is, since
/// wiggle checks the alignment of the host address.
struct Scratch {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Scratch {
    fn new(len: usize) -> Self {
        let bytes = vec![0; len + 8];
        let start = bytes.as_ptr().align_offset(8);
        assert!(start < 8, "a byte pointer can always be aligned");
        Self { bytes, start, len }
    }

    fn memory(&mut self) -> GuestMemory<'_> {
        GuestMemory::Unshared(&mut self.bytes[self.start..self.start + self.len])
    }

    fn get(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.get()[at..at + 4].try_into().unwrap())
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.get()[at..at + 8].try_into().unwrap())
    }
}

/// Calls WASI preview 1's own `$func` with `$memory` (a [`Scratch`]) in
/// place of the guest's, for the host's own questions.
macro_rules! ask {
    ($caller:ident, $memory:expr, $func:ident ( $($arg:expr),* )) => {{
        use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
        let mut memory = $memory.memory();
        wasmtime_wasi::runtime::in_tokio(p1::$func(&mut $caller.data_mut().wasi, &mut memory, $($arg),*))
    }};
}

/// [`ask!`] for the functions wasmtime implements synchronously.
macro_rules! ask_sync {
    ($caller:ident, $memory:expr, $func:ident ( $($arg:expr),* )) => {{
        use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
        let mut memory = $memory.memory();
        p1::$func(&mut $caller.data_mut().wasi, &mut memory, $($arg),*)
    }};
}

/// The position of `fd` if it is a file (stdio and folders have none).
fn position(caller: &mut Caller<'_, Host>, fd: i32) -> wasmtime::Result<Option<u64>> {
    let mut scratch = Scratch::new(8);
    let errno = ask_sync!(caller, scratch, fd_tell(fd, 0))?;
    Ok((errno == ERRNO_SUCCESS).then(|| scratch.u64_at(0)))
}

/// The size of the file `fd`, if it has one.
fn file_size(caller: &mut Caller<'_, Host>, fd: i32) -> wasmtime::Result<Option<u64>> {
    let mut scratch = Scratch::new(FILESTAT_BYTES);
    let errno = ask!(caller, scratch, fd_filestat_get(fd, 0))?;
    Ok((errno == ERRNO_SUCCESS).then(|| scratch.u64_at(FILESTAT_SIZE_AT)))
}

/// The guest path `fd` was opened by; preopens are learned from wasmtime
/// the first time they are used. `None` for stdio and unknown descriptors.
fn path_of(caller: &mut Caller<'_, Host>, fd: i32) -> wasmtime::Result<Option<String>> {
    if let Some(known) = caller.data().files.paths.get(&fd) {
        return Ok(Some(known.path.clone()));
    }
    let mut prestat = Scratch::new(8);
    if ask_sync!(caller, prestat, fd_prestat_get(fd, 0))? != ERRNO_SUCCESS {
        return Ok(None);
    }
    let len = prestat.u32_at(4) as usize;
    if len > NAME_BYTES_MAX {
        return Ok(None);
    }
    let mut name = Scratch::new(len);
    if ask_sync!(caller, name, fd_prestat_dir_name(fd, 0, len as i32))? != ERRNO_SUCCESS {
        return Ok(None);
    }
    let path = join("/", name.get());
    caller.data_mut().files.paths.insert(
        fd,
        Opened {
            path: path.clone(),
            by_path_open: None,
        },
    );
    Ok(Some(path))
}

/// `oflags` bits that change a file as it opens: opening it again after a
/// snapshot (whose outputs are already back) must not.
const OFLAGS_CHANGING: i32 = OFLAGS_CREAT | 4 | 8;
/// `oflags` bit that opens a folder.
const OFLAGS_DIRECTORY: i32 = 2;

/// Every descriptor the task opened and still holds, in order, with its
/// position: state a snapshot must carry, since a referee's fresh instance
/// has only the preopened folders.
pub(crate) fn descriptors(host: &mut Host) -> Vec<Descriptor> {
    let mut open: Vec<(i32, String, OpenedWith)> = host
        .files
        .paths
        .iter()
        .filter_map(|(fd, o)| o.by_path_open.map(|with| (*fd, o.path.clone(), with)))
        .collect();
    open.sort_by_key(|(fd, ..)| *fd);
    open.into_iter()
        .map(|(fd, path, with)| {
            use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
            let mut scratch = Scratch::new(FDSTAT_BYTES);
            let told = p1::fd_tell(&mut host.wasi, &mut scratch.memory(), fd, 0);
            let position = matches!(told, Ok(ERRNO_SUCCESS)).then(|| scratch.u64_at(0));
            // Flags as they are now: `fd_fdstat_set_flags` may have changed
            // them since the file was opened.
            let stat = wasmtime_wasi::runtime::in_tokio(p1::fd_fdstat_get(
                &mut host.wasi,
                &mut scratch.memory(),
                fd,
                0,
            ));
            let fdflags = match stat {
                Ok(ERRNO_SUCCESS) => u16::from_le_bytes([scratch.get()[2], scratch.get()[3]]),
                _ => with.fdflags as u16,
            };
            Descriptor {
                fd: fd as u32,
                path,
                dirflags: with.dirflags as u32,
                oflags: with.oflags as u16,
                rights: with.rights as u64,
                inheriting: with.inheriting as u64,
                fdflags,
                position,
            }
        })
        .collect()
}

/// The descriptor number freed above the files held, which wasmtime would
/// give out next (where the table is [`reproducible`], at most one is).
pub(crate) fn freed(host: &Host) -> Option<u32> {
    let files = &host.files;
    let next = 3 + files.preopens.len() as i32 + files.opened as i32;
    (files.high_water > next).then_some(next as u32)
}

/// Whether a referee's fresh instance, opening [`descriptors`] again in
/// order, would hold the same descriptor table as this one, and give out
/// the same numbers next: stdio and the preopened folders where they
/// began; the task's files on the numbers right after the folders, with at
/// most the next number freed (wasmtime gives out the highest freed number
/// first, a fresh table the next after its highest); none opened by a
/// start function; and each file's name still naming the file it has
/// open (not renamed or unlinked since, nor reached through a symlink and
/// `..`), by the host's device and inode numbers. A run does not pause
/// where this is false, and decides so alike whether it is traced or not.
pub(crate) fn reproducible(host: &mut Host) -> bool {
    use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
    use wasmtime_wasi::runtime::in_tokio;
    let files = &host.files;
    if files.held_before_start {
        return false;
    }
    let first = 3 + files.preopens.len() as i32;
    let mut held: Vec<(i32, String)> = files
        .paths
        .iter()
        .filter(|(_, o)| o.by_path_open.is_some())
        .map(|(fd, o)| (*fd, o.path.clone()))
        .collect();
    held.sort();
    // wasmtime hands out the highest freed number first, a fresh table
    // the next after its highest: the same only while at most one number
    // is free, and it is the next after the files held.
    let freed = files.high_water.max(first) - first - held.len() as i32;
    if freed > 1
        || held
            .iter()
            .enumerate()
            .any(|(i, (fd, _))| *fd != first + i as i32)
    {
        return false;
    }
    let preopens = files.preopens.clone();
    let mut scratch = Scratch::new(FDSTAT_BYTES);
    for fd in 0..3 {
        let stat = wasmtime_wasi::runtime::in_tokio(p1::fd_fdstat_get(
            &mut host.wasi,
            &mut scratch.memory(),
            fd,
            0,
        ));
        if !matches!(stat, Ok(ERRNO_SUCCESS)) {
            return false;
        }
    }
    for (fd, name) in &preopens {
        let mut prestat = Scratch::new(8);
        let stat = p1::fd_prestat_get(&mut host.wasi, &mut prestat.memory(), *fd, 0);
        if !matches!(stat, Ok(ERRNO_SUCCESS)) {
            return false;
        }
        let len = (prestat.u32_at(4) as usize).min(NAME_BYTES_MAX);
        let mut got = Scratch::new(len);
        let named = p1::fd_prestat_dir_name(&mut host.wasi, &mut got.memory(), *fd, 0, len as i32);
        if !matches!(named, Ok(ERRNO_SUCCESS)) || join("/", got.get()) != *name {
            return false;
        }
    }
    for (fd, path) in held {
        let Some((base, relative)) = preopens.iter().find_map(|(base, dir)| {
            let rest = path.strip_prefix(dir.as_str())?.strip_prefix('/')?;
            Some((*base, rest.to_string()))
        }) else {
            return false;
        };
        let mut by_fd = Scratch::new(FILESTAT_BYTES);
        let stat = in_tokio(p1::fd_filestat_get(
            &mut host.wasi,
            &mut by_fd.memory(),
            fd,
            0,
        ));
        if !matches!(stat, Ok(ERRNO_SUCCESS)) {
            return false;
        }
        let at = relative.len().next_multiple_of(8);
        let mut by_name = Scratch::new(at + FILESTAT_BYTES);
        by_name.bytes[by_name.start..by_name.start + relative.len()]
            .copy_from_slice(relative.as_bytes());
        {
            use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
            host.wasi.set_hostcall_fuel(relative.len());
        }
        let stat = in_tokio(p1::path_filestat_get(
            &mut host.wasi,
            &mut by_name.memory(),
            base,
            0,
            0,
            relative.len() as i32,
            at as i32,
        ));
        // Device and inode: a filestat's first 16 bytes.
        if !matches!(stat, Ok(ERRNO_SUCCESS)) || by_fd.get()[..16] != by_name.get()[at..at + 16] {
            return false;
        }
    }
    true
}

/// Opens `descriptors` again in a fresh instance, at their numbers and
/// positions, as wasmtime's `path_open` does for the guest (so sandboxed to
/// the preopened folders like any guest path).
pub(crate) fn reopen(
    host: &mut Host,
    descriptors: &[Descriptor],
    freed: Option<u32>,
) -> Result<(), String> {
    use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
    use wasmtime_wasi::runtime::in_tokio;
    if descriptors.len() > OPEN_FILES_MAX {
        return Err(format!(
            "a snapshot holding {} files (a task may hold {OPEN_FILES_MAX})",
            descriptors.len()
        ));
    }
    if host.files.holds_any() {
        return Err("a fresh instance already holds files its start function opened".into());
    }
    let mut preopens = Vec::new();
    for fd in 3..16 {
        let mut prestat = Scratch::new(8);
        if !matches!(
            p1::fd_prestat_get(&mut host.wasi, &mut prestat.memory(), fd, 0),
            Ok(ERRNO_SUCCESS)
        ) {
            continue;
        }
        let len = prestat.u32_at(4) as usize;
        let mut name = Scratch::new(len.min(NAME_BYTES_MAX));
        let named = p1::fd_prestat_dir_name(&mut host.wasi, &mut name.memory(), fd, 0, len as i32);
        if matches!(named, Ok(ERRNO_SUCCESS)) {
            preopens.push((fd, join("/", name.get())));
        }
    }
    for d in descriptors {
        let refused = |why: &str| format!("reopening {} at {}: {why}", d.path, d.fd);
        let (base, relative) = preopens
            .iter()
            .find_map(|(fd, dir)| {
                let rest = d.path.strip_prefix(dir.as_str())?.strip_prefix('/')?;
                Some((*fd, rest))
            })
            .ok_or_else(|| refused("no preopened folder holds it"))?;
        // The path, then an aligned slot for an answer (a descriptor, a
        // position).
        let at = relative.len().next_multiple_of(8);
        let mut memory = Scratch::new(at + 8);
        memory.bytes[memory.start..memory.start + relative.len()]
            .copy_from_slice(relative.as_bytes());
        // wasmtime charges a path's bytes to a per-call allowance the
        // store sets for a guest's calls.
        {
            use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
            host.wasi.set_hostcall_fuel(relative.len());
        }
        let errno = in_tokio(p1::path_open(
            &mut host.wasi,
            &mut memory.memory(),
            base,
            d.dirflags as i32,
            0,
            relative.len() as i32,
            i32::from(d.oflags) & !OFLAGS_CHANGING,
            d.rights as i64,
            d.inheriting as i64,
            i32::from(d.fdflags),
            at as i32,
        ))
        .map_err(|e| refused(&format!("{e:#}")))?;
        if errno != ERRNO_SUCCESS {
            return Err(refused(&format!("path_open: errno {errno}")));
        }
        // Opened in order into a fresh table, each lands on the number it
        // had (a paused table is contiguous, see `reproducible`).
        let opened = memory.u32_at(at) as i32;
        let fd = d.fd as i32;
        if opened != fd {
            return Err(refused(&format!("opened as {opened}")));
        }
        if let Some(position) = d.position {
            let errno = in_tokio(p1::fd_seek(
                &mut host.wasi,
                &mut memory.memory(),
                fd,
                position as i64,
                0,
                at as i32,
            ))
            .map_err(|e| refused(&format!("{e:#}")))?;
            if errno != ERRNO_SUCCESS {
                return Err(refused(&format!("fd_seek: errno {errno}")));
            }
        }
        let files = &mut host.files;
        files.forget(fd);
        files.paths.insert(
            fd,
            Opened {
                path: d.path.clone(),
                by_path_open: Some(OpenedWith {
                    dirflags: d.dirflags as i32,
                    oflags: i32::from(d.oflags),
                    rights: d.rights as i64,
                    inheriting: d.inheriting as i64,
                    fdflags: i32::from(d.fdflags),
                }),
            },
        );
        files.opened += 1;
        files.high_water = files.high_water.max(fd.saturating_add(1));
    }
    // A number freed above them: opened (the first folder, again) and
    // closed, so that wasmtime gives it out next here too.
    if let Some(number) = freed {
        let &(base, _) = preopens
            .first()
            .ok_or("a freed descriptor but no folder to open")?;
        let mut memory = Scratch::new(16);
        memory.bytes[memory.start] = b'.';
        {
            use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
            host.wasi.set_hostcall_fuel(1);
        }
        let opened = in_tokio(p1::path_open(
            &mut host.wasi,
            &mut memory.memory(),
            base,
            0,
            0,
            1,
            OFLAGS_DIRECTORY,
            0,
            0,
            0,
            8,
        ))
        .map_err(|e| format!("placing the freed descriptor: {e:#}"))?;
        let placed = memory.u32_at(8);
        if opened != ERRNO_SUCCESS || placed != number {
            return Err(format!(
                "placing the freed descriptor {number}: got {placed}"
            ));
        }
        let closed = in_tokio(p1::fd_close(
            &mut host.wasi,
            &mut memory.memory(),
            placed as i32,
        ))
        .map_err(|e| format!("freeing descriptor {number}: {e:#}"))?;
        if closed != ERRNO_SUCCESS {
            return Err(format!("freeing descriptor {number}: errno {closed}"));
        }
        host.files.high_water = host.files.high_water.max(number as i32 + 1);
    }
    Ok(())
}

/// The guest's linear memory and the host state together.
fn memory_and_host<'a>(
    caller: &'a mut Caller<'_, Host>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut Host)> {
    let Some(wasmtime::Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::format_err!("missing required memory export"));
    };
    let (data, host) = memory.data_and_store_mut(caller);
    Ok((GuestMemory::Unshared(data), host))
}

/// The `len` bytes at `ptr` in guest memory (which wasmtime has read
/// successfully already).
fn guest_bytes(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let (memory, _) = memory_and_host(caller)?;
    Ok(memory
        .as_cow(GuestPtr::<[u8]>::new((ptr as u32, len as u32)))?
        .into_owned())
}

/// Rewrites the `filestat` wasmtime wrote at `stat`.
fn rewrite_filestat(
    caller: &mut Caller<'_, Host>,
    stat: i32,
    path: Option<&str>,
) -> wasmtime::Result<()> {
    let (mut memory, _) = memory_and_host(caller)?;
    let ptr = GuestPtr::<[u8]>::new((stat as u32, FILESTAT_BYTES as u32));
    if let Some(bytes) = memory.as_slice_mut(ptr)? {
        virtualize_filestat(bytes, path.map_or(0, inode));
    }
    Ok(())
}

/// Reads the whole folder `fd` through wasmtime and sorts it. `Err` is
/// the errno for the guest.
fn read_listing(caller: &mut Caller<'_, Host>, fd: i32) -> wasmtime::Result<Result<Listing, i32>> {
    let mut len = LISTING_BYTES_FIRST;
    let bytes = loop {
        // wasmtime writes the listing, then the bytes it used after it.
        let mut scratch = Scratch::new(len + 8);
        let errno = unless_host_fault(
            "fd_readdir",
            ask!(
                caller,
                scratch,
                fd_readdir(fd, 0, len as i32, 0, len as i32)
            )?,
        )?;
        if errno != ERRNO_SUCCESS {
            return Ok(Err(errno));
        }
        debug_assert!(len.is_multiple_of(8), "wiggle checks the count's alignment");
        let used = scratch.u32_at(len) as usize;
        if used < len {
            break scratch.get()[..used].to_vec();
        }
        // Full: there may be more.
        if len == LISTING_BYTES_MAX {
            return Ok(Err(ERRNO_NOBUFS));
        }
        len = (len * 4).min(LISTING_BYTES_MAX);
    };
    let mut entries = parse_listing(&bytes);
    if entries.len() > ENTRIES_MAX as usize + 2 {
        return Ok(Err(ERRNO_NOBUFS));
    }
    sort_listing(&mut entries);
    let dir = path_of(caller, fd)?;
    Ok(Ok(Listing { fd, dir, entries }))
}

/// Whether `fd` is a file, the way wasmtime decides it for `fd_sync` and
/// the like: `EBADF` if not.
fn file_or_badf(caller: &mut Caller<'_, Host>, fd: i32) -> wasmtime::Result<i32> {
    Ok(match position(caller, fd)? {
        Some(_) => ERRNO_SUCCESS,
        None => ERRNO_BADF,
    })
}

/// Whether `fstflags` sets a time both to a value and to "now".
fn fstflags_invalid(flags: i32) -> bool {
    flags & !0xf != 0
        || (flags & FSTFLAGS_ATIM != 0 && flags & FSTFLAGS_ATIM_NOW != 0)
        || (flags & FSTFLAGS_MTIM != 0 && flags & FSTFLAGS_MTIM_NOW != 0)
}

/// Replaces wasmtime's filesystem calls with the ones described above.
pub(crate) fn add_wrappers(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    add_writes(linker)?;
    add_creations(linker)?;
    add_metadata(linker)?;
    add_listing(linker)?;
    add_descriptors(linker)?;
    Ok(())
}

/// Writing and growing files: charged, and never past the output budget.
fn add_writes(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, Host>, fd: i32, iovs: i32, count: i32, written: i32| {
            let mut file = false;
            if let Some(bytes) = iovec_bytes(&mut caller, iovs, count) {
                caller.data_mut().budget.charge_write(fd, bytes)?;
                if let Some(at) = position(&mut caller, fd)? {
                    file = true;
                    caller.data().budget.check_extent(at.checked_add(bytes))?;
                }
            }
            let errno = forward!(caller, fd_write(fd, iovs, count, written))?;
            // A full stdout pipe answers EIO too, and that is the task's.
            if file {
                return unless_host_fault("fd_write", errno);
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_pwrite",
        |mut caller: Caller<'_, Host>,
         fd: i32,
         iovs: i32,
         count: i32,
         offset: i64,
         written: i32| {
            if let Some(bytes) = iovec_bytes(&mut caller, iovs, count) {
                caller.data_mut().budget.charge_write(fd, bytes)?;
                if position(&mut caller, fd)?.is_some() {
                    let end = (offset as u64).checked_add(bytes);
                    caller.data().budget.check_extent(end)?;
                }
            }
            unless_host_fault(
                "fd_pwrite",
                forward!(caller, fd_pwrite(fd, iovs, count, offset, written))?,
            )
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, Host>, fd: i32, size: i64| {
            if position(&mut caller, fd)?.is_some() {
                let size = size as u64;
                caller.data().budget.check_extent(Some(size))?;
                let current = file_size(&mut caller, fd)?.unwrap_or(0);
                if size > current {
                    caller.data_mut().budget.charge_write(fd, size - current)?;
                }
            }
            unless_host_fault(
                "fd_filestat_set_size",
                forward!(caller, fd_filestat_set_size(fd, size))?,
            )
        },
    )?;
    // Reserving space would be growth the budget does not see; wasmtime 48
    // refuses it too, and this keeps it refused whatever wasmtime does.
    linker.func_wrap(
        WASI,
        "fd_allocate",
        |mut caller: Caller<'_, Host>, fd: i32, _offset: i64, _len: i64| {
            Ok(match file_or_badf(&mut caller, fd)? {
                ERRNO_SUCCESS => ERRNO_NOTSUP,
                errno => errno,
            })
        },
    )?;
    // Durability is the host's business (outputs are collected after the
    // run), and a flush costs the host far more than the call's fuel.
    for name in ["fd_sync", "fd_datasync"] {
        linker.func_wrap(WASI, name, |mut caller: Caller<'_, Host>, fd: i32| {
            file_or_badf(&mut caller, fd)
        })?;
    }
    linker.func_wrap(
        WASI,
        "fd_advise",
        |mut caller: Caller<'_, Host>, fd: i32, _offset: i64, _len: i64, advice: i32| {
            if !(0..=ADVICE_MAX).contains(&advice) {
                return Ok(ERRNO_INVAL);
            }
            file_or_badf(&mut caller, fd)
        },
    )?;
    Ok(())
}

/// Calls that add a name to a folder: each counts against [`ENTRIES_MAX`]
/// whether or not it succeeds, before the host does the work.
fn add_creations(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "path_open",
        #[allow(clippy::too_many_arguments)]
        |mut caller: Caller<'_, Host>,
         fd: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         rights: i64,
         inheriting: i64,
         fdflags: i32,
         opened: i32| {
            if caller.data().files.opened >= OPEN_FILES_MAX {
                return Ok(ERRNO_MFILE);
            }
            if oflags & OFLAGS_CREAT != 0 {
                caller.data_mut().budget.charge_entry()?;
            }
            let errno = unless_host_fault(
                "path_open",
                forward!(
                    caller,
                    path_open(
                        fd, dirflags, path, path_len, oflags, rights, inheriting, fdflags, opened
                    )
                )?,
            )?;
            if errno == ERRNO_SUCCESS {
                let relative = guest_bytes(&mut caller, path, path_len)?;
                let new = i32::from_le_bytes(guest_bytes(&mut caller, opened, 4)?[..].try_into()?);
                let path = join(&path_of(&mut caller, fd)?.unwrap_or_default(), &relative);
                let files = &mut caller.data_mut().files;
                files.forget(new);
                files.high_water = files.high_water.max(new.saturating_add(1));
                files.paths.insert(
                    new,
                    Opened {
                        path,
                        by_path_open: Some(OpenedWith {
                            dirflags,
                            oflags,
                            rights,
                            inheriting,
                            fdflags,
                        }),
                    },
                );
                files.opened += 1;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_create_directory",
        |mut caller: Caller<'_, Host>, fd: i32, path: i32, path_len: i32| {
            caller.data_mut().budget.charge_entry()?;
            unless_host_fault(
                "path_create_directory",
                forward!(caller, path_create_directory(fd, path, path_len))?,
            )
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_symlink",
        |mut caller: Caller<'_, Host>,
         target: i32,
         target_len: i32,
         fd: i32,
         path: i32,
         path_len: i32| {
            caller.data_mut().budget.charge_entry()?;
            unless_host_fault(
                "path_symlink",
                forward!(caller, path_symlink(target, target_len, fd, path, path_len))?,
            )
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_link",
        #[allow(clippy::too_many_arguments)]
        |mut caller: Caller<'_, Host>,
         old_fd: i32,
         old_flags: i32,
         old_path: i32,
         old_len: i32,
         new_fd: i32,
         new_path: i32,
         new_len: i32| {
            caller.data_mut().budget.charge_entry()?;
            unless_host_fault(
                "path_link",
                forward!(
                    caller,
                    path_link(
                        old_fd, old_flags, old_path, old_len, new_fd, new_path, new_len
                    )
                )?,
            )
        },
    )?;
    Ok(())
}

/// Stat results rewritten; time setting checked but never done.
fn add_metadata(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_filestat_get",
        |mut caller: Caller<'_, Host>, fd: i32, stat: i32| {
            let errno = forward!(caller, fd_filestat_get(fd, stat))?;
            if errno == ERRNO_SUCCESS {
                let path = path_of(&mut caller, fd)?;
                rewrite_filestat(&mut caller, stat, path.as_deref())?;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_filestat_get",
        |mut caller: Caller<'_, Host>, fd: i32, flags: i32, path: i32, path_len: i32, stat: i32| {
            let errno = forward!(caller, path_filestat_get(fd, flags, path, path_len, stat))?;
            if errno == ERRNO_SUCCESS {
                let relative = guest_bytes(&mut caller, path, path_len)?;
                let path = path_of(&mut caller, fd)?.map(|dir| join(&dir, &relative));
                rewrite_filestat(&mut caller, stat, path.as_deref())?;
            }
            Ok(errno)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_set_times",
        |mut caller: Caller<'_, Host>, fd: i32, _atim: i64, _mtim: i64, flags: i32| {
            if fstflags_invalid(flags) {
                return Ok(ERRNO_INVAL);
            }
            forward!(caller, fd_filestat_set_times(fd, 0, 0, 0))
        },
    )?;
    linker.func_wrap(
        WASI,
        "path_filestat_set_times",
        #[allow(clippy::too_many_arguments)]
        |mut caller: Caller<'_, Host>,
         fd: i32,
         lookup: i32,
         path: i32,
         path_len: i32,
         _atim: i64,
         _mtim: i64,
         flags: i32| {
            if fstflags_invalid(flags) {
                return Ok(ERRNO_INVAL);
            }
            forward!(
                caller,
                path_filestat_set_times(fd, lookup, path, path_len, 0, 0, 0)
            )
        },
    )?;
    Ok(())
}

/// Sorted listings, written with WASI's truncation rules.
fn add_listing(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_readdir",
        |mut caller: Caller<'_, Host>, fd: i32, buf: i32, buf_len: i32, cookie: i64, used: i32| {
            // A listing is read at cookie 0 and serves the rest of that
            // pass: one read per pass instead of one per call, and a task
            // that removes entries as it lists them still sees each once.
            let cached = caller
                .data()
                .files
                .listing
                .as_ref()
                .is_some_and(|l| l.fd == fd);
            if cookie == 0 || !cached {
                match read_listing(&mut caller, fd)? {
                    Ok(listing) => caller.data_mut().files.listing = Some(listing),
                    Err(errno) => return Ok(errno),
                }
            }
            let (mut memory, host) = memory_and_host(&mut caller)?;
            let listing = host.files.listing.as_ref().expect("read above");
            // Only the bytes written must be in bounds, as with wasmtime's.
            let len = listing_bytes(listing, cookie as u64).min(buf_len as u32 as usize);
            let out = GuestPtr::<[u8]>::new((buf as u32, len as u32));
            let written = match memory.as_slice_mut(out)? {
                Some(out) => write_listing(listing, cookie as u64, out),
                None => unreachable!("linear memory is not shared"),
            };
            memory.write(GuestPtr::<u32>::new(used as u32), written as u32)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    Ok(())
}

/// Closing and renumbering keep [`Files`] in step with wasmtime's table.
fn add_descriptors(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(WASI, "fd_close", |mut caller: Caller<'_, Host>, fd: i32| {
        let errno = forward!(caller, fd_close(fd))?;
        if errno == ERRNO_SUCCESS {
            caller.data_mut().files.forget(fd);
        }
        Ok(errno)
    })?;
    linker.func_wrap(
        WASI,
        "fd_renumber",
        |mut caller: Caller<'_, Host>, from: i32, to: i32| {
            let path = path_of(&mut caller, from)?;
            let errno = forward!(caller, fd_renumber(from, to))?;
            if errno == ERRNO_SUCCESS && from != to {
                let files = &mut caller.data_mut().files;
                let by_path_open = files.paths.get(&from).and_then(|o| o.by_path_open);
                files.forget(to);
                files.forget(from);
                if let Some(path) = path {
                    files.paths.insert(to, Opened { path, by_path_open });
                    files.opened += usize::from(by_path_open.is_some());
                }
            }
            Ok(errno)
        },
    )?;
    Ok(())
}

/// Sum of the lengths in a guest `iovec` array; `None` if the array is out
/// of bounds (the original function then reports the fault to the guest).
fn iovec_bytes(caller: &mut Caller<'_, Host>, iovs: i32, count: i32) -> Option<u64> {
    let memory = caller.get_export("memory")?.into_memory()?;
    let data = memory.data(&caller);
    let start = iovs as u32 as usize;
    let end = start.checked_add((count as u32 as usize).checked_mul(8)?)?;
    let array = data.get(start..end)?;
    Some(
        array
            .chunks_exact(8)
            .map(|iov| u64::from(u32::from_le_bytes(iov[4..8].try_into().unwrap())))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Listing {
        let mut entries: Vec<Entry> = names
            .iter()
            .map(|name| Entry {
                name: name.as_bytes().to_vec(),
                kind: 4,
            })
            .collect();
        sort_listing(&mut entries);
        Listing {
            fd: 4,
            dir: Some("/output".into()),
            entries,
        }
    }

    #[test]
    fn paths_are_resolved_by_name() {
        assert_eq!(join("/output", b"a/./b/../c"), "/output/a/c");
        assert_eq!(join("/output/sub", b".."), "/output");
        assert_eq!(join("/output", b"../../.."), "/");
        assert_eq!(join("/", b"/output/"), "/output");
        assert_ne!(inode("/output/a"), inode("/output/b"));
        assert_eq!(inode("/output/a"), inode(&join("/output/sub", b"../a")));
    }

    #[test]
    fn listings_sort_dot_entries_first_then_by_bytes() {
        let sorted = listing(&["b", "..", "B", "!", "a", "."]);
        let names: Vec<&[u8]> = sorted.entries.iter().map(|e| &e.name[..]).collect();
        assert_eq!(names, [&b"."[..], b"..", b"!", b"B", b"a", b"b"]);
    }

    /// Every buffer size, from every cookie, gives a prefix of the whole
    /// listing from that cookie, and the listing parses back to itself.
    #[test]
    fn listings_truncate_at_any_byte_and_resume_at_any_cookie() {
        let all = listing(&[".", "..", "zeta", "a", "longer-name"]);
        for cookie in 0..=all.entries.len() as u64 + 1 {
            let mut whole = vec![0; 4096];
            let len = write_listing(&all, cookie, &mut whole);
            assert_eq!(len, listing_bytes(&all, cookie));
            whole.truncate(len);
            for size in 0..=len + 3 {
                let mut out = vec![0xaa; size];
                let written = write_listing(&all, cookie, &mut out);
                assert_eq!(written, size.min(len), "cookie {cookie}, size {size}");
                assert_eq!(out[..written], whole[..written]);
            }
            let parsed = parse_listing(&whole);
            let expected = &all.entries[(cookie as usize).min(all.entries.len())..];
            let names =
                |entries: &[Entry]| entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&parsed), names(expected), "cookie {cookie}");
        }
        // Cookies are positions: each entry's d_next resumes after it.
        let mut out = vec![0; 4096];
        write_listing(&all, 2, &mut out);
        assert_eq!(u64::from_le_bytes(out[0..8].try_into().unwrap()), 3);
    }

    #[test]
    fn filestats_keep_only_what_the_task_decided() {
        let mut stat = [0xffu8; FILESTAT_BYTES];
        stat[16] = 4;
        stat[32..40].copy_from_slice(&13u64.to_le_bytes());
        virtualize_filestat(&mut stat, 7);
        assert_eq!(u64::from_le_bytes(stat[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_le_bytes(stat[8..16].try_into().unwrap()), 7);
        assert_eq!(u64::from_le_bytes(stat[24..32].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(stat[32..40].try_into().unwrap()), 13);
        for at in [40, 48, 56] {
            assert_eq!(
                u64::from_le_bytes(stat[at..at + 8].try_into().unwrap()),
                EPOCH_2000_NS
            );
        }
        stat[16] = FILETYPE_DIRECTORY;
        virtualize_filestat(&mut stat, 7);
        assert_eq!(u64::from_le_bytes(stat[32..40].try_into().unwrap()), 0);
    }
}

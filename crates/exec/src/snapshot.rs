//! A task's state at a checkpoint, its bytes and its hash: what a referee
//! fetches from a disputing provider and restores (see `wasm::checkpoint`
//! for how states are taken). It needs nothing of the runtime, so it
//! builds without the `runtime` feature, and the decoder of these untrusted
//! bytes can be fuzzed without building wasmtime.

use cairn_wire::ContentId;

use crate::{Manifest, Outcome, OutputFile};

/// A hash of a task's whole state at a checkpoint.
pub type StateHash = [u8; 32];

/// Domain separation for state hashes: never equal to a result digest.
const STATE_DOMAIN: &[u8] = b"cairn/state/v1";

/// Everything a task's execution state consists of at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Linear memory 0.
    pub memory: Vec<u8>,
    /// Every global as (type tag, bits), in index order.
    pub globals: Vec<(u8, u128)>,
    /// The call stack a paused program handed over, as its values' bits in
    /// the order it saved them (empty for a program between steps).
    pub saved: Vec<u128>,
    /// The files and folders it holds open, by number.
    pub descriptors: Vec<Descriptor>,
    /// A descriptor number freed above them, which wasmtime gives out next.
    pub freed_fd: Option<u32>,
    /// Everything written to stdout so far.
    pub stdout: Vec<u8>,
    /// Everything written to stderr so far.
    pub stderr: Vec<u8>,
    /// Files under `/output`, sorted by path.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// Fuel used so far.
    pub fuel_used: u64,
    /// The virtual wall and monotonic clocks.
    pub clocks: [u64; 2],
    /// The secure and insecure random streams' positions.
    pub random: [u128; 2],
    /// Bytes charged to output, stdout and stderr, and entries created.
    pub budget: [u64; 4],
    /// How the task ended, if this is its last state.
    pub halted: Option<Outcome>,
}

/// A file or folder a paused program holds open, as a snapshot keeps it:
/// how `path_open` opened it and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Its number.
    pub fd: u32,
    /// The guest path it was opened by (`/input/scene.json`).
    pub path: String,
    /// `path_open`'s `dirflags`.
    pub dirflags: u32,
    /// `path_open`'s `oflags` (creating or truncating is not done again).
    pub oflags: u16,
    /// `path_open`'s base rights.
    pub rights: u64,
    /// `path_open`'s inheriting rights.
    pub inheriting: u64,
    /// `path_open`'s `fdflags` (append, nonblocking, sync).
    pub fdflags: u16,
    /// Its position (none for a folder).
    pub position: Option<u64>,
}

/// Descriptors a snapshot may list (a task holds at most 128 open).
const DESCRIPTORS_MAX: u32 = 1024;

/// The parts of a state that are hashed; computed from a live session or
/// from a [`Snapshot`], so both give the same [`StateHash`].
pub(crate) struct StateParts<'a> {
    pub memory: &'a [u8],
    pub globals: &'a [(u8, u128)],
    pub saved: &'a [u128],
    pub descriptors: &'a [Descriptor],
    pub freed_fd: Option<u32>,
    pub stdout: ContentId,
    pub stderr: ContentId,
    pub outputs: Result<Vec<OutputFile>, Outcome>,
    pub fuel_used: u64,
    pub clocks: [u64; 2],
    pub random: [u128; 2],
    pub budget: [u64; 4],
    pub halted: Option<&'a Outcome>,
}

impl StateParts<'_> {
    pub(crate) fn hash(&self) -> StateHash {
        let mut h = blake3::Hasher::new();
        h.update(STATE_DOMAIN);
        // BLAKE3 is itself a Merkle tree over 1 KiB chunks of memory.
        h.update(blake3::hash(self.memory).as_bytes());
        h.update(&(self.globals.len() as u64).to_le_bytes());
        for (tag, bits) in self.globals {
            h.update(&[*tag]);
            h.update(&bits.to_le_bytes());
        }
        h.update(&(self.saved.len() as u64).to_le_bytes());
        for bits in self.saved {
            h.update(&bits.to_le_bytes());
        }
        h.update(&(self.descriptors.len() as u64).to_le_bytes());
        for d in self.descriptors {
            let mut bytes = Vec::new();
            write_descriptor(d, &mut bytes);
            h.update(&bytes);
        }
        match self.freed_fd {
            None => h.update(&[0]),
            Some(fd) => h.update(&[1]).update(&fd.to_le_bytes()),
        };
        h.update(self.stdout.as_bytes());
        h.update(self.stderr.as_bytes());
        match &self.outputs {
            Ok(files) => {
                h.update(&(files.len() as u64).to_le_bytes());
                for file in files {
                    h.update(&(file.path.len() as u64).to_le_bytes());
                    h.update(file.path.as_bytes());
                    h.update(&file.size_bytes.to_le_bytes());
                    h.update(file.id.as_bytes());
                }
            }
            Err(broken) => {
                h.update(&u64::MAX.to_le_bytes());
                h.update(outcome_bytes(broken).as_slice());
            }
        }
        h.update(&self.fuel_used.to_le_bytes());
        for clock in self.clocks {
            h.update(&clock.to_le_bytes());
        }
        for position in self.random {
            h.update(&position.to_le_bytes());
        }
        for counter in self.budget {
            h.update(&counter.to_le_bytes());
        }
        match self.halted {
            Some(outcome) => h.update(&[1]).update(&outcome_bytes(outcome)),
            None => h.update(&[0]),
        };
        *h.finalize().as_bytes()
    }
}

/// An outcome as the manifest encodes it.
fn outcome_bytes(outcome: &Outcome) -> Vec<u8> {
    Manifest {
        outcome: outcome.clone(),
        fuel_used: 0,
        stdout: ContentId::of(b""),
        stderr: ContentId::of(b""),
        outputs: Vec::new(),
    }
    .to_bytes()
}

impl Snapshot {
    /// The state hash of this snapshot.
    pub fn hash(&self) -> StateHash {
        let outputs = self
            .outputs
            .iter()
            .map(|(path, bytes)| OutputFile {
                path: path.clone(),
                size_bytes: bytes.len() as u64,
                id: ContentId::of(bytes),
            })
            .collect();
        StateParts {
            memory: &self.memory,
            globals: &self.globals,
            saved: &self.saved,
            descriptors: &self.descriptors,
            freed_fd: self.freed_fd,
            stdout: ContentId::of(&self.stdout),
            stderr: ContentId::of(&self.stderr),
            outputs: Ok(outputs),
            fuel_used: self.fuel_used,
            clocks: self.clocks,
            random: self.random,
            budget: self.budget,
            halted: self.halted.as_ref(),
        }
        .hash()
    }
}

/// Version of [`Snapshot::to_bytes`].
const SNAPSHOT_VERSION: u8 = 2;

impl Snapshot {
    /// The canonical bytes, to hand a snapshot to a referee.
    pub fn to_bytes(&self) -> Vec<u8> {
        use cairn_wire::codec::Write as _;
        let mut buf = Vec::with_capacity(self.memory.len() + self.stdout.len() + 256);
        SNAPSHOT_VERSION.write(&mut buf);
        write_bytes(&self.memory, &mut buf);
        (self.globals.len() as u32).write(&mut buf);
        for (tag, bits) in &self.globals {
            tag.write(&mut buf);
            bits.write(&mut buf);
        }
        (self.saved.len() as u64).write(&mut buf);
        for bits in &self.saved {
            bits.write(&mut buf);
        }
        (self.descriptors.len() as u32).write(&mut buf);
        for d in &self.descriptors {
            write_descriptor(d, &mut buf);
        }
        match self.freed_fd {
            None => 0u8.write(&mut buf),
            Some(fd) => {
                1u8.write(&mut buf);
                fd.write(&mut buf);
            }
        }
        write_bytes(&self.stdout, &mut buf);
        write_bytes(&self.stderr, &mut buf);
        (self.outputs.len() as u32).write(&mut buf);
        for (path, bytes) in &self.outputs {
            write_bytes(path.as_bytes(), &mut buf);
            write_bytes(bytes, &mut buf);
        }
        self.fuel_used.write(&mut buf);
        self.clocks.iter().for_each(|c| c.write(&mut buf));
        self.random.iter().for_each(|r| r.write(&mut buf));
        self.budget.iter().for_each(|b| b.write(&mut buf));
        match &self.halted {
            None => 0u8.write(&mut buf),
            Some(outcome) => {
                1u8.write(&mut buf);
                write_outcome(outcome, &mut buf);
            }
        }
        buf
    }

    /// Reads [`Snapshot::to_bytes`] from an untrusted peer; nothing in it
    /// may exceed `bytes_max` in all.
    pub fn from_bytes(bytes: &[u8], bytes_max: usize) -> Result<Self, String> {
        use cairn_wire::codec::ReadExt as _;
        if bytes.len() > bytes_max {
            return Err(format!(
                "a snapshot of {} bytes is over the limit",
                bytes.len()
            ));
        }
        let buf = &mut cairn_wire::codec::Copying(bytes);
        let bad = |e: cairn_wire::codec::Error| format!("malformed snapshot: {e}");
        if u8::read(buf).map_err(bad)? != SNAPSHOT_VERSION {
            return Err("unknown snapshot version".into());
        }
        let memory = read_bytes(buf)?;
        let count = u32::read(buf).map_err(bad)? as usize;
        if count > 1 << 16 {
            return Err("too many globals".into());
        }
        let mut globals = Vec::with_capacity(count);
        for _ in 0..count {
            globals.push((u8::read(buf).map_err(bad)?, u128::read(buf).map_err(bad)?));
        }
        let count = u64::read(buf).map_err(bad)?;
        if count > (buf.0.len() / 16) as u64 {
            return Err("malformed snapshot: more saved values than bytes".into());
        }
        let mut saved = Vec::with_capacity(count as usize);
        for _ in 0..count {
            saved.push(u128::read(buf).map_err(bad)?);
        }
        let count = u32::read(buf).map_err(bad)?;
        if count > DESCRIPTORS_MAX {
            return Err("malformed snapshot: too many descriptors".into());
        }
        let mut descriptors = Vec::with_capacity(count as usize);
        for _ in 0..count {
            descriptors.push(read_descriptor(buf)?);
        }
        let freed_fd = match u8::read(buf).map_err(bad)? {
            0 => None,
            1 => Some(u32::read(buf).map_err(bad)?),
            _ => return Err("malformed snapshot: freed descriptor flag".into()),
        };
        let stdout = read_bytes(buf)?;
        let stderr = read_bytes(buf)?;
        let count = u32::read(buf).map_err(bad)? as usize;
        let mut outputs = Vec::with_capacity(count.min(1024));
        let mut paths = std::collections::BTreeSet::new();
        for _ in 0..count {
            let path = String::from_utf8(read_bytes(buf)?).map_err(|e| e.to_string())?;
            // Two colluding providers choose what a referee restores: the
            // one path rule, and no path twice, before it is kept.
            cairn_job::check_output_path(&path)
                .map_err(|reason| format!("snapshot output refused: {reason}"))?;
            if !paths.insert(path.clone()) {
                return Err(format!("snapshot lists output '{path}' twice"));
            }
            outputs.push((path, read_bytes(buf)?));
        }
        let fuel_used = u64::read(buf).map_err(bad)?;
        let clocks = [u64::read(buf).map_err(bad)?, u64::read(buf).map_err(bad)?];
        let random = [u128::read(buf).map_err(bad)?, u128::read(buf).map_err(bad)?];
        let mut budget = [0u64; 4];
        for b in &mut budget {
            *b = u64::read(buf).map_err(bad)?;
        }
        let halted = match u8::read(buf).map_err(bad)? {
            0 => None,
            1 => Some(read_outcome(buf)?),
            _ => return Err("malformed snapshot: halted flag".into()),
        };
        if !buf.0.is_empty() {
            return Err("malformed snapshot: trailing bytes".into());
        }
        Ok(Self {
            memory,
            globals,
            saved,
            descriptors,
            freed_fd,
            stdout,
            stderr,
            outputs,
            fuel_used,
            clocks,
            random,
            budget,
            halted,
        })
    }
}

fn write_descriptor(d: &Descriptor, buf: &mut Vec<u8>) {
    use cairn_wire::codec::Write as _;
    d.fd.write(buf);
    write_bytes(d.path.as_bytes(), buf);
    d.dirflags.write(buf);
    d.oflags.write(buf);
    d.rights.write(buf);
    d.inheriting.write(buf);
    d.fdflags.write(buf);
    match d.position {
        None => 0u8.write(buf),
        Some(position) => {
            1u8.write(buf);
            position.write(buf);
        }
    }
}

fn read_descriptor(buf: &mut cairn_wire::codec::Copying<'_>) -> Result<Descriptor, String> {
    use cairn_wire::codec::ReadExt as _;
    let bad = |e: cairn_wire::codec::Error| format!("malformed snapshot: {e}");
    let fd = u32::read(buf).map_err(bad)?;
    let path = String::from_utf8(read_bytes(buf)?).map_err(|e| e.to_string())?;
    // Opened again only inside a preopened folder, by wasmtime's own
    // sandboxed `path_open`; bounded here like any guest path.
    if path.len() > 4096 || !path.starts_with('/') {
        return Err(format!(
            "malformed snapshot: descriptor path '{}'",
            path.escape_debug()
        ));
    }
    Ok(Descriptor {
        fd,
        path,
        dirflags: u32::read(buf).map_err(bad)?,
        oflags: u16::read(buf).map_err(bad)?,
        rights: u64::read(buf).map_err(bad)?,
        inheriting: u64::read(buf).map_err(bad)?,
        fdflags: u16::read(buf).map_err(bad)?,
        position: match u8::read(buf).map_err(bad)? {
            0 => None,
            1 => Some(u64::read(buf).map_err(bad)?),
            _ => return Err("malformed snapshot: descriptor position flag".into()),
        },
    })
}

fn write_bytes(bytes: &[u8], buf: &mut Vec<u8>) {
    use cairn_wire::codec::Write as _;
    (bytes.len() as u64).write(buf);
    buf.extend_from_slice(bytes);
}

fn read_bytes(buf: &mut cairn_wire::codec::Copying<'_>) -> Result<Vec<u8>, String> {
    use cairn_wire::codec::ReadExt as _;
    let len = u64::read(buf).map_err(|e| format!("malformed snapshot: {e}"))?;
    if len > buf.0.len() as u64 {
        return Err("malformed snapshot: a length runs past the end".into());
    }
    let (head, rest) = buf.0.split_at(len as usize);
    buf.0 = rest;
    Ok(head.to_vec())
}

fn write_outcome(outcome: &Outcome, buf: &mut Vec<u8>) {
    use cairn_wire::codec::Write as _;
    match outcome {
        Outcome::Exited(code) => {
            0u8.write(buf);
            code.write(buf);
        }
        Outcome::FuelExhausted { limit } => {
            1u8.write(buf);
            limit.write(buf);
        }
        Outcome::MemoryLimit { limit, requested } => {
            2u8.write(buf);
            limit.write(buf);
            requested.write(buf);
        }
        Outcome::OutputLimit { stream, limit } => {
            3u8.write(buf);
            write_bytes(stream.as_bytes(), buf);
            limit.write(buf);
        }
        Outcome::EntriesLimit { limit } => {
            4u8.write(buf);
            limit.write(buf);
        }
        Outcome::Trap(text) => {
            5u8.write(buf);
            write_bytes(text.as_bytes(), buf);
        }
        Outcome::MissingOutput(text) => {
            6u8.write(buf);
            write_bytes(text.as_bytes(), buf);
        }
        Outcome::InvalidOutput(text) => {
            7u8.write(buf);
            write_bytes(text.as_bytes(), buf);
        }
    }
}

fn read_outcome(buf: &mut cairn_wire::codec::Copying<'_>) -> Result<Outcome, String> {
    use cairn_wire::codec::ReadExt as _;
    let bad = |e: cairn_wire::codec::Error| format!("malformed snapshot: {e}");
    let text = |buf: &mut cairn_wire::codec::Copying<'_>| -> Result<String, String> {
        String::from_utf8(read_bytes(buf)?).map_err(|e| e.to_string())
    };
    Ok(match u8::read(buf).map_err(bad)? {
        0 => Outcome::Exited(i32::read(buf).map_err(bad)?),
        1 => Outcome::FuelExhausted {
            limit: u64::read(buf).map_err(bad)?,
        },
        2 => Outcome::MemoryLimit {
            limit: u64::read(buf).map_err(bad)?,
            requested: u64::read(buf).map_err(bad)?,
        },
        3 => {
            let stream = match text(buf)?.as_str() {
                "output" => "output",
                "stdout" => "stdout",
                "stderr" => "stderr",
                other => return Err(format!("malformed snapshot: stream '{other}'")),
            };
            Outcome::OutputLimit {
                stream,
                limit: u64::read(buf).map_err(bad)?,
            }
        }
        4 => Outcome::EntriesLimit {
            limit: u64::read(buf).map_err(bad)?,
        },
        5 => Outcome::Trap(text(buf)?),
        6 => Outcome::MissingOutput(text(buf)?),
        7 => Outcome::InvalidOutput(text(buf)?),
        other => return Err(format!("malformed snapshot: outcome {other}")),
    })
}

//! NVIDIA GPUs on this machine, as a provider lends them to tool tasks.
//!
//! The driver lists each GPU under `/proc/driver/nvidia/gpus/<bus>/` with
//! its model and the minor number of its device node (`/dev/nvidia<N>`);
//! `nvidia-smi`, where installed, adds its memory. A task lent GPUs gets
//! their nodes, and the driver's control nodes (`/dev/nvidiactl`,
//! `/dev/nvidia-uvm`, …), in its sandbox, and no other GPU's.
//!
//! What the provider reads here is its own machine's, but it still goes
//! into offers every peer reads: models are cut to printable ASCII of
//! [`MODEL_BYTES_MAX`], and at most [`GPUS_MAX`] GPUs are lent.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The most GPUs a provider lends: as many as a task may ask for.
pub const GPUS_MAX: usize = *cairn_job::rules::GPUS_RANGE.end() as usize;

/// The longest GPU model name kept (`NVIDIA GeForce RTX 4090`), as an
/// offer's reader allows (`cairn_market::GPU_MODEL_BYTES_MAX`).
pub const MODEL_BYTES_MAX: usize = 48;

/// The longest driver version kept (`550.54.15`).
pub const DRIVER_BYTES_MAX: usize = 16;

/// How long `nvidia-smi` may take to answer.
const SMI_TIME: Duration = Duration::from_secs(10);

/// Bytes of a driver file, or of `nvidia-smi`'s answer, read at most.
const READ_MAX: u64 = 64 << 10;

/// The driver's nodes a compute task needs, bound where present (not
/// its profiling or display nodes).
const CONTROL_NODES: &[&str] = &["/dev/nvidiactl", "/dev/nvidia-uvm"];

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// Its model, as the driver names it (`NVIDIA H200`).
    pub model: String,
    /// Its memory; 0 where `nvidia-smi` could not say.
    pub memory_mib: u32,
    /// Its PCI address, `domain:bus:device.function` (`0000:19:00.0`).
    pub bus: String,
    /// Its device node's minor number: a task sees it as `/dev/nvidia<minor>`.
    pub minor: u32,
    /// The node on the host (`/dev/nvidia<minor>` but in tests).
    pub node: PathBuf,
}

impl Gpu {
    /// Where a task sees it.
    pub fn node_inside(&self) -> PathBuf {
        PathBuf::from(format!("/dev/nvidia{}", self.minor))
    }
}

/// The GPUs a provider lends, and which are in use.
#[derive(Debug, Default)]
pub struct Gpus {
    gpus: Vec<Gpu>,
    /// The driver's version (`550.54.15`); empty if unknown.
    driver: String,
    /// Driver nodes bound for any task that has a GPU.
    control: Vec<PathBuf>,
    /// Whether each GPU is held by a running task.
    busy: Mutex<Vec<bool>>,
    /// Signalled when a hold ends.
    freed: Condvar,
}

impl Gpus {
    /// The GPUs `gpus`, with the driver's control nodes `control`.
    pub fn new(gpus: Vec<Gpu>, control: Vec<PathBuf>) -> Self {
        let busy = Mutex::new(vec![false; gpus.len()]);
        Self {
            gpus,
            driver: String::new(),
            control,
            busy,
            freed: Condvar::new(),
        }
    }

    /// The NVIDIA GPUs of this machine, of one model: the most common
    /// one (a job's replicas compare bits only on one model, so a task
    /// must not land on whichever GPU is free). None without the driver.
    pub fn find() -> Self {
        let mut gpus = find_in(Path::new("/proc/driver/nvidia/gpus"), Path::new("/dev"));
        let memory = nvidia_smi_memory();
        for gpu in &mut gpus {
            gpu.memory_mib = memory
                .iter()
                .find(|(bus, _)| *bus == gpu.bus)
                .map_or(0, |(_, mib)| *mib);
        }
        let model = most_common_model(&gpus);
        gpus.retain(|g| Some(&g.model) == model.as_ref());
        gpus.truncate(GPUS_MAX);
        let control = if gpus.is_empty() {
            Vec::new()
        } else {
            CONTROL_NODES
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect()
        };
        let mut found = Self::new(gpus, control);
        if !found.gpus.is_empty() {
            found.driver = read_capped(Path::new("/proc/driver/nvidia/version"))
                .and_then(|text| parse_driver_version(&text))
                .unwrap_or_default();
        }
        found
    }

    /// The driver's version (`550.54.15`): compiled GPU code may differ
    /// between drivers, so a GPU build names it. Empty if unknown.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// How many are held by running tasks now.
    pub fn busy(&self) -> u32 {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.iter().filter(|b| **b).count() as u32
    }

    /// The GPUs lent.
    pub fn all(&self) -> &[Gpu] {
        &self.gpus
    }

    /// Their model, when there are any.
    pub fn model(&self) -> Option<&str> {
        self.gpus.first().map(|g| g.model.as_str())
    }

    /// The least memory of any of them.
    pub fn memory_mib(&self) -> u32 {
        self.gpus.iter().map(|g| g.memory_mib).min().unwrap_or(0)
    }

    /// Every node a task using all of them would need: to probe a tool.
    pub(crate) fn every_node(&self) -> Vec<(PathBuf, PathBuf)> {
        self.nodes_of(&(0..self.gpus.len()).collect::<Vec<_>>())
    }

    fn nodes_of(&self, held: &[usize]) -> Vec<(PathBuf, PathBuf)> {
        let mut nodes: Vec<(PathBuf, PathBuf)> = self
            .control
            .iter()
            .map(|p| (p.clone(), p.clone()))
            .collect();
        nodes.extend(
            held.iter()
                .map(|&i| (self.gpus[i].node.clone(), self.gpus[i].node_inside())),
        );
        nodes
    }

    /// Holds `count` GPUs for one task until the hold is dropped, waiting
    /// up to `wait` for other tasks to free them (two leases' tasks may
    /// want them at once); says why it cannot.
    pub(crate) fn hold(&self, count: u32, wait: Duration) -> Result<Held<'_>, String> {
        let count = count as usize;
        if count > self.gpus.len() {
            return Err(format!(
                "the task needs {count} GPU(s); this machine lends {}",
                self.gpus.len()
            ));
        }
        let until = Instant::now() + wait;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let free = loop {
            let free: Vec<usize> = (0..busy.len()).filter(|&i| !busy[i]).collect();
            if free.len() >= count {
                break free;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the task needs {count} GPU(s); {} of this machine's {} were free for {} s",
                    free.len(),
                    self.gpus.len(),
                    wait.as_secs()
                ));
            }
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        let held: Vec<usize> = free[..count].to_vec();
        for &i in &held {
            busy[i] = true;
        }
        Ok(Held { gpus: self, held })
    }
}

/// GPUs held by one task.
pub(crate) struct Held<'a> {
    gpus: &'a Gpus,
    held: Vec<usize>,
}

impl Held<'_> {
    /// The nodes to bind: host path, path inside.
    pub fn nodes(&self) -> Vec<(PathBuf, PathBuf)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        self.gpus.nodes_of(&self.held)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut busy = self.gpus.busy.lock().unwrap_or_else(|e| e.into_inner());
        for &i in &self.held {
            busy[i] = false;
        }
        self.gpus.freed.notify_all();
    }
}

/// The GPUs the driver lists under `driver` (one folder per GPU, holding
/// `information`), with their nodes under `dev`, sorted by minor number.
/// A GPU whose file cannot be read or parsed, or whose node is missing, is
/// left out.
fn find_in(driver: &Path, dev: &Path) -> Vec<Gpu> {
    let Ok(entries) = std::fs::read_dir(driver) else {
        return Vec::new();
    };
    let mut gpus: Vec<Gpu> = entries
        .flatten()
        .take(GPUS_MAX * 4)
        .filter_map(|entry| {
            let text = read_capped(&entry.path().join("information"))?;
            let (model, minor, bus) = parse_information(&text)?;
            let node = dev.join(format!("nvidia{minor}"));
            node.exists().then_some(Gpu {
                model,
                memory_mib: 0,
                bus,
                minor,
                node,
            })
        })
        .collect();
    gpus.sort_by_key(|g| g.minor);
    gpus.dedup_by_key(|g| g.minor);
    gpus
}

fn read_capped(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(READ_MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The model, device minor number and PCI address in a driver's
/// `information` file: lines of `Key: value`.
fn parse_information(text: &str) -> Option<(String, u32, String)> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    };
    let model = clean_model(value("Model")?)?;
    let minor = value("Device Minor")?.parse().ok()?;
    let bus = pci_address(value("Bus Location")?)?;
    Some((model, minor, bus))
}

/// A PCI address with its domain as four hex digits, lower case:
/// the driver writes `0000:19:00.0`, `nvidia-smi` `00000000:19:00.0`.
fn pci_address(raw: &str) -> Option<String> {
    let (domain, rest) = raw.trim().split_once(':')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let rest = rest.to_ascii_lowercase();
    let valid = rest.len() <= 16
        && rest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    valid.then(|| format!("{domain:04x}:{rest}"))
}

/// A model name fit for an offer: printable ASCII and single spaces, cut
/// to [`MODEL_BYTES_MAX`]; none if nothing is left.
fn clean_model(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw
        .split_whitespace()
        .filter(|w| w.bytes().all(|b| b.is_ascii_graphic()))
        .collect();
    let mut model = String::new();
    for word in words {
        let sep = usize::from(!model.is_empty());
        if model.len() + sep + word.len() > MODEL_BYTES_MAX {
            break;
        }
        if sep == 1 {
            model.push(' ');
        }
        model.push_str(word);
    }
    (!model.is_empty()).then_some(model)
}

/// The version in the driver's `/proc/driver/nvidia/version`: the word
/// after `Kernel Module` on its first line (`NVRM version: NVIDIA UNIX
/// x86_64 Kernel Module  550.54.15  Tue Mar  5 …`).
fn parse_driver_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let (_, rest) = line.split_once("Kernel Module")?;
    let word = rest.split_whitespace().next()?;
    let valid = word.len() <= DRIVER_BYTES_MAX
        && word.starts_with(|c: char| c.is_ascii_digit())
        && word.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    valid.then(|| word.to_owned())
}

/// Each GPU's memory by PCI address, from `nvidia-smi`; empty where it is
/// not installed, fails, or takes longer than [`SMI_TIME`].
fn nvidia_smi_memory() -> Vec<(String, u32)> {
    let Some(smi) = ["/usr/bin/nvidia-smi", "/bin/nvidia-smi"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        return Vec::new();
    };
    let Ok(mut child) = Command::new(smi)
        .args([
            "--query-gpu=pci.bus_id,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Vec::new();
    };
    let Some(stdout) = child.stdout.take() else {
        return Vec::new();
    };
    // Read on a thread, so a driver that hangs it cannot hang the node's
    // start: past the time it is killed, and its end closes the pipe.
    let (sent, got) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.take(READ_MAX).read_to_string(&mut text);
        let _ = sent.send(text);
    });
    let text = got.recv_timeout(SMI_TIME).ok();
    if text.is_none() {
        let _ = child.kill();
    }
    let succeeded = child.wait().is_ok_and(|status| status.success());
    match text {
        Some(text) if succeeded => parse_smi_memory(&text),
        _ => Vec::new(),
    }
}

/// `address, MiB` lines, as `nvidia-smi --query-gpu=pci.bus_id,memory.total
/// --format=csv,noheader,nounits` prints them; lines that are not are
/// skipped.
fn parse_smi_memory(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let (bus, mib) = line.split_once(',')?;
            Some((pci_address(bus)?, mib.trim().parse().ok()?))
        })
        .take(GPUS_MAX * 4)
        .collect()
}

/// The model most of `gpus` are (ties: the first by minor number).
fn most_common_model(gpus: &[Gpu]) -> Option<String> {
    let mut best: Option<(&str, usize)> = None;
    for gpu in gpus {
        let count = gpus.iter().filter(|g| g.model == gpu.model).count();
        if best.is_none_or(|(_, n)| count > n) {
            best = Some((&gpu.model, count));
        }
    }
    best.map(|(model, _)| model.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file as driver 550 writes it.
    const INFORMATION: &str = "Model: \t\t NVIDIA H200\nIRQ:   \t\t 130\n\
        GPU UUID: \t GPU-5b1f0c2e-0000-0000-0000-000000000000\n\
        Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\n\
        DMA Mask: \t 0xfffffffffffff\nBus Location: \t 0000:19:00.0\n\
        Device Minor: \t 3\nGPU Excluded:\t No\n";

    #[test]
    fn the_drivers_file_gives_model_and_node() {
        assert_eq!(
            parse_information(INFORMATION),
            Some(("NVIDIA H200".to_owned(), 3, "0000:19:00.0".to_owned()))
        );
        // Without either line, or with a minor that is not a number, no GPU.
        let without = |key: &str| {
            let text: String = INFORMATION
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            parse_information(&text)
        };
        for key in ["Model", "Device Minor", "Bus Location"] {
            assert_eq!(without(key), None, "without {key}");
        }
        assert_eq!(
            parse_information("Model: X\nDevice Minor: -1\n"),
            None,
            "a negative minor"
        );
    }

    #[test]
    fn a_model_name_is_cut_to_printable_words() {
        assert_eq!(
            clean_model("  NVIDIA   GeForce\tRTX 4090 ").as_deref(),
            Some("NVIDIA GeForce RTX 4090")
        );
        assert_eq!(
            clean_model("NVIDIA \u{1b}[2J H200").as_deref(),
            Some("NVIDIA H200"),
            "an escape sequence is dropped"
        );
        assert_eq!(clean_model("\u{1b}[2J"), None);
        let long = clean_model(&"word ".repeat(40)).unwrap();
        assert!(long.len() <= MODEL_BYTES_MAX && long.ends_with("word"));
    }

    #[test]
    fn the_drivers_version_is_read_from_its_first_line() {
        assert_eq!(
            parse_driver_version(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n\
                 GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
            )
            .as_deref(),
            Some("550.54.15")
        );
        assert_eq!(
            parse_driver_version("NVRM version: Kernel Module  x\u{1b}[2J\n"),
            None
        );
        assert_eq!(parse_driver_version(""), None);
    }

    #[test]
    fn nvidia_smis_memory_lines_are_read_and_others_skipped() {
        assert_eq!(
            parse_smi_memory(
                "00000000:19:00.0, 143771\n00000000:3B:00.0, 143771\nNo devices were found\n\
                 00000000:4C:00.0, [N/A]\n"
            ),
            vec![
                ("0000:19:00.0".to_owned(), 143_771),
                ("0000:3b:00.0".to_owned(), 143_771)
            ]
        );
    }

    #[test]
    fn gpus_are_found_with_their_nodes_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let driver = dir.path().join("gpus");
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (bus, minor, node) in [
            ("0000:19:00.0", 3, true),
            ("0000:3b:00.0", 1, true),
            ("0000:4c:00.0", 2, false),
        ] {
            let folder = driver.join(bus);
            std::fs::create_dir_all(&folder).unwrap();
            let text =
                INFORMATION.replace("Device Minor: \t 3", &format!("Device Minor: \t {minor}"));
            std::fs::write(folder.join("information"), text).unwrap();
            if node {
                std::fs::write(dev.join(format!("nvidia{minor}")), b"").unwrap();
            }
        }
        let gpus = find_in(&driver, &dev);
        let minors: Vec<u32> = gpus.iter().map(|g| g.minor).collect();
        assert_eq!(minors, vec![1, 3], "the GPU without a node is not lent");
        assert_eq!(gpus[0].node, dev.join("nvidia1"));
        assert_eq!(gpus[0].node_inside(), Path::new("/dev/nvidia1"));
        assert!(find_in(&dir.path().join("absent"), &dev).is_empty());
    }

    #[test]
    fn a_machine_of_mixed_gpus_lends_its_most_common_model() {
        let gpu = |model: &str, minor| Gpu {
            model: model.to_owned(),
            memory_mib: 0,
            bus: String::new(),
            minor,
            node: PathBuf::from(format!("/dev/nvidia{minor}")),
        };
        let gpus = [gpu("A", 0), gpu("B", 1), gpu("B", 2)];
        assert_eq!(most_common_model(&gpus).as_deref(), Some("B"));
        assert_eq!(most_common_model(&gpus[..2]).as_deref(), Some("A"));
        assert_eq!(most_common_model(&[]), None);
    }

    #[test]
    fn a_task_holds_free_gpus_until_it_ends() {
        let gpu = |minor| Gpu {
            model: "A".to_owned(),
            memory_mib: 1024,
            bus: String::new(),
            minor,
            node: PathBuf::from(format!("/host/nvidia{minor}")),
        };
        let gpus = Gpus::new(vec![gpu(0), gpu(1)], vec![PathBuf::from("/dev/nvidiactl")]);
        let now = Duration::ZERO;
        let first = gpus.hold(1, now).unwrap();
        assert_eq!(
            first.nodes(),
            vec![
                (
                    PathBuf::from("/dev/nvidiactl"),
                    PathBuf::from("/dev/nvidiactl")
                ),
                (
                    PathBuf::from("/host/nvidia0"),
                    PathBuf::from("/dev/nvidia0")
                ),
            ]
        );
        let second = gpus.hold(1, now).unwrap();
        assert_eq!(second.nodes()[1].1, Path::new("/dev/nvidia1"));
        assert_eq!(gpus.busy(), 2);
        let refused = gpus.hold(1, now).err().unwrap();
        assert!(
            refused.contains("0 of this machine's 2 were free"),
            "{refused}"
        );
        let refused = gpus.hold(3, Duration::from_secs(60)).err().unwrap();
        assert!(
            refused.contains("lends 2"),
            "more than it has is refused at once: {refused}"
        );
        // A task waiting for a GPU gets the first one freed.
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let held = gpus.hold(1, Duration::from_secs(600)).unwrap();
                held.nodes()[1].1.clone()
            });
            drop(first);
            assert_eq!(waiting.join().unwrap(), Path::new("/dev/nvidia0"));
        });
        assert_eq!(gpus.busy(), 1);
        assert!(
            gpus.hold(0, now).unwrap().nodes().is_empty(),
            "no GPU, no nodes"
        );
    }
}

//! The sandbox as an attacker's tool would probe it, and ffmpeg through the
//! runtime. These need bubblewrap and ffmpeg (see `install_test_tools`).

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use super::sandbox::Sandbox;
use super::*;
use crate::tiles::Bitmap;
use crate::{Limits, Outcome};
use cairn_job::tiles::{Grid, Tile, WHOLE_BORDER};

fn ensure_installed() {
    super::install_test_tools();
}

fn sandbox() -> Sandbox {
    ensure_installed();
    Sandbox::new(Path::new("/usr/bin/bwrap")).expect("bubblewrap makes a sandbox here")
}

fn limits() -> Limits {
    Limits {
        fuel: 1_000,
        memory_bytes: 512 << 20,
        wall_time: Duration::from_secs(60),
        output_bytes: 1 << 20,
        stdout_bytes: 16 << 10,
        gpus: 0,
        gpu_memory_mib: 0,
    }
}

/// Runs `script` with `/bin/sh` in the sandbox, `/input` holding a file
/// `secret-in` and `/output` empty.
fn shell(
    script: &str,
    limits: Limits,
) -> (Result<super::sandbox::Ran, ExecError>, tempfile::TempDir) {
    shell_with_devices(script, limits, &[])
}

/// [`shell`], with device nodes bound (host path, path inside).
fn shell_with_devices(
    script: &str,
    limits: Limits,
    devices: &[(PathBuf, PathBuf)],
) -> (Result<super::sandbox::Ran, ExecError>, tempfile::TempDir) {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(input.join("secret-in"), b"input").unwrap();
    let args = vec!["-c".to_owned(), script.to_owned()];
    let ran = sandbox.run(
        Path::new("/bin/sh"),
        &Task {
            module: ContentId::of(b"sh"),
            args: &args,
            seed: [0; 32],
            input_dir: Some(&input),
            output_dir: &output,
            expected_outputs: &[],
            limits,
        },
        1,
        devices,
    );
    (ran, dir)
}

/// Asserts that a sandboxed run exited with status 0, showing its stderr.
fn assert_exited_cleanly(ran: &super::sandbox::Ran) {
    assert_eq!(
        ran.outcome,
        Outcome::Exited(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

fn stdout(ran: &super::sandbox::Ran) -> String {
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

#[test]
fn a_snooping_tool_sees_neither_the_host_nor_its_secrets() {
    // A file only the host has, beside the sandbox's own folders.
    let host_secret = std::env::temp_dir().join(format!("cairn-secret-{}", std::process::id()));
    std::fs::write(&host_secret, b"secret").unwrap();
    let script = format!(
        "for p in /etc/passwd /etc/shadow /root /home /var /work {secret}; do \
           if [ -e $p ]; then echo \"sees $p\"; fi; done; \
         ls /proc | grep -c '^[0-9]'; hostname; env | sort | cut -d= -f1 | tr '\\n' ' '; \
         echo; ls /proc/self/fd | tr '\\n' ' '",
        secret = host_secret.display()
    );
    let (ran, _dir) = shell(&script, limits());
    std::fs::remove_file(&host_secret).ok();
    let ran = ran.unwrap();
    assert_exited_cleanly(&ran);
    let out = stdout(&ran);
    assert!(
        !out.contains("sees"),
        "the sandbox shows host paths:\n{out}"
    );
    let mut lines = out.lines();
    // Its own PID namespace: the sandbox's init, the shell and the
    // pipeline, not the host's processes.
    let processes: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(processes <= 6, "{processes} processes visible");
    assert_eq!(lines.next(), Some("cairn"), "the hostname is fixed");
    // sh adds PWD; nothing of the node's environment passes.
    assert_eq!(lines.next().unwrap().trim(), "HOME LANG PATH PWD TMPDIR");
    // Only the standard streams, and the folder `ls` is reading: no
    // descriptor of the node's (its store, its sockets, bubblewrap's
    // status pipe) reaches the tool.
    assert_eq!(lines.next().unwrap().trim(), "0 1 2 3");
}

#[test]
fn a_vandal_tool_writes_only_to_its_output() {
    let script = "echo x > /usr/x 2>/dev/null && echo wrote-usr; \
                  echo x > /input/secret-in 2>/dev/null && echo wrote-input; \
                  echo x > /input/new 2>/dev/null && echo created-input; \
                  echo x > /x 2>/dev/null && echo wrote-root; \
                  echo x > /dev/x 2>/dev/null && echo wrote-dev; \
                  echo x > /dev/shm/x 2>/dev/null && echo wrote-shm; \
                  echo x > /tmp/scratch && echo wrote-tmp; \
                  echo result > /output/ok && echo wrote-output";
    let (ran, dir) = shell(script, limits());
    let ran = ran.unwrap();
    assert_eq!(stdout(&ran), "wrote-tmp\nwrote-output\n");
    assert_eq!(
        std::fs::read(dir.path().join("in/secret-in")).unwrap(),
        b"input"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out/ok")).unwrap(),
        b"result\n"
    );
    assert!(!dir.path().join("in/new").exists());
}

#[test]
fn a_tool_phoning_home_reaches_nobody() {
    ensure_installed();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    // ffmpeg speaks TCP itself: the real tool, trying the host's loopback.
    let script = format!(
        "/usr/bin/ffmpeg -hide_banner -loglevel error -i tcp://127.0.0.1:{port} -f null - \
         && echo connected"
    );
    let (ran, _dir) = shell(&script, limits());
    let ran = ran.unwrap();
    assert_ne!(ran.outcome, Outcome::Exited(0));
    assert!(!stdout(&ran).contains("connected"));
    // The tool has ended, so any connection it made is queued by now.
    assert!(
        listener.accept().is_err(),
        "the sandboxed tool connected to the host's loopback"
    );
}

#[test]
fn limits_hold_inside_the_sandbox() {
    // Memory: the address-space limit is what the job gave (sh reports KiB).
    let (ran, _dir) = shell("ulimit -v; ulimit -c", limits());
    assert_eq!(
        stdout(&ran.unwrap()),
        format!("{}\n0\n", (512u64 << 20) / 1024)
    );

    // A file larger than the output limit stops the tool, as a result.
    let (ran, _dir) = shell("head -c 2000000 /dev/zero > /output/big", limits());
    assert_eq!(
        ran.unwrap().outcome,
        Outcome::OutputLimit {
            stream: "output",
            limit: 1 << 20
        }
    );

    // A crash is a result.
    let (ran, _dir) = shell("kill -SEGV $$", limits());
    assert!(matches!(ran.unwrap().outcome, Outcome::Trap(_)));

    // A flood on stdout is cut, and the tool still finishes.
    let (ran, _dir) = shell(
        "head -c 100000 /dev/zero | tr '\\0' x; echo done >&2",
        limits(),
    );
    let ran = ran.unwrap();
    assert_eq!(ran.outcome, Outcome::Exited(0));
    assert!(
        ran.stdout.len() <= 16 << 10,
        "{} bytes kept",
        ran.stdout.len()
    );
    assert_eq!(ran.stderr, b"done\n");
}

#[test]
fn a_tool_that_never_ends_is_stopped_with_everything_it_started() {
    let short = Limits {
        wall_time: Duration::from_secs(1),
        ..limits()
    };
    // A child left behind holding stdout open would keep the reader (and
    // so the task) waiting for ever if it outlived the sandbox. (Sleeping,
    // not spinning: the CPU-time limit would end a spinning tool instead.)
    let (ran, _dir) = shell("sleep 1000 & sleep 1000", short);
    assert!(
        matches!(ran, Err(ExecError::WallTimeExceeded { seconds: 1 })),
        "{:?}",
        ran.map(|r| r.outcome)
    );
    // An orphan of a task that ended is gone with the sandbox too.
    let (ran, _dir) = shell("sleep 1000 & echo started", limits());
    assert_eq!(stdout(&ran.unwrap()), "started\n");
}

/// A fork bomb is held to its task's processes: as root the kernel holds
/// a process to no process limit, and one task could take every process
/// id of the host. The task is no result, and the host still starts the
/// next one.
#[test]
fn a_fork_bomb_is_held_to_its_task_and_leaves_the_host_its_processes() {
    let short = Limits {
        wall_time: Duration::from_secs(5),
        ..limits()
    };
    // Each call starts two more and waits for them, so the tree only grows
    // (a bomb whose callers return can end before it reaches the limit,
    // and pass as a result).
    let (ran, _dir) = shell("bomb() { bomb & bomb & wait; }; bomb", short);
    assert!(
        matches!(ran, Err(ExecError::ProcessesExceeded { limit: 1_024 })),
        "{:?}",
        ran.map(|r| r.outcome)
    );
    let (ran, _dir) = shell("echo after", limits());
    assert_eq!(stdout(&ran.unwrap()), "after\n");
}

/// Eight processes of 200 MB each: each is within its own address-space
/// limit (512 MiB), but the task is not (its group holds twice that, for
/// its processes and its `/tmp`), and its group's memory limit ends it.
/// The task is no result.
#[test]
fn a_memory_bomb_of_many_processes_is_held_to_its_task_memory() {
    let script = "for i in 1 2 3 4 5 6 7 8; do \
                    dd if=/dev/zero of=/dev/null bs=200M count=20 status=none & \
                  done; wait";
    let (ran, _dir) = shell(script, limits());
    assert!(
        matches!(ran, Err(ExecError::MemoryExceeded { bytes }) if bytes == 1 << 30),
        "{:?}",
        ran.map(|r| r.outcome)
    );
    // One of them alone is within the task's memory.
    let (ran, _dir) = shell(
        "dd if=/dev/zero of=/dev/null bs=200M count=2 status=none && echo fits",
        limits(),
    );
    assert_eq!(stdout(&ran.unwrap()), "fits\n");
}

/// A tool probing the kernel's rarely used interfaces, through Perl's
/// `syscall` (x86-64 numbers): each is as missing as on a kernel without
/// it (`ENOSYS`, 38), while what tools use works. Unfiltered (measured on
/// this machine), the kernel reaches most of them: `bpf` and
/// `io_uring_setup` fault on their null arguments (`EFAULT`), `keyctl`
/// reads a keyring, `personality` turns off address randomisation; packet
/// sockets and `userfaultfd` are refused for want of a capability
/// (`EPERM`). The x32 table is off on this kernel either way.
#[test]
fn a_tools_cpu_time_counts_every_process_it_started() {
    // Two processes of the shell's, at once, each burn a third of a
    // CPU-second (by their own clocks, so the figure does not depend on
    // the machine's speed).
    let burn = "perl -e '1 while (times)[0] < 0.34'";
    let (ran, _dir) = shell(&format!("{burn} & {burn}; wait"), limits());
    let ran = ran.unwrap();
    assert_exited_cleanly(&ran);
    // Where groups can be made, as here and in CI.
    let busy = ran.cpu_time.expect("the task's group counts its CPU time");
    assert!(
        busy >= Duration::from_millis(680),
        "{busy:?}: not every process counted"
    );
    let (idle, _dir) = shell("exit 0", limits());
    assert!(idle.unwrap().cpu_time.unwrap() < busy);
}

#[test]
fn a_tool_probing_the_kernel_finds_its_rare_interfaces_missing() {
    let probes = [
        ("bpf", "321, 0, 0, 16"),
        ("io_uring_setup", "425, 1, 0"),
        ("userfaultfd", "323, 0"),
        ("perf_event_open", "298, 0, 0, -1, -1, 0"),
        ("keyctl", "250, 0, -3, 0"),
        ("add_key", "248, 0, 0, 0, 0, 0"),
        ("ptrace", "101, 16, 1, 0, 0"),
        ("mount", "165, 0, 0, 0, 0, 0"),
        ("open_by_handle_at", "304, 0, 0, 0"),
        ("unshare", "272, 0x10000000"),
        ("kexec_load", "246, 0, 0, 0, 0"),
        ("shmget", "29, 0, 1048576, 01000"),
        ("getpid through x32", "0x40000027"),
        ("a packet socket", "41, 17, 3, 0"),
        ("a vsock socket", "41, 40, 1, 0"),
        ("a crypto socket", "41, 38, 5, 0"),
        ("personality without randomised addresses", "135, 0x0040000"),
        ("a Unix socket", "41, 1, 1, 0"),
        ("an IPv6 socket", "41, 10, 2, 0"),
        ("getpid", "39"),
        ("personality, asked", "135, 0xffffffff"),
    ];
    let calls: String = probes
        .iter()
        .map(|(name, args)| {
            format!(
                "$! = 0; $r = syscall({args}); print \"{name}: \", $r < 0 ? $!+0 : \"ok\", \"\\n\";"
            )
        })
        .collect();
    let (ran, _dir) = shell(&format!("/usr/bin/perl -e '{calls}'"), limits());
    let ran = ran.unwrap();
    assert_exited_cleanly(&ran);
    let out = stdout(&ran);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), probes.len(), "{out}");
    let (missing, present) = lines.split_at(probes.len() - 4);
    for line in missing {
        assert!(line.ends_with(": 38"), "reached: {line}\n{out}");
    }
    for line in present {
        assert!(line.ends_with(": ok"), "refused: {line}\n{out}");
    }
}

fn runtime() -> ToolRuntime {
    ensure_installed();
    ToolRuntime::new(ToolConfig::default()).expect("a tool runtime")
}

#[test]
fn installed_tools_are_declared_and_requests_match_whole_version_numbers() {
    let runtime = runtime();
    let ffmpeg = runtime
        .tools()
        .iter()
        .find(|t| t.name == "ffmpeg")
        .expect("ffmpeg is declared");
    assert!(ffmpeg.version.starts_with(|c: char| c.is_ascii_digit()));
    let mut binary = Vec::new();
    std::fs::File::open("/usr/bin/ffmpeg")
        .unwrap()
        .read_to_end(&mut binary)
        .unwrap();
    assert_eq!(ffmpeg.binary, ContentId::of(&binary));
    assert!(ffmpeg.isa.starts_with("x86-64-v") || !cfg!(target_arch = "x86_64"));

    let major = ffmpeg.version.split('.').next().unwrap();
    assert!(runtime.load(format!("ffmpeg@{major}").as_bytes()).is_ok());
    assert!(runtime.load(b"ffmpeg").is_ok());
    let wrong = runtime.load(b"ffmpeg@99").unwrap_err().to_string();
    assert!(
        wrong.contains("no ffmpeg@99") && wrong.contains("ffmpeg@"),
        "{wrong}"
    );
    for bad in [&b"ffmpeg@5.x"[..], b"../bin/sh", b"FFMPEG", b"", b"\xff"] {
        assert!(
            matches!(runtime.load(bad), Err(ExecError::UnknownTool(_))),
            "{:?} was accepted",
            String::from_utf8_lossy(bad)
        );
    }
}

/// Stand-ins for two GPUs' device nodes: character devices with
/// `/dev/null`'s numbers, made under `dir` (which needs root).
fn stand_in_gpus(dir: &Path) -> gpu::Gpus {
    let gpu = |minor: u32| {
        let node = dir.join(format!("stand-in-{minor}"));
        let path = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let made =
            unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
        gpu::Gpu {
            model: "stand-in".into(),
            memory_mib: 1024,
            bus: String::new(),
            minor,
            node,
        }
    };
    gpu::Gpus::new(vec![gpu(0), gpu(1)], Vec::new())
}

#[test]
fn a_task_lent_a_gpu_sees_that_gpus_node_and_no_other() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: making stand-in device nodes needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gpus = stand_in_gpus(dir.path());
    let _first = gpus.hold(1, Duration::ZERO).unwrap();
    let second = gpus.hold(1, Duration::ZERO).unwrap();
    let script = "test -c /dev/nvidia1 && echo lent; \
                  echo work > /dev/nvidia1 && echo writes; \
                  test -e /dev/nvidia0 || echo 'not the other'; \
                  ls /dev | grep -c nvidia";
    let (ran, _dir) = shell_with_devices(script, limits(), &second.nodes());
    let ran = ran.unwrap();
    assert!(
        ran.outcome.is_success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(stdout(&ran), "lent\nwrites\nnot the other\n1\n");
    // A task lent none sees none.
    let (ran, _dir) = shell_with_devices("ls /dev | grep -c nvidia", limits(), &[]);
    assert_eq!(stdout(&ran.unwrap()), "0\n");
}

#[test]
fn a_task_needing_a_gpu_on_a_machine_lending_none_is_no_result() {
    let runtime = runtime();
    assert!(runtime.gpus().all().is_empty(), "the default lends no GPU");
    let module = runtime.load(b"ffmpeg").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = vec!["-version".to_owned()];
    let ran = runtime.run(&Task {
        module,
        args: &args,
        seed: [0; 32],
        input_dir: None,
        output_dir: dir.path(),
        expected_outputs: &[],
        limits: Limits {
            gpus: 1,
            ..limits()
        },
    });
    // Running it on the CPU would make a result the job did not ask for.
    match ran {
        Err(ExecError::Gpu(why)) => assert!(why.contains("needs 1 GPU"), "{why}"),
        other => panic!("expected a GPU error, got {other:?}"),
    }
}

#[test]
fn a_probe_names_only_known_gpu_backends() {
    assert_eq!(
        parse_gpu_backends("Blender 3.4\ncairn-gpu OPTIX\ncairn-gpu CUDA\n"),
        Some("CUDA+OPTIX".into())
    );
    assert_eq!(parse_gpu_backends("cairn-gpu CUDA\n"), Some("CUDA".into()));
    assert_eq!(parse_gpu_backends("cairn-gpu METAL\nCUDA\n"), None);
    assert_eq!(parse_gpu_backends(""), None);
}

#[test]
fn versions_are_read_as_their_leading_numbers() {
    assert_eq!(
        parse_version(
            "ffmpeg version 5.1.9-0+deb12u1 Copyright (c)",
            "ffmpeg version "
        ),
        Some("5.1.9".into())
    );
    assert_eq!(
        parse_version("could not\nBlender 3.4.1\n", "Blender "),
        Some("3.4.1".into())
    );
    assert_eq!(parse_version("Blender x", "Blender "), None);
}

/// Encodes two seconds of ffmpeg's test picture with x264 into
/// `/output/out.mp4`, on `threads` threads.
fn encode(runtime: &ToolRuntime, threads: u32) -> TaskResult {
    let module = runtime.load(b"ffmpeg").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "-nostdin",
        "-hide_banner",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-threads",
        &threads.to_string(),
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "/output/out.mp4",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let expected = vec!["out.mp4".to_owned()];
    runtime
        .run(&Task {
            module,
            args: &args,
            seed: [0; 32],
            input_dir: None,
            output_dir: dir.path(),
            expected_outputs: &expected,
            limits: Limits {
                fuel: 76_800 * 60,
                ..limits()
            },
        })
        .unwrap()
}

#[test]
fn an_ffmpeg_encode_on_one_thread_is_the_same_bits_every_run() {
    let runtime = runtime();
    let first = encode(&runtime, 1);
    assert_eq!(
        first.outcome,
        Outcome::Exited(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.outputs.len(), 1);
    assert!(first.outputs[0].size_bytes > 1_000);
    // The work is what the job declared, whatever the machine took.
    assert_eq!(first.fuel_used, 76_800 * 60);
    // The log is kept but not compared: the digest binds empty streams.
    assert!(!first.stderr.is_empty(), "ffmpeg's log is kept");
    let second = encode(&runtime, 1);
    assert_eq!(first.digest, second.digest, "two runs gave other bits");
    assert_eq!(first.outputs, second.outputs);
}

/// Renders frame 5 of the Blender example (`examples/blender/scene.py`)
/// with Cycles on one thread.
fn render(runtime: &ToolRuntime) -> TaskResult {
    render_into(runtime, None, tempfile::tempdir().unwrap().path())
}

/// Renders frame 5 of the Blender example, or one tile of it, into `out`,
/// as the example's job file has Blender do it.
fn render_into(runtime: &ToolRuntime, tile: Option<Tile>, out: &Path) -> TaskResult {
    let module = runtime.load(b"blender@3").unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blender");
    let name = format!(
        "frame-0005{}.bmp",
        tile.map(Tile::suffix).unwrap_or_default()
    );
    let border = tile.map_or(WHOLE_BORDER.to_owned(), Tile::border);
    let args: Vec<String> = [
        "-b",
        "--factory-startup",
        "-noaudio",
        "--python-exit-code",
        "1",
        "-P",
        "/input/scene.py",
        "--",
        "5",
        &format!("/output/{name}"),
        &border,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let expected = vec![name];
    runtime
        .run(&Task {
            module,
            args: &args,
            seed: [0; 32],
            input_dir: Some(&example),
            output_dir: out,
            expected_outputs: &expected,
            limits: Limits {
                memory_bytes: 2 << 30,
                ..limits()
            },
        })
        .unwrap()
}

#[test]
fn a_blender_frame_rendered_in_tiles_joins_into_the_bits_of_the_frame_rendered_whole() {
    let runtime = runtime();
    let whole = tempfile::tempdir().unwrap();
    assert_eq!(
        render_into(&runtime, None, whole.path()).outcome,
        Outcome::Exited(0)
    );
    // Three columns of a 320-pixel frame: 106, 107 and 107 wide.
    let grid = Grid { cols: 3, rows: 2 };
    let tiled = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for tile in grid.tiles() {
        let result = render_into(&runtime, Some(tile), tiled.path());
        assert_eq!(result.outcome, Outcome::Exited(0), "tile {tile:?}");
        files.push(format!("frame-0005{}.bmp", tile.suffix()));
    }
    let joining = crate::tiles::join(tiled.path(), &files);
    assert!(joining.not_joined.is_empty(), "{:?}", joining.not_joined);
    assert_eq!(
        (joining.joined[0].width, joining.joined[0].height),
        (320, 180)
    );
    let read =
        |dir: &Path| Bitmap::decode(&std::fs::read(dir.join("frame-0005.bmp")).unwrap()).unwrap();
    let (expected, joined) = (read(whole.path()), read(tiled.path()));
    let differing = expected
        .pixels
        .iter()
        .zip(&joined.pixels)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} bytes differ",
        expected.pixels.len()
    );
}

#[test]
fn a_blender_frame_on_one_thread_is_the_same_bits_every_run() {
    let runtime = runtime();
    let blender = runtime
        .tools()
        .iter()
        .find(|t| t.name == "blender")
        .expect("blender is declared");
    assert!(blender.version.starts_with("3."), "{}", blender.version);
    let first = render(&runtime);
    assert_eq!(
        first.outcome,
        Outcome::Exited(0),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let frame = &first.outputs[0];
    // A 320 × 180 BMP: a 54-byte header and 24-bit rows.
    assert_eq!(frame.size_bytes, 54 + 320 * 180 * 3);
    // Blender's log (timings, memory) differs between runs; the result
    // does not.
    let second = render(&runtime);
    assert_eq!(first.digest, second.digest, "two renders gave other bits");
}

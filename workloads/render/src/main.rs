//! render: Render one frame or tile of a JSON scene to a PNG file.
//!
//! This is the guest program of Cairn's rendering workload, run under WASI
//! preview 1 where only `/input` is readable and `/output` writable. It is a
//! thin shell around the `cairn_render` library: parse arguments, read the
//! scene, render, write the PNG. Errors go to stderr as `render: <message>`
//! with exit code 2.

use std::process::ExitCode;

use cairn_render::{RenderOptions, Tile, encode_png, parse_scene, render};

const USAGE: &str = "usage: render --scene <path> --frame <n> --out <path.png> \
[--width W] [--height H] [--spp S] [--tile x,y,w,h]";

/// Scene files are small; refusing larger ones bounds the memory a hostile
/// input can make the guest use before validation.
const SCENE_BYTES_MAX: u64 = 4 * 1024 * 1024;

struct Args {
    scene: String,
    frame: u32,
    out: String,
    options: RenderOptions,
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("render: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<String, String> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(USAGE.to_string());
    };
    let size = std::fs::metadata(&args.scene)
        .map_err(|e| format!("cannot read scene '{}': {e}", args.scene))?
        .len();
    if size > SCENE_BYTES_MAX {
        return Err(format!(
            "scene '{}' is {size} bytes, more than the {SCENE_BYTES_MAX} allowed",
            args.scene
        ));
    }
    let json = std::fs::read_to_string(&args.scene)
        .map_err(|e| format!("cannot read scene '{}': {e}", args.scene))?;
    let scene = parse_scene(&json).map_err(|e| format!("{}: {e}", args.scene))?;
    let image = render(&scene, args.frame, &args.options)?;
    std::fs::write(&args.out, encode_png(&image))
        .map_err(|e| format!("cannot write '{}': {e}", args.out))?;

    let width = args.options.width.unwrap_or(scene.width());
    let height = args.options.height.unwrap_or(scene.height());
    let samples = args
        .options
        .samples_per_pixel
        .unwrap_or(scene.samples_per_pixel());
    let region = match args.options.tile {
        Some(t) => format!(
            "tile {},{},{},{} of {width}x{height}",
            t.x, t.y, t.width, t.height
        ),
        None => format!("{width}x{height}"),
    };
    Ok(format!(
        "rendered frame {} ({region}, {samples} spp) -> {}",
        args.frame, args.out
    ))
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut scene = None;
    let mut frame = None;
    let mut out = None;
    let mut options = RenderOptions::default();
    while let Some(flag) = raw.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| format!("option '{name}' needs a value\n{USAGE}"))
        };
        let duplicate = |name: &str| format!("option '{name}' given twice");
        match name.as_str() {
            "--scene" => set_once(&mut scene, value()?, duplicate(&name))?,
            "--out" => set_once(&mut out, value()?, duplicate(&name))?,
            "--frame" => set_once(&mut frame, number(&name, &value()?)?, duplicate(&name))?,
            "--width" => set_once(
                &mut options.width,
                number(&name, &value()?)?,
                duplicate(&name),
            )?,
            "--height" => set_once(
                &mut options.height,
                number(&name, &value()?)?,
                duplicate(&name),
            )?,
            "--spp" => set_once(
                &mut options.samples_per_pixel,
                number(&name, &value()?)?,
                duplicate(&name),
            )?,
            "--tile" => set_once(&mut options.tile, tile(&value()?)?, duplicate(&name))?,
            _ => return Err(format!("unknown argument '{flag}'\n{USAGE}")),
        }
    }
    let missing = |what: &str| format!("missing required option '--{what}'\n{USAGE}");
    Ok(Some(Args {
        scene: scene.ok_or_else(|| missing("scene"))?,
        frame: frame.ok_or_else(|| missing("frame"))?,
        out: out.ok_or_else(|| missing("out"))?,
        options,
    }))
}

fn set_once<T>(slot: &mut Option<T>, value: T, duplicate: String) -> Result<(), String> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

fn number(name: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("option '{name}' needs a non-negative integer, got '{value}'"))
}

fn tile(value: &str) -> Result<Tile, String> {
    let parts: Vec<&str> = value.split(',').collect();
    let [x, y, width, height] = parts.as_slice() else {
        return Err(format!("option '--tile' needs x,y,w,h, got '{value}'"));
    };
    Ok(Tile {
        x: number("--tile", x.trim())?,
        y: number("--tile", y.trim())?,
        width: number("--tile", width.trim())?,
        height: number("--tile", height.trim())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_option() {
        let args = parse(&[
            "--scene",
            "/input/s.json",
            "--frame=7",
            "--out",
            "/output/f.png",
            "--width",
            "64",
            "--height",
            "48",
            "--spp",
            "2",
            "--tile",
            "0,8,32,16",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (args.scene.as_str(), args.frame, args.out.as_str()),
            ("/input/s.json", 7, "/output/f.png")
        );
        assert_eq!(args.options.width, Some(64));
        assert_eq!(args.options.height, Some(48));
        assert_eq!(args.options.samples_per_pixel, Some(2));
        assert_eq!(
            args.options.tile,
            Some(Tile {
                x: 0,
                y: 8,
                width: 32,
                height: 16
            })
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        for (args, expected) in [
            (
                &["--scene", "s", "--frame", "1"][..],
                "missing required option '--out'",
            ),
            (&["--frame", "-1"][..], "non-negative integer, got '-1'"),
            (&["--tile", "1,2,3"][..], "x,y,w,h, got '1,2,3'"),
            (&["--colour", "red"][..], "unknown argument '--colour'"),
            (&["--frame", "1", "--frame", "2"][..], "given twice"),
            (&["--scene"][..], "needs a value"),
        ] {
            let error = parse(args).err().unwrap_or_default();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}

//! The render adversaries of [`Misbehave`](super::Misbehave): providers that rent out
//! Blender and cheat on frames the ways such a provider could save work or
//! spoil a rival's: with fewer samples than the scene asks, with another
//! frame than the one asked, or with a region painted over. Each delivers
//! what it made under a digest of its own, as a real cheat would, so only
//! another provider's render of the same frame tells it apart; on a task
//! that is no Blender render they are honest.

use std::path::Path;

use cairn_exec::tiles::Bitmap;
use cairn_wire::{ContentId, OutputFile};

use super::Misbehave;
use super::training::InputCopy;

/// The side of the square a region painter paints over, in pixels.
const PAINTED: u32 = 24;

/// One way of cheating on a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenderCheat {
    /// Renders with a quarter of the samples the job's script sets.
    Lazy,
    /// Renders the next frame and delivers it as the one asked for.
    OtherFrame,
    /// Paints over the top left corner of each frame it delivers.
    PaintedRegion,
}

impl RenderCheat {
    /// The cheat `misbehave` is, for a task of the tool `tool` (its name).
    pub(crate) fn new(misbehave: Option<Misbehave>, tool: &str) -> Option<Self> {
        if tool != "blender" {
            return None;
        }
        match misbehave? {
            Misbehave::LazyRenderer => Some(Self::Lazy),
            Misbehave::FrameSwapper => Some(Self::OtherFrame),
            Misbehave::RegionPainter => Some(Self::PaintedRegion),
            _ => None,
        }
    }

    /// Its own copy of `inputs`, made under `scratch` and edited, if it
    /// renders from one (the lazy renderer).
    pub(crate) fn inputs(
        self,
        inputs: Option<&Path>,
        scratch: &Path,
    ) -> std::io::Result<Option<InputCopy>> {
        match inputs {
            Some(dir) if self == Self::Lazy => {
                let copy = InputCopy::new(dir, scratch)?;
                self.edit_inputs(copy.path())?;
                Ok(Some(copy))
            }
            _ => Ok(None),
        }
    }

    /// The arguments it runs Blender with: for the frame swapper, the
    /// frame after the script's `--` one more.
    pub(crate) fn args(self, args: &[String]) -> Vec<String> {
        let mut args = args.to_vec();
        if self == Self::OtherFrame
            && let Some(at) = args.iter().position(|a| a == "--")
            && let Some(frame) = args.get_mut(at + 1)
            && let Ok(n) = frame.parse::<u64>()
        {
            *frame = (n + 1).to_string();
        }
        args
    }

    /// Edits its copy of the inputs: every script's `samples = N` to a
    /// quarter of N.
    fn edit_inputs(self, dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "py") {
                continue;
            }
            let script = std::fs::read_to_string(&path)?;
            let lazy: Vec<String> = script
                .lines()
                .map(|line| match line.split_once("samples = ") {
                    Some((head, n)) if head.ends_with("cycles.") => match n.trim().parse::<u32>() {
                        Ok(n) => format!("{head}samples = {}", (n / 4).max(1)),
                        Err(_) => line.to_owned(),
                    },
                    _ => line.to_owned(),
                })
                .collect();
            std::fs::write(&path, lazy.join("\n") + "\n")?;
        }
        Ok(())
    }

    /// After the run: the region painter paints over each BMP output in
    /// `dir` and lists it as it now is. Returns whether anything changed.
    pub(super) fn paint(self, dir: &Path, outputs: &mut [OutputFile]) -> std::io::Result<bool> {
        if self != Self::PaintedRegion {
            return Ok(false);
        }
        let mut painted = false;
        for output in outputs.iter_mut() {
            let path = dir.join(&output.path);
            let Ok(mut bitmap) = Bitmap::decode(&std::fs::read(&path)?) else {
                continue;
            };
            let bpp = usize::from(bitmap.bytes_per_pixel);
            let row = bitmap.width as usize * bpp;
            for y in 0..PAINTED.min(bitmap.height) as usize {
                let start = y * row;
                let end = start + PAINTED.min(bitmap.width) as usize * bpp;
                bitmap.pixels[start..end].fill(0xff);
            }
            let bytes = bitmap.encode();
            std::fs::write(&path, &bytes)?;
            output.id = ContentId::of(&bytes);
            output.size_bytes = bytes.len() as u64;
            painted = true;
        }
        Ok(painted)
    }
}

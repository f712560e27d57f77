//! Frames split into tiles, on the requester's side: once the results are
//! written, each frame whose tiles are all there is joined from them
//! (`cairn_exec::tiles`), beside them.

use std::path::Path;

use serde_json::{Value, json};

/// When `outputs` (every name written into `out`) hold tiles: joins each
/// frame's tiles into the frame, says what was joined and what was not
/// and why, and returns the same. Only the files named are read, and no
/// frame is written over one of them.
pub fn join<'a>(out: &Path, outputs: impl Iterator<Item = &'a str>) -> Option<Value> {
    let files: Vec<String> = outputs.map(str::to_owned).collect();
    if !files
        .iter()
        .any(|name| cairn_job::tiles::parse_tile_name(name).is_some())
    {
        return None;
    }
    let joining = cairn_exec::tiles::join(out, &files);
    for (frame, reason) in &joining.not_joined {
        eprintln!("cairn: warning: {frame} was not joined from its tiles: {reason}");
    }
    if let Some(first) = joining.joined.first() {
        eprintln!(
            "joined {} frames from {}x{} tiles each ({}x{}): {} …",
            joining.joined.len(),
            first.grid.cols,
            first.grid.rows,
            first.width,
            first.height,
            out.join(&first.frame).display()
        );
    }
    let joined: Vec<Value> = joining
        .joined
        .iter()
        .map(|j| {
            json!({
                "frame": j.frame,
                "tiles": format!("{}x{}", j.grid.cols, j.grid.rows),
                "width": j.width,
                "height": j.height,
            })
        })
        .collect();
    let not_joined: Vec<Value> = joining
        .not_joined
        .iter()
        .map(|(frame, reason)| json!({ "frame": frame, "reason": reason }))
        .collect();
    Some(json!({ "joined": joined, "not_joined": not_joined }))
}

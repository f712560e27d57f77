//! A frame's tiles joined into the frame, on the requester's side, once
//! the results are written (`cairn_job::tiles` names them).
//!
//! Tiles arrive as uncompressed BMP files, as Blender writes them: the one
//! format whose bytes are the pixels and nothing else, so that replicas
//! compare by digest (a PNG carries render times). A tile comes from a
//! provider, so its file is read against explicit limits, and the tiles of
//! a frame must fit together (one grid, one pixel format, every tile of a
//! column as wide, every tile of a row as tall) before anything is
//! written. One frame's bad tiles leave the other frames joined.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use cairn_job::tiles::{Grid, Tile, parse_tile_name};

/// The widest or tallest frame joined: a 16K frame.
pub const SIDE_MAX: u32 = 16_384;
/// The most pixels a joined frame has: 16K by 8K, 512 MiB at four bytes a
/// pixel, which the requester holds while it joins.
pub const PIXELS_MAX: u64 = 1 << 27;
/// BMP's file header and the smallest info header it has.
const FILE_HEADER: usize = 14;
const INFO_HEADER: usize = 40;
/// Enough of a BMP's first bytes to read its headers.
const HEADERS_MAX: usize = FILE_HEADER + INFO_HEADER;
/// Where a BMP's pixels may start at the latest: after the largest info
/// header and a colour table, not gigabytes into a file.
const DATA_AT_MAX: usize = FILE_HEADER + 124 + 1024;

/// A decoded uncompressed BMP: rows from the top, without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// 3 (blue, green, red) or 4 (and alpha).
    pub bytes_per_pixel: u8,
    /// `height` rows of `width * bytes_per_pixel` bytes, the top row first.
    pub pixels: Vec<u8>,
}

impl Bitmap {
    /// Reads an uncompressed 24- or 32-bit BMP (`BI_RGB`, any of the
    /// Windows info headers), refusing anything else with the reason.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let header = Header::read(bytes)?;
        let row = header.width as usize * usize::from(header.bytes_per_pixel);
        let stride = row.next_multiple_of(4);
        let data_end = stride
            .checked_mul(header.height as usize)
            .and_then(|size| size.checked_add(header.data_at));
        if data_end.is_none_or(|end| end > bytes.len()) {
            return Err(format!(
                "a {}x{} BMP of {} bytes does not hold its pixels",
                header.width,
                header.height,
                bytes.len()
            ));
        }
        let mut pixels = Vec::with_capacity(row * header.height as usize);
        for y in 0..header.height as usize {
            let from_top = if header.top_down {
                y
            } else {
                header.height as usize - 1 - y
            };
            let start = header.data_at + from_top * stride;
            pixels.extend_from_slice(&bytes[start..start + row]);
        }
        Ok(Self {
            width: header.width,
            height: header.height,
            bytes_per_pixel: header.bytes_per_pixel,
            pixels,
        })
    }

    /// Writes the bitmap as an uncompressed BMP, rows from the bottom as
    /// most readers expect, at 72 dots per inch.
    pub fn encode(&self) -> Vec<u8> {
        let row = self.width as usize * usize::from(self.bytes_per_pixel);
        let stride = row.next_multiple_of(4);
        let data = stride * self.height as usize;
        let size = FILE_HEADER + INFO_HEADER + data;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"BM");
        out.extend_from_slice(&(size as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&((FILE_HEADER + INFO_HEADER) as u32).to_le_bytes());
        out.extend_from_slice(&(INFO_HEADER as u32).to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&u16::from(self.bytes_per_pixel * 8).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(data as u32).to_le_bytes());
        for _ in 0..2 {
            out.extend_from_slice(&2835u32.to_le_bytes());
        }
        out.extend_from_slice(&[0; 8]);
        for y in (0..self.height as usize).rev() {
            out.extend_from_slice(&self.pixels[y * row..(y + 1) * row]);
            out.resize(out.len() + stride - row, 0);
        }
        out
    }

    /// The `width` × `height` rectangle whose top left pixel is (`x`, `y`).
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Option<Self> {
        if x.checked_add(width)? > self.width || y.checked_add(height)? > self.height {
            return None;
        }
        let bpp = usize::from(self.bytes_per_pixel);
        let row = self.width as usize * bpp;
        let mut pixels = Vec::with_capacity(width as usize * height as usize * bpp);
        for line in y as usize..(y + height) as usize {
            let start = line * row + x as usize * bpp;
            pixels.extend_from_slice(&self.pixels[start..start + width as usize * bpp]);
        }
        Some(Self {
            width,
            height,
            bytes_per_pixel: self.bytes_per_pixel,
            pixels,
        })
    }
}

/// What a BMP's headers say, checked: enough to size a frame before any
/// pixels are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    width: u32,
    height: u32,
    bytes_per_pixel: u8,
    top_down: bool,
    data_at: usize,
}

impl Header {
    /// The headers BMP's first bytes hold ([`HEADERS_MAX`] are enough).
    fn read(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < FILE_HEADER + INFO_HEADER || &bytes[..2] != b"BM" {
            return Err("not a BMP file".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"));
        let data_at = u32_at(10) as usize;
        let info = u32_at(14) as usize;
        if !matches!(info, 40 | 52 | 56 | 108 | 124) {
            return Err(format!(
                "a BMP info header of {info} bytes is not one this reads"
            ));
        }
        let width = u32_at(18) as i32;
        let height = u32_at(22) as i32;
        let (planes, bits, compression) = (u16_at(26), u16_at(28), u32_at(30));
        if planes != 1 || !(bits == 24 || bits == 32) || compression != 0 {
            return Err(format!(
                "a BMP of {bits} bits a pixel, compression {compression}: \
                 only uncompressed 24- or 32-bit BMP is read"
            ));
        }
        let (w, h) = (width.unsigned_abs(), height.unsigned_abs());
        if w == 0 || h == 0 || w > SIDE_MAX || h > SIDE_MAX {
            return Err(format!(
                "a {w}x{h} BMP: each side must be from 1 to {SIDE_MAX}"
            ));
        }
        if data_at < FILE_HEADER + info || data_at > DATA_AT_MAX {
            return Err(format!(
                "a {w}x{h} BMP whose pixels start at byte {data_at}: after its headers, \
                 and by byte {DATA_AT_MAX}"
            ));
        }
        Ok(Self {
            width: w,
            height: h,
            bytes_per_pixel: (bits / 8) as u8,
            top_down: height < 0,
            data_at,
        })
    }
}

/// A frame joined from its tiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The frame's file, beside its tiles.
    pub frame: String,
    /// Its grid.
    pub grid: Grid,
    /// Its size in pixels.
    pub width: u32,
    /// Its size in pixels.
    pub height: u32,
}

/// What joining found: the frames written, and each frame that was not
/// with the reason (tiles missing, tiles that do not fit together).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joining {
    /// Frames written.
    pub joined: Vec<Joined>,
    /// Frames not written, and why.
    pub not_joined: Vec<(String, String)>,
}

/// Joins the tiles among `files` (the names of every output written into
/// `folder`, tiles or not) into their frames, writing each frame whose
/// tiles are all there and fit together beside them. Only the files named
/// are read, not what an earlier download left in `folder`, and no frame
/// is written over one of them: another task's result, or a provider's
/// file named as this frame. Names must already have passed the output
/// path rule; each frame's name is checked by it again.
pub fn join(folder: &Path, files: &[String]) -> Joining {
    // Case-folded: on a file system that folds case, `F.bmp` is `f.bmp`.
    let named: BTreeSet<String> = files.iter().map(|f| f.to_lowercase()).collect();
    let mut frames: BTreeMap<String, Vec<(Tile, &str)>> = BTreeMap::new();
    for name in files {
        if let Some((frame, tile)) = parse_tile_name(name) {
            frames.entry(frame).or_default().push((tile, name));
        }
    }
    // Frames whose names fold to one file name: none of them is written.
    let mut folded: BTreeMap<String, u32> = BTreeMap::new();
    for frame in frames.keys() {
        *folded.entry(frame.to_lowercase()).or_default() += 1;
    }
    let mut joining = Joining::default();
    for (frame, tiles) in frames {
        let refused = if !frame.is_ascii() {
            // Case folding beyond ASCII differs between file systems.
            Some("a frame joined from tiles has an ASCII name")
        } else if folded[&frame.to_lowercase()] > 1 {
            Some("another frame's name differs from it only in case")
        } else if !frame.to_lowercase().ends_with(".bmp") {
            // What is joined is a BMP: a name of another kind (a playlist
            // the results' writer made, say) is not written over.
            Some("a frame joined from tiles is a BMP: its name must end in .bmp")
        } else if named.contains(&frame.to_lowercase()) {
            Some("a result has the frame's name; it is not overwritten")
        } else {
            None
        };
        if let Some(reason) = refused {
            joining.not_joined.push((frame, reason.into()));
            continue;
        }
        let written = cairn_job::output_path(folder, &frame).and_then(|path| {
            let (bitmap, grid) = read_and_join(folder, &tiles)?;
            std::fs::write(&path, bitmap.encode())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(Joined {
                frame: frame.clone(),
                grid,
                width: bitmap.width,
                height: bitmap.height,
            })
        });
        match written {
            Ok(joined) => joining.joined.push(joined),
            Err(reason) => joining.not_joined.push((frame, reason)),
        }
    }
    joining
}

/// One frame's tiles, checked to fit together by their headers, then read
/// one at a time into their places: what a frame holds is bounded before
/// any tile's pixels are read.
fn read_and_join(folder: &Path, tiles: &[(Tile, &str)]) -> Result<(Bitmap, Grid), String> {
    let grid = tiles[0].0.grid;
    if let Some((tile, name)) = tiles.iter().find(|(tile, _)| tile.grid != grid) {
        return Err(format!(
            "tiles of two grids ({}x{} and {}x{}, '{name}')",
            grid.cols, grid.rows, tile.grid.cols, tile.grid.rows
        ));
    }
    let mut at: BTreeMap<(u32, u32), &str> = BTreeMap::new();
    for (tile, name) in tiles {
        if at.insert((tile.row, tile.col), name).is_some() {
            return Err(format!("tile {}-{} twice", tile.col, tile.row));
        }
    }
    if at.len() != grid.count() as usize {
        return Err(format!(
            "{} of its {} tiles are here",
            at.len(),
            grid.count()
        ));
    }
    let mut headers: BTreeMap<(u32, u32), Header> = BTreeMap::new();
    for (&place, name) in &at {
        let mut first = Vec::with_capacity(HEADERS_MAX);
        std::fs::File::open(folder.join(name))
            .and_then(|file| file.take(HEADERS_MAX as u64).read_to_end(&mut first))
            .map_err(|e| format!("'{name}': {e}"))?;
        headers.insert(
            place,
            Header::read(&first).map_err(|e| format!("'{name}': {e}"))?,
        );
    }
    let bpp = headers[&(0, 0)].bytes_per_pixel;
    // Every tile of a column as wide as its top one, of a row as tall as
    // its left one: then the tiles fill a rectangle with no gap.
    let widths: Vec<u32> = (0..grid.cols).map(|c| headers[&(0, c)].width).collect();
    let heights: Vec<u32> = (0..grid.rows).map(|r| headers[&(r, 0)].height).collect();
    for (&(row, col), header) in &headers {
        let name = at[&(row, col)];
        if header.bytes_per_pixel != bpp {
            return Err(format!(
                "'{name}' has {} bits a pixel, its frame's first tile {}",
                header.bytes_per_pixel * 8,
                bpp * 8
            ));
        }
        if header.width != widths[col as usize] || header.height != heights[row as usize] {
            return Err(format!(
                "'{name}' is {}x{}; its column is {} wide and its row {} tall",
                header.width, header.height, widths[col as usize], heights[row as usize]
            ));
        }
    }
    let width: u64 = widths.iter().map(|&w| u64::from(w)).sum();
    let height: u64 = heights.iter().map(|&h| u64::from(h)).sum();
    if width > u64::from(SIDE_MAX) || height > u64::from(SIDE_MAX) || width * height > PIXELS_MAX {
        return Err(format!(
            "the tiles make a {width}x{height} frame; the largest joined is \
             {SIDE_MAX} a side and {PIXELS_MAX} pixels"
        ));
    }
    let (width, height) = (width as u32, height as u32);
    let bpp_bytes = usize::from(bpp);
    let frame_row = width as usize * bpp_bytes;
    let mut pixels = vec![0; frame_row * height as usize];
    let mut y0 = 0usize;
    for row in 0..grid.rows {
        let mut x0 = 0usize;
        for col in 0..grid.cols {
            let name = at[&(row, col)];
            // Its header was read: at most its pixels and a little more,
            // however large the file says it is.
            let header = headers[&(row, col)];
            let most = header.data_at as u64
                + (header.width as u64 * u64::from(bpp)).next_multiple_of(4) * header.height as u64;
            let mut bytes = Vec::new();
            std::fs::File::open(folder.join(name))
                .and_then(|file| file.take(most).read_to_end(&mut bytes))
                .map_err(|e| format!("'{name}': {e}"))?;
            let tile = Bitmap::decode(&bytes).map_err(|e| format!("'{name}': {e}"))?;
            if (tile.width, tile.height, tile.bytes_per_pixel) != (header.width, header.height, bpp)
            {
                return Err(format!("'{name}' changed while it was read"));
            }
            let tile_row = tile.width as usize * bpp_bytes;
            for y in 0..tile.height as usize {
                let to = (y0 + y) * frame_row + x0 * bpp_bytes;
                pixels[to..to + tile_row]
                    .copy_from_slice(&tile.pixels[y * tile_row..(y + 1) * tile_row]);
            }
            x0 += tile.width as usize;
        }
        y0 += heights[row as usize] as usize;
    }
    Ok((
        Bitmap {
            width,
            height,
            bytes_per_pixel: bpp,
            pixels,
        },
        grid,
    ))
}

#[cfg(test)]
mod tests;

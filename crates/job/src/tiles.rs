//! Frames split into tiles (`[tasks] tiles = "2x2"`): each task renders one
//! rectangle of its frame, and the requester joins a frame's tiles into the
//! frame when it writes the results.
//!
//! A tile is named in two places. Its output paths carry a suffix,
//! `frame-0001-tile-1-0-of-2x2.bmp`, which says where it goes and in which
//! grid, so that whoever writes a finished job's results (`cairn job
//! results` reads no job file) can join the tiles from their names alone.
//! Its arguments carry the rectangle as a renderer's border: fractions of
//! the frame, `x_min,x_max,y_min,y_max`, with y upwards as Blender counts.
//! Neighbouring tiles print their shared edge as the same number, so a
//! renderer that turns both into pixels the same way leaves no gap and no
//! overlap between them.

use std::ops::RangeInclusive;

/// Columns or rows a frame may be split into. Beyond 16 a tile's share of
/// the renderer's start-up (scene loading, BVH building) outweighs its
/// share of the frame.
pub const SPLIT_RANGE: RangeInclusive<u32> = 1..=16;

/// The most bytes `{border}` renders to: four fractions of at most 20
/// characters (`0.3333333333333333`) and three commas.
pub(crate) const BORDER_LEN_MAX: u64 = 4 * 20 + 3;
/// The most bytes `{tile}` renders to: `-tile-15-15-of-16x16`.
pub(crate) const SUFFIX_LEN_MAX: u64 = 20;

/// How a frame is split: `cols` × `rows` tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Tiles across.
    pub cols: u32,
    /// Tiles down.
    pub rows: u32,
}

impl Grid {
    /// Parses `"CxR"` (`"2x2"`, `"4x1"`), each between 1 and 16, and not
    /// both 1 (that is no split).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || format!("expected \"COLUMNSxROWS\" such as \"2x2\", got \"{text}\"");
        let (cols, rows) = text.trim().split_once(['x', 'X']).ok_or_else(expected)?;
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| expected());
        let grid = Grid {
            cols: number(cols)?,
            rows: number(rows)?,
        };
        for (what, n) in [("columns", grid.cols), ("rows", grid.rows)] {
            if !SPLIT_RANGE.contains(&n) {
                return Err(format!(
                    "{n} {what}: a frame splits into {} to {} {what}",
                    SPLIT_RANGE.start(),
                    SPLIT_RANGE.end()
                ));
            }
        }
        if grid.count() == 1 {
            return Err("\"1x1\" splits nothing: leave `tiles` out".into());
        }
        Ok(grid)
    }

    /// Tiles per frame.
    pub fn count(self) -> u32 {
        self.cols * self.rows
    }

    /// The grid's tiles, row by row from the top, each row left to right.
    pub fn tiles(self) -> impl Iterator<Item = Tile> {
        (0..self.rows).flat_map(move |row| {
            (0..self.cols).map(move |col| Tile {
                col,
                row,
                grid: self,
            })
        })
    }
}

/// One tile of a frame: column `col` from the left, row `row` from the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Column, from 0 at the left.
    pub col: u32,
    /// Row, from 0 at the top.
    pub row: u32,
    /// The grid it is a tile of.
    pub grid: Grid,
}

impl Tile {
    /// What `{tile}` renders to: `-tile-1-0-of-2x2`.
    pub fn suffix(self) -> String {
        format!(
            "-tile-{}-{}-of-{}x{}",
            self.col, self.row, self.grid.cols, self.grid.rows
        )
    }

    /// What `{border}` renders to: `x_min,x_max,y_min,y_max` as fractions
    /// of the frame, y upwards (Blender's `border_min_x` and so on).
    pub fn border(self) -> String {
        let (cols, rows) = (self.grid.cols, self.grid.rows);
        let x = (fraction(self.col, cols), fraction(self.col + 1, cols));
        // Row 0 is the top, where y is largest.
        let y = (
            fraction(rows - self.row - 1, rows),
            fraction(rows - self.row, rows),
        );
        format!("{},{},{},{}", x.0, x.1, y.0, y.1)
    }
}

/// What `{border}` renders to in a task that is a whole frame.
pub const WHOLE_BORDER: &str = "0,1,0,1";

/// `n / of` printed the shortest way that reads back as the same number,
/// so both tiles that share an edge print it alike.
fn fraction(n: u32, of: u32) -> String {
    (f64::from(n) / f64::from(of)).to_string()
}

/// A tile's output name taken apart: the name of the frame it belongs to
/// and where in it it goes. `None` for a name without a tile suffix (or
/// with one that names no tile of a valid grid) before its extension.
pub fn parse_tile_name(name: &str) -> Option<(String, Tile)> {
    let file_start = name.rfind('/').map_or(0, |slash| slash + 1);
    let extension = name[file_start..]
        .rfind('.')
        .map_or(name.len(), |dot| file_start + dot);
    let (stem, ext) = name.split_at(extension);
    let at = stem.rfind("-tile-")?;
    let (frame_stem, suffix) = stem.split_at(at);
    let rest = &suffix["-tile-".len()..];
    let (place, grid) = rest.split_once("-of-")?;
    let (col, row) = place.split_once('-')?;
    let (cols, rows) = grid.split_once('x')?;
    let number = |s: &str| -> Option<u32> {
        // Only what `suffix` prints: digits, no sign, no leading zeros.
        let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let canonical = s == "0" || !s.starts_with('0');
        if plain && canonical {
            s.parse().ok()
        } else {
            None
        }
    };
    let grid = Grid {
        cols: number(cols)?,
        rows: number(rows)?,
    };
    if !SPLIT_RANGE.contains(&grid.cols) || !SPLIT_RANGE.contains(&grid.rows) || grid.count() == 1 {
        return None;
    }
    let tile = Tile {
        col: number(col)?,
        row: number(row)?,
        grid,
    };
    if tile.col >= grid.cols
        || tile.row >= grid.rows
        || frame_stem.is_empty()
        || frame_stem.ends_with('/')
    {
        return None;
    }
    Some((format!("{frame_stem}{ext}"), tile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_and_refuse_what_splits_nothing_or_too_much() {
        assert_eq!(Grid::parse("3x2"), Ok(Grid { cols: 3, rows: 2 }));
        assert_eq!(Grid::parse(" 4X1 "), Ok(Grid { cols: 4, rows: 1 }));
        for bad in [
            "1x1", "0x2", "17x1", "2", "2x", "x2", "-1x2", "2x2x2", "twoxtwo",
        ] {
            assert!(Grid::parse(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn a_grid_covers_its_frame_edge_to_edge() {
        let grid = Grid { cols: 3, rows: 2 };
        let tiles: Vec<Tile> = grid.tiles().collect();
        assert_eq!(tiles.len(), 6);
        assert_eq!(tiles[0].border(), "0,0.3333333333333333,0.5,1");
        assert_eq!(tiles[5].border(), "0.6666666666666666,1,0,0.5");
        // Each tile's right edge is its right neighbour's left edge, and
        // each row's bottom edge the next row's top, printed alike.
        let edges = |t: Tile| -> Vec<String> { t.border().split(',').map(str::to_owned).collect() };
        for t in &tiles {
            let e = edges(*t);
            if t.col + 1 < grid.cols {
                let right = tiles[(t.row * grid.cols + t.col + 1) as usize];
                assert_eq!(e[1], edges(right)[0]);
            }
            if t.row + 1 < grid.rows {
                let below = tiles[((t.row + 1) * grid.cols + t.col) as usize];
                assert_eq!(e[2], edges(below)[3]);
            }
        }
    }

    #[test]
    fn a_tile_name_reads_back_as_its_frame_and_place() {
        let tile = Tile {
            col: 1,
            row: 0,
            grid: Grid { cols: 2, rows: 2 },
        };
        let name = format!("shots/frame-0001{}.bmp", tile.suffix());
        assert_eq!(name, "shots/frame-0001-tile-1-0-of-2x2.bmp");
        assert_eq!(
            parse_tile_name(&name),
            Some(("shots/frame-0001.bmp".into(), tile))
        );
        assert_eq!(
            parse_tile_name("f-tile-0-1-of-1x2"),
            Some((
                "f".into(),
                Tile {
                    col: 0,
                    row: 1,
                    grid: Grid { cols: 1, rows: 2 }
                }
            ))
        );
        for not_a_tile in [
            "frame-0001.bmp",
            "frame-tile-2-0-of-2x2.bmp",  // column outside its grid
            "frame-tile-0-0-of-1x1.bmp",  // no split
            "frame-tile-0-0-of-17x1.bmp", // too many columns
            "frame-tile-01-0-of-2x2.bmp", // not as `suffix` prints it
            "frame-tile-+1-0-of-2x2.bmp",
            "-tile-0-0-of-2x2.bmp", // no frame name
            "shots/-tile-0-0-of-2x2.bmp",
            "frame-tile-0-0-of-2x2.d/x.bmp",
        ] {
            assert_eq!(parse_tile_name(not_a_tile), None, "{not_a_tile}");
        }
    }
}

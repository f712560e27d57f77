use super::*;

/// A frame's tiles, each with its place.
type Cut = Vec<(Tile, Bitmap)>;

/// A frame whose every byte says where it is, so a tile put in the wrong
/// place, or one row off, shows.
fn frame(width: u32, height: u32, bytes_per_pixel: u8) -> Bitmap {
    let pixels = (0..width * height * u32::from(bytes_per_pixel))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    Bitmap {
        width,
        height,
        bytes_per_pixel,
        pixels,
    }
}

/// Cuts `frame` as a renderer's border would: column edges at
/// `floor(c / cols * width)`.
fn cut(frame: &Bitmap, grid: Grid) -> Cut {
    let edge = |i: u32, of: u32, side: u32| (u64::from(i) * u64::from(side) / u64::from(of)) as u32;
    grid.tiles()
        .map(|tile| {
            let (x0, x1) = (
                edge(tile.col, grid.cols, frame.width),
                edge(tile.col + 1, grid.cols, frame.width),
            );
            let (y0, y1) = (
                edge(tile.row, grid.rows, frame.height),
                edge(tile.row + 1, grid.rows, frame.height),
            );
            (tile, frame.crop(x0, y0, x1 - x0, y1 - y0).unwrap())
        })
        .collect()
}

fn write_tiles(folder: &Path, stem: &str, tiles: &[(Tile, Bitmap)]) -> Vec<String> {
    tiles
        .iter()
        .map(|(tile, bitmap)| {
            let name = format!("{stem}{}.bmp", tile.suffix());
            std::fs::write(folder.join(&name), bitmap.encode()).unwrap();
            name
        })
        .collect()
}

#[test]
fn a_bitmap_reads_back_as_written_and_bottom_up_or_top_down_alike() {
    for bpp in [3, 4] {
        let image = frame(7, 5, bpp);
        let bytes = image.encode();
        assert_eq!(Bitmap::decode(&bytes).unwrap(), image);
        // The same pixels stored from the top (a negative height).
        let row = 7 * usize::from(bpp);
        let stride = row.next_multiple_of(4);
        let mut top_down = bytes[..54].to_vec();
        top_down[22..26].copy_from_slice(&(-5i32).to_le_bytes());
        for y in 0..5 {
            top_down.extend_from_slice(&image.pixels[y * row..(y + 1) * row]);
            top_down.resize(top_down.len() + stride - row, 0);
        }
        assert_eq!(Bitmap::decode(&top_down).unwrap(), image);
    }
}

#[test]
fn a_bitmap_that_lies_about_itself_is_refused() {
    let good = frame(4, 4, 3).encode();
    let with = |at: usize, value: &[u8]| {
        let mut bytes = good.clone();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    let cases: [(&str, Vec<u8>); 8] = [
        ("not a BMP", b"PK\x03\x04".repeat(20)),
        ("does not hold its pixels", good[..good.len() - 1].to_vec()),
        ("each side", with(18, &(SIDE_MAX + 1).to_le_bytes())),
        ("each side", with(22, &i32::MIN.to_le_bytes())),
        ("each side", with(18, &0u32.to_le_bytes())),
        ("only uncompressed", with(30, &1u32.to_le_bytes())),
        ("only uncompressed", with(28, &8u16.to_le_bytes())),
        ("and by byte", with(10, &u32::MAX.to_le_bytes())),
    ];
    for (reason, bytes) in cases {
        let error = Bitmap::decode(&bytes).unwrap_err();
        assert!(error.contains(reason), "{error} (expected '{reason}')");
    }
    assert!(Bitmap::decode(&[]).is_err());
}

#[test]
fn tiles_cut_from_a_frame_join_into_that_frame() {
    let folder = tempfile::tempdir().unwrap();
    // Sides that the grid does not divide, so tiles differ in size.
    let whole = frame(101, 37, 3);
    let grid = Grid { cols: 3, rows: 2 };
    let files = write_tiles(folder.path(), "frame-0007", &cut(&whole, grid));
    let joining = join(folder.path(), &files);
    assert_eq!(
        joining.joined,
        [Joined {
            frame: "frame-0007.bmp".into(),
            grid,
            width: 101,
            height: 37
        }]
    );
    assert!(joining.not_joined.is_empty());
    let written = std::fs::read(folder.path().join("frame-0007.bmp")).unwrap();
    assert_eq!(written, whole.encode());
}

#[test]
fn tiles_that_do_not_fit_together_are_named_and_their_frame_not_written() {
    let folder = tempfile::tempdir().unwrap();
    let whole = frame(40, 20, 3);
    let grid = Grid { cols: 2, rows: 2 };
    let mut files = Vec::new();
    // Each frame gets one kind of bad tile; frame 9 is honest.
    let mut bad = |stem: &str, spoil: &dyn Fn(&mut Cut)| {
        let mut tiles = cut(&whole, grid);
        spoil(&mut tiles);
        files.extend(write_tiles(folder.path(), stem, &tiles));
    };
    // A tile shaver: one tile a column narrower than its column.
    bad("shaved", &|tiles| {
        tiles[3].1 = tiles[3].1.crop(0, 0, 19, 10).unwrap()
    });
    // A tile of another pixel format.
    bad("deep", &|tiles| tiles[1].1 = frame(20, 10, 4));
    // A tile that says it belongs to another grid.
    bad("regridded", &|tiles| {
        tiles[1].0.grid = Grid { cols: 4, rows: 1 };
    });
    // A tile missing.
    bad("short", &|tiles| {
        tiles.pop();
    });
    bad("frame-0009", &|_| {});
    // A tile that is no image at all.
    let mut tiles = cut(&whole, grid);
    let junk = format!("junk{}.bmp", tiles[0].0.suffix());
    tiles.remove(0);
    files.extend(write_tiles(folder.path(), "junk", &tiles));
    std::fs::write(folder.path().join(&junk), b"#!/bin/sh\n").unwrap();
    files.push(junk);
    // Tiles whose headers add up to a frame wider than any joined: refused
    // before any pixels are read (these files hold none).
    for tile in (Grid { cols: 2, rows: 1 }).tiles() {
        let name = format!("huge{}.bmp", tile.suffix());
        let mut header = frame(1, 1, 3).encode()[..54].to_vec();
        header[18..22].copy_from_slice(&SIDE_MAX.to_le_bytes());
        std::fs::write(folder.path().join(&name), header).unwrap();
        files.push(name);
    }
    // A frame whose name is a folder here: it cannot be written, and the
    // frames after it still are.
    std::fs::create_dir(folder.path().join("a-folder.bmp")).unwrap();
    files.extend(write_tiles(folder.path(), "a-folder", &cut(&whole, grid)));
    files.extend(write_tiles(folder.path(), "zz-last", &cut(&whole, grid)));
    // Tiles of a name that is not a BMP's (a playlist the results' writer
    // made), and of a result's name in other case.
    for name in write_tiles(folder.path(), "master", &cut(&whole, grid)) {
        let renamed = name.replace(".bmp", ".m3u8");
        std::fs::rename(folder.path().join(&name), folder.path().join(&renamed)).unwrap();
        files.push(renamed);
    }
    files.extend(write_tiles(folder.path(), "RESULT", &cut(&whole, grid)));
    std::fs::write(folder.path().join("result.bmp"), b"a result").unwrap();
    files.push("result.bmp".into());
    // Two frames whose names differ only in case.
    files.extend(write_tiles(folder.path(), "dup", &cut(&whole, grid)));
    files.extend(write_tiles(folder.path(), "DUP", &cut(&whole, grid)));
    // A result passed off under a frame's own name, beside its tiles.
    files.extend(write_tiles(folder.path(), "claimed", &cut(&whole, grid)));
    std::fs::write(folder.path().join("claimed.bmp"), b"not mine").unwrap();
    files.push("claimed.bmp".into());

    let joining = join(folder.path(), &files);
    let joined: Vec<&str> = joining.joined.iter().map(|j| j.frame.as_str()).collect();
    assert_eq!(joined, ["frame-0009.bmp", "zz-last.bmp"]);
    let reasons: BTreeMap<&str, &str> = joining
        .not_joined
        .iter()
        .map(|(frame, reason)| (frame.as_str(), reason.as_str()))
        .collect();
    let expected = [
        ("a-folder.bmp", "writing"),
        ("huge.bmp", "the tiles make a 32768x1 frame"),
        ("claimed.bmp", "not overwritten"),
        ("RESULT.bmp", "not overwritten"),
        ("dup.bmp", "only in case"),
        ("DUP.bmp", "only in case"),
        ("master.m3u8", "must end in .bmp"),
        ("deep.bmp", "32 bits a pixel"),
        ("junk.bmp", "not a BMP"),
        ("regridded.bmp", "two grids"),
        ("shaved.bmp", "is 19x10; its column is 20 wide"),
        ("short.bmp", "3 of its 4 tiles"),
    ];
    assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
    for (frame, reason) in expected {
        assert!(
            reasons[frame].contains(reason),
            "{frame}: {}",
            reasons[frame]
        );
        if !["claimed.bmp", "a-folder.bmp", "RESULT.bmp"].contains(&frame) {
            assert!(!folder.path().join(frame).exists(), "{frame} was written");
        }
    }
    assert_eq!(
        std::fs::read(folder.path().join("claimed.bmp")).unwrap(),
        b"not mine"
    );
}

#[test]
fn only_the_files_named_are_joined() {
    let folder = tempfile::tempdir().unwrap();
    let grid = Grid { cols: 2, rows: 1 };
    let mut files = write_tiles(folder.path(), "f", &cut(&frame(8, 2, 3), grid));
    // An earlier download's tile of the same frame stays out of it.
    files.pop();
    let joining = join(folder.path(), &files);
    assert!(joining.joined.is_empty());
    assert_eq!(joining.not_joined[0].1, "1 of its 2 tiles are here");
    assert!(join(folder.path(), &[]).joined.is_empty());
}

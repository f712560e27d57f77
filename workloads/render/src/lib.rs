//! render: A deterministic path tracer that renders one frame or tile of a JSON scene to PNG.
//!
//! This is Cairn's rendering workload. The `render` binary built from this
//! crate runs as a WebAssembly guest on providers' machines; the same library
//! also runs natively so benchmarks can compare the two. Because providers'
//! results are verified by comparing digests, the output is a pure function
//! of (scene, frame, options): there are no threads, clocks or host
//! randomness, every pixel draws from its own generator seeded by
//! (seed, frame, x, y), and the maths uses only correctly rounded operations
//! (see `math.rs`), so tiles rendered anywhere assemble into exactly the full
//! frame, and native and Wasm builds agree bit for bit.
//!
//! The tracer handles spheres, infinite planes, parallelograms ("quads") and
//! axis-aligned boxes with Lambertian (solid or checker), metal, glass and
//! emissive materials. It spends its samples where they show:
//!
//! - diffuse surfaces sample every light directly (next-event estimation),
//!   so area and sphere lights give soft, low-noise shadows;
//! - sample positions come from a per-pixel scrambled Sobol sequence, which
//!   stratifies anti-aliasing, depth of field and light sampling;
//! - the first glass surfaces a camera ray meets are followed both ways
//!   (reflection and refraction), and shadow rays pass through glass with
//!   Fresnel loss, so glass neither sparkles nor casts black shadows;
//! - checker textures are filtered over the pixel's footprint, so the
//!   distant ground does not shimmer;
//! - radiance picked up after the first bounce is capped, trading a little
//!   bias in rare caustic paths for the absence of fireflies.
//!
//! Paths end at the maximum depth or by Russian roulette; the result is tone
//! mapped (ACES) and encoded as 8-bit sRGB.
//!
//! # Scene file
//!
//! A JSON object; unknown fields anywhere are errors. The world is Y-up.
//! Colours (linear RGB) and vectors are arrays of three numbers; coordinates
//! and lengths must lie within ±1e5, reflectances (`albedo`, `even`, `odd`,
//! `tint`) within [0, 1].
//!
//! - `seed` (optional, default 0): varies the noise pattern.
//! - `width`, `height`: image size in pixels, 1 to 8192.
//! - `samples_per_pixel`: 1 to 65536 jittered samples per pixel.
//! - `max_depth`: most surface interactions per path, 1 to 64.
//! - `exposure` (optional, default 1): linear scale before tone mapping,
//!   above 0 and at most 1000.
//! - `sky`: `zenith` and `horizon` colours of the background gradient, and
//!   optionally `ground`, the colour seen below the horizon (default:
//!   `horizon`). The sky also lights the scene.
//! - `camera`: `position`, `look_at`, `up` (default `[0, 1, 0]`),
//!   `vfov_degrees` (vertical field of view, between 0 and 180 exclusive),
//!   optional `aperture` (lens diameter, 0 = pinhole) and `focus_distance`
//!   (default: the distance to `look_at`), and optional `orbit`:
//!   `{ "center": [x, y, z], "degrees_per_frame": d, "start_degrees": s }`
//!   turns the camera by `s + d·frame` degrees about the vertical axis
//!   through `center` (`d` and `s` within ±360; `s` defaults to 0).
//! - `materials`: at most 256 objects, each with a unique `name` (1 to 64
//!   bytes) and a `type`:
//!   - `"lambertian"` with either `albedo` (a colour) or `checker`
//!     (`{ "even": colour, "odd": colour, "size": cell edge length }`);
//!   - `"metal"` with `albedo` and optional `fuzz` (0 = mirror, up to 1);
//!   - `"dielectric"` (glass) with `ior` (index of refraction, e.g. 1.5;
//!     0.1 to 10) and optional `tint` (default white);
//!   - `"emissive"` with `color` and optional `intensity` (default 1).
//! - `objects`: at most 1024 objects, each with a `type`, a `material` name
//!   and a shape:
//!   - `"sphere"`: `center`, `radius`;
//!   - `"plane"`: `point`, `normal` (infinite);
//!   - `"quad"`: `corner`, `u`, `v`: the parallelogram
//!     `corner + a·u + b·v`, `a, b ∈ [0, 1]` (lights emit from both faces);
//!   - `"box"`: `min`, `max` corners of an axis-aligned box.
//!
//!   Emissive materials are allowed on spheres and quads only, on at most
//!   64 objects.
//!
//! # Example
//!
//! ```
//! use cairn_render::{RenderOptions, encode_png, parse_scene, render};
//!
//! let scene = parse_scene(r#"{
//!     "width": 16, "height": 12, "samples_per_pixel": 2, "max_depth": 4,
//!     "sky": { "zenith": [0.3, 0.5, 0.9], "horizon": [0.9, 0.9, 1.0] },
//!     "camera": { "position": [0, 1, 5], "look_at": [0, 0.5, 0], "vfov_degrees": 40,
//!                 "orbit": { "center": [0, 0, 0], "degrees_per_frame": 15 } },
//!     "materials": [
//!         { "name": "floor", "type": "lambertian",
//!           "checker": { "even": [0.8, 0.8, 0.8], "odd": [0.2, 0.2, 0.2], "size": 1 } },
//!         { "name": "lamp", "type": "emissive", "color": [1, 0.9, 0.8], "intensity": 8 }
//!     ],
//!     "objects": [
//!         { "type": "plane", "point": [0, 0, 0], "normal": [0, 1, 0], "material": "floor" },
//!         { "type": "sphere", "center": [0, 3, 0], "radius": 0.5, "material": "lamp" }
//!     ]
//! }"#)?;
//! let image = render(&scene, 3, &RenderOptions::default())?;
//! assert_eq!((image.width, image.height, image.rgb.len()), (16, 12, 16 * 12 * 3));
//! assert!(encode_png(&image).starts_with(b"\x89PNG"));
//! # Ok::<(), String>(())
//! ```

#![deny(missing_docs)]

mod math;
mod rng;
mod scene;
mod trace;

pub use scene::{
    COORDINATE_MAX, DEPTH_MAX, EMISSION_MAX, LIGHTS_MAX, MATERIALS_MAX, NAME_LENGTH_MAX,
    OBJECTS_MAX, SAMPLES_PER_PIXEL_MAX, SIZE_MAX_PX, Scene,
};

use scene::check_size;
use trace::World;

/// Parses a scene from JSON and validates it.
///
/// Errors name the offending field or material, e.g. ``unknown field
/// `colour` `` or `object 2 (sphere): unknown material 'glas'`.
pub fn parse_scene(json: &str) -> Result<Scene, String> {
    let scene: Scene = serde_json::from_str(json).map_err(|e| format!("invalid scene: {e}"))?;
    scene
        .validate()
        .map_err(|e| format!("invalid scene: {e}"))?;
    Ok(scene)
}

/// Overrides of the scene's own settings for one render.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// Full-frame width in pixels, replacing the scene's.
    pub width: Option<u32>,
    /// Full-frame height in pixels, replacing the scene's.
    pub height: Option<u32>,
    /// Samples per pixel, replacing the scene's.
    pub samples_per_pixel: Option<u32>,
    /// Render only this rectangle of the full frame. Pixels are the same as
    /// in a full render, so tiles assemble into the full frame exactly.
    pub tile: Option<Tile>,
}

/// A rectangle of the full frame, in pixels from its top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width; must be positive.
    pub width: u32,
    /// Height; must be positive.
    pub height: u32,
}

/// An 8-bit sRGB image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB bytes, three per pixel, top row first.
    pub rgb: Vec<u8>,
}

/// Renders `frame` of `scene` (the frame number drives the camera orbit).
///
/// Returns the whole frame, or only `options.tile` of it. Fails if the scene
/// or an override is invalid or the tile does not lie inside the frame.
pub fn render(scene: &Scene, frame: u32, options: &RenderOptions) -> Result<Image, String> {
    // Scenes may be built by deserializing directly, which skips validation.
    scene
        .validate()
        .map_err(|e| format!("invalid scene: {e}"))?;
    let width = options.width.unwrap_or(scene.width);
    let height = options.height.unwrap_or(scene.height);
    let samples = options.samples_per_pixel.unwrap_or(scene.samples_per_pixel);
    check_size("width", width, SIZE_MAX_PX)?;
    check_size("height", height, SIZE_MAX_PX)?;
    check_size("samples per pixel", samples, SAMPLES_PER_PIXEL_MAX)?;
    let tile = options.tile.unwrap_or(Tile {
        x: 0,
        y: 0,
        width,
        height,
    });
    let fits = |start: u32, extent: u32, full: u32| {
        extent > 0 && u64::from(start) + u64::from(extent) <= u64::from(full)
    };
    if !fits(tile.x, tile.width, width) || !fits(tile.y, tile.height, height) {
        return Err(format!(
            "tile {},{},{},{} is empty or not inside the {width}x{height} frame",
            tile.x, tile.y, tile.width, tile.height
        ));
    }

    let world = World::new(scene, frame, width, height);
    let mut rgb = Vec::with_capacity(tile.width as usize * tile.height as usize * 3);
    for y in tile.y..tile.y + tile.height {
        for x in tile.x..tile.x + tile.width {
            rgb.extend_from_slice(&world.pixel(x, y, samples, width, height));
        }
    }
    Ok(Image {
        width: tile.width,
        height: tile.height,
        rgb,
    })
}

/// Encodes an image as an 8-bit RGB PNG.
///
/// # Panics
///
/// If `image.rgb` does not hold exactly `width × height × 3` bytes or a
/// dimension is zero: images made by [`render`] always satisfy both.
pub fn encode_png(image: &Image) -> Vec<u8> {
    assert!(
        image.width > 0
            && image.height > 0
            && image.rgb.len() == image.width as usize * image.height as usize * 3,
        "image buffer does not match its {}x{} size",
        image.width,
        image.height
    );
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing into memory cannot fail, and the header matches the data.
    let mut writer = encoder.write_header().expect("PNG header into memory");
    writer
        .write_image_data(&image.rgb)
        .expect("PNG data into memory");
    writer.finish().expect("PNG end into memory");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small scene using every shape and material, so tests exercise all
    /// of the tracer.
    const SCENE: &str = r#"{
        "seed": 7,
        "width": 32, "height": 24, "samples_per_pixel": 4, "max_depth": 6,
        "sky": { "zenith": [0.2, 0.3, 0.6], "horizon": [0.7, 0.7, 0.8] },
        "camera": { "position": [0, 1.5, 6], "look_at": [0, 0.7, 0], "vfov_degrees": 40,
                    "aperture": 0.05,
                    "orbit": { "center": [0, 0, 0], "degrees_per_frame": 15 } },
        "materials": [
            { "name": "floor", "type": "lambertian",
              "checker": { "even": [0.9, 0.9, 0.9], "odd": [0.1, 0.1, 0.1], "size": 0.5 } },
            { "name": "red", "type": "lambertian", "albedo": [0.8, 0.1, 0.1] },
            { "name": "gold", "type": "metal", "albedo": [0.9, 0.7, 0.3], "fuzz": 0.1 },
            { "name": "glass", "type": "dielectric", "ior": 1.5 },
            { "name": "lamp", "type": "emissive", "color": [1, 0.9, 0.8], "intensity": 6 }
        ],
        "objects": [
            { "type": "plane", "point": [0, 0, 0], "normal": [0, 1, 0], "material": "floor" },
            { "type": "sphere", "center": [-1.2, 0.6, 0], "radius": 0.6, "material": "red" },
            { "type": "sphere", "center": [0, 0.6, 0.5], "radius": 0.6, "material": "glass" },
            { "type": "box", "min": [0.8, 0, -0.5], "max": [1.8, 1, 0.5], "material": "gold" },
            { "type": "quad", "corner": [-1, 3, -1], "u": [2, 0, 0], "v": [0, 0, 2],
              "material": "lamp" },
            { "type": "sphere", "center": [2, 2, 2], "radius": 0.3, "material": "lamp" }
        ]
    }"#;

    fn scene() -> Scene {
        parse_scene(SCENE).expect("test scene is valid")
    }

    fn render_default(frame: u32, tile: Option<Tile>) -> Image {
        let options = RenderOptions {
            tile,
            ..RenderOptions::default()
        };
        render(&scene(), frame, &options).expect("render succeeds")
    }

    #[test]
    fn same_frame_renders_identically() {
        let first = render_default(3, None);
        let second = render_default(3, None);
        assert_eq!(first, second);
        // Guard against a trivially constant image passing the test.
        assert!(first.rgb.iter().any(|&b| b != first.rgb[0]));
    }

    #[test]
    fn tiles_assemble_into_the_full_frame() {
        let full = render_default(5, None);
        // An uneven split, so tile offsets are exercised on both axes.
        let (split_x, split_y) = (13, 10);
        let mut assembled = vec![0u8; full.rgb.len()];
        for (x, width) in [(0, split_x), (split_x, 32 - split_x)] {
            for (y, height) in [(0, split_y), (split_y, 24 - split_y)] {
                let tile = Tile {
                    x,
                    y,
                    width,
                    height,
                };
                let image = render_default(5, Some(tile));
                assert_eq!((image.width, image.height), (width, height));
                for row in 0..height {
                    let source = (row * width * 3) as usize;
                    let target = (((y + row) * 32 + x) * 3) as usize;
                    let len = (width * 3) as usize;
                    assembled[target..target + len]
                        .copy_from_slice(&image.rgb[source..source + len]);
                }
            }
        }
        assert!(
            assembled == full.rgb,
            "assembled tiles differ from the full frame"
        );
    }

    #[test]
    fn camera_orbit_changes_frames() {
        assert_ne!(render_default(0, None).rgb, render_default(10, None).rgb);
    }

    #[test]
    fn overrides_change_size_and_samples() {
        let options = RenderOptions {
            width: Some(20),
            height: Some(10),
            samples_per_pixel: Some(1),
            tile: None,
        };
        let image = render(&scene(), 0, &options).unwrap();
        assert_eq!((image.width, image.height, image.rgb.len()), (20, 10, 600));
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let json = SCENE.replace("\"fuzz\": 0.1", "\"fuzz\": 0.1, \"shininess\": 3");
        let error = parse_scene(&json).unwrap_err();
        assert!(error.contains("unknown field `shininess`"), "{error}");

        let json = SCENE.replace("\"max_depth\": 6", "\"max_depth\": 6, \"fps\": 24");
        let error = parse_scene(&json).unwrap_err();
        assert!(error.contains("unknown field `fps`"), "{error}");
    }

    #[test]
    fn undefined_material_is_rejected_by_name() {
        let json = SCENE.replace("\"material\": \"glass\"", "\"material\": \"crystal\"");
        let error = parse_scene(&json).unwrap_err();
        assert!(error.contains("unknown material 'crystal'"), "{error}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases = [
            ("\"width\": 32", "\"width\": 0", "width"),
            ("\"width\": 32", "\"width\": 9000", "width"),
            (
                "\"samples_per_pixel\": 4",
                "\"samples_per_pixel\": 70000",
                "samples_per_pixel",
            ),
            ("\"radius\": 0.3", "\"radius\": -1", "radius"),
            ("\"ior\": 1.5", "\"ior\": 0", "ior"),
            ("\"name\": \"red\"", "\"name\": \"gold\"", "defined twice"),
            (
                "\"type\": \"box\"",
                "\"type\": \"cone\"",
                "unknown variant `cone`",
            ),
            ("\"material\": \"red\"", "\"material\": \"lamp\"", ""),
        ];
        for (from, to, expected) in cases {
            let json = SCENE.replacen(from, to, 1);
            assert_ne!(json, SCENE, "test case {from} did not apply");
            let result = parse_scene(&json);
            if expected.is_empty() {
                // An emissive sphere is fine.
                assert!(result.is_ok(), "{result:?}");
            } else {
                let error = result.unwrap_err();
                assert!(error.contains(expected), "{to}: {error}");
            }
        }
        let json = SCENE.replace(
            "\"type\": \"box\", \"min\": [0.8, 0, -0.5], \"max\": [1.8, 1, 0.5], \"material\": \"gold\"",
            "\"type\": \"box\", \"min\": [0.8, 0, -0.5], \"max\": [1.8, 1, 0.5], \"material\": \"lamp\"",
        );
        let error = parse_scene(&json).unwrap_err();
        assert!(
            error.contains("only allowed on spheres and quads"),
            "{error}"
        );
    }

    #[test]
    fn tiles_outside_the_frame_are_rejected() {
        for tile in [
            Tile {
                x: 30,
                y: 0,
                width: 3,
                height: 1,
            },
            Tile {
                x: 0,
                y: 0,
                width: 0,
                height: 1,
            },
            Tile {
                x: u32::MAX,
                y: 0,
                width: 2,
                height: 1,
            },
        ] {
            let options = RenderOptions {
                tile: Some(tile),
                ..RenderOptions::default()
            };
            let error = render(&scene(), 0, &options).unwrap_err();
            assert!(error.contains("not inside the 32x24 frame"), "{error}");
        }
    }

    #[test]
    fn png_decodes_to_the_rendered_image() {
        let image = render_default(1, None);
        let bytes = encode_png(&image);
        assert!(bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']));
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("sane size")];
        let info = reader.next_frame(&mut pixels).expect("valid PNG data");
        assert_eq!((info.width, info.height), (32, 24));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&pixels[..info.buffer_size()], &image.rgb[..]);
    }

    #[test]
    fn example_scene_is_valid() {
        let json = include_str!("../../../examples/render/scene.json");
        let scene = parse_scene(json).expect("examples/render/scene.json is valid");
        assert_eq!((scene.width(), scene.height()), (320, 240));
    }
}

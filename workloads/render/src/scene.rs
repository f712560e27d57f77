//! The scene file: its serde types and the checks every scene must pass.
//!
//! The format is documented field by field in the crate overview. Parsing is
//! strict (`deny_unknown_fields` everywhere) because a misspelled optional
//! field would otherwise be ignored silently and render a different picture.

use serde::Deserialize;

use crate::math::Vec3;

/// Largest accepted image width and height, in pixels.
pub const SIZE_MAX_PX: u32 = 8192;
/// Largest accepted samples per pixel.
pub const SAMPLES_PER_PIXEL_MAX: u32 = 65_536;
/// Largest accepted number of bounces per path.
pub const DEPTH_MAX: u32 = 64;
/// Largest accepted number of materials in a scene.
pub const MATERIALS_MAX: usize = 256;
/// Largest accepted number of objects in a scene; the tracer tests every
/// object against every ray, so this also bounds the cost of one ray.
pub const OBJECTS_MAX: usize = 1024;
/// Largest accepted number of emissive objects; each is sampled at every
/// diffuse bounce, so this bounds the cost of one bounce.
pub const LIGHTS_MAX: usize = 64;
/// Largest accepted absolute coordinate or length. Ray offsets of 1e-4 keep
/// surfaces from shadowing themselves only while coordinates stay moderate.
pub const COORDINATE_MAX: f64 = 1.0e5;
/// Largest accepted emitted radiance (colour × intensity) per channel.
pub const EMISSION_MAX: f64 = 1.0e6;
/// Longest accepted material name, in bytes.
pub const NAME_LENGTH_MAX: usize = 64;

/// A linear RGB colour or a 3-vector, written as a JSON array of 3 numbers.
pub(crate) type Triple = [f64; 3];

/// A parsed and validated scene: what to render, seen from where.
///
/// Build one with [`parse_scene`](crate::parse_scene), which checks every
/// field; deserializing directly skips those checks, but
/// [`render`](crate::render) repeats them before it renders anything.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    #[serde(default)]
    pub(crate) seed: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) samples_per_pixel: u32,
    pub(crate) max_depth: u32,
    #[serde(default = "one")]
    pub(crate) exposure: f64,
    pub(crate) sky: Sky,
    pub(crate) camera: Camera,
    pub(crate) materials: Vec<Material>,
    pub(crate) objects: Vec<Object>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sky {
    pub(crate) zenith: Triple,
    pub(crate) horizon: Triple,
    #[serde(default)]
    pub(crate) ground: Option<Triple>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Camera {
    pub(crate) position: Triple,
    pub(crate) look_at: Triple,
    #[serde(default = "y_up")]
    pub(crate) up: Triple,
    pub(crate) vfov_degrees: f64,
    #[serde(default)]
    pub(crate) aperture: f64,
    #[serde(default)]
    pub(crate) focus_distance: Option<f64>,
    #[serde(default)]
    pub(crate) orbit: Option<Orbit>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Orbit {
    pub(crate) center: Triple,
    pub(crate) degrees_per_frame: f64,
    #[serde(default)]
    pub(crate) start_degrees: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Material {
    Lambertian {
        name: String,
        #[serde(default)]
        albedo: Option<Triple>,
        #[serde(default)]
        checker: Option<Checker>,
    },
    Metal {
        name: String,
        albedo: Triple,
        #[serde(default)]
        fuzz: f64,
    },
    Dielectric {
        name: String,
        ior: f64,
        #[serde(default = "white")]
        tint: Triple,
    },
    Emissive {
        name: String,
        color: Triple,
        #[serde(default = "one")]
        intensity: f64,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checker {
    pub(crate) even: Triple,
    pub(crate) odd: Triple,
    pub(crate) size: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Object {
    Sphere {
        center: Triple,
        radius: f64,
        material: String,
    },
    Plane {
        point: Triple,
        normal: Triple,
        material: String,
    },
    Quad {
        corner: Triple,
        u: Triple,
        v: Triple,
        material: String,
    },
    Box {
        min: Triple,
        max: Triple,
        material: String,
    },
}

fn one() -> f64 {
    1.0
}

fn white() -> Triple {
    [1.0, 1.0, 1.0]
}

fn y_up() -> Triple {
    [0.0, 1.0, 0.0]
}

impl Scene {
    /// Image width in pixels, before any [`RenderOptions`](crate::RenderOptions) override.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Image height in pixels, before any [`RenderOptions`](crate::RenderOptions) override.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Samples per pixel, before any [`RenderOptions`](crate::RenderOptions) override.
    pub fn samples_per_pixel(&self) -> u32 {
        self.samples_per_pixel
    }

    /// Checks every field and every relationship between fields.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_size("width", self.width, SIZE_MAX_PX)?;
        check_size("height", self.height, SIZE_MAX_PX)?;
        check_size(
            "samples_per_pixel",
            self.samples_per_pixel,
            SAMPLES_PER_PIXEL_MAX,
        )?;
        check_size("max_depth", self.max_depth, DEPTH_MAX)?;
        check_range("exposure", self.exposure, f64::MIN_POSITIVE, 1.0e3)?;
        check_colour("sky.zenith", self.sky.zenith, EMISSION_MAX)?;
        check_colour("sky.horizon", self.sky.horizon, EMISSION_MAX)?;
        if let Some(ground) = self.sky.ground {
            check_colour("sky.ground", ground, EMISSION_MAX)?;
        }
        self.validate_camera()?;
        self.validate_materials()?;
        self.validate_objects()
    }

    fn validate_camera(&self) -> Result<(), String> {
        let camera = &self.camera;
        check_point("camera.position", camera.position)?;
        check_point("camera.look_at", camera.look_at)?;
        check_point("camera.up", camera.up)?;
        let forward = Vec3::from_array(camera.look_at) - Vec3::from_array(camera.position);
        if forward.length() < 1e-6 {
            return Err("camera.position and camera.look_at must differ".to_string());
        }
        let up = Vec3::from_array(camera.up);
        if up.length() < 1e-6 || forward.normalized().cross(up.normalized()).length() < 1e-6 {
            return Err("camera.up must be non-zero and not parallel to the view direction".into());
        }
        if !(camera.vfov_degrees > 0.0 && camera.vfov_degrees < 180.0) {
            return Err(format!(
                "camera.vfov_degrees must be in (0, 180), got {}",
                camera.vfov_degrees
            ));
        }
        check_range("camera.aperture", camera.aperture, 0.0, COORDINATE_MAX)?;
        if let Some(distance) = camera.focus_distance {
            check_range("camera.focus_distance", distance, 1e-6, COORDINATE_MAX)?;
        }
        if let Some(orbit) = &camera.orbit {
            check_point("camera.orbit.center", orbit.center)?;
            check_range(
                "camera.orbit.degrees_per_frame",
                orbit.degrees_per_frame,
                -360.0,
                360.0,
            )?;
            check_range(
                "camera.orbit.start_degrees",
                orbit.start_degrees,
                -360.0,
                360.0,
            )?;
        }
        Ok(())
    }

    fn validate_materials(&self) -> Result<(), String> {
        if self.materials.len() > MATERIALS_MAX {
            return Err(format!(
                "too many materials: {} (at most {MATERIALS_MAX})",
                self.materials.len()
            ));
        }
        for (index, material) in self.materials.iter().enumerate() {
            let name = material.name();
            let what = format!("material '{name}'");
            if name.is_empty() || name.len() > NAME_LENGTH_MAX {
                return Err(format!(
                    "material {index}: name must be 1 to {NAME_LENGTH_MAX} bytes long"
                ));
            }
            if self.materials[..index].iter().any(|m| m.name() == name) {
                return Err(format!("{what} is defined twice"));
            }
            match material {
                Material::Lambertian {
                    albedo, checker, ..
                } => match (albedo, checker) {
                    (Some(albedo), None) => check_colour(&format!("{what} albedo"), *albedo, 1.0)?,
                    (None, Some(checker)) => {
                        check_colour(&format!("{what} checker.even"), checker.even, 1.0)?;
                        check_colour(&format!("{what} checker.odd"), checker.odd, 1.0)?;
                        check_range(
                            &format!("{what} checker.size"),
                            checker.size,
                            1e-3,
                            COORDINATE_MAX,
                        )?;
                    }
                    _ => return Err(format!("{what} needs exactly one of 'albedo' or 'checker'")),
                },
                Material::Metal { albedo, fuzz, .. } => {
                    check_colour(&format!("{what} albedo"), *albedo, 1.0)?;
                    check_range(&format!("{what} fuzz"), *fuzz, 0.0, 1.0)?;
                }
                Material::Dielectric { ior, tint, .. } => {
                    check_range(&format!("{what} ior"), *ior, 0.1, 10.0)?;
                    check_colour(&format!("{what} tint"), *tint, 1.0)?;
                }
                Material::Emissive {
                    color, intensity, ..
                } => {
                    check_colour(&format!("{what} color"), *color, EMISSION_MAX)?;
                    check_range(&format!("{what} intensity"), *intensity, 0.0, EMISSION_MAX)?;
                    let radiance = Vec3::from_array(*color) * *intensity;
                    if radiance.max_component() > EMISSION_MAX {
                        return Err(format!(
                            "{what} emits more than {EMISSION_MAX} (color × intensity)"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_objects(&self) -> Result<(), String> {
        if self.objects.len() > OBJECTS_MAX {
            return Err(format!(
                "too many objects: {} (at most {OBJECTS_MAX})",
                self.objects.len()
            ));
        }
        let mut lights = 0;
        for (index, object) in self.objects.iter().enumerate() {
            let what = format!("object {index} ({})", object.kind());
            let material = self
                .material_index(object.material())
                .ok_or_else(|| format!("{what}: unknown material '{}'", object.material()))?;
            let emissive = matches!(self.materials[material], Material::Emissive { .. });
            match object {
                Object::Sphere { center, radius, .. } => {
                    check_point(&format!("{what} center"), *center)?;
                    check_range(&format!("{what} radius"), *radius, 1e-4, COORDINATE_MAX)?;
                }
                Object::Plane { point, normal, .. } => {
                    check_point(&format!("{what} point"), *point)?;
                    check_point(&format!("{what} normal"), *normal)?;
                    if Vec3::from_array(*normal).length() < 1e-6 {
                        return Err(format!("{what}: normal must be non-zero"));
                    }
                }
                Object::Quad { corner, u, v, .. } => {
                    check_point(&format!("{what} corner"), *corner)?;
                    check_point(&format!("{what} u"), *u)?;
                    check_point(&format!("{what} v"), *v)?;
                    if Vec3::from_array(*u).cross(Vec3::from_array(*v)).length() < 1e-8 {
                        return Err(format!("{what}: u and v must span a non-empty area"));
                    }
                }
                Object::Box { min, max, .. } => {
                    check_point(&format!("{what} min"), *min)?;
                    check_point(&format!("{what} max"), *max)?;
                    if (0..3).any(|axis| max[axis] - min[axis] < 1e-4) {
                        return Err(format!("{what}: max must exceed min on every axis"));
                    }
                }
            }
            if emissive {
                // Lights are sampled directly (next-event estimation), which
                // needs a finite shape with a known area or solid angle.
                if !matches!(object, Object::Sphere { .. } | Object::Quad { .. }) {
                    return Err(format!(
                        "{what}: emissive material '{}' is only allowed on spheres and quads",
                        object.material()
                    ));
                }
                lights += 1;
            }
        }
        if lights > LIGHTS_MAX {
            return Err(format!(
                "too many emissive objects: {lights} (at most {LIGHTS_MAX})"
            ));
        }
        Ok(())
    }

    /// The index of the material called `name`. Materials are few, and a
    /// linear scan keeps the lookup free of hashing.
    pub(crate) fn material_index(&self, name: &str) -> Option<usize> {
        self.materials.iter().position(|m| m.name() == name)
    }
}

impl Material {
    pub(crate) fn name(&self) -> &str {
        match self {
            Material::Lambertian { name, .. }
            | Material::Metal { name, .. }
            | Material::Dielectric { name, .. }
            | Material::Emissive { name, .. } => name,
        }
    }
}

impl Object {
    pub(crate) fn material(&self) -> &str {
        match self {
            Object::Sphere { material, .. }
            | Object::Plane { material, .. }
            | Object::Quad { material, .. }
            | Object::Box { material, .. } => material,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Object::Sphere { .. } => "sphere",
            Object::Plane { .. } => "plane",
            Object::Quad { .. } => "quad",
            Object::Box { .. } => "box",
        }
    }
}

/// Checks a count that must be positive and bounded (sizes, samples, depth).
pub(crate) fn check_size(what: &str, value: u32, max: u32) -> Result<(), String> {
    if value == 0 || value > max {
        return Err(format!("{what} must be between 1 and {max}, got {value}"));
    }
    Ok(())
}

fn check_range(what: &str, value: f64, min: f64, max: f64) -> Result<(), String> {
    // Written so that NaN fails too.
    if !(value >= min && value <= max) {
        return Err(format!(
            "{what} must be between {min} and {max}, got {value}"
        ));
    }
    Ok(())
}

fn check_point(what: &str, point: Triple) -> Result<(), String> {
    if point
        .iter()
        .any(|c| !c.is_finite() || c.abs() > COORDINATE_MAX)
    {
        return Err(format!(
            "{what} components must be within ±{COORDINATE_MAX}, got {point:?}"
        ));
    }
    Ok(())
}

fn check_colour(what: &str, colour: Triple, max: f64) -> Result<(), String> {
    if colour.iter().any(|c| !(*c >= 0.0 && *c <= max)) {
        return Err(format!(
            "{what} components must be between 0 and {max}, got {colour:?}"
        ));
    }
    Ok(())
}

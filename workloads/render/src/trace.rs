//! The path tracer: geometry, materials, light sampling and the camera.
//!
//! A validated [`Scene`] is first resolved into a [`World`] for one frame
//! (material names become indices, the camera is placed on its orbit, lights
//! are listed), so the per-ray code does no lookups and no allocation.

use crate::math::{self, PI, Vec3, basis, clamp, floor, max, min, sin_cos};
use crate::rng::Sampler;
use crate::scene::{self, Scene};

/// Rays start this far along their direction, so a surface does not shadow
/// itself through rounding error in the hit point.
const T_MIN: f64 = 1.0e-4;
/// Hits beyond this distance count as sky: it keeps checker lookups on the
/// infinite ground plane away from absurdly large coordinates.
const T_FAR: f64 = 1.0e7;
/// Glass interactions per camera ray that follow both the reflected and the
/// refracted direction; later ones choose one at random. Two covers the
/// surfaces of the first glass object a ray passes through.
const SPLITS_MAX: usize = 2;
/// How fast (in radians: footprint width per unit of distance) a path's
/// cone widens after a diffuse bounce; wide enough that indirect rays see a
/// checker's average colour a short distance away.
const INDIRECT_CONE_SPREAD: f64 = 1.0;
/// Bounces after which Russian roulette may end a path early.
const ROULETTE_DEPTH_MIN: u32 = 3;
/// Cap on the radiance one path picks up at any vertex after the first.
/// Rare paths that reach a bright light through glass or off a mirror would
/// otherwise leave isolated bright pixels ("fireflies") at the sample counts
/// a frame can afford. What the camera sees directly is never capped, and
/// after tone mapping a capped highlight is still nearly white, so the bias
/// this adds is hard to see while the noise it removes is not.
const INDIRECT_RADIANCE_MAX: f64 = 4.0;

/// One frame's scene, resolved for tracing.
pub(crate) struct World {
    objects: Vec<Object>,
    materials: Vec<Material>,
    /// Indices into `objects` of the emissive spheres and quads.
    lights: Vec<usize>,
    sky: Sky,
    camera: Camera,
    seed: u64,
    frame: u32,
    max_depth: u32,
    exposure: f64,
}

struct Object {
    shape: Shape,
    material: usize,
}

enum Shape {
    Sphere {
        center: Vec3,
        radius: f64,
    },
    Plane {
        point: Vec3,
        normal: Vec3,
    },
    /// The parallelogram `corner + a·u + b·v` for `a, b ∈ [0, 1]`.
    Quad {
        corner: Vec3,
        u: Vec3,
        v: Vec3,
        normal: Vec3,
        /// `(u × v) / |u × v|²`, which turns a point in the plane into its
        /// `(a, b)` coordinates with two cross products.
        w: Vec3,
        area: f64,
    },
    Box {
        min: Vec3,
        max: Vec3,
    },
}

#[derive(Clone, Copy)]
enum Texture {
    Solid(Vec3),
    Checker { even: Vec3, odd: Vec3, size: f64 },
}

#[derive(Clone, Copy)]
enum Material {
    Lambertian(Texture),
    Metal { albedo: Vec3, fuzz: f64 },
    Dielectric { ior: f64, tint: Vec3 },
    Emissive { radiance: Vec3 },
}

struct Sky {
    zenith: Vec3,
    horizon: Vec3,
    ground: Vec3,
}

/// A pinhole or thin-lens camera placed for one frame.
struct Camera {
    origin: Vec3,
    /// Right, up and backward unit vectors of the image plane.
    right: Vec3,
    up: Vec3,
    /// The centre of the image on the plane of perfect focus.
    focus_center: Vec3,
    /// Full extent of the image on the focus plane.
    focus_width: f64,
    focus_height: f64,
    lens_radius: f64,
    /// Width of one pixel's cone of rays per unit of distance.
    pixel_spread: f64,
}

/// The nearest surface a ray hits.
struct Hit {
    t: f64,
    object: usize,
}

/// A path in flight: where it is, where it goes, and how much of the light
/// it finds reaches the camera.
#[derive(Clone, Copy)]
struct Path {
    origin: Vec3,
    direction: Vec3,
    throughput: Vec3,
    depth: u32,
    /// Whether hitting a light counts: only until the first diffuse bounce.
    count_emission: bool,
    /// Width, at `origin`, of the cone of rays this path stands for, and how
    /// fast it widens per unit of distance: texture lookups are filtered
    /// over the cone's footprint.
    cone_width: f64,
    cone_spread: f64,
}

/// Paths split off at glass and waiting to be followed. Splits per camera
/// ray are capped at [`SPLITS_MAX`], so a fixed array holds them and the
/// work per sample stays bounded.
struct Branches {
    pending: [Option<Path>; SPLITS_MAX],
    len: usize,
    splits: usize,
}

impl Branches {
    fn can_split(&self) -> bool {
        self.splits < SPLITS_MAX
    }

    fn push(&mut self, path: Path) {
        assert!(
            self.can_split() && self.len < SPLITS_MAX,
            "split budget exceeded"
        );
        self.pending[self.len] = Some(path);
        self.len += 1;
        self.splits += 1;
    }

    fn pop(&mut self) -> Option<Path> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        self.pending[self.len].take()
    }
}

impl World {
    /// Resolves `scene` for `frame` at a `width`×`height` image. The scene
    /// must already be validated; broken invariants here are bugs.
    pub(crate) fn new(scene: &Scene, frame: u32, width: u32, height: u32) -> World {
        let materials: Vec<Material> = scene.materials.iter().map(resolve_material).collect();
        let mut objects = Vec::with_capacity(scene.objects.len());
        let mut lights = Vec::new();
        for object in &scene.objects {
            let material = scene
                .material_index(object.material())
                .expect("validated scene names only defined materials");
            if matches!(materials[material], Material::Emissive { .. }) {
                lights.push(objects.len());
            }
            objects.push(Object {
                shape: resolve_shape(object),
                material,
            });
        }
        let sky = Sky {
            zenith: Vec3::from_array(scene.sky.zenith),
            horizon: Vec3::from_array(scene.sky.horizon),
            ground: Vec3::from_array(scene.sky.ground.unwrap_or(scene.sky.horizon)),
        };
        World {
            objects,
            materials,
            lights,
            sky,
            camera: Camera::new(&scene.camera, frame, width, height),
            seed: scene.seed,
            frame,
            max_depth: scene.max_depth,
            exposure: scene.exposure,
        }
    }

    /// The final 8-bit sRGB colour of pixel (`x`, `y`) of the full frame.
    pub(crate) fn pixel(&self, x: u32, y: u32, samples: u32, width: u32, height: u32) -> [u8; 3] {
        let mut sampler = Sampler::for_pixel(self.seed, self.frame, x, y);
        let mut sum = Vec3::ZERO;
        for sample in 0..samples {
            sampler.start_sample(sample);
            // Stratified sub-pixel positions: anti-aliasing with a box filter.
            let (jx, jy) = sampler.next_2d();
            let s = (f64::from(x) + jx) / f64::from(width);
            let t = (f64::from(y) + jy) / f64::from(height);
            let (origin, direction) = self.camera.ray(s, t, &mut sampler);
            let radiance = self.trace(origin, direction, &mut sampler);
            // A non-finite sample would poison the whole pixel; none should
            // occur, but one numerical accident must not cost a frame.
            if radiance.is_finite() {
                sum += radiance;
            }
        }
        let average = sum / f64::from(samples) * self.exposure;
        [
            encode_channel(average.x),
            encode_channel(average.y),
            encode_channel(average.z),
        ]
    }

    /// Follows one camera ray, and the branches it splits into at glass,
    /// and returns the radiance they carry.
    fn trace(&self, origin: Vec3, direction: Vec3, sampler: &mut Sampler) -> Vec3 {
        let mut branches = Branches {
            pending: [None; SPLITS_MAX],
            len: 0,
            splits: 0,
        };
        let mut radiance = Vec3::ZERO;
        let mut next = Some(Path {
            origin,
            direction,
            throughput: Vec3::ONE,
            depth: 0,
            count_emission: true,
            cone_width: 0.0,
            cone_spread: self.camera.pixel_spread,
        });
        while let Some(path) = next {
            radiance += self.follow(path, sampler, &mut branches);
            next = branches.pop();
        }
        radiance
    }

    /// Follows one path until it leaves the scene, is absorbed or reaches
    /// the depth limit, and returns the radiance it carries.
    fn follow(&self, path: Path, sampler: &mut Sampler, branches: &mut Branches) -> Vec3 {
        let Path {
            mut origin,
            mut direction,
            mut throughput,
            depth: first_depth,
            mut count_emission,
            mut cone_width,
            mut cone_spread,
        } = path;
        let mut radiance = Vec3::ZERO;
        for depth in first_depth..self.max_depth {
            let Some(hit) = self.intersect(origin, direction) else {
                radiance += cap(depth, throughput * self.sky.radiance(direction));
                break;
            };
            let object = &self.objects[hit.object];
            let point = origin + direction * hit.t;
            cone_width += cone_spread * hit.t;
            let outward = object.shape.normal(point);
            let front_face = direction.dot(outward) < 0.0;
            let normal = if front_face { outward } else { -outward };
            match self.materials[object.material] {
                Material::Emissive { radiance: emitted } => {
                    if count_emission {
                        radiance += cap(depth, throughput * emitted);
                    }
                    break;
                }
                Material::Lambertian(texture) => {
                    // Curved mirrors and glass widen a real cone; ignoring
                    // that only leaves a little aliasing for the samples to
                    // average.
                    let extent = footprint_extent(cone_width, direction, outward);
                    let albedo = texture.at(point, outward, extent);
                    // Next-event estimation: light arriving straight from
                    // every light, times the Lambertian BRDF albedo/π.
                    let direct = self.direct_light(point, normal, sampler);
                    radiance += cap(depth, throughput * albedo * direct * (1.0 / PI));
                    // Cosine-weighted sampling cancels the cosine and the
                    // 1/π of the BRDF against the pdf, leaving the albedo.
                    direction = cosine_direction(normal, sampler);
                    throughput *= albedo;
                    // One diffuse sample stands for light from the whole
                    // hemisphere, so from here on textures are seen through a
                    // wide cone. Indirect light then picks up a checker's
                    // average colour instead of one of its two colours at
                    // random, which removes most of the noise on surfaces lit
                    // by a checkered floor, and changes what they look like
                    // very little.
                    cone_spread = INDIRECT_CONE_SPREAD;
                    // A diffuse bounce samples every light directly, so a
                    // light its continuation hits, straight or through glass
                    // (shadow rays pass through glass, see `transmittance`),
                    // was already counted. Lights reached from here via a
                    // mirror are dropped too: such caustic paths are found
                    // only by chance and would show as fireflies at the
                    // sample counts a frame can afford.
                    count_emission = false;
                }
                Material::Metal { albedo, fuzz } => {
                    let mut reflected = reflect(direction, normal);
                    if fuzz > 0.0 {
                        reflected = (reflected + unit_vector(sampler) * fuzz).normalized();
                    }
                    if reflected.dot(normal) <= 0.0 {
                        // Fuzz pushed the ray into the surface: absorbed.
                        break;
                    }
                    direction = reflected;
                    throughput *= albedo;
                }
                Material::Dielectric { ior, tint } => {
                    let eta = if front_face { 1.0 / ior } else { ior };
                    let cos_in = min(-direction.dot(normal), 1.0);
                    let sin2_out = eta * eta * (1.0 - cos_in * cos_in);
                    let reflected = reflect(direction, normal);
                    if sin2_out > 1.0 {
                        // Total internal reflection.
                        direction = reflected;
                    } else {
                        let reflectance = schlick(cos_in, eta);
                        let cos_out = (1.0 - sin2_out).sqrt();
                        let refracted =
                            (direction * eta + normal * (eta * cos_in - cos_out)).normalized();
                        // Choosing one of the two directions at random makes
                        // the faint reflection on glass a speckle of rare,
                        // bright samples; the first few times, follow both.
                        if branches.can_split() {
                            branches.push(Path {
                                origin: point,
                                direction: reflected,
                                throughput: throughput * reflectance,
                                depth: depth + 1,
                                count_emission,
                                cone_width,
                                cone_spread,
                            });
                            direction = refracted;
                            throughput *= tint * (1.0 - reflectance);
                        } else if sampler.next_f64() < reflectance {
                            direction = reflected;
                        } else {
                            direction = refracted;
                            throughput *= tint;
                        }
                    }
                }
            }
            origin = point;
            if depth + 1 >= ROULETTE_DEPTH_MIN {
                // Russian roulette ends dim paths early without bias: a path
                // survives with probability p and is weighted by 1/p.
                let survive = clamp(throughput.max_component(), 0.05, 0.95);
                if sampler.next_f64() >= survive {
                    break;
                }
                throughput = throughput / survive;
            }
        }
        radiance
    }

    /// The nearest hit along a ray in `(T_MIN, T_FAR)`.
    fn intersect(&self, origin: Vec3, direction: Vec3) -> Option<Hit> {
        let mut nearest: Option<Hit> = None;
        let mut t_max = T_FAR;
        for (index, object) in self.objects.iter().enumerate() {
            if let Some(t) = object.shape.hit(origin, direction, T_MIN, t_max) {
                t_max = t;
                nearest = Some(Hit { t, object: index });
            }
        }
        nearest
    }

    /// Radiance arriving at `point` (with surface `normal`) directly from
    /// all lights, weighted by the cosine at the surface. Each light gets
    /// one sample toward a random point of it.
    fn direct_light(&self, point: Vec3, normal: Vec3, sampler: &mut Sampler) -> Vec3 {
        let mut total = Vec3::ZERO;
        for &index in &self.lights {
            let light = &self.objects[index];
            let Material::Emissive { radiance } = self.materials[light.material] else {
                unreachable!("the light list holds only emissive objects");
            };
            // The pair is drawn even when the light turns out to be
            // unusable, so each light keeps its own stratified pair.
            let (u1, u2) = sampler.next_2d();
            let (direction, distance, weight) = match light.shape {
                Shape::Sphere { center, radius } => {
                    // Sample the cone of directions the sphere subtends:
                    // every sample hits it, and the pdf is 1/solid angle.
                    let to_center = center - point;
                    let distance2 = to_center.length_squared();
                    let radius2 = radius * radius;
                    if distance2 <= radius2 * (1.0 + 1e-9) {
                        continue;
                    }
                    let sin2_max = radius2 / distance2;
                    // 1 − cos θmax, written to avoid cancellation for small
                    // or distant lights.
                    let one_minus_cos_max = sin2_max / (1.0 + (1.0 - sin2_max).sqrt());
                    let cos_theta = 1.0 - u1 * one_minus_cos_max;
                    let sin_theta = max(0.0, 1.0 - cos_theta * cos_theta).sqrt();
                    let (sin_phi, cos_phi) = sin_cos(2.0 * PI * u2);
                    let axis = to_center / distance2.sqrt();
                    let (tangent, bitangent) = basis(axis);
                    let direction = (tangent * (sin_theta * cos_phi)
                        + bitangent * (sin_theta * sin_phi)
                        + axis * cos_theta)
                        .normalized();
                    let Some(distance) = light.shape.hit(point, direction, T_MIN, T_FAR) else {
                        continue;
                    };
                    (direction, distance, 2.0 * PI * one_minus_cos_max)
                }
                Shape::Quad {
                    corner,
                    u,
                    v,
                    normal: light_normal,
                    area,
                    ..
                } => {
                    // Sample the quad's area uniformly and convert the area
                    // pdf to solid angle: weight = cos_light · area / d².
                    let target = corner + u * u1 + v * u2;
                    let offset = target - point;
                    let distance2 = offset.length_squared();
                    let distance = distance2.sqrt();
                    let direction = offset / distance;
                    // Quad lights emit from both faces.
                    let cos_light = direction.dot(light_normal).abs();
                    if cos_light < 1e-9 {
                        continue;
                    }
                    (direction, distance, cos_light * area / distance2)
                }
                Shape::Plane { .. } | Shape::Box { .. } => {
                    unreachable!("validation allows emissive spheres and quads only")
                }
            };
            let cos_surface = direction.dot(normal);
            if cos_surface <= 0.0 {
                continue;
            }
            let transmittance =
                self.transmittance(point, direction, distance * (1.0 - 1e-6) - T_MIN);
            total += radiance * transmittance * (cos_surface * weight);
        }
        total
    }

    /// The fraction of light that passes along a shadow ray up to `t_max`:
    /// zero if an opaque surface is in the way.
    ///
    /// Glass lets light through, filtered by its tint and by Fresnel
    /// reflection at each surface crossed. True refraction would bend the
    /// light into caustics that only converge at thousands of samples; this
    /// straight-through approximation gives glass objects soft, coloured
    /// shadows that are darker at the rim, noise-free at a few dozen samples.
    /// Crossings multiply, so their order does not matter and objects can be
    /// visited in any fixed order without sorting.
    fn transmittance(&self, origin: Vec3, direction: Vec3, t_max: f64) -> Vec3 {
        let mut transmittance = Vec3::ONE;
        if t_max <= T_MIN {
            return transmittance;
        }
        for object in &self.objects {
            let material = self.materials[object.material];
            let Material::Dielectric { ior, tint } = material else {
                if object.shape.hit(origin, direction, T_MIN, t_max).is_some() {
                    return Vec3::ZERO;
                }
                continue;
            };
            let mut crossings = [0.0; 2];
            let count = object
                .shape
                .crossings(origin, direction, T_MIN, t_max, &mut crossings);
            for &t in &crossings[..count] {
                let normal = object.shape.normal(origin + direction * t);
                let cos = min(direction.dot(normal).abs(), 1.0);
                transmittance *= tint * (1.0 - schlick(cos, ior));
            }
        }
        transmittance
    }
}

impl Sky {
    /// A vertical gradient: `horizon` at the horizon blending to `zenith`
    /// straight up, and a flat `ground` colour below the horizon.
    fn radiance(&self, direction: Vec3) -> Vec3 {
        if direction.y < 0.0 {
            return self.ground;
        }
        // The square root widens the blend near the horizon, where most of
        // a typical camera's view of the sky lies.
        let t = direction.y.sqrt();
        self.horizon * (1.0 - t) + self.zenith * t
    }
}

impl Texture {
    /// The colour at `point` on a surface with unit normal `outward`, seen
    /// through a ray cone whose footprint on the surface spans `extent`
    /// along each world axis (zero: a single point).
    fn at(self, point: Vec3, outward: Vec3, extent: Vec3) -> Vec3 {
        match self {
            Texture::Solid(colour) => colour,
            Texture::Checker { even, odd, size } => {
                // A solid 3D checker: the product of three square waves of
                // ±1. The lookup point is nudged slightly inside the surface
                // so that a face lying exactly on a cell boundary (the ground
                // at y = 0) does not flicker between cells with the sign of
                // rounding errors.
                let p = (point - outward * (size * 1e-3)) / size;
                let product = square_wave(p.x, extent.x / size)
                    * square_wave(p.y, extent.y / size)
                    * square_wave(p.z, extent.z / size);
                odd + (even - odd) * (0.5 + 0.5 * product)
            }
        }
    }
}

/// The square wave that is +1 on cells `[2k, 2k+1)` and −1 on the others,
/// averaged over a window of `width` cells around `x`.
///
/// Box-filtering the checker by the pixel's footprint is what keeps the
/// distant ground (and the ground seen through glass) from sparkling: there
/// a pixel covers many cells, and point samples of them would need hundreds
/// of samples per pixel to average out.
fn square_wave(x: f64, width: f64) -> f64 {
    if width < 1e-3 {
        let cell = floor(x) - 2.0 * floor(x * 0.5);
        return if cell == 0.0 { 1.0 } else { -1.0 };
    }
    // The wave's integral is a triangle wave, so the average is a difference
    // of two triangle-wave values.
    let triangle = |x: f64| 1.0 - (x - 2.0 * floor(x * 0.5) - 1.0).abs();
    let half = width * 0.5;
    clamp((triangle(x + half) - triangle(x - half)) / width, -1.0, 1.0)
}

/// How far a ray cone of the given `width`, arriving along `direction` at a
/// surface with unit normal `normal`, extends along each world axis. The
/// footprint is an ellipse stretched by 1/cos θ along the incoming direction,
/// which is what makes the ground blur along the view and not across it.
fn footprint_extent(width: f64, direction: Vec3, normal: Vec3) -> Vec3 {
    if width <= 0.0 {
        return Vec3::ZERO;
    }
    let cos = direction.dot(normal);
    let along = direction - normal * cos;
    let along_length = along.length();
    if along_length < 1e-9 {
        // Head-on: a circle, whose extent along each axis is the radius
        // scaled by how much that axis lies in the surface.
        let extent = |n: f64| width * max(0.0, 1.0 - n * n).sqrt();
        return Vec3::new(extent(normal.x), extent(normal.y), extent(normal.z));
    }
    // Grazing views would make the ellipse unboundedly long.
    let stretch = width / max(cos.abs(), 0.05);
    let major = along / along_length;
    let minor = normal.cross(major);
    let extent =
        |m: f64, n: f64| ((width * n) * (width * n) + (stretch * m) * (stretch * m)).sqrt();
    Vec3::new(
        extent(major.x, minor.x),
        extent(major.y, minor.y),
        extent(major.z, minor.z),
    )
}

impl Shape {
    /// The nearest intersection distance in `(t_min, t_max)`, if any.
    /// `direction` is a unit vector.
    fn hit(&self, origin: Vec3, direction: Vec3, t_min: f64, t_max: f64) -> Option<f64> {
        let mut crossings = [0.0; 2];
        let count = self.crossings(origin, direction, t_min, t_max, &mut crossings);
        (count > 0).then_some(crossings[0])
    }

    /// All intersection distances in `(t_min, t_max)`, nearest first, written
    /// into `out`; returns how many there are (every shape is convex or flat,
    /// so there are at most two).
    fn crossings(
        &self,
        origin: Vec3,
        direction: Vec3,
        t_min: f64,
        t_max: f64,
        out: &mut [f64; 2],
    ) -> usize {
        let mut count = 0;
        let mut push = |t: f64| {
            if t > t_min && t < t_max {
                out[count] = t;
                count += 1;
            }
        };
        match *self {
            Shape::Sphere { center, radius } => {
                let oc = origin - center;
                let half_b = oc.dot(direction);
                let c = oc.length_squared() - radius * radius;
                let discriminant = half_b * half_b - c;
                if discriminant < 0.0 {
                    return 0;
                }
                let root = discriminant.sqrt();
                push(-half_b - root);
                push(-half_b + root);
            }
            Shape::Plane { point, normal } => {
                let denominator = normal.dot(direction);
                if denominator.abs() > 1e-12 {
                    push((point - origin).dot(normal) / denominator);
                }
            }
            Shape::Quad {
                corner,
                u,
                v,
                normal,
                w,
                ..
            } => {
                let denominator = normal.dot(direction);
                if denominator.abs() > 1e-12 {
                    let t = (corner - origin).dot(normal) / denominator;
                    let planar = origin + direction * t - corner;
                    let a = w.dot(planar.cross(v));
                    let b = w.dot(u.cross(planar));
                    if (0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b) {
                        push(t);
                    }
                }
            }
            Shape::Box { min: lo, max: hi } => {
                // Slab test. Divisions by a zero direction component give
                // ±∞, which the comparisons below handle; a NaN (origin
                // exactly on a slab face) fails every comparison and so
                // never shrinks the interval.
                let mut t_near = f64::NEG_INFINITY;
                let mut t_far = f64::INFINITY;
                for axis in 0..3 {
                    let inverse = 1.0 / direction.get(axis);
                    let t0 = (lo.get(axis) - origin.get(axis)) * inverse;
                    let t1 = (hi.get(axis) - origin.get(axis)) * inverse;
                    let (t0, t1) = if t0 < t1 { (t0, t1) } else { (t1, t0) };
                    t_near = max(t_near, t0);
                    t_far = min(t_far, t1);
                }
                if t_near <= t_far {
                    push(t_near);
                    push(t_far);
                }
            }
        }
        count
    }

    /// The outward unit normal at a point on the surface.
    fn normal(&self, point: Vec3) -> Vec3 {
        match *self {
            Shape::Sphere { center, radius } => (point - center) / radius,
            Shape::Plane { normal, .. } | Shape::Quad { normal, .. } => normal,
            Shape::Box { min: lo, max: hi } => {
                // The face whose plane the point is closest to, relative to
                // the box's size along that axis.
                let center = (lo + hi) * 0.5;
                let half = (hi - lo) * 0.5;
                let local = point - center;
                let mut best_axis = 0;
                let mut best = -1.0;
                for axis in 0..3 {
                    let ratio = local.get(axis).abs() / half.get(axis);
                    if ratio > best {
                        best = ratio;
                        best_axis = axis;
                    }
                }
                let sign = if local.get(best_axis) < 0.0 {
                    -1.0
                } else {
                    1.0
                };
                match best_axis {
                    0 => Vec3::new(sign, 0.0, 0.0),
                    1 => Vec3::new(0.0, sign, 0.0),
                    _ => Vec3::new(0.0, 0.0, sign),
                }
            }
        }
    }
}

impl Camera {
    fn new(spec: &scene::Camera, frame: u32, width: u32, height: u32) -> Camera {
        let mut position = Vec3::from_array(spec.position);
        let mut look_at = Vec3::from_array(spec.look_at);
        let mut up = Vec3::from_array(spec.up);
        if let Some(orbit) = &spec.orbit {
            // Rotate the whole camera about the vertical axis through the
            // orbit centre. The angle is reduced to one turn first so that
            // late frames keep full precision.
            let turns = orbit.start_degrees + orbit.degrees_per_frame * f64::from(frame);
            let degrees = turns - floor(turns / 360.0) * 360.0;
            let (sin, cos) = sin_cos(degrees * (PI / 180.0));
            let center = Vec3::from_array(orbit.center);
            let rotate = |v: Vec3| Vec3::new(cos * v.x + sin * v.z, v.y, -sin * v.x + cos * v.z);
            position = center + rotate(position - center);
            look_at = center + rotate(look_at - center);
            up = rotate(up);
        }
        let offset = position - look_at;
        let backward = offset.normalized();
        let right = up.cross(backward).normalized();
        let true_up = backward.cross(right);
        let focus = spec.focus_distance.unwrap_or(offset.length());
        let half_height = math::tan(spec.vfov_degrees * (PI / 360.0)) * focus;
        let aspect = f64::from(width) / f64::from(height);
        Camera {
            origin: position,
            right,
            up: true_up,
            focus_center: position - backward * focus,
            focus_width: 2.0 * half_height * aspect,
            focus_height: 2.0 * half_height,
            lens_radius: spec.aperture * 0.5,
            pixel_spread: 2.0 * half_height / focus / f64::from(height),
        }
    }

    /// The ray through image coordinates `(s, t)` ∈ [0, 1)², `t` growing
    /// downward; a unit direction.
    fn ray(&self, s: f64, t: f64, sampler: &mut Sampler) -> (Vec3, Vec3) {
        let target = self.focus_center
            + self.right * ((s - 0.5) * self.focus_width)
            + self.up * ((0.5 - t) * self.focus_height);
        let origin = if self.lens_radius > 0.0 {
            // Depth of field: start on a random point of the lens disc.
            let (u1, u2) = sampler.next_2d();
            let radius = self.lens_radius * u1.sqrt();
            let (sin, cos) = sin_cos(2.0 * PI * u2);
            self.origin + self.right * (radius * cos) + self.up * (radius * sin)
        } else {
            self.origin
        };
        (origin, (target - origin).normalized())
    }
}

fn resolve_material(spec: &scene::Material) -> Material {
    match spec {
        scene::Material::Lambertian {
            albedo, checker, ..
        } => match (albedo, checker) {
            (Some(albedo), _) => Material::Lambertian(Texture::Solid(Vec3::from_array(*albedo))),
            (None, Some(checker)) => Material::Lambertian(Texture::Checker {
                even: Vec3::from_array(checker.even),
                odd: Vec3::from_array(checker.odd),
                size: checker.size,
            }),
            (None, None) => unreachable!("validation requires albedo or checker"),
        },
        scene::Material::Metal { albedo, fuzz, .. } => Material::Metal {
            albedo: Vec3::from_array(*albedo),
            fuzz: *fuzz,
        },
        scene::Material::Dielectric { ior, tint, .. } => Material::Dielectric {
            ior: *ior,
            tint: Vec3::from_array(*tint),
        },
        scene::Material::Emissive {
            color, intensity, ..
        } => Material::Emissive {
            radiance: Vec3::from_array(*color) * *intensity,
        },
    }
}

fn resolve_shape(spec: &scene::Object) -> Shape {
    match spec {
        scene::Object::Sphere { center, radius, .. } => Shape::Sphere {
            center: Vec3::from_array(*center),
            radius: *radius,
        },
        scene::Object::Plane { point, normal, .. } => Shape::Plane {
            point: Vec3::from_array(*point),
            normal: Vec3::from_array(*normal).normalized(),
        },
        scene::Object::Quad { corner, u, v, .. } => {
            let (u, v) = (Vec3::from_array(*u), Vec3::from_array(*v));
            let n = u.cross(v);
            Shape::Quad {
                corner: Vec3::from_array(*corner),
                u,
                v,
                normal: n.normalized(),
                w: n / n.length_squared(),
                area: n.length(),
            }
        }
        scene::Object::Box { min, max, .. } => Shape::Box {
            min: Vec3::from_array(*min),
            max: Vec3::from_array(*max),
        },
    }
}

/// Cosine-weighted direction in the hemisphere around the unit `normal`
/// (Malley's method: uniform on the disc, projected up).
fn cosine_direction(normal: Vec3, sampler: &mut Sampler) -> Vec3 {
    let (u1, u2) = sampler.next_2d();
    let (sin, cos) = sin_cos(2.0 * PI * u2);
    let r = u1.sqrt();
    let (tangent, bitangent) = basis(normal);
    (tangent * (r * cos) + bitangent * (r * sin) + normal * max(0.0, 1.0 - u1).sqrt()).normalized()
}

/// A uniformly distributed unit vector.
fn unit_vector(sampler: &mut Sampler) -> Vec3 {
    let (u1, u2) = sampler.next_2d();
    let z = 1.0 - 2.0 * u1;
    let r = max(0.0, 1.0 - z * z).sqrt();
    let (sin, cos) = sin_cos(2.0 * PI * u2);
    Vec3::new(r * cos, r * sin, z)
}

fn reflect(direction: Vec3, normal: Vec3) -> Vec3 {
    direction - normal * (2.0 * direction.dot(normal))
}

/// Schlick's approximation of Fresnel reflectance for relative index `eta`
/// (symmetric in `eta` and `1/eta`).
fn schlick(cos: f64, eta: f64) -> f64 {
    let r0 = (1.0 - eta) / (1.0 + eta);
    let r0 = r0 * r0;
    let m = 1.0 - cos;
    let m2 = m * m;
    r0 + (1.0 - r0) * m2 * m2 * m
}

/// `radiance` picked up at bounce `depth`, capped to
/// [`INDIRECT_RADIANCE_MAX`] (keeping its hue) unless seen directly.
fn cap(depth: u32, radiance: Vec3) -> Vec3 {
    let peak = radiance.max_component();
    if depth > 0 && peak > INDIRECT_RADIANCE_MAX {
        radiance * (INDIRECT_RADIANCE_MAX / peak)
    } else {
        radiance
    }
}

/// Linear radiance to an 8-bit sRGB value: ACES filmic tone mapping
/// (Narkowicz's fit), which rolls highlights off smoothly instead of
/// clipping them, then the sRGB transfer curve.
fn encode_channel(linear: f64) -> u8 {
    let x = max(linear, 0.0);
    let mapped = clamp(
        (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14),
        0.0,
        1.0,
    );
    let encoded = if mapped <= 0.003_130_8 {
        12.92 * mapped
    } else {
        1.055 * math::powf(mapped, 1.0 / 2.4) - 0.055
    };
    // Rounds to nearest: the value is non-negative, so `as` truncation
    // is a floor.
    (clamp(encoded, 0.0, 1.0) * 255.0 + 0.5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_channel_is_monotonic_and_spans_the_range() {
        assert_eq!(encode_channel(0.0), 0);
        assert_eq!(encode_channel(1.0e6), 255);
        let mut previous = 0;
        for i in 0..10_000 {
            let value = encode_channel(f64::from(i) * 0.001);
            assert!(value >= previous);
            previous = value;
        }
    }

    #[test]
    fn box_crossings_enter_and_leave() {
        let shape = Shape::Box {
            min: Vec3::new(-1.0, -1.0, -1.0),
            max: Vec3::new(1.0, 1.0, 1.0),
        };
        let mut out = [0.0; 2];
        let count = shape.crossings(
            Vec3::new(0.0, 0.0, -5.0),
            Vec3::new(0.0, 0.0, 1.0),
            T_MIN,
            T_FAR,
            &mut out,
        );
        assert_eq!((count, out), (2, [4.0, 6.0]));
        assert_eq!(
            shape.normal(Vec3::new(0.2, -0.3, -1.0)),
            Vec3::new(0.0, 0.0, -1.0)
        );
    }
}

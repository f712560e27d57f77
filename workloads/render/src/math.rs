//! Vectors and the few transcendental functions the tracer needs, built from
//! IEEE-754 basic operations and `sqrt` only.
//!
//! Why not `f64::sin`, `f64::powf` and friends: they call the platform's libm,
//! whose last-bit rounding differs between glibc (native builds) and the Rust
//! libm linked into the Wasm guest. Addition, multiplication, division and
//! `sqrt` are correctly rounded on every target, and Rust never fuses them into
//! FMA on its own, so with these helpers the native library and the Wasm guest
//! compute the same pixels bit for bit. The polynomials are accurate to about
//! one unit in the last place over the ranges the tracer uses, which is far
//! below anything visible in an 8-bit image.

use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// π, as the nearest `f64`.
pub(crate) const PI: f64 = std::f64::consts::PI;

/// A 3-vector used for points, directions and linear RGB colours alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Vec3 {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) z: f64,
}

impl Vec3 {
    pub(crate) const ZERO: Vec3 = Vec3::new(0.0, 0.0, 0.0);
    pub(crate) const ONE: Vec3 = Vec3::new(1.0, 1.0, 1.0);

    pub(crate) const fn new(x: f64, y: f64, z: f64) -> Vec3 {
        Vec3 { x, y, z }
    }

    pub(crate) const fn from_array(a: [f64; 3]) -> Vec3 {
        Vec3::new(a[0], a[1], a[2])
    }

    pub(crate) fn dot(self, o: Vec3) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub(crate) fn cross(self, o: Vec3) -> Vec3 {
        Vec3::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    pub(crate) fn length_squared(self) -> f64 {
        self.dot(self)
    }

    pub(crate) fn length(self) -> f64 {
        self.length_squared().sqrt()
    }

    /// The unit vector along `self`; callers guarantee a non-zero length.
    pub(crate) fn normalized(self) -> Vec3 {
        let length = self.length();
        debug_assert!(length > 0.0, "normalizing a zero vector");
        // One division and three multiplications: divisions are slow.
        self * (1.0 / length)
    }

    pub(crate) fn max_component(self) -> f64 {
        max(self.x, max(self.y, self.z))
    }

    pub(crate) fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }

    pub(crate) fn get(self, axis: usize) -> f64 {
        match axis {
            0 => self.x,
            1 => self.y,
            _ => self.z,
        }
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl AddAssign for Vec3 {
    fn add_assign(&mut self, o: Vec3) {
        *self = *self + o;
    }
}

impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Neg for Vec3 {
    type Output = Vec3;
    fn neg(self) -> Vec3 {
        Vec3::new(-self.x, -self.y, -self.z)
    }
}

/// Component-wise product, used to filter colours.
impl Mul for Vec3 {
    type Output = Vec3;
    fn mul(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x * o.x, self.y * o.y, self.z * o.z)
    }
}

impl MulAssign for Vec3 {
    fn mul_assign(&mut self, o: Vec3) {
        *self = *self * o;
    }
}

impl Mul<f64> for Vec3 {
    type Output = Vec3;
    fn mul(self, s: f64) -> Vec3 {
        Vec3::new(self.x * s, self.y * s, self.z * s)
    }
}

impl Div<f64> for Vec3 {
    type Output = Vec3;
    fn div(self, s: f64) -> Vec3 {
        Vec3::new(self.x / s, self.y / s, self.z / s)
    }
}

/// The smaller of two numbers. `f64::min` lowers to `minnum`, which may
/// return either zero for `min(-0.0, 0.0)` depending on the target; a plain
/// comparison behaves the same everywhere.
pub(crate) fn min(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// The larger of two numbers; see [`min`] for why this is not `f64::max`.
pub(crate) fn max(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// The largest integer not above `x`, for `|x| < 2^52`.
///
/// `f64::floor` is a library call on baseline x86-64 (its instruction needs
/// SSE4.1), but a single instruction in Wasm; truncating through `i64` is
/// inline and cheap on both, so the native/Wasm speed comparison measures
/// the tracer rather than this difference.
pub(crate) fn floor(x: f64) -> f64 {
    debug_assert!(x.abs() < 4.5e15, "floor argument out of range");
    let truncated = x as i64 as f64;
    if truncated > x {
        truncated - 1.0
    } else {
        truncated
    }
}

/// `x` limited to `[lo, hi]`.
pub(crate) fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    min(max(x, lo), hi)
}

// π/2 split in two so that `x - q·π/2` loses no precision for the angles the
// tracer uses (fdlibm's `pio2_1` and `pio2_1t`).
const FRAC_PI_2_HI: f64 = 1.570_796_326_734_125_6;
const FRAC_PI_2_LO: f64 = 6.077_100_506_506_192e-11;
const FRAC_2_PI: f64 = std::f64::consts::FRAC_2_PI;

/// `(sin x, cos x)` for `|x|` up to a few thousand radians.
pub(crate) fn sin_cos(x: f64) -> (f64, f64) {
    debug_assert!(
        x.is_finite() && x.abs() < 1.0e6,
        "sin_cos argument out of range"
    );
    // Reduce to r ∈ [-π/4, π/4] in quadrant q, where short Taylor series
    // converge to full precision (the first omitted terms are below 1e-17).
    let q = floor(x * FRAC_2_PI + 0.5);
    let r = (x - q * FRAC_PI_2_HI) - q * FRAC_PI_2_LO;
    let r2 = r * r;
    let sin_r = r
        * (1.0
            + r2 * (-1.0 / 6.0
                + r2 * (1.0 / 120.0
                    + r2 * (-1.0 / 5_040.0
                        + r2 * (1.0 / 362_880.0
                            + r2 * (-1.0 / 39_916_800.0
                                + r2 * (1.0 / 6_227_020_800.0
                                    + r2 * (-1.0 / 1_307_674_368_000.0))))))));
    let cos_r = 1.0
        + r2 * (-0.5
            + r2 * (1.0 / 24.0
                + r2 * (-1.0 / 720.0
                    + r2 * (1.0 / 40_320.0
                        + r2 * (-1.0 / 3_628_800.0
                            + r2 * (1.0 / 479_001_600.0
                                + r2 * (-1.0 / 87_178_291_200.0
                                    + r2 * (1.0 / 20_922_789_888_000.0))))))));
    match (q as i64).rem_euclid(4) {
        0 => (sin_r, cos_r),
        1 => (cos_r, -sin_r),
        2 => (-sin_r, -cos_r),
        _ => (-cos_r, sin_r),
    }
}

/// `tan x` for `|x| < π/2`.
pub(crate) fn tan(x: f64) -> f64 {
    let (s, c) = sin_cos(x);
    s / c
}

const LN_2_HI: f64 = 6.931_471_803_691_238e-1;
const LN_2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// Natural logarithm of a positive, normal, finite `x`.
pub(crate) fn ln(x: f64) -> f64 {
    debug_assert!(x.is_normal() && x > 0.0, "ln argument out of range");
    // x = m · 2^e with m ∈ [√½, √2), then ln m = 2·atanh(s) with
    // s = (m−1)/(m+1), |s| ≤ 0.172, whose odd series converges quickly.
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = 1.0;
    let mut series = 0.0;
    // Summed from the smallest term up so rounding errors stay small.
    let mut powers = [0.0; 12];
    for (k, slot) in powers.iter_mut().enumerate() {
        *slot = term / (2 * k + 1) as f64;
        term *= s2;
    }
    for value in powers.iter().rev() {
        series += value;
    }
    let e = exponent as f64;
    e * LN_2_HI + (2.0 * s * series + e * LN_2_LO)
}

/// `e^x` for `x ∈ [-700, 700]`.
pub(crate) fn exp(x: f64) -> f64 {
    debug_assert!(
        x.is_finite() && x.abs() <= 700.0,
        "exp argument out of range"
    );
    // e^x = 2^k · e^r with |r| ≤ ln2/2, where a degree-13 Taylor series is
    // exact to well below one ulp.
    let k = floor(x * std::f64::consts::LOG2_E + 0.5);
    let r = (x - k * LN_2_HI) - k * LN_2_LO;
    let mut sum = 1.0;
    for n in (1..=13).rev() {
        sum = 1.0 + sum * r / n as f64;
    }
    let scale = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    sum * scale
}

/// `x^y` for positive, normal `x` and moderate `y`.
pub(crate) fn powf(x: f64, y: f64) -> f64 {
    exp(y * ln(x))
}

/// An orthonormal basis whose third axis is the unit vector `n`
/// (Duff et al. 2017, "Building an Orthonormal Basis, Revisited"): branch
/// free apart from the sign, and stable for every `n`.
pub(crate) fn basis(n: Vec3) -> (Vec3, Vec3) {
    let sign = if n.z >= 0.0 { 1.0 } else { -1.0 };
    let a = -1.0 / (sign + n.z);
    let b = n.x * n.y * a;
    let tangent = Vec3::new(1.0 + sign * n.x * n.x * a, sign * b, -sign * n.x);
    let bitangent = Vec3::new(b, sign + n.y * n.y * a, -n.y);
    (tangent, bitangent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_matches_std() {
        for i in -4000..=4000 {
            let x = i as f64 * 0.0123;
            let (s, c) = sin_cos(x);
            assert!(
                (s - x.sin()).abs() < 1e-15,
                "sin({x}) = {s}, std {}",
                x.sin()
            );
            assert!(
                (c - x.cos()).abs() < 1e-15,
                "cos({x}) = {c}, std {}",
                x.cos()
            );
        }
    }

    #[test]
    fn ln_exp_pow_match_std() {
        for i in 1..=4000 {
            let x = i as f64 * 0.00025 + 1e-4;
            let relative = |a: f64, b: f64| ((a - b) / b).abs();
            assert!(
                (ln(x) - x.ln()).abs() < 1e-15 * (1.0 + x.ln().abs()),
                "ln({x})"
            );
            assert!(
                relative(exp(-x * 3.0), (-x * 3.0).exp()) < 1e-15,
                "exp({x})"
            );
            let p = powf(x, 1.0 / 2.4);
            assert!(relative(p, x.powf(1.0 / 2.4)) < 1e-14, "pow({x})");
        }
        assert!((tan(0.3) - 0.3f64.tan()).abs() < 1e-15);
    }

    #[test]
    fn floor_matches_std() {
        for x in [
            -2.5, -2.0, -1.0e-300, -0.0, 0.0, 0.3, 1.0, 7.999_999, -7.999_999, 1.0e15,
        ] {
            assert_eq!(floor(x), x.floor(), "floor({x})");
        }
    }

    #[test]
    fn basis_is_orthonormal() {
        for n in [
            Vec3::new(0.0, 0.0, 1.0),
            Vec3::new(0.0, 0.0, -1.0),
            Vec3::new(1.0, 2.0, -3.0).normalized(),
            Vec3::new(-0.2, 0.1, 0.9).normalized(),
        ] {
            let (t, b) = basis(n);
            assert!((t.length() - 1.0).abs() < 1e-12 && (b.length() - 1.0).abs() < 1e-12);
            assert!(t.dot(b).abs() < 1e-12 && t.dot(n).abs() < 1e-12 && b.dot(n).abs() < 1e-12);
        }
    }
}

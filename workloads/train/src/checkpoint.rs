//! A run's whole state, as a safetensors file and as a Merkle root.
//!
//! The file holds, for each parameter `<p>`, the tensors `param.<p>`,
//! `adam.m.<p>` and `adam.v.<p>` (float32), and in its metadata, under the
//! one key `cairn-train`, the [`Position`] as JSON. The root's leaves are
//! the position and each tensor (its name, dimensions and little-endian
//! bytes), in name order; inner nodes hash their two children, and an odd
//! node is carried up unchanged. Leaves and nodes are hashed with BLAKE3
//! behind different prefixes, so a node can never pass for a leaf.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::{Settings, Shape};

/// The metadata key holding the position.
const METADATA_KEY: &str = "cairn-train";
/// The format this crate writes and reads.
const FORMAT: u32 = 1;
/// Most bytes a checkpoint file may have: the largest model's parameters
/// and moments, and a header.
pub const CHECKPOINT_BYTES_MAX: u64 = 3 * 4 * (crate::PARAMETERS_MAX as u64) + (1 << 20);

/// Where a run stands: what, besides the tensors, decides what it does next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// The model's dimensions, the batch, the optimiser's settings and the
    /// seed (the data order).
    pub settings: Settings,
    /// Optimiser steps taken since initialisation.
    pub steps: u64,
    /// BLAKE3 of the data the last steps read.
    pub data: [u8; 32],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionJson {
    format: u32,
    context: usize,
    embed: usize,
    hidden: usize,
    batch: usize,
    /// As Rust writes the float: it reads back exactly (a JSON number
    /// might not, by serde_json's default parser).
    learning_rate: String,
    weight_decay: String,
    seed: u64,
    steps: u64,
    data: String,
}

/// A run's state: the position and the named tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Where the run stands.
    pub position: Position,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Checkpoint {
    /// A checkpoint without tensors yet.
    pub fn new(position: Position) -> Self {
        Self {
            position,
            tensors: BTreeMap::new(),
        }
    }

    /// Adds a tensor.
    pub fn insert(&mut self, name: String, dims: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(name, (dims, values));
    }

    /// The values of tensor `name`, which must have dimensions `dims`.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<Vec<f32>, String> {
        match self.tensors.get(name) {
            Some((have, values)) if have == dims => Ok(values.clone()),
            Some((have, _)) => Err(format!(
                "the checkpoint's '{name}' is {have:?}, the model needs {dims:?}"
            )),
            None => Err(format!("the checkpoint has no '{name}'")),
        }
    }

    /// The tensor names a checkpoint of `shape` holds, with their dimensions.
    fn expected(shape: &Shape) -> BTreeMap<String, Vec<usize>> {
        let mut names = BTreeMap::new();
        for (name, dims) in shape.parameters() {
            for prefix in ["param", "adam.m", "adam.v"] {
                names.insert(format!("{prefix}.{name}"), dims.clone());
            }
        }
        names
    }

    /// The Merkle root over the position and the tensors.
    pub fn root(&self) -> [u8; 32] {
        let mut level = vec![self.position_leaf()];
        for (name, (dims, values)) in &self.tensors {
            let mut leaf = blake3::Hasher::new();
            leaf.update(&[0]);
            leaf.update(&(name.len() as u64).to_le_bytes());
            leaf.update(name.as_bytes());
            leaf.update(&(dims.len() as u64).to_le_bytes());
            for d in dims {
                leaf.update(&(*d as u64).to_le_bytes());
            }
            for v in values {
                leaf.update(&v.to_le_bytes());
            }
            level.push(*leaf.finalize().as_bytes());
        }
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => {
                        let mut node = blake3::Hasher::new();
                        node.update(&[1]);
                        node.update(left);
                        node.update(right);
                        *node.finalize().as_bytes()
                    }
                    [odd] => *odd,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
        }
        level[0]
    }

    fn position_leaf(&self) -> [u8; 32] {
        let p = &self.position;
        let s = &p.settings;
        let mut leaf = blake3::Hasher::new();
        leaf.update(&[0]);
        leaf.update(b"position");
        for n in [
            u64::from(FORMAT),
            s.shape.context as u64,
            s.shape.embed as u64,
            s.shape.hidden as u64,
            s.batch as u64,
            s.learning_rate.to_bits(),
            s.weight_decay.to_bits(),
            s.seed,
            p.steps,
        ] {
            leaf.update(&n.to_le_bytes());
        }
        leaf.update(&p.data);
        *leaf.finalize().as_bytes()
    }

    /// The checkpoint as a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let p = &self.position;
        let s = &p.settings;
        let position = serde_json::to_string(&PositionJson {
            format: FORMAT,
            context: s.shape.context,
            embed: s.shape.embed,
            hidden: s.shape.hidden,
            batch: s.batch,
            learning_rate: s.learning_rate.to_string(),
            weight_decay: s.weight_decay.to_string(),
            seed: s.seed,
            steps: p.steps,
            data: hex(&p.data),
        })
        .map_err(|e| e.to_string())?;
        let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, (dims, values))| {
                (
                    name,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    dims,
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, dims)| {
                TensorView::new(Dtype::F32, dims.to_vec(), data)
                    .map(|view| (name.as_str(), view))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One metadata key, so the header's bytes do not depend on a hash
        // map's order.
        let metadata = HashMap::from([(METADATA_KEY.to_string(), position)]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
    }

    /// A checkpoint from a file [`Checkpoint::to_bytes`] wrote: the format,
    /// the shape's bounds, every tensor's name, type and dimensions, and
    /// every value's finiteness are checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > CHECKPOINT_BYTES_MAX {
            return Err(format!(
                "a checkpoint of {} bytes is over the {CHECKPOINT_BYTES_MAX} allowed",
                bytes.len()
            ));
        }
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let position = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or("not a cairn-train checkpoint (its metadata has no 'cairn-train')")?;
        let json: PositionJson = serde_json::from_str(position)
            .map_err(|e| format!("the checkpoint's position: {e}"))?;
        if json.format != FORMAT {
            return Err(format!(
                "checkpoint format {} is not the {FORMAT} this program reads",
                json.format
            ));
        }
        let settings = Settings {
            shape: Shape {
                context: json.context,
                embed: json.embed,
                hidden: json.hidden,
            },
            batch: json.batch,
            learning_rate: float(&json.learning_rate)?,
            weight_decay: float(&json.weight_decay)?,
            seed: json.seed,
        };
        settings
            .check()
            .map_err(|e| format!("the checkpoint's settings: {e}"))?;
        if json.steps > crate::TOTAL_STEPS_MAX {
            return Err(format!(
                "the checkpoint claims {} steps, more than the {} a run may reach",
                json.steps,
                crate::TOTAL_STEPS_MAX
            ));
        }
        let shape = settings.shape;
        let data = unhex(&json.data).ok_or("the checkpoint's data digest is not 64 hex digits")?;
        let mut checkpoint = Self::new(Position {
            settings,
            steps: json.steps,
            data,
        });
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let expected = Self::expected(&shape);
        if tensors.len() != expected.len() {
            return Err(format!(
                "the checkpoint has {} tensors; a model of this shape has {}",
                tensors.len(),
                expected.len()
            ));
        }
        for (name, dims) in expected {
            let view = tensors
                .tensor(&name)
                .map_err(|_| format!("the checkpoint has no '{name}'"))?;
            if view.dtype() != Dtype::F32 || view.shape() != dims.as_slice() {
                return Err(format!(
                    "the checkpoint's '{name}' is {:?} {:?}, not F32 {dims:?}",
                    view.dtype(),
                    view.shape()
                ));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!(
                    "the checkpoint's '{name}' holds a non-finite value"
                ));
            }
            checkpoint.insert(name, dims, values);
        }
        Ok(checkpoint)
    }
}

fn float(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("the checkpoint's '{text:.40}' is not a number"))
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hexadecimal digits.
pub fn unhex(text: &str) -> Option<[u8; 32]> {
    // Lower-case digits only: one spelling per digest.
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Checkpoint {
        let shape = Shape {
            context: 2,
            embed: 3,
            hidden: 4,
        };
        let mut c = Checkpoint::new(Position {
            settings: Settings {
                shape,
                seed: 6,
                ..Settings::default()
            },
            steps: 5,
            data: [7; 32],
        });
        for (name, dims) in Checkpoint::expected(&shape) {
            let n: usize = dims.iter().product();
            let values = (0..n).map(|i| i as f32 * 0.5 - name.len() as f32).collect();
            c.insert(name, dims, values);
        }
        c
    }

    #[test]
    fn a_checkpoint_reads_back_whole_and_its_root_moves_with_any_change() {
        let c = small();
        let bytes = c.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.root(), c.root());
        assert_eq!(
            c.to_bytes().unwrap(),
            bytes,
            "the same state, the same bytes"
        );

        let mut steps = c.clone();
        steps.position.steps += 1;
        assert_ne!(steps.root(), c.root(), "the step count is committed");
        let mut data = c.clone();
        data.position.data[0] ^= 1;
        assert_ne!(data.root(), c.root(), "the data is committed");
        let mut rate = c.clone();
        rate.position.settings.learning_rate *= 2.0;
        assert_ne!(rate.root(), c.root(), "the learning rate is committed");
        let mut nudged = c.clone();
        let (dims, mut values) = nudged.tensors["adam.v.out.bias"].clone();
        values[3] = f32::from_bits(values[3].to_bits() + 1);
        nudged.insert("adam.v.out.bias".into(), dims, values);
        assert_ne!(nudged.root(), c.root(), "one ulp of the optimiser state");
    }

    #[test]
    fn damaged_or_foreign_checkpoints_are_refused() {
        let c = small();
        let bytes = c.to_bytes().unwrap();
        assert!(Checkpoint::from_bytes(&bytes[..bytes.len() - 4]).is_err());
        assert!(Checkpoint::from_bytes(b"not safetensors").is_err());

        let mut missing = c.clone();
        missing.tensors.remove("param.embed");
        let err = Checkpoint::from_bytes(&missing.to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("tensors"), "{err}");

        let mut reshaped = c.clone();
        reshaped.insert("param.embed".into(), vec![1, 2], vec![0.0; 2]);
        let err = Checkpoint::from_bytes(&reshaped.to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("param.embed"), "{err}");

        let mut nan = c.clone();
        let (dims, mut values) = nan.tensors["param.hidden.bias"].clone();
        values[0] = f32::NAN;
        nan.insert("param.hidden.bias".into(), dims, values);
        let err = Checkpoint::from_bytes(&nan.to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("non-finite"), "{err}");

        let mut huge = c.clone();
        huge.position.settings.shape.hidden = usize::MAX / 4;
        let err = Checkpoint::from_bytes(&huge.to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("hidden width"), "{err}");
        let mut rate = c;
        rate.position.settings.learning_rate = 5.0;
        let err = Checkpoint::from_bytes(&rate.to_bytes().unwrap()).unwrap_err();
        assert!(err.contains("learning rate"), "{err}");
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_a_digest() {
        let d = [0xab; 32];
        assert_eq!(unhex(&hex(&d)), Some(d));
        assert_eq!(unhex("ab"), None);
        assert_eq!(unhex(&"zz".repeat(32)), None);
        assert_eq!(unhex(&"é".repeat(32)), None);
        assert_eq!(unhex(&"AB".repeat(32)), None, "one spelling");
        assert_eq!(unhex(&format!("+f{}", "ab".repeat(31))), None);
    }
}

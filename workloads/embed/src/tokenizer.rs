//! BERT's uncased WordPiece tokenizer, as Hugging Face's `BertTokenizer`
//! does it (`do_lower_case`, Chinese characters split, accents stripped).
//!
//! Written here rather than taken from the `tokenizers` crate, whose
//! dependency tree (regex engines, rayon, serde models for every tokenizer
//! family) would dwarf the model in the guest; this is the one algorithm
//! all-MiniLM-L6-v2 needs. The tests compare its ids with Hugging Face's.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// A vocabulary file larger than this is refused before it is parsed.
pub const VOCAB_BYTES_MAX: usize = 8 << 20;
/// Entries a vocabulary may hold (BERT's has 30,522).
pub const VOCAB_ENTRIES_MAX: usize = 1 << 20;
/// Words longer than this (in characters) become `[UNK]`, as in BERT.
const WORD_CHARS_MAX: usize = 100;

/// Ids of the tokens every sequence needs.
#[derive(Clone, Copy, Debug)]
struct Special {
    cls: u32,
    sep: u32,
    unk: u32,
}

/// An uncased WordPiece tokenizer read from a `vocab.txt`.
#[derive(Debug)]
pub struct Tokenizer {
    ids: HashMap<String, u32>,
    /// Lines read: one more than the largest id.
    entries: usize,
    special: Special,
}

/// A text's token ids, `[CLS] … [SEP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    /// The ids, at most the length asked for.
    pub ids: Vec<u32>,
    /// Whether ids were cut off to fit.
    pub truncated: bool,
}

impl Tokenizer {
    /// Reads a vocabulary: one token per line, its id its line number.
    pub fn from_vocab(text: &str) -> Result<Self, String> {
        if text.len() > VOCAB_BYTES_MAX {
            return Err(format!(
                "the vocabulary is {} bytes, more than the {VOCAB_BYTES_MAX} allowed",
                text.len()
            ));
        }
        let mut ids = HashMap::new();
        let mut entries = 0;
        for (line, token) in text.lines().enumerate() {
            entries = line + 1;
            if line >= VOCAB_ENTRIES_MAX {
                return Err(format!(
                    "the vocabulary has more than {VOCAB_ENTRIES_MAX} entries"
                ));
            }
            // The first of two equal lines keeps its id, as in BERT's loader.
            ids.entry(token.to_string()).or_insert(line as u32);
        }
        let id = |token: &str| {
            ids.get(token)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {token} token"))
        };
        let special = Special {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            unk: id("[UNK]")?,
        };
        Ok(Self {
            ids,
            entries,
            special,
        })
    }

    /// The number of entries (lines), one more than the largest id.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Encodes `text` as `[CLS] pieces… [SEP]`, at most `max_len` ids
    /// (at least 2); pieces that do not fit are dropped, as
    /// sentence-transformers truncates to its `max_seq_length`.
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let room = max_len.max(2) - 2;
        let mut ids = vec![self.special.cls];
        let mut truncated = false;
        'words: for word in basic_tokens(text) {
            for id in self.word_pieces(&word) {
                if ids.len() - 1 == room {
                    truncated = true;
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.special.sep);
        Encoding { ids, truncated }
    }

    /// WordPiece: the longest known prefix, then the longest known `##`
    /// continuation, and so on; a word with a part no entry matches is
    /// `[UNK]` as a whole.
    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > WORD_CHARS_MAX {
            return vec![self.special.unk];
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut candidate = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.extend(&chars[start..end]);
                if let Some(&id) = self.ids.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.special.unk],
            }
            start = end;
        }
        pieces
    }
}

/// BERT's basic tokenizer: cleaned, Chinese characters set apart,
/// lower-cased without accents, split at whitespace and punctuation.
fn basic_tokens(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_chinese(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    let mut tokens = Vec::new();
    for word in cleaned.split(' ').filter(|w| !w.is_empty()) {
        let lowered: String = word
            .to_lowercase()
            .nfd()
            .filter(|&c| c.general_category() != GeneralCategory::NonspacingMark)
            .collect();
        let mut current = String::new();
        for c in lowered.chars() {
            if is_punctuation(c) {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                tokens.push(c.to_string());
            } else {
                current.push(c);
            }
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    tokens
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.general_category() == GeneralCategory::SpaceSeparator
}

fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// ASCII symbols count as punctuation too, as in BERT (`$`, `^`, `` ` ``).
fn is_punctuation(c: char) -> bool {
    matches!(c as u32, 33..=47 | 58..=64 | 91..=96 | 123..=126)
        || c.general_category_group() == GeneralCategoryGroup::Punctuation
}

/// The CJK Unified Ideographs blocks, as BERT lists them.
fn is_chinese(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Tokenizer {
        let entries = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "un", "##aff", "##able", ",",
            "!", "cafe", "中", "$", "5",
        ];
        Tokenizer::from_vocab(&entries.join("\n")).unwrap()
    }

    #[test]
    fn words_split_into_the_longest_known_pieces() {
        let t = vocab();
        assert_eq!(
            t.encode("The cat, unaffable!", 64).ids,
            [2, 4, 5, 10, 7, 8, 9, 11, 3]
        );
    }

    #[test]
    fn accents_case_controls_and_chinese_characters_are_normalised() {
        let t = vocab();
        assert_eq!(t.encode("CAFÉ\u{0007}中$5", 64).ids, [2, 12, 13, 14, 15, 3]);
    }

    #[test]
    fn a_word_with_an_unknown_part_is_one_unknown_token() {
        let t = vocab();
        assert_eq!(t.encode("unknowable cat", 64).ids, [2, 1, 5, 3]);
        let long = "a".repeat(WORD_CHARS_MAX + 1);
        assert_eq!(t.encode(&long, 64).ids, [2, 1, 3]);
    }

    #[test]
    fn long_texts_are_cut_to_the_length_asked_for() {
        let t = vocab();
        let encoding = t.encode("the cat sat the cat sat", 5);
        assert_eq!(encoding.ids, [2, 4, 5, 6, 3]);
        assert!(encoding.truncated);
        assert!(!t.encode("the cat", 5).truncated);
        assert_eq!(t.encode("", 5).ids, [2, 3]);
    }

    #[test]
    fn a_vocabulary_without_its_special_tokens_is_refused() {
        let error = Tokenizer::from_vocab("[PAD]\n[CLS]\n[SEP]").unwrap_err();
        assert!(error.contains("[UNK]"), "{error}");
    }
}

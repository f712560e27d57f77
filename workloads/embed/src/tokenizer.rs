//! BERT's uncased WordPiece tokenizer, as Hugging Face's fast
//! `BertWordPieceTokenizer` (what sentence-transformers runs) does it:
//! special tokens written in the text kept whole, the text cleaned, Chinese
//! characters split, lower-cased a character at a time, accents stripped.
//!
//! Written here rather than taken from the `tokenizers` crate, whose
//! dependency tree (regex engines, rayon, serde models for every tokenizer
//! family) would dwarf the model in the guest; this is the one algorithm
//! all-MiniLM-L6-v2 needs. The tests compare its ids with Hugging Face's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// A vocabulary file larger than this is refused before it is parsed.
pub const VOCAB_BYTES_MAX: usize = 8 << 20;
/// Entries a vocabulary may hold (BERT's has 30,522).
pub const VOCAB_ENTRIES_MAX: usize = 1 << 20;
/// Words longer than this (in characters) become `[UNK]`, as in BERT.
const WORD_CHARS_MAX: usize = 100;

/// A hash map with fixed keys: the guest's default hasher is seeded from
/// the task's seed, which would make the fuel a task uses (probe lengths)
/// depend on it.
type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// The special tokens matched whole where the text writes them, as Hugging
/// Face's tokenizers do (case-sensitive, before any normalisation).
const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

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
    ids: FixedMap<String, u32>,
    /// Lines read: one more than the largest id.
    entries: usize,
    special: Special,
    /// The special tokens the vocabulary has, with their ids.
    specials: Vec<(&'static str, u32)>,
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
        let mut ids = FixedMap::default();
        let mut entries = 0;
        for (line, token) in text.lines().enumerate() {
            entries = line + 1;
            if line >= VOCAB_ENTRIES_MAX {
                return Err(format!(
                    "the vocabulary has more than {VOCAB_ENTRIES_MAX} entries"
                ));
            }
            // Trailing whitespace is not part of a token, and the last of
            // two equal lines gives the id, as Hugging Face's loaders read.
            ids.insert(token.trim_end().to_string(), line as u32);
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
        let specials = SPECIAL_TOKENS
            .iter()
            .filter_map(|&token| Some((token, *ids.get(token)?)))
            .collect();
        Ok(Self {
            ids,
            entries,
            special,
            specials,
        })
    }

    /// The number of entries (lines), one more than the largest id.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Encodes `text` as `[CLS] pieces… [SEP]`, at most `max_len` ids
    /// (at least 2); pieces that do not fit are dropped, as
    /// sentence-transformers truncates to its `max_seq_length`. Words are
    /// read one at a time and reading stops when the sequence is full, so a
    /// long text costs no more memory than its first `max_len` tokens.
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let room = max_len.max(2) - 2;
        let mut ids = vec![self.special.cls];
        let mut truncated = false;
        let mut push = |id: u32, ids: &mut Vec<u32>| {
            if ids.len() - 1 == room {
                truncated = true;
                return false;
            }
            ids.push(id);
            true
        };
        'text: for segment in self.split_specials(text) {
            match segment {
                Segment::Special(id) => {
                    if !push(id, &mut ids) {
                        break 'text;
                    }
                }
                Segment::Text(text) => {
                    for word in basic_words(text) {
                        for id in self.word_pieces(&word) {
                            if !push(id, &mut ids) {
                                break 'text;
                            }
                        }
                    }
                }
            }
        }
        ids.push(self.special.sep);
        Encoding { ids, truncated }
    }

    /// `text` cut at each special token it writes out whole.
    fn split_specials<'t>(&self, mut text: &'t str) -> impl Iterator<Item = Segment<'t>> {
        let specials = &self.specials;
        let mut pending = None;
        std::iter::from_fn(move || {
            if let Some(id) = pending.take() {
                return Some(Segment::Special(id));
            }
            if text.is_empty() {
                return None;
            }
            let found = specials
                .iter()
                .filter_map(|&(token, id)| Some((text.find(token)?, token.len(), id)))
                .min_by_key(|&(at, _, _)| at);
            let (before, rest) = match found {
                Some((at, len, id)) => {
                    pending = Some(id);
                    (&text[..at], &text[at + len..])
                }
                None => (text, ""),
            };
            text = rest;
            Some(Segment::Text(before))
        })
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

/// A piece of a text: plain text, or a special token written out whole.
enum Segment<'t> {
    Text(&'t str),
    Special(u32),
}

/// BERT's basic tokenizer, one word at a time: the text cleaned (control
/// characters dropped, whitespace made spaces), Chinese characters set
/// apart, each word lower-cased without accents and split at punctuation.
fn basic_words(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = text.chars().peekable();
    let mut queue = std::collections::VecDeque::new();
    std::iter::from_fn(move || {
        loop {
            if let Some(word) = queue.pop_front() {
                return Some(word);
            }
            // The next whitespace-separated word, cleaned; a Chinese
            // character is a word by itself.
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    chars.next();
                    continue;
                }
                if c.is_whitespace() {
                    chars.next();
                    if word.is_empty() {
                        continue;
                    }
                    break;
                }
                if is_chinese(c) {
                    if word.is_empty() {
                        chars.next();
                        word.push(c);
                    }
                    break;
                }
                chars.next();
                word.push(c);
            }
            if word.is_empty() {
                return None;
            }
            split_punctuation(&normalise(&word), &mut queue);
        }
    })
}

/// Lower-cased a character at a time (as Hugging Face's fast normaliser
/// does: no final-sigma rule), decomposed, and stripped of accents.
fn normalise(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .nfd()
        .filter(|&c| c.general_category() != GeneralCategory::NonspacingMark)
        .collect()
}

/// `word` split so that each punctuation character is a word of its own.
fn split_punctuation(word: &str, out: &mut std::collections::VecDeque<String>) {
    let mut current = String::new();
    for c in word.chars() {
        if is_punctuation(c) {
            if !current.is_empty() {
                out.push_back(std::mem::take(&mut current));
            }
            out.push_back(c.to_string());
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        out.push_back(current);
    }
}

/// Every "other" category, as BERT's cleaning drops (tab, newline and
/// carriage return are whitespace instead).
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.general_category_group() == GeneralCategoryGroup::Other
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
    fn a_huge_line_is_read_only_as_far_as_the_model_reads() {
        let t = vocab();
        let line = "the, ".repeat(1 << 20);
        let encoding = t.encode(&line, 6);
        assert_eq!(encoding.ids, [2, 4, 10, 4, 10, 3]);
        assert!(encoding.truncated);
    }

    #[test]
    fn special_tokens_written_in_the_text_are_kept_whole_and_case_matters() {
        let t =
            Tokenizer::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncat\n[\n]\nmask").unwrap();
        assert_eq!(
            t.encode("cat[MASK]cat [mask]", 64).ids,
            [2, 5, 4, 5, 6, 8, 7, 3]
        );
    }

    #[test]
    fn a_vocabulary_without_its_special_tokens_is_refused() {
        let error = Tokenizer::from_vocab("[PAD]\n[CLS]\n[SEP]").unwrap_err();
        assert!(error.contains("[UNK]"), "{error}");
    }
}

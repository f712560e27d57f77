//! Per-task argument templates: `{task}` is replaced by the task's value and
//! `{task:04}` by the value zero-padded to four digits; in a job split into
//! tiles, `{tile}` by the tile's name suffix and `{border}` by its rectangle
//! (`crate::tiles`; in a job that is not, by nothing and by the whole
//! frame); `{{` and `}}` are literal braces. Anything else in braces is an
//! error, so a typo such as `{tsak}` is caught when the job loads, not when
//! a task misbehaves.

use crate::tiles::{BORDER_LEN_MAX, SUFFIX_LEN_MAX, Tile, WHOLE_BORDER};

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Task { width: usize },
    Tile,
    Border,
}

/// The widest zero padding accepted; wider is surely a mistake.
const WIDTH_MAX: usize = 20;

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed '{{' in \"{text}\"")),
                        }
                    }
                    let piece = match name.as_str() {
                        "task" => Piece::Task { width: 0 },
                        "tile" => Piece::Tile,
                        "border" => Piece::Border,
                        _ => match name.strip_prefix("task:0") {
                            Some(digits) => match digits.parse::<usize>() {
                                Ok(width) if (1..=WIDTH_MAX).contains(&width) => {
                                    Piece::Task { width }
                                }
                                _ => return Err(bad_placeholder(&name)),
                            },
                            None => return Err(bad_placeholder(&name)),
                        },
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                '}' => return Err(format!("unmatched '}}' in \"{text}\" (write '}}}}')")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self(pieces))
    }

    /// The most bytes any rendering can take: a `u64` has at most 20 digits.
    pub(crate) fn rendered_len_max(&self) -> u64 {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.len() as u64,
                Piece::Task { width } => (*width).max(20) as u64,
                Piece::Tile => SUFFIX_LEN_MAX,
                Piece::Border => BORDER_LEN_MAX,
            })
            .sum()
    }

    /// The text for the task of value `task`, and its tile in a tiled job.
    pub(crate) fn render(&self, task: u64, tile: Option<Tile>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Task { width } => out.push_str(&format!("{task:0width$}")),
                Piece::Tile => out.push_str(&tile.map(Tile::suffix).unwrap_or_default()),
                Piece::Border => match tile {
                    Some(tile) => out.push_str(&tile.border()),
                    None => out.push_str(WHOLE_BORDER),
                },
            }
        }
        out
    }
}

fn bad_placeholder(name: &str) -> String {
    format!(
        "unknown placeholder '{{{name}}}': expected '{{task}}', '{{task:0N}}' with N in 1..={WIDTH_MAX}, \
         '{{tile}}' or '{{border}}'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_pads() {
        let t = Template::parse("/output/frame-{task:04}.png").unwrap();
        assert_eq!(t.render(7, None), "/output/frame-0007.png");
        assert_eq!(
            Template::parse("{task}").unwrap().render(12345, None),
            "12345"
        );
        assert_eq!(
            Template::parse("{{task}}").unwrap().render(1, None),
            "{task}"
        );
        assert_eq!(
            Template::parse("f-{task}-{task:05}")
                .unwrap()
                .rendered_len_max(),
            2 + 20 + 1 + 20
        );
    }

    #[test]
    fn a_tile_renders_its_suffix_and_border_and_a_whole_frame_neither() {
        use crate::tiles::Grid;
        let out = Template::parse("frame-{task:04}{tile}.bmp").unwrap();
        let border = Template::parse("{border}").unwrap();
        let tile = Grid { cols: 16, rows: 16 }.tiles().last().unwrap();
        assert_eq!(out.render(3, None), "frame-0003.bmp");
        assert_eq!(
            out.render(3, Some(tile)),
            "frame-0003-tile-15-15-of-16x16.bmp"
        );
        assert_eq!(border.render(3, None), "0,1,0,1");
        assert_eq!(border.render(3, Some(tile)), "0.9375,1,0,0.0625");
        // The bound holds for the longest suffix and the longest fractions.
        assert_eq!(tile.suffix().len() as u64, SUFFIX_LEN_MAX);
        let thirds = Grid { cols: 3, rows: 3 }.tiles().nth(4).unwrap();
        assert!(thirds.border().len() as u64 <= BORDER_LEN_MAX);
    }

    #[test]
    fn rejects_typos() {
        assert!(
            Template::parse("{tsak}")
                .unwrap_err()
                .contains("unknown placeholder '{tsak}'")
        );
        assert!(Template::parse("{task").unwrap_err().contains("unclosed"));
        assert!(Template::parse("a}b").unwrap_err().contains("unmatched"));
        assert!(Template::parse("{task:099}").is_err());
    }
}

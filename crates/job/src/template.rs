//! Per-task argument templates: `{task}` is replaced by the task's value and
//! `{task:04}` by the value zero-padded to four digits; `{{` and `}}` are
//! literal braces. Anything else in braces is an error, so a typo such as
//! `{tsak}` is caught when the job loads, not when a task misbehaves.

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Task { width: usize },
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
                    let width = match name.as_str() {
                        "task" => 0,
                        _ => match name.strip_prefix("task:0") {
                            Some(digits) => match digits.parse::<usize>() {
                                Ok(width) if (1..=WIDTH_MAX).contains(&width) => width,
                                _ => return Err(bad_placeholder(&name)),
                            },
                            None => return Err(bad_placeholder(&name)),
                        },
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Task { width });
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
            })
            .sum()
    }

    pub(crate) fn render(&self, task: u64) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Task { width } => out.push_str(&format!("{task:0width$}")),
            }
        }
        out
    }
}

fn bad_placeholder(name: &str) -> String {
    format!(
        "unknown placeholder '{{{name}}}': expected '{{task}}' or '{{task:0N}}' with N in 1..={WIDTH_MAX}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_pads() {
        let t = Template::parse("/output/frame-{task:04}.png").unwrap();
        assert_eq!(t.render(7), "/output/frame-0007.png");
        assert_eq!(Template::parse("{task}").unwrap().render(12345), "12345");
        assert_eq!(Template::parse("{{task}}").unwrap().render(1), "{task}");
        assert_eq!(
            Template::parse("f-{task}-{task:05}")
                .unwrap()
                .rendered_len_max(),
            2 + 20 + 1 + 20
        );
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

//! Lexer and recursive-descent parser for flow expressions. Spans are byte offsets into
//! the expression text; the loader shifts them to file positions.

use std::ops::Range;

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 8 * 1024;
/// Deepest function-call nesting accepted; keeps evaluation recursion bounded.
pub const MAX_DEPTH: usize = 32;

/// Parsed, not yet checked, expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Str(String, Range<usize>),
    Int(i64, Range<usize>),
    Bool(bool, Range<usize>),
    Null(Range<usize>),
    Attr(String, Range<usize>),
    Call {
        name: String,
        span: Range<usize>,
        args: Vec<Ast>,
    },
}

impl Ast {
    pub fn span(&self) -> Range<usize> {
        match self {
            Ast::Str(_, s) | Ast::Int(_, s) | Ast::Bool(_, s) | Ast::Null(s) | Ast::Attr(_, s) => {
                s.clone()
            }
            Ast::Call { span, .. } => span.clone(),
        }
    }
}

/// A syntax error at a byte offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Int(i64),
    Attr(String),
    Ident(String),
    LParen,
    RParen,
    Comma,
    End,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            offset,
            message: message.into(),
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Next token and its span.
    fn next(&mut self) -> Result<(Tok, Range<usize>), SyntaxError> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok((Tok::End, start..start));
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '"' => Tok::Str(self.string(start)?),
            '[' => {
                let mut name = String::new();
                loop {
                    match self.bump() {
                        Some(']') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                            name.push(c)
                        }
                        Some(_) => {
                            let at = self.pos
                                - self
                                    .src
                                    .get(..self.pos)
                                    .and_then(|s| s.chars().next_back())
                                    .map_or(0, char::len_utf8);
                            return Err(self.err(
                                at,
                                "attribute names may contain only letters, digits, '-' and '_'",
                            ));
                        }
                        None => {
                            return Err(
                                self.err(start, "unterminated attribute reference, expected ']'")
                            )
                        }
                    }
                }
                if name.is_empty() {
                    return Err(self.err(start, "empty attribute reference []"));
                }
                Tok::Attr(name)
            }
            c if c.is_ascii_digit()
                || (c == '-' && self.peek_char().is_some_and(|d| d.is_ascii_digit())) =>
            {
                while self.peek_char().is_some_and(|d| d.is_ascii_digit()) {
                    self.bump();
                }
                let text = self.src.get(start..self.pos).unwrap_or("");
                let n = text
                    .parse()
                    .map_err(|_| self.err(start, format!("integer {text} is out of range")))?;
                Tok::Int(n)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .peek_char()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || d == '_')
                {
                    self.bump();
                }
                Tok::Ident(self.src.get(start..self.pos).unwrap_or("").to_string())
            }
            other => return Err(self.err(start, format!("unexpected character {other:?}"))),
        };
        Ok((tok, start..self.pos))
    }

    /// Body of a string literal after its opening quote.
    fn string(&mut self, start: usize) -> Result<String, SyntaxError> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(self.err(start, "unterminated string literal")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    _ => return Err(self.err(at, "unknown escape; use \\\" \\\\ \\n \\r or \\t")),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Tok,
    span: Range<usize>,
}

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), SyntaxError> {
        (self.tok, self.span) = self.lexer.next()?;
        Ok(())
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), SyntaxError> {
        if &self.tok == want {
            self.advance()
        } else {
            Err(self.lexer.err(self.span.start, format!("expected {what}")))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Ast, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.lexer.err(
                self.span.start,
                format!("expression nested deeper than {MAX_DEPTH} calls"),
            ));
        }
        let span = self.span.clone();
        let tok = std::mem::replace(&mut self.tok, Tok::End);
        self.advance()?;
        Ok(match tok {
            Tok::Str(s) => Ast::Str(s, span),
            Tok::Int(i) => Ast::Int(i, span),
            Tok::Attr(a) => Ast::Attr(a, span),
            Tok::Ident(id) if self.tok != Tok::LParen => match id.to_ascii_lowercase().as_str() {
                "true" => Ast::Bool(true, span),
                "false" => Ast::Bool(false, span),
                "null" => Ast::Null(span),
                _ => {
                    return Err(self.lexer.err(
                        span.start,
                        format!(
                        "unknown name {id:?}; attributes are written [{id}], functions need (...)"
                    ),
                    ))
                }
            },
            Tok::Ident(name) => {
                self.advance()?;
                let mut args = Vec::new();
                if self.tok != Tok::RParen {
                    loop {
                        args.push(self.expr(depth + 1)?);
                        if self.tok != Tok::Comma {
                            break;
                        }
                        self.advance()?;
                    }
                }
                let end = self.span.end;
                self.expect(&Tok::RParen, "',' or ')'")?;
                Ast::Call {
                    name,
                    span: span.start..end,
                    args,
                }
            }
            _ => {
                return Err(self
                    .lexer
                    .err(span.start, "expected a value, [attribute] or function call"))
            }
        })
    }
}

/// Parses one expression; the whole input must be consumed.
pub fn parse(src: &str) -> Result<Ast, SyntaxError> {
    if src.len() > MAX_EXPR_LEN {
        return Err(SyntaxError {
            offset: 0,
            message: format!("expression longer than {MAX_EXPR_LEN} bytes"),
        });
    }
    let mut lexer = Lexer { src, pos: 0 };
    let (tok, span) = lexer.next()?;
    let mut p = Parser { lexer, tok, span };
    let ast = p.expr(0)?;
    if p.tok != Tok::End {
        return Err(p
            .lexer
            .err(p.span.start, "unexpected text after the expression"));
    }
    Ok(ast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_literals_and_attributes() {
        let ast = parse(r#"Join(" \"x\"", [givenName], -3, true, null)"#).unwrap();
        let Ast::Call { name, span, args } = ast else {
            panic!("not a call")
        };
        assert_eq!(name, "Join");
        assert_eq!(span, 0..43);
        assert_eq!(args[0], Ast::Str(" \"x\"".into(), 5..13));
        assert_eq!(args[1], Ast::Attr("givenName".into(), 15..26));
        assert_eq!(args[2], Ast::Int(-3, 28..30));
        assert_eq!(args[3], Ast::Bool(true, 32..36));
        assert_eq!(args[4], Ast::Null(38..42));
        assert_eq!(
            parse("F()").unwrap(),
            Ast::Call {
                name: "F".into(),
                span: 0..3,
                args: vec![]
            }
        );
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let e = |s: &str| parse(s).unwrap_err();
        assert_eq!(e("Join(\"a\" [x])").offset, 9);
        assert_eq!(e("Join(\"a\" [x])").message, "expected ',' or ')'");
        assert_eq!(e("\"abc").offset, 0);
        assert_eq!(e("[a b]").offset, 2);
        assert_eq!(e("[]").message, "empty attribute reference []");
        assert_eq!(
            e("x").message,
            "unknown name \"x\"; attributes are written [x], functions need (...)"
        );
        assert_eq!(e("1 2").offset, 2);
        assert_eq!(
            e("99999999999999999999").message,
            "integer 99999999999999999999 is out of range"
        );
        assert_eq!(e("\"\\q\"").offset, 1);
        assert_eq!(
            e("").message,
            "expected a value, [attribute] or function call"
        );
        let deep = format!(
            "{}1{}",
            "F(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(e(&deep).message.contains("nested deeper"));
        assert!(e(&"1".repeat(MAX_EXPR_LEN + 1))
            .message
            .contains("longer than"));
    }
}

//! The FHIRPath subset the anonymizer's configurations use, parsed once at load.
//!
//! Grammar (precedence from loosest to tightest, as in FHIRPath N1):
//! `or`/`xor` < `and` < `in`/`contains` < `=`/`!=` < `<`/`<=`/`>`/`>=` < `|` < `as` <
//! `+`/`-`/`&` < `*`/`/`/`div`/`mod` < `.` invocation. Terms: `'string'`, numbers, `true`,
//! `false`, `@date[Ttime]`, `$this`, identifiers (a backtick-quoted one too), `( ... )` and the
//! functions of [`Function`]. Anything else (`implies`, `is`, `~`, indexers, other functions,
//! `%variables`) is refused with a reason, so a configuration never runs half understood.

use std::fmt;

/// The deepest nesting accepted, so that a hostile configuration cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::deid) enum Expr {
    /// `$this`.
    This,
    /// A literal.
    Literal(Literal),
    /// `name`, or `on.name`.
    Member(Option<Box<Expr>>, String),
    /// `f(...)`, or `on.f(...)`.
    Call(Option<Box<Expr>>, Function),
    /// `left op right`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `expr as Type`.
    As(Box<Expr>, String),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::deid) enum Literal {
    /// `'text'`.
    String(String),
    /// A number, as written (it is checked to parse).
    Number(String),
    /// `true` or `false`.
    Boolean(bool),
    /// `@2020-01-01T00:00:00Z`, without the `@`.
    Date(String),
}

/// The functions of the subset.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::deid) enum Function {
    /// `nodesByType('T')`: descendants of type `T` (the anonymizer's extension).
    NodesByType(String),
    /// `nodesByName('n')`: descendants called `n` (the anonymizer's extension).
    NodesByName(String),
    /// `ofType(T)`.
    OfType(String),
    /// `as(T)`.
    As(String),
    /// `where(criteria)`.
    Where(Box<Expr>),
    /// `exists()` or `exists(criteria)`.
    Exists(Option<Box<Expr>>),
    /// `empty()`.
    Empty,
    /// `not()`.
    Not,
    /// `startsWith(prefix)`.
    StartsWith(Box<Expr>),
    /// `endsWith(suffix)`.
    EndsWith(Box<Expr>),
    /// `contains(text)`.
    Contains(Box<Expr>),
    /// `matches(regex)`.
    Matches(Box<Expr>),
    /// `replaceMatches(regex, substitution)`.
    ReplaceMatches(Box<Expr>, Box<Expr>),
    /// `substring(start[, length])`.
    Substring(Box<Expr>, Option<Box<Expr>>),
}

/// The binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::deid) enum BinaryOp {
    Or,
    Xor,
    And,
    In,
    Contains,
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Union,
    Add,
    Subtract,
    Concatenate,
    Multiply,
    Divide,
    Div,
    Mod,
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
            BinaryOp::And => "and",
            BinaryOp::In => "in",
            BinaryOp::Contains => "contains",
            BinaryOp::Equal => "=",
            BinaryOp::NotEqual => "!=",
            BinaryOp::Less => "<",
            BinaryOp::LessOrEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterOrEqual => ">=",
            BinaryOp::Union => "|",
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Concatenate => "&",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Div => "div",
            BinaryOp::Mod => "mod",
        }
    }
}

/// Parses `text`; the error says what is outside the subset.
pub(in crate::deid) fn parse(text: &str) -> Result<Expr, String> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let expr = parser.expression(0)?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(format!("unexpected {token}")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Date(String),
    This,
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(name) => write!(f, "`{name}`"),
            Token::Str(_) => f.write_str("a string"),
            Token::Num(n) => write!(f, "number {n}"),
            Token::Date(d) => write!(f, "@{d}"),
            Token::This => f.write_str("$this"),
            Token::Symbol(s) => write!(f, "'{s}'"),
        }
    }
}

const SYMBOLS: [&str; 16] = [
    "!=", "<=", ">=", "(", ")", ",", ".", "|", "=", "<", ">", "+", "-", "&", "*", "/",
];

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '`' {
            let (content, next) = quoted(&chars, i)?;
            tokens.push(if c == '\'' {
                Token::Str(content)
            } else {
                Token::Ident(content)
            });
            i = next;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                // A dot not followed by a digit is an invocation (`1.toString()`).
                if chars[i] == '.' && !chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                    break;
                }
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            number
                .parse::<f64>()
                .map_err(|_| format!("number {number}"))?;
            tokens.push(Token::Num(number));
        } else if c == '@' {
            let start = i + 1;
            i = start;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "-:.+".contains(chars[i]))
            {
                i += 1;
            }
            let date: String = chars[start..i].iter().collect();
            if !date.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("date literal @{date}"));
            }
            tokens.push(Token::Date(date));
        } else if c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name != "$this" {
                return Err(format!("{name} (only $this is supported)"));
            }
            tokens.push(Token::This);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| format!("character '{c}'"))?;
            tokens.push(Token::Symbol(symbol));
            i += symbol.chars().count();
        }
    }
    Ok(tokens)
}

/// The content of the quoted text starting at `start`, and the index after its closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let escaped = chars.get(i + 1).ok_or("an unfinished escape")?;
                out.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'f' => '\u{c}',
                    other => *other,
                });
                i += 2;
            }
            c if c == quote => return Ok((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("an unterminated quote".to_string())
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// The binary operators by level, loosest first; `as` sits between `|` and `+`.
const LEVELS: [&[(&str, BinaryOp)]; 8] = [
    &[("or", BinaryOp::Or), ("xor", BinaryOp::Xor)],
    &[("and", BinaryOp::And)],
    &[("in", BinaryOp::In), ("contains", BinaryOp::Contains)],
    &[("=", BinaryOp::Equal), ("!=", BinaryOp::NotEqual)],
    &[
        ("<", BinaryOp::Less),
        ("<=", BinaryOp::LessOrEqual),
        (">", BinaryOp::Greater),
        (">=", BinaryOp::GreaterOrEqual),
    ],
    &[("|", BinaryOp::Union)],
    &[
        ("+", BinaryOp::Add),
        ("-", BinaryOp::Subtract),
        ("&", BinaryOp::Concatenate),
    ],
    &[
        ("*", BinaryOp::Multiply),
        ("/", BinaryOp::Divide),
        ("div", BinaryOp::Div),
        ("mod", BinaryOp::Mod),
    ],
];

/// The level of `as` (after `|`, before `+`).
const AS_LEVEL: usize = 6;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, symbol: &str) -> Result<(), String> {
        match self.next() {
            Some(Token::Symbol(s)) if s == symbol => Ok(()),
            Some(other) => Err(format!("expected '{symbol}', found {other}")),
            None => Err(format!("expected '{symbol}' at the end")),
        }
    }

    fn operator_at(&self, level: usize) -> Option<BinaryOp> {
        let text = match self.peek()? {
            Token::Symbol(s) => *s,
            Token::Ident(name) => name.as_str(),
            _ => return None,
        };
        LEVELS[level]
            .iter()
            .find(|(symbol, _)| *symbol == text)
            .map(|(_, op)| *op)
    }

    fn expression(&mut self, level: usize) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let result = self.level(level);
        self.depth -= 1;
        result
    }

    fn level(&mut self, level: usize) -> Result<Expr, String> {
        if level == AS_LEVEL {
            let mut left = self.expression(level + 1)?;
            while matches!(self.peek(), Some(Token::Ident(k)) if k == "as" || k == "is") {
                if matches!(self.next(), Some(Token::Ident(k)) if k == "is") {
                    return Err("the `is` operator".into());
                }
                left = Expr::As(Box::new(left), self.type_name()?);
            }
            return Ok(left);
        }
        if level > LEVELS.len() {
            return self.invocation();
        }
        let index = if level > AS_LEVEL { level - 1 } else { level };
        let mut left = self.expression(level + 1)?;
        while let Some(op) = self.operator_at(index) {
            self.at += 1;
            let right = self.expression(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        if matches!(self.peek(), Some(Token::Ident(k)) if k == "implies") {
            return Err("the `implies` operator".into());
        }
        Ok(left)
    }

    fn type_name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Ident(name)) => Ok(name),
            Some(other) => Err(format!("expected a type name, found {other}")),
            None => Err("expected a type name".into()),
        }
    }

    fn invocation(&mut self) -> Result<Expr, String> {
        let mut expr = self.term()?;
        loop {
            match self.peek() {
                Some(Token::Symbol(".")) => {
                    self.at += 1;
                    let name = self.type_name()?;
                    expr = self.member_or_call(Some(expr), name)?;
                }
                _ => return Ok(expr),
            }
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::This) => Ok(Expr::This),
            Some(Token::Str(s)) => Ok(Expr::Literal(Literal::String(s))),
            Some(Token::Num(n)) => Ok(Expr::Literal(Literal::Number(n))),
            Some(Token::Date(d)) => Ok(Expr::Literal(Literal::Date(d))),
            Some(Token::Symbol("-")) => match self.next() {
                Some(Token::Num(n)) => Ok(Expr::Literal(Literal::Number(format!("-{n}")))),
                _ => Err("a minus sign not before a number".into()),
            },
            Some(Token::Symbol("(")) => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Ident(name)) if name == "true" || name == "false" => {
                Ok(Expr::Literal(Literal::Boolean(name == "true")))
            }
            Some(Token::Ident(name)) => self.member_or_call(None, name),
            Some(other) => Err(format!("unexpected {other}")),
            None => Err("an empty expression".into()),
        }
    }

    fn member_or_call(&mut self, on: Option<Expr>, name: String) -> Result<Expr, String> {
        let on = on.map(Box::new);
        if self.peek() != Some(&Token::Symbol("(")) {
            return Ok(Expr::Member(on, name));
        }
        self.at += 1;
        let mut args = Vec::new();
        if self.peek() != Some(&Token::Symbol(")")) {
            loop {
                args.push(self.expression(0)?);
                if self.peek() == Some(&Token::Symbol(",")) {
                    self.at += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        Ok(Expr::Call(on, function(&name, args)?))
    }
}

fn function(name: &str, args: Vec<Expr>) -> Result<Function, String> {
    let string_arg = |args: &[Expr]| match args {
        [Expr::Literal(Literal::String(s))] => Ok(s.clone()),
        _ => Err(format!("{name}() takes one quoted name")),
    };
    let type_arg = |args: &[Expr]| match args {
        [Expr::Member(None, t)] => Ok(t.clone()),
        _ => Err(format!("{name}() takes one type name")),
    };
    let mut args = args.into_iter().map(Box::new);
    let count = args.len();
    let function = match (name, count) {
        ("nodesByType", 1) => Function::NodesByType(string_arg(&unbox(args))?),
        ("nodesByName", 1) => Function::NodesByName(string_arg(&unbox(args))?),
        ("ofType", 1) => Function::OfType(type_arg(&unbox(args))?),
        ("as", 1) => Function::As(type_arg(&unbox(args))?),
        ("empty", 0) => Function::Empty,
        ("not", 0) => Function::Not,
        ("exists", 0) => Function::Exists(None),
        ("exists", 1) => Function::Exists(args.next()),
        ("where", 1) => Function::Where(next(&mut args)),
        ("startsWith", 1) => Function::StartsWith(next(&mut args)),
        ("endsWith", 1) => Function::EndsWith(next(&mut args)),
        ("contains", 1) => Function::Contains(next(&mut args)),
        ("matches", 1) => Function::Matches(next(&mut args)),
        ("replaceMatches", 2) => {
            let regex = next(&mut args);
            Function::ReplaceMatches(regex, next(&mut args))
        }
        ("substring", 1) => Function::Substring(next(&mut args), None),
        ("substring", 2) => {
            let start = next(&mut args);
            Function::Substring(start, args.next())
        }
        _ => return Err(format!("the function {name}() with {count} argument(s)")),
    };
    Ok(function)
}

fn unbox(args: impl Iterator<Item = Box<Expr>>) -> Vec<Expr> {
    args.map(|a| *a).collect()
}

/// The next argument; only called where the arity was matched.
fn next(args: &mut impl Iterator<Item = Box<Expr>>) -> Box<Expr> {
    args.next()
        .unwrap_or_else(|| Box::new(Expr::Literal(Literal::Boolean(false))))
}

/// Writes an expression back as text (binary operations in parentheses), so that a parsed
/// expression can be named in messages and property tests can check `parse(print(e)) == e`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::This => f.write_str("$this"),
            Expr::Literal(Literal::String(s)) => write_quoted(f, s),
            Expr::Literal(Literal::Number(n)) => f.write_str(n),
            Expr::Literal(Literal::Boolean(b)) => write!(f, "{b}"),
            Expr::Literal(Literal::Date(d)) => write!(f, "@{d}"),
            Expr::Member(on, name) => {
                if let Some(on) = on {
                    write!(f, "{}.", Invocable(on))?;
                }
                write!(f, "`{name}`")
            }
            Expr::Call(on, function) => {
                if let Some(on) = on {
                    write!(f, "{}.", Invocable(on))?;
                }
                write!(f, "{function}")
            }
            Expr::Binary(op, left, right) => write!(f, "({left} {} {right})", op.symbol()),
            Expr::As(expr, type_name) => write!(f, "({expr} as `{type_name}`)"),
        }
    }
}

/// An expression before `.`: a negative number needs parentheses there.
struct Invocable<'e>(&'e Expr);

impl fmt::Display for Invocable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // A number's dot and a date's characters would swallow the invocation's dot.
            Expr::Literal(Literal::Number(_) | Literal::Date(_)) => write!(f, "({})", self.0),
            other => write!(f, "{other}"),
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::NodesByType(t) => {
                f.write_str("nodesByType(")?;
                write_quoted(f, t)?;
                f.write_str(")")
            }
            Function::NodesByName(n) => {
                f.write_str("nodesByName(")?;
                write_quoted(f, n)?;
                f.write_str(")")
            }
            Function::OfType(t) => write!(f, "ofType(`{t}`)"),
            Function::As(t) => write!(f, "as(`{t}`)"),
            Function::Where(e) => write!(f, "where({e})"),
            Function::Exists(None) => f.write_str("exists()"),
            Function::Exists(Some(e)) => write!(f, "exists({e})"),
            Function::Empty => f.write_str("empty()"),
            Function::Not => f.write_str("not()"),
            Function::StartsWith(e) => write!(f, "startsWith({e})"),
            Function::EndsWith(e) => write!(f, "endsWith({e})"),
            Function::Contains(e) => write!(f, "contains({e})"),
            Function::Matches(e) => write!(f, "matches({e})"),
            Function::ReplaceMatches(a, b) => write!(f, "replaceMatches({a}, {b})"),
            Function::Substring(a, None) => write!(f, "substring({a})"),
            Function::Substring(a, Some(b)) => write!(f, "substring({a}, {b})"),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in text.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{c}' => f.write_str("\\f")?,
            other => write!(f, "{other}")?,
        }
    }
    f.write_str("'")
}

//! The subset of FHIRPath that the R4 search-parameter definitions use, typed by the element
//! model: paths, `|`, `where(...)`, `as`/`is`/`ofType`, `resolve() is Type`, `exists()`,
//! `and`, `=` and `!=`. Compiled once at start-up, evaluated on every write to build the
//! search index.

use serde_json::Value;

use crate::definitions::{ChildType, Primitive, definitions};

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The resource type at the start of a path (`Patient` in `Patient.name`): keeps the
    /// resource only if it is of that type.
    TypeRoot(String),
    /// `$this`, the focus.
    This,
    Child(Box<Expr>, String),
    Union(Vec<Expr>),
    Where(Box<Expr>, Box<Expr>),
    As(Box<Expr>, String),
    Is(Box<Expr>, String),
    Resolve(Box<Expr>),
    Exists(Box<Expr>),
    /// `expr[n]`
    Index(Box<Expr>, usize),
    And(Box<Expr>, Box<Expr>),
    Equals(Box<Expr>, Box<Expr>, bool),
    Str(String),
    Bool(bool),
}

/// A value produced while evaluating: a piece of the resource with its FHIR type, or a literal.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Node {
        value: &'a Value,
        ty: Type<'a>,
    },
    Bool(bool),
    Str(String),
    /// The type name a reference resolves to (from `resolve()`).
    Resolved(String),
}

/// The FHIR type of a node: the node key whose children describe it (a type name or backbone
/// path) and the type's name.
#[derive(Debug, Clone, Copy)]
pub struct Type<'a> {
    pub node: &'a str,
    pub name: &'a str,
    pub primitive: Option<Primitive>,
}

impl<'a> Type<'a> {
    fn of(ty: &'a ChildType, value: &'a Value) -> Type<'a> {
        match ty {
            ChildType::Primitive(p) => Type {
                node: p.name(),
                name: p.name(),
                primitive: Some(*p),
            },
            ChildType::Complex { node, fhir_type } => Type {
                node,
                name: fhir_type,
                primitive: None,
            },
            ChildType::Resource => {
                let rt = value
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("Resource");
                Type {
                    node: rt,
                    name: rt,
                    primitive: None,
                }
            }
        }
    }
}

/// A compile error, with the expression and what was not understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile FHIRPath '{expression}': {message}")]
pub struct CompileError {
    pub expression: String,
    pub message: String,
}

/// Compiles an expression of the supported subset.
pub fn compile(expression: &str) -> Result<Expr, CompileError> {
    let tokens = tokenize(expression).map_err(|message| CompileError {
        expression: expression.to_string(),
        message,
    })?;
    let mut p = Parser { tokens, pos: 0 };
    let e = p.union().map_err(|message| CompileError {
        expression: expression.to_string(),
        message,
    })?;
    if p.pos != p.tokens.len() {
        return Err(CompileError {
            expression: expression.to_string(),
            message: format!("unexpected {:?}", p.tokens[p.pos]),
        });
    }
    Ok(e)
}

/// Evaluates an expression against a resource.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Vec<Item<'a>> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    let root = Item::Node {
        value: resource,
        ty: Type {
            node: rt,
            name: rt,
            primitive: None,
        },
    };
    eval(expr, std::slice::from_ref(&root), &root)
}

/// Evaluates an expression relative to one item of a resource (the components of a composite
/// search parameter are relative to what the composite's expression selected).
pub fn evaluate_relative<'a>(expr: &Expr, focus: &Item<'a>, resource: &'a Value) -> Vec<Item<'a>> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    let root = Item::Node {
        value: resource,
        ty: Type {
            node: rt,
            name: rt,
            primitive: None,
        },
    };
    eval(expr, std::slice::from_ref(focus), &root)
}

fn eval<'a>(expr: &Expr, focus: &[Item<'a>], root: &Item<'a>) -> Vec<Item<'a>> {
    match expr {
        Expr::TypeRoot(name) => match root {
            Item::Node { ty, .. }
                if ty.name == name || name == "Resource" || name == "DomainResource" =>
            {
                vec![root.clone()]
            }
            _ => Vec::new(),
        },
        Expr::This => focus.to_vec(),
        Expr::Child(inner, name) => {
            let base = eval(inner, focus, root);
            let mut out = Vec::new();
            for item in &base {
                children(item, name, &mut out);
            }
            out
        }
        Expr::Union(parts) => parts.iter().flat_map(|p| eval(p, focus, root)).collect(),
        Expr::Where(inner, cond) => eval(inner, focus, root)
            .into_iter()
            .filter(|item| truthy(&eval(cond, std::slice::from_ref(item), root)))
            .collect(),
        Expr::As(inner, ty) => eval(inner, focus, root)
            .into_iter()
            .filter(|i| is_type(i, ty))
            .collect(),
        Expr::Is(inner, ty) => {
            let items = eval(inner, focus, root);
            if items.len() == 1 {
                vec![Item::Bool(is_type(&items[0], ty))]
            } else {
                Vec::new()
            }
        }
        Expr::Resolve(inner) => eval(inner, focus, root)
            .into_iter()
            .filter_map(|i| match i {
                Item::Node { value, .. } => reference_type(value).map(Item::Resolved),
                _ => None,
            })
            .collect(),
        Expr::Exists(inner) => vec![Item::Bool(!eval(inner, focus, root).is_empty())],
        Expr::Index(inner, n) => eval(inner, focus, root)
            .into_iter()
            .nth(*n)
            .into_iter()
            .collect(),
        Expr::And(a, b) => {
            let a = as_bool(&eval(a, focus, root));
            let b = as_bool(&eval(b, focus, root));
            match (a, b) {
                (Some(false), _) | (_, Some(false)) => vec![Item::Bool(false)],
                (Some(true), Some(true)) => vec![Item::Bool(true)],
                _ => Vec::new(),
            }
        }
        Expr::Equals(a, b, negate) => {
            let a = eval(a, focus, root);
            let b = eval(b, focus, root);
            if a.is_empty() || b.is_empty() {
                return Vec::new();
            }
            let eq = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| scalar(x) == scalar(y));
            vec![Item::Bool(eq != *negate)]
        }
        Expr::Str(s) => vec![Item::Str(s.clone())],
        Expr::Bool(b) => vec![Item::Bool(*b)],
    }
}

fn children<'a>(item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let Item::Node {
        value: Value::Object(obj),
        ty,
    } = item
    else {
        return;
    };
    let defs = definitions();
    let Some(node) = defs.node(ty.node) else {
        return;
    };
    let mut push = |value: &'a Value, child_ty: &'a ChildType| match value {
        Value::Array(items) => {
            for v in items {
                if !v.is_null() {
                    out.push(Item::Node {
                        value: v,
                        ty: Type::of(child_ty, v),
                    });
                }
            }
        }
        Value::Null => {}
        v => out.push(Item::Node {
            value: v,
            ty: Type::of(child_ty, v),
        }),
    };
    if let Some(child) = node.children.get(name)
        && let Some(v) = obj.get(name)
    {
        push(v, &child.ty);
        return;
    }
    // a choice element: `value` finds `valueQuantity`, `valueString`, ...
    let choice = format!("{name}[x]");
    for (key, v) in obj {
        if let Some(child) = node.children.get(key)
            && child.element == choice
        {
            push(v, &child.ty);
        }
    }
}

fn is_type(item: &Item, ty: &str) -> bool {
    match item {
        Item::Node { ty: t, .. } => {
            t.name == ty || (ty.eq_ignore_ascii_case(t.name) && t.primitive.is_some())
        }
        Item::Resolved(name) => name == ty,
        Item::Bool(_) => ty.eq_ignore_ascii_case("boolean"),
        Item::Str(_) => ty.eq_ignore_ascii_case("string"),
    }
}

fn scalar(item: &Item) -> Option<String> {
    match item {
        Item::Node {
            value: Value::String(s),
            ..
        } => Some(s.clone()),
        Item::Node {
            value: Value::Bool(b),
            ..
        } => Some(b.to_string()),
        Item::Node {
            value: Value::Number(n),
            ..
        } => Some(n.to_string()),
        Item::Str(s) => Some(s.clone()),
        Item::Bool(b) => Some(b.to_string()),
        Item::Resolved(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_bool(items: &[Item]) -> Option<bool> {
    match items {
        [Item::Bool(b)] => Some(*b),
        [
            Item::Node {
                value: Value::Bool(b),
                ..
            },
        ] => Some(*b),
        [] => None,
        _ => Some(true),
    }
}

fn truthy(items: &[Item]) -> bool {
    as_bool(items) == Some(true)
}

/// The resource type a Reference points at, from its `reference` (relative or absolute) or its
/// `type`.
pub fn reference_type(reference: &Value) -> Option<String> {
    if let Some(r) = reference.get("reference").and_then(Value::as_str) {
        let path = r.split("/_history/").next().unwrap_or(r);
        let mut segs = path.rsplit('/');
        let _id = segs.next()?;
        if let Some(t) = segs.next()
            && definitions().is_resource_type(t)
        {
            return Some(t.to_string());
        }
    }
    reference
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Sym(char),
    Ne,
    Num(usize),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == '\'' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated string".into());
            }
            out.push(Token::Str(chars[start..i].iter().collect()));
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push(Token::Num(n.parse().map_err(|_| "bad number".to_string())?));
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            out.push(Token::Ne);
            i += 2;
        } else if "().|=,[]".contains(c) {
            out.push(Token::Sym(c));
            i += 1;
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<(), String> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(format!("expected '{c}' at token {}", self.pos))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Token::Ident(w)) => {
                self.pos += 1;
                Ok(w)
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn union(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.eat_sym('|') {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap_or(Expr::This)
        } else {
            Expr::Union(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.equality()?;
        while self.eat_ident("and") {
            let right = self.equality()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, String> {
        let left = self.type_expr()?;
        if self.eat_sym('=') {
            let right = self.type_expr()?;
            return Ok(Expr::Equals(Box::new(left), Box::new(right), false));
        }
        if self.peek() == Some(&Token::Ne) {
            self.pos += 1;
            let right = self.type_expr()?;
            return Ok(Expr::Equals(Box::new(left), Box::new(right), true));
        }
        Ok(left)
    }

    fn type_expr(&mut self) -> Result<Expr, String> {
        let e = self.postfix()?;
        if self.eat_ident("as") {
            let t = self.ident()?;
            return Ok(Expr::As(Box::new(e), t));
        }
        if self.eat_ident("is") {
            let t = self.ident()?;
            return Ok(Expr::Is(Box::new(e), t));
        }
        Ok(e)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        loop {
            if self.eat_sym('.') {
                e = self.invocation(e)?;
            } else if self.eat_sym('[') {
                let Some(Token::Num(n)) = self.peek().cloned() else {
                    return Err("expected an index".into());
                };
                self.pos += 1;
                self.expect_sym(']')?;
                e = Expr::Index(Box::new(e), n);
            } else {
                return Ok(e);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        if self.eat_sym('(') {
            let e = self.union()?;
            self.expect_sym(')')?;
            return Ok(e);
        }
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.pos += 1;
                Ok(Expr::Str(s))
            }
            Some(Token::Ident(w)) if w == "true" || w == "false" => {
                self.pos += 1;
                Ok(Expr::Bool(w == "true"))
            }
            Some(Token::Ident(w)) if w == "$this" => {
                self.pos += 1;
                Ok(Expr::This)
            }
            Some(Token::Ident(w)) if w.starts_with(char::is_uppercase) => {
                self.pos += 1;
                Ok(Expr::TypeRoot(w))
            }
            Some(Token::Ident(_)) => self.invocation(Expr::This),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn invocation(&mut self, base: Expr) -> Result<Expr, String> {
        let name = self.ident()?;
        if !self.eat_sym('(') {
            return Ok(Expr::Child(Box::new(base), name));
        }
        let e = match name.as_str() {
            "where" => {
                let cond = self.union()?;
                Expr::Where(Box::new(base), Box::new(cond))
            }
            "as" | "ofType" => Expr::As(Box::new(base), self.ident()?),
            "is" => Expr::Is(Box::new(base), self.ident()?),
            "resolve" => Expr::Resolve(Box::new(base)),
            "exists" => Expr::Exists(Box::new(base)),
            other => return Err(format!("function {other}() is not supported")),
        };
        self.expect_sym(')')?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(expr: &str, r: &Value) -> Vec<String> {
        let e = compile(expr).unwrap();
        evaluate(&e, r)
            .iter()
            .map(|i| match i {
                Item::Node { value, ty } => format!("{}:{}", ty.name, value),
                Item::Bool(b) => format!("bool:{b}"),
                Item::Str(s) => format!("str:{s}"),
                Item::Resolved(s) => format!("resolved:{s}"),
            })
            .collect()
    }

    #[test]
    fn paths_unions_and_choices() {
        let p = json!({"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}],
            "deceasedDateTime": "2020", "telecom": [{"system": "email", "value": "a@b"}, {"system": "phone", "value": "1"}]});
        assert_eq!(
            strings("Patient.name.family", &p),
            vec!["string:\"A\"", "string:\"B\""]
        );
        assert_eq!(strings("Person.name | Patient.name.family", &p).len(), 2);
        assert_eq!(
            strings("(Patient.deceased as dateTime)", &p),
            vec!["dateTime:\"2020\""]
        );
        assert_eq!(
            strings("Patient.telecom.where(system='email')", &p),
            vec![r#"ContactPoint:{"system":"email","value":"a@b"}"#]
        );
        assert_eq!(
            strings(
                "Patient.deceased.exists() and Patient.deceased != false",
                &p
            ),
            vec!["bool:true"]
        );
        let alive = json!({"resourceType": "Patient", "deceasedBoolean": false});
        assert_eq!(
            strings(
                "Patient.deceased.exists() and Patient.deceased != false",
                &alive
            ),
            vec!["bool:false"]
        );
    }

    #[test]
    fn resolve_filters_by_target_type() {
        let a = json!({"resourceType": "Appointment", "status": "booked", "participant": [
            {"actor": {"reference": "Patient/1"}, "status": "accepted"},
            {"actor": {"reference": "http://x/fhir/Location/2"}, "status": "accepted"}]});
        assert_eq!(
            strings(
                "Appointment.participant.actor.where(resolve() is Patient)",
                &a
            )
            .len(),
            1
        );
        assert_eq!(
            strings(
                "Appointment.participant.actor.where(resolve() is Location)",
                &a
            )
            .len(),
            1
        );
    }

    #[test]
    fn every_r4_search_parameter_compiles() {
        for p in crate::search::registry::all_definitions() {
            if !p.expression.is_empty() {
                compile(&p.expression).unwrap();
            }
        }
    }
}

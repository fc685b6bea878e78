//! A small SQL builder for queries whose WHERE clause depends on the request. It numbers `$n`
//! placeholders itself because sqlx's `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL
//! does not accept.

use sqlx::any::AnyArguments;

use super::statement::{Bind, Statement, Value, any_arguments};

pub struct Sql {
    text: String,
    args: Vec<Value>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Bind) -> &mut Self {
        self.args.push(value.into_value());
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `(p1, p2, ...)` bound to `values`. The `Any` driver cannot bind arrays (see
    /// docs/decisions/0001-storage.md), so this is the one place an `IN` list is built.
    pub fn bind_list<T, I>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        T: Bind,
    {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// The query and its arguments for sqlx (reads, on either backend).
    pub fn into_parts(self) -> (String, AnyArguments<'static>) {
        (self.text, any_arguments(self.args))
    }

    /// The statement, for a write.
    pub fn into_statement(self) -> Statement {
        Statement::from_parts(self.text, self.args)
    }
}

/// `columns` (a comma-separated list) with every name qualified by `table.`.
pub fn qualified(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes `\`, `%` and `_` so that text matches itself literally in `LIKE ... ESCAPE '\'`.
pub fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

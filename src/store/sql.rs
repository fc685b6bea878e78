//! A small SQL builder for queries whose WHERE clause depends on the request. It numbers `$n`
//! placeholders itself because sqlx's `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL
//! does not accept.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Type};

pub struct Sql {
    text: String,
    args: AnyArguments<'static>,
    count: usize,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Send + for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        self.text.push('$');
        self.text.push_str(&self.count.to_string());
        // Encoding into `AnyArguments` only fails for types the driver cannot carry, which `T: Type<Any>` rules out.
        let _ = self.args.add(value);
        self
    }

    /// Appends `(p1, p2, ...)` bound to `values`. The `Any` driver cannot bind arrays (see
    /// docs/decisions/0001-storage.md), so this is the one place an `IN` list is built.
    pub fn bind_list<T, I>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        T: 'static + Send + for<'q> Encode<'q, Any> + Type<Any>,
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

    pub fn into_parts(self) -> (String, AnyArguments<'static>) {
        (self.text, self.args)
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
